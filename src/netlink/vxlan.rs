//! VXLAN devices and their forwarding entries, for the overlay agent.
//!
//! Per remote endpoint the agent keeps a static FDB entry (MAC → remote
//! VTEP) and a permanent neighbour entry (IP → MAC) on the VXLAN device, so
//! ARP is answered locally (proxy) and nothing floods. These ops are the
//! kernel half: list what a device has, put or remove one entry. Deciding
//! which entries should exist stays with the overlay.
use super::errors::nl_err;
use super::{Journal, Link, Net};
use crate::error::Result;
use futures::TryStreamExt;
use netlink_packet_route::AddressFamily;
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};
use rtnetlink::LinkVxlan;
use std::collections::BTreeMap;
use std::net::IpAddr;

/// A VXLAN device to create.
#[derive(Debug, Clone)]
pub struct VxlanSpec<'a> {
    pub name: &'a str,
    pub vni: u32,
    pub port: u16,
    /// Our underlay address (the tunnel's source) and its device.
    pub local: IpAddr,
    pub dev: u32,
    pub mtu: u32,
    /// The bridge it is a port of.
    pub controller: &'a Link,
}

/// What the kernel has on one VXLAN device.
#[derive(Debug, Default)]
pub struct VxlanEntries {
    /// Remote MAC → VTEP (the zero MAC of a flood entry is left out).
    pub fdb: BTreeMap<[u8; 6], IpAddr>,
    /// Neighbour (IPv4 or IPv6, link-local left out) → MAC.
    pub neigh: BTreeMap<IpAddr, [u8; 6]>,
}

/// A VXLAN device's settings as the kernel has them (what the overlay
/// compares with what its network wants).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct VxlanConf {
    pub vni: Option<u32>,
    pub port: Option<u16>,
    pub local: Option<IpAddr>,
    /// The underlay device's index.
    pub dev: Option<u32>,
}

fn mac6(v: &[u8]) -> Option<[u8; 6]> {
    v.try_into().ok()
}

/// The link-layer address and destination of a neighbour or FDB entry.
fn mac_and_dst(m: &NeighbourMessage) -> (Option<[u8; 6]>, Option<IpAddr>) {
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
    (mac, dst)
}

fn mac_str(m: &[u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

impl Net {
    /// Create a VXLAN port of `spec.controller`: learning off (the agent
    /// programs every entry), ARP proxied, down (the caller names, marks
    /// and brings it up in one request: `driver::marked`). Recorded in `j`.
    pub async fn create_vxlan(&self, j: &mut Journal, spec: &VxlanSpec<'_>) -> Result<Link> {
        let name = spec.name;
        if self.dry_run {
            self.show(format_args!(
                "link add {name} type vxlan id {} dstport {} local {} dev #{} nolearning proxy mtu {}",
                spec.vni, spec.port, spec.local, spec.dev, spec.mtu
            ));
            self.show(format_args!(
                "link set {name} master {} up",
                spec.controller.name
            ));
            return Ok(Link {
                name: name.to_string(),
                ..Link::default()
            });
        }
        let mut b = LinkVxlan::new(name, spec.vni)
            .port(spec.port)
            .learning(false)
            .proxy(true)
            .dev(spec.dev);
        b = match spec.local {
            IpAddr::V4(a) => b.local(a),
            IpAddr::V6(a) => b.local6(a),
        };
        let msg = b.mtu(spec.mtu).controller(spec.controller.index).build();
        let what = format!("VXLAN {name} (VNI {})", spec.vni);
        let link = self.add_link(msg, &what, name).await?;
        let (net, l) = (self.clone(), link.clone());
        j.record(
            format!("vxlan {name}"),
            async move { net.delete_link(&l).await },
        );
        Ok(link)
    }

    /// The VXLAN settings of link `index`; None when it is not a VXLAN
    /// device (or is gone).
    pub async fn vxlan_conf(&self, index: u32) -> Result<Option<VxlanConf>> {
        use netlink_packet_route::link::{InfoData, InfoVxlan, LinkAttribute, LinkInfo};
        let msgs: Vec<netlink_packet_route::link::LinkMessage> = match self
            .handle
            .link()
            .get()
            .match_index(index)
            .execute()
            .try_collect()
            .await
        {
            Ok(m) => m,
            Err(e) => {
                let err = nl_err(format!("looking up link #{index}"), e);
                if err.errno() == Some(libc::ENODEV) {
                    return Ok(None);
                }
                return Err(err);
            }
        };
        for m in &msgs {
            for a in &m.attributes {
                let LinkAttribute::LinkInfo(infos) = a else {
                    continue;
                };
                for i in infos {
                    let LinkInfo::Data(InfoData::Vxlan(v)) = i else {
                        continue;
                    };
                    let mut c = VxlanConf::default();
                    for x in v {
                        match x {
                            InfoVxlan::Id(n) => c.vni = Some(*n),
                            InfoVxlan::Port(p) => c.port = Some(*p),
                            InfoVxlan::Local(a) => c.local = Some(IpAddr::V4(*a)),
                            InfoVxlan::Local6(a) => c.local = Some(IpAddr::V6(*a)),
                            InfoVxlan::Link(l) => c.dev = Some(*l),
                            _ => {}
                        }
                    }
                    return Ok(Some(c));
                }
            }
        }
        Ok(None)
    }

    /// The FDB and neighbour entries on VXLAN device `vx`.
    pub async fn vxlan_entries(&self, vx: u32) -> Result<VxlanEntries> {
        let mut out = VxlanEntries::default();
        for m in self.neighbours(AddressFamily::Bridge, "FDB").await? {
            if m.header.ifindex != vx {
                continue;
            }
            if let (Some(mac), Some(dst)) = mac_and_dst(&m)
                && mac != [0; 6]
            {
                out.fdb.insert(mac, dst);
            }
        }
        for fam in [AddressFamily::Inet, AddressFamily::Inet6] {
            for m in self.neighbours(fam, "neighbours").await? {
                if m.header.ifindex != vx {
                    continue;
                }
                match mac_and_dst(&m) {
                    // The kernel's own link-local and multicast (MLD, its
                    // solicited-node groups) neighbours: nobody wrote them.
                    (Some(_), Some(ip)) if ip.is_multicast() => {}
                    (Some(_), Some(IpAddr::V6(ip))) if ip.is_unicast_link_local() => {}
                    (Some(mac), Some(ip)) => {
                        out.neigh.insert(ip, mac);
                    }
                    _ => {}
                }
            }
        }
        Ok(out)
    }

    async fn neighbours(&self, family: AddressFamily, what: &str) -> Result<Vec<NeighbourMessage>> {
        self.handle
            .neighbours()
            .get()
            .set_address_family(family)
            .execute()
            .try_collect()
            .await
            .map_err(|e| nl_err(format!("listing {what}"), e))
    }

    /// A static FDB entry on `vx`: frames for `mac` go to VTEP `dst`.
    pub async fn fdb_replace(&self, vx: &Link, mac: &[u8; 6], dst: IpAddr) -> Result<()> {
        if self.dry_run {
            let m = mac_str(mac);
            println!(
                "bridge fdb replace {m} dev {} dst {dst} self permanent",
                vx.name
            );
            return Ok(());
        }
        self.handle
            .neighbours()
            .add_bridge(vx.index, mac)
            .destination(dst)
            .flags(NeighbourFlags::Own)
            .state(NeighbourState::Permanent)
            .replace()
            .execute()
            .await
            .map_err(|e| nl_err(format!("fdb {}", mac_str(mac)), e))
    }

    /// Remove an FDB entry; one already gone is not an error.
    pub async fn fdb_del(&self, vx: &Link, mac: &[u8; 6], dst: IpAddr) -> Result<()> {
        if self.dry_run {
            println!(
                "bridge fdb del {} dev {} dst {dst} self",
                mac_str(mac),
                vx.name
            );
            return Ok(());
        }
        let mut m = NeighbourMessage::default();
        m.header.family = AddressFamily::Bridge;
        m.header.ifindex = vx.index;
        m.header.flags = NeighbourFlags::Own;
        m.header.state = NeighbourState::Permanent;
        m.attributes
            .push(NeighbourAttribute::LinkLayerAddress(mac.to_vec()));
        m.attributes
            .push(NeighbourAttribute::Destination(match dst {
                IpAddr::V4(a) => NeighbourAddress::Inet(a),
                IpAddr::V6(a) => NeighbourAddress::Inet6(a),
            }));
        self.del_neighbour(m, format!("fdb {}", mac_str(mac))).await
    }

    /// A permanent neighbour entry on `vx`: `ip` is at `mac`.
    pub async fn neigh_replace(&self, vx: &Link, ip: IpAddr, mac: &[u8; 6]) -> Result<()> {
        if self.dry_run {
            self.show(format_args!(
                "neigh replace {ip} lladdr {} dev {} nud permanent",
                mac_str(mac),
                vx.name
            ));
            return Ok(());
        }
        self.handle
            .neighbours()
            .add(vx.index, ip)
            .link_layer_address(mac)
            .state(NeighbourState::Permanent)
            .replace()
            .execute()
            .await
            .map_err(|e| nl_err(format!("neighbour {ip}"), e))
    }

    /// Remove a neighbour entry; one already gone is not an error.
    pub async fn neigh_del(&self, vx: &Link, ip: IpAddr, mac: &[u8; 6]) -> Result<()> {
        if self.dry_run {
            self.show(format_args!("neigh del {ip} dev {}", vx.name));
            return Ok(());
        }
        let mut m = NeighbourMessage::default();
        m.header.ifindex = vx.index;
        let (family, dst) = match ip {
            IpAddr::V4(a) => (AddressFamily::Inet, NeighbourAddress::Inet(a)),
            IpAddr::V6(a) => (AddressFamily::Inet6, NeighbourAddress::Inet6(a)),
        };
        m.header.family = family;
        m.attributes.push(NeighbourAttribute::Destination(dst));
        m.attributes
            .push(NeighbourAttribute::LinkLayerAddress(mac.to_vec()));
        self.del_neighbour(m, format!("neighbour {ip}")).await
    }

    async fn del_neighbour(&self, m: NeighbourMessage, what: String) -> Result<()> {
        match self.handle.neighbours().del(m).execute().await {
            Ok(()) => Ok(()),
            Err(e) => {
                let err = nl_err(format!("deleting {what}"), e);
                // ENOENT: someone (an admin, the kernel with the device)
                // removed it first; the goal is reached.
                if err.errno() == Some(libc::ENOENT) {
                    Ok(())
                } else {
                    Err(err)
                }
            }
        }
    }
}
