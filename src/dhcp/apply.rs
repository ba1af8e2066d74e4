//! Put a lease on an interface: MTU, address, routes. Every object is
//! journaled so a failure later in the attach removes exactly what we
//! added and restores what we changed.
use super::lease::{Lease, StaticRoute};
use crate::error::{Error, Result};
use crate::netlink::Journal;
use crate::netns::NetNs;
use futures::TryStreamExt;
use netlink_packet_route::link::LinkAttribute;
use netlink_packet_route::route::{RouteProtocol, RouteScope};
use rtnetlink::{AddressMessageBuilder, Handle, LinkUnspec, RouteMessageBuilder};
use std::net::{IpAddr, Ipv4Addr};

const EEXIST: i32 = libc::EEXIST;

async fn index_and_mtu(h: &Handle, ifname: &str) -> Result<(u32, u32)> {
    let msg = h
        .link()
        .get()
        .match_name(ifname.to_string())
        .execute()
        .try_next()
        .await
        .map_err(|e| Error::netlink(format!("dhcp: cannot look up {ifname}"), e))?
        .ok_or_else(|| Error::NotFound(format!("{ifname}: no such interface")))?;
    let mtu = msg
        .attributes
        .iter()
        .find_map(|a| match a {
            LinkAttribute::Mtu(m) => Some(*m),
            _ => None,
        })
        .unwrap_or(1500);
    Ok((msg.header.index, mtu))
}

fn route_msg(index: u32, r: &StaticRoute) -> netlink_packet_route::route::RouteMessage {
    let mut b = RouteMessageBuilder::<Ipv4Addr>::new()
        .destination_prefix(r.dest, r.prefix)
        .output_interface(index)
        .protocol(RouteProtocol::Dhcp);
    if r.gateway.is_unspecified() {
        b = b.scope(RouteScope::Link);
    } else {
        b = b.gateway(r.gateway);
    }
    b.build()
}

fn in_subnet(a: Ipv4Addr, net: Ipv4Addr, prefix: u8) -> bool {
    let mask = if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix.min(32)))
    };
    u32::from(a) & mask == u32::from(net) & mask
}

/// Configure `ifname` in `ns` from `lease`, recording undo steps.
pub async fn apply(ns: &NetNs, ifname: &str, lease: &Lease, journal: &mut Journal) -> Result<()> {
    let h = crate::netlink::connect(Some(ns))?;
    let (index, old_mtu) = index_and_mtu(&h, ifname).await?;

    if let Some(mtu) = lease.mtu.map(u32::from).filter(|m| *m != old_mtu) {
        h.link()
            .set(LinkUnspec::new_with_index(index).mtu(mtu).build())
            .execute()
            .await
            .map_err(|e| Error::netlink(format!("dhcp: cannot set MTU {mtu} on {ifname}"), e))?;
        let hu = h.clone();
        journal.record(format!("MTU {mtu} on {ifname}"), async move {
            hu.link()
                .set(LinkUnspec::new_with_index(index).mtu(old_mtu).build())
                .execute()
                .await
                .map_err(|e| Error::netlink("restore MTU", e))
        });
    }

    let addr = lease.address;
    let prefix = lease.prefix;
    match h
        .address()
        .add(index, IpAddr::V4(addr), prefix)
        .execute()
        .await
    {
        Ok(()) => {
            let hu = h.clone();
            journal.record(format!("address {addr}/{prefix} on {ifname}"), async move {
                del_address(&hu, index, addr, prefix).await
            });
        }
        // Already there (a re-apply, or the operator put it there): not ours to undo.
        Err(e) if netlink_errno(&e) == Some(EEXIST) => {}
        Err(e) => {
            return Err(Error::netlink(
                format!("dhcp: cannot add {addr}/{prefix} to {ifname}"),
                e,
            ));
        }
    }

    for r in lease.effective_routes() {
        // A gateway outside our subnet needs an on-link host route first
        // (RFC 3442 section 3 allows such gateways).
        let mut todo = Vec::new();
        if !r.gateway.is_unspecified() && !in_subnet(r.gateway, addr, prefix) {
            todo.push(StaticRoute {
                dest: r.gateway,
                prefix: 32,
                gateway: Ipv4Addr::UNSPECIFIED,
            });
        }
        todo.push(r);
        for r in todo {
            let msg = route_msg(index, &r);
            match h.route().add(msg.clone()).execute().await {
                Ok(()) => {
                    let hu = h.clone();
                    journal.record(
                        format!(
                            "route {}/{} via {} on {ifname}",
                            r.dest, r.prefix, r.gateway
                        ),
                        async move {
                            hu.route()
                                .del(msg)
                                .execute()
                                .await
                                .map_err(|e| Error::netlink("delete route", e))
                        },
                    );
                }
                // Another interface already owns this route (typically the
                // container's own default route): keep it, like the
                // original's udhcpc script did, and say so.
                Err(e) if netlink_errno(&e) == Some(EEXIST) => {
                    eprintln!(
                        "pipework: dhcp: route {}/{} already exists in the container; keeping the existing one",
                        r.dest, r.prefix
                    );
                }
                Err(e) => {
                    return Err(Error::netlink(
                        format!(
                            "dhcp: cannot add route {}/{} via {}",
                            r.dest, r.prefix, r.gateway
                        ),
                        e,
                    ));
                }
            }
        }
    }
    Ok(())
}

/// Remove a lease's address (the kernel drops routes that depended on
/// it). Missing objects are not an error: the point is that they are gone.
pub async fn deconfigure(ns: &NetNs, ifname: &str, lease: &Lease) -> Result<()> {
    let h = crate::netlink::connect(Some(ns))?;
    let (index, _) = index_and_mtu(&h, ifname).await?;
    for r in lease.effective_routes() {
        let _ = h.route().del(route_msg(index, &r)).execute().await;
    }
    del_address(&h, index, lease.address, lease.prefix).await
}

async fn del_address(h: &Handle, index: u32, addr: Ipv4Addr, prefix: u8) -> Result<()> {
    let msg = AddressMessageBuilder::<Ipv4Addr>::new()
        .index(index)
        .address(addr, prefix)
        .build();
    match h.address().del(msg).execute().await {
        Ok(()) => Ok(()),
        Err(e) if matches!(netlink_errno(&e), Some(libc::EADDRNOTAVAIL | libc::ENODEV)) => Ok(()),
        Err(e) => Err(Error::netlink(
            format!("dhcp: cannot remove {addr}/{prefix}"),
            e,
        )),
    }
}

fn netlink_errno(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(n) => Some(n.raw_code().abs()),
        _ => None,
    }
}

/// Write the lease's DNS servers to the container's resolv.conf (only with
/// `--dns-write`). `root` is the container's root, opened by the caller
/// (`GuestRoot::of_process`); the file is reached only through it, so a
/// symlink the container planted cannot point us at a host file. The
/// previous content is restored on rollback.
pub fn write_resolv_conf(
    root: std::sync::Arc<crate::guest::fs::GuestRoot>,
    lease: &Lease,
    journal: &mut Journal,
) -> Result<()> {
    if lease.dns.is_empty() {
        return Ok(());
    }
    let mut text = String::from("# written by pipework from a DHCP lease\n");
    match lease.domain.as_deref() {
        Some(d) if plain_domain(d) => text.push_str(&format!("search {d}\n")),
        // The server chose this string: a newline in it would add lines
        // of its own choosing (options, more nameservers) to the file.
        Some(d) => eprintln!(
            "pipework: dhcp: ignoring domain name {:?} from the server: not a plain domain",
            crate::untrusted::display(d)
        ),
        None => {}
    }
    for s in &lease.dns {
        text.push_str(&format!("nameserver {s}\n"));
    }
    crate::guest::fs::write_restorable(root, "etc/resolv.conf", text.as_bytes(), journal)
}

/// A domain name fit for a `search` line: letters, digits, `-`, `_`, `.`.
fn plain_domain(d: &str) -> bool {
    !d.is_empty()
        && d.len() <= 253
        && d.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_is_written_and_restored() {
        let root = std::env::temp_dir().join(format!("pwd-resolv-{}", std::process::id()));
        std::fs::create_dir_all(root.join("etc")).expect("dir");
        let path = root.join("etc/resolv.conf");
        std::fs::write(&path, "nameserver 192.0.2.1\n").expect("write");
        let lease = Lease {
            address: Ipv4Addr::new(10, 0, 0, 5),
            prefix: 24,
            router: None,
            dns: vec![Ipv4Addr::new(10, 0, 0, 53)],
            domain: Some("example.test".into()),
            routes: vec![],
            mtu: None,
            lease_time: 60,
            t1: 30,
            t2: 50,
            server_id: Ipv4Addr::new(10, 0, 0, 1),
        };
        let mut j = Journal::new();
        let guest = crate::guest::fs::GuestRoot::open_dir(&root).expect("root");
        write_resolv_conf(std::sync::Arc::new(guest), &lease, &mut j).expect("write");
        let text = std::fs::read_to_string(&path).expect("read");
        assert!(text.contains("nameserver 10.0.0.53\n"), "{text}");
        assert!(text.contains("search example.test\n"), "{text}");
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("rt");
        rt.block_on(j.rollback());
        assert_eq!(
            std::fs::read_to_string(&path).expect("read"),
            "nameserver 192.0.2.1\n"
        );
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn subnet_membership() {
        let a = Ipv4Addr::new(10, 0, 0, 5);
        assert!(in_subnet(Ipv4Addr::new(10, 0, 0, 1), a, 24));
        assert!(!in_subnet(Ipv4Addr::new(10, 0, 1, 1), a, 24));
        assert!(in_subnet(Ipv4Addr::new(1, 2, 3, 4), a, 0));
        assert!(!in_subnet(Ipv4Addr::new(10, 0, 0, 6), a, 32));
    }
}
