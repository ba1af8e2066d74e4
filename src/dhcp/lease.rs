//! What a DHCP server granted us, in the shape the rest of pipework needs.
//!
//! Built only from a validated ACK; everything optional in the protocol is
//! optional here too (an offer without a router is legal and common on
//! isolated networks).
use dhcproto::v4::{DhcpOption, Message, MessageType, OptionCode};
use serde::{Deserialize, Serialize};
use std::net::Ipv4Addr;

/// One classless static route (option 121): `dest/prefix via gateway`.
/// A gateway of 0.0.0.0 means "on-link".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StaticRoute {
    pub dest: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Ipv4Addr,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub address: Ipv4Addr,
    pub prefix: u8,
    pub router: Option<Ipv4Addr>,
    pub dns: Vec<Ipv4Addr>,
    pub domain: Option<String>,
    /// Option 121; when present, RFC 3442 says the router option is ignored.
    pub routes: Vec<StaticRoute>,
    /// Option 26, only kept when it is a usable IPv4 MTU (>= 68).
    pub mtu: Option<u16>,
    /// Seconds. `u32::MAX` means infinite.
    pub lease_time: u32,
    pub t1: u32,
    pub t2: u32,
    pub server_id: Ipv4Addr,
}

/// Lease time when an ACK carries none; RFC 2131 makes it mandatory in an
/// ACK to a REQUEST, but a missing one must not crash us.
const DEFAULT_LEASE: u32 = 3600;

impl Lease {
    /// Interpret an ACK. `None` if it is not an ACK or lacks what a lease
    /// needs (an address, a server identifier).
    pub fn from_ack(msg: &Message) -> Option<Lease> {
        if msg.opts().msg_type() != Some(MessageType::Ack) {
            return None;
        }
        let address = msg.yiaddr();
        if address.is_unspecified() || address.is_broadcast() || address.is_multicast() {
            return None;
        }
        let opts = msg.opts();
        let server_id = match opts.get(OptionCode::ServerIdentifier) {
            Some(DhcpOption::ServerIdentifier(ip)) => *ip,
            _ => return None,
        };
        let prefix = match opts.get(OptionCode::SubnetMask) {
            Some(DhcpOption::SubnetMask(mask)) => mask_to_prefix(*mask)?,
            _ => classful_prefix(address),
        };
        let router = match opts.get(OptionCode::Router) {
            Some(DhcpOption::Router(list)) => list.iter().copied().find(|r| !r.is_unspecified()),
            _ => None,
        };
        let dns = match opts.get(OptionCode::DomainNameServer) {
            Some(DhcpOption::DomainNameServer(list)) => list.clone(),
            _ => Vec::new(),
        };
        let domain = match opts.get(OptionCode::DomainName) {
            Some(DhcpOption::DomainName(d)) if !d.is_empty() => Some(d.clone()),
            _ => None,
        };
        let routes = match opts.get(OptionCode::ClasslessStaticRoute) {
            Some(DhcpOption::ClasslessStaticRoute(list)) => list
                .iter()
                .map(|(net, gw)| StaticRoute {
                    dest: net.network(),
                    prefix: net.prefix_len(),
                    gateway: *gw,
                })
                .collect(),
            _ => Vec::new(),
        };
        let mtu = match opts.get(OptionCode::InterfaceMtu) {
            Some(DhcpOption::InterfaceMtu(m)) if *m >= 68 => Some(*m),
            _ => None,
        };
        let lease_time = match opts.get(OptionCode::AddressLeaseTime) {
            Some(DhcpOption::AddressLeaseTime(t)) if *t > 0 => *t,
            _ => DEFAULT_LEASE,
        };
        // RFC 2131 4.4.5 defaults: T1 = 0.5, T2 = 0.875 of the lease. Server
        // values are accepted only when they keep T1 <= T2 <= lease.
        let def_t1 = lease_time / 2;
        let def_t2 = (lease_time as u64 * 7 / 8) as u32;
        let mut t2 = match opts.get(OptionCode::Rebinding) {
            Some(DhcpOption::Rebinding(t)) if *t > 0 && *t <= lease_time => *t,
            _ => def_t2,
        };
        let mut t1 = match opts.get(OptionCode::Renewal) {
            Some(DhcpOption::Renewal(t)) if *t > 0 && *t <= t2 => *t,
            _ => def_t1.min(t2),
        };
        if t1 > t2 {
            t1 = t2;
        }
        if t2 > lease_time {
            t2 = lease_time;
        }
        Some(Lease {
            address,
            prefix,
            router,
            dns,
            domain,
            routes,
            mtu,
            lease_time,
            t1,
            t2,
            server_id,
        })
    }

    /// The routes to install: option 121 if present (RFC 3442: then the
    /// router option MUST be ignored), else a default route via the router.
    pub fn effective_routes(&self) -> Vec<StaticRoute> {
        if !self.routes.is_empty() {
            return self.routes.clone();
        }
        match self.router {
            Some(gw) => vec![StaticRoute {
                dest: Ipv4Addr::UNSPECIFIED,
                prefix: 0,
                gateway: gw,
            }],
            None => Vec::new(),
        }
    }
}

/// A netmask must be contiguous ones; anything else is a malformed reply.
pub fn mask_to_prefix(mask: Ipv4Addr) -> Option<u8> {
    let m = u32::from(mask);
    let ones = m.leading_ones();
    if m.checked_shl(ones).unwrap_or(0) != 0 {
        return None;
    }
    Some(ones as u8)
}

fn classful_prefix(a: Ipv4Addr) -> u8 {
    match a.octets()[0] {
        0..=127 => 8,
        128..=191 => 16,
        _ => 24,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dhcproto::v4::Opcode;

    fn ack() -> Message {
        let mut m = Message::default();
        m.set_opcode(Opcode::BootReply)
            .set_yiaddr(Ipv4Addr::new(10, 0, 0, 5));
        m.opts_mut()
            .insert(DhcpOption::MessageType(MessageType::Ack));
        m.opts_mut()
            .insert(DhcpOption::ServerIdentifier(Ipv4Addr::new(10, 0, 0, 1)));
        m
    }

    #[test]
    fn minimal_ack_gets_defaults() {
        let l = Lease::from_ack(&ack()).expect("lease");
        assert_eq!(l.prefix, 8);
        assert_eq!(l.router, None);
        assert_eq!((l.lease_time, l.t1, l.t2), (3600, 1800, 3150));
        assert!(l.effective_routes().is_empty());
    }

    #[test]
    fn bad_mask_and_inverted_timers_are_rejected_or_fixed() {
        let mut m = ack();
        m.opts_mut()
            .insert(DhcpOption::SubnetMask(Ipv4Addr::new(255, 0, 255, 0)));
        assert!(Lease::from_ack(&m).is_none());
        let mut m = ack();
        m.opts_mut().insert(DhcpOption::AddressLeaseTime(100));
        m.opts_mut().insert(DhcpOption::Renewal(90));
        m.opts_mut().insert(DhcpOption::Rebinding(500));
        let l = Lease::from_ack(&m).expect("lease");
        assert!(l.t1 <= l.t2 && l.t2 <= l.lease_time, "{l:?}");
    }

    #[test]
    fn option_121_overrides_router() {
        let mut m = ack();
        m.opts_mut()
            .insert(DhcpOption::Router(vec![Ipv4Addr::new(10, 0, 0, 1)]));
        m.opts_mut().insert(DhcpOption::ClasslessStaticRoute(vec![(
            "192.168.5.0/24".parse().expect("net"),
            Ipv4Addr::new(10, 0, 0, 9),
        )]));
        let r = Lease::from_ack(&m).expect("lease").effective_routes();
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].gateway, Ipv4Addr::new(10, 0, 0, 9));
    }

    #[test]
    fn masks() {
        assert_eq!(mask_to_prefix(Ipv4Addr::new(255, 255, 255, 0)), Some(24));
        assert_eq!(mask_to_prefix(Ipv4Addr::new(0, 0, 0, 0)), Some(0));
        assert_eq!(mask_to_prefix(Ipv4Addr::BROADCAST), Some(32));
        assert_eq!(mask_to_prefix(Ipv4Addr::new(255, 0, 0, 255)), None);
    }
}
