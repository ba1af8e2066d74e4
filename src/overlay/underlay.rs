//! Which interface and address carry the VXLAN traffic. Explicit, or
//! unambiguous, or refused: a wrong guess (every Vagrant VM is 10.0.2.15 on
//! its NAT NIC) silently partitions the overlay.
use super::fdb::Underlay;
use crate::error::{Error, Result};
use crate::netlink::Net;
use std::net::IpAddr;

/// VirtualBox/Vagrant NAT: the same 10.0.2.15 on every VM, reachable from
/// none of the others.
fn nat_only(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => {
            let o = a.octets();
            o[0] == 10 && o[1] == 0 && o[2] == 2
        }
        IpAddr::V6(_) => false,
    }
}

fn usable(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => !a.is_loopback() && !a.is_link_local() && !a.is_unspecified(),
        IpAddr::V6(a) => !a.is_loopback() && (a.segments()[0] & 0xffc0) != 0xfe80,
    }
}

pub async fn resolve(spec: Option<&str>) -> Result<Underlay> {
    let net = Net::new(None, false)?;
    let mut cands = Vec::new();
    for l in net.links().await? {
        if l.name == "lo"
            || l.name.starts_with(super::names::BRIDGE_PREFIX)
            || l.name.starts_with(super::names::VXLAN_PREFIX)
        {
            continue;
        }
        for a in net.addrs(l.index).await? {
            if usable(a.net.ip()) {
                cands.push(Underlay {
                    ifname: l.name.clone(),
                    index: l.index,
                    ip: a.net.ip(),
                    mtu: l.mtu,
                });
            }
        }
    }
    let picked: Vec<Underlay> = match spec {
        Some(s) => match s.parse::<IpAddr>() {
            Ok(ip) => cands.into_iter().filter(|c| c.ip == ip).collect(),
            Err(_) => {
                crate::request::check_ifname(s)?;
                let mut v: Vec<Underlay> = cands.into_iter().filter(|c| c.ifname == s).collect();
                // An interface with both families: IPv4 first, like the peers expect.
                v.sort_by_key(|c| !c.ip.is_ipv4());
                v.truncate(1);
                v
            }
        },
        None => cands.into_iter().filter(|c| !nat_only(c.ip)).collect(),
    };
    let token = spec.unwrap_or("--underlay");
    match picked.as_slice() {
        [] if spec.is_some() => Err(Error::bad(
            token,
            "no such interface or local address with a usable (non-loopback) address",
        )),
        [] => Err(Error::bad(
            token,
            "no usable address here; pass --underlay IFACE|IP",
        )),
        [one] if nat_only(one.ip) => Err(Error::bad(
            token,
            format!(
                "{} on {} is a NAT-only address (VirtualBox/Vagrant give every VM 10.0.2.15): peers cannot reach it; pass --underlay with the private-network interface",
                one.ip, one.ifname
            ),
        )),
        [one] => Ok(one.clone()),
        many => Err(Error::bad(
            token,
            format!(
                "ambiguous underlay, candidates: {}; pass --underlay IFACE|IP",
                many.iter()
                    .map(|c| format!("{} ({})", c.ifname, c.ip))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nat_addresses() {
        assert!(nat_only(
            "10.0.2.15".parse().unwrap_or(IpAddr::from([0, 0, 0, 0]))
        ));
        assert!(!nat_only(
            "10.0.3.15".parse().unwrap_or(IpAddr::from([0, 0, 0, 0]))
        ));
    }
}
