//! The agent's sweep decisions, kept pure so tests can hold them: which of
//! this host's claims are given back because no container holds them.
//!
//! "No container holds it" is read from a scan of every namespace. A scan
//! that could not look into some namespace knows nothing about that
//! namespace's containers: releasing on its word would hand a live
//! container's address to the next `auto` claim (two containers on one
//! address). So `local` is `None` when the scan was incomplete, and then
//! nothing is released.

use std::net::IpAddr;

/// An endpoint with no host-side link name to look for, older than the
/// grace minute: gone only when a complete scan finds no container on its
/// address.
pub fn unlinked_ep_gone(local: Option<&[IpAddr]>, ip: IpAddr) -> bool {
    local.is_some_and(|l| !l.contains(&ip))
}

/// This host's reservations `(net, ip, rev)` to release: those with no
/// endpoint in etcd and no container on their address in a complete scan.
pub fn orphan_resvs(
    resv: Vec<(String, IpAddr, i64)>,
    has_ep: impl Fn(&str, IpAddr) -> bool,
    local: Option<&[IpAddr]>,
) -> Vec<(String, IpAddr, i64)> {
    let Some(local) = local else {
        return Vec::new();
    };
    resv.into_iter()
        .filter(|(net, ip, _)| !has_ep(net, *ip) && !local.contains(ip))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(n: u8) -> IpAddr {
        std::net::Ipv4Addr::new(10, 0, 0, n).into()
    }

    fn resv() -> Vec<(String, IpAddr, i64)> {
        vec![
            ("a".into(), ip(1), 11),
            ("a".into(), ip(2), 12),
            ("a".into(), ip(3), 13),
        ]
    }

    #[test]
    fn an_incomplete_scan_releases_nothing() {
        // .1 has no endpoint and the scan that failed may have hidden its
        // container: it stays reserved.
        assert!(orphan_resvs(resv(), |_, _| false, None).is_empty());
        assert!(!unlinked_ep_gone(None, ip(1)));
    }

    #[test]
    fn a_complete_scan_releases_only_unheld_reservations() {
        let local = [ip(2)];
        let has_ep = |_: &str, i: IpAddr| i == ip(3);
        let out = orphan_resvs(resv(), has_ep, Some(&local));
        assert_eq!(out, vec![("a".to_string(), ip(1), 11)]);
        assert!(unlinked_ep_gone(Some(&local), ip(1)));
        assert!(!unlinked_ep_gone(Some(&local), ip(2)));
    }
}
