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

/// Obtain a lease for `ifname` in `ns`. Nothing is configured; the link is
/// brought up if it was down, and taken down again if we fail, so a
/// timeout leaves the namespace exactly as it was.
pub async fn acquire(ns: &NetNs, ifname: &str, opts: &DhcpOptions) -> Result<Lease> {
    let until = Instant::now() + opts.timeout;
    let sock = socket::RawSocket::open(ns, ifname)?;
    let id = client::Identity::new(sock.mac(), opts);
    let got = client::obtain(&sock, &id, opts.request, until).await;
    let raised = sock.raised;
    drop(sock);
    let got = match got {
        Ok(Some(lease)) => return Ok(lease),
        Ok(None) => Err(Error::other(format!(
            "dhcp: no lease for {ifname} after {:.1} s (no DHCP server answered; raise --dhcp-timeout or check the network)",
            opts.timeout.as_secs_f64()
        ))),
        Err(e) => Err(e),
    };
    if raised {
        let _ = socket::set_down(ns, ifname);
    }
    got
}
