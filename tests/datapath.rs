//! The bridge data path (issue 22), on the real kernel with dockerd's
//! bridge-nf-call-iptables=1 (and br_netfilter's bridge-nf-call-ip6tables=1):
//! PIPEWORK_VETH_QUEUES=cpus gives both veth ends one queue per online CPU
//! (the default stays one); the raw-table notrack rules for a bridge
//! (iptables and ip6tables) carry our comment, appear with the first
//! attachment, go with the last detach, are collected by `gc` after a
//! SIGKILL at either rule, are never added with --keep-conntrack, each
//! goes when the bridge gains an address of its family (a link-local
//! IPv6 one does not count), and a failed attach leaves none. No timings
//! are asserted (speed is scripts/bench-datapath.sh).
mod common;

use common::*;
use std::process::{Command, Stdio};

fn raw_rules() -> String {
    ok("iptables", &["-w", "-t", "raw", "-S", "PREROUTING"])
}

fn raw_rules6() -> String {
    ok("ip6tables", &["-w", "-t", "raw", "-S", "PREROUTING"])
}

fn count(listing: &str, head: &str, br: &str) -> usize {
    let c = format!("pipework:{br}");
    listing
        .lines()
        .filter(|l| l.starts_with(head) && l.contains(&c) && l.ends_with("-j CT --notrack"))
        .count()
}

/// Lines of our IPv4 notrack rule for `br`.
fn notrack_rules(br: &str) -> usize {
    count(&raw_rules(), &format!("-A PREROUTING -i {br} "), br)
}

/// Lines of our IPv6 notrack rule for `br` (link-local stays tracked).
fn notrack_rules6(br: &str) -> usize {
    let head = format!("-A PREROUTING ! -s fe80::/10 ! -d fe80::/10 -i {br} ");
    count(&raw_rules6(), &head, br)
}

/// The rules only exist where bridged frames meet conntrack at all.
fn bridged_frames_filtered() -> bool {
    ["iptables", "ip6tables"].iter().all(|t| {
        std::fs::read_to_string(format!("/proc/sys/net/bridge/bridge-nf-call-{t}"))
            .is_ok_and(|v| v.trim() == "1")
    })
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
        "this suite needs net.bridge.bridge-nf-call-iptables=1 and -ip6tables=1 (dockerd, scripts/env-up.sh)"
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
    assert_eq!(
        notrack_rules6(&br.0),
        1,
        "IPv6, after the first attach: {}",
        raw_rules6()
    );
    assert!(
        stderr(&o).contains("IPv6 frames within"),
        "the attach says so: {}",
        stderr(&o)
    );

    pipework_ok(&[&br.0, &b.spec(), "10.254.201.3/24"]);
    assert_eq!(notrack_rules(&br.0), 1, "a second attach adds no copy");
    assert_eq!(notrack_rules6(&br.0), 1, "nor of the IPv6 rule");
    // By default: the kernel's one queue per end.
    let guest_q = stdout(&b.exec(&["ls", "/sys/class/net/eth1/queues"]));
    assert_eq!(queues(&guest_q, "tx"), 1, "default tx queues: {guest_q}");
    assert_eq!(queues(&guest_q, "rx"), 1, "default rx queues: {guest_q}");
    pipework_ok(&["detach", &a.spec()]);
    assert_eq!(notrack_rules(&br.0), 1, "b still uses the bridge");
    assert_eq!(notrack_rules6(&br.0), 1, "b still uses the bridge (IPv6)");
    let d = pipework_ok(&["detach", &b.spec()]);
    assert_eq!(
        notrack_rules(&br.0),
        0,
        "gone with the last detach: {}",
        raw_rules()
    );
    assert_eq!(
        notrack_rules6(&br.0),
        0,
        "IPv6 gone with the last detach: {}",
        raw_rules6()
    );
    for t in ["iptables", "ip6tables"] {
        assert!(
            stderr(&d).contains(&format!(
                "removed {t} rule pipework:{} from raw PREROUTING",
                br.0
            )),
            "the detach says so: {}",
            stderr(&d)
        );
    }
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
    assert_eq!(notrack_rules6(&br.0), 0, "{}", raw_rules6());
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
    // address loses that family's rule at the next attach; a link-local
    // IPv6 address (every up bridge has one) does not count.
    let br = BridgeGuard::new("pwja");
    ok("ip", &["link", "add", &br.0, "type", "bridge"]);
    ok("ip", &["link", "set", &br.0, "up"]);
    let (a, b, c) = (Netns::new("pwjr"), Netns::new("pwjs"), Netns::new("pwjt"));
    pipework_ok(&[&br.0, &a.spec(), "10.254.203.2/24"]);
    assert_eq!(notrack_rules(&br.0), 1, "{}", raw_rules());
    assert_eq!(notrack_rules6(&br.0), 1, "{}", raw_rules6());
    // With a port up the bridge has carrier, and the kernel gives it its
    // link-local address.
    let ll = || {
        ok(
            "ip",
            &["-6", "-o", "addr", "show", "dev", &br.0, "scope", "link"],
        )
    };
    for _ in 0..100 {
        if ll().contains("fe80::") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(ll().contains("fe80::"), "no link-local address: {}", ll());

    ok("ip", &["addr", "add", "10.254.203.1/24", "dev", &br.0]);
    let o = pipework_ok(&[&br.0, &b.spec(), "10.254.203.3/24@10.254.203.1"]);
    assert_eq!(notrack_rules(&br.0), 0, "{}", raw_rules());
    assert!(
        stderr(&o).contains("has an IPv4 address"),
        "says why: {}",
        stderr(&o)
    );
    assert_eq!(
        notrack_rules6(&br.0),
        1,
        "link-local only: the IPv6 rule stays: {}",
        raw_rules6()
    );

    ok(
        "ip",
        &["addr", "add", "2001:db8:203::1/64", "dev", &br.0, "nodad"],
    );
    let o = pipework_ok(&[&br.0, &c.spec(), "10.254.203.4/24@10.254.203.1"]);
    assert_eq!(notrack_rules6(&br.0), 0, "{}", raw_rules6());
    assert!(
        stderr(&o).contains("has an IPv6 address other than link-local"),
        "says why: {}",
        stderr(&o)
    );
    // The accept rule stays while attachments use the bridge.
    assert!(ok("iptables", &["-w", "-S"]).contains(&format!("pipework:{}", br.0)));
    for g in [&a, &b, &c] {
        pipework_ok(&["detach", &g.spec()]);
    }
    assert_eq!(notrack_rules(&br.0), 0, "{}", raw_rules());
    assert_eq!(notrack_rules6(&br.0), 0, "{}", raw_rules6());
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
    let raw6_before = raw_rules6();
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
    assert_eq!(notrack_rules6(&br.0), 0, "rolled back: {}", raw_rules6());
    assert_same(&raw_before, &raw_rules(), "raw table");
    assert_same(&raw6_before, &raw_rules6(), "ip6tables raw table");
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
    // Kill pipework right after each iptables or ip6tables run (its K-th
    // wait4), one call further each time, until a run finishes. Two kills
    // matter: after the IPv4 rule went in (IPv6 not yet), and after the
    // IPv6 one, both before the attach finished. After every kill, `gc`
    // must leave each rule exactly when an attachment of ours is on the
    // bridge.
    let (mut v4_only, mut both) = (false, false);
    for k in 1..60 {
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
        let (r4, r6) = (notrack_rules(&br.0), notrack_rules6(&br.0));
        v4_only |= r4 == 1 && r6 == 0;
        both |= r4 == 1 && r6 == 1;
        let g = pipework(&["gc"]);
        assert!(g.status.success(), "gc after kill {k}: {}", stderr(&g));
        // gc finished or rolled back the attach; either way the rules
        // follow whether an attachment of ours is on the bridge.
        let attached = !a.links_but_lo().is_empty()
            && ok("ip", &["-o", "link", "show", "master", &br.0])
                .lines()
                .any(|l| !l.contains(" pw."));
        let want = usize::from(attached);
        assert_eq!(notrack_rules(&br.0), want, "kill {k}, gc: {}", raw_rules());
        assert_eq!(
            notrack_rules6(&br.0),
            want,
            "kill {k}, gc: {}",
            raw_rules6()
        );
        if attached {
            pipework_ok(&["detach", &spec]);
            assert_eq!(notrack_rules(&br.0) + notrack_rules6(&br.0), 0);
        }
    }
    assert!(v4_only, "no kill landed between the IPv4 and the IPv6 rule");
    assert!(both, "no kill landed after the IPv6 rule was added");
    let _ = pipework(&["detach", &spec]);
    assert_eq!(notrack_rules(&br.0), 0, "at the end: {}", raw_rules());
    assert_eq!(notrack_rules6(&br.0), 0, "at the end: {}", raw_rules6());
}

/// `fe80::1` as /proc/net/nf_conntrack prints it (every group 4 digits).
fn conntrack_form(ip: &str) -> String {
    let a: std::net::Ipv6Addr = ip.parse().expect("an IPv6 address");
    let g: Vec<String> = a.segments().iter().map(|s| format!("{s:04x}")).collect();
    g.join(":")
}

/// Deletes the test's conntrack-enabling rule when dropped.
struct Ip6Rule(Vec<String>);

impl Drop for Ip6Rule {
    fn drop(&mut self) {
        let mut a: Vec<&str> = vec!["-w", "-t", "raw", "-D"];
        a.extend(self.0.iter().map(String::as_str));
        let _ = Command::new("ip6tables").args(a).status();
    }
}

#[test]
fn ipv6_between_guests_skips_conntrack_and_link_local_keeps_it() {
    if !setup() {
        return;
    }
    // IPv6 conntrack runs in a namespace only once a rule there asks for
    // it (dockerd with ip6tables, a firewall's state rules; CT --notrack
    // does not ask). This one does, and matches nothing: its interface
    // does not exist.
    let probe = uniq("pwjc");
    let rule: Vec<String> = [
        "PREROUTING",
        "-i",
        &probe,
        "-m",
        "conntrack",
        "--ctstate",
        "NEW",
        "-m",
        "comment",
        "--comment",
        &probe,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut add = vec!["-w", "-t", "raw", "-A"];
    add.extend(rule.iter().map(String::as_str));
    ok("ip6tables", &add);
    let _rule = Ip6Rule(rule);

    let br = BridgeGuard::new("pwjv");
    let (a, b) = (Netns::new("pwjv"), Netns::new("pwjw"));
    for ns in [&a, &b] {
        for k in ["all", "default"] {
            // No duplicate address detection: the addresses work at once.
            ns.exec(&[
                "sysctl",
                "-q",
                "-w",
                &format!("net.ipv6.conf.{k}.accept_dad=0"),
            ]);
        }
    }
    let a6 = "2001:db8:207::2";
    let b6 = "2001:db8:207::3";
    pipework_ok(&[
        "--create",
        &br.0,
        &a.spec(),
        "10.254.207.2/24",
        "--ip",
        &format!("{a6}/64"),
    ]);
    pipework_ok(&[
        &br.0,
        &b.spec(),
        "10.254.207.3/24",
        "--ip",
        &format!("{b6}/64"),
    ]);
    assert_eq!(notrack_rules6(&br.0), 1, "{}", raw_rules6());
    let lines = stdout(&b.exec(&[
        "ip", "-6", "-o", "addr", "show", "dev", "eth1", "scope", "link",
    ]));
    let b_ll = lines
        .split_whitespace()
        .skip_while(|w| *w != "inet6")
        .nth(1)
        .and_then(|a| a.split('/').next())
        .unwrap_or_else(|| panic!("no link-local address on b's eth1: {lines}"))
        .to_string();
    // Over each address in turn: a TCP connect to a closed port on b (the
    // refusal proves the path works and the neighbour is known), then one
    // UDP datagram, whose conntrack entry stays 30 s (a refused TCP one
    // is gone at the RST). In order, so once the link-local entry shows,
    // the global datagram has crossed too.
    let script = format!(
        "import socket\n\
         for dst in [('{b6}', 9), ('{b_ll}%eth1', 9)]:\n\
         \ttry:\n\
         \t\tsocket.create_connection(dst, timeout=10)\n\
         \texcept ConnectionRefusedError:\n\
         \t\tprint('refused')\n\
         \tsocket.socket(socket.AF_INET6, socket.SOCK_DGRAM).sendto(b'x', dst)\n"
    );
    let o = a.exec(&["python3", "-c", &script]);
    assert_eq!(
        stdout(&o).matches("refused").count(),
        2,
        "both connects reach b: {} {}",
        stdout(&o),
        stderr(&o)
    );
    let global = format!("dst={} ", conntrack_form(b6));
    let local = format!("dst={} ", conntrack_form(&b_ll));
    let table = || std::fs::read_to_string("/proc/net/nf_conntrack").expect("conntrack table");
    let mut ct = table();
    for _ in 0..100 {
        if ct.contains(&local) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
        ct = table();
    }
    let mine: Vec<&str> = ct.lines().filter(|l| l.starts_with("ipv6")).collect();
    assert!(
        !mine.iter().any(|l| l.contains(&global)),
        "global-to-global frames within the bridge are untracked: {mine:#?}"
    );
    assert!(
        mine.iter().any(|l| l.contains(&local)),
        "link-local frames keep conntrack: {mine:#?}"
    );
    pipework_ok(&["detach", &a.spec()]);
    pipework_ok(&["detach", &b.spec()]);
}

#[test]
fn a_bad_veth_queue_count_is_refused_and_changes_nothing() {
    if !setup() {
        return;
    }
    let br = BridgeGuard::new("pwjq");
    let a = Netns::new("pwjq");
    let before = host_state();
    let o = Command::new(BIN)
        .args(["--create", &br.0, &a.spec(), "10.254.209.2/24"])
        .env("DOCKER_HOST", docker_host())
        .env("PIPEWORK_VETH_QUEUES", "65")
        .stdin(Stdio::null())
        .output()
        .expect("run pipework");
    assert!(!o.status.success(), "{}", stdout(&o));
    let e = stderr(&o);
    assert_eq!(e.lines().count(), 1, "one line: {e}");
    assert!(
        e.contains("PIPEWORK_VETH_QUEUES=65"),
        "names the token: {e}"
    );
    assert_same(&before, &host_state(), "host");
    assert!(a.links_but_lo().is_empty(), "{:?}", a.links_but_lo());
}
