//! The guest name CNI records on its links (crate::record::Record `g`): the
//! attachment's network, container ID and interface, so DEL without a
//! namespace, CHECK and GC find it by asking the kernel, with no state
//! files.
//!
//! Two spellings, told apart by their prefix:
//! - `cnc:NET/ID/IFNAME` (compact, written now) when the container ID is 64
//!   lowercase hex digits, as Kubernetes/containerd, Podman and Docker pass
//!   it: ID is the unpadded base64url of its 32 bytes, 43 characters
//!   instead of 64. Exactly one spelling per ID (`expand` refuses any
//!   other), so decoding and re-encoding give back the same bytes.
//! - `cni:NET/CONTAINERID/IFNAME` (legacy, every earlier version's) for any
//!   other ID, which CNI_CONTAINERID validation keeps free of `/`.
//!
//! Records of either spelling are matched by what they decode to, never by
//! their text, so an attachment recorded by an earlier version is found
//! by the same DEL, CHECK and GC.
use crate::record::{b64, unb64};

const LEGACY: &str = "cni:";
const COMPACT: &str = "cnc:";
/// Bytes of a 64-hex container ID in the compact spelling.
pub const COMPACT_ID_LEN: usize = 43;

/// The tag this version writes for an attachment.
pub fn encode(net: &str, cid: &str, ifname: &str) -> String {
    match compact(cid) {
        Some(c) => format!("{COMPACT}{net}/{c}/{ifname}"),
        None => legacy(net, cid, ifname),
    }
}

/// Whether `g` is the compact spelling (a 64-hex ID, 43 bytes recorded).
pub fn is_compact(g: &str) -> bool {
    g.starts_with(COMPACT)
}

/// The spelling of every earlier version.
pub fn legacy(net: &str, cid: &str, ifname: &str) -> String {
    format!("{LEGACY}{net}/{cid}/{ifname}")
}

/// Every spelling an attachment may have been recorded under, for what
/// stores the tag as plain text (OVSDB rows, SR-IOV state files).
pub fn spellings(net: &str, cid: &str, ifname: &str) -> Vec<String> {
    let mut out = vec![encode(net, cid, ifname)];
    let old = legacy(net, cid, ifname);
    if out[0] != old {
        out.push(old);
    }
    out
}

/// (network, container ID, interface) of a tag in either spelling.
pub fn decode(g: &str) -> Option<(&str, String, &str)> {
    let (rest, compact_id) = match g.strip_prefix(COMPACT) {
        Some(r) => (r, true),
        None => (g.strip_prefix(LEGACY)?, false),
    };
    let mut it = rest.splitn(3, '/');
    let (net, id, ifname) = (it.next()?, it.next()?, it.next()?);
    let id = if compact_id {
        expand(id)?
    } else {
        id.to_string()
    };
    Some((net, id, ifname))
}

/// Whether two tags name the same attachment (whatever their spelling).
pub fn same(a: &str, b: &str) -> bool {
    decode(a).is_some_and(|x| decode(b).is_some_and(|y| x == y))
}

/// For `ls`: a CNI record's guest as it always read (`cni:NET/ID/IF`, the
/// full container ID) and that ID; None for any other guest.
pub fn guest_of(rec: &crate::record::Record) -> Option<(String, String)> {
    decode(&rec.g).map(|(n, c, i)| (legacy(n, &c, i), c))
}

fn compact(cid: &str) -> Option<String> {
    let b = cid.as_bytes();
    if b.len() != 64 || !b.iter().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    let bytes: Vec<u8> = b
        .chunks(2)
        .map(|p| {
            let s = std::str::from_utf8(p).unwrap_or("00");
            u8::from_str_radix(s, 16).unwrap_or(0)
        })
        .collect();
    Some(b64(&bytes))
}

/// The 64-hex ID of a compact one; None unless `s` is exactly what
/// `compact` writes for it.
fn expand(s: &str) -> Option<String> {
    let bytes = unb64(s).filter(|b| b.len() == 32)?;
    if b64(&bytes) != s {
        return None;
    }
    Some(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "0123456789abcdef00ff10e0d9c3b2a1f00df00d8badc0de1234567890fedcba";

    #[test]
    fn compact_round_trips_and_is_shorter() {
        let t = encode("k8s-pod-net", HEX, "eth0");
        assert!(t.starts_with("cnc:k8s-pod-net/"), "{t}");
        assert_eq!(t.len(), legacy("k8s-pod-net", HEX, "eth0").len() - 21);
        assert_eq!(decode(&t), Some(("k8s-pod-net", HEX.to_string(), "eth0")));
        for id in [[0u8; 32], [0xff; 32]] {
            let hex: String = id.iter().map(|b| format!("{b:02x}")).collect();
            let t = encode("n", &hex, "net1");
            let c = t.split('/').nth(1).unwrap_or_default();
            assert_eq!(c.len(), COMPACT_ID_LEN, "{t}");
            assert_eq!(decode(&t).map(|d| d.1), Some(hex));
        }
        let rec = crate::record::Record {
            g: t.clone(),
            ..Default::default()
        };
        let shown = (legacy("k8s-pod-net", HEX, "eth0"), HEX.to_string());
        assert_eq!(guest_of(&rec), Some(shown));
    }

    #[test]
    fn legacy_tags_still_decode_and_match_the_compact_one() {
        let old = legacy("k8s-pod-net", HEX, "eth0");
        assert_eq!(decode(&old), Some(("k8s-pod-net", HEX.to_string(), "eth0")));
        assert!(same(&old, &encode("k8s-pod-net", HEX, "eth0")));
        assert_eq!(spellings("k8s-pod-net", HEX, "eth0").len(), 2);
        // Another network, ID or interface is another attachment.
        assert!(!same(&old, &encode("k8s-pod-ne", HEX, "eth0")));
        assert!(!same(&old, &encode("k8s-pod-net", HEX, "eth1")));
        let other = HEX.replace("0123", "0124");
        assert!(!same(&old, &encode("k8s-pod-net", &other, "eth0")));
    }

    #[test]
    fn other_ids_keep_the_legacy_spelling() {
        let upper = HEX.to_ascii_uppercase();
        for id in ["pwc-ctr", "abc", &HEX[1..], &upper, &format!("{HEX}0")] {
            let t = encode("n", id, "eth0");
            assert_eq!(t, legacy("n", id, "eth0"));
            assert_eq!(decode(&t), Some(("n", id.to_string(), "eth0")));
            assert_eq!(spellings("n", id, "eth0"), vec![t]);
        }
    }

    #[test]
    fn malformed_compact_ids_are_not_tags() {
        let t = encode("n", HEX, "eth0");
        let c = t.split('/').nth(1).unwrap_or_default().to_string();
        // The last character carries 2 unused bits: only one spelling.
        let mut loose = c.clone();
        loose.pop();
        loose.push('B');
        assert_ne!(unb64(&loose), None);
        for bad in [&c[1..], &format!("{c}A"), &loose, "", "!!"] {
            assert_eq!(decode(&format!("cnc:n/{bad}/eth0")), None, "{bad}");
        }
        assert_eq!(decode("cnc:n"), None);
        assert_eq!(decode("web1"), None);
    }
}
