//! The two ends: a guest in any form `guest::resolve` takes, `host`, or
//! (for B only) an IP address. Each namespace end is loaded once: its
//! links and addresses, read through `Net`.
use crate::error::{Error, Result};
use crate::netlink::{Link, Net, ops::Addr};
use crate::netns::NetNs;
use crate::untrusted::display;
use std::net::IpAddr;

/// An end the user named.
pub enum End {
    /// A namespace: a guest's, or the host's own.
    Ns(Side),
    /// An address that B's side owns, in a namespace we were not told.
    Ip(IpAddr),
}

/// One namespace end, as read at the start.
pub struct Side {
    /// "A" or "B" plus how the user named it, escaped for display.
    pub label: String,
    pub ns: NetNs,
    pub net: Net,
    pub host: bool,
    pub links: Vec<Link>,
    /// Addresses of every link but `lo`.
    pub addrs: Vec<Addr>,
}

impl Side {
    pub fn link(&self, index: u32) -> Option<&Link> {
        self.links.iter().find(|l| l.index == index)
    }

    /// A link's name as safe text (a guest chooses its names).
    pub fn name_of(&self, index: u32) -> String {
        self.link(index)
            .map(|l| display(&l.name).into_owned())
            .unwrap_or_else(|| format!("#{index}"))
    }

    pub fn addrs_of(&self, index: u32) -> Vec<&Addr> {
        self.addrs.iter().filter(|a| a.index == index).collect()
    }

    /// Addresses a peer could reach: not loopback, not link-local.
    pub fn global_addrs(&self) -> Vec<&Addr> {
        self.addrs.iter().filter(|a| usable(a.net.ip())).collect()
    }

    /// How to run an `ip` command in this namespace, for a fix.
    pub fn ip_cmd(&self) -> String {
        if self.host {
            "ip".into()
        } else {
            format!(
                "nsenter --net={} ip",
                crate::untrusted::shell_word(&self.ns.path.to_string_lossy())
            )
        }
    }
}

pub fn usable(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v) => !v.is_loopback() && !v.is_link_local() && !v.is_unspecified(),
        IpAddr::V6(v) => {
            !v.is_loopback() && !v.is_unspecified() && (v.segments()[0] & 0xffc0) != 0xfe80
        }
    }
}

/// Resolve `spec` for end `role` ("A" or "B"). A must be a namespace:
/// probes run from inside it.
pub async fn resolve(spec: &str, role: &str) -> Result<End> {
    if let Ok(ip) = spec.parse::<IpAddr>() {
        if role == "A" {
            return Err(Error::bad(
                spec,
                "A must be a guest or `host` (probes run from A's namespace); an address may be B",
            ));
        }
        return Ok(End::Ip(ip));
    }
    let (ns, host, name) = if spec == "host" {
        (NetNs::current()?, true, "host".to_string())
    } else {
        let g = crate::guest::resolve(spec)?;
        (g.netns, false, g.name)
    };
    load(ns, host, format!("{role} ({})", display(&name)))
        .await
        .map(End::Ns)
}

/// Read one namespace's links and addresses.
pub async fn load(ns: NetNs, host: bool, label: String) -> Result<Side> {
    let net = if host {
        Net::new(None, false)?
    } else {
        Net::new(Some(&ns), false)?
    };
    let links = net.links().await?;
    let lo: Vec<u32> = links
        .iter()
        .filter(|l| l.name == "lo")
        .map(|l| l.index)
        .collect();
    let mut addrs = net.all_addrs().await?;
    addrs.retain(|a| !lo.contains(&a.index));
    Ok(Side {
        label,
        ns,
        net,
        host,
        links,
        addrs,
    })
}

/// Which of B's addresses A should reach: one in a subnet A has an
/// address in, else B's first IPv4 address, else its first IPv6 one.
pub fn pick_target(a: &Side, b_addrs: &[&Addr]) -> Option<IpAddr> {
    let shared = b_addrs.iter().find(|b| {
        a.global_addrs()
            .iter()
            .any(|x| x.net.contains(b.net.ip()) && x.net.ip() != b.net.ip())
    });
    shared
        .or_else(|| b_addrs.iter().find(|b| b.net.is_ipv4()))
        .or_else(|| b_addrs.first())
        .map(|b| b.net.ip())
}

/// Where a guest's veth leads on the host: the bridge its peer is a port
/// of, or the peer itself (a routed veth). None for other kinds.
pub fn host_side_of<'h>(host: &'h Side, l: &Link) -> Option<&'h Link> {
    if l.kind.as_deref() != Some("veth") {
        return None;
    }
    let peer = host.links.iter().find(|p| {
        Some(p.index) == l.link && p.kind.as_deref() == Some("veth") && p.link == Some(l.index)
    })?;
    match peer.controller.and_then(|c| host.link(c)) {
        Some(b) if b.is_bridge() => Some(b),
        _ => Some(peer),
    }
}

/// An address for the host in `net`, as the host-shim README example
/// picks one: the subnet's last host address but five (10.1.1.250 in a
/// /24), when nobody here has it.
pub fn free_addr(host: &Side, net: ipnetwork::IpNetwork, avoid: IpAddr) -> Option<String> {
    let ipnetwork::IpNetwork::V4(n) = net else {
        return None;
    };
    if n.prefix() > 28 {
        return None;
    }
    let ip = IpAddr::V4(std::net::Ipv4Addr::from(
        u32::from(n.broadcast()).checked_sub(5)?,
    ));
    let taken = ip == avoid || host.addrs.iter().any(|a| a.net.ip() == ip);
    (!taken).then(|| format!("{ip}/{}", n.prefix()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_local_and_loopback_are_not_targets() {
        assert!(!usable("127.0.0.1".parse().unwrap()));
        assert!(!usable("169.254.1.1".parse().unwrap()));
        assert!(!usable("fe80::1".parse().unwrap()));
        assert!(usable("10.1.1.2".parse().unwrap()));
        assert!(usable("fd00::2".parse().unwrap()));
    }
}
