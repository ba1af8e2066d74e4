//! What doctor found: one line per hop, the causes, and how both are shown
//! (text for people, `--json` for scripts). Every string here was built by
//! us; parts read from a guest (link names, aliases) were escaped with
//! `untrusted::display` when they were put in, so no escape sequence from
//! a guest reaches the terminal. A `fix` is a command line to paste: its
//! guest-chosen words were quoted with `untrusted::shell_word` instead
//! (an escape would not be the name), and the line is escaped for the
//! terminal only as it is printed.
use serde::Serialize;

/// The cause kinds `--json` promises (the list, plus
/// `overlay-device-mismatch` for a VXLAN device whose VNI or port is not
/// its network's, `overlay-filtered` for a peer host the VXLAN guard drops,
/// `overlay-forward-drop` for a forward chain that drops an overlay
/// network's routed traffic without our accepts, and `unexplained`
/// for a probe that failed where no check found why: saying "nothing
/// found" is better than naming a wrong cause).
pub const KINDS: &[&str] = &[
    "link-down",
    "no-address",
    "no-route",
    "mtu-mismatch",
    "forward-drop",
    "vlan-mismatch",
    "macvlan-host",
    "rp-filter",
    "neigh-failed",
    "overlay-no-entry",
    "overlay-peer-down",
    "overlay-agent-down",
    "overlay-device-mismatch",
    "overlay-filtered",
    "overlay-forward-drop",
    "port-closed",
    "unexplained",
];

/// One step along the path and what was seen there.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Hop {
    pub hop: String,
    pub ok: bool,
    pub seen: String,
}

/// Why the two cannot talk, where, and the command that fixes it (None
/// when the fix is not one command).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Cause {
    pub kind: &'static str,
    pub hop: String,
    pub detail: String,
    pub fix: Option<String>,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct Report {
    pub ok: bool,
    pub causes: Vec<Cause>,
    pub hops: Vec<Hop>,
}

impl Report {
    pub fn hop(&mut self, hop: impl Into<String>, ok: bool, seen: impl Into<String>) {
        self.hops.push(Hop {
            hop: hop.into(),
            ok,
            seen: seen.into(),
        });
    }

    pub fn cause(
        &mut self,
        kind: &'static str,
        hop: impl Into<String>,
        detail: impl Into<String>,
        fix: Option<String>,
    ) {
        debug_assert!(KINDS.contains(&kind), "unknown cause kind {kind}");
        let c = Cause {
            kind,
            hop: hop.into(),
            detail: detail.into(),
            fix,
        };
        // Two checks can see one fault (a link down seen from both ends).
        if !self.causes.contains(&c) {
            self.causes.push(c);
        }
    }

    pub fn has(&self, kind: &str) -> bool {
        self.causes.iter().any(|c| c.kind == kind)
    }

    /// Settle `ok` once every check and probe has run.
    pub fn finish(mut self) -> Self {
        self.ok = self.causes.is_empty();
        self
    }

    /// Exit status: 0 when they can talk, 1 when a cause was found.
    pub fn exit_code(&self) -> i32 {
        if self.ok { 0 } else { 1 }
    }

    /// The text form: a ✓/✗ line per hop, then each cause and its fix.
    pub fn human(&self) -> String {
        let mut s = String::new();
        for h in &self.hops {
            let mark = if h.ok { '✓' } else { '✗' };
            s.push_str(&format!("{mark} {}: {}\n", h.hop, h.seen));
        }
        if self.ok {
            s.push_str("ok: they can talk\n");
        }
        for c in &self.causes {
            s.push_str(&format!("cause ({}) at {}: {}\n", c.kind, c.hop, c.detail));
            if let Some(f) = &c.fix {
                s.push_str(&format!("  fix: {}\n", crate::untrusted::display(f)));
            }
        }
        s
    }

    pub fn json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|_| "{}".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn healthy_is_ok_with_no_causes_and_exit_zero() {
        let mut r = Report::default();
        r.hop("A eth1", true, "up");
        let r = r.finish();
        assert!(r.ok);
        assert_eq!(r.exit_code(), 0);
        let v: serde_json::Value = serde_json::from_str(&r.json()).unwrap();
        assert_eq!(v["ok"], true);
        assert_eq!(v["causes"].as_array().unwrap().len(), 0);
        assert_eq!(v["hops"][0]["hop"], "A eth1");
        assert!(r.human().starts_with("✓ A eth1: up\n"));
    }

    #[test]
    fn a_cause_makes_it_fail_with_its_fix_shown_once() {
        let mut r = Report::default();
        r.hop("host v1", false, "down");
        for _ in 0..2 {
            r.cause(
                "link-down",
                "host v1",
                "down",
                Some("ip link set dev v1 up".into()),
            );
        }
        let r = r.finish();
        assert!(!r.ok);
        assert_eq!(r.exit_code(), 1);
        assert_eq!(r.causes.len(), 1);
        let v: serde_json::Value = serde_json::from_str(&r.json()).unwrap();
        let c = &v["causes"][0];
        for k in ["kind", "hop", "detail", "fix"] {
            assert!(c.get(k).is_some(), "{k} missing: {c}");
        }
        assert!(r.human().contains("✗ host v1: down\n"));
        assert!(r.human().contains("  fix: ip link set dev v1 up\n"));
    }
}
