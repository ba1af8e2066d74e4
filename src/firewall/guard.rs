//! VXLAN only from members: an nftables table of our own that drops UDP
//! to an overlay's VXLAN port unless its source is the underlay address of
//! a host registered in etcd. Without it anyone who reaches the port can
//! inject frames into a network whose VNI is predictable (4096, 4097, …).
//!
//! Why a table of our own works here (unlike the bridge accept rule in
//! nft.rs): we only ever *drop*, and a drop in any base chain is final.
//! The shape, as `nft list table inet pipework_vxlan` shows it:
//!
//! ```text
//! set ports  { type inet_service; elements = { 4789 } }
//! set hosts4 { type ipv4_addr; elements = { 10.0.0.1, 10.0.0.2 } }
//! set hosts6 { type ipv6_addr; }
//! chain members { type filter hook input priority filter; policy accept;
//!   meta nfproto ipv4 meta l4proto udp udp dport @ports ip saddr != @hosts4 counter drop comment "pipework:vxlan-members"
//!   meta nfproto ipv6 meta l4proto udp udp dport @ports ip6 saddr != @hosts6 counter drop comment "pipework:vxlan-members" }
//! chain contain { type filter hook forward priority filter; policy accept;
//!   iifname "ov-*" ip daddr @hosts4 counter drop comment "pipework:overlay-contain"
//!   iifname "ov-*" ip6 daddr @hosts6 counter drop comment "pipework:overlay-contain" }
//! (and in `members`, after the two rules above:)
//!   iifname "ov-*" udp dport @ports counter drop comment "pipework:overlay-contain"
//!   iifname "ov-*" tcp dport 2379-2380 counter drop comment "pipework:overlay-contain"
//! ```
//!
//! (`ov-*`: the overlay's bridges. The prefix is the overlay's naming,
//! passed to `install` as `group`: this layer does not know it.)
//!
//! Why `contain`: egress masquerades a container's traffic to its host's
//! underlay address, which is in every guard's member set. Without these
//! drops a container could aim its own VXLAN device at another member's
//! VXLAN port and inject frames into any network there (or talk to etcd).
//! Containers have no business with overlay hosts' underlay addresses:
//! routed from an overlay bridge to one of them, dropped; delivered to
//! this host from an overlay bridge, VXLAN and etcd's ports are dropped.
//!
//! Sets, so a host joining or dying changes one element, not a rule, and a
//! thousand hosts cost one hash lookup. The whole table is (re)built in one
//! transaction (there is never a moment without the rule), the members
//! then follow by element adds and deletes. Spoken over nfnetlink like the
//! rest of this module: no `nft` or `ipset` binary needed.
use super::nft::*;
use std::collections::BTreeSet;
use std::io;
use std::net::IpAddr;

pub const TABLE: &str = "pipework_vxlan";
const CHAIN: &str = "members";
const CONTAIN: &str = "contain";
pub const COMMENT: &str = "pipework:vxlan-members";
const CONTAIN_COMMENT: &str = "pipework:overlay-contain";
const SEALED_COMMENT: &str = "pipework:vxlan-encrypted";
const NFT_CMP_NEQ: u32 = 1;
/// etcd's client and peer ports: never from a container.
const ETCD_PORTS: (u16, u16) = (2379, 2380);

const NFT_MSG_NEWTABLE: u16 = 0;
const NFT_MSG_GETTABLE: u16 = 1;
const NFT_MSG_DELTABLE: u16 = 2;
const NFT_MSG_NEWSET: u16 = 9;
const NFT_MSG_NEWSETELEM: u16 = 12;
const NFT_MSG_GETSETELEM: u16 = 13;
const NFT_MSG_DELSETELEM: u16 = 14;
const NLM_F_APPEND: u16 = 0x800;
const NFTA_TABLE_NAME: u16 = 1;
const NFTA_CHAIN_TYPE: u16 = 7;
const NFTA_HOOK_PRIORITY: u16 = 2;
const NF_INET_LOCAL_IN: u32 = 1;
const NFT_CMP_GTE: u32 = 5;
const NFT_CMP_LTE: u32 = 3;
const NFTA_SET_TABLE: u16 = 1;
const NFTA_SET_NAME: u16 = 2;
const NFTA_SET_FLAGS: u16 = 3;
const NFTA_SET_KEY_TYPE: u16 = 4;
const NFTA_SET_KEY_LEN: u16 = 5;
const NFTA_SET_ID: u16 = 10;
const NFTA_SET_ELEM_LIST_TABLE: u16 = 1;
const NFTA_SET_ELEM_LIST_SET: u16 = 2;
const NFTA_SET_ELEM_LIST_ELEMENTS: u16 = 3;
const NFTA_SET_ELEM_LIST_SET_ID: u16 = 4;
const NFTA_SET_ELEM_KEY: u16 = 1;
const NFTA_LOOKUP_SET: u16 = 1;
const NFTA_LOOKUP_SREG: u16 = 2;
const NFTA_LOOKUP_SET_ID: u16 = 4;
const NFTA_LOOKUP_FLAGS: u16 = 5;
const NFT_LOOKUP_F_INV: u32 = 1;
const NFTA_PAYLOAD_DREG: u16 = 1;
const NFTA_PAYLOAD_BASE: u16 = 2;
const NFTA_PAYLOAD_OFFSET: u16 = 3;
const NFTA_PAYLOAD_LEN: u16 = 4;
const NFT_PAYLOAD_NETWORK: u32 = 1;
const NFT_PAYLOAD_TRANSPORT: u32 = 2;
const NFT_META_NFPROTO: u32 = 15;
const NFT_META_L4PROTO: u32 = 16;
/// `nft`'s data types, so `nft list` prints addresses and ports.
const TYPE_IPV4: u32 = 7;
const TYPE_IPV6: u32 = 8;
const TYPE_SERVICE: u32 = 13;

/// (name, id in the batch, nft type, key length)
const PORTS: (&str, u32, u32, u32) = ("ports", 1, TYPE_SERVICE, 2);
const HOSTS4: (&str, u32, u32, u32) = ("hosts4", 2, TYPE_IPV4, 4);
const HOSTS6: (&str, u32, u32, u32) = ("hosts6", 3, TYPE_IPV6, 16);

fn msg(ty: u16, flags: u16) -> Msg {
    Msg::new(ty, NLM_F_REQUEST | NLM_F_ACK | flags, INET)
}

fn table_msg(ty: u16, flags: u16) -> Msg {
    let mut m = msg(ty, flags);
    m.str(NFTA_TABLE_NAME, TABLE);
    m
}

fn key_of(ip: &IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

/// One set-element message (add or delete) for `set`; None when empty.
fn elems(ty: u16, set: (&str, u32, u32, u32), keys: &[Vec<u8>], same_batch: bool) -> Option<Msg> {
    if keys.is_empty() {
        return None;
    }
    let flags = if ty == NFT_MSG_NEWSETELEM {
        NLM_F_CREATE
    } else {
        0
    };
    let mut m = msg(ty, flags);
    m.str(NFTA_SET_ELEM_LIST_TABLE, TABLE);
    m.str(NFTA_SET_ELEM_LIST_SET, set.0);
    if same_batch {
        m.be32(NFTA_SET_ELEM_LIST_SET_ID, set.1);
    }
    m.nest(NFTA_SET_ELEM_LIST_ELEMENTS, |l| {
        for k in keys {
            l.nest(NFTA_LIST_ELEM, |e| {
                e.nest(NFTA_SET_ELEM_KEY, |d| d.attr(NFTA_DATA_VALUE, k))
            });
        }
    });
    Some(m)
}

fn split(members: &BTreeSet<IpAddr>) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let v4 = members.iter().filter(|a| a.is_ipv4()).map(key_of).collect();
    let v6 = members.iter().filter(|a| a.is_ipv6()).map(key_of).collect();
    (v4, v6)
}

fn meta_cmp(l: &mut Msg, key: u32, op: u32, want: &[u8]) {
    expr(l, "meta", |e| {
        e.be32(NFTA_META_DREG, NFT_REG_1);
        e.be32(NFTA_META_KEY, key);
    });
    cmp(l, op, want);
}

fn cmp(l: &mut Msg, op: u32, data: &[u8]) {
    expr(l, "cmp", |e| {
        e.be32(NFTA_CMP_SREG, NFT_REG_1);
        e.be32(NFTA_CMP_OP, op);
        e.nest(NFTA_CMP_DATA, |d| d.attr(NFTA_DATA_VALUE, data));
    });
}

fn payload(l: &mut Msg, base: u32, at: u32, len: u32) {
    expr(l, "payload", |e| {
        e.be32(NFTA_PAYLOAD_DREG, NFT_REG_1);
        e.be32(NFTA_PAYLOAD_BASE, base);
        e.be32(NFTA_PAYLOAD_OFFSET, at);
        e.be32(NFTA_PAYLOAD_LEN, len);
    });
}

/// `… @set` (inverted: `!= @set`) on what register 1 holds.
fn lookup(l: &mut Msg, s: (&str, u32, u32, u32), inv: bool) {
    expr(l, "lookup", |e| {
        e.str(NFTA_LOOKUP_SET, s.0);
        e.be32(NFTA_LOOKUP_SET_ID, s.1);
        e.be32(NFTA_LOOKUP_SREG, NFT_REG_1);
        if inv {
            e.be32(NFTA_LOOKUP_FLAGS, NFT_LOOKUP_F_INV);
        }
    });
}

/// `iifname "GROUP*"`: a compare of the first bytes only, as nft writes a
/// trailing wildcard (`group`: the prefix the caller's bridges share).
fn from_overlay_bridge(l: &mut Msg, group: &str) {
    meta_cmp(l, NFT_META_IIFNAME, NFT_CMP_EQ, group.as_bytes());
}

fn rule(chain: &str, comment: &str, body: impl FnOnce(&mut Msg)) -> Msg {
    let mut m = msg(NFT_MSG_NEWRULE, NLM_F_CREATE | NLM_F_APPEND);
    m.str(NFTA_RULE_TABLE, TABLE);
    m.str(NFTA_RULE_CHAIN, chain);
    m.nest(NFTA_RULE_EXPRESSIONS, |l| {
        body(l);
        expr(l, "counter", |_| {});
        expr(l, "immediate", |e| {
            e.be32(NFTA_IMMEDIATE_DREG, NFT_REG_VERDICT);
            e.nest(NFTA_IMMEDIATE_DATA, |d| {
                d.nest(NFTA_DATA_VERDICT, |v| v.be32(NFTA_VERDICT_CODE, NF_DROP))
            });
        });
    });
    m.attr(NFTA_RULE_USERDATA, &udata_with_comment(comment));
    m
}

fn family(v6: bool) -> (u8, u32, (&'static str, u32, u32, u32)) {
    if v6 {
        (libc::NFPROTO_IPV6 as u8, 16, HOSTS6)
    } else {
        (libc::NFPROTO_IPV4 as u8, 4, HOSTS4)
    }
}

/// `udp dport @ports ip saddr != @hosts4 drop` (ip6: `@hosts6`).
fn members_rule(v6: bool) -> Msg {
    let (proto, len, set) = family(v6);
    // The source address: at 12 in an IPv4 header, at 8 in an IPv6 one.
    let saddr_at = if v6 { 8 } else { 12 };
    rule(CHAIN, COMMENT, |l| {
        meta_cmp(l, NFT_META_NFPROTO, NFT_CMP_EQ, &[proto]);
        meta_cmp(l, NFT_META_L4PROTO, NFT_CMP_EQ, &[libc::IPPROTO_UDP as u8]);
        payload(l, NFT_PAYLOAD_TRANSPORT, 2, 2);
        lookup(l, PORTS, false);
        payload(l, NFT_PAYLOAD_NETWORK, saddr_at, len);
        lookup(l, set, true);
    })
}

/// Forward: `iifname "GROUP*" ip daddr @hosts4 drop` (ip6: `@hosts6`).
fn contain_forward(v6: bool, group: &str) -> Msg {
    let (proto, len, set) = family(v6);
    let daddr_at = if v6 { 24 } else { 16 };
    rule(CONTAIN, CONTAIN_COMMENT, |l| {
        from_overlay_bridge(l, group);
        meta_cmp(l, NFT_META_NFPROTO, NFT_CMP_EQ, &[proto]);
        payload(l, NFT_PAYLOAD_NETWORK, daddr_at, len);
        lookup(l, set, false);
    })
}

/// Input, both families: `iifname "GROUP*" udp dport @ports drop` and
/// `iifname "GROUP*" tcp dport 2379-2380 drop`.
fn contain_input(group: &str) -> [Msg; 2] {
    let udp = rule(CHAIN, CONTAIN_COMMENT, |l| {
        from_overlay_bridge(l, group);
        meta_cmp(l, NFT_META_L4PROTO, NFT_CMP_EQ, &[libc::IPPROTO_UDP as u8]);
        payload(l, NFT_PAYLOAD_TRANSPORT, 2, 2);
        lookup(l, PORTS, false);
    });
    let tcp = rule(CHAIN, CONTAIN_COMMENT, |l| {
        from_overlay_bridge(l, group);
        meta_cmp(l, NFT_META_L4PROTO, NFT_CMP_EQ, &[libc::IPPROTO_TCP as u8]);
        payload(l, NFT_PAYLOAD_TRANSPORT, 2, 2);
        // Big-endian bytes: compared as bytes, they order as numbers.
        cmp(l, NFT_CMP_GTE, &ETCD_PORTS.0.to_be_bytes());
        cmp(l, NFT_CMP_LTE, &ETCD_PORTS.1.to_be_bytes());
    });
    [udp, tcp]
}

/// An encrypted network's VNI arrives through the tunnel only:
/// `udp dport PORT iifname != "pw-wg" @th,96,24 VNI drop`. Any member
/// may send clear-text VXLAN to the port (clear networks share it), so
/// only the VNI in the VXLAN header (bytes 4-6 after the UDP header; the
/// kernel ignores the byte after it, so it is left out) tells the two
/// apart: a member's forged clear-text frame never reaches the network.
/// PORT is the network's VXLAN port, not `@ports`: that set also holds
/// WireGuard's port, where those bytes are a random session index, and a
/// match there would blackhole a whole WireGuard session.
fn sealed_rule(vni: u32, port: u16, tunnel_if: &str) -> Msg {
    let mut name = [0u8; 16];
    let n = tunnel_if.len().min(15);
    name[..n].copy_from_slice(&tunnel_if.as_bytes()[..n]);
    rule(CHAIN, SEALED_COMMENT, |l| {
        meta_cmp(l, NFT_META_L4PROTO, NFT_CMP_EQ, &[libc::IPPROTO_UDP as u8]);
        payload(l, NFT_PAYLOAD_TRANSPORT, 2, 2);
        cmp(l, NFT_CMP_EQ, &port.to_be_bytes());
        meta_cmp(l, NFT_META_IIFNAME, NFT_CMP_NEQ, &name);
        payload(l, NFT_PAYLOAD_TRANSPORT, 12, 3);
        cmp(l, NFT_CMP_EQ, &vni.to_be_bytes()[1..]);
    })
}

fn base_chain(name: &str, hook: u32) -> Msg {
    let mut ch = msg(NFT_MSG_NEWCHAIN, NLM_F_CREATE);
    ch.str(NFTA_CHAIN_TABLE, TABLE);
    ch.str(NFTA_CHAIN_NAME, name);
    ch.nest(NFTA_CHAIN_HOOK, |h| {
        h.be32(NFTA_HOOK_HOOKNUM, hook);
        h.be32(NFTA_HOOK_PRIORITY, 0);
    });
    ch.be32(NFTA_CHAIN_POLICY, NF_ACCEPT);
    ch.str(NFTA_CHAIN_TYPE, "filter");
    ch
}

/// The table with exactly these ports and members, in one transaction:
/// created, or replaced (add-then-delete makes the delete never fail).
/// `sealed`: (VNI, VXLAN port) of encrypted networks, accepted from
/// `tunnel_if` only. `group`: the name prefix of the bridges containers
/// sit on (the overlay's `ov-`; its naming, given by it), for `contain`.
pub fn install(
    ports: &BTreeSet<u16>,
    members: &BTreeSet<IpAddr>,
    sealed: &BTreeSet<(u32, u16)>,
    tunnel_if: &str,
    group: &str,
) -> io::Result<()> {
    let mut b = vec![
        table_msg(NFT_MSG_NEWTABLE, NLM_F_CREATE),
        table_msg(NFT_MSG_DELTABLE, 0),
        table_msg(NFT_MSG_NEWTABLE, NLM_F_CREATE),
    ];
    b.push(base_chain(CHAIN, NF_INET_LOCAL_IN));
    b.push(base_chain(CONTAIN, NF_INET_FORWARD));
    for s in [PORTS, HOSTS4, HOSTS6] {
        let mut m = msg(NFT_MSG_NEWSET, NLM_F_CREATE);
        m.str(NFTA_SET_TABLE, TABLE);
        m.str(NFTA_SET_NAME, s.0);
        m.be32(NFTA_SET_FLAGS, 0);
        m.be32(NFTA_SET_KEY_TYPE, s.2);
        m.be32(NFTA_SET_KEY_LEN, s.3);
        m.be32(NFTA_SET_ID, s.1);
        b.push(m);
    }
    let port_keys: Vec<Vec<u8>> = ports.iter().map(|p| p.to_be_bytes().to_vec()).collect();
    let (v4, v6) = split(members);
    b.extend(elems(NFT_MSG_NEWSETELEM, PORTS, &port_keys, true));
    b.extend(elems(NFT_MSG_NEWSETELEM, HOSTS4, &v4, true));
    b.extend(elems(NFT_MSG_NEWSETELEM, HOSTS6, &v6, true));
    b.push(members_rule(false));
    b.push(members_rule(true));
    b.extend(sealed.iter().map(|(v, p)| sealed_rule(*v, *p, tunnel_if)));
    b.extend(contain_input(group));
    b.push(contain_forward(false, group));
    b.push(contain_forward(true, group));
    Nl::open()?.batch_all(b)
}

/// Members joined and left, in one transaction (the table must exist).
pub fn update(add: &BTreeSet<IpAddr>, del: &BTreeSet<IpAddr>) -> io::Result<()> {
    let (a4, a6) = split(add);
    let (d4, d6) = split(del);
    let b: Vec<Msg> = [
        elems(NFT_MSG_DELSETELEM, HOSTS4, &d4, false),
        elems(NFT_MSG_DELSETELEM, HOSTS6, &d6, false),
        elems(NFT_MSG_NEWSETELEM, HOSTS4, &a4, false),
        elems(NFT_MSG_NEWSETELEM, HOSTS6, &a6, false),
    ]
    .into_iter()
    .flatten()
    .collect();
    if b.is_empty() {
        return Ok(());
    }
    Nl::open()?.batch_all(b)
}

/// Whether our table is in this namespace's ruleset.
pub fn present() -> io::Result<bool> {
    table_present(TABLE)
}

/// Whether the inet table `name` exists here.
pub fn table_present(name: &str) -> io::Result<bool> {
    let mut found = false;
    let req = Msg::new(NFT_MSG_GETTABLE, NLM_F_REQUEST | NLM_F_DUMP, INET);
    Nl::open()?.dump(req, |family, ty, attrs| {
        if ty == NFT_MSG_NEWTABLE
            && family == INET
            && Attrs(attrs).any(|(t, v)| t == NFTA_TABLE_NAME && cstr(v).as_deref() == Some(name))
        {
            found = true;
        }
    })?;
    Ok(found)
}

/// The member addresses in our table now (both families); None when the
/// table is not there. Read-only: what `doctor` compares with etcd.
pub fn members() -> io::Result<Option<BTreeSet<IpAddr>>> {
    if !present()? {
        return Ok(None);
    }
    let mut out = BTreeSet::new();
    for set in [HOSTS4, HOSTS6] {
        let mut req = Msg::new(NFT_MSG_GETSETELEM, NLM_F_REQUEST | NLM_F_DUMP, INET);
        req.str(NFTA_SET_ELEM_LIST_TABLE, TABLE);
        req.str(NFTA_SET_ELEM_LIST_SET, set.0);
        Nl::open()?.dump(req, |_, ty, attrs| {
            if ty != NFT_MSG_NEWSETELEM {
                return;
            }
            let elems = Attrs(attrs).filter(|(t, _)| *t == NFTA_SET_ELEM_LIST_ELEMENTS);
            for (_, list) in elems {
                for (_, e) in Attrs(list).filter(|(t, _)| *t == NFTA_LIST_ELEM) {
                    for (_, k) in Attrs(e).filter(|(t, _)| *t == NFTA_SET_ELEM_KEY) {
                        for (_, v) in Attrs(k).filter(|(t, _)| *t == NFTA_DATA_VALUE) {
                            if let Ok(a) = <[u8; 4]>::try_from(v) {
                                out.insert(IpAddr::from(a));
                            } else if let Ok(a) = <[u8; 16]>::try_from(v) {
                                out.insert(IpAddr::from(a));
                            }
                        }
                    }
                }
            }
        })?;
    }
    Ok(Some(out))
}

/// Remove the table; whether it was there.
pub fn remove() -> io::Result<bool> {
    if !present()? {
        return Ok(false);
    }
    Nl::open()?.batch_all(vec![
        table_msg(NFT_MSG_NEWTABLE, NLM_F_CREATE),
        table_msg(NFT_MSG_DELTABLE, 0),
    ])?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// In a namespace of its own (a thread that unshared): built, members
    /// changed, listed by `nft` when it is installed, removed.
    #[test]
    fn overlay_vxlan_guard_round_trip() {
        if !nix::unistd::geteuid().is_root() {
            return;
        }
        std::thread::spawn(|| {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare");
            // 51820: WireGuard's port, which the agent adds to `ports`.
            let ports: BTreeSet<u16> = [4789, 8472, 51820].into();
            let a: IpAddr = "10.9.0.1".parse().expect("ip");
            let b: IpAddr = "fd00::2".parse().expect("ip");
            let c: IpAddr = "10.9.0.3".parse().expect("ip");
            assert!(!present().expect("dump"));
            let sealed: BTreeSet<(u32, u16)> = [(4097, 8472)].into();
            install(&ports, &[a, b].into(), &sealed, "pw-wg", "gt-").expect("install");
            assert!(present().expect("dump"));
            // Again: replaced, not doubled.
            install(&ports, &[a, b].into(), &sealed, "pw-wg", "gt-").expect("install again");
            update(&[c].into(), &[a].into()).expect("update");
            assert_eq!(members().expect("members"), Some([b, c].into()));
            if let Ok(o) = std::process::Command::new("nft")
                .args(["list", "table", "inet", TABLE])
                .output()
            {
                let t = String::from_utf8_lossy(&o.stdout);
                assert!(t.contains("4789") && t.contains("8472"), "{t}");
                assert!(t.contains("10.9.0.3") && !t.contains("10.9.0.1"), "{t}");
                assert!(t.contains("fd00::2"), "{t}");
                assert_eq!(t.matches(COMMENT).count(), 2, "{t}");
                assert!(t.contains("saddr != @hosts4"), "{t}");
                assert_eq!(t.matches(SEALED_COMMENT).count(), 1, "{t}");
                // On the network's own port only: never WireGuard's.
                let sealed_line = t
                    .lines()
                    .find(|l| l.contains(SEALED_COMMENT))
                    .unwrap_or_default();
                assert!(
                    sealed_line.contains("udp dport 8472 iifname != \"pw-wg\"")
                        && !sealed_line.contains("@ports"),
                    "{t}"
                );
                assert!(sealed_line.contains("@th,96,24 0x1001"), "{t}");
                // Containers kept off the underlay (see `contain`).
                for want in [
                    "hook forward",
                    "iifname \"gt-*\" ip daddr @hosts4",
                    "iifname \"gt-*\" ip6 daddr @hosts6",
                    "iifname \"gt-*\" udp dport @ports",
                    "iifname \"gt-*\" tcp dport 2379-2380",
                ] {
                    assert!(t.contains(want), "{want}: {t}");
                }
                assert_eq!(t.matches(CONTAIN_COMMENT).count(), 4, "{t}");
            }
            // gc: kept while a VXLAN device is here, removed after.
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("rt");
            let host = rt.block_on(async { crate::netlink::Net::new(None, false) });
            let host = host.expect("netlink");
            let vx = [
                "link", "add", "pwgvx", "type", "vxlan", "id", "7", "dstport", "4789",
            ];
            let made = std::process::Command::new("ip")
                .args(vx)
                .status()
                .is_ok_and(|s| s.success());
            if made {
                let kept = rt.block_on(crate::firewall::collect_vxlan_guard(&host, false));
                assert!(!kept.expect("gc"), "a VXLAN device is still here");
                assert!(present().expect("dump"));
                let _ = std::process::Command::new("ip")
                    .args(["link", "del", "pwgvx"])
                    .status();
            }
            let dry = rt.block_on(crate::firewall::collect_vxlan_guard(&host, true));
            assert!(dry.expect("gc -n"));
            assert!(present().expect("dump"), "a dry run removes nothing");
            let gc = rt.block_on(crate::firewall::collect_vxlan_guard(&host, false));
            assert!(gc.expect("gc"));
            assert!(!present().expect("dump"));
            assert!(!remove().expect("remove twice"));
            install(&ports, &BTreeSet::new(), &BTreeSet::new(), "pw-wg", "gt-")
                .expect("no members yet");
            assert!(remove().expect("remove"));
        })
        .join()
        .expect("thread");
    }
}
