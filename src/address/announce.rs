//! Native gratuitous ARP and unsolicited neighbour advertisement (no arping).
//! Sockets are opened inside the guest namespace on a short-lived thread.
use crate::error::{Error, Result};
use crate::netns::NetNs;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

fn last_os_error(what: &str) -> Error {
    Error::io(what, std::io::Error::last_os_error())
}

/// Build the Ethernet + ARP request frame a gratuitous ARP is: sender and
/// target protocol address both ours, broadcast destination.
pub fn garp_frame(mac: &[u8; 6], ip: Ipv4Addr) -> [u8; 42] {
    let mut f = [0u8; 42];
    f[0..6].copy_from_slice(&[0xff; 6]);
    f[6..12].copy_from_slice(mac);
    f[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
    f[14..16].copy_from_slice(&1u16.to_be_bytes()); // Ethernet
    f[16..18].copy_from_slice(&0x0800u16.to_be_bytes()); // IPv4
    f[18] = 6;
    f[19] = 4;
    f[20..22].copy_from_slice(&1u16.to_be_bytes()); // request
    f[22..28].copy_from_slice(mac);
    f[28..32].copy_from_slice(&ip.octets());
    // target hardware address stays zero
    f[38..42].copy_from_slice(&ip.octets());
    f
}

fn mac6(mac: &[u8]) -> Result<[u8; 6]> {
    mac.try_into()
        .map_err(|_| Error::other("link has no Ethernet address"))
}

pub fn gratuitous_arp(ns: &NetNs, ifindex: u32, mac: &[u8], ip: Ipv4Addr) -> Result<()> {
    let frame = garp_frame(&mac6(mac)?, ip);
    ns.run(move || -> Result<()> {
        // SAFETY: plain socket(2); the fd is owned immediately.
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(last_os_error("AF_PACKET socket"));
        }
        // SAFETY: fd is a fresh socket we own.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: sockaddr_ll is plain data; zeroed is a valid start.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = 0x0806u16.to_be();
        sll.sll_ifindex = ifindex as i32;
        sll.sll_halen = 6;
        sll.sll_addr[..6].copy_from_slice(&[0xff; 6]);
        // SAFETY: valid buffer and address of the right length.
        let n = unsafe {
            libc::sendto(
                fd.as_raw_fd(),
                frame.as_ptr().cast(),
                frame.len(),
                0,
                (&sll as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        if n < 0 {
            return Err(last_os_error("sending gratuitous ARP"));
        }
        Ok(())
    })?
}

/// ICMPv6 type 136 body: flags (Override), target, target link-layer option.
pub fn na_message(mac: &[u8; 6], target: Ipv6Addr) -> [u8; 32] {
    let mut m = [0u8; 32];
    m[0] = 136;
    m[4] = 0x20; // O flag: override stale cache entries
    m[8..24].copy_from_slice(&target.octets());
    m[24] = 2; // target link-layer address option
    m[25] = 1; // length in units of 8 bytes
    m[26..32].copy_from_slice(mac);
    m
}

pub fn unsolicited_na(ns: &NetNs, ifindex: u32, mac: &[u8], ip: Ipv6Addr) -> Result<()> {
    let msg = na_message(&mac6(mac)?, ip);
    ns.run(move || -> Result<()> {
        // SAFETY: plain socket(2); the fd is owned immediately.
        let fd = unsafe {
            libc::socket(
                libc::AF_INET6,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::IPPROTO_ICMPV6,
            )
        };
        if fd < 0 {
            return Err(last_os_error("ICMPv6 socket"));
        }
        // SAFETY: fd is a fresh socket we own.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let hops: libc::c_int = 255; // RFC 4861: NDP messages carry hop limit 255
        let idx: libc::c_int = ifindex as i32;
        // SAFETY: setsockopt with correctly sized int options.
        unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::IPPROTO_IPV6,
                libc::IPV6_MULTICAST_HOPS,
                (&hops as *const i32).cast(),
                4,
            );
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::IPPROTO_IPV6,
                libc::IPV6_MULTICAST_IF,
                (&idx as *const i32).cast(),
                4,
            );
        }
        // SAFETY: zeroed sockaddr_in6 is valid.
        let mut src: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
        src.sin6_family = libc::AF_INET6 as u16;
        src.sin6_addr.s6_addr = ip.octets();
        // SAFETY: valid address and length.
        if unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&src as *const libc::sockaddr_in6).cast(),
                std::mem::size_of::<libc::sockaddr_in6>() as u32,
            )
        } < 0
        {
            return Err(last_os_error("binding ICMPv6 socket"));
        }
        // SAFETY: zeroed sockaddr_in6 is valid.
        let mut dst: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
        dst.sin6_family = libc::AF_INET6 as u16;
        dst.sin6_addr.s6_addr = "ff02::1"
            .parse::<Ipv6Addr>()
            .map(|a| a.octets())
            .unwrap_or_default();
        dst.sin6_scope_id = ifindex;
        // SAFETY: valid buffer and address; the kernel fills the checksum.
        let n = unsafe {
            libc::sendto(
                fd.as_raw_fd(),
                msg.as_ptr().cast(),
                msg.len(),
                0,
                (&dst as *const libc::sockaddr_in6).cast(),
                std::mem::size_of::<libc::sockaddr_in6>() as u32,
            )
        };
        if n < 0 {
            return Err(last_os_error("sending neighbour advertisement"));
        }
        Ok(())
    })?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garp_layout() {
        let mac = [2, 0, 0, 0, 0, 1];
        let f = garp_frame(&mac, Ipv4Addr::new(10, 0, 0, 2));
        assert_eq!(&f[12..14], &[0x08, 0x06]);
        assert_eq!(&f[28..32], &[10, 0, 0, 2]);
        assert_eq!(&f[38..42], &[10, 0, 0, 2]);
        assert_eq!(&f[22..28], &mac);
    }

    #[test]
    fn na_layout() {
        let mac = [2, 0, 0, 0, 0, 1];
        let m = na_message(&mac, "2001:db8::5".parse().unwrap_or(Ipv6Addr::LOCALHOST));
        assert_eq!(m[0], 136);
        assert_eq!(m[4], 0x20);
        assert_eq!(&m[26..32], &mac);
    }
}
