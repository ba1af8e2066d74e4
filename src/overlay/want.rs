//! What an attach asks for, read against the network: `auto`, or given
//! addresses (one per family), and the host addresses of each subnet in
//! the order `auto` hands them out.
use super::store::NetSpec;
use crate::error::{Error, Result};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// What the user asked for: given addresses (at most one per family), or
/// the next free one of each family the network has.
#[derive(Debug, Clone, PartialEq)]
pub enum Want {
    Auto,
    Given(Vec<IpAddr>),
}

impl Want {
    /// The first given address (a probe for checks before the claim).
    pub fn first(&self) -> Option<IpAddr> {
        match self {
            Want::Auto => None,
            Want::Given(v) => v.first().copied(),
        }
    }
}

/// Parse the address tokens of `pipework NET $CID TOKEN [--ip TOKEN]`
/// against the network: `auto` alone, or one `ip[/len]` per family.
pub fn parse(toks: &[&str], net: &NetSpec) -> Result<Want> {
    if toks.contains(&"auto") {
        if toks.len() > 1 {
            return Err(Error::bad(
                toks.join(" "),
                "auto already gives one address of each family the network has; give auto alone, or addresses",
            ));
        }
        return Ok(Want::Auto);
    }
    let mut ips: Vec<IpAddr> = Vec::new();
    for tok in toks {
        let ip = parse_one(tok, net)?;
        if ips.iter().any(|i| i.is_ipv4() == ip.is_ipv4()) {
            return Err(Error::bad(
                tok,
                "one address per family: an overlay endpoint takes one IPv4 and one IPv6 address at most",
            ));
        }
        ips.push(ip);
    }
    if ips.is_empty() {
        return Err(Error::bad(&net.name, "give ip/len or auto"));
    }
    Ok(Want::Given(ips))
}

/// An example address token of the network, for error messages.
fn example(net: &NetSpec) -> String {
    let v4 = net
        .subnet
        .map(|s| format!("{}/{}", first_host(net), s.prefix()));
    let v6 = net
        .subnet6
        .map(|s| format!("{}/{}", first_host6(net), s.prefix()));
    v4.into_iter().chain(v6).collect::<Vec<_>>().join(" or ")
}

/// One `ip[/len]` token, checked against the subnet of its family.
fn parse_one(tok: &str, net: &NetSpec) -> Result<IpAddr> {
    let (ip_s, len) = match tok.split_once('/') {
        Some((i, l)) => (i, Some(l)),
        None => (tok, None),
    };
    let ip: IpAddr = ip_s.parse().map_err(|_| {
        Error::bad(
            tok,
            format!(
                "give an address in {} (e.g. {}) or auto",
                net.subnets(),
                example(net)
            ),
        )
    })?;
    let Some(subnet) = net.subnet_of(ip) else {
        let fam = if ip.is_ipv4() { "IPv4" } else { "IPv6" };
        return Err(Error::bad(
            tok,
            format!(
                "network {} has no {fam} subnet ({}); give e.g. {} or auto",
                net.name,
                net.subnets(),
                example(net)
            ),
        ));
    };
    if let Some(l) = len
        && l != subnet.prefix().to_string()
    {
        return Err(Error::bad(
            tok,
            format!(
                "network {} is {subnet}; write {ip}/{}",
                net.name,
                subnet.prefix()
            ),
        ));
    }
    if !subnet.contains(ip) {
        return Err(Error::bad(
            tok,
            format!(
                "outside network {} ({subnet}); pick an address inside it or auto",
                net.name
            ),
        ));
    }
    if net.gateways().contains(&ip) {
        return Err(Error::bad(
            tok,
            format!(
                "is network {}'s gateway (every host's bridge carries it); pick another address or auto",
                net.name
            ),
        ));
    }
    let reserved = match subnet {
        ipnetwork::IpNetwork::V4(s) => ip == IpAddr::V4(s.network()) || ip == s.broadcast(),
        // The subnet-router anycast address.
        ipnetwork::IpNetwork::V6(s) => ip == IpAddr::V6(s.network()),
    };
    if reserved {
        return Err(Error::bad(
            tok,
            "is the subnet's network or broadcast address",
        ));
    }
    Ok(ip)
}

/// The first IPv4 address a container may have (the gateway's excluded).
pub fn first_host(net: &NetSpec) -> Ipv4Addr {
    hosts(net).next().unwrap_or(Ipv4Addr::UNSPECIFIED)
}

/// The first IPv6 address a container may have (the gateway's excluded).
pub fn first_host6(net: &NetSpec) -> Ipv6Addr {
    hosts6(net).next().unwrap_or(Ipv6Addr::UNSPECIFIED)
}

/// Usable IPv4 host addresses of the subnet, in order (none without one).
fn hosts(net: &NetSpec) -> impl Iterator<Item = Ipv4Addr> {
    let (lo, hi) = match net.subnet {
        Some(s) => (u32::from(s.network()) + 1, u32::from(s.broadcast())),
        None => (1, 1),
    };
    let gw = net.gw();
    (lo..hi)
        .map(Ipv4Addr::from)
        .filter(move |ip| Some(*ip) != gw)
}

/// Usable IPv6 host addresses of the subnet, in order (none without one).
fn hosts6(net: &NetSpec) -> impl Iterator<Item = Ipv6Addr> {
    let (lo, hi) = match net.subnet6 {
        // Up to, not including, the last address (as IPv4's broadcast:
        // some stacks treat all-ones specially).
        Some(s) => (u128::from(s.network()) + 1, u128::from(s.broadcast())),
        None => (1, 1),
    };
    let gw = net.gw6();
    (lo..hi)
        .map(Ipv6Addr::from)
        .filter(move |ip| Some(*ip) != gw)
}

/// Free host addresses of one family, in order (the first `n`).
pub(super) fn free_of(
    net: &NetSpec,
    v6: bool,
    used: &std::collections::HashSet<String>,
    macs: &std::collections::HashSet<String>,
    n: usize,
) -> Vec<IpAddr> {
    if v6 {
        hosts6(net)
            .filter(|ip| !used.contains(&ip.to_string()))
            // An IPv6-only endpoint's MAC comes from the low bits: skip one
            // a static address already has.
            .filter(|ip| !macs.contains(&crate::request::format_mac(&super::names::mac_for6(*ip))))
            .take(n)
            .map(IpAddr::V6)
            .collect()
    } else {
        hosts(net)
            .filter(|ip| !used.contains(&ip.to_string()))
            .take(n)
            .map(IpAddr::V4)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dual() -> NetSpec {
        serde_json::from_value(serde_json::json!({
            "name": "pwvd", "subnet": "10.40.0.0/16", "subnet6": "fd40::/64",
            "vni": 42, "mtu": 1450, "port": 4789
        }))
        .expect("spec")
    }

    #[test]
    fn static_addresses_one_per_family() {
        let n = dual();
        let w = parse(&["10.40.0.5/16", "fd40::5/64"], &n).unwrap();
        assert_eq!(
            w,
            Want::Given(vec![
                "10.40.0.5".parse().unwrap(),
                "fd40::5".parse().unwrap()
            ])
        );
        assert_eq!(parse(&["auto"], &n).unwrap(), Want::Auto);
        for bad in [
            &["fd40::5/64", "fd40::6/64"][..],
            &["auto", "fd40::5"],
            &["fd41::5/64"],
            &["fd40::5/80"],
            &["fd40::1"],
            &["fd40::"],
        ] {
            assert!(parse(bad, &n).is_err(), "{bad:?}");
        }
        let mut v6only = dual();
        v6only.subnet = None;
        assert!(parse(&["10.40.0.5/16"], &v6only).is_err());
        assert_eq!(first_host6(&v6only), "fd40::2".parse::<Ipv6Addr>().unwrap());
        assert_eq!(hosts(&v6only).next(), None);
    }
}
