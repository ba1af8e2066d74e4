//! Giving the container link its addresses: static now; DHCP plugs in here.
pub mod announce;

use crate::error::Result;
use crate::netlink::{Journal, Link, Net};
use crate::request::Addressing;
use ipnetwork::IpNetwork;

/// Bring the container link up and configure `addressing` on it.
/// Returns the addresses now on the link (for output and announcements).
pub async fn apply(
    cont: &Net,
    link: &Link,
    addressing: &Addressing,
    j: &mut Journal,
) -> Result<Vec<IpNetwork>> {
    cont.set_up(link).await?;
    let Addressing::Static { addrs, gateways } = addressing else {
        return Ok(vec![]);
    };
    for a in addrs {
        cont.add_addr(link, *a).await?;
    }
    for gw in gateways {
        // Outside every configured subnet the kernel refuses the route
        // ("Nexthop has invalid gateway") unless the gateway is on-link.
        if !addrs.iter().any(|a| a.contains(*gw)) {
            cont.add_host_route(link, *gw).await?;
        }
        cont.replace_default(j, link, *gw).await?;
    }
    Ok(addrs.clone())
}

/// Tell the segment about the new addresses (gratuitous ARP / unsolicited
/// NA) so neighbours drop stale entries, e.g. after a container restart
/// with the same IP and a new MAC. Best effort: failures are warnings.
pub fn announce_all(guest: &crate::netns::NetNs, link: &Link, addrs: &[IpNetwork]) {
    if let Err(e) = announce::spawn(guest, link.index, &link.mac, addrs) {
        eprintln!("pipework: warning: could not announce addresses: {e}");
    }
}
