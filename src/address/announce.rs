//! Native gratuitous ARP and unsolicited neighbour advertisements (no arping).
//!
//! They are sent from a detached child process (not waited for), for two reasons found
//! by measurement: closing an AF_PACKET socket waits for an RCU grace period
//! (~10 ms, `packet_release` → `synchronize_net`), which would double the
//! cost of an attach; and a bridge port only forwards once the kernel's
//! link watcher has seen the veth carrier come up, so one announcement at
//! once can be lost — the child repeats it a few times over a second.
use crate::error::{Error, Result};
use crate::netns::NetNs;
use ipnetwork::IpNetwork;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::AsRawFd;

/// A long-lived caller (`pipework watch`) has no exit after which init
/// would reap the announcer: it asks for a double fork instead, so the
/// announcer is init's child and no zombie is left per attach.
static LONG_LIVED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

pub fn set_long_lived() {
    LONG_LIVED.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// Delays between repeats, in milliseconds.
const REPEATS_MS: [u32; 3] = [0, 150, 800];

/// Ethernet + ARP request with sender and target protocol address both
/// ours, to broadcast: the classic gratuitous ARP.
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
    f[38..42].copy_from_slice(&ip.octets());
    f
}

/// ICMPv6 type 136 body with the Override flag and a target link-layer
/// address option; the kernel fills in the checksum.
pub fn na_message(mac: &[u8; 6], target: Ipv6Addr) -> [u8; 32] {
    let mut m = [0u8; 32];
    m[0] = 136;
    m[4] = 0x20;
    m[8..24].copy_from_slice(&target.octets());
    m[24] = 2;
    m[25] = 1;
    m[26..32].copy_from_slice(mac);
    m
}

/// Everything the child needs, prepared before fork so that it only
/// makes system calls (no allocation after fork).
struct Plan {
    ifindex: u32,
    garps: Vec<[u8; 42]>,
    nas: Vec<(Ipv6Addr, [u8; 32])>,
}

/// Announce `addrs` on `ifindex` inside `ns`, in the background.
pub fn spawn(ns: &NetNs, ifindex: u32, mac: &[u8], addrs: &[IpNetwork]) -> Result<()> {
    let mac: [u8; 6] = mac
        .try_into()
        .map_err(|_| Error::other("link has no Ethernet address"))?;
    let plan = Plan {
        ifindex,
        garps: addrs
            .iter()
            .filter_map(|a| match a.ip() {
                IpAddr::V4(v4) => Some(garp_frame(&mac, v4)),
                _ => None,
            })
            .collect(),
        nas: addrs
            .iter()
            .filter_map(|a| match a.ip() {
                IpAddr::V6(v6) => Some((v6, na_message(&mac, v6))),
                _ => None,
            })
            .collect(),
    };
    if plan.garps.is_empty() && plan.nas.is_empty() {
        return Ok(());
    }
    let nsfd = ns.fd().as_raw_fd();
    let double = LONG_LIVED.load(std::sync::atomic::Ordering::Relaxed);
    // The child tells us it has let go of stdio by closing its end of this
    // pipe. Without the handshake our exit could come before the child ran
    // at all, and whoever reads our output would see the pipe still held
    // for a moment (a CI run caught exactly that). Blocking on the pipe
    // costs one context switch, not a wait for the announcer.
    let mut sync = [0 as libc::c_int; 2];
    // SAFETY: pipe2 writes two fds into the array we own.
    if unsafe { libc::pipe2(sync.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(Error::io("pipe2", std::io::Error::last_os_error()));
    }
    // One fork, and no wait for it to finish: waiting for an intermediate
    // child to fork and exit cost 0.5 to 1.4 ms of every attach
    // (docs/perf.md). The child is reaped by init once we exit, which the
    // CLI and the CNI plugin do right after printing their result.
    // SAFETY: called from a single-threaded point (the namespace helper
    // threads have been joined); the child only makes raw system calls and
    // leaves with _exit.
    unsafe {
        match libc::fork() {
            -1 => {
                let e = std::io::Error::last_os_error();
                libc::close(sync[0]);
                libc::close(sync[1]);
                return Err(Error::io("fork", e));
            }
            0 => {
                // Let go of stdio first: whoever reads our output (a CNI
                // runtime, a `| jq`) waits for EOF, which would otherwise
                // come only when the announcer ends (~1 s).
                libc::close(0);
                libc::close(1);
                libc::close(2);
                libc::close(sync[0]);
                libc::close(sync[1]);
                if double && libc::fork() != 0 {
                    libc::_exit(0);
                }
                libc::setsid();
                if libc::setns(nsfd, libc::CLONE_NEWNET) == 0 {
                    // Let go of every other inherited descriptor: a
                    // netlink socket or namespace fd of another guest
                    // would keep that namespace alive for our second.
                    libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32);
                    announce(&plan);
                }
                libc::_exit(0);
            }
            pid => {
                libc::close(sync[1]);
                let mut b = 0u8;
                // Returns 0 (EOF) once the child closed its copy; retry
                // only on EINTR.
                while libc::read(sync[0], (&mut b as *mut u8).cast(), 1) < 0
                    && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted
                {
                }
                libc::close(sync[0]);
                if double {
                    // The intermediate child exits right after its fork.
                    libc::waitpid(pid, std::ptr::null_mut(), 0);
                }
            }
        }
    }
    Ok(())
}

/// Runs in the forked child: raw system calls only.
unsafe fn announce(plan: &Plan) {
    // SAFETY (whole body): plain socket calls on stack data.
    unsafe {
        let pkt = libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0);
        let icmp = libc::socket(
            libc::AF_INET6,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::IPPROTO_ICMPV6,
        );
        let mut sll: libc::sockaddr_ll = std::mem::zeroed();
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = 0x0806u16.to_be();
        sll.sll_ifindex = plan.ifindex as i32;
        sll.sll_halen = 6;
        sll.sll_addr[..6].copy_from_slice(&[0xff; 6]);
        let hops: libc::c_int = 255; // RFC 4861: NDP needs hop limit 255
        let idx: libc::c_int = plan.ifindex as i32;
        if icmp >= 0 {
            libc::setsockopt(
                icmp,
                libc::IPPROTO_IPV6,
                libc::IPV6_MULTICAST_HOPS,
                (&hops as *const i32).cast(),
                4,
            );
            libc::setsockopt(
                icmp,
                libc::IPPROTO_IPV6,
                libc::IPV6_MULTICAST_IF,
                (&idx as *const i32).cast(),
                4,
            );
        }
        let mut dst: libc::sockaddr_in6 = std::mem::zeroed();
        dst.sin6_family = libc::AF_INET6 as u16;
        dst.sin6_addr.s6_addr = [0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
        dst.sin6_scope_id = plan.ifindex;
        for delay in REPEATS_MS {
            libc::usleep(delay * 1000);
            if pkt >= 0 {
                for f in &plan.garps {
                    libc::sendto(
                        pkt,
                        f.as_ptr().cast(),
                        f.len(),
                        0,
                        (&sll as *const libc::sockaddr_ll).cast(),
                        std::mem::size_of::<libc::sockaddr_ll>() as u32,
                    );
                }
            }
            if icmp >= 0 {
                for (_, m) in &plan.nas {
                    libc::sendto(
                        icmp,
                        m.as_ptr().cast(),
                        m.len(),
                        0,
                        (&dst as *const libc::sockaddr_in6).cast(),
                        std::mem::size_of::<libc::sockaddr_in6>() as u32,
                    );
                }
            }
        }
    }
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
        let m = na_message(&mac, Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 5));
        assert_eq!(m[0], 136);
        assert_eq!(m[4], 0x20);
        assert_eq!(m[23], 5);
        assert_eq!(&m[26..32], &mac);
    }
}
