//! Docker hosts: dockerd sets the FORWARD policy to DROP and turns on
//! bridge-nf-call-iptables, so frames between two ports of a bridge it does
//! not know about are dropped (pipework#211). We add the narrowest rule that
//! fixes it — accept in and out of that one bridge — tagged with a comment
//! so it can be listed and removed when the bridge's last attachment goes.
//!
//! This is the one place we run a program: iptables' rule format has no
//! stable kernel API of its own, and a host where dockerd made the problem
//! has iptables (dockerd needs it). Never through a shell.
//!
//! The same drop comes from native nftables (a firewalld host's forward
//! chain with policy drop): that chain gets the same accept rule through
//! nftables' netlink, what `nft` speaks (nft.rs; no binary needed). When
//! frames would be dropped and pipework cannot add its rule (no iptables in
//! this root, iptables failing, the kernel refusing), attach fails in one
//! line that names the fix rather than leave a network that silently drops
//! everything.
use crate::error::{Error, Result};
use crate::netlink::{Journal, Link, Net};
use std::process::{Command, Stdio};

mod egress;
mod forward;
mod guard;
mod legacy;
mod nft;
mod notrack;

/// How many lines of an `iptables -S` listing are our rule for `bridge`:
/// they start with `head`, carry our comment (quoted or not, as iptables
/// prints it) and end with `target`. The one matcher for the accept rule
/// and the notrack rule.
fn count_ours(listing: &str, head: &str, bridge: &str, target: &str) -> usize {
    let c = comment(bridge);
    let (quoted, bare) = (format!("--comment \"{c}\" "), format!("--comment {c} "));
    listing
        .lines()
        .filter(|l| {
            l.starts_with(head)
                && (l.contains(&quoted) || l.contains(&bare))
                && l.trim_end().ends_with(target)
        })
        .count()
}

fn comment(bridge: &str) -> String {
    format!("pipework:{bridge}")
}

/// iptables, looked up once in its usual homes: a bare name makes
/// `Command` try every PATH directory first, an execve each.
fn iptables_path() -> &'static str {
    static P: std::sync::OnceLock<&'static str> = std::sync::OnceLock::new();
    P.get_or_init(|| {
        [
            "/usr/sbin/iptables",
            "/sbin/iptables",
            "/usr/local/sbin/iptables",
        ]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .unwrap_or("iptables")
    })
}

fn iptables(args: &[&str]) -> Option<std::process::Output> {
    iptables_output(args).ok()
}

fn iptables_output(args: &[&str]) -> std::io::Result<std::process::Output> {
    xtables(iptables_path(), args)
}

/// ip6tables, for the IPv6 notrack rule (notrack.rs) and routed
/// networks' IPv6 accepts (forward.rs): found next to iptables, the same
/// package installs both.
fn ip6tables(args: &[&str]) -> Option<std::process::Output> {
    ip6tables_output(args).ok()
}

fn ip6tables_output(args: &[&str]) -> std::io::Result<std::process::Output> {
    let p = iptables_path();
    let p6 = match p.strip_suffix("iptables") {
        Some(dir) => format!("{dir}ip6tables"),
        None => "ip6tables".to_string(),
    };
    xtables(&p6, args)
}

fn xtables(path: &str, args: &[&str]) -> std::io::Result<std::process::Output> {
    Command::new(path)
        .arg("-w")
        .args(args)
        .stdin(Stdio::null())
        .output()
}

fn first_or(line: &str, status: std::process::ExitStatus) -> String {
    if line.is_empty() {
        status.to_string()
    } else {
        crate::untrusted::display(line).into_owned()
    }
}

/// `iptables -t TABLE -S` (ip6tables for V6), or why there is none: with
/// `true` when that means no rules can be there (no binary, or the
/// kernel has no such table), `false` when they could not be read.
fn list_table(fam: notrack::Family, table: &str) -> std::result::Result<String, (bool, String)> {
    let tool = fam.tool();
    let args = ["-t", table, "-S"];
    let out = match fam {
        notrack::Family::V4 => iptables_output(&args),
        notrack::Family::V6 => ip6tables_output(&args),
    };
    match out {
        Ok(o) if o.status.success() => Ok(String::from_utf8_lossy(&o.stdout).into_owned()),
        Ok(o) => {
            let err = String::from_utf8_lossy(&o.stderr);
            let first = err.lines().next().unwrap_or("").trim();
            // Legacy without the table's module; nft without nf_tables.
            let absent = ["Table does not exist", "Protocol not supported"]
                .iter()
                .any(|m| err.contains(m));
            let what = if table == "filter" {
                format!("`{tool} -S`")
            } else {
                format!("`{tool} -t {table} -S`")
            };
            Err((
                absent,
                format!("{what} failed ({})", first_or(first, o.status)),
            ))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Err((true, format!("there is no {tool} binary")))
        }
        Err(e) => Err((false, format!("{tool} cannot be run ({e})"))),
    }
}

/// The filter table as `iptables -S` prints it. One run answers all three
/// questions (does FORWARD drop, is there a DOCKER-USER chain, is our rule
/// there), where asking each costs a process start of 2.5 to 3.5 ms.
struct Filter(String);

impl Filter {
    fn fetch() -> Option<Filter> {
        Filter::probe().ok()
    }

    /// The listing, or why there is none (for the one-line error).
    fn probe() -> std::result::Result<Filter, String> {
        Filter::probe_in(notrack::Family::V4)
    }

    /// The same from `ip6tables -S` for V6 (its listing reads alike).
    fn probe_in(fam: notrack::Family) -> std::result::Result<Filter, String> {
        list_table(fam, "filter")
            .map(Filter)
            .map_err(|(_, why)| why)
    }

    fn forward_drops(&self) -> bool {
        self.0.lines().any(|l| l.trim() == "-P FORWARD DROP")
    }

    fn chain(&self) -> &'static str {
        if self.0.lines().any(|l| l.trim() == "-N DOCKER-USER") {
            "DOCKER-USER"
        } else {
            "FORWARD"
        }
    }

    /// Bridges named by our rule comments, in either chain.
    fn bridges(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for line in self.0.lines() {
            let mut words = line.split_whitespace();
            while let Some(w) = words.next() {
                if w == "--comment"
                    && let Some(c) = words.next()
                    && let Some(b) = c.trim_matches('"').strip_prefix("pipework:")
                    && crate::request::check_ifname(b).is_ok()
                    && !out.iter().any(|x| x == b)
                {
                    out.push(b.to_string());
                }
            }
        }
        out
    }

    /// How many copies of our rule for `bridge` are in `chain`.
    fn count(&self, chain: &str, bridge: &str) -> usize {
        count_ours(
            &self.0,
            &format!("-A {chain} -i {bridge} -o {bridge} "),
            bridge,
            "-j ACCEPT",
        )
    }
}

/// Is bridged traffic going through netfilter at all? (No process needed.)
fn bridged_traffic_is_filtered() -> bool {
    std::fs::read_to_string("/proc/sys/net/bridge/bridge-nf-call-iptables")
        .is_ok_and(|nf| nf.trim() == "1")
}

fn rule(bridge: &str) -> Vec<String> {
    [
        "-i",
        bridge,
        "-o",
        bridge,
        "-m",
        "comment",
        "--comment",
        &comment(bridge),
        "-j",
        "ACCEPT",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn run(op: &str, chain: &str, bridge: &str) -> bool {
    let mut args = vec![op.to_string(), chain.to_string()];
    args.extend(rule(bridge));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    iptables(&refs).is_some_and(|o| o.status.success())
}

/// Marker meaning "the rule for this bridge is in place": spares every
/// later attach three iptables executions (~10 ms). It holds the bridge's
/// ifindex, so a bridge deleted and re-created under the same name is
/// checked again. It lives on tmpfs, like the rules, so a reboot clears both.
///
/// On detach the bridge name comes from the record on the guest's link,
/// which the guest can rewrite: `Path::join` with `/etc/shadow` or
/// `../../../etc/shadow` would make the marker a host file we then
/// delete. Only a valid interface name (one component, no `/`) gets one.
fn marker(bridge: &str) -> Option<std::path::PathBuf> {
    crate::request::check_ifname(bridge).ok()?;
    Some(marker_dir().join(bridge))
}

/// Markers live in the run area (`own`), so PIPEWORK_STATE_DIR moves them.
fn marker_dir() -> std::path::PathBuf {
    crate::own::root(crate::own::Area::Run).join("firewall")
}

fn mark(bridge: &str, index: u32) {
    let Some(m) = marker(bridge) else { return };
    let _ = std::fs::create_dir_all(marker_dir());
    let _ = std::fs::write(m, index.to_string());
}

/// What the bridge driver asks of the firewall for one attach.
#[derive(Debug, Clone, Copy, Default)]
pub struct Wants {
    /// Skip conntrack for the bridge's frames (notrack.rs), where safe.
    pub notrack: bool,
    /// The bridge has an IPv4 address on the host (then it is not safe).
    pub bridge_has_addr: bool,
    /// The bridge has an IPv6 address other than link-local (the same,
    /// for the IPv6 rule; see notrack.rs for why link-local is not one).
    pub bridge_has_addr6: bool,
}

impl Wants {
    fn has_addr(&self, fam: notrack::Family) -> bool {
        match fam {
            notrack::Family::V4 => self.bridge_has_addr,
            notrack::Family::V6 => self.bridge_has_addr6,
        }
    }

    /// The notrack rule of `fam` is wanted and safe as far as addresses
    /// and bridge-nf tell (a user rule can still veto it).
    fn notrack(&self, fam: notrack::Family) -> bool {
        self.notrack && !self.has_addr(fam) && fam.filtered()
    }
}

fn marked(m: Option<std::path::PathBuf>, index: u32) -> bool {
    m.and_then(|p| std::fs::read_to_string(p).ok())
        .is_some_and(|m| m.trim() == index.to_string())
}

/// Ensure the accept rule (and, when wanted and safe, the notrack rule)
/// exists when needed. Returns a note for stderr. `port` is the attach's
/// own (already created) port: a rollback asks whether anything *else*
/// still needs the rule.
pub fn allow_bridge(
    host: &Net,
    br: &Link,
    port: u32,
    dry_run: bool,
    wants: Wants,
    j: &mut Journal,
) -> Result<Option<String>> {
    let bridge = br.name.as_str();
    // Each family's notrack rule is as wanted: in place, or (the bridge
    // has gained an address) not there; an opted-out attach leaves them
    // as they are.
    let notrack_settled = !wants.notrack
        || notrack::Family::ALL
            .iter()
            .all(|&f| wants.notrack(f) == marked(f.marker(bridge), br.index));
    if !dry_run && marked(marker(bridge), br.index) && notrack_settled {
        return Ok(None);
    }
    // IPv4 bridged frames skip iptables: no drop to undo and no IPv4
    // conntrack to skip; IPv6 ones may still meet ip6tables' conntrack.
    let v4 = bridged_traffic_is_filtered();
    if !v4 && !wants.notrack(notrack::Family::V6) {
        return Ok(None);
    }
    // Serialise check-then-insert across parallel pipeworks.
    // Per bridge: attaches to different bridges never wait for each other.
    let _lock = if dry_run {
        None
    } else {
        Some(crate::lock::Lock::take(&format!("firewall-{bridge}"))?)
    };
    let undo = |j: &mut Journal| {
        // Undo through the same check as detach: a concurrent attach may
        // rely on the rule by now. (The bridge driver adds the rule before
        // the veth, so on rollback our own port is already gone when this
        // runs.) One entry removes every rule of ours for the bridge.
        let (h, b) = (host.clone(), bridge.to_string());
        j.record(format!("firewall rules for {bridge}"), async move {
            release(&h, &b, false, Some(port)).await.map(|_| ())
        });
    };
    let mut notes: Vec<String> = Vec::new();
    // Whether some chain drops and our rule is now in it (for the marker),
    // and whether the journal already has the undo.
    let (mut in_place, mut undone) = (false, false);
    let chains = if v4 {
        nft::forward_chains().unwrap_or_default()
    } else {
        Vec::new()
    };

    // iptables' FORWARD chain (dockerd's DROP), through iptables itself.
    // The listing also answers the notrack check below (one run fewer).
    let probed = if v4 {
        Filter::probe()
    } else {
        Ok(Filter(String::new()))
    };
    let listing = probed.as_ref().ok().map(|f| f.0.clone());
    match probed {
        Ok(filter) if filter.forward_drops() => {
            let chain = filter.chain();
            if dry_run {
                println!("iptables -w -I {chain} {}", rule(bridge).join(" "));
            } else if filter.count(chain, bridge) == 0 {
                if !run("-I", chain, bridge) {
                    return Err(Error::other(format!(
                        "bridge {bridge}: FORWARD drops bridged traffic (dockerd) and `iptables -I {chain}` failed: \
                         add `iptables -I {chain} -i {bridge} -o {bridge} -j ACCEPT` by hand, \
                         or set net.bridge.bridge-nf-call-iptables=0"
                    )));
                }
                undo(j);
                undone = true;
                notes.push(format!(
                    "dockerd drops bridged traffic: added `iptables -I {chain} -i {bridge} -o {bridge} -j ACCEPT` (comment {})",
                    comment(bridge)
                ));
            }
            in_place = true;
        }
        Ok(_) => {}
        // No iptables to ask: read its FORWARD policy from the kernel
        // (iptables-nft's chain is an nftables chain; legacy x_tables
        // answers a getsockopt). Dropping, with nothing to add our rule:
        // say so now instead of attaching to a bridge that drops.
        Err(why) => {
            let drops =
                chains.iter().any(|c| c.is_iptables() && c.drops) || legacy::forward_drops();
            if drops {
                return Err(Error::other(format!(
                    "bridge {bridge}: its frames would be dropped (bridge-nf-call-iptables=1, iptables FORWARD policy DROP) \
                     and {why}: install iptables, or set net.bridge.bridge-nf-call-iptables=0"
                )));
            }
        }
    }

    // Native nftables: every other forward chain whose policy is drop
    // must accept the bridge's frames itself (see nft.rs for why).
    let c = comment(bridge);
    for ch in chains.iter().filter(|c| c.drops && !c.is_iptables()) {
        let spec = crate::untrusted::display(&ch.spec()).into_owned();
        let text = nft::rule_text(bridge, &c);
        if dry_run {
            println!("nft insert rule {spec} {text}");
            continue;
        }
        in_place = true;
        let present = nft::commented_rules(ch, &c).is_ok_and(|r| r.iter().any(|(_, x)| *x == c));
        if present {
            continue;
        }
        if let Err(e) = nft::insert_accept(ch, bridge, &c) {
            return Err(Error::other(format!(
                "bridge {bridge}: its frames would be dropped (bridge-nf-call-iptables=1, nftables chain `{spec}` policy drop) \
                 and adding our accept rule failed ({e}): run `nft insert rule {spec} {text}`, \
                 or set net.bridge.bridge-nf-call-iptables=0"
            )));
        }
        if !undone {
            undo(j);
            undone = true;
        }
        notes.push(format!(
            "nftables chain `{spec}` drops bridged traffic: added `{}` (comment {c})",
            nft::rule_text(bridge, &c).replace(&format!(" comment \"{c}\""), "")
        ));
    }
    // No drop found: no marker, so a later attach checks again (dockerd
    // or a firewall may have started meanwhile).
    if in_place && !dry_run {
        mark(bridge, br.index);
    }
    if wants.notrack {
        for fam in notrack::Family::ALL.into_iter().filter(|f| f.filtered()) {
            let filter = match fam {
                notrack::Family::V4 => listing.clone(),
                notrack::Family::V6 if wants.bridge_has_addr6 => None,
                notrack::Family::V6 => fam.filter(),
            };
            let has_addr = wants.has_addr(fam);
            if notrack::settle(fam, br, has_addr, filter.as_deref(), dry_run, &mut notes) && !undone
            {
                undo(j);
                undone = true;
            }
        }
    }
    Ok((!notes.is_empty()).then(|| notes.join("; ")))
}

/// For `pipework demo` when nothing crosses the bridge: which firewall
/// drops its frames, if one we know of does (None: not a firewall of ours
/// to name). Read-only.
pub fn why_dropped(bridge: &str) -> Option<String> {
    if !bridged_traffic_is_filtered() {
        return None;
    }
    let mut why = Vec::new();
    let c = comment(bridge);
    let chains = nft::forward_chains().unwrap_or_default();
    match Filter::probe() {
        Ok(f) if f.forward_drops() && f.count(f.chain(), bridge) == 0 => {
            why.push("iptables FORWARD policy DROP without an accept rule for it".to_string())
        }
        Err(_) if chains.iter().any(|c| c.is_iptables() && c.drops) || legacy::forward_drops() => {
            why.push("iptables FORWARD policy DROP, and no iptables to add a rule".to_string())
        }
        _ => {}
    }
    for ch in chains.iter().filter(|c| c.drops && !c.is_iptables()) {
        if !nft::commented_rules(ch, &c).is_ok_and(|r| r.iter().any(|(_, x)| *x == c)) {
            why.push(format!(
                "nftables chain `{}` policy drop without an accept rule for it",
                crate::untrusted::display(&ch.spec())
            ));
        }
    }
    (!why.is_empty()).then(|| {
        format!(
            "bridge {bridge}: frames between its ports are dropped (bridge-nf-call-iptables=1): {}",
            why.join(", ")
        )
    })
}

/// Why frames of `bridge` must keep walking the bridge and netfilter
/// (`--tc-redirect` takes them past both): an iptables or ip6tables rule
/// that is not ours names the bridge in any table (the notrack check), a
/// native nftables rule that is not ours compares iifname or oifname to
/// it, or the bridge family has any nftables/ebtables-nft rule; or one of
/// those could not be read (fail closed). None: nothing would be skipped
/// but our own accept and notrack rules. Read-only.
pub fn bypass_unsafe(bridge: &str) -> Option<String> {
    for fam in notrack::Family::ALL {
        for table in ["filter", "mangle", "nat", "raw"] {
            match list_table(fam, table) {
                Ok(l) if notrack::foreign_rule(&l, bridge) => {
                    return Some(format!(
                        "an {} rule in table {table} that is not pipework's names bridge {bridge}",
                        fam.tool()
                    ));
                }
                Ok(_) | Err((true, _)) => {}
                Err((false, why)) => {
                    return Some(format!(
                        "{why}, so rules naming bridge {bridge} cannot be checked"
                    ));
                }
            }
        }
    }
    // No nf_tables in the kernel: no native rule can be there.
    let absent = |e: &std::io::Error| {
        matches!(
            e.raw_os_error(),
            Some(libc::EPROTONOSUPPORT | libc::EOPNOTSUPP | libc::EAFNOSUPPORT)
        )
    };
    match nft::foreign_rules_naming(bridge) {
        Ok(c) if !c.is_empty() => {
            return Some(format!(
                "nftables chain `{}` has a rule that is not pipework's naming bridge {bridge}",
                crate::untrusted::display(&c[0])
            ));
        }
        Err(e) if !absent(&e) => {
            return Some(format!(
                "nftables rules cannot be read ({e}), so rules naming bridge {bridge} cannot be checked"
            ));
        }
        _ => {}
    }
    match nft::bridge_family_rules() {
        Ok(n) if n > 0 => Some(format!(
            "the nftables bridge family (ebtables-nft) has {n} rule(s) that redirected frames would skip"
        )),
        Err(e) if !absent(&e) => Some(format!(
            "the nftables bridge family cannot be read ({e}), so its rules cannot be checked"
        )),
        _ => None,
    }
}

/// Whether iptables has Docker's DOCKER-USER chain, where our accept
/// rule goes (else FORWARD): for naming the fix. Read-only.
pub fn docker_user_chain() -> bool {
    Filter::fetch().is_some_and(|f| f.chain() == "DOCKER-USER")
}

/// After a detach: drop our rule when no pipework port is left on the
/// bridge, and say so on stderr.
pub async fn release_bridge_if_unused(host: &Net, bridge: &str) -> Result<()> {
    release(host, bridge, true, None).await.map(|_| ())
}

/// Bridges that have a rule of ours (by its comment): iptables' chains,
/// then nftables' forward chains.
pub fn rule_bridges() -> Vec<String> {
    let mut out = Filter::fetch().map(|f| f.bridges()).unwrap_or_default();
    for fam in notrack::Family::ALL {
        for b in notrack::Raw::fetch(fam)
            .map(|r| Filter(r.0).bridges())
            .unwrap_or_default()
        {
            if !out.contains(&b) {
                out.push(b);
            }
        }
    }
    for ch in others_forward_chains() {
        for (_, c) in nft::commented_rules(&ch, "pipework:").unwrap_or_default() {
            if let Some(b) = c.strip_prefix("pipework:")
                && crate::request::check_ifname(b).is_ok()
                && !out.iter().any(|x| x == b)
            {
                out.push(b.to_string());
            }
        }
    }
    out
}

/// Forward chains but those of our own tables: the egress table's
/// isolation rules carry `pipework:ov-NET` too, and are the agent's to
/// keep (a bridge rule's gc must never take its drops away).
fn others_forward_chains() -> Vec<nft::Chain> {
    let mut v = nft::forward_chains().unwrap_or_default();
    v.retain(|c| !(c.family == nft::INET && (c.table == egress::TABLE || c.table == guard::TABLE)));
    v
}

/// Whether the rule for `bridge` is still needed: a port of ours is on it,
/// or another live pipework is building one (a temporary-named
/// port: the bridge driver adds the rule only after creating it).
pub fn still_needed(links: &[Link], bridge: &str, except: Option<u32>) -> bool {
    let Some(bi) = links
        .iter()
        .find(|l| l.name == bridge && l.is_bridge())
        .map(|l| l.index)
    else {
        return false;
    };
    let me = std::process::id();
    // Keeping a rule is the safe direction, so any port labelled like ours
    // counts, verified or not: a host link's alias is written by host root
    // only (a guest cannot reach it), and a port made by a version before
    // signed records must not lose its rule to a `gc` after an upgrade.
    links
        .iter()
        .filter(|l| l.controller == Some(bi) && Some(l.index) != except)
        .any(|l| {
            crate::record::Record::claims(l.alias.as_deref())
                || crate::inventory::temp_owner(&l.name)
                    .is_some_and(|p| p != me && crate::inventory::alive(p))
        })
}

/// `gc`: remove the rule for `bridge` if nothing needs it. Returns whether
/// there was one to remove (in a dry run: whether it would be removed).
pub async fn collect(host: &Net, bridge: &str, dry_run: bool) -> Result<bool> {
    if dry_run {
        let links = host.links().await?;
        return Ok(!still_needed(&links, bridge, None));
    }
    release(host, bridge, false, None).await
}

/// The same, silently: for rollbacks, whose one line is the error itself.
async fn release(host: &Net, bridge: &str, announce: bool, except: Option<u32>) -> Result<bool> {
    // No bridge can have such a name, so no rule of ours mentions it; and
    // a forged one must not reach the marker path or iptables.
    if host.dry_run || crate::request::check_ifname(bridge).is_err() {
        return Ok(false);
    }
    // Per bridge: attaches to different bridges never wait for each other.
    let _lock = crate::lock::Lock::take(&format!("firewall-{bridge}"))?;
    let links = host.links().await?;
    if still_needed(&links, bridge, except) {
        return Ok(false);
    }
    // An attach that finds the marker skips the lock and relies on the
    // rule; it creates its port before it looks. So: marker first, then
    // look at the bridge again. A port made before the marker went is
    // seen now; an attach that looks after finds no marker and waits for
    // our lock, then puts the rule back itself.
    if let Some(m) = marker(bridge) {
        let _ = std::fs::remove_file(m);
    }
    for fam in notrack::Family::ALL {
        if let Some(m) = fam.marker(bridge) {
            let _ = std::fs::remove_file(m);
        }
    }
    if still_needed(&host.links().await?, bridge, except) {
        return Ok(false);
    }
    let mut removed = false;
    if let Some(filter) = Filter::fetch() {
        for chain in ["DOCKER-USER", "FORWARD"] {
            for _ in 0..filter.count(chain, bridge) {
                if !run("-D", chain, bridge) {
                    break;
                }
                removed = true;
                if announce {
                    eprintln!(
                        "pipework: removed iptables rule {} from {chain}",
                        comment(bridge)
                    );
                }
            }
        }
    }
    for fam in notrack::Family::ALL {
        let Some(raw) = notrack::Raw::fetch(fam) else {
            continue;
        };
        for _ in 0..raw.count(fam, bridge) {
            if !notrack::run(fam, "-D", bridge) {
                break;
            }
            removed = true;
            if announce {
                eprintln!(
                    "pipework: removed {} rule {} from raw PREROUTING",
                    match fam {
                        notrack::Family::V4 => "iptables",
                        notrack::Family::V6 => "ip6tables",
                    },
                    comment(bridge)
                );
            }
        }
    }
    // nftables: our rule in any forward chain, whatever its policy is now.
    let c = comment(bridge);
    for ch in others_forward_chains() {
        for (handle, _) in nft::commented_rules(&ch, &c)
            .unwrap_or_default()
            .into_iter()
            .filter(|(_, x)| *x == c)
        {
            if nft::delete(&ch, handle).is_ok() {
                removed = true;
                if announce {
                    eprintln!(
                        "pipework: removed nftables rule {c} from {}",
                        crate::untrusted::display(&ch.spec())
                    );
                }
            }
        }
    }
    Ok(removed)
}

/// VXLAN only from members (guard.rs): drop UDP to `ports` from any
/// source but `members`, in this namespace. Builds or replaces the table
/// in one transaction.
/// `sealed`: (VNI, VXLAN port) of encrypted networks, whose VNI is taken
/// on that port from `tunnel_if` only. `group`: the name prefix of the
/// bridges containers sit on (the caller's naming).
pub fn guard_vxlan(
    ports: &std::collections::BTreeSet<u16>,
    members: &std::collections::BTreeSet<std::net::IpAddr>,
    sealed: &std::collections::BTreeSet<(u32, u16)>,
    tunnel_if: &str,
    group: &str,
) -> Result<()> {
    guard::install(ports, members, sealed, tunnel_if, group)
        .map_err(|e| Error::other(format!("nftables table {}: {e}", guard::TABLE)))
}

/// Members that joined and left since `guard_vxlan`.
pub fn guard_vxlan_update(
    add: &std::collections::BTreeSet<std::net::IpAddr>,
    del: &std::collections::BTreeSet<std::net::IpAddr>,
) -> Result<()> {
    guard::update(add, del)
        .map_err(|e| Error::other(format!("nftables table {}: {e}", guard::TABLE)))
}

/// Whether the VXLAN guard table is in place.
pub fn vxlan_guarded() -> bool {
    guard::present().unwrap_or(false)
}

/// The underlay addresses the VXLAN guard admits now (None: no guard on
/// this host). Read-only, for `doctor`.
pub fn vxlan_members() -> Result<Option<std::collections::BTreeSet<std::net::IpAddr>>> {
    guard::members().map_err(|e| Error::other(format!("nftables table {}: {e}", guard::TABLE)))
}

/// Remove the VXLAN guard; whether it was there.
pub fn unguard_vxlan() -> Result<bool> {
    guard::remove().map_err(|e| Error::other(format!("nftables table {}: {e}", guard::TABLE)))
}

pub use egress::Routed;

/// Egress (masquerade) and isolation for networks behind an anycast
/// gateway (egress.rs); an empty list removes the table.
pub fn route_egress(nets: &[Routed]) -> Result<()> {
    let r = if nets.is_empty() {
        egress::remove().map(|_| ())
    } else {
        egress::install(nets)
    };
    r.map_err(|e| Error::other(format!("nftables table {}: {e}", egress::TABLE)))
}

/// Routed networks on a host whose iptables FORWARD drops (dockerd's):
/// our accepts in DOCKER-USER (else FORWARD), exactly what `nets` want
/// (forward.rs); an empty list removes them. Returns lines for the log.
/// Native nftables forward chains that drop get the same (`force`: the
/// networks changed, re-make them there).
/// ip6tables' FORWARD (Docker with `ip6tables: true`) gets the same for
/// the networks with IPv6, last: a host whose ip6tables fails does not
/// hold up the IPv4 ones.
pub fn accept_routed(nets: &[Routed], force: bool) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let xt = |fam: notrack::Family, out: &mut Vec<String>| -> Result<()> {
        let tool = fam.tool();
        let ch = forward::reconcile(fam, nets)
            .map_err(|e| Error::other(format!("{tool} accepts for routed networks: {e}")))?;
        out.extend((ch.added.iter()).map(|r| format!("FORWARD drops: added `{tool} -I {r}`")));
        out.extend(
            ch.removed
                .iter()
                .map(|r| format!("removed `{tool} -A {r}`")),
        );
        Ok(())
    };
    xt(notrack::Family::V4, &mut out)?;
    let ch = forward::reconcile_nft(nets, force)
        .map_err(|e| Error::other(format!("nftables accepts for routed networks: {e}")))?;
    out.extend(ch.added.iter().map(|r| format!("a chain drops: added {r}")));
    out.extend(ch.removed.iter().map(|r| format!("removed {r}")));
    xt(notrack::Family::V6, &mut out)?;
    Ok(out)
}

pub use forward::Missing;

/// For `doctor`: the accepts routed network `r` lacks for its IPv6
/// (`v6`) or IPv4 traffic where a forward chain drops it, by the same
/// decisions the agent's `accept_routed` makes. Read-only.
pub fn routed_accepts_missing(r: &Routed, v6: bool) -> Result<Missing> {
    let fam = if v6 {
        notrack::Family::V6
    } else {
        notrack::Family::V4
    };
    forward::missing(fam, r).map_err(Error::other)
}

/// Does iptables' (V6: ip6tables') FORWARD drop, as the kernel says (no
/// iptables needed)?
fn xtables_forward_drops(fam: notrack::Family) -> bool {
    let chains = nft::routed_forward_chains().unwrap_or_default();
    match fam {
        notrack::Family::V4 => {
            chains.iter().any(|c| c.is_iptables() && c.drops) || legacy::forward_drops()
        }
        notrack::Family::V6 => {
            chains.iter().any(|c| c.is_ip6tables() && c.drops) || legacy::forward_drops6()
        }
    }
}

/// Whether the egress table is in place.
pub fn egress_routed() -> bool {
    guard::table_present(egress::TABLE).unwrap_or(false)
}

/// The guard's name as `nft` shows it (for gc's report).
pub fn vxlan_guard_name() -> String {
    format!(
        "inet {} ({}), inet {}, iptables/ip6tables {}*",
        guard::TABLE,
        guard::COMMENT,
        egress::TABLE,
        forward::PREFIX
    )
}

/// `gc`: the guard outlives its agent on purpose (a killed agent must not
/// open the port), but not the last VXLAN device: with none left on the
/// host it guards nothing. Whether it was (in a dry run: would be) removed.
pub async fn collect_vxlan_guard(host: &Net, dry_run: bool) -> Result<bool> {
    let accepts = forward::bridges();
    if !vxlan_guarded() && !egress_routed() && accepts.is_empty() {
        return Ok(false);
    }
    let links = host.links().await?;
    let vxlan = links.iter().any(|l| l.kind.as_deref() == Some("vxlan"));
    // A routed network's accepts outlive its agent like the table (a
    // killed agent must not cut its containers off), but not its bridge;
    // all of them go with the last VXLAN device.
    let unneeded = |b: &str| !vxlan || !links.iter().any(|l| l.name == b && l.is_bridge());
    if dry_run || host.dry_run {
        return Ok(!vxlan || accepts.iter().any(|b| unneeded(b)));
    }
    let dropped = forward::remove_where(unneeded) > 0;
    if vxlan {
        return Ok(dropped);
    }
    // The egress table (same lifetime: the overlay's networks) with it.
    route_egress(&[])?;
    unguard_vxlan().map(|_| true)
}

#[cfg(test)]
mod tests {

    #[test]
    fn one_listing_names_the_bridges_with_our_rules() {
        let f = Filter(
            "-A DOCKER-USER -i br1 -o br1 -m comment --comment \"pipework:br1\" -j ACCEPT\n\
             -A FORWARD -i br2 -o br2 -m comment --comment pipework:br2 -j ACCEPT\n\
             -A FORWARD -m comment --comment \"pipework:../x\" -j ACCEPT\n"
                .into(),
        );
        assert_eq!(f.bridges(), vec!["br1".to_string(), "br2".to_string()]);
    }

    #[test]
    fn one_listing_answers_policy_chain_and_rule() {
        let f = Filter(
            "-P INPUT ACCEPT\n-P FORWARD DROP\n-N DOCKER-USER\n\
             -A DOCKER-USER -i br1 -o br1 -m comment --comment \"pipework:br1\" -j ACCEPT\n\
             -A DOCKER-USER -i br10 -o br10 -m comment --comment pipework:br10 -j ACCEPT\n\
             -A DOCKER-USER -j RETURN\n"
                .into(),
        );
        assert!(f.forward_drops());
        assert_eq!(f.chain(), "DOCKER-USER");
        assert_eq!(f.count("DOCKER-USER", "br1"), 1);
        assert_eq!(f.count("DOCKER-USER", "br10"), 1);
        assert_eq!(f.count("FORWARD", "br1"), 0);
        assert_eq!(f.count("DOCKER-USER", "br"), 0);
        let plain = Filter("-P FORWARD ACCEPT\n".into());
        assert!(!plain.forward_drops());
        assert_eq!(plain.chain(), "FORWARD");
    }

    use super::*;

    #[test]
    fn markers_only_for_interface_names() {
        assert_eq!(
            marker("br1"),
            Some(std::path::PathBuf::from("/run/pipework/firewall/br1"))
        );
        for bad in [
            "/etc/shadow",
            "../../../etc/shadow",
            "..",
            "",
            "a/b",
            "br\x1b",
        ] {
            assert_eq!(marker(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_forged_bridge_name_deletes_no_host_file() {
        // What a detach does with the `h` of a record the guest rewrote.
        let victim = std::env::temp_dir().join(format!("pwg-fw-victim-{}", std::process::id()));
        std::fs::write(&victim, "keep\n").expect("victim");
        let up = "../".repeat(8);
        let rel = format!(
            "{up}{}",
            victim.display().to_string().trim_start_matches('/')
        );
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("rt");
        let forged = [victim.display().to_string(), rel];
        rt.block_on(async {
            let host = Net::new(None, false).expect("netlink");
            for f in &forged {
                release_bridge_if_unused(&host, f).await.expect("release");
            }
        });
        assert_eq!(
            std::fs::read_to_string(&victim).expect("still there"),
            "keep\n"
        );
        let _ = std::fs::remove_file(&victim);
    }
}
