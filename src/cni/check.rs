//! CHECK: compare prevResult with the kernel.
use super::attach::{Mode, mismatch, open_netns, runtime};
use super::env::Env;
use super::error::CniResult;
use super::types::{AddResult, NetConf};
use crate::netlink::Net;
use crate::request::format_mac;
use std::net::IpAddr;

/// CHECK: what prevResult says we built must still be there.
pub fn check(env: &Env, conf: &NetConf, mode: Mode, prev: &AddResult) -> CniResult<()> {
    let ns = open_netns(&env.netns)?;
    let idx = prev
        .interface_index(&env.ifname, &env.netns)
        .ok_or_else(|| {
            mismatch(format!(
                "prevResult lists no interface {} in {}",
                env.ifname, env.netns
            ))
        })?;
    let want = &prev.interfaces[idx];
    let tag = super::tag::encode(&conf.name, &env.container_id, &env.ifname);
    runtime()?.block_on(async {
        let cont = Net::new(Some(&ns), false)?;
        let l = cont.link_by_name(&env.ifname).await?.ok_or_else(|| {
            mismatch(format!(
                "interface {} is missing from {}",
                env.ifname, env.netns
            ))
        })?;
        let rec = match crate::inventory::read(&l, ns.inode()?) {
            // Either spelling of the tag: an earlier version's record too.
            crate::record::Seen::Ours(r) if super::tag::same(&r.g, &tag) => r,
            _ => {
                return Err(mismatch(format!(
                    "interface {} in {} was not made by this attachment",
                    env.ifname, env.netns
                )));
            }
        };
        if !want.mac.is_empty() && !want.mac.eq_ignore_ascii_case(&format_mac(&l.mac)) {
            return Err(mismatch(format!(
                "{} has MAC {}, prevResult says {}",
                env.ifname,
                format_mac(&l.mac),
                want.mac
            )));
        }
        let have: Vec<_> = cont
            .addrs(l.index)
            .await?
            .into_iter()
            .map(|a| a.net)
            .collect();
        for one in prev.ips.iter().filter(|i| i.interface == Some(idx)) {
            if !have.contains(&one.address) {
                return Err(mismatch(format!(
                    "{} lacks address {}",
                    env.ifname, one.address
                )));
            }
        }
        let routes = route_dsts(&cont).await?;
        for r in &prev.routes {
            if !routes.contains(&(r.dst.network(), r.dst.prefix())) {
                return Err(mismatch(format!(
                    "route to {} is missing in {}",
                    r.dst, env.netns
                )));
            }
        }
        if mode.has_host_port() {
            let host = Net::new(None, false)?;
            let br = host
                .link_by_name(&rec.h)
                .await?
                .ok_or_else(|| mismatch(format!("{} is missing", rec.h)))?;
            if let Some(hi) = &rec.hi {
                let port = host
                    .link_by_name(hi)
                    .await?
                    .ok_or_else(|| mismatch(format!("host interface {hi} is missing")))?;
                if mode == Mode::Bridge && port.controller != Some(br.index) {
                    return Err(mismatch(format!("{hi} is no longer a port of {}", rec.h)));
                }
            }
        }
        Ok(())
    })
}

/// (destination, prefix length) of every route in the namespace's tables.
async fn route_dsts(net: &Net) -> CniResult<Vec<(IpAddr, u8)>> {
    Ok(net.route_destinations().await?)
}
