//! Read-only lookups that answer "how would this namespace reach X" from
//! the kernel itself: the route it would take (`ip route get`), the state
//! of a neighbour entry, and a bridge port's STP state. `pipework doctor`
//! asks them; asking the kernel (rather than re-implementing its FIB
//! lookup over a route dump) means policy rules, metrics and table order
//! are all taken into account exactly as a packet would see them.
use super::Net;
use super::errors::nl_err;
use crate::error::Result;
use futures::TryStreamExt;
use netlink_packet_route::AddressFamily;
use netlink_packet_route::link::{
    BridgePortState, InfoBridgePort, InfoPortData, LinkAttribute, LinkInfo, LinkMessage,
};
use netlink_packet_route::neighbour::{NeighbourAddress, NeighbourAttribute, NeighbourState};
use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteType};
use rtnetlink::RouteMessageBuilder;
use std::net::IpAddr;

/// The kernel's answer to `ip route get DST`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteTo {
    /// Output link.
    pub oif: Option<u32>,
    /// Next hop when it is not on-link.
    pub gateway: Option<IpAddr>,
    /// The source address the kernel would pick.
    pub src: Option<IpAddr>,
    /// A local address of this namespace (the packet never leaves it).
    pub local: bool,
}

fn addr(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
        RouteAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
        _ => None,
    }
}

/// The route lookup errors that mean "no route", not "cannot ask".
const NO_ROUTE: &[i32] = &[libc::ENETUNREACH, libc::EHOSTUNREACH, libc::EINVAL];

impl Net {
    /// The route a packet to `dst` would take; None when there is none
    /// (no matching route, or an unreachable/prohibit/blackhole one).
    pub async fn route_to(&self, dst: IpAddr) -> Result<Option<RouteTo>> {
        let mut msg = RouteMessageBuilder::<IpAddr>::new().build();
        let (family, full) = match dst {
            IpAddr::V4(_) => (AddressFamily::Inet, 32),
            IpAddr::V6(_) => (AddressFamily::Inet6, 128),
        };
        msg.header.address_family = family;
        msg.header.destination_prefix_length = full;
        msg.attributes.push(RouteAttribute::Destination(match dst {
            IpAddr::V4(v) => RouteAddress::Inet(v),
            IpAddr::V6(v) => RouteAddress::Inet6(v),
        }));
        let got = self.handle.route().get(msg).execute().try_next().await;
        let m = match got {
            Ok(Some(m)) => m,
            Ok(None) => return Ok(None),
            Err(e) => {
                let err = nl_err(format!("looking up the route to {dst}"), e);
                return match err.errno() {
                    Some(n) if NO_ROUTE.contains(&n) => Ok(None),
                    _ => Err(err),
                };
            }
        };
        if matches!(
            m.header.kind,
            RouteType::Unreachable | RouteType::Prohibit | RouteType::BlackHole
        ) {
            return Ok(None);
        }
        let mut r = RouteTo {
            oif: None,
            gateway: None,
            src: None,
            local: m.header.kind == RouteType::Local,
        };
        for a in &m.attributes {
            match a {
                RouteAttribute::Oif(i) => r.oif = Some(*i),
                RouteAttribute::Gateway(g) => r.gateway = addr(g),
                RouteAttribute::PrefSource(s) => r.src = addr(s),
                _ => {}
            }
        }
        Ok(Some(r))
    }

    /// The state of the neighbour entry for `ip` on link `index`
    /// ("reachable", "stale", "incomplete", "failed", …), None if absent.
    pub async fn neighbour_state(&self, index: u32, ip: IpAddr) -> Result<Option<&'static str>> {
        let v = match ip {
            IpAddr::V4(_) => AddressFamily::Inet,
            IpAddr::V6(_) => AddressFamily::Inet6,
        };
        let msgs: Vec<_> = self
            .handle
            .neighbours()
            .get()
            .set_address_family(v)
            .execute()
            .try_collect()
            .await
            .map_err(|e| nl_err("listing neighbours", e))?;
        for m in msgs {
            if m.header.ifindex != index {
                continue;
            }
            let dst = m.attributes.iter().find_map(|a| match a {
                NeighbourAttribute::Destination(NeighbourAddress::Inet(x)) => Some(IpAddr::V4(*x)),
                NeighbourAttribute::Destination(NeighbourAddress::Inet6(x)) => Some(IpAddr::V6(*x)),
                _ => None,
            });
            if dst == Some(ip) {
                return Ok(Some(state_name(m.header.state)));
            }
        }
        Ok(None)
    }

    /// A bridge port's STP state ("forwarding", "blocking", …); None when
    /// `index` is not a bridge port or the kernel did not say.
    pub async fn bridge_port_state(&self, index: u32) -> Result<Option<&'static str>> {
        let msg: Option<LinkMessage> = self
            .handle
            .link()
            .get()
            .match_index(index)
            .execute()
            .try_next()
            .await
            .map_err(|e| nl_err("reading a bridge port's state", e))?;
        let Some(msg) = msg else { return Ok(None) };
        for a in &msg.attributes {
            if let LinkAttribute::LinkInfo(infos) = a {
                for i in infos {
                    if let LinkInfo::PortData(InfoPortData::BridgePort(p)) = i {
                        for x in p {
                            if let InfoBridgePort::State(s) = x {
                                return Ok(Some(port_state_name(*s)));
                            }
                        }
                    }
                }
            }
        }
        Ok(None)
    }
}

fn state_name(s: NeighbourState) -> &'static str {
    match s {
        NeighbourState::Incomplete => "incomplete",
        NeighbourState::Reachable => "reachable",
        NeighbourState::Stale => "stale",
        NeighbourState::Delay => "delay",
        NeighbourState::Probe => "probe",
        NeighbourState::Failed => "failed",
        NeighbourState::Noarp => "noarp",
        NeighbourState::Permanent => "permanent",
        _ => "none",
    }
}

fn port_state_name(s: BridgePortState) -> &'static str {
    match s {
        BridgePortState::Disabled => "disabled",
        BridgePortState::Listening => "listening",
        BridgePortState::Learning => "learning",
        BridgePortState::Forwarding => "forwarding",
        BridgePortState::Blocking => "blocking",
        _ => "unknown",
    }
}

impl Net {
    /// Every address of every link, in one dump (a host may have
    /// thousands of links: one request, not one per link).
    pub async fn all_addrs(&self) -> Result<Vec<super::ops::Addr>> {
        let msgs: Vec<_> = self
            .handle
            .address()
            .get()
            .execute()
            .try_collect()
            .await
            .map_err(|e| nl_err("listing addresses", e))?;
        Ok(msgs.iter().filter_map(super::ops::addr_of).collect())
    }
}
