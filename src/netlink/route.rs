//! Routes as the CNI path needs them: IPAM routes added with the reference
//! plugins' protocol, and every destination in the namespace (CHECK).
use super::Net;
use super::errors::nl_err;
use crate::error::{Error, Result};
use futures::TryStreamExt;
use ipnetwork::IpNetwork;
use netlink_packet_route::AddressFamily;
use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteProtocol};
use rtnetlink::RouteMessageBuilder;
use std::net::IpAddr;

/// One route to add through a link.
#[derive(Debug, Clone)]
pub struct RouteSpec {
    pub dst: IpNetwork,
    /// None: on-link.
    pub gw: Option<IpAddr>,
    pub priority: Option<u32>,
    pub table: Option<u32>,
}

impl Net {
    /// Add `r` through link `index`, marked `proto boot` as the reference
    /// CNI plugins mark theirs, so `ip route` reads the same.
    pub async fn add_route(&self, index: u32, r: &RouteSpec) -> Result<()> {
        let bad = |e: &dyn std::fmt::Display| Error::bad(r.dst, e);
        let mut b = RouteMessageBuilder::<IpAddr>::new()
            .destination_prefix(r.dst.network(), r.dst.prefix())
            .map_err(|e| bad(&e))?
            .output_interface(index)
            .protocol(RouteProtocol::Boot);
        if let Some(gw) = r.gw {
            b = b
                .gateway(gw)
                .map_err(|e| Error::bad(format!("{} via {gw}", r.dst), e))?;
        }
        if let Some(p) = r.priority {
            b = b.priority(p);
        }
        if let Some(t) = r.table {
            b = b.table_id(t);
        }
        if self.dry_run {
            self.show(format_args!("route add {} dev #{index}", r.dst));
            return Ok(());
        }
        self.handle
            .route()
            .add(b.build())
            .execute()
            .await
            .map_err(|e| nl_err(format!("adding route {}", r.dst), e))
    }

    /// (destination, prefix length) of every route in every table, both
    /// families; a default route is the unspecified address with length 0.
    pub async fn route_destinations(&self) -> Result<Vec<(IpAddr, u8)>> {
        let mut out = Vec::new();
        for v6 in [false, true] {
            let mut b = RouteMessageBuilder::<IpAddr>::new().build();
            b.header.address_family = if v6 {
                AddressFamily::Inet6
            } else {
                AddressFamily::Inet
            };
            let any: IpAddr = if v6 {
                std::net::Ipv6Addr::UNSPECIFIED.into()
            } else {
                std::net::Ipv4Addr::UNSPECIFIED.into()
            };
            let got: Vec<(IpAddr, u8)> = self
                .handle
                .route()
                .get(b)
                .execute()
                .map_ok(|m| {
                    let dst = m.attributes.iter().find_map(|a| match a {
                        RouteAttribute::Destination(RouteAddress::Inet(x)) => Some(IpAddr::V4(*x)),
                        RouteAttribute::Destination(RouteAddress::Inet6(x)) => Some(IpAddr::V6(*x)),
                        _ => None,
                    });
                    (dst.unwrap_or(any), m.header.destination_prefix_length)
                })
                .try_collect()
                .await
                .map_err(|e| nl_err("listing routes", e))?;
            out.extend(got);
        }
        Ok(out)
    }
}
