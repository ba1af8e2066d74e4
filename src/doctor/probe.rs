//! Probes from inside A's namespace: one ICMP echo (resent once) and, with
//! `--port`, one TCP connect, each on a short-lived thread that enters the
//! namespace (`NetNs::run`), never on a tokio worker. Sockets close when
//! the thread ends; no process is started. ARP/ND happen as a side effect
//! of the echo, and the neighbour entry they leave is read afterwards.
use crate::error::Result;
use crate::netns::NetNs;
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

/// What the probes saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// Round trip of the echo, None when no reply came in time.
    pub echo: Option<Duration>,
    /// Why the echo could not even be sent (no raw socket, no route).
    pub echo_error: Option<String>,
    pub tcp: Option<Tcp>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tcp {
    Open,
    Refused,
    TimedOut,
    Failed(String),
}

/// Probe `dst` from `ns`, both probes at once, each bounded by `budget`.
pub fn run(ns: &NetNs, dst: IpAddr, port: Option<u16>, budget: Duration) -> Result<Seen> {
    std::thread::scope(|s| {
        let tcp = port.map(|p| s.spawn(move || ns.run(move || connect(dst, p, budget))));
        let echo = ns.run(|| echo(dst, budget))?;
        let tcp = match tcp {
            None => None,
            Some(h) => Some(
                h.join()
                    .map_err(|_| crate::Error::other("TCP probe thread panicked"))??,
            ),
        };
        let (echo, echo_error) = match echo {
            Ok(rtt) => (rtt, None),
            Err(e) => (None, Some(e.to_string())),
        };
        Ok(Seen {
            echo,
            echo_error,
            tcp,
        })
    })
}

fn connect(dst: IpAddr, port: u16, budget: Duration) -> Tcp {
    match TcpStream::connect_timeout(&SocketAddr::new(dst, port), budget) {
        Ok(_) => Tcp::Open,
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => Tcp::Refused,
        Err(e) if e.kind() == std::io::ErrorKind::TimedOut => Tcp::TimedOut,
        Err(e) => Tcp::Failed(e.to_string()),
    }
}

/// RFC 1071 checksum (ICMPv4; the kernel fills ICMPv6's in).
fn checksum(b: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for c in b.chunks(2) {
        let w = u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]);
        sum += u32::from(w);
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An echo request with identifier `id`, sequence `seq`.
fn request(v6: bool, id: u16, seq: u16) -> Vec<u8> {
    let mut p = vec![if v6 { 128 } else { 8 }, 0, 0, 0];
    p.extend_from_slice(&id.to_be_bytes());
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(b"pipework doctor!");
    if !v6 {
        let c = checksum(&p);
        p[2..4].copy_from_slice(&c.to_be_bytes());
    }
    p
}

/// Is `pkt` (as a raw socket hands it over: IPv4 with its header, ICMPv6
/// without) the echo reply to our `id` from `from`?
fn is_reply(v6: bool, pkt: &[u8], id: u16) -> bool {
    let icmp = if v6 {
        pkt
    } else {
        let ihl = usize::from(pkt.first().map_or(0, |b| b & 0x0f)) * 4;
        pkt.get(ihl..).unwrap_or_default()
    };
    icmp.len() >= 8
        && icmp[0] == if v6 { 129 } else { 0 }
        && icmp[1] == 0
        && u16::from_be_bytes([icmp[4], icmp[5]]) == id
}

fn sockaddr(dst: IpAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: all-zero is a valid sockaddr_storage.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match dst {
        IpAddr::V4(v) => {
            // SAFETY: sockaddr_storage is large and aligned enough.
            let sin = unsafe { &mut *(&mut ss as *mut _ as *mut libc::sockaddr_in) };
            sin.sin_family = libc::AF_INET as _;
            sin.sin_addr.s_addr = u32::from_ne_bytes(v.octets());
            std::mem::size_of::<libc::sockaddr_in>()
        }
        IpAddr::V6(v) => {
            // SAFETY: as above.
            let sin6 = unsafe { &mut *(&mut ss as *mut _ as *mut libc::sockaddr_in6) };
            sin6.sin6_family = libc::AF_INET6 as _;
            sin6.sin6_addr.s6_addr = v.octets();
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (ss, len as libc::socklen_t)
}

/// One echo (resent once halfway), the round trip if a reply came.
fn echo(dst: IpAddr, budget: Duration) -> std::io::Result<Option<Duration>> {
    let v6 = dst.is_ipv6();
    let (domain, proto) = if v6 {
        (libc::AF_INET6, libc::IPPROTO_ICMPV6)
    } else {
        (libc::AF_INET, libc::IPPROTO_ICMP)
    };
    // SAFETY: plain socket(2); the fd is owned right away.
    let raw = unsafe {
        libc::socket(
            domain,
            libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            proto,
        )
    };
    if raw < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `raw` is a new fd nobody else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    // Raw sockets see every ICMP packet of the namespace; the id tells
    // ours apart from another ping's.
    let id = (std::process::id() as u16) ^ 0x5057;
    let (sa, len) = sockaddr(dst);
    let start = Instant::now();
    let mut sent = 0u16;
    let mut buf = [0u8; 1500];
    loop {
        let elapsed = start.elapsed();
        if elapsed >= budget {
            return Ok(None);
        }
        if sent == 0 || (sent == 1 && elapsed >= budget / 2) {
            let p = request(v6, id, sent);
            // SAFETY: buffer and address are valid for the call.
            let n = unsafe {
                libc::sendto(
                    fd.as_raw_fd(),
                    p.as_ptr().cast(),
                    p.len(),
                    0,
                    (&sa as *const libc::sockaddr_storage).cast(),
                    len,
                )
            };
            if n < 0 {
                let e = std::io::Error::last_os_error();
                // Unresolved neighbour: the kernel says so on the send;
                // the neighbour state read afterwards explains it.
                if sent == 0 && e.raw_os_error() != Some(libc::EHOSTUNREACH) {
                    return Err(e);
                }
            }
            sent += 1;
        }
        let wait = (budget.saturating_sub(start.elapsed())).min(budget / 4);
        let mut pfd = libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let r = unsafe { libc::poll(&mut pfd, 1, wait.as_millis().max(1) as i32) };
        if r <= 0 {
            continue;
        }
        loop {
            // SAFETY: reading into our own buffer.
            let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n <= 0 {
                break;
            }
            if is_reply(v6, &buf[..n as usize], id) {
                return Ok(Some(start.elapsed()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echo_request_checksums_to_zero() {
        let p = request(false, 0x1234, 1);
        assert_eq!(p[0], 8);
        assert_eq!(checksum(&p), 0);
    }

    #[test]
    fn reply_is_matched_by_type_and_id() {
        let mut ip = vec![0x45u8; 1];
        ip.extend_from_slice(&[0; 19]);
        let mut reply = request(false, 7, 0);
        reply[0] = 0;
        let mut pkt = ip.clone();
        pkt.extend_from_slice(&reply);
        assert!(is_reply(false, &pkt, 7));
        assert!(!is_reply(false, &pkt, 8));
        let mut req = ip;
        req.extend_from_slice(&request(false, 7, 0));
        assert!(!is_reply(false, &req, 7), "our own request is not a reply");
        assert!(!is_reply(false, &[0x45], 7));
    }
}
