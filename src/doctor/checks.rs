//! Checks across the path once both ends are walked: the MTU, the
//! firewall between two ports of one bridge, the route back and
//! `rp_filter`, and macvlan's isolation from its own host.
use super::ends::Side;
use super::report::Report;
use super::walk::HostEnd;
use crate::untrusted::{display, shell_word};
use std::net::IpAddr;

/// The smallest MTU along the path against each end's MTU: a frame
/// bigger than some hop's MTU is dropped there, silently (a veth drops
/// what exceeds its peer's MTU; a bridge port what exceeds the port's).
pub fn mtu(r: &mut Report, a: (&Side, &HostEnd), b: Option<(&Side, &HostEnd)>) {
    let mut path: Vec<(String, u32)> = Vec::new();
    let mut ends: Vec<(&Side, &HostEnd)> = vec![a];
    ends.extend(b);
    for (side, e) in &ends {
        path.push((
            format!("{} {}", side.label, display(&e.iface.name)),
            e.iface.mtu,
        ));
        if let Some(p) = &e.peer {
            path.push((format!("host {}", display(&p.name)), p.mtu));
        }
    }
    let Some((min_at, min)) = path.iter().min_by_key(|(_, m)| *m).cloned() else {
        return;
    };
    let mut bad = false;
    for (side, e) in &ends {
        if e.iface.mtu > min {
            bad = true;
            let name = display(&e.iface.name);
            let hop = format!("{} {name}", side.label);
            r.cause(
                "mtu-mismatch",
                &hop,
                format!(
                    "{hop} has MTU {}, but {min_at} has {min}: bigger frames are dropped",
                    e.iface.mtu
                ),
                Some(format!(
                    "{} link set dev {} mtu {min}",
                    side.ip_cmd(),
                    shell_word(&e.iface.name)
                )),
            );
        }
    }
    let list: Vec<String> = path.iter().map(|(h, m)| format!("{h} {m}")).collect();
    r.hop("mtu", !bad, list.join(", "));
}

/// Two ports of one Linux bridge: a FORWARD DROP policy (Docker's) with
/// bridge-nf-call-iptables on and no accept rule drops every frame
/// between them. Read through `firewall::why_dropped`: `iptables -S`
/// (the one program the firewall module runs, never through a shell)
/// and nftables' netlink for native chains; nothing is changed.
pub fn forward(r: &mut Report, bridge: &str) {
    let hop = format!("firewall {}", display(bridge));
    match crate::firewall::why_dropped(bridge) {
        None => r.hop(&hop, true, "frames between its ports are not dropped"),
        Some(why) => {
            r.hop(&hop, false, why.clone());
            let c = shell_word(&format!("pipework:{bridge}")).into_owned();
            let bridge = shell_word(bridge);
            let chain = if crate::firewall::docker_user_chain() {
                "DOCKER-USER"
            } else {
                "FORWARD"
            };
            r.cause(
                "forward-drop",
                &hop,
                why,
                Some(format!(
                    "iptables -I {chain} -i {bridge} -o {bridge} -m comment --comment {c} -j ACCEPT"
                )),
            );
        }
    }
}

/// A sysctl as namespace `side` sees it (`/proc/sys/net` is per
/// namespace: read from a thread inside it).
pub fn sysctl(side: &Side, key: &str) -> Option<String> {
    let path = format!("/proc/sys/{}", key.replace('.', "/"));
    let read = move || {
        std::fs::read_to_string(&path)
            .ok()
            .map(|s| s.trim().to_string())
    };
    if side.host {
        read()
    } else {
        side.ns.run(read).ok().flatten()
    }
}

/// The way back: B needs a route to A's address, and with strict
/// `rp_filter` that route must leave through the interface A's packets
/// arrive on, or the kernel drops them on arrival.
///
/// Returns whether the way back leaves by another interface than the one
/// A's packets arrive on (asymmetric: the replies may never reach A).
pub async fn route_back(
    r: &mut Report,
    b: &Side,
    b_if: &crate::netlink::Link,
    a_src: IpAddr,
) -> bool {
    let hop = format!("{} route to {a_src}", b.label);
    let route = match b.net.route_to(a_src).await {
        Ok(x) => x,
        Err(e) => {
            r.hop(&hop, false, format!("cannot ask: {e}"));
            return false;
        }
    };
    let Some(route) = route else {
        r.hop(&hop, false, "no route");
        r.cause(
            "no-route",
            &hop,
            format!("{} has no route back to {a_src}", b.label),
            Some(format!(
                "{} route replace {a_src} dev {}",
                b.ip_cmd(),
                shell_word(&b_if.name)
            )),
        );
        return false;
    };
    let out = route.oif.map(|i| b.name_of(i)).unwrap_or_default();
    let via = route
        .gateway
        .map(|g| format!(" via {g}"))
        .unwrap_or_default();
    if route.oif == Some(b_if.index) {
        r.hop(&hop, true, format!("dev {out}{via}"));
        return false;
    }
    // Leaves by another interface: strict reverse-path filtering (1)
    // drops A's packets as they arrive; loose (2) and off (0) do not.
    let name = &b_if.name;
    if !a_src.is_ipv4() {
        r.hop(&hop, true, format!("dev {out}{via}, not {}", display(name)));
        return true;
    }
    let per_if = crate::request::check_ifname(name)
        .ok()
        .and_then(|()| sysctl(b, &format!("net/ipv4/conf/{name}/rp_filter")));
    let all = sysctl(b, "net/ipv4/conf/all/rp_filter");
    let eff = [per_if, all]
        .iter()
        .flatten()
        .filter_map(|v| v.parse::<u8>().ok())
        .max()
        .unwrap_or(0);
    let shown = display(name);
    r.hop(
        &hop,
        eff != 1,
        format!("dev {out}{via}, not {shown} where A's packets arrive; rp_filter {eff}"),
    );
    if eff == 1 {
        r.cause(
            "rp-filter",
            format!("{} {shown}", b.label),
            format!(
                "{} answers {a_src} through {out}, not {shown}, and strict rp_filter drops A's packets on arrival",
                b.label
            ),
            Some(format!(
                "{} route replace {a_src} dev {}",
                b.ip_cmd(),
                shell_word(name)
            )),
        );
    }
    true
}

/// A macvlan (or ipvlan) guest and its own host: the kernel keeps the
/// parent apart from its children, so the host only reaches the guest
/// through another macvlan on the same parent (`pipework host-shim`).
pub async fn macvlan_host(r: &mut Report, host: &Side, guest: &HostEnd, guest_ip: IpAddr) {
    let Some(parent) = &guest.parent else { return };
    let hop = format!("host route to {guest_ip}");
    let route = host.net.route_to(guest_ip).await.ok().flatten();
    let via = route
        .as_ref()
        .and_then(|r| r.oif)
        .and_then(|i| host.link(i));
    let shim = via.filter(|l| {
        l.index != parent.index
            && matches!(l.kind.as_deref(), Some("macvlan" | "ipvlan"))
            && l.link == Some(parent.index)
    });
    if let Some(s) = shim {
        r.hop(&hop, true, format!("through shim {}", display(&s.name)));
        return;
    }
    let pn = display(&parent.name).into_owned();
    r.hop(
        &hop,
        false,
        format!("through {pn}, the parent: the kernel keeps it from its own macvlan children"),
    );
    let addr = host
        .addrs_of(parent.index)
        .into_iter()
        .map(|a| a.net)
        .find(|n| n.contains(guest_ip))
        .and_then(|n| super::ends::free_addr(host, n, guest_ip));
    let pw = shell_word(&parent.name);
    r.cause(
        "macvlan-host",
        &hop,
        format!(
            "the host reaches {guest_ip} through {pn}, the parent of the guest's {}; a {} child and its parent never talk",
            guest.kind(),
            guest.kind()
        ),
        Some(match addr {
            Some(a) => format!("pipework host-shim {pw} {a}"),
            None => format!("pipework host-shim {pw} <free address>/<len>"),
        }),
    );
}
