//! Giving the container link its addresses: static, none, or DHCP (our own
//! client, or a classic external one).
pub mod announce;
mod dhcp;

use crate::error::Result;
use crate::guest::Guest;
use crate::netlink::{Journal, Link, Net};
use crate::request::{Addressing, AttachRequest};
use ipnetwork::IpNetwork;

/// What addressing put on the link.
#[derive(Debug, Default)]
pub struct Applied {
    pub addrs: Vec<IpNetwork>,
    /// Our DHCP client's lease, if it got one.
    pub lease: Option<crate::dhcp::Lease>,
    /// Pid of the lease keeper, when the lease is kept.
    pub keeper: Option<u32>,
}

/// Configure the request's addressing on the container link (already up).
pub async fn apply(
    guest: &Guest,
    req: &AttachRequest,
    cont: &Net,
    link: &Link,
    j: &mut Journal,
) -> Result<Applied> {
    match &req.addressing {
        Addressing::None => Ok(Applied::default()),
        Addressing::Dhcp(form) => dhcp::apply(guest, req, cont, link, form, j).await,
        Addressing::Static { addrs, gateways } => {
            for a in addrs {
                cont.add_addr(link, *a).await?;
            }
            for gw in gateways {
                // Outside every configured subnet the kernel refuses the
                // route ("Nexthop has invalid gateway") unless it is on-link.
                if !addrs.iter().any(|a| a.contains(*gw)) {
                    cont.add_host_route(link, *gw).await?;
                }
                cont.replace_default(j, link, *gw).await?;
            }
            Ok(Applied {
                addrs: addrs.clone(),
                ..Default::default()
            })
        }
    }
}

/// Tell the segment about the new addresses (gratuitous ARP / unsolicited
/// NA) so neighbours drop stale entries, e.g. after a container restart
/// with the same IP and a new MAC. Best effort: failures are warnings.
pub fn announce_all(guest: &crate::netns::NetNs, link: &Link, addrs: &[IpNetwork]) {
    if let Err(e) = announce::spawn(guest, link.index, &link.mac, addrs) {
        eprintln!("pipework: warning: could not announce addresses: {e}");
    }
}
