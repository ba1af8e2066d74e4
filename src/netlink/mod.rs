//! Typed netlink operations over rtnetlink, plus the undo journal.
pub mod bridge_vlan;
pub mod change;
pub mod child;
pub mod details;
pub mod errors;
pub mod events;
pub mod group;
pub mod host_link;
pub mod host_route;
pub mod journal;
pub mod lease;
pub mod lookup;
pub mod ops;
pub mod pair;
pub mod raw;
pub mod route;
pub mod tc;
pub mod tc_redirect;
pub mod vf;
pub mod vxlan;
// WireGuard (the overlay's encrypted networks): keys travel as base64.
#[cfg(feature = "overlay")]
pub mod wg;

pub use change::LinkChange;
pub use errors::nl_err;
pub use lease::Route4;
pub use ops::{Link, Net};

use crate::error::{Error, Result};
use crate::netns::NetNs;
use netlink_sys::{Socket, TokioSocket, protocols::NETLINK_ROUTE};
use std::os::fd::{FromRawFd, IntoRawFd};

pub use journal::Journal;

/// Open an rtnetlink connection bound to `ns` (or to our own namespace).
///
/// The socket is created on a short-lived thread inside the namespace; a
/// netlink socket keeps talking to the namespace it was created in, so the
/// connection can then be driven from any tokio task.
pub fn connect(ns: Option<&NetNs>) -> Result<rtnetlink::Handle> {
    match ns {
        None => from_raw(
            Socket::new(NETLINK_ROUTE)
                .map_err(|e| Error::io("cannot open netlink socket", e))?
                .into_raw_fd(),
        ),
        Some(ns) => connect_all(&[ns])
            .pop()
            .unwrap_or_else(|| Err(Error::other("no netlink socket for the namespace"))),
    }
}

/// One connection per namespace, all sockets opened by a single
/// short-lived thread that enters each namespace in turn: `ls` and `gc`
/// over 1,000 namespaces would otherwise pay 1,000 thread starts.
pub fn connect_all(nss: &[&NetNs]) -> Vec<Result<rtnetlink::Handle>> {
    let raws: Vec<std::io::Result<std::os::fd::RawFd>> = std::thread::scope(|s| {
        s.spawn(|| {
            nss.iter()
                .map(|ns| {
                    nix::sched::setns(ns.fd(), nix::sched::CloneFlags::CLONE_NEWNET)
                        .map_err(std::io::Error::from)?;
                    Socket::new(NETLINK_ROUTE).map(|s| s.into_raw_fd())
                })
                .collect()
        })
        .join()
        .unwrap_or_default()
    });
    if raws.len() != nss.len() {
        return nss
            .iter()
            .map(|_| Err(Error::other("namespace worker thread panicked")))
            .collect();
    }
    raws.into_iter()
        .map(|r| {
            r.map_err(|e| Error::io("cannot open netlink socket in namespace", e))
                .and_then(from_raw)
        })
        .collect()
}

fn from_raw(raw: std::os::fd::RawFd) -> Result<rtnetlink::Handle> {
    // SAFETY: `raw` is a netlink socket we just created and own.
    let sock = unsafe { Socket::from_raw_fd(raw) };
    sock.set_non_blocking(true)
        .map_err(|e| Error::io("netlink socket", e))?;
    // SAFETY: ownership of the fd moves into the tokio socket.
    let sock = unsafe { TokioSocket::from_raw_fd(sock.into_raw_fd()) };
    let (conn, handle, _) = rtnetlink::from_socket(sock);
    tokio::spawn(conn);
    Ok(handle)
}
