//! Conntrack skipped for a pipework bridge's own frames (issue 22).
//!
//! Why: with bridge-nf-call-iptables=1 (dockerd turns it on) every frame
//! between two ports of a bridge is handed to the IPv4 hooks, and
//! conntrack looks each one up and creates an entry per flow, as on
//! Docker's routed DNAT path; bridge-nf-call-ip6tables=1 (on by default
//! with br_netfilter) does the same for IPv6. Frames that only cross the
//! bridge need none of it: our accept rule (the parent module) already
//! lets them through whatever their state.
//!
//! How: `iptables -t raw -I PREROUTING -i BR -m comment --comment
//! pipework:BR -j CT --notrack`, and the same through ip6tables. In
//! PREROUTING a bridged frame shows the bridge as its input device; the
//! raw table runs before conntrack.
//!
//! What it would break, and why it is only the default where it cannot:
//! PREROUTING cannot tell a frame that will be bridged from one that will
//! be routed (br_netfilter rewrites its packet type to "host" before the
//! IP hooks run), so the rule also untracks what the host routes or
//! receives from the bridge: NAT (masquerade) and stateful INPUT/FORWARD
//! rules would see UNTRACKED. A host routes or receives from a bridge
//! through an address of its own on it, so each family's rule is added
//! only when the bridge has no address of that family, and when no rule
//! of that family other than ours names the bridge (a user's stateful
//! rule for it). `attach --keep-conntrack` opts out of both.
//!
//! IPv6 differs in one way: an up bridge always has a link-local address
//! (fe80::/10), and the host answers on it whatever listens on `::` (an
//! sshd, a metrics port); a reply to a connection the host opened to a
//! guest's link-local address comes back on it too. So the IPv6 test
//! ignores link-local addresses (else the rule would never apply), and the
//! IPv6 rule leaves every frame from or to a link-local address tracked
//! (`! -s fe80::/10 ! -d fe80::/10`): what the host can receive over the
//! bridge keeps its state, while guests talking over their global or ULA
//! addresses, the bulk the rule is for, skip conntrack. (Neighbour
//! discovery is multicast to the host and stays untracked, as conntrack
//! never tracked it anyway: it has no connection to belong to.)
use super::{comment, count_ours};
use std::process::Output;

/// The address family of a rule: its tool, its bridge-nf switch, its
/// marker directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Family {
    V4,
    V6,
}

impl Family {
    pub(super) const ALL: [Family; 2] = [Family::V4, Family::V6];

    pub(super) fn tool(self) -> &'static str {
        match self {
            Family::V4 => "iptables",
            Family::V6 => "ip6tables",
        }
    }

    fn run(self, args: &[&str]) -> Option<Output> {
        match self {
            Family::V4 => super::iptables(args),
            Family::V6 => super::ip6tables(args),
        }
    }

    /// Are this family's bridged frames handed to its netfilter hooks?
    pub(super) fn filtered(self) -> bool {
        let f = match self {
            Family::V4 => "/proc/sys/net/bridge/bridge-nf-call-iptables",
            Family::V6 => "/proc/sys/net/bridge/bridge-nf-call-ip6tables",
        };
        std::fs::read_to_string(f).is_ok_and(|v| v.trim() == "1")
    }

    /// What the rule matches besides the bridge (see the module comment:
    /// IPv6 keeps link-local traffic tracked). In the order `-S` prints.
    fn matches(self) -> &'static [&'static str] {
        match self {
            Family::V4 => &[],
            Family::V6 => &["!", "-s", "fe80::/10", "!", "-d", "fe80::/10"],
        }
    }

    /// The filter table as `iptables -S` / `ip6tables -S` prints it.
    pub(super) fn filter(self) -> Option<String> {
        self.run(&["-S"])
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
    }

    /// Marker for "the notrack rule of this family is in place for this
    /// bridge (this ifindex)": a subdirectory, so no bridge name can
    /// collide with it.
    pub(super) fn marker(self, bridge: &str) -> Option<std::path::PathBuf> {
        crate::request::check_ifname(bridge).ok()?;
        let dir = match self {
            Family::V4 => "notrack",
            Family::V6 => "notrack6",
        };
        Some(super::marker_dir().join(dir).join(bridge))
    }

    fn what(self) -> &'static str {
        match self {
            Family::V4 => "an IPv4 address",
            Family::V6 => "an IPv6 address other than link-local",
        }
    }
}

/// The raw table's PREROUTING as `iptables -t raw -S PREROUTING` prints it.
pub(super) struct Raw(pub(super) String);

impl Raw {
    pub(super) fn fetch(fam: Family) -> Option<Raw> {
        let o = fam.run(&["-t", "raw", "-S", "PREROUTING"])?;
        o.status
            .success()
            .then(|| Raw(String::from_utf8_lossy(&o.stdout).into_owned()))
    }

    /// How many copies of our rule for `bridge` there are.
    pub(super) fn count(&self, fam: Family, bridge: &str) -> usize {
        let mut head = vec!["-A", "PREROUTING"];
        head.extend(fam.matches());
        let head = format!("{} -i {bridge} ", head.join(" "));
        count_ours(&self.0, &head, bridge, "-j CT --notrack")
    }
}

pub(super) fn rule(fam: Family, bridge: &str) -> Vec<String> {
    let c = comment(bridge);
    let mut r = vec!["PREROUTING"];
    r.extend(fam.matches());
    r.extend(["-i", bridge, "-m", "comment", "--comment", &c]);
    r.extend(["-j", "CT", "--notrack"]);
    r.iter().map(|s| s.to_string()).collect()
}

/// `iptables -t raw OP <rule>` (ip6tables for V6); whether it succeeded.
pub(super) fn run(fam: Family, op: &str, bridge: &str) -> bool {
    let mut args = vec!["-t".to_string(), "raw".to_string(), op.to_string()];
    args.extend(rule(fam, bridge));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    fam.run(&refs).is_some_and(|o| o.status.success())
}

/// A rule in the filter listing (`iptables -S`) that names `bridge` and is
/// not ours: a user's rule for that bridge, possibly stateful.
pub(super) fn foreign_rule(filter: &str, bridge: &str) -> bool {
    let c = comment(bridge);
    filter.lines().any(|l| {
        let mut w = l.split_whitespace();
        let names = l.starts_with("-A ")
            && std::iter::from_fn(|| w.next())
                .collect::<Vec<_>>()
                .windows(2)
                .any(|p| matches!(p[0], "-i" | "-o") && p[1] == bridge);
        names && !l.contains(&c)
    })
}

/// The raw-table rule, or why the bridge keeps conntrack (for the note).
pub(super) fn unsafe_because(
    fam: Family,
    has_addr: bool,
    filter: Option<&str>,
    bridge: &str,
) -> Option<String> {
    if has_addr {
        return Some(format!(
            "bridge {bridge} has {}: the host may route or receive its frames, so they keep conntrack",
            fam.what()
        ));
    }
    match filter {
        Some(f) if foreign_rule(f, bridge) => Some(format!(
            "an {} rule that is not pipework's names bridge {bridge}: its frames keep conntrack",
            fam.tool()
        )),
        _ => None,
    }
}

/// One family's rule for an attach: removed when no longer safe (the
/// bridge gained an address or a user rule since it went in), else added
/// if missing (best effort: without it frames are only slower, so a
/// refusal is a note, not a failed attach), and its marker set. Returns
/// whether a rule was added (the caller journals its removal).
pub(super) fn settle(
    fam: Family,
    br: &crate::netlink::Link,
    has_addr: bool,
    filter: Option<&str>,
    dry_run: bool,
    notes: &mut Vec<String>,
) -> bool {
    let bridge = br.name.as_str();
    let present = || Raw::fetch(fam).is_some_and(|r| r.count(fam, bridge) > 0);
    if let Some(why) = unsafe_because(fam, has_addr, filter, bridge) {
        if !dry_run && present() {
            while run(fam, "-D", bridge) {}
            if let Some(m) = fam.marker(bridge) {
                let _ = std::fs::remove_file(m);
            }
        }
        notes.push(why);
        return false;
    }
    if dry_run {
        println!(
            "{} -w -t raw -I {}",
            fam.tool(),
            rule(fam, bridge).join(" ")
        );
        return false;
    }
    let mut added = false;
    if !present() {
        if run(fam, "-I", bridge) {
            added = true;
            let mut shown = vec!["PREROUTING"];
            shown.extend(fam.matches());
            notes.push(format!(
                "skipping conntrack for {} frames within {bridge}: added `{} -t raw -I {} -i {bridge} -j CT --notrack` (comment {}; --keep-conntrack opts out)",
                match fam {
                    Family::V4 => "IPv4",
                    Family::V6 => "IPv6",
                },
                fam.tool(),
                shown.join(" "),
                comment(bridge),
            ));
        } else {
            notes.push(format!(
                "could not add the {} raw-table notrack rule for {bridge}: its frames keep conntrack",
                fam.tool()
            ));
            return false;
        }
    }
    if let Some(m) = fam.marker(bridge) {
        let _ = m.parent().map(std::fs::create_dir_all);
        let _ = std::fs::write(m, br.index.to_string());
    }
    added
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_only_our_rule_for_that_bridge() {
        let r = Raw("-P PREROUTING ACCEPT\n\
             -A PREROUTING -i br1 -m comment --comment pipework:br1 -j CT --notrack\n\
             -A PREROUTING -i br10 -m comment --comment \"pipework:br10\" -j CT --notrack\n\
             -A PREROUTING -i br1 -j CT --notrack\n"
            .into());
        assert_eq!(r.count(Family::V4, "br1"), 1);
        assert_eq!(r.count(Family::V4, "br10"), 1);
        assert_eq!(r.count(Family::V4, "br"), 0);
        assert_eq!(r.count(Family::V6, "br1"), 0);
    }

    #[test]
    fn the_ipv6_rule_as_ip6tables_prints_it() {
        let r = Raw("-P PREROUTING ACCEPT\n\
             -A PREROUTING ! -s fe80::/10 ! -d fe80::/10 -i br1 -m comment --comment \"pipework:br1\" -j CT --notrack\n\
             -A PREROUTING -i br1 -m comment --comment \"pipework:br1\" -j CT --notrack\n"
            .into());
        assert_eq!(r.count(Family::V6, "br1"), 1);
        assert_eq!(r.count(Family::V6, "br10"), 0);
        assert_eq!(
            rule(Family::V6, "br1")[..8].join(" "),
            "PREROUTING ! -s fe80::/10 ! -d fe80::/10 -i"
        );
        assert_ne!(Family::V4.marker("br1"), Family::V6.marker("br1"));
    }

    #[test]
    fn a_user_rule_naming_the_bridge_keeps_conntrack() {
        let ours = "-A DOCKER-USER -i br1 -o br1 -m comment --comment pipework:br1 -j ACCEPT\n";
        assert!(!foreign_rule(ours, "br1"));
        let theirs = format!("{ours}-A FORWARD -i br1 -m conntrack --ctstate NEW -j DROP\n");
        assert!(foreign_rule(&theirs, "br1"));
        assert!(!foreign_rule(&theirs, "br10"));
        let v4 = Family::V4;
        assert!(unsafe_because(v4, false, Some(&theirs), "br1").is_some());
        assert!(unsafe_because(v4, true, Some(ours), "br1").is_some());
        assert!(unsafe_because(v4, false, Some(ours), "br1").is_none());
        let v6 = unsafe_because(Family::V6, false, Some(&theirs), "br1");
        assert!(v6.is_some_and(|w| w.contains("ip6tables")));
        assert!(v4.marker("../x").is_none());
    }
}
