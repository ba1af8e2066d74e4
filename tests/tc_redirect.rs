//! `--tc-redirect` (driver/tc_redirect.rs) on the real kernel, with
//! dockerd's bridge-nf-call-iptables=1: two opted-in guests reach each
//! other through our tc rules (their counters move) while the bridge's
//! netfilter sees none of their frames (our raw-table notrack rule's
//! counter, which every bridged IPv4 frame passes, stays put); a guest
//! without the flag still reaches both through the bridge (and that
//! counter moves); detach removes the rules pointing at the detached
//! port; a VLAN or a foreign iptables (any table) or native nftables
//! rule is refused with nothing changed; a MAC of a guest that died
//! without a detach is reached at once when given again; gc removes a rule whose target went; a SIGKILL at any netlink
//! request of an opted-in attach leaves only what gc recognises.
mod common;

use common::*;
use std::process::{Command, Stdio};

/// The redirect rules on `port`'s ingress: (target device, packets).
fn rules(port: &str) -> Vec<(String, u64)> {
    let out = ok("tc", &["-s", "filter", "show", "dev", port, "ingress"]);
    let mut v = Vec::new();
    let mut lines = out.lines();
    while let Some(l) = lines.next() {
        let Some(rest) = l.split("Redirect to device ").nth(1) else {
            continue;
        };
        let dev = rest.split(')').next().unwrap_or_default().to_string();
        let pkts = lines
            .by_ref()
            .find_map(|l| {
                let w: Vec<&str> = l.split_whitespace().collect();
                (w.first() == Some(&"Sent")).then(|| w.get(3).and_then(|p| p.parse().ok()))
            })
            .flatten()
            .unwrap_or(0);
        v.push((dev, pkts));
    }
    v
}

/// Packets our IPv4 notrack rule for `br` has seen: every bridged IPv4
/// frame walks it (br_netfilter's PREROUTING), a redirected one never.
fn bridged_ipv4(br: &str) -> u64 {
    let out = ok(
        "iptables",
        &["-w", "-t", "raw", "-L", "PREROUTING", "-v", "-x", "-n"],
    );
    out.lines()
        .find(|l| l.contains(&format!("pipework:{br} ")))
        .and_then(|l| l.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no notrack rule for {br}: {out}"))
}

/// One ICMP echo (raw socket: no ping binary needed) and one TCP connect
/// to a closed port (the refusal is the peer's RST) from `ns` to `dst`.
fn reach(ns: &Netns, dst: &str) -> bool {
    let script = format!(
        "import socket, struct\n\
         def cs(b):\n\
         \ts = sum(struct.unpack('!%dH' % (len(b)//2), b)); s = (s >> 16) + (s & 0xffff); s += s >> 16; return ~s & 0xffff\n\
         s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP); s.settimeout(5)\n\
         h = struct.pack('!BBHHH', 8, 0, 0, 77, 1) + b'pipework'\n\
         s.sendto(struct.pack('!BBHHH', 8, 0, cs(h), 77, 1) + b'pipework', ('{dst}', 0))\n\
         while True:\n\
         \td, a = s.recvfrom(1500)\n\
         \tif a[0] == '{dst}' and d[20] == 0: print('pong'); break\n\
         try:\n\
         \tsocket.create_connection(('{dst}', 9), timeout=5)\n\
         except ConnectionRefusedError:\n\
         \tprint('refused')\n"
    );
    let o = ns.exec(&["python3", "-c", &script]);
    let s = stdout(&o);
    s.contains("pong") && s.contains("refused")
}

/// An attach with `--tc-redirect` of `ns` to `br` (host end `host`,
/// address `ip`), creating the bridge when `create`, with a given `mac`.
fn opt_in(br: &str, ns: &Netns, host: &str, ip: &str, create: bool, mac: Option<&str>) {
    let spec = ns.spec();
    let mut args = Vec::new();
    if create {
        args.push("--create");
    }
    args.extend([br, spec.as_str(), "-l", host, ip]);
    args.extend(mac);
    args.push("--tc-redirect");
    pipework_ok(&args);
}

/// Held by every test here for its whole run: a `gc` from a test beside
/// it sweeps every bridge (a stale rule a test needs would go early), and
/// one test's links would show in another's "nothing changed" check.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn setup() -> bool {
    if !require_env() {
        return false;
    }
    assert!(
        std::fs::read_to_string("/proc/sys/net/bridge/bridge-nf-call-iptables")
            .is_ok_and(|v| v.trim() == "1"),
        "this suite needs net.bridge.bridge-nf-call-iptables=1 (dockerd, scripts/env-up.sh)"
    );
    true
}

#[test]
fn opted_in_guests_skip_the_bridge_and_detach_removes_the_rules_to_them() {
    if !setup() {
        return;
    }
    let _serial = serial();
    let br = BridgeGuard::new("pwtb");
    let (a, b, c) = (Netns::new("pwta"), Netns::new("pwtb"), Netns::new("pwtc"));
    let (ha, hb, hc) = (uniq("pwtha"), uniq("pwthb"), uniq("pwthc"));
    opt_in(&br.0, &a, &ha, "10.254.211.2/24", true, None);
    opt_in(&br.0, &b, &hb, "10.254.211.3/24", false, None);
    pipework_ok(&[&br.0, &c.spec(), "-l", &hc, "10.254.211.4/24"]);
    assert_eq!(
        rules(&ha),
        vec![(hb.clone(), 0)],
        "a's port: one rule, to b"
    );
    assert_eq!(
        rules(&hb),
        vec![(ha.clone(), 0)],
        "b's port: one rule, to a"
    );
    assert!(rules(&hc).is_empty(), "c did not opt in");
    let ls = stdout(&pipework_ok(&["ls", "--json"]));
    let ls: serde_json::Value = serde_json::from_str(&ls).expect("ls --json");
    let flag = |ns: &Netns| {
        ls.as_array()
            .and_then(|v| v.iter().find(|e| e["guest"] == ns.name.as_str()))
            .map(|e| e["tc_redirect"] == true)
    };
    assert_eq!(
        (flag(&a), flag(&b), flag(&c)),
        (Some(true), Some(true), Some(false)),
        "{ls}"
    );

    let before = bridged_ipv4(&br.0);
    assert!(reach(&a, "10.254.211.3"), "a reaches b");
    assert!(reach(&b, "10.254.211.2"), "b reaches a");
    assert_eq!(
        bridged_ipv4(&br.0),
        before,
        "no frame between a and b went through the bridge's netfilter"
    );
    for (port, to) in [(&ha, &hb), (&hb, &ha)] {
        let r = rules(port);
        assert!(
            r.len() == 1 && &r[0].0 == to && r[0].1 >= 4,
            "{port}'s rule carried the echo, the SYN and the replies: {r:?}"
        );
    }
    assert!(reach(&a, "10.254.211.4"), "a reaches c (no flag)");
    assert!(reach(&c, "10.254.211.3"), "c reaches b");
    assert!(
        bridged_ipv4(&br.0) >= before + 8,
        "c's frames went through the bridge"
    );

    pipework_ok(&["detach", &b.spec()]);
    assert!(
        rules(&ha).is_empty(),
        "the rule to b went with b: {:?}",
        rules(&ha)
    );
    assert!(reach(&a, "10.254.211.4"), "a still reaches c");
    pipework_ok(&["detach", &a.spec()]);
    pipework_ok(&["detach", &c.spec()]);
}

#[test]
fn a_vlan_or_a_foreign_rule_naming_the_bridge_is_refused_and_changes_nothing() {
    if !setup() {
        return;
    }
    let _serial = serial();
    let br = BridgeGuard::new("pwtr");
    let (a, b) = (Netns::new("pwtra"), Netns::new("pwtrb"));
    let ha = uniq("pwtrh");
    opt_in(&br.0, &a, &ha, "10.254.212.2/24", true, None);
    let refused = |args: &[&str], why: &str| {
        let before = host_state();
        let r_before = rules(&ha);
        let o = pipework(args);
        assert!(!o.status.success(), "{}", stdout(&o));
        let e = stderr(&o);
        assert_eq!(e.lines().count(), 1, "one line: {e}");
        assert!(e.contains("--tc-redirect") && e.contains(why), "{e}");
        assert_same(&before, &host_state(), "host");
        assert_eq!(rules(&ha), r_before, "a's rules untouched");
        assert!(b.links_but_lo().is_empty(), "{:?}", b.links_but_lo());
    };
    refused(
        &[&br.0, &b.spec(), "10.254.212.3/24", "@10", "--tc-redirect"],
        "VLAN",
    );
    // A user's rule for the bridge would no longer see the frames; in
    // any table (a mangle rule would be skipped too).
    let cases: [(&[&str], &str); 2] = [
        (
            &[
                "FORWARD", "-i", &br.0, "-p", "tcp", "--dport", "7", "-j", "ACCEPT",
            ],
            "names bridge",
        ),
        (
            &[
                "-t",
                "mangle",
                "PREROUTING",
                "-i",
                &br.0,
                "-j",
                "MARK",
                "--set-mark",
                "7",
            ],
            "table mangle",
        ),
    ];
    for (rule, why) in cases {
        let (table, rule) = rule.split_at(if rule[0] == "-t" { 2 } else { 0 });
        let add = [&["-w"][..], table, &["-I"], rule].concat();
        ok("iptables", &add);
        let _undo = Undo::new("iptables", &[&["-w"][..], table, &["-D"], rule].concat());
        refused(&[&br.0, &b.spec(), "10.254.212.3/24", "--tc-redirect"], why);
    }
    // And a native nftables rule (firewalld's kind) naming it.
    ok("nft", &["add", "table", "inet", "pwtcrt"]);
    let undo = Undo::new("nft", &["delete", "table", "inet", "pwtcrt"]);
    ok(
        "nft",
        &[
            "add",
            "chain",
            "inet",
            "pwtcrt",
            "c",
            "{ type filter hook forward priority 0; }",
        ],
    );
    ok(
        "nft",
        &[
            "add", "rule", "inet", "pwtcrt", "c", "iifname", &br.0, "accept",
        ],
    );
    refused(
        &[&br.0, &b.spec(), "10.254.212.3/24", "--tc-redirect"],
        "inet pwtcrt c",
    );
    drop(undo);
    pipework_ok(&["detach", &a.spec()]);
}

/// A command run however the test ends: removes a firewall rule the
/// test added.
struct Undo(&'static str, Vec<String>);

impl Undo {
    fn new(tool: &'static str, args: &[&str]) -> Undo {
        Undo(tool, args.iter().map(|a| a.to_string()).collect())
    }
}

impl Drop for Undo {
    fn drop(&mut self) {
        let args: Vec<&str> = self.1.iter().map(String::as_str).collect();
        sh(self.0, &args);
    }
}

/// A guest that died without a detach left a rule on a's port for its
/// MAC pointing at nothing; a later guest given that MAC is reached from
/// a at once, without a gc (the install sweeps the stale rule first).
#[test]
fn a_mac_reused_after_a_guest_died_is_reached_without_gc() {
    if !setup() {
        return;
    }
    let _serial = serial();
    let br = BridgeGuard::new("pwtm");
    let (a, b, c) = (
        Netns::new("pwtma"),
        Netns::new("pwtmb"),
        Netns::new("pwtmc"),
    );
    let (ha, hb, hc) = (uniq("pwtmha"), uniq("pwtmhb"), uniq("pwtmhc"));
    let mac = "02:77:74:6d:00:01";
    opt_in(&br.0, &a, &ha, "10.254.215.2/24", true, None);
    opt_in(&br.0, &b, &hb, "10.254.215.3/24", false, Some(mac));
    // b dies: its veth goes, no detach runs.
    ok(
        "ip",
        &["netns", "exec", &b.name, "ip", "link", "del", "eth1"],
    );
    assert_eq!(rules(&ha).len(), 1, "the kernel keeps a's stale rule");
    opt_in(&br.0, &c, &hc, "10.254.215.4/24", false, Some(mac));
    assert_eq!(rules(&ha), vec![(hc.clone(), 0)], "only the rule to c");
    assert!(reach(&a, "10.254.215.4"), "a reaches c");
    assert!(reach(&c, "10.254.215.2"), "c reaches a");
    pipework_ok(&["detach", &c.spec()]);
    pipework_ok(&["detach", &a.spec()]);
}

#[test]
fn gc_removes_a_rule_whose_target_is_gone() {
    if !setup() {
        return;
    }
    let _serial = serial();
    let br = BridgeGuard::new("pwtg");
    let (a, b) = (Netns::new("pwtga"), Netns::new("pwtgb"));
    let (ha, hb) = (uniq("pwtgha"), uniq("pwtghb"));
    opt_in(&br.0, &a, &ha, "10.254.213.2/24", true, None);
    opt_in(&br.0, &b, &hb, "10.254.213.3/24", false, None);
    assert_eq!(rules(&ha).len(), 1);
    // b's veth deleted behind pipework's back: a's rule now points at
    // nothing, and a MAC reused later must not meet it.
    ok(
        "ip",
        &["netns", "exec", &b.name, "ip", "link", "del", "eth1"],
    );
    assert_eq!(rules(&ha).len(), 1, "the kernel keeps the rule");
    let o = pipework_ok(&["gc"]);
    assert!(
        stdout(&o).contains("tc-redirect") || stderr(&o).contains("tc-redirect"),
        "gc says so: {} {}",
        stdout(&o),
        stderr(&o)
    );
    assert!(rules(&ha).is_empty(), "{:?}", rules(&ha));
    pipework_ok(&["detach", &a.spec()]);
}

/// SIGKILL at the K-th netlink request (strace's fault injection, as in
/// crash_kill.rs) of an opted-in attach next to an opted-in peer: after
/// `gc`, every rule on the peer points at an opted-in port pipework
/// lists; after the detach, none is left.
#[test]
fn a_killed_attach_leaves_only_rules_gc_recognises() {
    if !setup() || sh("strace", &["-V"]).status.code() != Some(0) {
        return;
    }
    let _serial = serial();
    let br = BridgeGuard::new("pwtk");
    let (a, b) = (Netns::new("pwtka"), Netns::new("pwtkb"));
    let (ha, hb) = (uniq("pwtkha"), uniq("pwtkhb"));
    opt_in(&br.0, &a, &ha, "10.254.214.2/24", true, None);
    let args = [
        br.0.as_str(),
        &b.path(),
        "-l",
        &hb,
        "10.254.214.3/24",
        "--tc-redirect",
    ];
    let mut kills = 0;
    for k in 1..400 {
        let o = Command::new("strace")
            .args(["-f", "-o", "/dev/null", "-e", "trace=sendto", "-e"])
            .arg(format!("inject=sendto:signal=SIGKILL:when={k}"))
            .arg("--")
            .arg(BIN)
            .args(args)
            .env("DOCKER_HOST", docker_host())
            .stdin(Stdio::null())
            .output()
            .expect("run strace");
        if o.status.success() {
            break;
        }
        kills += 1;
        pipework_ok(&["gc"]);
        let ls = stdout(&pipework_ok(&["ls", "--json"]));
        let ls: serde_json::Value = serde_json::from_str(&ls).expect("ls --json");
        let listed = |port: &str| {
            ls.as_array().is_some_and(|v| {
                v.iter().any(|e| {
                    e["host_interface"] == port
                        && e["tc_redirect"] == true
                        && e["unfinished"].is_null()
                })
            })
        };
        for (to, _) in rules(&ha) {
            assert!(listed(&to), "kill #{k}: a rule to {to} outlived gc: {ls}");
        }
        pipework(&["detach", &b.path()]);
        assert!(rules(&ha).is_empty(), "kill #{k}: {:?}", rules(&ha));
    }
    eprintln!("{kills} kills before an attach finished");
    assert!(kills > 5, "only {kills} kills: is strace injecting?");
    assert_eq!(rules(&ha).len(), 1, "the finished attach has its rule");
    pipework_ok(&["detach", &b.path()]);
    assert!(rules(&ha).is_empty());
    pipework_ok(&["detach", &a.spec()]);
}
