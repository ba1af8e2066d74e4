//! `"mode": "overlay"`: the CNI network's name is a pipework overlay
//! network. Like `pipework NET $CID auto`: one address of each family the
//! network has is claimed in etcd under this host's agent lease (the
//! result lists each with its gateway, and a default route per family),
//! the agent's bridge takes the veth, and a failed ADD gives them back.
//! DEL removes the endpoints from etcd (every peer drops them) before the
//! link goes.
use super::attach::Plumber;
use super::env::Env;
use super::error::{CniError, CniResult, code};
use super::types::{AddResult, Interface, IpConfig, NetConf};
use crate::overlay::alloc::Want;
use crate::overlay::endpoint::Claim;
use crate::overlay::store::Store;
use crate::overlay::{names, network, state};

pub fn add(
    env: &Env,
    conf: &NetConf,
    plumber: &mut Plumber,
) -> CniResult<(AddResult, Vec<Interface>)> {
    let agent = state::require(&conf.name)?;
    let tag = super::tag::encode(&conf.name, &env.container_id, &env.ifname);
    let (st, net) = plumber.runtime().block_on(async {
        let st = Store::connect(&agent.etcd).await?;
        let net = network::get(&st, &conf.name).await?.ok_or_else(|| {
            crate::Error::bad(
                &conf.name,
                "no such overlay network (pipework overlay create NAME --subnet CIDR)",
            )
        })?;
        Ok::<_, crate::Error>((st, net))
    })?;
    // The link record holds the addresses, and the kernel refuses an
    // alias too long only once the link exists. A record too long even
    // with the shortest addresses is refused before anything is claimed;
    // the claimed ones are measured before anything is built.
    let shortest: Vec<std::net::IpAddr> = [
        net.subnet.map(|_| std::net::Ipv4Addr::UNSPECIFIED.into()),
        net.subnet6.map(|_| std::net::Ipv6Addr::UNSPECIFIED.into()),
    ]
    .into_iter()
    .flatten()
    .collect();
    let stack = match (net.subnet.is_some(), net.subnet6.is_some()) {
        (true, true) => "dual-stack",
        (false, true) => "IPv6",
        _ => "IPv4",
    };
    plumber.record_fits(&shortest, Some(stack))?;
    let claim = plumber.runtime().block_on(Claim::take(
        &st,
        &agent,
        &net,
        &Want::Auto,
        &tag,
        &env.ifname,
    ))?;
    let ips = claim.ips();
    if let Err(e) = plumber.record_fits(&ips, Some(stack)) {
        plumber.runtime().block_on(claim.release("pipework (cni)"));
        return Err(e);
    }
    // The agent builds the network's bridge on this host once it has an
    // endpoint here: this claim.
    if let Err(e) = plumber
        .runtime()
        .block_on(crate::overlay::attach::wait_for_bridge(&net.name))
    {
        plumber.runtime().block_on(claim.release("pipework (cni)"));
        return Err(e.into());
    }
    let bad = |e: ipnetwork::IpNetworkError| CniError::new(code::INTERNAL, e.to_string(), "");
    let mut ip = AddResult::default();
    for a in &ips {
        let (prefix, gw, any) = match a {
            std::net::IpAddr::V4(_) => (
                net.subnet.map(|s| s.prefix()),
                net.gw().map(std::net::IpAddr::V4),
                std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
            ),
            std::net::IpAddr::V6(_) => (
                net.subnet6.map(|s| s.prefix()),
                net.gw6().map(std::net::IpAddr::V6),
                std::net::IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
            ),
        };
        ip.ips.push(IpConfig {
            address: ipnetwork::IpNetwork::new(*a, prefix.unwrap_or(0)).map_err(bad)?,
            gateway: gw,
            interface: None,
        });
        // The default route through the anycast gateway, one per family
        // (CNI installs only the routes a result lists).
        if !net.no_default_route {
            ip.routes.push(super::types::Route {
                dst: ipnetwork::IpNetwork::new(any, 0).map_err(bad)?,
                gw,
                mtu: None,
                advmss: None,
                priority: None,
                table: None,
                scope: None,
            });
        }
    }
    plumber.overlay_link(&ips, net.mtu);
    let linked = plumber
        .link(Some(&ip))
        .and_then(|()| plumber.finish(env, conf, &ip));
    match linked {
        Ok(attached) => {
            let hi = plumber.host_ifname();
            plumber
                .runtime()
                .block_on(claim.commit(hi, "pipework (cni)"));
            Ok((ip, attached))
        }
        Err(e) => {
            plumber.runtime().block_on(claim.release("pipework (cni)"));
            Err(e)
        }
    }
}

/// DEL: the endpoint leaves etcd first. A namespace or link already gone
/// leaves it to the agent, which releases endpoints whose link vanished.
/// So does an etcd that cannot be reached: DEL still removes the link (a
/// runtime must not keep a pod terminating because etcd is away), and the
/// agent's sweep gives the address back once etcd answers again.
pub fn del(env: &Env, conf: &NetConf) -> CniResult<()> {
    if names::check_name(&conf.name).is_err() || env.netns.is_empty() {
        return Ok(());
    }
    let Ok(ns) = crate::netns::NetNs::open(std::path::Path::new(&env.netns)) else {
        return Ok(());
    };
    let rt = super::attach::runtime()?;
    rt.block_on(async {
        let cont = crate::netlink::Net::new(Some(&ns), false)?;
        let Some(link) = cont.link_by_name(&env.ifname).await? else {
            return Ok(());
        };
        // Only a record we signed on this very link names the address to
        // release: the guest controls the link's MAC and alias.
        let crate::record::Seen::Ours(rec) = crate::inventory::read(&link, ns.inode()?) else {
            return Ok(());
        };
        if rec.h != names::bridge(&conf.name) {
            return Ok(());
        }
        if let Err(e) = crate::overlay::attach::before_detach(&rec, false).await {
            eprintln!(
                "pipework (cni): warning: {e}; removing the interface anyway, this host's overlay agent releases the address when etcd answers"
            );
        }
        Ok::<_, crate::Error>(())
    })?;
    Ok(())
}
