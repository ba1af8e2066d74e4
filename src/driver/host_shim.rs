//! Host ↔ macvlan reachability (pipework#4).
//!
//! A host cannot talk to its own macvlan children through the parent: the
//! kernel keeps their traffic apart. The original README's recipe moved the
//! host's address from `eth0` to a host-side macvlan `eth0m`, which drops
//! the host's connectivity for a moment and is easy to get wrong.
//!
//! `pipework host-shim <parent> <ip/len>` builds that host-side macvlan
//! (mode bridge, labelled) with its own address, and routes each macvlan
//! guest's address through it with a host route. The host keeps its
//! address on the parent; the more specific routes win over the parent's
//! connected route. Guests attached later get their route at attach time,
//! and lose it on detach.
use super::Ctx;
use crate::error::{Error, Result};
use crate::netlink::{Journal, Link, Net};
use crate::record::MarkKind;
use crate::record::Record;
use crate::request::{Addressing, IFNAMSIZ_MAX, parse_cidr, parse_mac};
use ipnetwork::IpNetwork;
use serde::Serialize;
use std::net::IpAddr;

#[derive(Debug, Serialize)]
pub struct ShimReport {
    pub shim: String,
    pub parent: String,
    pub address: String,
    pub routes: Vec<String>,
    pub created: bool,
}

/// `shim-<parent>` when it fits, else a name from the parent's index.
pub fn shim_name(parent: &Link) -> String {
    let n = format!("shim-{}", parent.name);
    if n.len() <= IFNAMSIZ_MAX {
        n
    } else {
        format!("pwshim{}", parent.index)
    }
}

/// A host interface by name or `mac:ADDR`.
pub async fn host_interface(host: &Net, spec: &str) -> Result<Option<Link>> {
    match spec.strip_prefix("mac:") {
        Some(m) => {
            let mac = parse_mac(m)?;
            super::child::by_mac(host, &mac).await
        }
        None => host.link_by_name(spec).await,
    }
}

/// The shim on `parent`, if there is one. Every macvlan attach asks, so
/// the dump is filtered in the kernel to macvlan links only (a host may
/// have thousands of veth ends).
pub async fn find_shim(host: &Net, parent: &Link) -> Result<Option<Link>> {
    Ok(host.macvlan_links().await?.into_iter().find(|l| {
        l.kind.as_deref() == Some("macvlan")
            && l.link == Some(parent.index)
            && crate::inventory::mark_of(l).is_some_and(|m| m.m == MarkKind::Shim)
    }))
}

fn host_len(ip: IpAddr) -> u8 {
    if ip.is_ipv4() { 32 } else { 128 }
}

async fn add_route(host: &Net, shim: &Link, ip: IpAddr) -> Result<()> {
    let what = format!("routing {ip} via {}", shim.name);
    host.replace_host_route(shim, ip, what).await
}

/// At macvlan attach: if `parent` has a shim, route the guest's static
/// addresses through it. Returns a note for the output.
pub async fn route_new_guest(
    cx: &Ctx<'_>,
    j: &mut Journal,
    parent: &Link,
) -> Result<Option<String>> {
    let Some(shim) = find_shim(&cx.host, parent).await? else {
        return Ok(None);
    };
    let Addressing::Static { addrs, .. } = &cx.req.addressing else {
        return Ok(Some(format!(
            "host shim {} present, but addresses from DHCP are not routed through it; re-run `pipework host-shim` after the lease",
            shim.name
        )));
    };
    for a in addrs {
        add_route(&cx.host, &shim, a.ip()).await?;
        if !cx.host.dry_run {
            let (h, s, ip) = (cx.host.clone(), shim.clone(), a.ip());
            j.record(format!("route to {ip} via {}", shim.name), async move {
                h.del_host_route(&s, ip).await
            });
        }
    }
    Ok(Some(format!("host reaches it through {}", shim.name)))
}

/// At detach: drop the shim routes to this guest's addresses.
pub async fn unroute_guest(host: &Net, cont: &Net, rec: &Record) -> Result<()> {
    let parent_spec = rec.hi.as_deref().unwrap_or(&rec.h);
    let Some(parent) = host_interface(host, parent_spec).await.ok().flatten() else {
        return Ok(());
    };
    let Some(shim) = find_shim(host, &parent).await? else {
        return Ok(());
    };
    let Some(link) = cont.link_by_name(&rec.ifname).await? else {
        return Ok(());
    };
    for a in cont.addrs(link.index).await? {
        host.del_host_route(&shim, a.net.ip()).await?;
    }
    Ok(())
}

/// Is this attachment a macvlan guest hanging off `parent`?
fn on_parent(rec: &crate::record::Record, parent: &Link) -> bool {
    rec.k == crate::record::Kind::Macvlan
        && match &rec.hi {
            Some(hi) => hi == &parent.name,
            None => rec.h == parent.name,
        }
}

/// `pipework host-shim <parent> <ip/len> [-l NAME] [--dry-run]`.
pub async fn run(args: &[String]) -> Result<ShimReport> {
    let mut pos = Vec::new();
    let mut name = None;
    let mut dry_run = false;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "-l" | "--host-ifname" => {
                name = Some(it.next().cloned().ok_or_else(|| {
                    Error::bad(a, "needs a name: host-shim PARENT IP/LEN -l NAME")
                })?)
            }
            "--dry-run" => dry_run = true,
            _ => pos.push(a.clone()),
        }
    }
    let [parent_spec, ip] = pos.as_slice() else {
        return Err(Error::bad(
            pos.join(" "),
            "usage: pipework host-shim PARENT IP/LEN [-l NAME] (e.g. host-shim eth0 10.1.1.250/24)",
        ));
    };
    let net: IpNetwork = parse_cidr(ip)?;
    if let Some(n) = &name {
        crate::request::check_ifname(n)?;
    }
    let host = Net::new(None, dry_run)?;
    let parent = host_interface(&host, parent_spec)
        .await?
        .ok_or_else(|| Error::bad(parent_spec, "no such host interface"))?;
    if parent.is_bridge() {
        return Err(Error::bad(
            parent_spec,
            "is a bridge: the host already reaches bridged guests; a shim is for macvlan parents",
        ));
    }
    let mut j = Journal::new();
    match build(&host, &parent, net, name, &mut j).await {
        Ok(r) => {
            j.commit();
            Ok(r)
        }
        Err(e) => {
            j.rollback().await;
            Err(e)
        }
    }
}

async fn build(
    host: &Net,
    parent: &Link,
    net: IpNetwork,
    name: Option<String>,
    j: &mut Journal,
) -> Result<ShimReport> {
    let (shim, created) = match find_shim(host, parent).await? {
        Some(s) => (s, false),
        None => {
            let name = name.unwrap_or_else(|| shim_name(parent));
            if host.link_by_name(&name).await?.is_some() {
                return Err(Error::bad(
                    &name,
                    "exists and is not a pipework shim; choose another with -l NAME",
                ));
            }
            super::vlan::ensure_up(host, j, parent).await?;
            // Born under a temporary name, named and marked in one request
            // (`marked`): a killed run leaves nothing unmarked as `name`.
            let mark = (MarkKind::Shim, parent.name.as_str());
            let made = super::marked::create(host, &name, "macvlan", mark, |tmp| async move {
                // Undone by `marked` until committed, by `j` after.
                let mut born = Journal::new();
                let l = host
                    .add_macvlan_here(&mut born, "shim", &tmp, parent)
                    .await?;
                born.commit();
                Ok(l)
            })
            .await?;
            let Some(l) = made else {
                return Err(Error::bad(
                    &name,
                    "was just created by someone else and is not a pipework shim; choose another with -l NAME",
                ));
            };
            if !host.dry_run {
                host.journal_delete(j, format!("shim {name}"), l.index);
            }
            (l, true)
        }
    };
    let have = if host.dry_run {
        vec![]
    } else {
        host.addrs(shim.index).await?
    };
    if !have.iter().any(|a| a.net == net) {
        host.add_addr(&shim, net).await?;
    }
    let mut routes = Vec::new();
    let (guests, unscanned) = crate::inventory::attachments_with_addrs().await;
    if let Some(e) = crate::inventory::incomplete_error(&unscanned) {
        // Nothing is removed on what we did not see; only routes to guests
        // there are missing until a re-run.
        eprintln!(
            "pipework: host-shim: {e}; routes to their guests may be missing: re-run host-shim"
        );
    }
    for (rec, addrs) in guests {
        if !on_parent(&rec, parent) {
            continue;
        }
        for n in addrs {
            if matches!(n.ip(), IpAddr::V6(v6) if v6.segments()[0] & 0xffc0 == 0xfe80) {
                continue; // link-local: reachable on the link already
            }
            add_route(host, &shim, n.ip()).await?;
            routes.push(format!("{}/{} dev {}", n.ip(), host_len(n.ip()), shim.name));
        }
    }
    Ok(ShimReport {
        shim: shim.name.clone(),
        parent: parent.name.clone(),
        address: net.to_string(),
        routes,
        created,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        let p = Link {
            name: "eth0".into(),
            index: 4,
            ..Default::default()
        };
        assert_eq!(shim_name(&p), "shim-eth0");
        let p = Link {
            name: "enp0s31f6.100".into(),
            index: 9,
            ..Default::default()
        };
        assert_eq!(shim_name(&p), "pwshim9");
    }
}
