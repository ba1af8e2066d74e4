//! Encrypted networks (`overlay create --encrypt`): VXLAN inside a
//! WireGuard mesh between the hosts.
//!
//! Each host has one WireGuard device (`DEVICE`) and one key pair. The
//! private key is made once, on the agent's first start where the kernel
//! has WireGuard, and kept in the host's state folder (0600); only the
//! public key, the UDP port and the tunnel address go into the host's
//! record in etcd (`store::WgHost`).
//!
//! Tunnel (inner) addresses: derived from the public key, an IPv6 address
//! in `INNER_PREFIX` whose last 80 bits are a SHA-256 of the key. Nothing
//! to claim in etcd and nothing to release: a host keeps its address as
//! long as its key, and two hosts share one only if 80 bits of SHA-256
//! collide, which the agent still checks (`collides`) and then refuses to
//! peer. The device carries its address with the prefix length of
//! `INNER_PREFIX`, so the kernel routes the whole prefix into the tunnel;
//! WireGuard then picks the peer by allowed-ips (one /128 per peer) and
//! drops anything from a peer that is not that peer's address.
//!
//! An encrypted network's VXLAN device uses the tunnel address as its
//! local address and the WireGuard device as its underlay device; its FDB
//! entries name peers' tunnel addresses (`model::Model::entry`).
use super::store::{HostInfo, WgHost};
use crate::error::{Error, Result};
use crate::netlink::wg::{self, PeerSpec};
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;

/// The one WireGuard device an agent makes.
pub const DEVICE: &str = wg::DEVICE;
/// WireGuard's customary port; `--wg-port` changes it.
pub const DEFAULT_PORT: u16 = 51820;
/// fd70:6970:7767::/48 ("pipwg" in a ULA prefix).
pub const INNER_PREFIX: (Ipv6Addr, u8) = (Ipv6Addr::new(0xfd70, 0x6970, 0x7767, 0, 0, 0, 0, 0), 48);
/// VXLAN over the inner family (IPv6): 40 + 8 + 8 + 14.
pub const VXLAN_OVER_INNER: u32 = 70;

/// WireGuard's own overhead on the underlay: 60 bytes over IPv4, 80 over
/// IPv6 (outer IP + UDP + WireGuard header and tag).
pub fn wg_overhead(underlay: IpAddr) -> u32 {
    if underlay.is_ipv4() { 60 } else { 80 }
}

/// Both encapsulations: what an encrypted network gives up per packet.
pub fn overhead(underlay: IpAddr) -> u32 {
    wg_overhead(underlay) + VXLAN_OVER_INNER
}

/// This host's key pair. Debug shows the public half only.
pub struct Keys {
    private: [u8; 32],
    public_raw: [u8; 32],
    pub public: String,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Keys {{ public: {} }}", self.public)
    }
}

impl Drop for Keys {
    fn drop(&mut self) {
        self.private = [0; 32];
    }
}

impl Keys {
    pub fn private(&self) -> &[u8; 32] {
        &self.private
    }
    pub fn public_bytes(&self) -> [u8; 32] {
        self.public_raw
    }
}

fn key_path() -> Result<PathBuf> {
    let d = crate::own::dir(
        crate::own::Area::State,
        &format!("overlay/{}", crate::inventory::host_ns()),
    )?;
    Ok(d.join("wg.key"))
}

fn b64(b: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(b)
}

fn from_text(t: &str) -> Option<[u8; 32]> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(t.trim())
        .ok()?
        .try_into()
        .ok()
}

/// This host's keys: read, or made once. A new key is written to a
/// temporary file (0600, fsync) and linked into place, which fails if a
/// key appeared meanwhile (two agents starting at once): the one on disk
/// wins, and it is never rewritten. Errors name the file, never the key.
pub fn load_or_create() -> Result<Keys> {
    let path = key_path()?;
    let keys = |private: [u8; 32]| {
        let public_raw =
            x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::from(private)).to_bytes();
        Keys {
            private,
            public_raw,
            public: b64(&public_raw),
        }
    };
    let read = |p: &PathBuf| -> Result<Option<[u8; 32]>> {
        match std::fs::read_to_string(p) {
            Ok(t) => from_text(&t).map(Some).ok_or_else(|| {
                Error::other(format!(
                    "{}: not a WireGuard private key (32 bytes, base64); move it away to make a new one",
                    p.display()
                ))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(format!("reading {}", p.display()), e)),
        }
    };
    if let Some(k) = read(&path)? {
        return Ok(keys(k));
    }
    let dir = path
        .parent()
        .ok_or_else(|| Error::other("no state folder"))?
        .to_path_buf();
    std::fs::create_dir_all(&dir)
        .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    let mut private = [0u8; 32];
    getrandom::getrandom(&mut private)
        .map_err(|e| Error::other(format!("no randomness for a WireGuard key: {e}")))?;
    // The clamping X25519 applies anyway, stored as `wg genkey` does.
    private[0] &= 248;
    private[31] = (private[31] & 127) | 64;
    let tmp = dir.join(format!(".wg.key.{}", std::process::id()));
    crate::key::write_private(&tmp, format!("{}\n", b64(&private)).as_bytes())?;
    let linked = std::fs::hard_link(&tmp, &path);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => {
            if let Ok(d) = std::fs::File::open(&dir) {
                let _ = d.sync_all();
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(Error::io(format!("installing {}", path.display()), e)),
    }
    let k = read(&path)?.ok_or_else(|| Error::other(format!("{} vanished", path.display())))?;
    Ok(keys(k))
}

/// The tunnel address of the host whose public key is `key` (base64).
pub fn inner_of(key: &[u8; 32]) -> Ipv6Addr {
    use sha2::Digest as _;
    let h = sha2::Sha256::digest(key);
    let mut o = INNER_PREFIX.0.octets();
    o[6..16].copy_from_slice(&h[..10]);
    Ipv6Addr::from(o)
}

/// This host's WireGuard side as its record carries it.
pub fn record(keys: &Keys, port: u16) -> WgHost {
    WgHost {
        key: keys.public.clone(),
        port,
        inner: inner_of(&keys.public_bytes()),
    }
}

/// Whether `h`'s tunnel address is another registered host's too (or
/// its record's address is not the one its key gives): never peered.
pub fn collides<'a>(h: &HostInfo, all: impl IntoIterator<Item = &'a HostInfo>) -> bool {
    let Some(w) = &h.wg else {
        return false;
    };
    let Some(k) = wg::key_bytes(&w.key) else {
        return true;
    };
    if inner_of(&k) != w.inner {
        return true;
    }
    all.into_iter().any(|o| {
        o.name != h.name
            && o.wg
                .as_ref()
                .is_some_and(|x| x.inner == w.inner && x.key != w.key)
    })
}

/// The peer host `h` should be, if it has WireGuard and a sound record.
pub fn peer_of<'a>(h: &HostInfo, all: impl IntoIterator<Item = &'a HostInfo>) -> Option<PeerSpec> {
    let w = h.wg.as_ref()?;
    if collides(h, all) {
        return None;
    }
    Some(PeerSpec {
        key: wg::key_bytes(&w.key)?,
        endpoint: SocketAddr::new(h.underlay, w.port),
        allowed: IpAddr::V6(w.inner),
    })
}

/// What to set and remove so the kernel's peers (`have`) are `want`:
/// a peer is right when its key, endpoint and allowed IP all are.
pub fn peer_diff<'a>(
    want: impl IntoIterator<Item = &'a PeerSpec>,
    have: &[wg::WgPeer],
) -> (Vec<PeerSpec>, Vec<[u8; 32]>) {
    let want: Vec<&PeerSpec> = want.into_iter().collect();
    let right = |p: &PeerSpec| {
        let key = b64(&p.key);
        let allowed = format!(
            "{}/{}",
            p.allowed,
            if p.allowed.is_ipv4() { 32 } else { 128 }
        );
        have.iter().any(|h| {
            h.public_key == key
                && h.endpoint == Some(p.endpoint)
                && h.allowed_ips == [allowed.clone()]
        })
    };
    let set = want
        .iter()
        .filter(|p| !right(p))
        .map(|p| (*p).clone())
        .collect();
    let remove = have
        .iter()
        .filter(|h| !want.iter().any(|p| b64(&p.key) == h.public_key))
        .filter_map(|h| wg::key_bytes(&h.public_key))
        .collect();
    (set, remove)
}

/// Refuse, before anything changes, an encrypted network's use on a host
/// whose kernel has no WireGuard.
pub fn require_here(net: &str) -> Result<()> {
    if wg::available() {
        return Ok(());
    }
    Err(Error::bad(
        net,
        format!(
            "is encrypted, and this host's kernel has no WireGuard (module {}): `modprobe {}` or use a kernel with it; nothing changed",
            wg::MODULE,
            wg::MODULE
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inner_addresses_follow_the_key_and_collisions_are_refused() {
        let a = [1u8; 32];
        let ia = inner_of(&a);
        assert_eq!(ia.segments()[..3], [0xfd70, 0x6970, 0x7767]);
        assert_ne!(ia, inner_of(&[2u8; 32]));
        let host = |name: &str, key: [u8; 32], inner: Ipv6Addr| HostInfo {
            name: name.into(),
            underlay: "10.0.0.1".parse().expect("ip"),
            underlay_if: "eth0".into(),
            underlay_mtu: 1500,
            lease: 1,
            wg: Some(WgHost {
                key: b64(&key),
                port: 51820,
                inner,
            }),
        };
        let h1 = host("a", a, ia);
        let p = peer_of(&h1, [&h1]).expect("peer");
        assert_eq!(p.allowed, IpAddr::V6(ia));
        assert_eq!(p.endpoint.port(), 51820);
        // A record whose address is not its key's: refused.
        let forged = host("b", [2u8; 32], ia);
        assert!(collides(&forged, [&h1, &forged]));
        assert!(peer_of(&forged, [&h1, &forged]).is_none());
        // The kernel has h1 right and a stale peer: only the stale one
        // goes, nothing is set again; a moved endpoint is set again.
        let stale = wg::WgPeer {
            public_key: b64(&[7u8; 32]),
            endpoint: None,
            allowed_ips: vec![],
        };
        let right = wg::WgPeer {
            public_key: b64(&a),
            endpoint: Some(p.endpoint),
            allowed_ips: vec![format!("{ia}/128")],
        };
        let (set, remove) = peer_diff([&p], &[right.clone(), stale]);
        assert!(set.is_empty());
        assert_eq!(remove, vec![[7u8; 32]]);
        let moved = wg::WgPeer {
            endpoint: Some("10.0.0.9:51820".parse().expect("addr")),
            ..right
        };
        let (set, remove) = peer_diff([&p], &[moved]);
        assert_eq!((set.len(), remove.len()), (1, 0));
        assert_eq!(overhead("10.0.0.1".parse().expect("ip")), 130);
        assert_eq!(overhead("fd00::1".parse().expect("ip")), 150);
    }
}
