//! Host routes through one link, scope link (the host shim routes each
//! macvlan guest's address through it): replaced on add so a re-run is
//! harmless, and a delete of a route already gone succeeds.
use super::errors::{gone_ok, nl_err};
use super::{Link, Net};
use crate::error::{Error, Result};
use netlink_packet_route::route::{RouteMessage, RouteScope};
use rtnetlink::RouteMessageBuilder;
use std::net::IpAddr;

fn host_len(ip: IpAddr) -> u8 {
    if ip.is_ipv4() { 32 } else { 128 }
}

fn message(index: u32, ip: IpAddr) -> Result<RouteMessage> {
    Ok(RouteMessageBuilder::<IpAddr>::new()
        .destination_prefix(ip, host_len(ip))
        .map_err(|e| Error::other(format!("route to {ip}: {e}")))?
        .output_interface(index)
        .scope(RouteScope::Link)
        .build())
}

impl Net {
    /// `ip route replace IP/32 dev LINK scope link`; `what` names the step
    /// in errors.
    pub async fn replace_host_route(&self, link: &Link, ip: IpAddr, what: String) -> Result<()> {
        if self.dry_run {
            self.show(format_args!(
                "route replace {ip}/{} dev {} scope link",
                host_len(ip),
                link.name
            ));
            return Ok(());
        }
        let msg = message(link.index, ip)?;
        self.handle
            .route()
            .add(msg)
            .replace()
            .execute()
            .await
            .map_err(|e| nl_err(what, e))
    }

    /// `ip route del IP/32 dev LINK`; a route already gone (ESRCH, ENOENT)
    /// is the goal.
    pub async fn del_host_route(&self, link: &Link, ip: IpAddr) -> Result<()> {
        if self.dry_run {
            self.show(format_args!(
                "route del {ip}/{} dev {}",
                host_len(ip),
                link.name
            ));
            return Ok(());
        }
        let msg = message(link.index, ip)?;
        let r = self.handle.route().del(msg).execute().await;
        gone_ok(
            r.map_err(|e| nl_err(format!("removing the route to {ip}"), e)),
            &[libc::ESRCH, libc::ENOENT],
        )
    }
}
