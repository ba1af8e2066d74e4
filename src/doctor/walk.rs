//! The path from one end's interface to the host: the interface itself,
//! then what its kind connects it to (a veth's peer and the bridge that
//! peer is a port of, a macvlan's parent, a point-to-point peer in the
//! other end). Every hop is checked for being up as it is walked.
use super::ends::Side;
use super::report::Report;
use crate::netlink::Link;
use crate::record::Seen;
use crate::untrusted::{display, shell_word};

/// Where an end's interface leads on the host.
#[derive(Debug, Clone, Default)]
pub struct HostEnd {
    /// The interface in the end's namespace.
    pub iface: Link,
    /// A veth's peer in the host namespace.
    pub peer: Option<Link>,
    /// The Linux bridge that peer is a port of.
    pub bridge: Option<Link>,
    /// A macvlan/ipvlan's parent in the host namespace.
    pub parent: Option<Link>,
    /// A veth whose peer is in the other end's namespace.
    pub p2p: bool,
    /// The OVS port the veth's peer is, when OVSDB has it.
    pub ovs: Option<crate::ovsdb::ops::PortRecord>,
}

impl HostEnd {
    pub fn kind(&self) -> &str {
        self.iface.kind.as_deref().unwrap_or("device")
    }
}

/// Walk `side`'s interface `iface` as far as the host, adding hops and
/// `link-down` causes. `other` is the far end, for a point-to-point veth.
pub async fn end(
    r: &mut Report,
    side: &Side,
    host: &Side,
    other: Option<&Side>,
    iface: &Link,
) -> HostEnd {
    let mut out = HostEnd {
        iface: iface.clone(),
        ..Default::default()
    };
    let name = display(&iface.name).into_owned();
    let hop = format!("{} {name}", side.label);
    let addrs: Vec<String> = side
        .addrs_of(iface.index)
        .iter()
        .map(|a| a.net.to_string())
        .collect();
    let seen = format!(
        "{}, {}, mtu {}, {}",
        out.kind(),
        if iface.up { "up" } else { "DOWN" },
        iface.mtu,
        if addrs.is_empty() {
            "no address".to_string()
        } else {
            addrs.join(" ")
        }
    );
    r.hop(&hop, iface.up, seen);
    if !iface.up {
        r.cause(
            "link-down",
            &hop,
            format!("{name} is down in {}", side.label),
            Some(format!(
                "{} link set dev {} up",
                side.ip_cmd(),
                shell_word(&iface.name)
            )),
        );
    }
    // A link with ARP off never answers a neighbour's ARP request: the
    // other end can only reach it with a static entry.
    if iface.up && iface.noarp && iface.link_type == 1 && !iface.mac.is_empty() {
        r.hop(format!("{hop} arp"), false, "ARP is off (NOARP)");
        r.cause(
            "neigh-failed",
            format!("{hop} arp"),
            format!(
                "{name} in {} has ARP off: it never answers the other end's ARP requests",
                side.label
            ),
            Some(format!(
                "{} link set dev {} arp on",
                side.ip_cmd(),
                shell_word(&iface.name)
            )),
        );
    }
    record(r, side, iface, &hop);
    if side.host {
        return out;
    }
    match iface.kind.as_deref() {
        Some("veth") => veth(r, side, host, other, iface, &mut out).await,
        Some("macvlan" | "ipvlan" | "macvtap") => {
            let parent = iface.link.and_then(|p| host.link(p)).cloned();
            match parent {
                Some(p) => {
                    let pn = display(&p.name).into_owned();
                    let hop = format!("host {pn}");
                    r.hop(
                        &hop,
                        p.up,
                        format!(
                            "parent of {} {name}, {}",
                            side.label,
                            if p.up { "up" } else { "DOWN" }
                        ),
                    );
                    if !p.up {
                        r.cause(
                            "link-down",
                            &hop,
                            format!("{pn}, the parent of {name}, is down"),
                            Some(format!("ip link set dev {} up", shell_word(&p.name))),
                        );
                    }
                    out.parent = Some(p);
                }
                None => r.hop(
                    format!("{hop} parent"),
                    true,
                    "the parent is not in the host namespace: not walked further",
                ),
            }
        }
        k => r.hop(
            format!("{hop} path"),
            true,
            format!(
                "{}: not walked further on the host",
                k.unwrap_or("physical or unknown device")
            ),
        ),
    }
    out
}

/// A veth: its peer on the host (and the bridge it is a port of), or in
/// the other end's namespace (a point-to-point link).
async fn veth(
    r: &mut Report,
    side: &Side,
    host: &Side,
    other: Option<&Side>,
    iface: &Link,
    out: &mut HostEnd,
) {
    let Some(pi) = iface.link else { return };
    // The peer index is in the peer's namespace: a link there with that
    // index that names ours as its peer is the one.
    let is_peer = |l: &&Link| {
        l.index == pi && l.kind.as_deref() == Some("veth") && l.link == Some(iface.index)
    };
    // The far end being the host itself is the ordinary host-peer case.
    if let Some(o) = other.filter(|o| !o.host)
        && let Some(p) = o.links.iter().find(is_peer)
    {
        out.p2p = true;
        r.hop(
            format!("{} {} link", side.label, display(&iface.name)),
            true,
            format!("point-to-point veth to {} {}", o.label, display(&p.name)),
        );
        return;
    }
    let Some(peer) = host.links.iter().find(is_peer).cloned() else {
        r.hop(
            format!("{} {} peer", side.label, display(&iface.name)),
            true,
            "the veth peer is not in the host namespace: not walked further",
        );
        return;
    };
    let pn = display(&peer.name).into_owned();
    let hop = format!("host {pn}");
    let bridge = peer.controller.and_then(|c| host.link(c)).cloned();
    let port = match &bridge {
        Some(b) if b.is_bridge() => host.net.bridge_port_state(peer.index).await.ok().flatten(),
        _ => None,
    };
    let mut seen = format!(
        "veth peer of {} {}, {}, mtu {}",
        side.label,
        display(&iface.name),
        if peer.up { "up" } else { "DOWN" },
        peer.mtu
    );
    if let Some(b) = &bridge {
        seen.push_str(&format!(", port of {}", display(&b.name)));
        if let Some(s) = port {
            seen.push_str(&format!(" ({s})"));
        }
    }
    // A port that is up but not forwarding (STP blocking/listening)
    // drops frames as surely as a link down.
    let blocked = peer.up && port.is_some_and(|s| s != "forwarding");
    r.hop(&hop, peer.up && !blocked, seen);
    if !peer.up {
        r.cause(
            "link-down",
            &hop,
            format!(
                "{pn}, the host end of {} {}, is down",
                side.label,
                display(&iface.name)
            ),
            Some(format!("ip link set dev {} up", shell_word(&peer.name))),
        );
    } else if blocked {
        r.cause(
            "link-down",
            &hop,
            format!(
                "bridge port {pn} is {}, not forwarding",
                port.unwrap_or("?")
            ),
            None,
        );
    }
    if let Some(b) = &bridge
        && b.is_bridge()
    {
        let bn = display(&b.name).into_owned();
        let bhop = format!("bridge {bn}");
        if !r.hops.iter().any(|h| h.hop == bhop) {
            r.hop(
                &bhop,
                b.up,
                format!("{}, mtu {}", if b.up { "up" } else { "DOWN" }, b.mtu),
            );
        }
        if !b.up {
            r.cause(
                "link-down",
                &bhop,
                format!("bridge {bn} is down"),
                Some(format!("ip link set dev {} up", shell_word(&b.name))),
            );
        }
    }
    let bridge = bridge.filter(|b| b.is_bridge());
    if bridge.is_none() {
        match super::ovs::port(&peer.name).await {
            Ok(Some(p)) => {
                r.hop(
                    format!("ovs {}", display(p.bridge.as_deref().unwrap_or("?"))),
                    true,
                    format!("port {pn}, {}", super::ovs::vlan_text(&p)),
                );
                out.ovs = Some(p);
            }
            Ok(None) => {}
            Err(e) => r.hop(
                format!("{hop} ovs"),
                true,
                format!("not on a Linux bridge, and OVSDB cannot be asked: {e}"),
            ),
        }
    }
    out.peer = Some(peer);
    out.bridge = bridge;
}

/// What the interface's alias says about it: a verified pipework record
/// is named, a forged one is reported and never followed.
fn record(r: &mut Report, side: &Side, iface: &Link, hop: &str) {
    let ns = if side.host {
        crate::inventory::host_ns()
    } else {
        side.ns.inode().unwrap_or(0)
    };
    match crate::inventory::read(iface, ns) {
        Seen::Foreign => {}
        Seen::Ours(rec) => r.hop(
            format!("{hop} record"),
            true,
            format!(
                "pipework {} attachment to {}",
                format!("{:?}", rec.k).to_lowercase(),
                display(&rec.h)
            ),
        ),
        Seen::Forged(why) => r.hop(
            format!("{hop} record"),
            false,
            format!("its alias looks like a pipework record but is forged ({why}): not followed"),
        ),
    }
}
