//! What we built, written on the kernel objects themselves (the link alias,
//! IFLA_IFALIAS, up to 255 bytes), so the kernel stays the source of truth
//! for `ls` and `detach`: no side database to drift out of date.
//!
//! A guest can write any alias on its own links, so a record is only ever
//! believed when its tag verifies: an HMAC (host key, see `key.rs`) over the
//! record and the identity of the link it sits on (namespace inode and
//! ifindex). A forged record fails the tag; a genuine one copied onto
//! another link or into another namespace fails the identity.
use crate::key;
use serde::{Deserialize, Serialize};

const PREFIX: &str = "pipework ";

/// The kinds of attachment; detach dispatches on this, never on strings.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    #[default]
    Bridge,
    Macvlan,
    Ipvlan,
    Phys,
    Dummy,
    Ipoib,
    Ovs,
    /// A point-to-point veth whose two ends are both in guests (or one on
    /// the host): `pipework link`.
    P2p,
    /// An SR-IOV virtual function moved into the guest.
    Sriov,
}

impl Kind {
    pub fn from_name(s: &str) -> Option<Kind> {
        serde_json::from_value(serde_json::Value::from(s)).ok()
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Bridge => "bridge",
            Kind::Macvlan => "macvlan",
            Kind::Ipvlan => "ipvlan",
            Kind::Phys => "phys",
            Kind::Dummy => "dummy",
            Kind::Ipoib => "ipoib",
            Kind::Ovs => "ovs",
            Kind::P2p => "p2p",
            Kind::Sriov => "sriov",
        }
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Record {
    pub k: Kind,
    /// Host interface as the user named it (bridge, parent NIC, …).
    pub h: String,
    /// Host-side link we created (veth end, VLAN), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hi: Option<String>,
    /// Guest as resolved: container name, netns name or pid.
    pub g: String,
    /// Short container id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Container-side interface name.
    #[serde(rename = "if")]
    pub ifname: String,
    /// Inode of the guest's network namespace: ties a host-side record to
    /// its guest, and tells `gc` which namespace an attachment lives in.
    #[serde(default)]
    pub n: u64,
    /// Pid of the pipework still building this attachment. Present only
    /// until the attach commits; with a dead pid it marks unfinished work
    /// that the next run or `gc` removes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p: Option<u32>,
    /// What one kind (or one subsystem) needs besides the fields above.
    #[serde(default, skip_serializing_if = "Extras::is_empty")]
    pub x: Extras,
    /// The tag (base64url); empty while unsigned.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub t: String,
}

/// A record's extras, typed. The wire names stay short (a link alias holds
/// 255 bytes) and the fields are declared in the alphabetical order of
/// those names: that is how the untyped map of earlier versions wrote
/// them, so their records re-serialise to the very bytes they were signed
/// over and still verify.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Extras {
    /// pipework turned VLAN filtering on for this port's bridge.
    #[serde(rename = "bvf", default, skip_serializing_if = "Option::is_none")]
    pub bridge_vlan_filtering: Option<bool>,
    /// OVS: the OVSDB socket the port was made through.
    #[serde(rename = "db", default, skip_serializing_if = "Option::is_none")]
    pub ovsdb: Option<String>,
    /// The lab that made this link.
    #[serde(rename = "lab", default, skip_serializing_if = "Option::is_none")]
    pub lab: Option<String>,
    /// The lab link's id (its unit, with a hash of its definition).
    #[serde(rename = "li", default, skip_serializing_if = "Option::is_none")]
    pub lab_link: Option<String>,
    /// macvlan mode, or "internal" for an OVS internal port.
    #[serde(rename = "mode", default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// phys: how the NIC was before it moved (`driver::phys::Orig`).
    #[serde(rename = "o", default, skip_serializing_if = "Option::is_none")]
    pub phys_original: Option<serde_json::Value>,
    /// Overlay: the address claimed in etcd for this endpoint.
    #[serde(rename = "ovip", default, skip_serializing_if = "Option::is_none")]
    pub overlay_ip: Option<std::net::Ipv4Addr>,
    /// Overlay: the IPv6 address claimed in etcd for this endpoint (a
    /// dual-stack or IPv6-only network).
    #[serde(rename = "ovip6", default, skip_serializing_if = "Option::is_none")]
    pub overlay_ip6: Option<std::net::Ipv6Addr>,
    /// SR-IOV: the VF's PCI address, its PF's name, its index.
    #[serde(rename = "pci", default, skip_serializing_if = "Option::is_none")]
    pub vf_pci: Option<String>,
    #[serde(rename = "pf", default, skip_serializing_if = "Option::is_none")]
    pub vf_pf: Option<String>,
    /// IPoIB: the partition key (hex).
    #[serde(rename = "pkey", default, skip_serializing_if = "Option::is_none")]
    pub pkey: Option<String>,
    /// p2p: the inode of the namespace the peer end is in.
    #[serde(rename = "pn", default, skip_serializing_if = "Option::is_none")]
    pub peer_ns: Option<u64>,
    /// OVS: the port's name.
    #[serde(rename = "port", default, skip_serializing_if = "Option::is_none")]
    pub ovs_port: Option<String>,
    /// Bridge: `--tc-redirect`, with the guest's MAC as pipework set it
    /// (12 hex digits): what the redirect rules of other ports match.
    #[serde(rename = "tcr", default, skip_serializing_if = "Option::is_none")]
    pub tc_redirect: Option<String>,
    /// Bridge VLANs the port trunks (compact form, "10,20-30").
    #[serde(rename = "trunk", default, skip_serializing_if = "Option::is_none")]
    pub trunk: Option<String>,
    #[serde(rename = "vf", default, skip_serializing_if = "Option::is_none")]
    pub vf_index: Option<u32>,
    /// The access VLAN (bridge port, or the sub-interface's id).
    #[serde(rename = "vlan", default, skip_serializing_if = "Option::is_none")]
    pub vlan: Option<u16>,
}

impl Extras {
    pub fn is_empty(&self) -> bool {
        *self == Extras::default()
    }
}

/// Which link a record sits on: what the tag binds it to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ident {
    /// Inode of the namespace the link is in.
    pub ns: u64,
    pub index: u32,
}

/// What an alias turned out to be.
// Read once per link and matched at once: boxing the record would add an
// allocation per link for nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Seen {
    /// Not a record (empty, an admin's alias, another tool's).
    Foreign,
    /// Ours, verified.
    Ours(Record),
    /// Looks like ours but does not verify: report it, never act on it.
    Forged(&'static str),
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// base64url without padding: 16 characters for the 12-byte tag, because
/// every byte of the 255-byte alias counts (a phys record carries the
/// NIC's addresses and old alias). CNI's compact guest tag uses it too.
pub fn b64(b: &[u8]) -> String {
    let mut out = String::new();
    for c in b.chunks(3) {
        let n = c.iter().fold(0u32, |a, x| (a << 8) | u32::from(*x)) << (8 * (3 - c.len()));
        for i in 0..=c.len() {
            out.push(char::from(B64[((n >> (18 - 6 * i)) & 63) as usize]));
        }
    }
    out
}

/// The bytes of `b64` text; lenient about the unused low bits of the last
/// character (callers needing one spelling per value compare `b64` of the
/// result).
pub fn unb64(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    for c in s.as_bytes().chunks(4) {
        if c.len() < 2 {
            return None;
        }
        let mut n = 0u32;
        for (i, ch) in c.iter().enumerate() {
            let v = B64.iter().position(|x| x == ch)? as u32;
            n |= v << (18 - 6 * i);
        }
        for i in 0..c.len() - 1 {
            out.push((n >> (16 - 8 * i)) as u8);
        }
    }
    Some(out)
}

impl Record {
    /// The JSON the tag covers: the record without its tag.
    fn body(&self) -> String {
        let mut r = self.clone();
        r.t.clear();
        // Serialising strings, integers and maps cannot fail.
        serde_json::to_string(&r).unwrap_or_default()
    }

    fn compute(&self, k: &[u8; 32], id: Ident) -> [u8; key::TAG_BYTES] {
        key::tag(
            k,
            &[
                b"pipework-record-v1",
                self.body().as_bytes(),
                &id.ns.to_le_bytes(),
                &id.index.to_le_bytes(),
            ],
        )
    }

    /// The alias text for this record on the link `id`, tagged.
    pub fn seal(&self, id: Ident) -> crate::error::Result<String> {
        let k = key::get_or_create()?;
        let mut r = self.clone();
        r.t = b64(&self.compute(&k, id));
        Ok(r.encode())
    }

    /// `seal`, except that a dry run (which writes nothing) shows the
    /// record unsigned rather than create the host key.
    pub fn alias_for(&self, id: Ident, dry_run: bool) -> crate::error::Result<String> {
        if dry_run {
            Ok(self.encode())
        } else {
            self.seal(id)
        }
    }

    /// The alias text as is (dry runs print it; length checks use it).
    pub fn encode(&self) -> String {
        let mut s = String::from(PREFIX);
        s.push_str(&serde_json::to_string(self).unwrap_or_default());
        s
    }

    /// Length of the sealed alias, without needing the key.
    pub fn sealed_len(&self) -> usize {
        let mut r = self.clone();
        r.t = "A".repeat(key::TAG_BYTES.div_ceil(3) * 4);
        r.encode().len()
    }

    /// Read an alias found on link `id`.
    pub fn read(alias: Option<&str>, id: Ident) -> Seen {
        let Some(body) = alias.and_then(|a| a.strip_prefix(PREFIX)) else {
            return Seen::Foreign;
        };
        let Ok(r) = serde_json::from_str::<Record>(body) else {
            return Seen::Forged("not a well-formed record");
        };
        let Some(k) = key::get() else {
            return Seen::Forged("no host key exists, so no record here was written by this host");
        };
        let Some(t) = unb64(&r.t).filter(|t| !t.is_empty()) else {
            return Seen::Forged("unsigned record");
        };
        if !key::same(&t, &r.compute(&k, id)) {
            return Seen::Forged("signature does not match (forged, or copied from another link)");
        }
        let mut r = r;
        r.t.clear();
        Seen::Ours(r)
    }

    /// The namespace inode an alias's record claims to have been written
    /// for, unverified: only to ask `read` again with that identity.
    pub fn claimed_ns(alias: Option<&str>) -> Option<u64> {
        let body = alias?.strip_prefix(PREFIX)?;
        serde_json::from_str::<Record>(body).ok().map(|r| r.n)
    }

    /// Whether an alias claims to be a record at all (ours or forged).
    pub fn claims(alias: Option<&str>) -> bool {
        alias.is_some_and(|a| a.starts_with(PREFIX))
    }
}

/// The alias prefix of a mark. Not `PREFIX`: a mark is no attachment, and
/// the record readers must not take it for a forged record.
const MARK_PREFIX: &str = "pipework-mark ";

/// What kind of host object a mark labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MarkKind {
    /// An 802.1Q sub-interface pipework created, shared by its guests and
    /// removed with the last of them.
    Vlan,
    /// A host-side macvlan shim (`pipework host-shim`).
    Shim,
    /// An overlay network's bridge or VXLAN device, made by its agent.
    Overlay,
}

/// A host object pipework made that is not an attachment: signed with the
/// host key and bound to its link like a record, so only what pipework
/// made is ever removed as pipework's, whoever wrote the alias since.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Mark {
    pub m: MarkKind,
    /// What it belongs to (a shim's parent NIC); empty for a VLAN.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub of: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    t: String,
}

impl Mark {
    pub fn new(m: MarkKind, of: &str) -> Mark {
        Mark {
            m,
            of: of.to_string(),
            t: String::new(),
        }
    }

    fn compute(&self, k: &[u8; 32], id: Ident) -> [u8; key::TAG_BYTES] {
        let mut m = self.clone();
        m.t.clear();
        let body = serde_json::to_string(&m).unwrap_or_default();
        key::tag(
            k,
            &[
                b"pipework-mark-v1",
                body.as_bytes(),
                &id.ns.to_le_bytes(),
                &id.index.to_le_bytes(),
            ],
        )
    }

    /// The alias for this mark on link `id`, tagged.
    pub fn seal(&self, id: Ident) -> crate::error::Result<String> {
        let k = key::get_or_create()?;
        let mut m = self.clone();
        m.t = b64(&self.compute(&k, id));
        Ok(format!(
            "{MARK_PREFIX}{}",
            serde_json::to_string(&m).unwrap_or_default()
        ))
    }

    /// The mark on link `id`, only if it verifies.
    pub fn read(alias: Option<&str>, id: Ident) -> Option<Mark> {
        let body = alias?.strip_prefix(MARK_PREFIX)?;
        let m: Mark = serde_json::from_str(body).ok()?;
        let k = key::get()?;
        let t = unb64(&m.t).filter(|t| !t.is_empty())?;
        key::same(&t, &m.compute(&k, id)).then(|| {
            let mut m = m;
            m.t.clear();
            m
        })
    }

    /// Whether an alias is a mark at all (verified or not): such an alias
    /// is pipework's own text, never a user's to keep or restore.
    pub fn claims(alias: &str) -> bool {
        alias.starts_with(MARK_PREFIX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec() -> Record {
        Record {
            k: Kind::Bridge,
            h: "br1".into(),
            hi: Some("veth1pl12345".into()),
            g: "web1".into(),
            id: Some("0123456789ab".into()),
            ifname: "eth1".into(),
            n: 4026532000,
            ..Default::default()
        }
    }

    fn with_test_key<T>(f: impl FnOnce() -> T) -> T {
        let d = std::env::temp_dir().join(format!("pwt-key-{}", std::process::id()));
        // SAFETY: unit tests of this module are the only users of the
        // variable in this process.
        unsafe { std::env::set_var("PIPEWORK_STATE_DIR", &d) };
        let out = f();
        let _ = std::fs::remove_dir_all(&d);
        out
    }

    /// Records written by the untyped map of earlier versions carry their
    /// extras in key order; the typed struct must serialise them to the
    /// same bytes, or every existing record would stop verifying.
    #[test]
    fn marks_verify_only_on_their_own_link() {
        let k = [9u8; 32];
        let id = Ident { ns: 7, index: 3 };
        let mut m = Mark::new(MarkKind::Shim, "eth1");
        m.t = b64(&m.compute(&k, id));
        let good = m.clone();
        let mut again = good.clone();
        again.t.clear();
        assert!(key::same(&unb64(&good.t).unwrap(), &again.compute(&k, id)));
        // Another link, another namespace, another parent: another tag.
        assert_ne!(
            again.compute(&k, Ident { ns: 7, index: 4 }),
            again.compute(&k, id)
        );
        assert_ne!(
            again.compute(&k, Ident { ns: 8, index: 3 }),
            again.compute(&k, id)
        );
        let other = Mark::new(MarkKind::Shim, "eth2");
        assert_ne!(other.compute(&k, id), again.compute(&k, id));
        // Not a record, and never mistaken for one.
        let alias = format!("{MARK_PREFIX}{}", serde_json::to_string(&good).unwrap());
        assert!(Mark::claims(&alias) && !Record::claims(Some(&alias)));
        assert_eq!(Record::read(Some(&alias), id), Seen::Foreign);
    }

    #[test]
    fn extras_serialise_as_the_untyped_map_did() {
        let mut x = serde_json::Map::new();
        for (k, v) in [
            ("bvf", serde_json::json!(true)),
            ("db", "/run/ovs.sock".into()),
            ("lab", "l1".into()),
            ("li", "a:eth1-b:eth1#3f".into()),
            ("mode", "internal".into()),
            ("o", serde_json::json!({"n": "eth2", "m": 1500})),
            ("ovip", "10.40.0.7".into()),
            ("pci", "0000:01:10.2".into()),
            ("pf", "eth0".into()),
            ("pkey", "8001".into()),
            ("pn", 4026532000u64.into()),
            ("port", "p1".into()),
            ("trunk", "10,20-30".into()),
            ("vf", 3.into()),
            ("vlan", 10.into()),
        ] {
            x.insert(k.into(), v);
        }
        // The record's own fields in their declaration order, as ever.
        let text = format!(
            r#"{{"k":"ovs","h":"br1","g":"web1","if":"eth1","n":7,"x":{}}}"#,
            serde_json::to_string(&x).unwrap()
        );
        let typed: Record = serde_json::from_str(&text).unwrap();
        assert_eq!(serde_json::to_string(&typed).unwrap(), text);
        assert_eq!(
            typed.x.overlay_ip,
            Some(std::net::Ipv4Addr::new(10, 40, 0, 7))
        );
        assert_eq!((typed.x.vf_index, typed.x.vlan), (Some(3), Some(10)));
    }

    #[test]
    fn base64_round_trips() {
        for n in 0..20u8 {
            let v: Vec<u8> = (0..n).map(|i| i.wrapping_mul(37) ^ 0xa5).collect();
            assert_eq!(unb64(&b64(&v)), Some(v));
        }
        assert_eq!(b64(&[0xff; 12]).len(), 16);
        assert_eq!(unb64("a"), None);
        assert_eq!(unb64("a*bc"), None);
    }

    #[test]
    fn sealed_records_verify_only_on_their_own_link() {
        with_test_key(|| {
            let id = Ident { ns: 1, index: 7 };
            let a = rec().seal(id).expect("seal");
            assert!(a.len() < 256);
            assert_eq!(a.len(), rec().sealed_len());
            assert_eq!(Record::read(Some(&a), id), Seen::Ours(rec()));
            // Copied to another link or another namespace.
            assert!(matches!(
                Record::read(Some(&a), Ident { ns: 1, index: 8 }),
                Seen::Forged(_)
            ));
            assert!(matches!(
                Record::read(Some(&a), Ident { ns: 2, index: 7 }),
                Seen::Forged(_)
            ));
            // Edited after signing: another victim named.
            let edited = a.replace("veth1pl12345", "victim0");
            assert!(matches!(Record::read(Some(&edited), id), Seen::Forged(_)));
            // Unsigned, as a guest would write it.
            assert!(matches!(
                Record::read(Some(&rec().encode()), id),
                Seen::Forged(_)
            ));
            assert_eq!(Record::read(Some("some admin alias"), id), Seen::Foreign);
            assert_eq!(Record::read(None, id), Seen::Foreign);
        })
    }
}
