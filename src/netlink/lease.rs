//! The kernel side of putting a DHCP lease on a link: MTU, one IPv4
//! address, IPv4 routes tagged `proto dhcp`.
//!
//! Unlike the attach's own objects (which die with the link we created),
//! these go on a link that stays, and may meet objects that were already
//! there: an address or route that already existed is reported, not
//! journaled, because undoing it would remove something that is not ours.
use super::errors::nl_err;
use super::ops::{EEXIST, ENODEV, Link, Net};
use crate::error::Result;
use crate::netlink::Journal;
use netlink_packet_route::route::{RouteMessage, RouteProtocol, RouteScope};
use rtnetlink::{AddressMessageBuilder, LinkUnspec, RouteMessageBuilder};
use std::net::{IpAddr, Ipv4Addr};

/// An IPv4 route through one link. `via: None` is on-link (scope link).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route4 {
    pub dest: Ipv4Addr,
    pub prefix: u8,
    pub via: Option<Ipv4Addr>,
}

fn dhcp_route_msg(index: u32, r: &Route4) -> RouteMessage {
    let b = RouteMessageBuilder::<Ipv4Addr>::new()
        .destination_prefix(r.dest, r.prefix)
        .output_interface(index)
        .protocol(RouteProtocol::Dhcp);
    match r.via {
        Some(gw) => b.gateway(gw),
        None => b.scope(RouteScope::Link),
    }
    .build()
}

impl Net {
    /// Set a link's MTU. The old MTU is journaled and restored on rollback;
    /// nothing is done (or journaled) when the link already has `mtu`.
    pub async fn set_mtu(&self, j: &mut Journal, link: &Link, mtu: u32) -> Result<()> {
        if mtu == link.mtu {
            return Ok(());
        }
        if self.dry_run {
            self.show(format_args!("link set {} mtu {mtu}", link.name));
            return Ok(());
        }
        let msg = LinkUnspec::new_with_index(link.index).mtu(mtu).build();
        self.handle
            .link()
            .set(msg)
            .execute()
            .await
            .map_err(|e| nl_err(format!("setting MTU {mtu} on {}", link.name), e))?;
        let h = self.handle.clone();
        let (index, old) = (link.index, link.mtu);
        j.record(format!("MTU {mtu} on {}", link.name), async move {
            h.link()
                .set(LinkUnspec::new_with_index(index).mtu(old).build())
                .execute()
                .await
                .map_err(|e| nl_err("restore MTU", e))
        });
        Ok(())
    }

    /// Add an IPv4 address and journal its removal. Returns Ok(false) when
    /// it was already there (EEXIST: a re-apply, or the operator put it
    /// there): then it is not ours to undo and nothing is journaled.
    pub async fn add_addr4(
        &self,
        j: &mut Journal,
        link: &Link,
        addr: Ipv4Addr,
        prefix: u8,
    ) -> Result<bool> {
        if self.dry_run {
            self.show(format_args!("addr add {addr}/{prefix} dev {}", link.name));
            return Ok(true);
        }
        let req = self
            .handle
            .address()
            .add(link.index, IpAddr::V4(addr), prefix);
        if let Err(e) = req.execute().await {
            let err = nl_err(format!("adding {addr}/{prefix} to {}", link.name), e);
            if err.errno() == Some(EEXIST) {
                return Ok(false);
            }
            return Err(err);
        }
        let net = self.clone();
        let link_ = link.clone();
        j.record(
            format!("address {addr}/{prefix} on {}", link.name),
            async move { net.del_addr4(&link_, addr, prefix).await },
        );
        Ok(true)
    }

    /// Remove an IPv4 address (the kernel drops the routes that depended on
    /// it). An address or link already gone is not an error: the point is
    /// that it is gone.
    pub async fn del_addr4(&self, link: &Link, addr: Ipv4Addr, prefix: u8) -> Result<()> {
        if self.dry_run {
            self.show(format_args!("addr del {addr}/{prefix} dev {}", link.name));
            return Ok(());
        }
        let msg = AddressMessageBuilder::<Ipv4Addr>::new()
            .index(link.index)
            .address(addr, prefix)
            .build();
        match self.handle.address().del(msg).execute().await {
            Ok(()) => Ok(()),
            Err(e) => {
                let err = nl_err(format!("removing {addr}/{prefix} from {}", link.name), e);
                match err.errno() {
                    Some(libc::EADDRNOTAVAIL | ENODEV) => Ok(()),
                    _ => Err(err),
                }
            }
        }
    }

    /// Remove an IPv6 address; one already gone is not an error.
    pub async fn del_addr6(&self, link: &Link, addr: std::net::Ipv6Addr, prefix: u8) -> Result<()> {
        if self.dry_run {
            self.show(format_args!("addr del {addr}/{prefix} dev {}", link.name));
            return Ok(());
        }
        let msg = AddressMessageBuilder::<std::net::Ipv6Addr>::new()
            .index(link.index)
            .address(addr, prefix)
            .build();
        match self.handle.address().del(msg).execute().await {
            Ok(()) => Ok(()),
            Err(e) => {
                let err = nl_err(format!("removing {addr}/{prefix} from {}", link.name), e);
                match err.errno() {
                    Some(libc::EADDRNOTAVAIL | ENODEV) => Ok(()),
                    _ => Err(err),
                }
            }
        }
    }

    /// Add a `proto dhcp` route through `link` and journal its removal.
    /// Returns Ok(false) when the kernel already has that route (EEXIST,
    /// typically through another interface): it is kept, not journaled,
    /// and the caller decides what to tell the operator.
    pub async fn add_dhcp_route(&self, j: &mut Journal, link: &Link, r: Route4) -> Result<bool> {
        let Route4 { dest, prefix, via } = r;
        if self.dry_run {
            match via {
                Some(gw) => self.show(format_args!(
                    "route add {dest}/{prefix} via {gw} dev {} proto dhcp",
                    link.name
                )),
                None => self.show(format_args!(
                    "route add {dest}/{prefix} dev {} scope link proto dhcp",
                    link.name
                )),
            }
            return Ok(true);
        }
        // The journal's label writes an on-link route "via 0.0.0.0", as a
        // lease does.
        let gw = via.unwrap_or(Ipv4Addr::UNSPECIFIED);
        let msg = dhcp_route_msg(link.index, &r);
        if let Err(e) = self.handle.route().add(msg.clone()).execute().await {
            let err = nl_err(format!("adding route {dest}/{prefix} via {gw}"), e);
            if err.errno() == Some(EEXIST) {
                return Ok(false);
            }
            return Err(err);
        }
        let h = self.handle.clone();
        j.record(
            format!("route {dest}/{prefix} via {gw} on {}", link.name),
            async move {
                h.route()
                    .del(msg)
                    .execute()
                    .await
                    .map_err(|e| nl_err("delete route", e))
            },
        );
        Ok(true)
    }

    /// Remove a route `add_dhcp_route` added (matched the same way).
    pub async fn del_dhcp_route(&self, link: &Link, r: Route4) -> Result<()> {
        let Route4 { dest, prefix, .. } = r;
        if self.dry_run {
            let via = r.via.map(|g| format!(" via {g}")).unwrap_or_default();
            self.show(format_args!(
                "route del {dest}/{prefix}{via} dev {} proto dhcp",
                link.name
            ));
            return Ok(());
        }
        self.handle
            .route()
            .del(dhcp_route_msg(link.index, &r))
            .execute()
            .await
            .map_err(|e| nl_err(format!("deleting route {dest}/{prefix}"), e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_route::route::{RouteAddress, RouteAttribute};

    #[test]
    fn dhcp_routes_are_tagged_and_on_link_without_gateway() {
        let gw = Ipv4Addr::new(10, 0, 0, 1);
        let m = dhcp_route_msg(
            7,
            &Route4 {
                dest: Ipv4Addr::UNSPECIFIED,
                prefix: 0,
                via: Some(gw),
            },
        );
        assert_eq!(m.header.protocol, RouteProtocol::Dhcp);
        assert_eq!(m.header.scope, RouteScope::Universe);
        assert!(m.attributes.contains(&RouteAttribute::Oif(7)));
        assert!(
            m.attributes
                .contains(&RouteAttribute::Gateway(RouteAddress::Inet(gw)))
        );
        let m = dhcp_route_msg(
            7,
            &Route4 {
                dest: gw,
                prefix: 32,
                via: None,
            },
        );
        assert_eq!(m.header.scope, RouteScope::Link);
        assert_eq!(m.header.destination_prefix_length, 32);
        assert!(
            !m.attributes
                .iter()
                .any(|a| matches!(a, RouteAttribute::Gateway(_)))
        );
    }
}
