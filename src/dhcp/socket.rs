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
    /// `Option` only so `Drop` can take it.
    fd: Option<AsyncFd<OwnedFd>>,
    ifindex: i32,
    mac: [u8; 6],
    /// We brought the link up (it was down): undo that if we fail.
    pub raised: bool,
}

impl RawSocket {
    /// Open inside `ns` (the socket stays in it), bound to `ifname`; the
    /// link is brought up if it is down. One namespace round trip does it
    /// all: interface lookups use ioctls on the new socket, not netlink.
    /// Must be called within a tokio runtime.
    pub fn open(ns: &NetNs, ifname: &str) -> Result<Self> {
        let (fd, ifindex, mac, raised) = ns.run(|| open_packet_socket(ifname))??;
        // SAFETY: an OwnedFd always returns the same open descriptor, and
        // the AsyncFd owns it for its whole life.
        let fd = unsafe { AsyncFd::register(fd) }
            .map_err(|e| Error::io("dhcp: raw socket", e.into()))?;
        Ok(RawSocket {
            fd: Some(fd),
            ifindex,
            mac,
            raised,
        })
    }

    pub fn mac(&self) -> [u8; 6] {
        self.mac
    }

    fn raw(&self) -> i32 {
        self.fd
            .as_ref()
            .map(|f| f.get_ref().as_raw_fd())
            .unwrap_or(-1)
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
                self.raw(),
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
        let Some(fd) = self.fd.as_ref() else {
            return Err(Error::other("dhcp: raw socket closed"));
        };
        loop {
            let mut guard = fd
                .readable()
                .await
                .map_err(|e| Error::io("dhcp: raw socket", e))?;
            let res = guard.try_io(|fd| {
                // SAFETY: buf is valid for buf.len() bytes.
                let n = unsafe {
                    libc::recv(
                        fd.get_ref().as_raw_fd(),
                        buf.as_mut_ptr().cast(),
                        buf.len(),
                        0,
                    )
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

impl Drop for RawSocket {
    /// Closing an AF_PACKET socket waits for an RCU grace period
    /// (`synchronize_net` in `packet_release`): 10-20 ms here, more than
    /// the whole DHCP exchange. A short-lived child inherits the socket and
    /// drops the last reference after we have closed ours, so neither this
    /// call nor our process exit waits for it.
    fn drop(&mut self) {
        let Some(fd) = self.fd.take() else { return };
        let fd = fd.into_inner();
        let mut p = [0i32; 2];
        // SAFETY: pipe2 fills two fds on success.
        if unsafe { libc::pipe2(p.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            return; // plain (slow) close
        }
        // SAFETY: the child only calls async-signal-safe functions (close,
        // read, _exit) before exiting, as required after fork in a
        // multi-threaded process.
        let keep = fd.as_raw_fd();
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            unsafe {
                // Hold nothing but the socket and the pipe: an inherited
                // stdout would keep a `$(pipework ...)` reader waiting.
                let (a, b) = (keep.min(p[0]) as u32, keep.max(p[0]) as u32);
                if a > 0 {
                    libc::syscall(libc::SYS_close_range, 0u32, a - 1, 0u32);
                }
                if b > a + 1 {
                    libc::syscall(libc::SYS_close_range, a + 1, b - 1, 0u32);
                }
                libc::syscall(libc::SYS_close_range, b + 1, u32::MAX, 0u32);
                let mut b = 0u8;
                // Returns at EOF: when the parent has closed its copy of
                // the socket and then the write end.
                while libc::read(p[0], (&mut b as *mut u8).cast(), 1) < 0 {}
                libc::_exit(0);
            }
        }
        // SAFETY: p[0] is ours.
        unsafe { libc::close(p[0]) };
        drop(fd);
        // SAFETY: p[1] is ours; closing it releases the child.
        unsafe { libc::close(p[1]) };
        if pid > 0 {
            // Reap it off the caller's path (the keeper is long-lived).
            std::thread::spawn(move || {
                let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
            });
        }
    }
}

/// An `ifreq` for `ifname`; names that do not fit are refused.
fn ifreq(ifname: &str) -> std::io::Result<libc::ifreq> {
    // SAFETY: ifreq is plain data.
    let mut r: libc::ifreq = unsafe { std::mem::zeroed() };
    let b = ifname.as_bytes();
    if b.is_empty() || b.len() >= r.ifr_name.len() || b.contains(&0) {
        return Err(std::io::Error::from_raw_os_error(libc::ENODEV));
    }
    for (d, s) in r.ifr_name.iter_mut().zip(b) {
        *d = *s as libc::c_char;
    }
    Ok(r)
}

fn ioctl(fd: i32, req: libc::c_ulong, r: &mut libc::ifreq) -> std::io::Result<()> {
    // SAFETY: r is a valid ifreq for these SIOC* requests.
    if unsafe { libc::ioctl(fd, req as _, r as *mut libc::ifreq) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Index, MAC and up-state of `ifname` via ioctls on `fd`, bringing it up
/// if needed (nothing can be sent on a down link).
fn iface_setup(fd: i32, ifname: &str) -> Result<(i32, [u8; 6], bool)> {
    let ctx = |what: &str| format!("dhcp: {ifname}: {what}");
    let mut r = ifreq(ifname).map_err(|e| Error::io(ctx("bad interface name"), e))?;
    ioctl(fd, libc::SIOCGIFINDEX, &mut r).map_err(|e| match e.raw_os_error() {
        Some(libc::ENODEV) => {
            Error::NotFound(format!("{ifname}: no such interface in the namespace"))
        }
        _ => Error::io(ctx("lookup"), e),
    })?;
    // SAFETY: SIOCGIFINDEX filled the ifindex member.
    let index = unsafe { r.ifr_ifru.ifru_ifindex };
    let mut r = ifreq(ifname).map_err(|e| Error::io(ctx("lookup"), e))?;
    ioctl(fd, libc::SIOCGIFHWADDR, &mut r).map_err(|e| Error::io(ctx("hardware address"), e))?;
    // SAFETY: SIOCGIFHWADDR filled the hwaddr member.
    let hw = unsafe { r.ifr_ifru.ifru_hwaddr };
    if hw.sa_family != libc::ARPHRD_ETHER {
        return Err(Error::bad(
            ifname,
            "is not an Ethernet interface; DHCP needs one",
        ));
    }
    let mut mac = [0u8; 6];
    for (d, s) in mac.iter_mut().zip(hw.sa_data.iter()) {
        *d = *s as u8;
    }
    let mut r = ifreq(ifname).map_err(|e| Error::io(ctx("lookup"), e))?;
    ioctl(fd, libc::SIOCGIFFLAGS, &mut r).map_err(|e| Error::io(ctx("flags"), e))?;
    // SAFETY: SIOCGIFFLAGS filled the flags member.
    let flags = unsafe { r.ifr_ifru.ifru_flags };
    let raise = flags & libc::IFF_UP as i16 == 0;
    if raise {
        r.ifr_ifru.ifru_flags = flags | libc::IFF_UP as i16;
        ioctl(fd, libc::SIOCSIFFLAGS, &mut r)
            .map_err(|e| Error::io(ctx("cannot bring it up"), e))?;
    }
    Ok((index, mac, raise))
}

/// Take `ifname` down again (rollback of the link-up done by `open`).
pub fn set_down(ns: &NetNs, ifname: &str) -> Result<()> {
    let ifname = ifname.to_string();
    ns.run(move || -> Result<()> {
        // SAFETY: plain socket for the ioctl, owned immediately.
        let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            return Err(Error::io("dhcp: socket", std::io::Error::last_os_error()));
        }
        // SAFETY: raw is a fresh fd we own.
        let _fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let mut r = ifreq(&ifname).map_err(|e| Error::io("dhcp: link down", e))?;
        ioctl(raw, libc::SIOCGIFFLAGS, &mut r).map_err(|e| Error::io("dhcp: link down", e))?;
        // SAFETY: SIOCGIFFLAGS filled the flags member.
        let flags = unsafe { r.ifr_ifru.ifru_flags };
        r.ifr_ifru.ifru_flags = flags & !(libc::IFF_UP as i16);
        ioctl(raw, libc::SIOCSIFFLAGS, &mut r).map_err(|e| Error::io("dhcp: link down", e))
    })?
}

fn open_packet_socket(ifname: &str) -> Result<(OwnedFd, i32, [u8; 6], bool)> {
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
    let (ifindex, mac, raised) = iface_setup(raw, ifname)?;
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
    Ok((fd, ifindex, mac, raised))
}

/// A UDP socket on port 68 bound to one device, for renew/rebind/release.
pub struct UdpSocket {
    sock: tokio::net::UdpSocket,
}

impl UdpSocket {
    pub fn open(ns: &NetNs, ifname: &str) -> Result<Self> {
        let ifname = ifname.to_string();
        let std_sock = ns
            .run(move || -> std::io::Result<std::net::UdpSocket> {
                use nix::sys::socket::{
                    AddressFamily, SockFlag, SockType, SockaddrIn, bind, setsockopt, socket,
                    sockopt,
                };
                let fd = socket(
                    AddressFamily::Inet,
                    SockType::Datagram,
                    SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
                    None,
                )?;
                setsockopt(&fd, sockopt::ReuseAddr, &true)?;
                setsockopt(&fd, sockopt::Broadcast, &true)?;
                setsockopt(
                    &fd,
                    sockopt::BindToDevice,
                    &std::ffi::OsString::from(ifname),
                )?;
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
        let mut f = build_frame(
            [2; 6],
            [0xff; 6],
            Ipv4Addr::LOCALHOST,
            Ipv4Addr::BROADCAST,
            b"x",
        );
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
