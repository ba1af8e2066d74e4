//! Egress and isolation for networks routed through an anycast gateway
//! (the overlay's): one nftables table of our own, `inet pipework_egress`.
//!
//! ```text
//! chain nat { type nat hook postrouting priority srcnat;
//!   meta nfproto ipv4 ip saddr 10.40.0.0/16 oifname != "ov-a" oifname != "ov-*" masquerade comment "pipework:ov-a"
//!   meta nfproto ipv6 ip6 saddr fd40::/64 oifname != "ov-a" oifname != "ov-*" masquerade comment "pipework:ov-a" }
//! chain isolate { type filter hook forward priority filter;
//!   ct state established,related accept
//!   iifname "ov-b" oifname "ov-a" accept comment "pipework:ov-a"      (a --allow-from b)
//!   iifname "ov-a" oifname "ov-*" oifname != "ov-a" drop comment "pipework:ov-a" }
//! ```
//!
//! (Shown for the overlay's networks `a` and `b`. `ov-` is the overlay's
//! naming, not ours: it comes in `Routed::group`, so this layer stays
//! below the subsystems that name the bridges.)
//!
//! Masquerade to the outgoing interface's address: the host's underlay
//! address when that is the way out (for IPv6 too: overlay subnets are
//! usually ULAs that no upstream routes back). Isolation matches
//! interfaces, not addresses: it holds for both families alike. A drop in our chain is final whatever
//! other chains say; our accepts only end our own chain, so a host whose
//! FORWARD policy drops still needs its own accept for the way out.
//! Rebuilt whole in one transaction whenever the set of networks changes
//! (rare: a network's first or last endpoint on this host).
use super::nft::*;
use std::io;

pub const TABLE: &str = "pipework_egress";

/// One network: its bridge, subnets, and the bridges allowed into it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routed {
    pub bridge: String,
    /// The name prefix every routed network's bridge shares (what `*`
    /// matches in the rules above stands for): the rules tell "another
    /// routed network" from "the way out" by it. The subsystem that names
    /// the bridges gives it; the firewall knows no naming of its own.
    pub group: String,
    /// None: an IPv6-only network.
    pub subnet: Option<ipnetwork::Ipv4Network>,
    /// None: an IPv4-only network.
    pub subnet6: Option<ipnetwork::Ipv6Network>,
    pub allow_from: Vec<String>,
}

const NFT_MSG_NEWTABLE: u16 = 0;
const NFT_MSG_DELTABLE: u16 = 2;
const NLM_F_APPEND: u16 = 0x800;
const NFTA_TABLE_NAME: u16 = 1;
const NFTA_CHAIN_TYPE: u16 = 7;
const NFTA_HOOK_PRIORITY: u16 = 2;
const NF_INET_POST_ROUTING: u32 = 4;
const NFT_META_NFPROTO: u32 = 15;
const NFTA_PAYLOAD_DREG: u16 = 1;
const NFTA_PAYLOAD_BASE: u16 = 2;
const NFTA_PAYLOAD_OFFSET: u16 = 3;
const NFTA_PAYLOAD_LEN: u16 = 4;
const NFT_PAYLOAD_NETWORK: u32 = 1;
const NFTA_BITWISE_SREG: u16 = 1;
const NFTA_BITWISE_DREG: u16 = 2;
const NFTA_BITWISE_LEN: u16 = 3;
const NFTA_BITWISE_MASK: u16 = 4;
const NFTA_BITWISE_XOR: u16 = 5;
const NFTA_CT_DREG: u16 = 1;
const NFTA_CT_KEY: u16 = 2;
const NFT_CT_STATE: u32 = 0;
const NFT_CMP_NEQ: u32 = 1;
/// ct state bits (host order): established 2, related 4.
const CT_EST_REL: u32 = 2 | 4;

fn msg(ty: u16, flags: u16) -> Msg {
    Msg::new(ty, NLM_F_REQUEST | NLM_F_ACK | flags, INET)
}

fn table_msg(ty: u16, flags: u16) -> Msg {
    let mut m = msg(ty, flags);
    m.str(NFTA_TABLE_NAME, TABLE);
    m
}

fn chain(name: &str, hook: u32, prio: i32, ty: &str) -> Msg {
    let mut ch = msg(NFT_MSG_NEWCHAIN, NLM_F_CREATE);
    ch.str(NFTA_CHAIN_TABLE, TABLE);
    ch.str(NFTA_CHAIN_NAME, name);
    ch.nest(NFTA_CHAIN_HOOK, |h| {
        h.be32(NFTA_HOOK_HOOKNUM, hook);
        h.be32(NFTA_HOOK_PRIORITY, prio as u32);
    });
    ch.be32(NFTA_CHAIN_POLICY, NF_ACCEPT);
    ch.str(NFTA_CHAIN_TYPE, ty);
    ch
}

fn rule(chain: &str, comment: &str, body: impl FnOnce(&mut Msg)) -> Msg {
    let mut m = msg(NFT_MSG_NEWRULE, NLM_F_CREATE | NLM_F_APPEND);
    m.str(NFTA_RULE_TABLE, TABLE);
    m.str(NFTA_RULE_CHAIN, chain);
    m.nest(NFTA_RULE_EXPRESSIONS, body);
    if !comment.is_empty() {
        m.attr(NFTA_RULE_USERDATA, &udata_with_comment(comment));
    }
    m
}

fn cmp(l: &mut Msg, op: u32, data: &[u8]) {
    expr(l, "cmp", |e| {
        e.be32(NFTA_CMP_SREG, NFT_REG_1);
        e.be32(NFTA_CMP_OP, op);
        e.nest(NFTA_CMP_DATA, |d| d.attr(NFTA_DATA_VALUE, data));
    });
}

fn meta(l: &mut Msg, key: u32) {
    expr(l, "meta", |e| {
        e.be32(NFTA_META_DREG, NFT_REG_1);
        e.be32(NFTA_META_KEY, key);
    });
}

fn verdict(l: &mut Msg, code: u32) {
    expr(l, "immediate", |e| {
        e.be32(NFTA_IMMEDIATE_DREG, NFT_REG_VERDICT);
        e.nest(NFTA_IMMEDIATE_DATA, |d| {
            d.nest(NFTA_DATA_VERDICT, |v| v.be32(NFTA_VERDICT_CODE, code))
        });
    });
}

fn ifname(name: &str) -> [u8; 16] {
    let mut b = [0u8; 16];
    let n = name.len().min(15);
    b[..n].copy_from_slice(&name.as_bytes()[..n]);
    b
}

/// `ip saddr NET oifname != BR oifname != "GROUP*" masquerade` (`ip6
/// saddr` for `nfproto` IPv6: offset 8, 16 bytes).
fn masquerade(r: &Routed, nfproto: i32, mask: &[u8], net: &[u8]) -> Msg {
    let (offset, len) = if nfproto == libc::NFPROTO_IPV4 {
        (12, 4)
    } else {
        (8, 16)
    };
    rule("nat", &format!("pipework:{}", r.bridge), |l| {
        meta(l, NFT_META_NFPROTO);
        cmp(l, NFT_CMP_EQ, &[nfproto as u8]);
        expr(l, "payload", |e| {
            e.be32(NFTA_PAYLOAD_DREG, NFT_REG_1);
            e.be32(NFTA_PAYLOAD_BASE, NFT_PAYLOAD_NETWORK);
            e.be32(NFTA_PAYLOAD_OFFSET, offset);
            e.be32(NFTA_PAYLOAD_LEN, len);
        });
        expr(l, "bitwise", |e| {
            e.be32(NFTA_BITWISE_SREG, NFT_REG_1);
            e.be32(NFTA_BITWISE_DREG, NFT_REG_1);
            e.be32(NFTA_BITWISE_LEN, len);
            e.nest(NFTA_BITWISE_MASK, |d| d.attr(NFTA_DATA_VALUE, mask));
            e.nest(NFTA_BITWISE_XOR, |d| {
                d.attr(NFTA_DATA_VALUE, &vec![0; len as usize])
            });
        });
        cmp(l, NFT_CMP_EQ, net);
        meta(l, NFT_META_OIFNAME);
        cmp(l, NFT_CMP_NEQ, &ifname(&r.bridge));
        // oifname != "GROUP*": routed into another network (--allow-from)
        // keeps its source; only the way out to the underlay is rewritten.
        cmp(l, NFT_CMP_NEQ, r.group.as_bytes());
        expr(l, "masq", |_| {});
    })
}

/// The masquerade rules of one network: one per family it has.
fn masquerades(r: &Routed) -> Vec<Msg> {
    let v4 = r.subnet.map(|s| {
        masquerade(
            r,
            libc::NFPROTO_IPV4,
            &s.mask().octets(),
            &s.network().octets(),
        )
    });
    let v6 = r.subnet6.map(|s| {
        masquerade(
            r,
            libc::NFPROTO_IPV6,
            &s.mask().octets(),
            &s.network().octets(),
        )
    });
    v4.into_iter().chain(v6).collect()
}

/// Build or replace the table for exactly `nets`, in one transaction.
pub fn install(nets: &[Routed]) -> io::Result<()> {
    let mut b = vec![
        table_msg(NFT_MSG_NEWTABLE, NLM_F_CREATE),
        table_msg(NFT_MSG_DELTABLE, 0),
        table_msg(NFT_MSG_NEWTABLE, NLM_F_CREATE),
        chain("nat", NF_INET_POST_ROUTING, 100, "nat"),
        chain("isolate", NF_INET_FORWARD, 0, "filter"),
    ];
    b.extend(nets.iter().flat_map(masquerades));
    // Replies to what an allowed network started.
    b.push(rule("isolate", "", |l| {
        ct_est_rel(l);
        verdict(l, NF_ACCEPT);
    }));
    for r in nets {
        let c = format!("pipework:{}", r.bridge);
        for from in &r.allow_from {
            b.push(rule("isolate", &c, |l| {
                meta(l, NFT_META_IIFNAME);
                cmp(l, NFT_CMP_EQ, &ifname(from));
                meta(l, NFT_META_OIFNAME);
                cmp(l, NFT_CMP_EQ, &ifname(&r.bridge));
                verdict(l, NF_ACCEPT);
            }));
        }
    }
    for r in nets {
        b.push(rule("isolate", &format!("pipework:{}", r.bridge), |l| {
            meta(l, NFT_META_IIFNAME);
            cmp(l, NFT_CMP_EQ, &ifname(&r.bridge));
            meta(l, NFT_META_OIFNAME);
            // oifname "GROUP*": a prefix compare, as nft writes a wildcard.
            cmp(l, NFT_CMP_EQ, r.group.as_bytes());
            cmp(l, NFT_CMP_NEQ, &ifname(&r.bridge));
            verdict(l, NF_DROP);
        }));
    }
    Nl::open()?.batch_all(b)
}

/// Remove the table; whether it was there.
pub fn remove() -> io::Result<bool> {
    // Add-then-delete: one transaction that succeeds whether or not the
    // table exists; `present` tells which it was.
    let was = super::guard::table_present(TABLE)?;
    if was {
        Nl::open()?.batch_all(vec![
            table_msg(NFT_MSG_NEWTABLE, NLM_F_CREATE),
            table_msg(NFT_MSG_DELTABLE, 0),
        ])?;
    }
    Ok(was)
}

/// The accepts a native nftables forward chain with policy drop (a
/// firewalld host's) needs for `r`, the same four kinds as forward.rs
/// writes for iptables, each inserted at the chain's head:
/// `iifname BR oifname BR accept`, `iifname BR oifname != "GROUP*" accept`,
/// `oifname BR ct state established,related accept`,
/// `iifname FROM oifname BR accept` per --allow-from.
pub fn accepts_in(ch: &Chain, r: &Routed, comment: &str) -> Vec<Msg> {
    let head = |body: &dyn Fn(&mut Msg)| {
        let mut m = Msg::new(
            NFT_MSG_NEWRULE,
            NLM_F_REQUEST | NLM_F_CREATE | NLM_F_ACK,
            ch.family,
        );
        m.str(NFTA_RULE_TABLE, &ch.table);
        m.str(NFTA_RULE_CHAIN, &ch.name);
        m.nest(NFTA_RULE_EXPRESSIONS, |l| {
            body(l);
            verdict(l, NF_ACCEPT);
        });
        m.attr(NFTA_RULE_USERDATA, &udata_with_comment(comment));
        m
    };
    let br = ifname(&r.bridge);
    let mut out = vec![
        head(&|l| {
            meta(l, NFT_META_IIFNAME);
            cmp(l, NFT_CMP_EQ, &br);
            meta(l, NFT_META_OIFNAME);
            cmp(l, NFT_CMP_EQ, &br);
        }),
        head(&|l| {
            meta(l, NFT_META_IIFNAME);
            cmp(l, NFT_CMP_EQ, &br);
            meta(l, NFT_META_OIFNAME);
            cmp(l, NFT_CMP_NEQ, r.group.as_bytes());
        }),
        head(&|l| {
            meta(l, NFT_META_OIFNAME);
            cmp(l, NFT_CMP_EQ, &br);
            ct_est_rel(l);
        }),
    ];
    for from in &r.allow_from {
        let f = ifname(from);
        out.push(head(&|l| {
            meta(l, NFT_META_IIFNAME);
            cmp(l, NFT_CMP_EQ, &f);
            meta(l, NFT_META_OIFNAME);
            cmp(l, NFT_CMP_EQ, &br);
        }));
    }
    out
}

/// `ct state established,related` (the verdict follows).
fn ct_est_rel(l: &mut Msg) {
    expr(l, "ct", |e| {
        e.be32(NFTA_CT_DREG, NFT_REG_1);
        e.be32(NFTA_CT_KEY, NFT_CT_STATE);
    });
    expr(l, "bitwise", |e| {
        e.be32(NFTA_BITWISE_SREG, NFT_REG_1);
        e.be32(NFTA_BITWISE_DREG, NFT_REG_1);
        e.be32(NFTA_BITWISE_LEN, 4);
        e.nest(NFTA_BITWISE_MASK, |d| {
            d.attr(NFTA_DATA_VALUE, &CT_EST_REL.to_ne_bytes())
        });
        e.nest(NFTA_BITWISE_XOR, |d| d.attr(NFTA_DATA_VALUE, &[0; 4]));
    });
    cmp(l, NFT_CMP_NEQ, &[0; 4]);
}

/// Insert `msgs` in one transaction.
pub fn insert_all(msgs: Vec<Msg>) -> io::Result<()> {
    Nl::open()?.batch_all(msgs)
}
