//! DHCPv4: our own client, run from the host inside the container's
//! network namespace, so no DHCP client has to exist in the image or on the
//! host. `acquire` gets a lease, `apply` configures it (journaled), and
//! `keeper` keeps it alive afterwards. `external` runs the classic external
//! clients (udhcpc, dhclient, dhcpcd) for compatibility.
pub mod apply;
pub mod client;
pub mod cmd;
pub mod external;
pub mod keeper;
pub mod lease;
pub mod socket;

pub use apply::{apply, deconfigure, write_resolv_conf};
pub use client::DhcpOptions;
pub use lease::{Lease, StaticRoute};

use crate::error::{Error, Result};
use crate::netns::NetNs;
use tokio::time::Instant;

/// Obtain a lease for `ifname` in `ns`. Nothing is configured: on a
/// timeout the only change is that the link was brought up, which the
/// caller's journal (that created the link) undoes with the link itself.
pub async fn acquire(ns: &NetNs, ifname: &str, opts: &DhcpOptions) -> Result<Lease> {
    let until = Instant::now() + opts.timeout;
    let sock = socket::RawSocket::open(ns, ifname)?;
    let id = client::Identity::new(sock.mac(), opts);
    match client::obtain(&sock, &id, opts.request, until).await? {
        Some(lease) => Ok(lease),
        None => Err(Error::other(format!(
            "dhcp: no lease for {ifname} after {:.1} s (no DHCP server answered; raise --dhcp-timeout or check the network)",
            opts.timeout.as_secs_f64()
        ))),
    }
}
