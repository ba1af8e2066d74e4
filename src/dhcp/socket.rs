//! Link-layer and UDP transports for the DHCP client.
//!
//! Before the interface has an address the kernel's UDP stack cannot send
//! from 0.0.0.0 or receive replies addressed to an address we do not have,
//! so the first exchange uses an AF_PACKET socket and hand-built
//! Ethernet/IPv4/UDP frames. Renewal (T1) is plain unicast UDP to the server
//! and rebinding (T2) broadcast UDP, both from the leased address.
//!
//! Every parser here treats input as hostile: a short, truncated or
//! inconsistent frame is dropped, never indexed past its end.
use crate::error::{Error, Result};
use crate::netns::NetNs;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use tokio::io::unix::AsyncFd;

pub const CLIENT_PORT: u16 = 68;
pub const SERVER_PORT: u16 = 67;
const ETH_P_IP: u16 = 0x0800;
const ETH_HLEN: usize = 14;
/// BOOTP's minimum message size; some relays and servers drop shorter ones.
const BOOTP_MIN: usize = 300;

/// Classic BPF: accept unfragmented IPv4/UDP to port 68, drop the rest in
/// the kernel so a busy segment does not wake us for every frame.
const FILTER: [libc::sock_filter; 11] = [
    bpf(0x28, 0, 0, 12),     // ldh [12]            ethertype
    bpf(0x15, 0, 8, 0x0800), // jeq IPv4 else drop
    bpf(0x30, 0, 0, 23),     // ldb [23]            protocol
    bpf(0x15, 0, 6, 17),     // jeq UDP else drop
    bpf(0x28, 0, 0, 20),     // ldh [20]            flags/fragment
    bpf(0x45, 4, 0, 0x1fff), // jset fragment offset -> drop
    bpf(0xb1, 0, 0, 14),     // ldxb 4*([14]&0xf)   IP header length
    bpf(0x48, 0, 0, 16),     // ldh [x+16]          UDP dst port
    bpf(0x15, 0, 1, 68),     // jeq 68 else drop
    bpf(0x06, 0, 0, 0xffff), // accept
    bpf(0x06, 0, 0, 0),      // drop
];

const fn bpf(code: u16, jt: u8, jf: u8, k: u32) -> libc::sock_filter {
    libc::sock_filter { code, jt, jf, k }
}

/// An AF_PACKET socket bound to one interface of one namespace.
pub struct RawSocket {
    fd: AsyncFd<OwnedFd>,
    ifindex: i32,
    mac: [u8; 6],
}

impl RawSocket {
    /// Open inside `ns` (the socket stays in it) and bind to `ifindex`.
    /// Must be called within a tokio runtime.
    pub fn open(ns: &NetNs, ifindex: u32, mac: [u8; 6]) -> Result<Self> {
        let fd = ns.run(|| open_packet_socket(ifindex as i32))??;
        // SAFETY: an OwnedFd always returns the same open descriptor, and
        // the AsyncFd owns it for its whole life.
        let fd = unsafe { AsyncFd::register(fd) }
            .map_err(|e| Error::io("dhcp: raw socket", e.into()))?;
        Ok(RawSocket {
            fd,
            ifindex: ifindex as i32,
            mac,
        })
    }

    /// Broadcast a DHCP payload from 0.0.0.0:68 to 255.255.255.255:67.
    pub fn send_broadcast(&self, payload: &[u8]) -> Result<()> {
        let frame = build_frame(
            self.mac,
            [0xff; 6],
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::BROADCAST,
            payload,
        );
        // SAFETY: sockaddr_ll is plain data; zeroed is a valid start.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = ETH_P_IP.to_be();
        sll.sll_ifindex = self.ifindex;
        sll.sll_halen = 6;
        sll.sll_addr[..6].copy_from_slice(&[0xff; 6]);
        // SAFETY: valid buffer and address of the right length.
        let n = unsafe {
            libc::sendto(
                self.fd.get_ref().as_raw_fd(),
                frame.as_ptr().cast(),
                frame.len(),
                0,
                (&sll as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        if n < 0 {
            return Err(Error::io(
                "dhcp: cannot send on raw socket",
                std::io::Error::last_os_error(),
            ));
        }
        Ok(())
    }

    /// Next frame's DHCP payload (copied out); frames that are not a
    /// well-formed IPv4/UDP datagram to port 68 are skipped.
    pub async fn recv(&self) -> Result<Vec<u8>> {
        let mut buf = vec![0u8; 2048];
        loop {
            let mut guard = self
                .fd
                .readable()
                .await
                .map_err(|e| Error::io("dhcp: raw socket", e))?;
            let res = guard.try_io(|fd| {
                // SAFETY: buf is valid for buf.len() bytes.
                let n = unsafe {
                    libc::recv(fd.get_ref().as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0)
                };
                if n < 0 {
                    Err(std::io::Error::last_os_error())
                } else {
                    Ok(n as usize)
                }
            });
            match res {
                Ok(Ok(n)) => {
                    if let Some(p) = parse_frame(&buf[..n]) {
                        return Ok(p.payload.to_vec());
                    }
                }
                Ok(Err(e)) => return Err(Error::io("dhcp: raw socket receive", e)),
                Err(_would_block) => continue,
            }
        }
    }
}

fn open_packet_socket(ifindex: i32) -> Result<OwnedFd> {
    let last = || std::io::Error::last_os_error();
    // Protocol 0 first: the socket receives nothing until bound, so no
    // unfiltered frame can slip in before the filter is attached.
    // SAFETY: plain syscalls; the fd is owned immediately.
    let raw = unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
            0,
        )
    };
    if raw < 0 {
        return Err(Error::io("dhcp: cannot open AF_PACKET socket", last()));
    }
    // SAFETY: raw is a fresh fd we own.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let prog = libc::sock_fprog {
        len: FILTER.len() as u16,
        filter: FILTER.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: prog points to a static filter that outlives the call.
    let rc = unsafe {
        libc::setsockopt(
            raw,
            libc::SOL_SOCKET,
            libc::SO_ATTACH_FILTER,
            (&prog as *const libc::sock_fprog).cast(),
            std::mem::size_of::<libc::sock_fprog>() as u32,
        )
    };
    if rc < 0 {
        return Err(Error::io("dhcp: cannot attach socket filter", last()));
    }
    // SAFETY: as above.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = ETH_P_IP.to_be();
    sll.sll_ifindex = ifindex;
    // SAFETY: sll is a valid sockaddr_ll.
    let rc = unsafe {
        libc::bind(
            raw,
            (&sll as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as u32,
        )
    };
    if rc < 0 {
        return Err(Error::io("dhcp: cannot bind AF_PACKET socket", last()));
    }
    Ok(fd)
}

/// A UDP socket on port 68 bound to one device, for renew/rebind/release.
pub struct UdpSocket {
    sock: tokio::net::UdpSocket,
}

impl UdpSocket {
    pub fn open(ns: &NetNs, ifname: &str) -> Result<Self> {
        let ifname = ifname.to_string();
        let std_sock = ns.run(move || -> std::io::Result<std::net::UdpSocket> {
            use nix::sys::socket::{
                AddressFamily, SockFlag, SockType, SockaddrIn, bind, setsockopt, socket, sockopt,
            };
            let fd = socket(
                AddressFamily::Inet,
                SockType::Datagram,
                SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
                None,
            )?;
            setsockopt(&fd, sockopt::ReuseAddr, &true)?;
            setsockopt(&fd, sockopt::Broadcast, &true)?;
            setsockopt(&fd, sockopt::BindToDevice, &std::ffi::OsString::from(ifname))?;
            bind(
                fd.as_raw_fd(),
                &SockaddrIn::from(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, CLIENT_PORT)),
            )?;
            Ok(std::net::UdpSocket::from(fd))
        })?
        .map_err(|e| Error::io("dhcp: cannot open UDP socket on port 68", e))?;
        let sock = tokio::net::UdpSocket::from_std(std_sock)
            .map_err(|e| Error::io("dhcp: UDP socket", e))?;
        Ok(UdpSocket { sock })
    }

    pub async fn send_to(&self, payload: &[u8], dst: Ipv4Addr) -> Result<()> {
        let mut p = payload.to_vec();
        if p.len() < BOOTP_MIN {
            p.resize(BOOTP_MIN, 0);
        }
        self.sock
            .send_to(&p, SocketAddrV4::new(dst, SERVER_PORT))
            .await
            .map_err(|e| Error::io(format!("dhcp: cannot send to {dst}"), e))?;
        Ok(())
    }

    pub async fn recv(&self) -> Result<Vec<u8>> {
        let mut buf = vec![0u8; 2048];
        let (n, _) = self
            .sock
            .recv_from(&mut buf)
            .await
            .map_err(|e| Error::io("dhcp: UDP receive", e))?;
        buf.truncate(n);
        Ok(buf)
    }
}

/// What we keep from a received frame.
#[derive(Debug, PartialEq, Eq)]
pub struct Udp<'a> {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub src_port: u16,
    pub payload: &'a [u8],
}

/// Parse an Ethernet frame down to the UDP payload of an unfragmented
/// IPv4 datagram to port 68. UDP checksums are not verified: on veth and
/// other offloading devices a packet socket sees them before the
/// checksum is filled in; the IPv4 header checksum is verified.
pub fn parse_frame(frame: &[u8]) -> Option<Udp<'_>> {
    let eth_type = u16::from_be_bytes([*frame.get(12)?, *frame.get(13)?]);
    if eth_type != ETH_P_IP {
        return None;
    }
    parse_ipv4(frame.get(ETH_HLEN..)?)
}

pub fn parse_ipv4(ip: &[u8]) -> Option<Udp<'_>> {
    let vihl = *ip.first()?;
    if vihl >> 4 != 4 {
        return None;
    }
    let ihl = usize::from(vihl & 0x0f) * 4;
    if ihl < 20 || ip.len() < ihl {
        return None;
    }
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    if total < ihl + 8 || total > ip.len() {
        return None;
    }
    let frag = u16::from_be_bytes([ip[6], ip[7]]);
    if frag & 0x3fff != 0 {
        return None; // fragments (MF set or offset != 0)
    }
    if ip[9] != 17 || checksum(&ip[..ihl]) != 0 {
        return None;
    }
    let src = Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
    let dst = Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]);
    let udp = &ip[ihl..total];
    let src_port = u16::from_be_bytes([udp[0], udp[1]]);
    let dst_port = u16::from_be_bytes([udp[2], udp[3]]);
    let ulen = usize::from(u16::from_be_bytes([udp[4], udp[5]]));
    if dst_port != CLIENT_PORT || ulen < 8 || ulen > udp.len() {
        return None;
    }
    Some(Udp {
        src,
        dst,
        src_port,
        payload: &udp[8..ulen],
    })
}

/// Build Ethernet + IPv4 + UDP(68 -> 67) around `payload`.
pub fn build_frame(
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src: Ipv4Addr,
    dst: Ipv4Addr,
    payload: &[u8],
) -> Vec<u8> {
    let plen = payload.len().max(BOOTP_MIN);
    let udp_len = 8 + plen;
    let ip_len = 20 + udp_len;
    let mut f = Vec::with_capacity(ETH_HLEN + ip_len);
    f.extend_from_slice(&dst_mac);
    f.extend_from_slice(&src_mac);
    f.extend_from_slice(&ETH_P_IP.to_be_bytes());
    // IPv4 header; TOS "low delay" like other DHCP clients.
    let mut ip = [0u8; 20];
    ip[0] = 0x45;
    ip[1] = 0x10;
    ip[2..4].copy_from_slice(&(ip_len as u16).to_be_bytes());
    ip[8] = 64;
    ip[9] = 17;
    ip[12..16].copy_from_slice(&src.octets());
    ip[16..20].copy_from_slice(&dst.octets());
    let c = checksum(&ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(&ip);
    let udp_start = f.len();
    f.extend_from_slice(&CLIENT_PORT.to_be_bytes());
    f.extend_from_slice(&SERVER_PORT.to_be_bytes());
    f.extend_from_slice(&(udp_len as u16).to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.extend_from_slice(payload);
    f.resize(ETH_HLEN + ip_len, 0);
    // UDP checksum over the pseudo-header.
    let mut pseudo = Vec::with_capacity(12 + udp_len);
    pseudo.extend_from_slice(&src.octets());
    pseudo.extend_from_slice(&dst.octets());
    pseudo.extend_from_slice(&[0, 17]);
    pseudo.extend_from_slice(&(udp_len as u16).to_be_bytes());
    pseudo.extend_from_slice(&f[udp_start..]);
    let mut c = checksum(&pseudo);
    if c == 0 {
        c = 0xffff;
    }
    f[udp_start + 6..udp_start + 8].copy_from_slice(&c.to_be_bytes());
    f
}

/// RFC 1071 Internet checksum; 0 when verifying a correct header.
pub fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        sum += u32::from(*last) << 8;
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_round_trip() {
        let mut f = build_frame(
            [2, 0, 0, 0, 0, 1],
            [0xff; 6],
            Ipv4Addr::new(10, 0, 0, 1),
            Ipv4Addr::BROADCAST,
            b"hello",
        );
        // Our builder sends to port 67; flip it to look like a reply.
        f[ETH_HLEN + 20..ETH_HLEN + 22].copy_from_slice(&67u16.to_be_bytes());
        f[ETH_HLEN + 22..ETH_HLEN + 24].copy_from_slice(&68u16.to_be_bytes());
        let u = parse_frame(&f).expect("parse");
        assert_eq!(u.src, Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(&u.payload[..5], b"hello");
        assert_eq!(u.payload.len(), BOOTP_MIN);
    }

    #[test]
    fn truncated_frames_are_dropped() {
        let mut f = build_frame([2; 6], [0xff; 6], Ipv4Addr::LOCALHOST, Ipv4Addr::BROADCAST, b"x");
        // Port 67 (our own request) is not for us.
        assert!(parse_frame(&f).is_none());
        f[ETH_HLEN + 22..ETH_HLEN + 24].copy_from_slice(&68u16.to_be_bytes());
        assert!(parse_frame(&f).is_some());
        for n in 0..f.len() {
            assert!(parse_frame(&f[..n]).is_none(), "accepted {n} bytes");
        }
        // A corrupted IPv4 header checksum is dropped.
        f[ETH_HLEN + 8] ^= 1;
        assert!(parse_frame(&f).is_none());
    }
}
