//! Network names and the kernel objects they map to. The mapping is
//! deterministic so an attach finds the agent's bridge without asking it.
use crate::error::{Error, Result};

/// Longest network name: "ov-" + name must fit in IFNAMSIZ (15).
pub const MAX_NAME: usize = 12;

pub fn check_name(net: &str) -> Result<()> {
    let ok = !net.is_empty()
        && net.len() <= MAX_NAME
        && net
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        && net.as_bytes()[0].is_ascii_alphanumeric();
    if ok && crate::classic::is_subcommand(net) {
        return Err(Error::bad(
            net,
            "is a pipework subcommand, so `pipework NET $CID ...` could not name it; pick another network name",
        ));
    }
    if ok {
        Ok(())
    } else {
        Err(Error::bad(
            net,
            format!(
                "network names are 1-{MAX_NAME} characters of a-z 0-9 - _, starting with a letter or digit"
            ),
        ))
    }
}

/// What every overlay bridge's name starts with. Only the overlay knows
/// it: the firewall matches "an overlay bridge" by it because the agent
/// passes it down (`Routed::group`, `guard_vxlan`), and tests/layering.rs
/// fails if a layer below the subsystems spells it out.
pub const BRIDGE_PREFIX: &str = "ov-";

/// The Linux bridge containers of `net` plug into.
pub fn bridge(net: &str) -> String {
    format!("{BRIDGE_PREFIX}{net}")
}

/// Network `s` as the firewall's routed-network rules see it (the
/// agent's egress and accepts, and doctor's check of them).
pub fn routed(s: &super::store::NetSpec) -> crate::firewall::Routed {
    crate::firewall::Routed {
        bridge: bridge(&s.name),
        group: BRIDGE_PREFIX.to_string(),
        subnet: s.subnet,
        subnet6: s.subnet6,
        allow_from: s.allow_from.iter().map(|a| bridge(a)).collect(),
    }
}

/// What every overlay VXLAN device's name starts with (the overlay's
/// naming too: tests/layering.rs keeps it out of the lower layers).
pub const VXLAN_PREFIX: &str = "vx-";

/// The VXLAN device of `net` (a port of the bridge).
pub fn vxlan(net: &str) -> String {
    format!("{VXLAN_PREFIX}{net}")
}

/// The network a bridge name belongs to, if it is one of ours.
pub fn net_of_bridge(bridge: &str) -> Option<&str> {
    bridge
        .strip_prefix(BRIDGE_PREFIX)
        .filter(|n| check_name(n).is_ok())
}

/// Every endpoint's MAC is derived from its address (as Docker's overlay
/// does): a locally administered prefix plus the IPv4 address. A peer can
/// then program the FDB and the neighbour entry from the address alone,
/// and a detach finds the endpoint from the link it removes.
pub fn mac_for(ip: std::net::Ipv4Addr) -> [u8; 6] {
    let o = ip.octets();
    [0x02, 0x77, o[0], o[1], o[2], o[3]]
}

/// An IPv6-only endpoint's MAC: another prefix (never equal to an IPv4
/// one) plus the address's low 32 bits. Unique among `auto` addresses of a
/// subnet; a static address whose low bits repeat another's is refused at
/// claim time (`alloc`).
pub fn mac_for6(ip: std::net::Ipv6Addr) -> [u8; 6] {
    let o = ip.octets();
    [0x02, 0x76, o[12], o[13], o[14], o[15]]
}

/// The MAC of an endpoint holding `ips` (one per family): derived from
/// the IPv4 address when there is one, else from the IPv6 one, so a
/// dual-stack container has one MAC for both.
pub fn mac_of(ips: &[std::net::IpAddr]) -> [u8; 6] {
    let v4 = ips.iter().find_map(|ip| match ip {
        std::net::IpAddr::V4(a) => Some(mac_for(*a)),
        std::net::IpAddr::V6(_) => None,
    });
    let v6 = || {
        ips.iter().find_map(|ip| match ip {
            std::net::IpAddr::V6(a) => Some(mac_for6(*a)),
            std::net::IpAddr::V4(_) => None,
        })
    };
    v4.or_else(v6).unwrap_or([0x02, 0x77, 0, 0, 0, 0])
}

pub fn ip_of_mac(mac: &[u8]) -> Option<std::net::Ipv4Addr> {
    match mac {
        [0x02, 0x77, a, b, c, d] => Some(std::net::Ipv4Addr::new(*a, *b, *c, *d)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_macs() {
        assert!(check_name("blue").is_ok());
        assert!(check_name("a-very-long-name").is_err());
        assert!(check_name("Blue").is_err());
        assert!(check_name("").is_err());
        assert!(check_name("demo").is_err());
        assert_eq!(bridge("blue"), "ov-blue");
        assert_eq!(net_of_bridge("ov-blue"), Some("blue"));
        assert_eq!(net_of_bridge("br0"), None);
        let ip = std::net::Ipv4Addr::new(10, 40, 3, 7);
        assert_eq!(ip_of_mac(&mac_for(ip)), Some(ip));
        let v6: std::net::Ipv6Addr = "fd40::a28:307".parse().unwrap();
        // Same low bits, another prefix: never the IPv4 endpoint's MAC.
        assert_ne!(mac_for6(v6), mac_for(ip));
        assert_eq!(mac_of(&[v6.into(), ip.into()]), mac_for(ip));
        assert_eq!(mac_of(&[v6.into()]), mac_for6(v6));
    }
}
