//! A guest and the host: the host talks to a guest behind a bridge (or a
//! routed veth) only with an address of its own there. Which host
//! address A should reach when B is the host, and whether the host's
//! route to B leaves by the guest's bridge.
use super::ends::{self, Side};
use super::report::Report;
use crate::untrusted::display;
use std::net::IpAddr;

/// B is the host: the host address A should reach is the one on the
/// bridge (or routed veth) A's interface leads to. When the host has
/// none there, that is the cause (and the walk ends).
pub fn host_target(r: &mut Report, a: &Side, host: &Side) -> Option<IpAddr> {
    let mut missing = None;
    for aa in a.global_addrs() {
        let Some(l) = a.link(aa.index) else { continue };
        let Some(hs) = ends::host_side_of(host, l) else {
            continue;
        };
        if let Some(h) = host
            .addrs_of(hs.index)
            .into_iter()
            .find(|h| aa.net.contains(h.net.ip()))
        {
            return Some(h.net.ip());
        }
        missing.get_or_insert((hs.clone(), aa.net, l.name.clone()));
    }
    let Some((hs, net, ifname)) = missing else {
        // Not behind a veth (macvlan, …): any host address in A's subnets.
        return ends::pick_target(a, &host.global_addrs());
    };
    no_host_address(
        r,
        host,
        &hs,
        net,
        &format!("{}'s {}", a.label, display(&ifname)),
    );
    None
}

/// A is the host: its route to B must go out through the bridge (or
/// routed veth) B's interface leads to, or the host reaches B some other
/// way (the default route) and B's answers never find it.
pub fn host_reaches(
    r: &mut Report,
    host: &Side,
    b: &Side,
    target: IpAddr,
    out: &crate::netlink::Link,
) -> bool {
    let Some(bl) = b
        .addrs
        .iter()
        .find(|x| x.net.ip() == target)
        .and_then(|x| b.link(x.index))
    else {
        return true;
    };
    let Some(hs) = ends::host_side_of(host, bl) else {
        return true;
    };
    if hs.index == out.index {
        return true;
    }
    let net = b
        .addrs
        .iter()
        .find(|x| x.net.ip() == target)
        .map(|x| x.net)
        .unwrap_or_else(|| ipnetwork::IpNetwork::from(target));
    no_host_address(
        r,
        host,
        hs,
        net,
        &format!("{}'s {}", b.label, display(&bl.name)),
    );
    false
}

fn no_host_address(
    r: &mut Report,
    host: &Side,
    hs: &crate::netlink::Link,
    net: ipnetwork::IpNetwork,
    what: &str,
) {
    let name = display(&hs.name).into_owned();
    let hop = format!("host {name}");
    r.hop(&hop, false, format!("no host address in {}", net.network()));
    let free = ends::free_addr(host, net, net.ip());
    r.cause(
        "no-route",
        &hop,
        format!(
            "{what} is behind {name}, but the host has no address in {}/{} there: the host cannot talk to it",
            net.network(),
            net.prefix()
        ),
        free.map(|a| {
            format!(
                "ip addr add {a} dev {}",
                crate::untrusted::shell_word(&hs.name)
            )
        }),
    );
}
