//! The kernel side of one overlay network on one host: a Linux bridge, a
//! VXLAN port on it (learning off, ARP proxied), and per remote endpoint a
//! static FDB entry (MAC → remote VTEP) plus a permanent neighbour entry
//! (IP → MAC) so ARP is answered locally and nothing floods.
use super::store::NetSpec;
use crate::error::{Error, Result};
use crate::netlink::vxlan::{VxlanEntries, VxlanSpec};
use crate::netlink::{Journal, Link, Net};
use crate::record::MarkKind;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

/// The underlay as the agent resolved it.
#[derive(Debug, Clone)]
pub struct Underlay {
    pub ifname: String,
    pub index: u32,
    pub ip: IpAddr,
    pub mtu: u32,
}

/// What a host should have for one network: remote MAC → (VTEP, the
/// endpoint's addresses: one, or one per family).
pub type Desired = BTreeMap<[u8; 6], (IpAddr, BTreeSet<IpAddr>)>;

/// What the kernel has on the VXLAN device.
pub type Have = VxlanEntries;

/// Differences between etcd and the kernel, for `overlay status`.
#[derive(Debug, Default, serde::Serialize)]
pub struct Drift {
    pub missing: Vec<String>,
    pub stale: Vec<String>,
}

/// What differs between an existing VXLAN device and what `net` wants
/// (VNI, port, local address, underlay device, MTU); empty when the same.
pub async fn device_diff(
    net_ops: &Net,
    net: &NetSpec,
    u: &Underlay,
    vx: &Link,
) -> Result<Vec<String>> {
    let Some(c) = net_ops.vxlan_conf(vx.index).await? else {
        return Ok(vec![format!("{} is not a VXLAN device", vx.name)]);
    };
    let mut d = Vec::new();
    let mut cmp = |what: &str, have: Option<String>, want: String| {
        let have = have.unwrap_or_else(|| "none".into());
        if have != want {
            d.push(format!("{what} {have} (wanted {want})"));
        }
    };
    cmp("VNI", c.vni.map(|v| v.to_string()), net.vni.to_string());
    cmp("port", c.port.map(|v| v.to_string()), net.port.to_string());
    cmp("local", c.local.map(|v| v.to_string()), u.ip.to_string());
    cmp(
        "device",
        c.dev.map(|v| format!("#{v}")),
        format!("#{}", u.index),
    );
    cmp("MTU", Some(vx.mtu.to_string()), net.mtu.to_string());
    Ok(d)
}

/// Whether `vx` is as `net` wants it (the kernel check's question).
pub async fn device_matches(net_ops: &Net, net: &NetSpec, u: &Underlay, vx: &Link) -> Result<bool> {
    match net_ops.link_by_index(vx.index).await? {
        Some(l) if l.name == vx.name => Ok(device_diff(net_ops, net, u, &l).await?.is_empty()),
        _ => Ok(false),
    }
}

/// Bridge and VXLAN device for `net`, created if missing. A restarted
/// agent finds them and leaves the forwarding path alone, unless the VXLAN
/// device differs from the network's definition (a network re-created
/// with another VNI, a moved underlay): then the device the agent made is
/// made again, with a log line. An admin's look-alike is never touched.
/// A failure after the bridge was made takes the bridge away again.
/// Returns the VXLAN device.
/// `gateway`: put the network's gateway on the bridge (false while an
/// endpoint holds that address: a network made before gateways existed).
pub async fn ensure(net_ops: &Net, net: &NetSpec, u: &Underlay, gateway: bool) -> Result<Link> {
    let br = super::names::bridge(&net.name);
    let vx = super::names::vxlan(&net.name);
    let mut j = Journal::new();
    let made = async {
        let bridge = match net_ops.link_by_name(&br).await? {
            Some(b) => b,
            None => {
                // Born under a temporary name, named and marked in one
                // request: a killed agent leaves no unmarked bridge.
                let mac = crate::driver::bridge::stable_mac(&br);
                let mark = (MarkKind::Overlay, net.name.as_str());
                let made = crate::driver::marked::create(net_ops, &br, "bridge", mark, |tmp| {
                    net_ops.add_bridge_down(tmp, net.mtu, mac)
                })
                .await?;
                match made {
                    Some(b) => {
                        net_ops.journal_delete_bridge(&mut j, b.clone());
                        b
                    }
                    None => net_ops
                        .link_by_name(&br)
                        .await?
                        .ok_or_else(|| Error::other(format!("{br} vanished")))?,
                }
            }
        };
        sync_gateway(net_ops, &bridge, net, gateway).await?;
        if let Some(l) = net_ops.link_by_name(&vx).await? {
            let diff = device_diff(net_ops, net, u, &l).await?;
            if diff.is_empty() {
                return Ok(l);
            }
            if !ours(&l, &net.name) {
                return Err(Error::bad(
                    &vx,
                    format!(
                        "exists, was not made by the agent, and differs from network {}: {}; remove it",
                        net.name,
                        diff.join(", ")
                    ),
                ));
            }
            eprintln!(
                "pipework overlay agent: {}: re-creating {vx}: {}",
                net.name,
                diff.join(", ")
            );
            net_ops.delete_link(&l).await?;
        }
        let mark = (MarkKind::Overlay, net.name.as_str());
        let controller = &bridge;
        let l = crate::driver::marked::create(net_ops, &vx, "vxlan", mark, |tmp| async move {
            // Undone by `marked` until committed, by `j` after.
            let mut born = Journal::new();
            let spec = VxlanSpec {
                name: &tmp,
                vni: net.vni,
                port: net.port,
                local: u.ip,
                dev: u.index,
                mtu: net.mtu,
                controller,
            };
            let l = net_ops.create_vxlan(&mut born, &spec).await?;
            born.commit();
            Ok(l)
        })
        .await?
        .ok_or_else(|| Error::other(format!("{vx} was created by someone else meanwhile")))?;
        if !net_ops.dry_run {
            net_ops.journal_delete(&mut j, format!("vxlan {vx}"), l.index);
        }
        // Bring the bridge up again in case an admin downed it.
        let _ = net_ops.set_up(&bridge).await;
        Ok(l)
    }
    .await;
    match made {
        Ok(l) => {
            j.commit();
            Ok(l)
        }
        Err(e) => {
            j.rollback().await;
            Err(e)
        }
    }
}

/// The anycast gateway: the same address (and, through `stable_mac` of
/// the bridge's name, the same MAC) on every host's bridge, one per family
/// the network has. ARP and Neighbour Solicitations for it are answered
/// by the local bridge; the VXLAN device (proxy, no neighbour entry for
/// it, no flood entry) never carries the question, nor the bridge's own
/// NA, RS or MLD, across. The IPv6 one skips DAD (`add_addr`): every host
/// holds it on purpose.
///
/// Only on a bridge the agent made (its mark): an admin's look-alike is
/// never given an address. There the gateways are the only addresses the
/// agent writes, so any other (but IPv6 link-local) is a stale one (a
/// network re-created with another subnet or gateway) and goes; with
/// `gateway` false (an endpoint holds the IPv4 gateway's address) the
/// IPv4 gateway goes too, or two would answer.
async fn sync_gateway(net_ops: &Net, bridge: &Link, net: &NetSpec, gateway: bool) -> Result<()> {
    if !ours(bridge, &net.name) {
        return Ok(());
    }
    let mut want: Vec<ipnetwork::IpNetwork> = Vec::new();
    if let (Some(gw), Some(s), true) = (net.gw(), net.subnet, gateway) {
        want.push(
            ipnetwork::IpNetwork::new(gw.into(), s.prefix())
                .map_err(|e| Error::other(e.to_string()))?,
        );
    }
    if let (Some(gw), Some(s)) = (net.gw6(), net.subnet6) {
        want.push(
            ipnetwork::IpNetwork::new(gw.into(), s.prefix())
                .map_err(|e| Error::other(e.to_string()))?,
        );
    }
    let mut present = Vec::new();
    for a in net_ops.addrs(bridge.index).await? {
        if want.contains(&a.net) {
            present.push(a.net);
            continue;
        }
        match a.net {
            ipnetwork::IpNetwork::V4(v4) => net_ops.del_addr4(bridge, v4.ip(), v4.prefix()).await?,
            // The kernel's own link-local address stays.
            ipnetwork::IpNetwork::V6(v6) if v6.ip().is_unicast_link_local() => {}
            ipnetwork::IpNetwork::V6(v6) => net_ops.del_addr6(bridge, v6.ip(), v6.prefix()).await?,
        }
    }
    for w in want {
        if !present.contains(&w) {
            if w.is_ipv6() {
                enable_ipv6(&bridge.name);
            }
            net_ops.add_addr(bridge, w).await?;
        }
    }
    Ok(())
}

/// A host whose default is `disable_ipv6=1` made our bridge without IPv6:
/// turn it on for this one device (ours), or the gateway cannot be added.
/// A failure shows as the address's own error just after.
fn enable_ipv6(dev: &str) {
    let f = format!("/proc/sys/net/ipv6/conf/{dev}/disable_ipv6");
    if std::fs::read_to_string(&f).is_ok_and(|v| v.trim() == "1") {
        let _ = std::fs::write(&f, "0");
    }
}

pub(super) fn ours(l: &Link, net: &str) -> bool {
    crate::inventory::mark_of(l).is_some_and(|m| m.m == MarkKind::Overlay && m.of == net)
}

/// Remove a network's devices when no container is plugged in any more,
/// and only the ones the agent made (their mark).
pub async fn remove_if_unused(net_ops: &Net, net: &str) -> Result<bool> {
    let br = super::names::bridge(net);
    let vx = super::names::vxlan(net);
    let Some(bridge) = net_ops.link_by_name(&br).await? else {
        return Ok(true);
    };
    let links = net_ops.links().await?;
    let ports = links
        .iter()
        .filter(|l| l.controller == Some(bridge.index) && l.name != vx)
        .count();
    if ports > 0 {
        return Ok(false);
    }
    for name in [&vx, &br] {
        if let Some(l) = links.iter().find(|l| &l.name == name)
            && ours(l, net)
        {
            net_ops.delete_link(l).await?;
        }
    }
    Ok(true)
}

/// Compare what etcd wants with what the kernel has.
pub fn drift(want: &Desired, have: &Have) -> Drift {
    let mut d = Drift::default();
    for (mac, (vtep, ips)) in want {
        let m = crate::request::format_mac(mac);
        if have.fdb.get(mac) != Some(vtep) {
            d.missing.push(format!("fdb {m} dst {vtep}"));
        }
        for ip in ips {
            if have.neigh.get(ip) != Some(mac) {
                d.missing.push(format!("neigh {ip} lladdr {m}"));
            }
        }
    }
    for (mac, vtep) in &have.fdb {
        if want.get(mac).map(|w| w.0) != Some(*vtep) && !want.contains_key(mac) {
            d.stale.push(format!(
                "fdb {} dst {vtep}",
                crate::request::format_mac(mac)
            ));
        }
    }
    let wanted_ips = wanted_ips(want);
    for (ip, mac) in &have.neigh {
        if !wanted_ips.contains(ip) {
            d.stale.push(format!(
                "neigh {ip} lladdr {}",
                crate::request::format_mac(mac)
            ));
        }
    }
    d
}

/// The neighbour addresses `want` backs, for one lookup per entry.
fn wanted_ips(want: &Desired) -> std::collections::HashSet<IpAddr> {
    want.values()
        .flat_map(|(_, ips)| ips.iter().copied())
        .collect()
}

/// Make the kernel match `want`: add or replace what is missing or wrong,
/// delete what no endpoint backs. Never a flush: entries that are right
/// are not touched, so traffic to them never stops. One entry the kernel
/// refuses does not stop the others: every failure is reported at the end.
pub async fn apply(net_ops: &Net, vx: &Link, want: &Desired) -> Result<usize> {
    let have = net_ops.vxlan_entries(vx.index).await?;
    let mut changes = 0;
    let mut failed = Vec::new();
    let mut step = |r: Result<()>| match r {
        Ok(()) => changes += 1,
        Err(e) => failed.push(e.to_string()),
    };
    for (mac, (vtep, ips)) in want {
        if have.fdb.get(mac) != Some(vtep) {
            step(net_ops.fdb_replace(vx, mac, *vtep).await);
        }
        for ip in ips {
            if have.neigh.get(ip) != Some(mac) {
                step(net_ops.neigh_replace(vx, *ip, mac).await);
            }
        }
    }
    for (mac, vtep) in &have.fdb {
        if !want.contains_key(mac) {
            step(net_ops.fdb_del(vx, mac, *vtep).await);
        }
    }
    let wanted_ips = wanted_ips(want);
    for (ip, mac) in &have.neigh {
        if !wanted_ips.contains(ip) {
            step(net_ops.neigh_del(vx, *ip, mac).await);
        }
    }
    if failed.is_empty() {
        Ok(changes)
    } else {
        Err(Error::other(format!(
            "{} of {} entry changes failed on {}: {}",
            failed.len(),
            changes + failed.len(),
            vx.name,
            failed.join("; ")
        )))
    }
}
