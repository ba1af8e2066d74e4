//! The bridge data path (issue 22), on the real kernel with dockerd's
//! bridge-nf-call-iptables=1: PIPEWORK_VETH_QUEUES=cpus gives both veth
//! ends one queue per online CPU (the default stays one); the raw-table notrack rule for a bridge carries our comment,
//! appears with the first attachment, goes with the last detach, is
//! collected by `gc` after a SIGKILL, is never added with
//! --keep-conntrack or on a bridge with an address, and a failed attach
//! leaves none. No timings are asserted (speed is scripts/bench-datapath.sh).
mod common;

use common::*;
use std::process::{Command, Stdio};

fn raw_rules() -> String {
    ok("iptables", &["-w", "-t", "raw", "-S", "PREROUTING"])
}

/// Lines of our notrack rule for `br`.
fn notrack_rules(br: &str) -> usize {
    let c = format!("pipework:{br}");
    raw_rules()
        .lines()
        .filter(|l| {
            l.starts_with(&format!("-A PREROUTING -i {br} "))
                && l.contains(&c)
                && l.ends_with("-j CT --notrack")
        })
        .count()
}

/// The rule only exists where bridged frames meet conntrack at all.
fn bridged_frames_filtered() -> bool {
    std::fs::read_to_string("/proc/sys/net/bridge/bridge-nf-call-iptables")
        .is_ok_and(|v| v.trim() == "1")
}

fn online_cpus() -> usize {
    // SAFETY: sysconf takes no pointers.
    unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) as usize }.clamp(1, 64)
}

fn queues(ls: &str, kind: &str) -> usize {
    ls.split_whitespace()
        .filter(|q| q.starts_with(&format!("{kind}-")))
        .count()
}

fn setup() -> bool {
    if !require_env() {
        return false;
    }
    assert!(
        bridged_frames_filtered(),
        "this suite needs dockerd's net.bridge.bridge-nf-call-iptables=1 (scripts/env-up.sh)"
    );
    true
}

#[test]
fn veth_queues_and_the_notrack_rule_living_with_the_bridge_attachments() {
    if !setup() {
        return;
    }
    let br = BridgeGuard::new("pwjb");
    let (a, b) = (Netns::new("pwja"), Netns::new("pwjb"));
    let ha = uniq("pwjh");
    // PIPEWORK_VETH_QUEUES=cpus: one queue per online CPU on both ends.
    let o = Command::new(BIN)
        .args(["--create", &br.0, &a.spec(), "-l", &ha, "10.254.201.2/24"])
        .env("DOCKER_HOST", docker_host())
        .env("PIPEWORK_VETH_QUEUES", "cpus")
        .stdin(Stdio::null())
        .output()
        .expect("run pipework");
    assert!(o.status.success(), "{}", stderr(&o));
    let n = online_cpus();
    let host_q = ok("ls", &[&format!("/sys/class/net/{ha}/queues")]);
    assert_eq!(queues(&host_q, "tx"), n, "host end tx queues: {host_q}");
    assert_eq!(queues(&host_q, "rx"), n, "host end rx queues: {host_q}");
    let guest_q = stdout(&a.exec(&["ls", "/sys/class/net/eth1/queues"]));
    assert_eq!(queues(&guest_q, "tx"), n, "guest end tx queues: {guest_q}");
    assert_eq!(queues(&guest_q, "rx"), n, "guest end rx queues: {guest_q}");
    assert_eq!(
        notrack_rules(&br.0),
        1,
        "after the first attach: {}",
        raw_rules()
    );

    pipework_ok(&[&br.0, &b.spec(), "10.254.201.3/24"]);
    assert_eq!(notrack_rules(&br.0), 1, "a second attach adds no copy");
    // By default: the kernel's one queue per end.
    let guest_q = stdout(&b.exec(&["ls", "/sys/class/net/eth1/queues"]));
    assert_eq!(queues(&guest_q, "tx"), 1, "default tx queues: {guest_q}");
    assert_eq!(queues(&guest_q, "rx"), 1, "default rx queues: {guest_q}");
    pipework_ok(&["detach", &a.spec()]);
    assert_eq!(notrack_rules(&br.0), 1, "b still uses the bridge");
    let d = pipework_ok(&["detach", &b.spec()]);
    assert_eq!(
        notrack_rules(&br.0),
        0,
        "gone with the last detach: {}",
        raw_rules()
    );
    assert!(
        stderr(&d).contains("from raw PREROUTING"),
        "the detach says so: {}",
        stderr(&d)
    );
}

#[test]
fn keep_conntrack_adds_no_notrack_rule() {
    if !setup() {
        return;
    }
    let br = BridgeGuard::new("pwjk");
    let a = Netns::new("pwjk");
    let o = pipework_ok(&[
        "--create",
        "--keep-conntrack",
        &br.0,
        &a.spec(),
        "10.254.202.2/24",
    ]);
    assert_eq!(notrack_rules(&br.0), 0, "{}", raw_rules());
    // The accept rule is still there: only conntrack is kept.
    assert!(ok("iptables", &["-w", "-S"]).contains(&format!("pipework:{}", br.0)));
    assert!(!stderr(&o).contains("notrack"), "{}", stderr(&o));
    pipework_ok(&["detach", &a.spec()]);
}

#[test]
fn a_bridge_with_an_address_keeps_conntrack() {
    if !setup() {
        return;
    }
    // The host may route or receive this bridge's frames: untracking them
    // would break NAT and stateful INPUT rules. A bridge that gains an
    // address loses the rule at the next attach.
    let br = BridgeGuard::new("pwja");
    ok("ip", &["link", "add", &br.0, "type", "bridge"]);
    ok("ip", &["link", "set", &br.0, "up"]);
    let (a, b) = (Netns::new("pwjr"), Netns::new("pwjs"));
    pipework_ok(&[&br.0, &a.spec(), "10.254.203.2/24"]);
    assert_eq!(notrack_rules(&br.0), 1, "{}", raw_rules());
    ok("ip", &["addr", "add", "10.254.203.1/24", "dev", &br.0]);
    let o = pipework_ok(&[&br.0, &b.spec(), "10.254.203.3/24@10.254.203.1"]);
    assert_eq!(notrack_rules(&br.0), 0, "{}", raw_rules());
    assert!(
        stderr(&o).contains("has an IPv4 address"),
        "says why: {}",
        stderr(&o)
    );
    // The accept rule stays while attachments use the bridge.
    assert!(ok("iptables", &["-w", "-S"]).contains(&format!("pipework:{}", br.0)));
    pipework_ok(&["detach", &a.spec()]);
    pipework_ok(&["detach", &b.spec()]);
    assert_eq!(notrack_rules(&br.0), 0, "{}", raw_rules());
}

#[test]
fn a_failed_attach_leaves_no_notrack_rule() {
    if !setup() {
        return;
    }
    let br = BridgeGuard::new("pwjf");
    let a = Netns::new("pwjf");
    let before = host_state();
    let raw_before = raw_rules();
    // IPv6 off in the guest: the kernel refuses the second address after
    // the bridge, the veth and both rules exist, so the attach fails late.
    for k in ["all", "default"] {
        a.exec(&[
            "sysctl",
            "-q",
            "-w",
            &format!("net.ipv6.conf.{k}.disable_ipv6=1"),
        ]);
    }
    let o = pipework(&[
        "--create",
        &br.0,
        &a.spec(),
        "10.254.204.2/24",
        "--ip",
        "2001:db8:204::2/64",
    ]);
    assert!(!o.status.success(), "the attach must fail: {}", stdout(&o));
    assert_eq!(notrack_rules(&br.0), 0, "rolled back: {}", raw_rules());
    assert_same(&raw_before, &raw_rules(), "raw table");
    assert_same(&before, &host_state(), "host");
}

#[test]
fn gc_collects_the_notrack_rule_after_a_kill() {
    if !setup() {
        return;
    }
    if Command::new("strace").arg("-V").output().is_err() {
        panic!("strace is needed (apt-get install strace)");
    }
    let br = BridgeGuard::new("pwjg");
    ok("ip", &["link", "add", &br.0, "type", "bridge"]);
    ok("ip", &["link", "set", &br.0, "up"]);
    let a = Netns::new("pwjg");
    let spec = a.spec();
    // Kill pipework right after each iptables run (its K-th wait4) until
    // one kill lands after the notrack rule went in and before the attach
    // finished: the rule is there, no attachment of ours is.
    let mut caught = false;
    for k in 1..40 {
        let o = Command::new("strace")
            .args([
                "-f",
                "-b",
                "execve",
                "-o",
                "/dev/null",
                "-e",
                "trace=wait4",
                "-e",
            ])
            .arg(format!("inject=wait4:signal=SIGKILL:when={k}"))
            .arg("--")
            .arg(BIN)
            .args([&br.0, &spec, "10.254.206.2/24"])
            .env("DOCKER_HOST", docker_host())
            .stdin(Stdio::null())
            .output()
            .expect("strace");
        if o.status.success() {
            break;
        }
        if notrack_rules(&br.0) == 1 {
            caught = true;
            break;
        }
        // An earlier kill: clean up and go one call further.
        let _ = pipework(&["gc"]);
    }
    assert!(caught, "no kill landed after the notrack rule was added");
    let g = pipework(&["gc"]);
    assert!(g.status.success(), "gc: {}", stderr(&g));
    // gc finished or rolled back the attach; either way the rule follows
    // whether an attachment of ours is on the bridge.
    let attached = !a.links_but_lo().is_empty()
        && ok("ip", &["-o", "link", "show", "master", &br.0])
            .lines()
            .any(|l| !l.contains(" pw."));
    if attached {
        assert_eq!(notrack_rules(&br.0), 1, "{}", raw_rules());
        pipework_ok(&["detach", &spec]);
    }
    assert_eq!(notrack_rules(&br.0), 0, "after gc: {}", raw_rules());
}
