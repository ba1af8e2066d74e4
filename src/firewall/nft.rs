//! nftables, spoken directly over nfnetlink: no `nft` binary needed.
//!
//! Why nftables at all: with bridge-nf-call-iptables=1 a bridged frame
//! walks every base chain on the inet/ip `forward` hook, not only the
//! iptables FORWARD chain. A host whose firewall is native nftables (the
//! firewalld shape: `table inet fw { chain forwarding { type filter hook
//! forward priority filter; policy drop; } }`) drops frames between two
//! ports of our bridge while `iptables -S` shows FORWARD ACCEPT.
//!
//! Why the rule goes into *that* chain: in nftables an accept ends only the
//! chain it is in; every other base chain on the hook still sees the frame,
//! and a drop anywhere is final. So a table of our own cannot help: the
//! dropping chain itself must accept the bridge's frames. We insert at its
//! head `iifname "BR" oifname "BR" accept comment "pipework:BR"`, byte for
//! byte what `nft insert rule … comment …` makes, so `nft list ruleset`
//! shows it plainly and the comment finds it again for removal.
//!
//! Why netlink and not `nft`: reading the chains is on the path of every
//! first attach to a bridge, and the tool must work where only the kernel
//! is there (a root without nftables installed, a minimal container host).
//! The handful of messages below is all we send: a chain dump, a rule dump
//! of one chain, and one rule added or deleted in a batch.
use netlink_sys::{Socket, protocols::NETLINK_NETFILTER};
use std::io;

pub(super) const NFNL_SUBSYS_NFTABLES: u16 = 10;
pub(super) const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
pub(super) const NFNL_MSG_BATCH_END: u16 = 0x11;
pub(super) const NFT_MSG_NEWCHAIN: u16 = 3;
pub(super) const NFT_MSG_GETCHAIN: u16 = 4;
pub(super) const NFT_MSG_NEWRULE: u16 = 6;
pub(super) const NFT_MSG_GETRULE: u16 = 7;
pub(super) const NFT_MSG_DELRULE: u16 = 8;

pub(super) const NLM_F_REQUEST: u16 = 0x1;
pub(super) const NLM_F_ACK: u16 = 0x4;
pub(super) const NLM_F_DUMP: u16 = 0x300;
pub(super) const NLM_F_CREATE: u16 = 0x400;
pub(super) const NLMSG_ERROR: u16 = 2;
pub(super) const NLMSG_DONE: u16 = 3;
pub(super) const NLA_F_NESTED: u16 = 0x8000;

pub(super) const NFTA_CHAIN_TABLE: u16 = 1;
pub(super) const NFTA_CHAIN_NAME: u16 = 3;
pub(super) const NFTA_CHAIN_HOOK: u16 = 4;
pub(super) const NFTA_CHAIN_POLICY: u16 = 5;
pub(super) const NFTA_HOOK_HOOKNUM: u16 = 1;
pub(super) const NFTA_RULE_TABLE: u16 = 1;
pub(super) const NFTA_RULE_CHAIN: u16 = 2;
pub(super) const NFTA_RULE_HANDLE: u16 = 3;
pub(super) const NFTA_RULE_EXPRESSIONS: u16 = 4;
pub(super) const NFTA_RULE_USERDATA: u16 = 7;
pub(super) const NFTA_LIST_ELEM: u16 = 1;
pub(super) const NFTA_EXPR_NAME: u16 = 1;
pub(super) const NFTA_EXPR_DATA: u16 = 2;

/// Families whose `forward` hook sees bridged IPv4 frames when
/// bridge-nf-call-iptables=1 (NFPROTO_INET, NFPROTO_IPV4).
pub(super) const INET: u8 = 1;
pub(super) const IPV4: u8 = 2;
/// NFPROTO_IPV6: only routed networks' IPv6 traffic meets these chains
/// here (`routed_forward_chains`), and ip6tables-nft's FORWARD is one.
pub(super) const IPV6: u8 = 10;
pub(super) const NF_INET_FORWARD: u32 = 2;
pub(super) const NF_DROP: u32 = 0;

/// A base chain on the forward hook.
#[derive(Debug, Clone, PartialEq)]
pub struct Chain {
    pub family: u8,
    pub table: String,
    pub name: String,
    pub drops: bool,
}

impl Chain {
    /// iptables-nft's own FORWARD chain: iptables reads and changes it
    /// (`Filter` in the parent module), and dockerd expects only
    /// iptables-made rules there, so we never write into it natively.
    pub fn is_iptables(&self) -> bool {
        self.family == IPV4 && self.table == "filter" && self.name == "FORWARD"
    }

    /// ip6tables-nft's FORWARD chain (Docker with `ip6tables: true`):
    /// ip6tables' own, as `is_iptables` is iptables'.
    pub fn is_ip6tables(&self) -> bool {
        self.family == IPV6 && self.table == "filter" && self.name == "FORWARD"
    }

    /// How `nft` names it: `inet fw forwarding`.
    pub fn spec(&self) -> String {
        let fam = match self.family {
            INET => "inet",
            IPV6 => "ip6",
            _ => "ip",
        };
        format!("{fam} {} {}", self.table, self.name)
    }
}

/// The rule's text as `nft` shows and takes it.
pub fn rule_text(bridge: &str, comment: &str) -> String {
    format!("iifname \"{bridge}\" oifname \"{bridge}\" accept comment \"{comment}\"")
}

/// Every inet/ip base chain on the forward hook, with whether its policy
/// is drop. Empty when the kernel has no nf_tables (nothing can drop then).
pub fn forward_chains() -> io::Result<Vec<Chain>> {
    chains_on_forward(&[INET, IPV4])
}

/// The same and the ip6 family's: routed IPv6 traffic walks those too.
pub fn routed_forward_chains() -> io::Result<Vec<Chain>> {
    chains_on_forward(&[INET, IPV4, IPV6])
}

fn chains_on_forward(families: &[u8]) -> io::Result<Vec<Chain>> {
    let mut nl = Nl::open()?;
    let req = Msg::new(NFT_MSG_GETCHAIN, NLM_F_REQUEST | NLM_F_DUMP, 0);
    let mut out = Vec::new();
    nl.dump(req, |family, ty, attrs| {
        if ty != NFT_MSG_NEWCHAIN || !families.contains(&family) {
            return;
        }
        let (mut table, mut name, mut hook, mut policy) = (None, None, None, None);
        for (t, v) in Attrs(attrs) {
            match t {
                NFTA_CHAIN_TABLE => table = cstr(v),
                NFTA_CHAIN_NAME => name = cstr(v),
                NFTA_CHAIN_POLICY => policy = be32(v),
                NFTA_CHAIN_HOOK => {
                    hook = Attrs(v)
                        .find(|(t, _)| *t == NFTA_HOOK_HOOKNUM)
                        .and_then(|(_, v)| be32(v))
                }
                _ => {}
            }
        }
        if let (Some(table), Some(name), Some(NF_INET_FORWARD)) = (table, name, hook) {
            out.push(Chain {
                family,
                table,
                name,
                drops: policy == Some(NF_DROP),
            });
        }
    })?;
    Ok(out)
}

/// How many rules the bridge family (ebtables-nft, `nft … bridge`) has,
/// in any table: `--tc-redirect` takes frames past all of them, so it is
/// refused while there are any (whether they name the bridge or not).
pub fn bridge_family_rules() -> io::Result<usize> {
    const NFPROTO_BRIDGE: u8 = 7;
    let mut nl = Nl::open()?;
    let req = Msg::new(NFT_MSG_GETRULE, NLM_F_REQUEST | NLM_F_DUMP, NFPROTO_BRIDGE);
    let mut n = 0;
    nl.dump(req, |family, ty, _| {
        if ty == NFT_MSG_NEWRULE && family == NFPROTO_BRIDGE {
            n += 1;
        }
    })?;
    Ok(n)
}

/// Handles and comments of the rules in `chain` that carry a comment
/// starting with `prefix` (ours: `pipework:`).
pub fn commented_rules(chain: &Chain, prefix: &str) -> io::Result<Vec<(u64, String)>> {
    Ok(rules_commented(chain, prefix)?
        .into_iter()
        .map(|(h, c, _)| (h, c))
        .collect())
}

/// The (iifname, oifname) each rule commented exactly `comment` in
/// `chain` requires, for the rules that require both to equal a name
/// (`iifname "A" oifname "B"`, nothing else compared): which of our
/// accepts in a native chain are there, not only how many.
pub fn interface_pairs(chain: &Chain, comment: &str) -> io::Result<Vec<(String, String)>> {
    Ok(rules_commented(chain, comment)?
        .into_iter()
        .filter(|(_, c, _)| c == comment)
        .filter_map(|(_, _, e)| iif_oif(&e))
        .collect())
}

/// Handle, comment and expressions of each rule in `chain` whose comment
/// starts with `prefix`.
fn rules_commented(chain: &Chain, prefix: &str) -> io::Result<Vec<(u64, String, Vec<u8>)>> {
    // A dump filtered to one chain: big rulesets stay cheap to read.
    let mut req = Msg::new(NFT_MSG_GETRULE, NLM_F_REQUEST | NLM_F_DUMP, chain.family);
    req.str(NFTA_RULE_TABLE, &chain.table);
    req.str(NFTA_RULE_CHAIN, &chain.name);
    let mut out = Vec::new();
    each_rule(req, |_, r| {
        if let (Some(h), Some(c)) = (r.handle, r.comment)
            && c.starts_with(prefix)
        {
            out.push((h, c, r.exprs));
        }
    })?;
    Ok(out)
}

/// One rule of a dump.
struct Rule {
    table: Option<String>,
    chain: Option<String>,
    handle: Option<u64>,
    comment: Option<String>,
    exprs: Vec<u8>,
}

/// Dump the rules `req` asks for, handing each to `f` with its family.
fn each_rule(req: Msg, mut f: impl FnMut(u8, Rule)) -> io::Result<()> {
    Nl::open()?.dump(req, |family, ty, attrs| {
        if ty != NFT_MSG_NEWRULE {
            return;
        }
        let mut r = Rule {
            table: None,
            chain: None,
            handle: None,
            comment: None,
            exprs: Vec::new(),
        };
        for (t, v) in Attrs(attrs) {
            match t {
                NFTA_RULE_TABLE => r.table = cstr(v),
                NFTA_RULE_CHAIN => r.chain = cstr(v),
                NFTA_RULE_HANDLE => r.handle = v.try_into().ok().map(u64::from_be_bytes),
                NFTA_RULE_USERDATA => r.comment = udata_comment(v),
                NFTA_RULE_EXPRESSIONS => r.exprs = v.to_vec(),
                _ => {}
            }
        }
        f(family, r)
    })
}

/// The chains (`inet fw forwarding`) of the inet, ip and ip6 families
/// holding a rule that is not ours (no `pipework:` comment) and compares
/// iifname or oifname equal to `ifname`: `--tc-redirect` would take
/// that interface's frames past it. iptables-nft's rules are among them
/// (iptables itself is asked first, and names them better).
pub fn foreign_rules_naming(ifname: &str) -> io::Result<Vec<String>> {
    let mut out = Vec::new();
    for family in [INET, IPV4, IPV6] {
        let req = Msg::new(NFT_MSG_GETRULE, NLM_F_REQUEST | NLM_F_DUMP, family);
        each_rule(req, |fam, r| {
            // iptables-nft keeps `-m comment` as an xt match, not userdata.
            let ours = r
                .comment
                .or_else(|| xt_comment(&r.exprs))
                .is_some_and(|c| c.starts_with("pipework:"));
            if fam != family || ours {
                return;
            }
            let names = meta_cmps(&r.exprs)
                .iter()
                .any(|(k, eq, v)| *eq && IFNAME_KEYS.contains(k) && v.as_deref() == Some(ifname));
            if names {
                let ch = Chain {
                    family,
                    table: r.table.unwrap_or_default(),
                    name: r.chain.unwrap_or_default(),
                    drops: false,
                };
                if !out.contains(&ch.spec()) {
                    out.push(ch.spec());
                }
            }
        })?;
    }
    Ok(out)
}

const IFNAME_KEYS: [Option<u32>; 2] = [Some(NFT_META_IIFNAME), Some(NFT_META_OIFNAME)];

/// The text of an iptables-nft rule's `-m comment` (an xt `match`
/// expression named `comment`, its info a NUL-padded string).
fn xt_comment(exprs: &[u8]) -> Option<String> {
    const NFTA_MATCH_NAME: u16 = 1;
    const NFTA_MATCH_INFO: u16 = 3;
    Attrs(exprs).find_map(|(_, elem)| {
        let named = |n: &str| {
            Attrs(elem).any(|(t, v)| t == NFTA_EXPR_NAME && cstr(v).as_deref() == Some(n))
        };
        let data = Attrs(elem).find(|(t, _)| *t == NFTA_EXPR_DATA)?.1;
        let is_comment =
            Attrs(data).any(|(t, v)| t == NFTA_MATCH_NAME && cstr(v).as_deref() == Some("comment"));
        (named("match") && is_comment)
            .then(|| Attrs(data).find(|(t, _)| *t == NFTA_MATCH_INFO))
            .flatten()
            .and_then(|(_, v)| cstr(v))
    })
}

/// Each `cmp` of a rule's expressions: the `meta` key loaded just before
/// it (if any), whether it compares for equality, and the value as a name.
fn meta_cmps(exprs: &[u8]) -> Vec<(Option<u32>, bool, Option<String>)> {
    let mut key = None;
    let mut out = Vec::new();
    for (_, elem) in Attrs(exprs) {
        let mut it = Attrs(elem);
        let name = it
            .find(|(t, _)| *t == NFTA_EXPR_NAME)
            .and_then(|(_, v)| cstr(v));
        let data = Attrs(elem)
            .find(|(t, _)| *t == NFTA_EXPR_DATA)
            .map_or(&[][..], |(_, v)| v);
        let get = |ty: u16| Attrs(data).find(|(t, _)| *t == ty).map(|(_, v)| v);
        match name.as_deref() {
            Some("meta") => key = get(NFTA_META_KEY).and_then(be32),
            Some("cmp") => {
                let eq = get(NFTA_CMP_OP).and_then(be32) == Some(NFT_CMP_EQ);
                let value = (get(NFTA_CMP_DATA).map(Attrs))
                    .and_then(|mut d| d.find(|(t, _)| *t == NFTA_DATA_VALUE))
                    .and_then(|(_, v)| cstr(v));
                out.push((key.take(), eq, value));
            }
            _ => {}
        }
    }
    out
}

/// The names a rule's expressions require of iifname and oifname (`meta`
/// loading the key, then `cmp eq`); None unless it compares exactly
/// those two, each for equality.
fn iif_oif(exprs: &[u8]) -> Option<(String, String)> {
    let (mut iif, mut oif) = (None, None);
    let cmps = meta_cmps(exprs);
    for (key, eq, value) in &cmps {
        match (key, eq) {
            (Some(NFT_META_IIFNAME), true) => iif = value.clone(),
            (Some(NFT_META_OIFNAME), true) => oif = value.clone(),
            _ => return None,
        }
    }
    (cmps.len() == 2).then_some(())?;
    Some((iif?, oif?))
}

/// Insert `iifname BR oifname BR accept comment "…"` at the head of `chain`.
pub fn insert_accept(chain: &Chain, bridge: &str, comment: &str) -> io::Result<()> {
    // NLM_F_CREATE without NLM_F_APPEND or a position: the kernel adds the
    // rule first in the chain, as `nft insert rule` does.
    let mut m = Msg::new(
        NFT_MSG_NEWRULE,
        NLM_F_REQUEST | NLM_F_CREATE | NLM_F_ACK,
        chain.family,
    );
    m.str(NFTA_RULE_TABLE, &chain.table);
    m.str(NFTA_RULE_CHAIN, &chain.name);
    m.nest(NFTA_RULE_EXPRESSIONS, |l| {
        // meta load iifname => reg 1; cmp eq reg 1 "BR" (IFNAMSIZ bytes)
        for key in [NFT_META_IIFNAME, NFT_META_OIFNAME] {
            expr(l, "meta", |e| {
                e.be32(NFTA_META_DREG, NFT_REG_1);
                e.be32(NFTA_META_KEY, key);
            });
            expr(l, "cmp", |e| {
                e.be32(NFTA_CMP_SREG, NFT_REG_1);
                e.be32(NFTA_CMP_OP, NFT_CMP_EQ);
                e.nest(NFTA_CMP_DATA, |d| {
                    d.attr(NFTA_DATA_VALUE, &ifname_bytes(bridge))
                });
            });
        }
        // immediate reg 0 accept
        expr(l, "immediate", |e| {
            e.be32(NFTA_IMMEDIATE_DREG, NFT_REG_VERDICT);
            e.nest(NFTA_IMMEDIATE_DATA, |d| {
                d.nest(NFTA_DATA_VERDICT, |v| v.be32(NFTA_VERDICT_CODE, NF_ACCEPT))
            });
        });
    });
    m.attr(NFTA_RULE_USERDATA, &udata_with_comment(comment));
    Nl::open()?.batch(m)
}

/// Delete the rule `handle` from `chain`.
pub fn delete(chain: &Chain, handle: u64) -> io::Result<()> {
    let mut m = Msg::new(NFT_MSG_DELRULE, NLM_F_REQUEST | NLM_F_ACK, chain.family);
    m.str(NFTA_RULE_TABLE, &chain.table);
    m.str(NFTA_RULE_CHAIN, &chain.name);
    m.attr(NFTA_RULE_HANDLE, &handle.to_be_bytes());
    Nl::open()?.batch(m)
}

pub(super) const NFTA_META_DREG: u16 = 1;
pub(super) const NFTA_META_KEY: u16 = 2;
pub(super) const NFT_META_IIFNAME: u32 = 6;
pub(super) const NFT_META_OIFNAME: u32 = 7;
pub(super) const NFTA_CMP_SREG: u16 = 1;
pub(super) const NFTA_CMP_OP: u16 = 2;
pub(super) const NFTA_CMP_DATA: u16 = 3;
pub(super) const NFT_CMP_EQ: u32 = 0;
pub(super) const NFTA_DATA_VALUE: u16 = 1;
pub(super) const NFTA_DATA_VERDICT: u16 = 2;
pub(super) const NFTA_VERDICT_CODE: u16 = 1;
pub(super) const NFTA_IMMEDIATE_DREG: u16 = 1;
pub(super) const NFTA_IMMEDIATE_DATA: u16 = 2;
pub(super) const NFT_REG_VERDICT: u32 = 0;
pub(super) const NFT_REG_1: u32 = 1;
pub(super) const NF_ACCEPT: u32 = 1;
/// libnftnl's rule userdata: TLVs of one byte type, one byte length.
pub(super) const NFTNL_UDATA_RULE_COMMENT: u8 = 0;

pub(super) fn expr(list: &mut Msg, name: &str, data: impl FnOnce(&mut Msg)) {
    list.nest(NFTA_LIST_ELEM, |e| {
        e.str(NFTA_EXPR_NAME, name);
        e.nest(NFTA_EXPR_DATA, data);
    });
}

/// An interface name as `nft` compares it: zero-padded to IFNAMSIZ.
fn ifname_bytes(name: &str) -> [u8; 16] {
    let mut b = [0u8; 16];
    let n = name.len().min(15);
    b[..n].copy_from_slice(&name.as_bytes()[..n]);
    b
}

pub(super) fn udata_with_comment(comment: &str) -> Vec<u8> {
    // The value keeps its NUL, as libnftnl writes it; the length is one
    // byte, and our comments ("pipework:" + an interface name) are short.
    let mut v = vec![NFTNL_UDATA_RULE_COMMENT, (comment.len() + 1) as u8];
    v.extend_from_slice(comment.as_bytes());
    v.push(0);
    v
}

fn udata_comment(mut u: &[u8]) -> Option<String> {
    while u.len() >= 2 {
        let (ty, len) = (u[0], u[1] as usize);
        let val = u.get(2..2 + len)?;
        if ty == NFTNL_UDATA_RULE_COMMENT {
            return cstr(val);
        }
        u = &u[2 + len..];
    }
    None
}

pub(super) fn cstr(v: &[u8]) -> Option<String> {
    let v = v.split(|b| *b == 0).next().unwrap_or(v);
    std::str::from_utf8(v).ok().map(str::to_string)
}

fn be32(v: &[u8]) -> Option<u32> {
    v.try_into().ok().map(u32::from_be_bytes)
}

/// One netlink message under construction: nlmsghdr, nfgenmsg, attributes.
pub(super) struct Msg(Vec<u8>);

impl Msg {
    pub(super) fn new(nft_type: u16, flags: u16, family: u8) -> Msg {
        Msg::raw((NFNL_SUBSYS_NFTABLES << 8) | nft_type, flags, family, 0)
    }

    fn raw(ty: u16, flags: u16, family: u8, res_id: u16) -> Msg {
        let mut b = Vec::with_capacity(256);
        b.extend_from_slice(&0u32.to_ne_bytes()); // length, set by finish
        b.extend_from_slice(&ty.to_ne_bytes());
        b.extend_from_slice(&flags.to_ne_bytes());
        b.extend_from_slice(&0u32.to_ne_bytes()); // seq, set by Nl
        b.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel's
        b.extend_from_slice(&[family, 0]); // nfgenmsg: family, version 0
        b.extend_from_slice(&res_id.to_be_bytes());
        Msg(b)
    }

    pub(super) fn attr(&mut self, ty: u16, data: &[u8]) {
        self.0
            .extend_from_slice(&((4 + data.len()) as u16).to_ne_bytes());
        self.0.extend_from_slice(&ty.to_ne_bytes());
        self.0.extend_from_slice(data);
        self.pad();
    }

    pub(super) fn str(&mut self, ty: u16, s: &str) {
        let mut v = s.as_bytes().to_vec();
        v.push(0);
        self.attr(ty, &v);
    }

    pub(super) fn be32(&mut self, ty: u16, v: u32) {
        self.attr(ty, &v.to_be_bytes());
    }

    pub(super) fn nest(&mut self, ty: u16, inner: impl FnOnce(&mut Msg)) {
        let start = self.0.len();
        self.0.extend_from_slice(&[0; 4]);
        // The nested attributes are built in place, after the header.
        let mut sub = Msg(std::mem::take(&mut self.0));
        inner(&mut sub);
        self.0 = sub.0;
        let len = (self.0.len() - start) as u16;
        self.0[start..start + 2].copy_from_slice(&len.to_ne_bytes());
        self.0[start + 2..start + 4].copy_from_slice(&(ty | NLA_F_NESTED).to_ne_bytes());
    }

    fn pad(&mut self) {
        while !self.0.len().is_multiple_of(4) {
            self.0.push(0);
        }
    }

    fn finish(mut self, seq: u32) -> Vec<u8> {
        let len = self.0.len() as u32;
        self.0[0..4].copy_from_slice(&len.to_ne_bytes());
        self.0[8..12].copy_from_slice(&seq.to_ne_bytes());
        self.0
    }
}

/// Attributes of a netlink payload, as (type without flags, value).
pub(super) struct Attrs<'a>(pub(super) &'a [u8]);

impl<'a> Iterator for Attrs<'a> {
    type Item = (u16, &'a [u8]);
    fn next(&mut self) -> Option<Self::Item> {
        let b = self.0;
        if b.len() < 4 {
            return None;
        }
        let len = u16::from_ne_bytes([b[0], b[1]]) as usize;
        let ty = u16::from_ne_bytes([b[2], b[3]]) & 0x3fff;
        if len < 4 || len > b.len() {
            return None;
        }
        self.0 = &b[((len + 3) & !3).min(b.len())..];
        Some((ty, &b[4..len]))
    }
}

/// One message of a reply: (nlmsg type, seq, family, attributes). The
/// full type, so NLMSG_DONE (3) is not NFT_MSG_NEWCHAIN (0x0a03); the
/// "attributes" of NLMSG_ERROR are its errno (negative, native).
type Reply = (u16, u32, u8, Vec<u8>);

pub(super) struct Nl {
    sock: Socket,
    seq: u32,
}

impl Nl {
    pub(super) fn open() -> io::Result<Nl> {
        let sock = crate::netlink::raw::socket(NETLINK_NETFILTER)?;
        Ok(Nl { sock, seq: 1 })
    }

    /// The messages of one reply datagram.
    fn read(&self) -> io::Result<Vec<Reply>> {
        let (buf, _) = self.sock.recv_from_full()?;
        let mut out = Vec::new();
        let mut b = &buf[..];
        while b.len() >= 16 {
            let len = u32::from_ne_bytes(b[0..4].try_into().unwrap_or_default()) as usize;
            if len < 16 || len > b.len() {
                break;
            }
            let ty = u16::from_ne_bytes([b[4], b[5]]);
            let seq = u32::from_ne_bytes(b[8..12].try_into().unwrap_or_default());
            let body = &b[16..len];
            match ty {
                NLMSG_ERROR | NLMSG_DONE => out.push((ty, seq, 0, body.to_vec())),
                _ if body.len() >= 4 => out.push((ty, seq, body[0], body[4..].to_vec())),
                _ => {}
            }
            b = &b[((len + 3) & !3).min(b.len())..];
        }
        Ok(out)
    }

    pub(super) fn dump(
        &mut self,
        req: Msg,
        mut each: impl FnMut(u8, u16, &[u8]),
    ) -> io::Result<()> {
        let seq = self.next_seq();
        self.sock.send(&req.finish(seq), 0)?;
        loop {
            for (ty, s, family, body) in self.read()? {
                if s != seq {
                    continue;
                }
                match ty {
                    NLMSG_DONE => return Ok(()),
                    NLMSG_ERROR => return errno(&body).map_or(Ok(()), Err),
                    _ if ty >> 8 == NFNL_SUBSYS_NFTABLES => each(family, ty & 0xff, &body),
                    _ => {}
                }
            }
        }
    }

    /// One change in its own transaction, waiting for the kernel's verdict.
    fn batch(&mut self, m: Msg) -> io::Result<()> {
        self.batch_all(vec![m])
    }

    /// Several changes in one transaction: all of them or none. Each
    /// message must ask for an ack (NLM_F_ACK); the last ack, or the
    /// first error, is the verdict.
    pub(super) fn batch_all(&mut self, msgs: Vec<Msg>) -> io::Result<()> {
        let begin = Msg::raw(NFNL_MSG_BATCH_BEGIN, NLM_F_REQUEST, 0, NFNL_SUBSYS_NFTABLES);
        let end = Msg::raw(NFNL_MSG_BATCH_END, NLM_F_REQUEST, 0, NFNL_SUBSYS_NFTABLES);
        let s0 = self.next_seq();
        let mut buf = begin.finish(s0);
        let mut last = s0;
        for m in msgs {
            last = self.next_seq();
            buf.extend(m.finish(last));
        }
        let s2 = self.next_seq();
        buf.extend(end.finish(s2));
        self.sock.send(&buf, 0)?;
        loop {
            for (ty, s, _, body) in self.read()? {
                if ty == NLMSG_ERROR && (s0..=s2).contains(&s) {
                    // An error on any part of the batch, or our ack.
                    match errno(&body) {
                        Some(e) => return Err(e),
                        None if s == last => return Ok(()),
                        None => {}
                    }
                }
            }
        }
    }

    fn next_seq(&mut self) -> u32 {
        self.seq += 1;
        self.seq
    }
}

/// The error an NLMSG_ERROR carries; None for an ack (errno 0).
fn errno(body: &[u8]) -> Option<io::Error> {
    let e = i32::from_ne_bytes(body.get(0..4)?.try_into().ok()?);
    (e != 0).then(|| io::Error::from_raw_os_error(-e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comment_round_trips_through_userdata() {
        let u = udata_with_comment("pipework:br1");
        assert_eq!(u[..2], [0, 13]);
        assert_eq!(udata_comment(&u).as_deref(), Some("pipework:br1"));
        // Another TLV first (libnftnl may add more types later).
        let mut two = vec![7, 2, 1, 2];
        two.extend(&u);
        assert_eq!(udata_comment(&two).as_deref(), Some("pipework:br1"));
        assert_eq!(udata_comment(&[0, 40, b'x']), None, "truncated");
    }

    /// The expressions of `insert_accept`'s rule (iif and oif equal)
    /// and of an egress-like one (oif compared for inequality).
    fn exprs(op: u32) -> Vec<u8> {
        let mut m = Msg(Vec::new());
        for (key, op, name) in [
            (NFT_META_IIFNAME, NFT_CMP_EQ, "pw-a"),
            (NFT_META_OIFNAME, op, "pw-b"),
        ] {
            expr(&mut m, "meta", |e| {
                e.be32(NFTA_META_DREG, NFT_REG_1);
                e.be32(NFTA_META_KEY, key);
            });
            expr(&mut m, "cmp", |e| {
                e.be32(NFTA_CMP_SREG, NFT_REG_1);
                e.be32(NFTA_CMP_OP, op);
                e.nest(NFTA_CMP_DATA, |d| {
                    d.attr(NFTA_DATA_VALUE, &ifname_bytes(name))
                });
            });
        }
        m.0
    }

    #[test]
    fn interface_pairs_are_read_from_expressions() {
        assert_eq!(
            iif_oif(&exprs(NFT_CMP_EQ)),
            Some(("pw-a".into(), "pw-b".into()))
        );
        assert_eq!(iif_oif(&exprs(1)), None, "oifname != is no pair");
        assert_eq!(iif_oif(&[]), None);
    }

    #[test]
    fn nested_attributes_carry_their_length_and_flag() {
        let mut m = Msg::new(NFT_MSG_NEWRULE, NLM_F_REQUEST, INET);
        m.nest(NFTA_RULE_EXPRESSIONS, |l| {
            expr(l, "meta", |e| e.be32(NFTA_META_KEY, NFT_META_IIFNAME))
        });
        let b = m.finish(9);
        assert_eq!(b.len() % 4, 0);
        assert_eq!(
            u32::from_ne_bytes(b[0..4].try_into().unwrap()) as usize,
            b.len()
        );
        let (ty, list) = Attrs(&b[20..]).next().expect("expressions");
        assert_eq!(ty, NFTA_RULE_EXPRESSIONS);
        let (_, elem) = Attrs(list).next().expect("element");
        let attrs: Vec<_> = Attrs(elem).collect();
        assert_eq!(attrs[0], (NFTA_EXPR_NAME, &b"meta\0"[..]));
        let (_, data) = attrs[1];
        assert_eq!(
            Attrs(data).next(),
            Some((NFTA_META_KEY, &NFT_META_IIFNAME.to_be_bytes()[..]))
        );
    }

    #[test]
    fn chains_are_named_as_nft_names_them() {
        let c = Chain {
            family: INET,
            table: "fw".into(),
            name: "forwarding".into(),
            drops: true,
        };
        assert_eq!(c.spec(), "inet fw forwarding");
        assert!(!c.is_iptables());
        let ipt = Chain {
            family: IPV4,
            table: "filter".into(),
            name: "FORWARD".into(),
            drops: true,
        };
        assert!(ipt.is_iptables());
        let ip6t = Chain {
            family: IPV6,
            ..ipt.clone()
        };
        assert!(ip6t.is_ip6tables() && !ip6t.is_iptables() && !ipt.is_ip6tables());
        assert_eq!(ip6t.spec(), "ip6 filter FORWARD");
        assert_eq!(ifname_bytes("br1")[..4], *b"br1\0");
    }
}
