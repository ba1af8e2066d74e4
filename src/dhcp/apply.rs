//! Put a lease on an interface: MTU, address, routes. Every object is
//! journaled so a failure later in the attach removes exactly what we
//! added and restores what we changed.
use super::lease::{Lease, StaticRoute};
use crate::error::{Error, Result};
use crate::netlink::{Journal, Link, Net, Route4};
use crate::netns::NetNs;
use std::net::Ipv4Addr;

async fn lookup(net: &Net, ifname: &str) -> Result<Link> {
    net.link_by_name(ifname)
        .await?
        .ok_or_else(|| Error::NotFound(format!("{ifname}: no such interface")))
}

fn route4(r: &StaticRoute) -> Route4 {
    Route4 {
        dest: r.dest,
        prefix: r.prefix,
        via: Some(r.gateway).filter(|g| !g.is_unspecified()),
    }
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
    let net = Net::new(Some(ns), false)?;
    let link = lookup(&net, ifname).await?;

    if let Some(mtu) = lease.mtu {
        // The old MTU comes back on rollback.
        net.set_mtu(journal, &link, u32::from(mtu)).await?;
    }

    let addr = lease.address;
    let prefix = lease.prefix;
    // Already there (a re-apply, or the operator put it there): not ours
    // to undo, so `add_addr4` journals nothing.
    net.add_addr4(journal, &link, addr, prefix).await?;

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
            // Another interface already owns this route (typically the
            // container's own default route): keep it, like the
            // original's udhcpc script did, and say so.
            if !net.add_dhcp_route(journal, &link, route4(&r)).await? {
                eprintln!(
                    "pipework: dhcp: route {}/{} already exists in the container; keeping the existing one",
                    r.dest, r.prefix
                );
            }
        }
    }
    Ok(())
}

/// Remove a lease's address (the kernel drops routes that depended on
/// it). Missing objects are not an error: the point is that they are gone.
pub async fn deconfigure(ns: &NetNs, ifname: &str, lease: &Lease) -> Result<()> {
    let net = Net::new(Some(ns), false)?;
    let link = lookup(&net, ifname).await?;
    for r in lease.effective_routes() {
        let _ = net.del_dhcp_route(&link, route4(&r)).await;
    }
    net.del_addr4(&link, lease.address, lease.prefix).await
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
