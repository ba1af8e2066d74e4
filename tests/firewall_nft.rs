//! Bridged frames dropped by a firewall pipework did not write (issue 17).
//!
//! Every case runs in network namespaces the test creates: a "host"
//! namespace with its own firewall and bridge (bridge-nf-call-iptables is
//! per namespace and 1 in a new one), and guests attached from inside it.
//! pipework runs there through `ip netns exec`, so this machine's own
//! firewall (dockerd's FORWARD DROP) is never read or changed.
//!
//! - nftables (the firewalld shape, `table inet fw { chain forwarding {
//!   … policy drop; } }`): attach adds the accept rule to that chain, the
//!   guests talk, the rule is the only thing that lets them talk, and it
//!   goes with the bridge's last port (detach) or its vanished guests (gc).
//! - The demo on that shape passes, and says what it added.
//! - No usable iptables (absent, or failing) while iptables' FORWARD policy
//!   is DROP (iptables-nft's chain, or legacy x_tables): attach and the
//!   demo fail in one line naming the cause and the fix, and nothing stays.
mod common;
use common::*;

/// The firewall shape, with the chain the one-line messages name.
const FIREWALLD_SHAPE: &str = "table inet fw { chain forwarding { type filter hook forward priority filter; policy drop; }; }";
/// What iptables-nft makes of `iptables -P FORWARD DROP`.
const IPTABLES_NFT_DROP: &str =
    "table ip filter { chain FORWARD { type filter hook forward priority filter; policy drop; }; }";

fn require_nft() -> bool {
    let have = |c: &str| {
        sh("sh", &["-c", &format!("command -v {c}")])
            .status
            .success()
    };
    let ok = sh("id", &["-u"]).stdout == b"0\n" && have("nft") && have("unshare");
    if !ok {
        let why = "needs root, nft and unshare: run scripts/env-up.sh";
        if std::env::var_os("CI").is_some() {
            panic!("{why}");
        }
        eprintln!("SKIP: {why}");
    }
    ok
}

/// A host namespace with a bridge name of its own; the marker pipework
/// keeps on this machine's /run for that bridge goes with it.
struct Host {
    ns: Netns,
    bridge: String,
}

impl Host {
    fn new(firewall: Option<&str>) -> Host {
        let ns = Netns::new("pwn");
        if let Some(f) = firewall {
            let o = ns.exec(&["nft", f]);
            assert!(o.status.success(), "nft {f}: {}", stderr(&o));
        }
        Host {
            ns,
            bridge: uniq("brpwn"),
        }
    }

    fn pipework(&self, args: &[&str]) -> std::process::Output {
        let mut a = vec![BIN];
        a.extend_from_slice(args);
        self.ns.exec(&a)
    }

    /// pipework in this namespace and a mount namespace of its own where
    /// `hide` is done first (a tmpfs over /usr/sbin: no iptables at all;
    /// /bin/false over iptables: one that fails).
    fn pipework_hiding(&self, hide: &str, args: &[&str]) -> std::process::Output {
        let script = format!("{hide} && exec /bin/ip netns exec \"$0\" \"$@\"");
        let mut a = vec![
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            &script,
            &self.ns.name,
            BIN,
        ];
        a.extend_from_slice(args);
        sh("unshare", &a)
    }

    fn attach(&self, guest: &Netns, ip: &str) -> std::process::Output {
        self.pipework(&[&self.bridge, &guest.path(), ip])
    }

    /// Our rules in the chain, as `nft -a` lists them.
    fn our_rules(&self) -> Vec<String> {
        let c = format!("comment \"pipework:{}\"", self.bridge);
        stdout(
            &self
                .ns
                .exec(&["nft", "-a", "list", "chain", "inet", "fw", "forwarding"]),
        )
        .lines()
        .filter(|l| l.contains(&c))
        .map(|l| l.trim().to_string())
        .collect()
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(format!("/run/pipework/firewall/{}", self.bridge));
    }
}

fn pings(from: &Netns, ip: &str) -> bool {
    from.exec(&["busybox", "ping", "-c", "1", "-W", "2", ip])
        .status
        .success()
}

#[test]
fn nftables_forward_drop_gets_an_accept_rule_for_the_bridge() {
    if !require_nft() {
        return;
    }
    let h = Host::new(Some(FIREWALLD_SHAPE));
    let (a, b) = (Netns::new("pwn"), Netns::new("pwn"));
    let br = h.bridge.clone();

    let o = h.attach(&a, "10.77.31.1/24");
    assert!(o.status.success(), "attach a: {}", stderr(&o));
    assert!(
        stderr(&o).contains("nftables chain `inet fw forwarding` drops bridged traffic"),
        "attach says what it added: {}",
        stderr(&o)
    );
    let o = h.attach(&b, "10.77.31.2/24");
    assert!(o.status.success(), "attach b: {}", stderr(&o));
    let rules = h.our_rules();
    assert_eq!(
        rules.len(),
        1,
        "one rule for the bridge, not one per port: {rules:?}"
    );
    assert!(
        rules[0].starts_with(&format!("iifname \"{br}\" oifname \"{br}\" accept comment")),
        "the narrowest rule, as nft shows it: {rules:?}"
    );
    assert!(pings(&a, "10.77.31.2"), "a reaches b across the bridge");

    // The rule stays while a port of ours is on the bridge, goes with the last.
    let o = h.pipework(&["detach", &a.path()]);
    assert!(o.status.success(), "detach a: {}", stderr(&o));
    assert_eq!(h.our_rules().len(), 1, "b still needs the rule");
    let o = h.pipework(&["detach", &b.path()]);
    assert!(o.status.success(), "detach b: {}", stderr(&o));
    assert!(
        stderr(&o).contains(&format!(
            "removed nftables rule pipework:{br} from inet fw forwarding"
        )),
        "{}",
        stderr(&o)
    );
    assert!(h.our_rules().is_empty(), "rule gone with the last port");

    // The rule is what lets frames through: without it the chain drops them.
    for (g, ip) in [(&a, "10.77.31.1/24"), (&b, "10.77.31.2/24")] {
        let o = h.attach(g, ip);
        assert!(o.status.success(), "re-attach: {}", stderr(&o));
    }
    let handle = h.our_rules()[0]
        .rsplit("# handle ")
        .next()
        .expect("handle")
        .to_string();
    assert!(pings(&a, "10.77.31.2"));
    ok(
        "ip",
        &[
            "netns",
            "exec",
            &h.ns.name,
            "nft",
            "delete",
            "rule",
            "inet",
            "fw",
            "forwarding",
            "handle",
            &handle,
        ],
    );
    assert!(
        !pings(&a, "10.77.31.2"),
        "the firewalld shape drops bridged frames"
    );

    // gc: guests gone without a detach leave a rule no port needs.
    let _ = std::fs::remove_file(format!("/run/pipework/firewall/{br}"));
    let c = Netns::new("pwn");
    let o = h.attach(&c, "10.77.31.3/24");
    assert!(o.status.success(), "attach c: {}", stderr(&o));
    assert_eq!(h.our_rules().len(), 1, "{:?}", h.our_rules());
    drop((a, b, c));
    // The kernel tears a deleted namespace's veths down in the background.
    for _ in 0..100 {
        let ports = stdout(&h.ns.exec(&["ip", "-o", "link", "show", "master", &br]));
        if ports.trim().is_empty() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let o = h.pipework(&["gc"]);
    assert!(o.status.success(), "gc: {}", stderr(&o));
    assert!(h.our_rules().is_empty(), "gc removed it: {}", stderr(&o));
}

#[test]
fn demo_passes_on_an_nftables_forward_drop_and_says_why() {
    if !require_nft() {
        return;
    }
    let h = Host::new(Some(FIREWALLD_SHAPE));
    let o = h.pipework(&["demo"]);
    let out = stdout(&o);
    assert!(o.status.success(), "demo: {out}{}", stderr(&o));
    assert!(out.contains("64 KiB echoed intact"), "{out}");
    assert!(
        out.contains("nftables chain `inet fw forwarding` drops bridged traffic: added"),
        "{out}"
    );
    let left = stdout(
        &h.ns
            .exec(&["nft", "list", "chain", "inet", "fw", "forwarding"]),
    );
    assert!(!left.contains("pipework:"), "demo leaves no rule: {left}");
}

#[test]
fn without_a_usable_iptables_a_forward_drop_is_named_in_one_line() {
    if !require_nft() {
        return;
    }
    let no_iptables = "mount -t tmpfs pwn-no-sbin /usr/sbin";
    let failing = "mount --bind /bin/false /usr/sbin/iptables";
    let legacy = sh("sh", &["-c", "command -v iptables-legacy"])
        .status
        .success();
    let mut cases = vec![
        (
            IPTABLES_NFT_DROP,
            no_iptables,
            "there is no iptables binary",
        ),
        (IPTABLES_NFT_DROP, failing, "`iptables -S` failed"),
    ];
    if legacy {
        // Legacy x_tables, read through the kernel's getsockopt.
        cases.push(("legacy", no_iptables, "there is no iptables binary"));
    }
    for (shape, hide, cause) in cases {
        let h = if shape == "legacy" {
            let h = Host::new(None);
            let o = h.ns.exec(&["iptables-legacy", "-P", "FORWARD", "DROP"]);
            assert!(o.status.success(), "iptables-legacy: {}", stderr(&o));
            h
        } else {
            Host::new(Some(shape))
        };
        let g = Netns::new("pwn");
        let o = h.pipework_hiding(hide, &[&h.bridge, &g.path(), "10.77.32.1/24"]);
        let err = stderr(&o);
        assert!(!o.status.success(), "{shape} / {hide}: attach must fail");
        assert_eq!(err.lines().count(), 1, "one line: {err}");
        for want in [
            format!("bridge {}: its frames would be dropped", h.bridge),
            "iptables FORWARD policy DROP".to_string(),
            cause.to_string(),
            "install iptables, or set net.bridge.bridge-nf-call-iptables=0".to_string(),
        ] {
            assert!(err.contains(&want), "{shape} / {hide}: {want:?} in {err}");
        }
        assert!(
            g.links_but_lo().is_empty(),
            "rolled back: {:?}",
            g.links_but_lo()
        );

        // The demo names the same cause instead of timing out on connect.
        let o = h.pipework_hiding(hide, &["demo"]);
        let err = stderr(&o);
        assert!(!o.status.success(), "{shape} / {hide}: demo must fail");
        assert!(
            err.contains("attach failed: bridge brpwdemo") && err.contains(cause),
            "{shape} / {hide}: {err}"
        );
    }
}
