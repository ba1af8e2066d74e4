//! Link notifications: wait until an interface exists and is up with
//! carrier (`pipework --wait`).
//!
//! Order matters: we join the RTNLGRP_LINK multicast group *before* dumping
//! the current state, so a link that comes up between the dump and the
//! subscription cannot be missed.
use crate::error::{Error, Result};
use crate::netns::NetNs;
use futures::StreamExt;
use netlink_packet_core::NetlinkPayload;
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
use netlink_sys::{Socket, SocketAddr, TokioSocket, protocols::NETLINK_ROUTE};
use std::os::fd::{FromRawFd, IntoRawFd};
use std::time::Duration;

const RTNLGRP_LINK: u32 = 1;

/// True when `msg` describes `name` administratively up with carrier — what
/// the original's `cat /sys/class/net/IF/carrier` = 1 meant.
fn is_ready(msg: &LinkMessage, name: &str) -> bool {
    let named = msg
        .attributes
        .iter()
        .any(|a| matches!(a, LinkAttribute::IfName(n) if n == name));
    named
        && msg.header.flags.contains(LinkFlags::Up)
        && msg.header.flags.contains(LinkFlags::LowerUp)
}

/// A netlink socket in `ns` (or ours) that already receives link events.
fn subscribed_socket(ns: Option<&NetNs>) -> Result<Socket> {
    let make = || -> std::io::Result<i32> {
        let mut s = Socket::new(NETLINK_ROUTE)?;
        s.bind(&SocketAddr::new(0, 0))?;
        s.add_membership(RTNLGRP_LINK)?;
        Ok(s.into_raw_fd())
    };
    let raw = match ns {
        None => make(),
        Some(ns) => ns.run(make)?,
    }
    .map_err(|e| Error::io("cannot subscribe to link events", e))?;
    // SAFETY: `raw` is the netlink socket created just above; we own it.
    Ok(unsafe { Socket::from_raw_fd(raw) })
}

/// Wait until `ifname` in `ns` (None: our own namespace) is up with carrier.
/// `timeout` None waits forever, as the original did.
pub async fn wait_for_link(
    ns: Option<&NetNs>,
    ifname: &str,
    timeout: Option<Duration>,
) -> Result<()> {
    let sock = subscribed_socket(ns)?;
    sock.set_non_blocking(true)
        .map_err(|e| Error::io("netlink socket", e))?;
    // SAFETY: ownership of the fd moves into the tokio socket.
    let sock = unsafe { TokioSocket::from_raw_fd(sock.into_raw_fd()) };
    let (conn, handle, mut events) = rtnetlink::from_socket(sock);
    let conn = tokio::spawn(conn);

    let watch = async {
        // Current state, after subscribing.
        let mut dump = handle.link().get().match_name(ifname.to_string()).execute();
        loop {
            match dump.next().await {
                Some(Ok(msg)) if is_ready(&msg, ifname) => return Ok(()),
                Some(Ok(_)) => {}
                // ENODEV: not there yet; the events will tell us when it is.
                Some(Err(_)) | None => break,
            }
        }
        while let Some((msg, _)) = events.next().await {
            if let NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(link)) = msg.payload
                && is_ready(&link, ifname)
            {
                return Ok(());
            }
        }
        Err(Error::other("netlink event stream closed while waiting"))
    };
    let result = match timeout {
        None => watch.await,
        Some(t) => tokio::time::timeout(t, watch).await.unwrap_or_else(|_| {
            Err(Error::other(format!(
                "{ifname}: not up after {}s (is pipework attaching it? check -i)",
                t.as_secs_f64()
            )))
        }),
    };
    conn.abort();
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_needs_name_up_and_carrier() {
        let mut m = LinkMessage::default();
        m.attributes.push(LinkAttribute::IfName("eth1".into()));
        assert!(!is_ready(&m, "eth1"));
        m.header.flags = LinkFlags::Up;
        assert!(!is_ready(&m, "eth1"));
        m.header.flags = LinkFlags::Up | LinkFlags::LowerUp;
        assert!(is_ready(&m, "eth1"));
        assert!(!is_ready(&m, "eth2"));
    }
}
