//! The kernel side of one overlay network on one host: a Linux bridge, a
//! VXLAN port on it (learning off, ARP proxied), and per remote endpoint a
//! static FDB entry (MAC → remote VTEP) plus a permanent neighbour entry
//! (IP → MAC) so ARP is answered locally and nothing floods.
use super::store::NetSpec;
use crate::error::{Error, Result};
use futures::TryStreamExt;
use netlink_packet_route::AddressFamily;
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};
use rtnetlink::{Handle, LinkBridge, LinkUnspec, LinkVxlan};
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

/// The underlay as the agent resolved it.
#[derive(Debug, Clone)]
pub struct Underlay {
    pub ifname: String,
    pub index: u32,
    pub ip: IpAddr,
    pub mtu: u32,
}

/// What a host should have for one network: remote MAC → (VTEP, IP).
pub type Desired = BTreeMap<[u8; 6], (IpAddr, Ipv4Addr)>;

/// What the kernel has on the VXLAN device.
#[derive(Debug, Default)]
pub struct Have {
    pub fdb: BTreeMap<[u8; 6], IpAddr>,
    pub neigh: BTreeMap<Ipv4Addr, [u8; 6]>,
}

/// Differences between etcd and the kernel, for `overlay status`.
#[derive(Debug, Default, serde::Serialize)]
pub struct Drift {
    pub missing: Vec<String>,
    pub stale: Vec<String>,
}

pub async fn link_index(h: &Handle, name: &str) -> Result<Option<(u32, u32)>> {
    let mut s = h.link().get().match_name(name.to_string()).execute();
    match s.try_next().await {
        Ok(Some(m)) => {
            let l = crate::netlink::Link::from_message(&m);
            Ok(Some((l.index, l.mtu)))
        }
        Ok(None) => Ok(None),
        Err(e) => {
            let err = Error::netlink(format!("looking up {name}"), e);
            if err.errno() == Some(libc::ENODEV) {
                Ok(None)
            } else {
                Err(err)
            }
        }
    }
}

/// Bridge and VXLAN device for `net`, created if missing, never recreated:
/// a restarted agent finds them and leaves the forwarding path alone.
/// Returns the VXLAN device's index.
pub async fn ensure(h: &Handle, net: &NetSpec, u: &Underlay) -> Result<u32> {
    let br = super::names::bridge(&net.name);
    let vx = super::names::vxlan(&net.name);
    let br_index = match link_index(h, &br).await? {
        Some((i, _)) => i,
        None => {
            let mac = crate::driver::bridge::stable_mac(&br);
            let msg = LinkBridge::new(&br)
                .mtu(net.mtu)
                .address(mac.to_vec())
                .up()
                .build();
            h.link()
                .add(msg)
                .execute()
                .await
                .map_err(|e| Error::netlink(format!("creating bridge {br}"), e))?;
            link_index(h, &br)
                .await?
                .map(|(i, _)| i)
                .ok_or_else(|| Error::other(format!("{br} vanished")))?
        }
    };
    if let Some((i, _)) = link_index(h, &vx).await? {
        return Ok(i);
    }
    let mut b = LinkVxlan::new(&vx, net.vni)
        .port(net.port)
        .learning(false)
        .proxy(true)
        .dev(u.index);
    b = match u.ip {
        IpAddr::V4(a) => b.local(a),
        IpAddr::V6(a) => b.local6(a),
    };
    let msg = b.mtu(net.mtu).controller(br_index).up().build();
    h.link()
        .add(msg)
        .execute()
        .await
        .map_err(|e| Error::netlink(format!("creating VXLAN {vx} (VNI {})", net.vni), e))?;
    let i = link_index(h, &vx)
        .await?
        .map(|(i, _)| i)
        .ok_or_else(|| Error::other(format!("{vx} vanished")))?;
    // Bring the bridge up again in case an admin downed it.
    let _ = h
        .link()
        .set(LinkUnspec::new_with_index(br_index).up().build())
        .execute()
        .await;
    Ok(i)
}

/// Remove a network's devices when no container is plugged in any more.
pub async fn remove_if_unused(h: &Handle, net: &str) -> Result<bool> {
    let br = super::names::bridge(net);
    let vx = super::names::vxlan(net);
    let Some((bi, _)) = link_index(h, &br).await? else {
        return Ok(true);
    };
    let links: Vec<_> = h
        .link()
        .get()
        .execute()
        .try_collect()
        .await
        .map_err(|e| Error::netlink("listing links", e))?;
    let ports = links
        .iter()
        .map(crate::netlink::Link::from_message)
        .filter(|l| l.controller == Some(bi) && l.name != vx)
        .count();
    if ports > 0 {
        return Ok(false);
    }
    for name in [&vx, &br] {
        if let Some((i, _)) = link_index(h, name).await? {
            let _ = h.link().del(i).execute().await;
        }
    }
    Ok(true)
}

fn mac6(v: &[u8]) -> Option<[u8; 6]> {
    v.try_into().ok()
}

/// The FDB and neighbour entries on a VXLAN device (ours: with a remote).
pub async fn have(h: &Handle, vx: u32) -> Result<Have> {
    let mut out = Have::default();
    let fdb: Vec<NeighbourMessage> = h
        .neighbours()
        .get()
        .set_address_family(AddressFamily::Bridge)
        .execute()
        .try_collect()
        .await
        .map_err(|e| Error::netlink("listing FDB", e))?;
    for m in fdb.iter().filter(|m| m.header.ifindex == vx) {
        let mut mac = None;
        let mut dst = None;
        for a in &m.attributes {
            match a {
                NeighbourAttribute::LinkLayerAddress(l) => mac = mac6(l),
                NeighbourAttribute::Destination(NeighbourAddress::Inet(a)) => {
                    dst = Some(IpAddr::V4(*a))
                }
                NeighbourAttribute::Destination(NeighbourAddress::Inet6(a)) => {
                    dst = Some(IpAddr::V6(*a))
                }
                // In an AF_BRIDGE message the remote comes back as raw bytes.
                NeighbourAttribute::Destination(NeighbourAddress::Other(b)) => {
                    dst = match b.len() {
                        4 => <[u8; 4]>::try_from(&b[..]).ok().map(IpAddr::from),
                        16 => <[u8; 16]>::try_from(&b[..]).ok().map(IpAddr::from),
                        _ => None,
                    }
                }
                _ => {}
            }
        }
        if let (Some(m), Some(d)) = (mac, dst)
            && m != [0; 6]
        {
            out.fdb.insert(m, d);
        }
    }
    let neigh: Vec<NeighbourMessage> = h
        .neighbours()
        .get()
        .set_address_family(AddressFamily::Inet)
        .execute()
        .try_collect()
        .await
        .map_err(|e| Error::netlink("listing neighbours", e))?;
    for m in neigh.iter().filter(|m| m.header.ifindex == vx) {
        let mut mac = None;
        let mut dst = None;
        for a in &m.attributes {
            match a {
                NeighbourAttribute::LinkLayerAddress(l) => mac = mac6(l),
                NeighbourAttribute::Destination(NeighbourAddress::Inet(a)) => dst = Some(*a),
                _ => {}
            }
        }
        if let (Some(m), Some(d)) = (mac, dst) {
            out.neigh.insert(d, m);
        }
    }
    Ok(out)
}

/// Compare what etcd wants with what the kernel has.
pub fn drift(want: &Desired, have: &Have) -> Drift {
    let mut d = Drift::default();
    for (mac, (vtep, ip)) in want {
        let m = crate::request::format_mac(mac);
        if have.fdb.get(mac) != Some(vtep) {
            d.missing.push(format!("fdb {m} dst {vtep}"));
        }
        if have.neigh.get(ip) != Some(mac) {
            d.missing.push(format!("neigh {ip} lladdr {m}"));
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
    for (ip, mac) in &have.neigh {
        if !want.values().any(|(_, i)| i == ip) {
            d.stale.push(format!(
                "neigh {ip} lladdr {}",
                crate::request::format_mac(mac)
            ));
        }
    }
    d
}

/// Make the kernel match `want`: add or replace what is missing or wrong,
/// delete what no endpoint backs. Never a flush: entries that are right
/// are not touched, so traffic to them never stops.
pub async fn apply(h: &Handle, vx: u32, want: &Desired) -> Result<usize> {
    let have = have(h, vx).await?;
    let mut changes = 0;
    for (mac, (vtep, ip)) in want {
        if have.fdb.get(mac) != Some(vtep) {
            h.neighbours()
                .add_bridge(vx, mac)
                .destination(*vtep)
                .flags(NeighbourFlags::Own)
                .state(NeighbourState::Permanent)
                .replace()
                .execute()
                .await
                .map_err(|e| {
                    Error::netlink(format!("fdb {}", crate::request::format_mac(mac)), e)
                })?;
            changes += 1;
        }
        if have.neigh.get(ip) != Some(mac) {
            h.neighbours()
                .add(vx, IpAddr::V4(*ip))
                .link_layer_address(mac)
                .state(NeighbourState::Permanent)
                .replace()
                .execute()
                .await
                .map_err(|e| Error::netlink(format!("neighbour {ip}"), e))?;
            changes += 1;
        }
    }
    for (mac, vtep) in &have.fdb {
        if !want.contains_key(mac) {
            let mut m = NeighbourMessage::default();
            m.header.family = AddressFamily::Bridge;
            m.header.ifindex = vx;
            m.header.flags = NeighbourFlags::Own;
            m.header.state = NeighbourState::Permanent;
            m.attributes
                .push(NeighbourAttribute::LinkLayerAddress(mac.to_vec()));
            m.attributes
                .push(NeighbourAttribute::Destination(match vtep {
                    IpAddr::V4(a) => NeighbourAddress::Inet(*a),
                    IpAddr::V6(a) => NeighbourAddress::Inet6(*a),
                }));
            let _ = h.neighbours().del(m).execute().await;
            changes += 1;
        }
    }
    for (ip, mac) in &have.neigh {
        if !want.values().any(|(_, i)| i == ip) {
            let mut m = NeighbourMessage::default();
            m.header.family = AddressFamily::Inet;
            m.header.ifindex = vx;
            m.attributes
                .push(NeighbourAttribute::Destination(NeighbourAddress::Inet(*ip)));
            m.attributes
                .push(NeighbourAttribute::LinkLayerAddress(mac.to_vec()));
            let _ = h.neighbours().del(m).execute().await;
            changes += 1;
        }
    }
    Ok(changes)
}
