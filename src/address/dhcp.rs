//! The DHCP forms of the address argument, on top of `crate::dhcp`.
use super::Applied;
use crate::dhcp::{self, DhcpOptions, external, keeper};
use crate::error::{Error, Result};
use crate::guest::Guest;
use crate::netlink::{Journal, Link, Net};
use crate::request::{AttachRequest, DhcpForm};
use ipnetwork::IpNetwork;

pub async fn apply(
    guest: &Guest,
    req: &AttachRequest,
    cont: &Net,
    link: &Link,
    form: &DhcpForm,
    j: &mut Journal,
) -> Result<Applied> {
    if cont.dry_run {
        println!(
            "# dhcp on {} ({form:?}): done by pipework's own client at run time",
            link.name
        );
        return Ok(Applied::default());
    }
    let ns = &guest.netns;
    match form {
        DhcpForm::External { method } => {
            let f = external::parse(method).ok_or_else(|| {
                Error::bad(
                    method,
                    "not a DHCP client form (dhcp, dhcp:once, udhcpc, dhclient, dhcpcd, …)",
                )
            })?;
            external::run(ns, &link.name, &guest.name, &f, req.dhcp_timeout).await?;
            Ok(Applied::default())
        }
        DhcpForm::Native { keep } => {
            let opts = DhcpOptions {
                // The original passed the container name as the hostname.
                hostname: hostname_for(guest),
                timeout: req.dhcp_timeout,
                ..Default::default()
            };
            let lease = dhcp::acquire(ns, &link.name, &opts).await?;
            dhcp::apply(ns, &link.name, &lease, j).await?;
            if req.dns_write {
                let pid = guest.pid.ok_or_else(|| {
                    Error::bad(
                        "--dns-write",
                        "needs a container or pid guest (its root holds resolv.conf)",
                    )
                })?;
                // Pinned to the process that is still in the guest's
                // namespace: the pid may have been reused since we resolved it.
                let root = crate::guest::fs::GuestRoot::of_process(pid, Some(ns.inode()?))?;
                dhcp::write_resolv_conf(std::sync::Arc::new(root), &lease, j)?;
            }
            let keeper = if *keep {
                let pid = keeper::spawn(ns, &link.name, &lease, &opts).await?;
                let ino = ns.inode()?;
                let ifname = link.name.clone();
                j.record(format!("DHCP lease keeper {pid}"), async move {
                    keeper::release_key(ino, &ifname).await.map(|_| ())
                });
                Some(pid)
            } else {
                None
            };
            let addrs = IpNetwork::new(lease.address.into(), lease.prefix)
                .map(|n| vec![n])
                .unwrap_or_default();
            Ok(Applied {
                addrs,
                lease: Some(lease),
                keeper,
            })
        }
    }
}

/// Option 12 must be a plain host name; a namespace path is not one.
fn hostname_for(guest: &Guest) -> Option<String> {
    let n = guest.name.as_str();
    let ok = !n.is_empty()
        && n.len() <= 63
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_');
    ok.then(|| n.replace('_', "-"))
}
