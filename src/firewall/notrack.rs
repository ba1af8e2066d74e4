//! Conntrack skipped for a pipework bridge's own frames (issue 22).
//!
//! Why: with bridge-nf-call-iptables=1 (dockerd turns it on) every frame
//! between two ports of a bridge is handed to the IPv4 hooks, and
//! conntrack looks each one up and creates an entry per flow, as on
//! Docker's routed DNAT path. Frames that only cross the bridge need
//! none of it: our accept rule (the parent module) already lets them
//! through whatever their state.
//!
//! How: `iptables -t raw -I PREROUTING -i BR -m comment --comment
//! pipework:BR -j CT --notrack`. In PREROUTING a bridged frame shows the
//! bridge as its input device; the raw table runs before conntrack.
//!
//! What it would break, and why it is only the default where it cannot:
//! PREROUTING cannot tell a frame that will be bridged from one that will
//! be routed (br_netfilter rewrites its packet type to "host" before the
//! IPv4 hooks run), so the rule also untracks what the host routes or
//! receives from the bridge: NAT (masquerade) and stateful INPUT/FORWARD
//! rules would see UNTRACKED. A host can route or receive from a bridge
//! only through an address of its own on it, so the rule is added only
//! when the bridge has no IPv4 address, and when no iptables rule other
//! than ours names the bridge (a user's stateful rule for it). `attach
//! --keep-conntrack` opts out.
use super::{comment, count_ours, iptables};

/// The raw table's PREROUTING as `iptables -t raw -S PREROUTING` prints it.
pub(super) struct Raw(pub(super) String);

impl Raw {
    pub(super) fn fetch() -> Option<Raw> {
        let o = iptables(&["-t", "raw", "-S", "PREROUTING"])?;
        o.status
            .success()
            .then(|| Raw(String::from_utf8_lossy(&o.stdout).into_owned()))
    }

    /// How many copies of our rule for `bridge` there are.
    pub(super) fn count(&self, bridge: &str) -> usize {
        let head = format!("-A PREROUTING -i {bridge} ");
        count_ours(&self.0, &head, bridge, "-j CT --notrack")
    }
}

pub(super) fn rule(bridge: &str) -> Vec<String> {
    let c = comment(bridge);
    [
        "PREROUTING",
        "-i",
        bridge,
        "-m",
        "comment",
        "--comment",
        &c,
        "-j",
        "CT",
        "--notrack",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// `iptables -t raw OP <rule>`; whether it succeeded.
pub(super) fn run(op: &str, bridge: &str) -> bool {
    let mut args = vec!["-t".to_string(), "raw".to_string(), op.to_string()];
    args.extend(rule(bridge));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    iptables(&refs).is_some_and(|o| o.status.success())
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
pub(super) fn unsafe_because(has_addr: bool, filter: Option<&str>, bridge: &str) -> Option<String> {
    if has_addr {
        return Some(format!(
            "bridge {bridge} has an IPv4 address: the host may route or receive its frames, so they keep conntrack"
        ));
    }
    match filter {
        Some(f) if foreign_rule(f, bridge) => Some(format!(
            "an iptables rule that is not pipework's names bridge {bridge}: its frames keep conntrack"
        )),
        _ => None,
    }
}

/// Marker for "the notrack rule is in place for this bridge (this
/// ifindex)": a subdirectory, so no bridge name can collide with it.
pub(super) fn marker(bridge: &str) -> Option<std::path::PathBuf> {
    crate::request::check_ifname(bridge).ok()?;
    Some(super::marker_dir().join("notrack").join(bridge))
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
        assert_eq!(r.count("br1"), 1);
        assert_eq!(r.count("br10"), 1);
        assert_eq!(r.count("br"), 0);
    }

    #[test]
    fn a_user_rule_naming_the_bridge_keeps_conntrack() {
        let ours = "-A DOCKER-USER -i br1 -o br1 -m comment --comment pipework:br1 -j ACCEPT\n";
        assert!(!foreign_rule(ours, "br1"));
        let theirs = format!("{ours}-A FORWARD -i br1 -m conntrack --ctstate NEW -j DROP\n");
        assert!(foreign_rule(&theirs, "br1"));
        assert!(!foreign_rule(&theirs, "br10"));
        assert!(unsafe_because(false, Some(&theirs), "br1").is_some());
        assert!(unsafe_because(true, Some(ours), "br1").is_some());
        assert!(unsafe_because(false, Some(ours), "br1").is_none());
        assert!(marker("../x").is_none());
    }
}
