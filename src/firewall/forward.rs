//! Routed networks (the overlay's anycast gateway) on a host whose
//! iptables FORWARD drops: dockerd's policy, with its DOCKER-USER chain.
//! Our `inet pipework_egress` table cannot help there: an nftables accept
//! ends only its own chain, and iptables' FORWARD still drops. So, as for
//! a plain bridge (parent module), the dropping chain gets our accepts,
//! all commented `pipework-egress:BR` (another prefix than the bridge
//! rule's, so neither's bookkeeping mistakes the other's for its own):
//!
//! ```text
//! -I DOCKER-USER -i ov-a -o ov-a -j ACCEPT          (within: bridged, cross-host)
//! -I DOCKER-USER -i ov-a ! -o ov-+ -j ACCEPT        (out of the overlay)
//! -I DOCKER-USER -o ov-a -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
//! -I DOCKER-USER -i ov-b -o ov-a -j ACCEPT          (a --allow-from b)
//! ```
//!
//! A native nftables forward chain whose policy drops (firewalld's) gets
//! the same four kinds at its head, over nfnetlink (egress::accepts_in).
//!
//! (`ov-` is the overlay's naming, given as `Routed::group`.)
//! None opens ov-a to ov-b by itself (`! -o ov-+`); the egress table's
//! isolation drop stays final besides. The whole set is reconciled from
//! one `iptables -S`: what the networks want is added, any other rule of
//! ours (a network gone, a chain that changed when dockerd started, the
//! leftovers of a killed agent) is deleted by its own listed line.
//!
//! IPv6 alike: Docker with `ip6tables: true` (its default since 27) sets
//! ip6tables' FORWARD to DROP with its own DOCKER-USER, so the networks
//! with IPv6 get the same rules there, reconciled from one `ip6tables
//! -S`; a native chain of family ip6 that drops gets them too.
use super::notrack::Family;
use super::{Filter, Routed, egress, nft};

pub const PREFIX: &str = "pipework-egress:";

/// Interfaces of routed networks (their group prefix, given by the
/// subsystem), as iptables writes a wildcard.
fn wildcard(r: &Routed) -> String {
    format!("{}+", r.group)
}

fn comment(bridge: &str) -> String {
    format!("{PREFIX}{bridge}")
}

/// The rules (arguments after the chain) that `nets` want.
pub fn wanted(nets: &[Routed]) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let tail = |b: &str| -> Vec<String> {
        ["-m", "comment", "--comment", &comment(b), "-j", "ACCEPT"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    };
    let words = |w: &[&str]| -> Vec<String> { w.iter().map(|s| s.to_string()).collect() };
    for r in nets {
        let b = r.bridge.as_str();
        out.push(within(r));
        let mut egress = words(&["-i", b, "!", "-o", &wildcard(r)]);
        egress.extend(tail(b));
        out.push(egress);
        let mut replies = words(&[
            "-o",
            b,
            "-m",
            "conntrack",
            "--ctstate",
            "RELATED,ESTABLISHED",
        ]);
        replies.extend(tail(b));
        out.push(replies);
        for from in &r.allow_from {
            let mut allowed = words(&["-i", from, "-o", b]);
            allowed.extend(tail(b));
            out.push(allowed);
        }
    }
    out
}

/// The accept within `r` (`-i BR -o BR`): all that traffic between two
/// of its endpoints needs, on one host or across (bridged, then VXLAN).
fn within(r: &Routed) -> Vec<String> {
    let b = r.bridge.as_str();
    [
        "-i",
        b,
        "-o",
        b,
        "-m",
        "comment",
        "--comment",
        &comment(b),
        "-j",
        "ACCEPT",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// Where the accepts go: DOCKER-USER when dockerd made it (FORWARD jumps
/// there first), else FORWARD when its policy drops; None: nothing drops.
fn chain(f: &Filter) -> Option<&'static str> {
    match f.chain() {
        "DOCKER-USER" => Some("DOCKER-USER"),
        c if f.forward_drops() => Some(c),
        _ => None,
    }
}

/// Our rules in the listing, as argument lists (`-A CHAIN …`, quotes off).
fn ours(f: &Filter) -> Vec<Vec<String>> {
    f.0.lines()
        .filter(|l| l.starts_with("-A ") && l.contains(PREFIX))
        .map(|l| l.split_whitespace().map(|w| w.replace('"', "")).collect())
        .collect()
}

fn exec(fam: Family, op: &str, rule: &[String]) -> bool {
    let mut args = vec![op];
    args.extend(rule.iter().map(String::as_str));
    let out = match fam {
        Family::V4 => super::iptables(&args),
        Family::V6 => super::ip6tables(&args),
    };
    out.is_some_and(|o| o.status.success())
}

/// The networks whose traffic meets this family's chains: IPv6 only
/// where the network has it; IPv4 as before, every network.
fn of_family(fam: Family, nets: &[Routed]) -> Vec<Routed> {
    (nets.iter())
        .filter(|r| fam == Family::V4 || r.subnet6.is_some())
        .cloned()
        .collect()
}

/// What one reconcile changed, for the agent's log.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Changes {
    pub added: Vec<String>,
    pub removed: Vec<String>,
}

/// A listing, and the rules (`-A CHAIN …` as argument lists) wanted in it.
type Plan = (Filter, Vec<Vec<String>>);

/// One family's listing and the rules (`-A CHAIN …`) `nets` want in it
/// (none when nothing drops, or no network of `nets` has the family).
/// None: no tool to list with, and nothing that needs one. Err: the
/// tool cannot be run while its FORWARD (read from the kernel) drops.
fn plan(fam: Family, nets: &[Routed]) -> Result<Option<Plan>, String> {
    let f = match Filter::probe_in(fam) {
        Ok(f) => f,
        // No iptables and nothing of ours to keep: nothing to do unless
        // its FORWARD (read from the kernel) drops.
        Err(_) if nets.is_empty() || !super::xtables_forward_drops(fam) => return Ok(None),
        Err(why) => return Err(why),
    };
    let want: Vec<Vec<String>> = match chain(&f) {
        Some(c) if !nets.is_empty() => wanted(nets)
            .into_iter()
            .map(|r| {
                let mut v = vec!["-A".to_string(), c.to_string()];
                v.extend(r);
                v
            })
            .collect(),
        _ => Vec::new(),
    };
    Ok(Some((f, want)))
}

/// Make our rules in iptables (V6: ip6tables) exactly what `nets` want
/// on this host (`plan`). Err: the tool cannot be run or refused a rule
/// we need (the caller retries at its next check).
pub fn reconcile(fam: Family, nets: &[Routed]) -> Result<Changes, String> {
    let nets = of_family(fam, nets);
    let tool = fam.tool();
    let Some((f, want)) = plan(fam, &nets)? else {
        return Ok(Changes::default());
    };
    let have = ours(&f);
    let mut ch = Changes::default();
    // Not wanted, or a second copy of a wanted one.
    let extra = have
        .iter()
        .enumerate()
        .filter(|(i, r)| !want.contains(r) || have[..*i].contains(r))
        .map(|(_, r)| r);
    for r in extra {
        let mut d = r.clone();
        d[0] = "-D".into();
        // The rule's own listed line deletes it; a rule we could not
        // delete is reported and tried again at the next check.
        if !exec(fam, "-D", &d[1..]) {
            return Err(format!("`{tool} -D {}` failed", d[1..].join(" ")));
        }
        ch.removed.push(r[1..].join(" "));
    }
    for r in want.iter().filter(|r| !have.contains(r)) {
        if !exec(fam, "-I", &r[1..]) {
            return Err(format!(
                "`{tool} -I {}` failed: add it by hand, or accept `-i {}` in {} yourself",
                r[1..].join(" "),
                nets.first().map(wildcard).unwrap_or_default(),
                r[1]
            ));
        }
        ch.added.push(r[1..].join(" "));
    }
    Ok(ch)
}

/// The same in native nftables forward chains (never iptables' or
/// ip6tables' own FORWARD: they write those). A chain of family ip6
/// sees only IPv6, so only the networks with IPv6 go there. A network's
/// rules are re-made whole when their count is off or `force` (the
/// networks changed: an --allow-from may differ at the same count); ours
/// in a chain that no longer drops, or for a network not wanted, are
/// deleted.
pub fn reconcile_nft(nets: &[Routed], force: bool) -> Result<Changes, String> {
    let chains = nft::routed_forward_chains().map_err(|e| format!("nftables chains: {e}"))?;
    let mut ch = Changes::default();
    for c in native(&chains) {
        let spec = crate::untrusted::display(&c.spec()).into_owned();
        let have = nft::commented_rules(c, PREFIX).map_err(|e| format!("{spec}: {e}"))?;
        let wanted = wanted_in(c, nets);
        for (h, x) in &have {
            let keep = wanted.iter().any(|r| *x == comment(&r.bridge));
            if !keep {
                nft::delete(c, *h).map_err(|e| format!("{spec}: deleting {x}: {e}"))?;
                ch.removed.push(format!("nft rule {spec} comment {x}"));
            }
        }
        for r in wanted {
            let cm = comment(&r.bridge);
            let mine: Vec<u64> = (have.iter().filter(|(_, x)| *x == cm))
                .map(|(h, _)| *h)
                .collect();
            if !force && whole(mine.len(), r) {
                continue;
            }
            for h in mine {
                nft::delete(c, h).map_err(|e| format!("{spec}: deleting {cm}: {e}"))?;
            }
            egress::insert_all(egress::accepts_in(c, r, &cm)).map_err(|e| {
                format!(
                    "{spec}: inserting our accepts ({e}): run `nft insert rule {spec} iifname \"{b}\" accept` by hand",
                    b = r.bridge
                )
            })?;
            ch.added.push(format!("nft rules in {spec} comment {cm}"));
        }
    }
    Ok(ch)
}

/// Native nftables forward chains: every one but iptables' and
/// ip6tables' own FORWARD (they write those).
fn native(chains: &[nft::Chain]) -> impl Iterator<Item = &nft::Chain> {
    (chains.iter()).filter(|c| !c.is_iptables() && !c.is_ip6tables())
}

/// The networks of `nets` that native chain `c` must accept: all of
/// them where it drops, only those with IPv6 in a chain of family ip6
/// (it sees only IPv6), none where it does not drop.
fn wanted_in<'a>(c: &nft::Chain, nets: &'a [Routed]) -> Vec<&'a Routed> {
    let six = c.family == nft::IPV6;
    (nets.iter())
        .filter(|r| c.drops && (!six || r.subnet6.is_some()))
        .collect()
}

/// Whether `n` rules of ours are `r`'s whole set in a native chain
/// (`egress::accepts_in`: three, and one per --allow-from).
fn whole(n: usize, r: &Routed) -> bool {
    n == 3 + r.allow_from.len()
}

/// What routed network `r` lacks where a chain drops `fam`'s traffic.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Missing {
    /// The accept traffic between two endpoints of `r` needs (`within`),
    /// where `reconcile` would add it: the command that adds it.
    pub rules: Vec<String>,
    /// Native chains (as `nft` names them) that drop without that accept
    /// of ours (`reconcile_nft` re-makes our set there).
    pub chains: Vec<String>,
    /// Its other accepts (egress, replies, --allow-from) missing where
    /// they would be added: iptables commands, or native chains lacking
    /// some. Traffic between its endpoints does not need them.
    pub others: Vec<String>,
    /// The family's FORWARD drops (the kernel says) and its tool cannot
    /// list it, so our accepts there are unknown: why.
    pub unlisted: Option<String>,
    /// The comment our accepts for `r` carry.
    pub comment: String,
}

/// Read only (for doctor): the same decisions as `reconcile` and
/// `reconcile_nft`, for one network and one family, split by what
/// traffic between its endpoints needs. Err: nftables cannot be read.
pub fn missing(fam: Family, r: &Routed) -> Result<Missing, String> {
    let nets = of_family(fam, std::slice::from_ref(r));
    let mut out = Missing {
        comment: comment(&r.bridge),
        ..Missing::default()
    };
    match plan(fam, &nets) {
        // Only where FORWARD drops: a DOCKER-USER chain alone (policy
        // accept) drops nothing, though the agent keeps its accepts there.
        Ok(Some((f, want))) if f.forward_drops() => {
            let have = ours(&f);
            let path = within(r);
            for w in want.iter().filter(|w| !have.contains(w)) {
                let cmd = format!("{} -I {}", fam.tool(), w[1..].join(" "));
                if w[2..] == path[..] {
                    out.rules.push(cmd);
                } else {
                    out.others.push(cmd);
                }
            }
        }
        Ok(_) => {}
        Err(why) => {
            out.unlisted = Some(format!(
                "{}'s FORWARD drops (the kernel says) and {why}",
                fam.tool()
            ))
        }
    }
    let chains = nft::routed_forward_chains().map_err(|e| format!("nftables chains: {e}"))?;
    // An ip chain sees no IPv6, an ip6 chain no IPv4.
    let other = match fam {
        Family::V4 => nft::IPV6,
        Family::V6 => nft::IPV4,
    };
    let cm = comment(&r.bridge);
    for c in native(&chains).filter(|c| c.family != other) {
        if wanted_in(c, &nets).is_empty() {
            continue;
        }
        let spec = crate::untrusted::display(&c.spec()).into_owned();
        let have = nft::commented_rules(c, &cm).map_err(|e| format!("{spec}: {e}"))?;
        let n = have.iter().filter(|(_, x)| *x == cm).count();
        let pairs = nft::interface_pairs(c, &cm).map_err(|e| format!("{spec}: {e}"))?;
        let br = &r.bridge;
        if !pairs.iter().any(|(i, o)| i == br && o == br) {
            out.chains.push(spec);
        } else if !whole(n, r) {
            out.others
                .push(format!("nftables chain `{spec}` lacks some of ours"));
        }
    }
    Ok(out)
}

/// Our rules in one family's listing (none when it cannot be listed).
fn ours_in(fam: Family) -> Vec<Vec<String>> {
    Filter::probe_in(fam).map(|f| ours(&f)).unwrap_or_default()
}

/// Bridges named by our rules, iptables', ip6tables' and nftables' (for gc).
pub fn bridges() -> Vec<String> {
    let mut names: Vec<String> = (Family::ALL.iter())
        .flat_map(|&fam| ours_in(fam))
        .filter_map(|r| {
            r.iter()
                .find_map(|w| w.strip_prefix(PREFIX))
                .map(str::to_string)
        })
        .collect();
    for c in nft::routed_forward_chains().unwrap_or_default() {
        for (_, x) in nft::commented_rules(&c, PREFIX).unwrap_or_default() {
            names.extend(x.strip_prefix(PREFIX).map(str::to_string));
        }
    }
    let mut out: Vec<String> = Vec::new();
    for b in names {
        if crate::request::check_ifname(&b).is_ok() && !out.contains(&b) {
            out.push(b);
        }
    }
    out
}

/// Delete our rules for the bridges `gone` says are unneeded; how many.
pub fn remove_where(gone: impl Fn(&str) -> bool) -> usize {
    let mut n = 0;
    for fam in Family::ALL {
        for r in ours_in(fam) {
            let b = r.iter().find_map(|w| w.strip_prefix(PREFIX));
            if b.is_some_and(&gone) && exec(fam, "-D", &r[1..]) {
                n += 1;
            }
        }
    }
    for c in nft::routed_forward_chains().unwrap_or_default() {
        for (h, x) in nft::commented_rules(&c, PREFIX).unwrap_or_default() {
            if x.strip_prefix(PREFIX).is_some_and(&gone) && nft::delete(&c, h).is_ok() {
                n += 1;
            }
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(b: &str, from: &[&str]) -> Routed {
        Routed {
            bridge: b.into(),
            group: "rt-".into(),
            subnet: Some("10.40.0.0/24".parse().expect("subnet")),
            subnet6: None,
            allow_from: from.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn rules_as_iptables_lists_them_and_none_opens_another_network() {
        let want = wanted(&[net("rt-a", &["rt-b"])]);
        let lines: Vec<String> = want.iter().map(|r| r.join(" ")).collect();
        assert_eq!(
            lines,
            [
                "-i rt-a -o rt-a -m comment --comment pipework-egress:rt-a -j ACCEPT",
                "-i rt-a ! -o rt-+ -m comment --comment pipework-egress:rt-a -j ACCEPT",
                "-o rt-a -m conntrack --ctstate RELATED,ESTABLISHED -m comment --comment pipework-egress:rt-a -j ACCEPT",
                "-i rt-b -o rt-a -m comment --comment pipework-egress:rt-a -j ACCEPT",
            ]
        );
        // Only the --allow-from rule lets rt-b in; nothing lets rt-a out
        // to another rt-* bridge.
        for l in &lines {
            assert!(!l.contains("-i rt-a -o rt-b"), "{l}");
        }
        assert_eq!(wanted(&[net("rt-c", &[])]).len(), 3);
    }

    #[test]
    fn ip6tables_gets_only_the_networks_with_ipv6() {
        let mut dual = net("rt-d", &[]);
        dual.subnet6 = Some("fd40::/64".parse().expect("subnet6"));
        let mut six = dual.clone();
        six.bridge = "rt-s".into();
        six.subnet = None;
        let nets = [net("rt-a", &[]), dual.clone(), six.clone()];
        assert_eq!(of_family(Family::V6, &nets), [dual, six]);
        assert_eq!(of_family(Family::V4, &nets).len(), 3);
    }

    #[test]
    fn our_rules_read_back_from_a_listing() {
        let f = Filter(
            "-P FORWARD DROP\n-N DOCKER-USER\n\
             -A DOCKER-USER -i rt-a -o rt-a -m comment --comment \"pipework-egress:rt-a\" -j ACCEPT\n\
             -A DOCKER-USER -i br1 -o br1 -m comment --comment \"pipework:br1\" -j ACCEPT\n\
             -A DOCKER-USER -j RETURN\n"
                .into(),
        );
        let o = ours(&f);
        assert_eq!(o.len(), 1);
        assert_eq!(
            o[0][1..].join(" "),
            "DOCKER-USER -i rt-a -o rt-a -m comment --comment pipework-egress:rt-a -j ACCEPT"
        );
        assert_eq!(chain(&f), Some("DOCKER-USER"));
        // The bridge rule's bookkeeping does not take ours for its own.
        assert_eq!(f.bridges(), vec!["br1".to_string()]);
        assert_eq!(chain(&Filter("-P FORWARD ACCEPT\n".into())), None);
        assert_eq!(chain(&Filter("-P FORWARD DROP\n".into())), Some("FORWARD"));
    }
}
