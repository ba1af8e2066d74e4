//! WireGuard devices: the link through rtnetlink (kind "wireguard"), its
//! keys and peers through the kernel's "wireguard" generic-netlink family
//! (include/uapi/linux/wireguard.h), spoken directly: no `wg` binary.
//!
//! A private key goes to the kernel only (WGDEVICE_A_PRIVATE_KEY); what
//! comes back from a GET_DEVICE dump carries it too, and this module drops
//! it while parsing: nothing above ever holds the kernel's copy.
//!
//! The genl socket is opened in the caller's own network namespace, so
//! these ops are for a `Net` of that namespace (the agent's).
use super::errors::nl_err;
use super::{Journal, Link, Net};
use crate::error::{Error, Result};
use netlink_sys::{Socket, protocols::NETLINK_GENERIC};
use std::io;
use std::net::{IpAddr, SocketAddr};

const GENL_ID_CTRL: u16 = 0x10;
const CTRL_CMD_GETFAMILY: u8 = 3;
const CTRL_ATTR_FAMILY_ID: u16 = 1;
const CTRL_ATTR_FAMILY_NAME: u16 = 2;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;
const NLM_F_DUMP: u16 = 0x300;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLA_F_NESTED: u16 = 0x8000;
const NLA_TYPE_MASK: u16 = 0x3fff;

const WG_CMD_GET_DEVICE: u8 = 0;
const WG_CMD_SET_DEVICE: u8 = 1;
const WGDEVICE_A_IFINDEX: u16 = 1;
const WGDEVICE_A_PRIVATE_KEY: u16 = 3;
const WGDEVICE_A_PUBLIC_KEY: u16 = 4;
const WGDEVICE_A_LISTEN_PORT: u16 = 6;
const WGDEVICE_A_PEERS: u16 = 8;
const WGPEER_A_PUBLIC_KEY: u16 = 1;
const WGPEER_A_FLAGS: u16 = 3;
const WGPEER_A_ENDPOINT: u16 = 4;
const WGPEER_A_PERSISTENT_KEEPALIVE_INTERVAL: u16 = 5;
const WGPEER_A_ALLOWEDIPS: u16 = 9;
const WGPEER_F_REMOVE_ME: u32 = 1;
const WGPEER_F_REPLACE_ALLOWEDIPS: u32 = 2;
const WGALLOWEDIP_A_FAMILY: u16 = 1;
const WGALLOWEDIP_A_IPADDR: u16 = 2;
const WGALLOWEDIP_A_CIDR_MASK: u16 = 3;

/// The overlay agent's WireGuard device (not "ov-*": the guard's
/// container rules match that prefix).
pub const DEVICE: &str = "pw-wg";
/// The kernel module, as errors name it.
pub const MODULE: &str = "wireguard";
/// What the overlay's mark on its WireGuard device says it belongs to
/// (gc recognises the device by it).
pub const MARK_OF: &str = "wireguard";

/// One peer as the kernel has it (or as it should be).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct WgPeer {
    /// Base64, as `wg` prints it.
    pub public_key: String,
    pub endpoint: Option<SocketAddr>,
    /// Allowed IPs as "addr/len".
    pub allowed_ips: Vec<String>,
}

/// A WireGuard device as the kernel has it: public half only.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct WgDevice {
    pub public_key: Option<String>,
    pub listen_port: u16,
    pub peers: Vec<WgPeer>,
}

/// One generic-netlink message under construction (attributes only;
/// header added by `finish`).
struct Msg {
    ty: u16,
    flags: u16,
    cmd: u8,
    body: Vec<u8>,
}

impl Msg {
    fn new(ty: u16, flags: u16, cmd: u8) -> Msg {
        Msg {
            ty,
            flags,
            cmd,
            body: Vec::new(),
        }
    }
    fn attr(&mut self, ty: u16, data: &[u8]) {
        self.body
            .extend_from_slice(&((4 + data.len()) as u16).to_ne_bytes());
        self.body.extend_from_slice(&ty.to_ne_bytes());
        self.body.extend_from_slice(data);
        while !self.body.len().is_multiple_of(4) {
            self.body.push(0);
        }
    }
    fn nest(&mut self, ty: u16, inner: impl FnOnce(&mut Msg)) {
        let at = self.body.len();
        self.body.extend_from_slice(&[0, 0]);
        self.body
            .extend_from_slice(&(ty | NLA_F_NESTED).to_ne_bytes());
        inner(self);
        let len = (self.body.len() - at) as u16;
        self.body[at..at + 2].copy_from_slice(&len.to_ne_bytes());
    }
    fn finish(&self, seq: u32) -> Vec<u8> {
        let len = 16 + 4 + self.body.len();
        let mut b = Vec::with_capacity(len);
        b.extend_from_slice(&(len as u32).to_ne_bytes());
        b.extend_from_slice(&self.ty.to_ne_bytes());
        b.extend_from_slice(&self.flags.to_ne_bytes());
        b.extend_from_slice(&seq.to_ne_bytes());
        b.extend_from_slice(&0u32.to_ne_bytes());
        // genlmsghdr: command, version 1, reserved.
        b.extend_from_slice(&[self.cmd, 1, 0, 0]);
        b.extend_from_slice(&self.body);
        b
    }
}

/// The attributes in `b`: (type without flags, payload).
fn attrs(mut b: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        if b.len() < 4 {
            return None;
        }
        let len = u16::from_ne_bytes([b[0], b[1]]) as usize;
        let ty = u16::from_ne_bytes([b[2], b[3]]) & NLA_TYPE_MASK;
        if len < 4 || len > b.len() {
            return None;
        }
        let v = &b[4..len];
        b = &b[((len + 3) & !3).min(b.len())..];
        Some((ty, v))
    })
}

/// A generic-netlink socket of this namespace, bounded: the kernel
/// answers at once or not at all, and no agent may hang on it.
struct Genl {
    sock: Socket,
    seq: u32,
}

impl Genl {
    fn open() -> io::Result<Genl> {
        let sock = crate::netlink::raw::socket(NETLINK_GENERIC)?;
        Ok(Genl { sock, seq: 0 })
    }

    /// Send `m`; hand each reply's attributes (after the genl header) to
    /// `each` until the ack or the end of the dump.
    fn talk(&mut self, m: &Msg, mut each: impl FnMut(&[u8])) -> io::Result<()> {
        self.seq += 1;
        let seq = self.seq;
        self.sock.send(&m.finish(seq), 0)?;
        loop {
            let (buf, _) = self.sock.recv_from_full()?;
            let mut b = &buf[..];
            while b.len() >= 16 {
                let len = u32::from_ne_bytes([b[0], b[1], b[2], b[3]]) as usize;
                if len < 16 || len > b.len() {
                    break;
                }
                let ty = u16::from_ne_bytes([b[4], b[5]]);
                let s = u32::from_ne_bytes([b[8], b[9], b[10], b[11]]);
                let body = &b[16..len];
                b = &b[((len + 3) & !3).min(b.len())..];
                if s != seq {
                    continue;
                }
                match ty {
                    NLMSG_DONE => return Ok(()),
                    NLMSG_ERROR => {
                        let code = body
                            .get(0..4)
                            .map(|c| i32::from_ne_bytes([c[0], c[1], c[2], c[3]]))
                            .unwrap_or(0);
                        return match code {
                            0 => Ok(()),
                            c => Err(io::Error::from_raw_os_error(-c)),
                        };
                    }
                    _ if body.len() >= 4 => each(&body[4..]),
                    _ => {}
                }
            }
        }
    }

    /// The id of the "wireguard" family; ENOENT when this kernel has none
    /// (the lookup asks the kernel to load the module first).
    fn family(&mut self) -> io::Result<u16> {
        let mut m = Msg::new(GENL_ID_CTRL, NLM_F_REQUEST | NLM_F_ACK, CTRL_CMD_GETFAMILY);
        m.attr(CTRL_ATTR_FAMILY_NAME, b"wireguard\0");
        let mut id = None;
        self.talk(&m, |a| {
            for (t, v) in attrs(a) {
                if t == CTRL_ATTR_FAMILY_ID && v.len() >= 2 {
                    id = Some(u16::from_ne_bytes([v[0], v[1]]));
                }
            }
        })?;
        id.ok_or_else(|| io::Error::from_raw_os_error(libc::ENOENT))
    }
}

fn b64(k: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(k)
}

/// A base64 public key back to its 32 bytes.
pub fn key_bytes(k: &str) -> Option<[u8; 32]> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(k)
        .ok()?
        .try_into()
        .ok()
}

/// `struct sockaddr_in` / `sockaddr_in6` as the kernel lays them out.
fn sockaddr(a: SocketAddr) -> Vec<u8> {
    let mut v = Vec::new();
    match a {
        SocketAddr::V4(s) => {
            v.extend_from_slice(&(libc::AF_INET as u16).to_ne_bytes());
            v.extend_from_slice(&s.port().to_be_bytes());
            v.extend_from_slice(&s.ip().octets());
            v.extend_from_slice(&[0; 8]);
        }
        SocketAddr::V6(s) => {
            v.extend_from_slice(&(libc::AF_INET6 as u16).to_ne_bytes());
            v.extend_from_slice(&s.port().to_be_bytes());
            v.extend_from_slice(&0u32.to_ne_bytes());
            v.extend_from_slice(&s.ip().octets());
            v.extend_from_slice(&0u32.to_ne_bytes());
        }
    }
    v
}

fn parse_sockaddr(v: &[u8]) -> Option<SocketAddr> {
    let fam = u16::from_ne_bytes([*v.first()?, *v.get(1)?]) as i32;
    let port = u16::from_be_bytes([*v.get(2)?, *v.get(3)?]);
    match fam {
        libc::AF_INET => {
            let a: [u8; 4] = v.get(4..8)?.try_into().ok()?;
            Some(SocketAddr::new(IpAddr::from(a), port))
        }
        libc::AF_INET6 => {
            let a: [u8; 16] = v.get(8..24)?.try_into().ok()?;
            Some(SocketAddr::new(IpAddr::from(a), port))
        }
        _ => None,
    }
}

fn parse_allowed(v: &[u8]) -> Option<String> {
    let (mut ip, mut mask) = (None, None);
    for (t, x) in attrs(v) {
        match t {
            WGALLOWEDIP_A_IPADDR => {
                ip = match x.len() {
                    4 => <[u8; 4]>::try_from(x).ok().map(IpAddr::from),
                    16 => <[u8; 16]>::try_from(x).ok().map(IpAddr::from),
                    _ => None,
                }
            }
            WGALLOWEDIP_A_CIDR_MASK => mask = x.first().copied(),
            _ => {}
        }
    }
    Some(format!("{}/{}", ip?, mask?))
}

fn parse_peer(v: &[u8]) -> Option<WgPeer> {
    let mut p = WgPeer {
        public_key: String::new(),
        endpoint: None,
        allowed_ips: Vec::new(),
    };
    for (t, x) in attrs(v) {
        match t {
            WGPEER_A_PUBLIC_KEY => p.public_key = b64(x),
            WGPEER_A_ENDPOINT => p.endpoint = parse_sockaddr(x),
            WGPEER_A_ALLOWEDIPS => p
                .allowed_ips
                .extend(attrs(x).filter_map(|(_, a)| parse_allowed(a))),
            _ => {}
        }
    }
    (!p.public_key.is_empty()).then_some(p)
}

fn wg_err(what: String, e: io::Error) -> Error {
    let hint = match e.raw_os_error() {
        Some(libc::ENOENT) | Some(libc::EOPNOTSUPP) => {
            format!("; this kernel has no WireGuard (module {MODULE}): `modprobe {MODULE}`")
        }
        _ => String::new(),
    };
    Error::other(format!("{what}: {e}{hint}"))
}

/// Whether this kernel has WireGuard: its genl family resolves (the
/// lookup loads the module on demand). Changes nothing.
pub fn available() -> bool {
    Genl::open().and_then(|mut g| g.family()).is_ok()
}

/// A peer to set: its key, where it is, and the one address it may send
/// from inside the tunnel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerSpec {
    pub key: [u8; 32],
    pub endpoint: SocketAddr,
    pub allowed: IpAddr,
}

impl Net {
    /// Create a WireGuard device, down, with `mtu`. Recorded in `j`.
    pub async fn create_wireguard(&self, j: &mut Journal, name: &str, mtu: u32) -> Result<Link> {
        if self.dry_run {
            self.show(format_args!("link add {name} mtu {mtu} type wireguard"));
            return Ok(Link {
                name: name.to_string(),
                ..Link::default()
            });
        }
        let msg = rtnetlink::LinkWireguard::new(name).mtu(mtu).build();
        self.handle
            .link()
            .add(msg)
            .execute()
            .await
            .map_err(|e| {
                let err = nl_err(format!("creating WireGuard device {name}"), e);
                if err.errno() == Some(libc::EOPNOTSUPP) {
                    Error::other(format!(
                        "creating WireGuard device {name}: this kernel has no WireGuard (module {MODULE})"
                    ))
                } else {
                    err
                }
            })?;
        let link = self
            .link_by_name(name)
            .await?
            .ok_or_else(|| Error::other(format!("{name} vanished after creation")))?;
        let (net, l) = (self.clone(), link.clone());
        j.record(format!("wireguard {name}"), async move {
            net.delete_link(&l).await
        });
        Ok(link)
    }

    /// Give device `index` its private key and UDP port. The key is
    /// never logged, and an error names the device, not the key.
    pub fn wg_set_key(&self, index: u32, private: &[u8; 32], port: u16) -> Result<()> {
        let what = || format!("configuring WireGuard device #{index}");
        let mut g = Genl::open().map_err(|e| wg_err(what(), e))?;
        let fam = g.family().map_err(|e| wg_err(what(), e))?;
        let mut m = Msg::new(fam, NLM_F_REQUEST | NLM_F_ACK, WG_CMD_SET_DEVICE);
        m.attr(WGDEVICE_A_IFINDEX, &index.to_ne_bytes());
        m.attr(WGDEVICE_A_PRIVATE_KEY, private);
        m.attr(WGDEVICE_A_LISTEN_PORT, &port.to_ne_bytes());
        g.talk(&m, |_| {}).map_err(|e| wg_err(what(), e))
    }

    /// Add or update peers (their allowed IPs replaced), and remove the
    /// peers whose keys are in `remove`. One message per peer: a device
    /// with many peers never meets the message size limit.
    pub fn wg_set_peers(&self, index: u32, set: &[PeerSpec], remove: &[[u8; 32]]) -> Result<()> {
        let what = || format!("setting peers of WireGuard device #{index}");
        let mut g = Genl::open().map_err(|e| wg_err(what(), e))?;
        let fam = g.family().map_err(|e| wg_err(what(), e))?;
        let one = |g: &mut Genl, body: &dyn Fn(&mut Msg)| {
            let mut m = Msg::new(fam, NLM_F_REQUEST | NLM_F_ACK, WG_CMD_SET_DEVICE);
            m.attr(WGDEVICE_A_IFINDEX, &index.to_ne_bytes());
            m.nest(WGDEVICE_A_PEERS, |ps| ps.nest(0, |p| body(p)));
            g.talk(&m, |_| {}).map_err(|e| wg_err(what(), e))
        };
        for p in set {
            one(&mut g, &|m: &mut Msg| {
                m.attr(WGPEER_A_PUBLIC_KEY, &p.key);
                m.attr(WGPEER_A_FLAGS, &WGPEER_F_REPLACE_ALLOWEDIPS.to_ne_bytes());
                m.attr(WGPEER_A_ENDPOINT, &sockaddr(p.endpoint));
                // Keepalives: a host behind a stateful firewall or NAT
                // stays reachable without waiting for its own traffic.
                m.attr(WGPEER_A_PERSISTENT_KEEPALIVE_INTERVAL, &25u16.to_ne_bytes());
                m.nest(WGPEER_A_ALLOWEDIPS, |l| {
                    l.nest(0, |a| {
                        let (fam, bytes, mask) = match p.allowed {
                            IpAddr::V4(x) => (libc::AF_INET, x.octets().to_vec(), 32u8),
                            IpAddr::V6(x) => (libc::AF_INET6, x.octets().to_vec(), 128u8),
                        };
                        a.attr(WGALLOWEDIP_A_FAMILY, &(fam as u16).to_ne_bytes());
                        a.attr(WGALLOWEDIP_A_IPADDR, &bytes);
                        a.attr(WGALLOWEDIP_A_CIDR_MASK, &[mask]);
                    })
                });
            })?;
        }
        for k in remove {
            one(&mut g, &|m: &mut Msg| {
                m.attr(WGPEER_A_PUBLIC_KEY, k);
                m.attr(WGPEER_A_FLAGS, &WGPEER_F_REMOVE_ME.to_ne_bytes());
            })?;
        }
        Ok(())
    }

    /// Whether a VXLAN device rides on WireGuard device `index` (its
    /// underlay device): then it must stay.
    pub async fn wg_in_use(&self, index: u32) -> Result<bool> {
        for l in self.links().await? {
            if l.kind.as_deref() == Some("vxlan")
                && self.vxlan_conf(l.index).await?.and_then(|c| c.dev) == Some(index)
            {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Whether WireGuard device `index` was never configured (no key, no
    /// peers): what a process killed right after creating it leaves.
    pub fn wg_blank(&self, index: u32) -> bool {
        self.wg_device(index)
            .is_ok_and(|d| d.public_key.is_none() && d.peers.is_empty())
    }

    /// Device `index` as the kernel has it: public key, port, peers. The
    /// private key in the kernel's answer is skipped, never copied.
    pub fn wg_device(&self, index: u32) -> Result<WgDevice> {
        let what = || format!("reading WireGuard device #{index}");
        let mut g = Genl::open().map_err(|e| wg_err(what(), e))?;
        let fam = g.family().map_err(|e| wg_err(what(), e))?;
        let mut m = Msg::new(fam, NLM_F_REQUEST | NLM_F_DUMP, WG_CMD_GET_DEVICE);
        m.attr(WGDEVICE_A_IFINDEX, &index.to_ne_bytes());
        let mut d = WgDevice::default();
        // A device with many peers comes in several messages; each
        // repeats the device attributes and carries the next peers.
        g.talk(&m, |a| {
            for (t, v) in attrs(a) {
                match t {
                    WGDEVICE_A_PUBLIC_KEY => d.public_key = Some(b64(v)),
                    WGDEVICE_A_LISTEN_PORT if v.len() >= 2 => {
                        d.listen_port = u16::from_ne_bytes([v[0], v[1]])
                    }
                    WGDEVICE_A_PEERS => d.peers.extend(attrs(v).filter_map(|(_, p)| parse_peer(p))),
                    _ => {}
                }
            }
        })
        .map_err(|e| wg_err(what(), e))?;
        Ok(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_nest_and_parse_back() {
        let mut m = Msg::new(30, NLM_F_REQUEST, WG_CMD_SET_DEVICE);
        m.attr(WGDEVICE_A_IFINDEX, &7u32.to_ne_bytes());
        m.nest(WGDEVICE_A_PEERS, |ps| {
            ps.nest(0, |p| {
                p.attr(WGPEER_A_PUBLIC_KEY, &[9; 32]);
                p.attr(
                    WGPEER_A_ENDPOINT,
                    &sockaddr("10.0.0.2:51820".parse().expect("addr")),
                );
                p.nest(WGPEER_A_ALLOWEDIPS, |l| {
                    l.nest(0, |a| {
                        a.attr(WGALLOWEDIP_A_FAMILY, &(libc::AF_INET6 as u16).to_ne_bytes());
                        a.attr(
                            WGALLOWEDIP_A_IPADDR,
                            &"fd00::1"
                                .parse::<std::net::Ipv6Addr>()
                                .expect("ip")
                                .octets(),
                        );
                        a.attr(WGALLOWEDIP_A_CIDR_MASK, &[128]);
                    })
                });
            })
        });
        let b = m.finish(5);
        assert_eq!(
            u32::from_ne_bytes([b[0], b[1], b[2], b[3]]) as usize,
            b.len()
        );
        assert_eq!(b.len() % 4, 0);
        let mut peers = Vec::new();
        for (t, v) in attrs(&b[20..]) {
            if t == WGDEVICE_A_PEERS {
                peers.extend(attrs(v).filter_map(|(_, p)| parse_peer(p)));
            }
        }
        assert_eq!(peers.len(), 1);
        assert_eq!(peers[0].public_key, b64(&[9; 32]));
        assert_eq!(
            peers[0].endpoint,
            Some("10.0.0.2:51820".parse().expect("a"))
        );
        assert_eq!(peers[0].allowed_ips, vec!["fd00::1/128".to_string()]);
        assert_eq!(key_bytes(&peers[0].public_key), Some([9; 32]));
    }
}
