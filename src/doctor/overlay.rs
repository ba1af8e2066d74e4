//! The overlay hop: A's bridge is an overlay network's (`ov-NET`), so B
//! sits behind another host and the frames cross the VXLAN device. What
//! must hold, checked in order: this host's agent runs; B's endpoint and
//! B's host are alive in etcd (both live under that host's lease, so a
//! dead agent there takes them away); and this host's kernel has the FDB
//! and neighbour entries that send B's MAC to B's host. Read only: one
//! etcd range over the overlay's keys, one dump of the VXLAN entries.
use super::ends::Side;
use super::report::Report;
use crate::overlay::{model::Model, names, state, store};
use crate::untrusted::{display, shell_word};
use std::net::IpAddr;

fn mac_text(m: &[u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Check network `net` on this host (`host`) for target `b`.
pub async fn check(r: &mut Report, host: &Side, net: &str, b: IpAddr) {
    let hop = format!("overlay {net}");
    let agent_hop = format!("{hop} agent");
    let Some(agent) = state::load() else {
        r.hop(&agent_hop, false, "no agent state on this host");
        r.cause(
            "overlay-agent-down",
            &agent_hop,
            "no overlay agent has run on this host (no signed agent state)",
            Some("pipework overlay agent --underlay IFACE".into()),
        );
        return;
    };
    let alive = crate::inventory::alive(agent.pid);
    r.hop(
        &agent_hop,
        alive,
        format!(
            "host {}, pid {}{}",
            display(&agent.host),
            agent.pid,
            if alive { "" } else { " (not running)" }
        ),
    );
    if !alive {
        r.cause(
            "overlay-agent-down",
            &agent_hop,
            format!(
                "the overlay agent of this host ({}, pid {}) is not running: nothing keeps the VXLAN entries in step with etcd",
                display(&agent.host),
                agent.pid
            ),
            Some(format!(
                "pipework overlay agent --underlay IFACE --name {}",
                shell_word(&agent.host)
            )),
        );
    }
    let etcd_hop = format!("{hop} etcd");
    let view = match store::Store::connect(&agent.etcd).await {
        Ok(st) => match st.list_rev(store::ROOT).await {
            Ok((kvs, _)) => Model::from_kvs(kvs),
            Err(e) => {
                r.hop(&etcd_hop, false, format!("cannot read: {e}"));
                return;
            }
        },
        Err(e) => {
            r.hop(&etcd_hop, false, format!("cannot reach: {e}"));
            return;
        }
    };
    if let Some(spec) = view.nets.get(net) {
        forward_accepts(r, &hop, spec, b, alive);
    }
    let Some((ep, _)) = view.ep(net, b) else {
        r.hop(
            &etcd_hop,
            false,
            format!("no endpoint {b} in network {net}"),
        );
        r.cause(
            "overlay-peer-down",
            &etcd_hop,
            format!(
                "etcd has no endpoint {b} in {net}: its host's agent stopped (its lease took the endpoint away) or B was never attached to {net}"
            ),
            None,
        );
        return;
    };
    if ep.host == agent.host {
        r.hop(&etcd_hop, true, format!("{b} is on this host"));
        return;
    }
    let peer = display(&ep.host).into_owned();
    let Some(h) = view.hosts.get(&ep.host) else {
        r.hop(
            &etcd_hop,
            false,
            format!("{b} is on host {peer}, which is not alive"),
        );
        r.cause(
            "overlay-peer-down",
            &etcd_hop,
            format!("B's host {peer} is not alive in etcd: its agent is down"),
            Some(format!(
                "pipework overlay agent --underlay IFACE --name {}  (on {peer})",
                shell_word(&ep.host)
            )),
        );
        return;
    };
    // What this host's agent programs for B (the same function): the
    // peer's underlay, or for an encrypted network its tunnel address.
    let encrypted = view.nets.get(net).is_some_and(|s| s.encrypt);
    let Some((vtep, mac)) = view.entry(net, b, &agent.host) else {
        r.hop(
            &etcd_hop,
            false,
            format!("{b} on host {peer}, which has no WireGuard for encrypted network {net}"),
        );
        r.cause(
            "overlay-peer-down",
            &etcd_hop,
            format!(
                "{net} is encrypted and B's host {peer} registered no WireGuard key: its kernel lacks WireGuard, so {net} is not built there"
            ),
            None,
        );
        return;
    };
    r.hop(
        &etcd_hop,
        true,
        if encrypted {
            format!(
                "{b} on host {peer} (alive, underlay {}, tunnel {vtep})",
                h.underlay
            )
        } else {
            format!("{b} on host {peer} (alive, underlay {})", h.underlay)
        },
    );
    let vx_name = names::vxlan(net);
    let vx_hop = format!("{hop} {vx_name}");
    let vx = match host.net.link_by_name(&vx_name).await {
        Ok(Some(l)) => l,
        Ok(None) | Err(_) => {
            r.hop(&vx_hop, false, "no VXLAN device on this host");
            if alive {
                r.cause(
                    "overlay-no-entry",
                    &vx_hop,
                    format!("this host has no {vx_name}: the agent has not built {net} here"),
                    None,
                );
            }
            return;
        }
    };
    if let Some(spec) = view.nets.get(net) {
        device_settings(r, host, &vx_hop, &vx_name, spec, vx.index).await;
    }
    // An encrypted network's frames come twice through the guard: WireGuard
    // from the peer's underlay, then VXLAN from its tunnel address.
    let filter_hop = format!("{hop} source filter");
    source_filter(r, &filter_hop, &peer, "underlay", h.underlay);
    if encrypted {
        let hop = format!("{hop} tunnel source filter");
        source_filter(r, &hop, &peer, "tunnel address", vtep);
    }
    let have = match host.net.vxlan_entries(vx.index).await {
        Ok(h) => h,
        Err(e) => {
            r.hop(&vx_hop, false, format!("cannot read its entries: {e}"));
            return;
        }
    };
    let fdb_ok = have.fdb.get(&mac) == Some(&vtep);
    let neigh_ok = have.neigh.get(&b) == Some(&mac);
    let m = mac_text(&mac);
    r.hop(
        &vx_hop,
        fdb_ok && neigh_ok,
        format!(
            "fdb {m} → {}, neigh {b} → {}",
            have.fdb
                .get(&mac)
                .map(IpAddr::to_string)
                .unwrap_or_else(|| "missing".into()),
            have.neigh
                .get(&b)
                .map(mac_text)
                .unwrap_or_else(|| "missing".into())
        ),
    );
    let mut fixes = Vec::new();
    let vx_word = shell_word(&vx_name);
    if !fdb_ok {
        fixes.push(format!(
            "bridge fdb replace {m} dev {vx_word} dst {vtep} self permanent"
        ));
    }
    if !neigh_ok {
        fixes.push(format!(
            "ip neigh replace {b} lladdr {m} dev {vx_word} nud permanent"
        ));
    }
    if !fixes.is_empty() {
        r.cause(
            "overlay-no-entry",
            &vx_hop,
            format!(
                "this host's {vx_name} lacks the {} entry for {b} on {peer} (the agent restores it at its next resync)",
                match (fdb_ok, neigh_ok) {
                    (false, false) => "FDB and neighbour",
                    (false, true) => "FDB",
                    _ => "neighbour",
                }
            ),
            Some(fixes.join(" && ")),
        );
    }
}

/// This host's forward chains against network `spec`'s routed traffic of
/// B's family. Where one drops it (Docker's FORWARD DROP with its
/// DOCKER-USER, a firewalld chain with policy drop), the agent keeps
/// accepts of ours there (`firewall::accept_routed`); with one deleted (a
/// firewall reload) traffic is dropped and nothing else along the path
/// shows why. A and B are endpoints of the network, so only the accept
/// within it (`-i ov-X -o ov-X`) is a cause; its other accepts (egress,
/// replies) missing are named on the hop. The firewall module decides
/// what is missing, by the same rules the agent adds.
fn forward_accepts(r: &mut Report, hop: &str, spec: &store::NetSpec, b: IpAddr, alive: bool) {
    let v6 = b.is_ipv6();
    let fam = if v6 { "IPv6" } else { "IPv4" };
    let hop = format!("{hop} forward accepts ({fam})");
    let routed = names::routed(spec);
    let br = routed.bridge.clone();
    let restore = if alive {
        "the running agent re-adds them at its next kernel check"
    } else {
        "the agent is not running, so nothing puts them back: start it and it re-adds them"
    };
    let m = match crate::firewall::routed_accepts_missing(&routed, v6) {
        Ok(m) => m,
        // Unknown, not a drop: nothing says the path is blocked.
        Err(e) => {
            r.hop(&hop, false, format!("cannot check: {e}"));
            return;
        }
    };
    let others = if m.others.is_empty() {
        String::new()
    } else {
        format!(
            "; not needed between endpoints, missing: {}",
            m.others.join(", ")
        )
    };
    let mut lacking: Vec<String> = m.rules.iter().map(|x| format!("`{x}`")).collect();
    lacking.extend(
        (m.chains.iter())
            .map(|c| format!("nftables chain `{c}` lacks ours (comment {})", m.comment)),
    );
    // The kernel says it drops and our accepts cannot be listed: the
    // agent (with the same tool) cannot add them either.
    let restore = match &m.unlisted {
        Some(why) => {
            lacking.push(why.clone());
            "nothing can add them without the tool"
        }
        None => restore,
    };
    if lacking.is_empty() {
        r.hop(
            &hop,
            true,
            format!("no chain that drops it lacks our accept within {br}{others}"),
        );
        return;
    }
    r.hop(
        &hop,
        false,
        format!("missing: {}{others}", lacking.join(", ")),
    );
    r.cause(
        "overlay-forward-drop",
        &hop,
        format!(
            "this host's forward chain drops {br}'s routed {fam} traffic between its endpoints and our accept for it is missing: {}; {restore}",
            lacking.join(", ")
        ),
        (!m.rules.is_empty()).then(|| m.rules.join(" && ")),
    );
}

/// The VXLAN device's VNI and port against the network's definition in
/// etcd: a device left from an earlier network of the same name sends
/// frames its peers drop (another VNI) or never receive (another port).
async fn device_settings(
    r: &mut Report,
    host: &Side,
    vx_hop: &str,
    vx_name: &str,
    spec: &store::NetSpec,
    index: u32,
) {
    let c = match host.net.vxlan_conf(index).await {
        Ok(Some(c)) => c,
        Ok(None) => {
            r.hop(vx_hop, false, format!("{vx_name} is not a VXLAN device"));
            return;
        }
        Err(e) => {
            r.hop(vx_hop, false, format!("cannot read its settings: {e}"));
            return;
        }
    };
    let show = |v: Option<String>| v.unwrap_or_else(|| "none".into());
    let mut diff = Vec::new();
    if c.vni != Some(spec.vni) {
        diff.push(format!(
            "VNI {} (the network's is {})",
            show(c.vni.map(|v| v.to_string())),
            spec.vni
        ));
    }
    if c.port != Some(spec.port) {
        diff.push(format!(
            "port {} (the network's is {})",
            show(c.port.map(|v| v.to_string())),
            spec.port
        ));
    }
    let hop = format!("{vx_hop} settings");
    if diff.is_empty() {
        r.hop(&hop, true, format!("VNI {}, port {}", spec.vni, spec.port));
        return;
    }
    let detail = diff.join(", ");
    r.hop(&hop, false, detail.clone());
    r.cause(
        "overlay-device-mismatch",
        &hop,
        format!(
            "{vx_name} does not match network {}: {detail}; its frames do not reach the other hosts",
            display(&spec.name)
        ),
        Some(format!(
            "ip link del {vx_name}  (the running agent re-creates it from the network's definition)"
        )),
    );
}

/// The VXLAN guard on this host (the nftables sets of registered hosts'
/// underlay and tunnel addresses): B's host must be in it, or every frame
/// B's host sends here (B's replies) is dropped before it reaches the
/// VXLAN device. `what` names the address (underlay, tunnel address).
fn source_filter(r: &mut Report, hop: &str, peer: &str, what: &str, addr: IpAddr) {
    match crate::firewall::vxlan_members() {
        Ok(None) => r.hop(hop, true, "no VXLAN guard on this host"),
        Ok(Some(m)) if m.contains(&addr) => {
            r.hop(hop, true, format!("{peer}'s {what} {addr} is admitted"))
        }
        Ok(Some(_)) => {
            r.hop(
                hop,
                false,
                format!("{peer}'s {what} {addr} is not in the guard's set"),
            );
            let set = if addr.is_ipv4() { "hosts4" } else { "hosts6" };
            r.cause(
                "overlay-filtered",
                hop,
                format!(
                    "this host drops VXLAN from {peer} ({addr}): its address is missing from the member set (the agent puts it back at its next kernel check)"
                ),
                Some(format!(
                    "nft add element inet pipework_vxlan {set} {{ {addr} }}"
                )),
            );
        }
        Err(e) => r.hop(hop, false, format!("cannot read: {e}")),
    }
}
