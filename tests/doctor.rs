//! `pipework doctor A B`: every cause is built for real (namespaces,
//! veths, a bridge, iptables, a macvlan on a host parent), doctor runs
//! against it, and the answer is checked by its JSON cause kinds and exit
//! status. Doctor is read-only: around every run a snapshot of the host
//! (links, addresses, routes of both families in every table, iptables
//! filter and nat, the nftables ruleset, the sysctls it reads) and of each
//! namespace the test made (`ns_state` plus its sysctls) must come out
//! identical.
//!
//! Every object carries the `pwy` prefix and goes when the test ends,
//! also when it fails.
mod common;

use common::*;
use serde_json::Value;
use std::time::Instant;

/// A test's objects: one bridge, namespaces attached to it, and extra
/// host links; all removed on drop.
struct World {
    bridge: BridgeGuard,
    ns: Vec<Netns>,
    host_links: Vec<String>,
    /// Subnet prefix for this test, e.g. "10.213.7".
    net: String,
}

impl World {
    fn new(n: u8) -> World {
        World {
            bridge: BridgeGuard::new("pwyb"),
            ns: Vec::new(),
            host_links: Vec::new(),
            net: format!("10.213.{n}"),
        }
    }

    /// A namespace with lo up, attached to the bridge with `ip`.
    fn guest(&mut self, ip: &str) -> usize {
        let ns = Netns::new("pwy");
        ok("ip", &["-n", &ns.name, "link", "set", "lo", "up"]);
        if !ip.is_empty() {
            pipework_ok(&[&self.bridge.0, &ns.spec(), ip, "--create"]);
        }
        self.ns.push(ns);
        self.ns.len() - 1
    }

    fn spec(&self, i: usize) -> String {
        self.ns[i].spec()
    }

    fn in_ns(&self, i: usize, args: &[&str]) -> String {
        let mut a = vec!["-n", &self.ns[i].name];
        a.extend_from_slice(args);
        ok("ip", &a)
    }

    /// The host end (veth peer) of namespace `i`'s eth1.
    fn host_end(&self, i: usize) -> String {
        let link = self.in_ns(i, &["-o", "link", "show", "eth1"]);
        let peer: u32 = link
            .split("eth1@if")
            .nth(1)
            .and_then(|s| s.split(':').next())
            .and_then(|s| s.parse().ok())
            .expect("veth peer index");
        let host = ok("ip", &["-o", "link", "show"]);
        host.lines()
            .find(|l| l.starts_with(&format!("{peer}: ")))
            .and_then(|l| l.split(": ").nth(1))
            .and_then(|n| n.split('@').next())
            .expect("host end")
            .to_string()
    }

    /// Names of this test's host objects, for the snapshot.
    fn mine(&self) -> Vec<String> {
        let mut v = vec![self.bridge.0.clone()];
        v.extend(self.host_links.iter().cloned());
        for i in 0..self.ns.len() {
            let links = self.in_ns(i, &["-o", "link"]);
            // A peer in another named namespace (a point-to-point link)
            // shows as `link-netns NAME`: no host end then.
            if links.contains("eth1@if") && !links.contains("link-netns ") {
                v.push(self.host_end(i));
            }
        }
        v
    }

    fn snapshot(&self) -> String {
        snapshot(&self.mine(), &self.ns.iter().collect::<Vec<_>>())
    }

    /// A snapshot once the kernel is done with what the test just did
    /// (carrier coming up on a new veth, a route appearing with it): two
    /// in a row, 200 ms apart, that agree.
    fn settled(&self) -> String {
        let mut last = self.snapshot();
        for _ in 0..15 {
            std::thread::sleep(std::time::Duration::from_millis(200));
            let now = self.snapshot();
            if now == last {
                return now;
            }
            last = now;
        }
        last
    }

    /// Run doctor --json with the host snapshot taken around it; the
    /// exit status and the parsed answer.
    fn doctor(&self, args: &[&str]) -> (i32, Value) {
        let before = self.settled();
        let mut a = vec!["doctor"];
        a.extend_from_slice(args);
        a.push("--json");
        let t = Instant::now();
        let o = pipework(&a);
        let took = t.elapsed();
        let after = self.snapshot();
        assert_same(
            &before,
            &after,
            "host and namespaces across `pipework doctor`",
        );
        eprintln!(
            "doctor {args:?}: {:.0} ms\n{}",
            took.as_secs_f64() * 1e3,
            stdout(&o)
        );
        let v: Value = serde_json::from_str(&stdout(&o)).unwrap_or_else(|e| {
            panic!(
                "doctor --json is not JSON ({e}): {}{}",
                stdout(&o),
                stderr(&o)
            )
        });
        (o.status.code().unwrap_or(-1), v)
    }
}

/// The host (this test's objects and the shared lines doctor could touch
/// by mistake), the firewall, the sysctls doctor reads, and every
/// namespace in `nss`.
fn snapshot(mine: &[String], nss: &[&Netns]) -> String {
    // Only this test's names: an earlier test's links are still being
    // deleted by the kernel (netns teardown is asynchronous).
    let is_mine = |l: &str| mine.iter().any(|m| l.contains(m.as_str()));
    let mut s = String::new();
    // The host: our objects' lines, and the shared ones doctor could
    // touch by mistake (the uplink, default routes, lo). Lines of
    // other helpers' objects change on their own meanwhile.
    for args in [
        &["-o", "link", "show"][..],
        &["-o", "addr", "show"],
        &["route", "show", "table", "all"],
        &["-6", "route", "show", "table", "all"],
    ] {
        for l in ok("ip", args).lines() {
            if is_mine(l)
                || l.contains("eth0")
                || l.starts_with("default")
                || l.contains(" lo:")
                || l.contains(" dev lo ")
            {
                s.push_str(l);
                s.push('\n');
            }
        }
    }
    // Firewall: every rule but other helpers' pipework rules; counters
    // move with traffic.
    let mut fw = ok("iptables", &["-S"]);
    fw.push_str(&ok("iptables", &["-S", "-t", "nat"]));
    fw.push_str(&String::from_utf8_lossy(
        &sh("nft", &["list", "ruleset"]).stdout,
    ));
    // dockerd adds and removes its own rules (other helpers' containers
    // with published ports come and go): those name docker0 or its subnet.
    let docker_net: Option<String> = ok("ip", &["-o", "-4", "addr", "show", "docker0"])
        .split_whitespace()
        .skip_while(|w| *w != "inet")
        .nth(1)
        .map(|a| a.split('.').take(2).collect::<Vec<_>>().join(".") + ".");
    for l in fw.lines() {
        if l.contains("pipework:") && !is_mine(l) {
            continue;
        }
        if l.contains("docker0") || docker_net.as_deref().is_some_and(|d| l.contains(d)) {
            continue;
        }
        // Rules for other helpers' interfaces come and go with their tests.
        let names_iface = [" -i ", " -o ", "iifname ", "oifname "]
            .iter()
            .any(|k| l.contains(k));
        if names_iface && !is_mine(l) {
            continue;
        }
        let l = match l.find("counter packets") {
            Some(i) => {
                let rest = &l[i..];
                let end = rest.find(" bytes ").map(|j| j + 7).unwrap_or(rest.len());
                let tail = rest[end..].trim_start_matches(|c: char| c.is_ascii_digit());
                format!("{}counter{tail}", &l[..i])
            }
            None => l.to_string(),
        };
        s.push_str(&l);
        s.push('\n');
    }
    for k in [
        "net/bridge/bridge-nf-call-iptables",
        "net/ipv4/ip_forward",
        "net/ipv4/conf/all/rp_filter",
        "net/ipv4/conf/default/rp_filter",
    ] {
        let v = std::fs::read_to_string(format!("/proc/sys/{k}")).unwrap_or_default();
        s.push_str(&format!("{k}={v}"));
    }
    for n in nss {
        s.push_str(&ns_state(&n.path()));
        for k in ["all", "default", "eth1"] {
            let f = format!("/proc/sys/net/ipv4/conf/{k}/rp_filter");
            s.push_str(&stdout(&n.exec(&["cat", &f])));
        }
    }
    // IPv6 DAD finishes on its own time: a link-local address loses
    // "tentative" and gains its local route whenever it does.
    s.lines()
        .filter(|l| !l.starts_with("local fe80:"))
        .map(|l| {
            let l = l.split(" valid_lft").next().unwrap_or(l);
            l.replace(" linkdown", "").replace(" tentative", "")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

impl Drop for World {
    fn drop(&mut self) {
        for l in &self.host_links {
            let _ = sh("ip", &["link", "del", l]);
        }
    }
}

fn kinds(v: &Value) -> Vec<String> {
    v["causes"]
        .as_array()
        .expect("causes")
        .iter()
        .map(|c| c["kind"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[track_caller]
fn assert_cause(rc: i32, v: &Value, kind: &str) -> Value {
    assert_eq!(rc, 1, "a cause means exit 1: {v:#}");
    assert_eq!(v["ok"], false, "{v:#}");
    let c = v["causes"]
        .as_array()
        .expect("causes")
        .iter()
        .find(|c| c["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} cause in {v:#}"))
        .clone();
    for k in ["kind", "hop", "detail", "fix"] {
        assert!(c.get(k).is_some(), "cause lacks {k}: {c}");
    }
    c
}

/// A pair on one bridge, 10.213.N.2 and .3.
fn pair(n: u8) -> World {
    let mut w = World::new(n);
    let (a, b) = (format!("{}.2/24", w.net), format!("{}.3/24", w.net));
    w.guest(&a);
    w.guest(&b);
    w
}

/// A TCP listener inside namespace `path`, bound there by a thread that
/// entered it (the socket stays in that namespace).
fn listen_in(path: &str, port: u16) -> std::net::TcpListener {
    let path = path.to_string();
    std::thread::spawn(move || {
        let f = std::fs::File::open(&path).expect("open netns");
        nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        std::net::TcpListener::bind(("0.0.0.0", port)).expect("bind in namespace")
    })
    .join()
    .expect("listener thread")
}

#[test]
fn healthy_pair_is_ok_and_says_so() {
    if !require_env() {
        return;
    }
    let w = pair(1);
    let _l = listen_in(&w.ns[1].path(), 8080);
    let (rc, v) = w.doctor(&[&w.spec(0), &w.spec(1), "--port", "8080"]);
    assert_eq!(rc, 0, "{v:#}");
    assert_eq!(v["ok"], true);
    assert!(kinds(&v).is_empty(), "{v:#}");
    let hops = v["hops"].as_array().expect("hops");
    assert!(hops.iter().all(|h| h["ok"] == true), "{v:#}");
    for want in ["bridge ", "ping ", "tcp "] {
        assert!(
            hops.iter()
                .any(|h| h["hop"].as_str().unwrap_or("").starts_with(want)),
            "no {want} hop: {v:#}"
        );
    }
    // The text form: a line per hop, no ✗.
    let o = pipework(&["doctor", &w.spec(0), &w.spec(1)]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(text.contains("✓ bridge ") && !text.contains('✗'), "{text}");
    // B named by its address works the same.
    let (rc, v) = w.doctor(&[&w.spec(0), &format!("{}.3", w.net)]);
    assert_eq!(rc, 0, "{v:#}");
}

#[test]
fn host_end_down_is_link_down_with_the_command_that_fixes_it() {
    if !require_env() {
        return;
    }
    let w = pair(2);
    let he = w.host_end(0);
    ok("ip", &["link", "set", &he, "down"]);
    let (rc, v) = w.doctor(&[&w.spec(0), &w.spec(1)]);
    let c = assert_cause(rc, &v, "link-down");
    assert_eq!(c["fix"], format!("ip link set dev {he} up"), "{c}");
    assert!(
        !kinds(&v).contains(&"neigh-failed".to_string()),
        "a consequence is not a cause: {v:#}"
    );
    // The fix works.
    ok("ip", &["link", "set", &he, "up"]);
    let (rc, v) = w.doctor(&[&w.spec(0), &w.spec(1)]);
    assert_eq!(rc, 0, "{v:#}");
}

#[test]
fn guest_end_down_is_link_down_inside_the_guest() {
    if !require_env() {
        return;
    }
    let w = pair(3);
    w.in_ns(1, &["link", "set", "eth1", "down"]);
    let (rc, v) = w.doctor(&[&w.spec(0), &w.spec(1)]);
    let c = assert_cause(rc, &v, "link-down");
    let fix = c["fix"].as_str().unwrap_or_default();
    assert!(
        fix.contains(&w.ns[1].path()) && fix.ends_with("link set dev eth1 up"),
        "{c}"
    );
}

#[test]
fn subnet_mismatch_is_no_route_and_naming_both_subnets() {
    if !require_env() {
        return;
    }
    let mut w = World::new(4);
    w.guest("10.213.4.2/24");
    w.guest("10.213.44.3/24");
    let (rc, v) = w.doctor(&[&w.spec(0), &w.spec(1)]);
    let c = assert_cause(rc, &v, "no-route");
    let d = c["detail"].as_str().unwrap_or_default();
    assert!(
        d.contains("10.213.4.2/24") && d.contains("10.213.44.3/24"),
        "{c}"
    );
}

#[test]
fn a_guest_without_address_is_no_address() {
    if !require_env() {
        return;
    }
    let w = pair(5);
    w.in_ns(0, &["addr", "flush", "dev", "eth1"]);
    let (rc, v) = w.doctor(&[&w.spec(0), &w.spec(1)]);
    assert_cause(rc, &v, "no-address");
}

#[test]
fn mtu_1280_against_1500_is_mtu_mismatch() {
    if !require_env() {
        return;
    }
    let w = pair(6);
    w.in_ns(1, &["link", "set", "eth1", "mtu", "1280"]);
    let (rc, v) = w.doctor(&[&w.spec(0), &w.spec(1)]);
    let c = assert_cause(rc, &v, "mtu-mismatch");
    assert!(
        c["fix"].as_str().unwrap_or_default().ends_with("mtu 1280"),
        "{c}"
    );
    assert!(
        c["detail"].as_str().unwrap_or_default().contains("1500"),
        "{c}"
    );
}

#[test]
fn no_answer_to_arp_is_neigh_failed() {
    if !require_env() {
        return;
    }
    let w = pair(7);
    // B stops answering ARP: everything else along the path is fine.
    w.in_ns(1, &["link", "set", "eth1", "arp", "off"]);
    let (rc, v) = w.doctor(&[&w.spec(0), &w.spec(1)]);
    let c = assert_cause(rc, &v, "neigh-failed");
    assert_eq!(kinds(&v), vec!["neigh-failed"], "{v:#}");
    assert!(
        c["fix"]
            .as_str()
            .unwrap_or_default()
            .ends_with("link set dev eth1 arp on"),
        "{c}"
    );
    // Nobody owns the address: A's ARP goes unanswered.
    let (rc, v) = w.doctor(&[&w.spec(0), "10.213.7.99"]);
    assert_cause(rc, &v, "neigh-failed");
    assert_eq!(kinds(&v), vec!["neigh-failed"], "{v:#}");
}

#[test]
fn closed_port_is_port_closed() {
    if !require_env() {
        return;
    }
    let w = pair(8);
    let (rc, v) = w.doctor(&[&w.spec(0), &w.spec(1), "--port", "8081"]);
    assert_cause(rc, &v, "port-closed");
    assert_eq!(kinds(&v), vec!["port-closed"], "{v:#}");
}

#[test]
fn docker_user_rule_removed_is_forward_drop() {
    if !require_env() {
        return;
    }
    let fw = ok("iptables", &["-S"]);
    assert!(
        fw.contains("-P FORWARD DROP") && fw.contains("-N DOCKER-USER"),
        "this test needs dockerd's FORWARD DROP and DOCKER-USER: {fw}"
    );
    let w = pair(9);
    let br = w.bridge.0.clone();
    let c = format!("pipework:{br}");
    let rule = [
        "-i",
        &br,
        "-o",
        &br,
        "-m",
        "comment",
        "--comment",
        &c,
        "-j",
        "ACCEPT",
    ];
    let mut del = vec!["-w", "-D", "DOCKER-USER"];
    del.extend_from_slice(&rule);
    ok("iptables", &del);
    let (rc, v) = w.doctor(&[&w.spec(0), &w.spec(1)]);
    let cause = assert_cause(rc, &v, "forward-drop");
    let fix = cause["fix"].as_str().unwrap_or_default().to_string();
    assert!(fix.starts_with("iptables -I DOCKER-USER -i "), "{cause}");
    // The fix, run as given (split on spaces: no quoting in it), heals it.
    let words: Vec<&str> = fix.split(' ').skip(1).collect();
    ok("iptables", &words);
    let (rc, v) = w.doctor(&[&w.spec(0), &w.spec(1)]);
    assert_eq!(rc, 0, "{v:#}");
}

#[test]
fn strict_rp_filter_on_an_asymmetric_way_back_is_rp_filter() {
    if !require_env() {
        return;
    }
    let w = pair(10);
    // B answers A through a second interface; strict rp_filter then drops
    // A's packets arriving on eth1.
    let n = &w.ns[1].name;
    ok(
        "ip",
        &[
            "-n", n, "link", "add", "pwyrp0", "type", "veth", "peer", "name", "pwyrp1",
        ],
    );
    for l in ["pwyrp0", "pwyrp1"] {
        ok("ip", &["-n", n, "link", "set", l, "up"]);
    }
    ok(
        "ip",
        &["-n", n, "addr", "add", "10.213.110.1/24", "dev", "pwyrp0"],
    );
    ok(
        "ip",
        &[
            "-n",
            n,
            "route",
            "add",
            "10.213.10.2/32",
            "via",
            "10.213.110.2",
            "dev",
            "pwyrp0",
        ],
    );
    ok(
        "ip",
        &[
            "netns",
            "exec",
            n,
            "sysctl",
            "-qw",
            "net.ipv4.conf.all.rp_filter=1",
        ],
    );
    let (rc, v) = w.doctor(&[&w.spec(0), &w.spec(1)]);
    let c = assert_cause(rc, &v, "rp-filter");
    let fix = c["fix"].as_str().unwrap_or_default().to_string();
    assert!(
        fix.ends_with("ip route replace 10.213.10.2 dev eth1"),
        "{c}"
    );
    // Loose mode lets A's packets in, but the replies still leave by
    // pwyrp0 and never reach A: the way back is the cause now.
    ok(
        "ip",
        &[
            "netns",
            "exec",
            n,
            "sysctl",
            "-qw",
            "net.ipv4.conf.all.rp_filter=2",
        ],
    );
    let (rc, v) = w.doctor(&[&w.spec(0), &w.spec(1)]);
    assert_cause(rc, &v, "no-route");
    assert_eq!(kinds(&v), vec!["no-route"], "{v:#}");
    // The fix, as given, heals both.
    ok(
        "ip",
        &[
            "netns",
            "exec",
            n,
            "sysctl",
            "-qw",
            "net.ipv4.conf.all.rp_filter=1",
        ],
    );
    let words: Vec<&str> = fix.split(' ').collect();
    ok(words[0], &words[1..]);
    let (rc, v) = w.doctor(&[&w.spec(0), &w.spec(1)]);
    assert_eq!(rc, 0, "{v:#}");
}

#[test]
fn macvlan_guest_and_its_own_host_is_macvlan_host_and_the_shim_fixes_it() {
    if !require_env() {
        return;
    }
    let mut w = World::new(11);
    // The host parent: one end of a veth pair in the host namespace (the
    // kernel here has no dummy), with the host's address on it.
    let p = uniq("pwyp");
    let q = uniq("pwyq");
    ok(
        "ip",
        &["link", "add", &p, "type", "veth", "peer", "name", &q],
    );
    w.host_links.push(p.clone());
    for l in [&p, &q] {
        ok("ip", &["link", "set", l, "up"]);
    }
    ok("ip", &["addr", "add", "198.18.211.1/24", "dev", &p]);
    let g = w.guest("");
    pipework_ok(&[&p, &w.spec(g), "198.18.211.2/24"]);
    let (rc, v) = w.doctor(&[&w.spec(g), "host"]);
    let c = assert_cause(rc, &v, "macvlan-host");
    let fix = c["fix"].as_str().unwrap_or_default().to_string();
    assert_eq!(
        fix,
        format!("pipework host-shim {p} 198.18.211.250/24"),
        "{c}"
    );
    // The fix, as given, makes them talk.
    let args: Vec<&str> = fix.split(' ').skip(1).collect();
    pipework_ok(&args);
    w.host_links.push(format!("shim-{p}"));
    let (rc, v) = w.doctor(&[&w.spec(g), "host"]);
    assert_eq!(rc, 0, "{v:#}");
}

#[test]
fn guest_chosen_names_and_forged_records_are_escaped_and_not_followed() {
    if !require_env() {
        return;
    }
    let w = pair(12);
    // A forged record (a tag that does not verify) naming a host bridge,
    // with an escape sequence in it, on A's eth1.
    let forged = "pipework {\"k\":\"bridge\",\"h\":\"docker0\\u001b[2J\",\"g\":\"x\",\"if\":\"eth1\",\"n\":1,\"t\":\"AAAAAAAAAAAAAAAA\"}";
    w.in_ns(0, &["link", "set", "eth1", "alias", forged]);
    // B renames its interface to one holding ESC.
    w.in_ns(1, &["link", "set", "eth1", "down"]);
    w.in_ns(1, &["link", "set", "eth1", "name", "e\u{1b}[2J"]);
    w.in_ns(1, &["link", "set", "e\u{1b}[2J", "up"]);
    w.in_ns(
        1,
        &["route", "replace", "10.213.12.0/24", "dev", "e\u{1b}[2J"],
    );
    let o = pipework(&["doctor", &w.spec(0), &w.spec(1)]);
    assert!(
        !o.stdout.contains(&0x1b) && !o.stderr.contains(&0x1b),
        "raw ESC in output"
    );
    let text = stdout(&o);
    assert!(text.contains("forged"), "{text}");
    assert!(text.contains("e\\x1b[2J"), "{text}");
    assert_eq!(o.status.code(), Some(0), "{text}{}", stderr(&o));
}

/// A guest names its interface `$(id>pwyx)` and takes it down: doctor's
/// fix names it single-quoted, and the fix pasted into a shell (as an
/// operator would, here in a scratch directory) brings the link up without
/// running the guest's command.
#[test]
fn a_guest_interface_named_like_a_command_is_quoted_in_the_fix() {
    if !require_env() {
        return;
    }
    let w = pair(14);
    let evil = "$(id>pwyx)";
    w.in_ns(1, &["link", "set", "eth1", "down"]);
    w.in_ns(1, &["link", "set", "eth1", "name", evil]);
    let (rc, v) = w.doctor(&[&w.spec(0), &w.spec(1)]);
    let c = assert_cause(rc, &v, "link-down");
    let fix = c["fix"].as_str().unwrap_or_default().to_string();
    assert!(
        fix.ends_with(&format!("link set dev '{evil}' up")),
        "the guest's name must be single-quoted: {c}"
    );
    let dir = std::env::temp_dir().join(format!("pwy-sh-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let o = std::process::Command::new("sh")
        .args(["-c", &fix])
        .current_dir(&dir)
        .output()
        .expect("sh");
    let planted = dir.join("pwyx").exists();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(o.status.success(), "the fix fails: {}", stderr(&o));
    assert!(!planted, "the guest's command ran from the fix");
    let link = w.in_ns(1, &["-o", "link", "show", "dev", evil]);
    assert!(link.contains(",UP"), "the fix did not bring it up: {link}");
}

#[test]
fn usage_errors_exit_2_and_change_nothing() {
    if !require_env() {
        return;
    }
    let w = pair(13);
    for (args, token) in [
        (vec!["doctor", "10.213.13.3", "host"], "10.213.13.3"),
        (vec!["doctor", "netns:pwynosuch", "host"], "pwynosuch"),
        (vec!["doctor", "host"], "required"),
        (vec!["doctor", "host", "host", "--port", "0"], "0"),
    ] {
        let before = w.settled();
        let o = pipework(&args);
        assert_same(&before, &w.snapshot(), "host across a refused doctor");
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        let e = stderr(&o);
        assert!(e.lines().count() == 1 && e.contains(token), "{args:?}: {e}");
    }
}

/// A private Open vSwitch (ovsdb-server + ovs-vswitchd, userspace
/// datapath) inside its own "host" namespace, so its tap devices and
/// ports never touch the real host or a shared OVS; stopped by pid.
struct PrivateOvs {
    host: Netns,
    dir: String,
    sock: String,
}

impl PrivateOvs {
    fn start() -> Option<PrivateOvs> {
        if sh("which", &["ovs-vswitchd"]).stdout.is_empty() {
            eprintln!("SKIP: no ovs-vswitchd");
            return None;
        }
        let host = Netns::new("pwyh");
        ok("ip", &["-n", &host.name, "link", "set", "lo", "up"]);
        let dir = format!("/tmp/{}-ovs", host.name);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("ovs dir");
        let sock = format!("{dir}/db.sock");
        let db = format!("unix:{sock}");
        let o = PrivateOvs { host, dir, sock };
        let d = &o.dir;
        ok(
            "ovsdb-tool",
            &[
                "create",
                &format!("{d}/conf.db"),
                "/usr/share/openvswitch/vswitch.ovsschema",
            ],
        );
        o.exec(&[
            "ovsdb-server",
            &format!("{d}/conf.db"),
            &format!("--remote=punix:{}", o.sock),
            &format!("--pidfile={d}/ovsdb.pid"),
            &format!("--unixctl={d}/ovsdb.ctl"),
            &format!("--log-file={d}/ovsdb.log"),
            "--detach",
        ]);
        o.exec(&["ovs-vsctl", &format!("--db={db}"), "--no-wait", "init"]);
        o.exec(&[
            "ovs-vsctl",
            &format!("--db={db}"),
            "--no-wait",
            "set",
            "Open_vSwitch",
            ".",
            "other_config:userspace-tso-enable=true",
        ]);
        o.exec(&[
            "env",
            &format!("OVS_RUNDIR={d}"),
            "ovs-vswitchd",
            &db,
            &format!("--pidfile={d}/vswitchd.pid"),
            &format!("--unixctl={d}/vswitchd.ctl"),
            &format!("--log-file={d}/vswitchd.log"),
            "--detach",
        ]);
        Some(o)
    }

    #[track_caller]
    fn exec(&self, args: &[&str]) -> String {
        let mut a = vec!["netns", "exec", &self.host.name];
        a.extend_from_slice(args);
        ok("ip", &a)
    }

    /// pipework run in the private host namespace, against this OVS.
    fn pipework(&self, args: &[&str]) -> std::process::Output {
        let env = format!("PIPEWORK_OVSDB=unix:{}", self.sock);
        let mut a = vec!["netns", "exec", &self.host.name, "env", &env, BIN];
        a.extend_from_slice(args);
        sh("ip", &a)
    }
}

impl Drop for PrivateOvs {
    fn drop(&mut self) {
        for p in ["vswitchd.pid", "ovsdb.pid"] {
            if let Some(pid) = std::fs::read_to_string(format!("{}/{p}", self.dir))
                .ok()
                .and_then(|s| s.trim().parse::<i32>().ok())
            {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGTERM,
                );
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(300));
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn ovs_tags_10_and_20_are_vlan_mismatch() {
    if !require_env() {
        return;
    }
    let Some(ovs) = PrivateOvs::start() else {
        return;
    };
    let br = uniq("ovspwy");
    ovs.exec(&[
        "ovs-vsctl",
        &format!("--db=unix:{}", ovs.sock),
        "add-br",
        &br,
        "--",
        "set",
        "bridge",
        &br,
        "datapath_type=netdev",
    ]);
    let a = Netns::new("pwy");
    let b = Netns::new("pwy");
    for n in [&a, &b] {
        ok("ip", &["-n", &n.name, "link", "set", "lo", "up"]);
    }
    for (n, ip, tag) in [(&a, "10.213.30.1/24", "@10"), (&b, "10.213.30.2/24", "@20")] {
        let o = ovs.pipework(&[&br, &n.spec(), ip, tag]);
        assert!(o.status.success(), "attach: {}", stderr(&o));
    }
    let snap = || {
        [&ovs.host, &a, &b]
            .iter()
            .map(|n| ns_state(&n.path()))
            .collect::<Vec<_>>()
            .join("\n")
            .lines()
            .filter(|l| !l.starts_with("local fe80:"))
            .map(|l| {
                l.split(" valid_lft")
                    .next()
                    .unwrap_or(l)
                    .replace(" tentative", "")
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    let doctor = |b_spec: &str| -> (i32, Value) {
        std::thread::sleep(std::time::Duration::from_millis(300));
        let before = snap();
        let o = ovs.pipework(&["doctor", &a.spec(), b_spec, "--json"]);
        assert_same(
            &before,
            &snap(),
            "namespaces across `pipework doctor` on OVS",
        );
        eprintln!("{}", stdout(&o));
        let v: Value = serde_json::from_str(&stdout(&o))
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}{}", stdout(&o), stderr(&o)));
        (o.status.code().unwrap_or(-1), v)
    };
    let (rc, v) = doctor(&b.spec());
    let c = assert_cause(rc, &v, "vlan-mismatch");
    let fix = c["fix"].as_str().unwrap_or_default().to_string();
    assert!(
        fix.starts_with("ovs-vsctl set Port ") && fix.ends_with(" tag=10"),
        "{c}"
    );
    assert_eq!(kinds(&v), vec!["vlan-mismatch"], "{v:#}");
    // The fix, as given (with the private OVS's socket), heals it.
    let words: Vec<String> = fix.split(' ').map(String::from).collect();
    let db = format!("--db=unix:{}", ovs.sock);
    let mut args: Vec<&str> = vec!["ovs-vsctl", &db];
    args.extend(words[1..].iter().map(String::as_str));
    ovs.exec(&args);
    let (rc, v) = doctor(&b.spec());
    assert_eq!(rc, 0, "{v:#}");
}

/// Two simulated hosts (namespaces on an underlay bridge in a third),
/// one etcd member on the first, an overlay agent on each, and a guest
/// behind each host on network `net`. Everything `pwy`, stopped by pid.
struct OverlayLab {
    p: String,
    ns: Vec<Netns>,
    etcd: Option<std::process::Child>,
    agents: Vec<Option<std::process::Child>>,
    urls: String,
    sub: u8,
}

impl OverlayLab {
    fn addr(&self, i: usize) -> String {
        format!("10.214.{}.{}", self.sub, i + 1)
    }

    fn host(&self, i: usize) -> &str {
        &self.ns[1 + i].name
    }

    fn new(sub: u8) -> Option<OverlayLab> {
        if sh("which", &["etcd"]).stdout.is_empty() {
            eprintln!("SKIP: no etcd");
            return None;
        }
        let ul = Netns::new("pwyu");
        let mut lab = OverlayLab {
            p: ul.name.clone(),
            ns: vec![ul],
            etcd: None,
            agents: vec![None, None],
            urls: String::new(),
            sub,
        };
        let ul = lab.ns[0].name.clone();
        ok("ip", &["-n", &ul, "link", "add", "ulbr", "type", "bridge"]);
        ok("ip", &["-n", &ul, "link", "set", "ulbr", "up"]);
        for i in 0..2 {
            let h = Netns::new("pwyh");
            let port = format!("{}u{i}", lab.p);
            ok(
                "ip",
                &[
                    "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns", &h.name,
                ],
            );
            ok("ip", &["link", "set", &port, "netns", &ul]);
            ok(
                "ip",
                &["-n", &ul, "link", "set", &port, "master", "ulbr", "up"],
            );
            let a = format!("{}/24", lab.addr(i));
            ok("ip", &["-n", &h.name, "addr", "add", &a, "dev", "eth0"]);
            ok("ip", &["-n", &h.name, "link", "set", "eth0", "up"]);
            ok("ip", &["-n", &h.name, "link", "set", "lo", "up"]);
            lab.ns.push(h);
        }
        let a0 = lab.addr(0);
        lab.urls = format!("http://{a0}:2379");
        let dir = format!("/tmp/{}-etcd", lab.p);
        let _ = std::fs::remove_dir_all(&dir);
        lab.etcd = Some(
            std::process::Command::new("ip")
                .args(["netns", "exec", lab.host(0), "etcd", "--name", "m0"])
                .args(["--data-dir", &dir])
                .args(["--listen-peer-urls", &format!("http://{a0}:2380")])
                .args([
                    "--initial-advertise-peer-urls",
                    &format!("http://{a0}:2380"),
                ])
                .args(["--initial-cluster", &format!("m0=http://{a0}:2380")])
                .args(["--listen-client-urls", &lab.urls])
                .args(["--advertise-client-urls", &lab.urls])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("etcd"),
        );
        lab.wait("etcd", |l| {
            sh(
                "ip",
                &[
                    "netns",
                    "exec",
                    l.host(0),
                    "etcdctl",
                    "--endpoints",
                    &l.urls,
                    "put",
                    "/pwy",
                    "x",
                ],
            )
            .status
            .success()
        });
        for i in 0..2 {
            lab.start_agent(i);
        }
        Some(lab)
    }

    fn start_agent(&mut self, i: usize) {
        let c = std::process::Command::new("ip")
            .args(["netns", "exec", self.host(i), BIN, "overlay", "agent"])
            .args([
                "--underlay",
                "eth0",
                "--name",
                &format!("h{i}"),
                "--ttl",
                "3",
            ])
            .env("PIPEWORK_ETCD", &self.urls)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("agent");
        self.agents[i] = Some(c);
        let key = format!("/pipework/overlay/host/h{i}");
        self.wait("agent registration", |l| {
            l.etcdctl(&["get", &key]).contains(&key)
        });
    }

    fn kill_agent(&mut self, i: usize) {
        if let Some(mut c) = self.agents[i].take() {
            // `ip netns exec` execs the agent: this pid is the agent's.
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn etcdctl(&self, args: &[&str]) -> String {
        let mut a = vec![
            "netns",
            "exec",
            self.host(0),
            "etcdctl",
            "--endpoints",
            &self.urls,
        ];
        a.extend_from_slice(args);
        stdout(&sh("ip", &a))
    }

    #[track_caller]
    fn wait(&self, what: &str, f: impl Fn(&OverlayLab) -> bool) {
        let t0 = Instant::now();
        while !f(self) {
            assert!(t0.elapsed().as_secs() < 30, "timed out waiting for {what}");
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }

    /// pipework on host `i`.
    fn pw(&self, i: usize, args: &[&str]) -> std::process::Output {
        std::process::Command::new("ip")
            .args(["netns", "exec", self.host(i), BIN])
            .args(args)
            .env("PIPEWORK_ETCD", &self.urls)
            .stdin(std::process::Stdio::null())
            .output()
            .expect("pipework")
    }

    fn snapshot(&self) -> String {
        self.ns
            .iter()
            .map(|n| ns_state(&n.path()))
            .collect::<Vec<_>>()
            .join("\n")
            .lines()
            .filter(|l| !l.starts_with("local fe80:"))
            .map(|l| {
                l.split(" valid_lft")
                    .next()
                    .unwrap_or(l)
                    .replace(" tentative", "")
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// doctor on host 0, A to B, snapshots of every namespace around it.
    fn doctor(&self, a: &str, b: &str) -> (i32, Value) {
        std::thread::sleep(std::time::Duration::from_millis(200));
        let before = self.snapshot();
        let t = Instant::now();
        let o = self.pw(0, &["doctor", a, b, "--json"]);
        let took = t.elapsed();
        assert_same(
            &before,
            &self.snapshot(),
            "namespaces across `pipework doctor` on the overlay",
        );
        eprintln!(
            "overlay doctor: {:.0} ms\n{}{}",
            took.as_secs_f64() * 1e3,
            stdout(&o),
            stderr(&o)
        );
        let v: Value = serde_json::from_str(&stdout(&o))
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}{}", stdout(&o), stderr(&o)));
        (o.status.code().unwrap_or(-1), v)
    }
}

impl Drop for OverlayLab {
    fn drop(&mut self) {
        for i in 0..self.agents.len() {
            self.kill_agent(i);
        }
        if let Some(mut c) = self.etcd.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(format!("/tmp/{}-etcd", self.p));
        for n in &self.ns {
            // The agent's signed state for this namespace (by its inode).
            if let Ok(m) = std::fs::metadata(n.path()) {
                use std::os::unix::fs::MetadataExt;
                let _ = std::fs::remove_dir_all(format!("/run/pipework/overlay/{}", m.ino()));
            }
        }
    }
}

#[test]
fn overlay_entry_deleted_then_peer_agent_killed() {
    if !require_env() {
        return;
    }
    let Some(mut lab) = OverlayLab::new(1) else {
        return;
    };
    let net = "pwyred";
    let o = lab.pw(0, &["overlay", "create", net, "--subnet", "10.215.1.0/24"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let a = Netns::new("pwy");
    let b = Netns::new("pwy");
    for (i, n, ip) in [(0, &a, "10.215.1.2/24"), (1, &b, "10.215.1.3/24")] {
        ok("ip", &["-n", &n.name, "link", "set", "lo", "up"]);
        let o = lab.pw(i, &[net, &n.spec(), ip]);
        assert!(o.status.success(), "attach on h{i}: {}", stderr(&o));
    }
    let vx = format!("vx-{net}");
    lab.wait("B's entry on A's host", |l| {
        stdout(&sh("bridge", &["-n", l.host(0), "fdb", "show", "dev", &vx]))
            .contains("dst 10.214.1.2")
    });
    // Healthy first: the checks below fail for their cause, not another.
    let (rc, v) = lab.doctor(&a.spec(), &b.spec());
    assert_eq!(rc, 0, "{v:#}");
    assert!(
        v["hops"]
            .as_array()
            .expect("hops")
            .iter()
            .any(|h| h["hop"] == format!("overlay {net} {vx}")),
        "{v:#}"
    );

    // The FDB entry for B deleted on A's host.
    let fdb = stdout(&sh(
        "bridge",
        &["-n", lab.host(0), "fdb", "show", "dev", &vx],
    ));
    let line = fdb
        .lines()
        .find(|l| l.contains("dst 10.214.1.2"))
        .expect("entry")
        .to_string();
    let mac = line.split_whitespace().next().expect("mac").to_string();
    ok(
        "bridge",
        &[
            "-n",
            lab.host(0),
            "fdb",
            "del",
            &mac,
            "dev",
            &vx,
            "dst",
            "10.214.1.2",
        ],
    );
    let (rc, v) = lab.doctor(&a.spec(), &b.spec());
    let c = assert_cause(rc, &v, "overlay-no-entry");
    let fix = c["fix"].as_str().unwrap_or_default().to_string();
    assert!(
        fix.starts_with(&format!("bridge fdb replace {mac} dev {vx} dst 10.214.1.2")),
        "{c}"
    );
    // The fix, as given, heals it.
    let words: Vec<&str> = fix.split(' ').collect();
    let mut args = vec!["-n", lab.host(0)];
    args.extend_from_slice(&words[1..]);
    ok("bridge", &args);
    let (rc, v) = lab.doctor(&a.spec(), &b.spec());
    assert_eq!(rc, 0, "{v:#}");

    // B's host taken out of the VXLAN guard on A's host: B's replies are
    // dropped on arrival. The fix, as given, puts it back.
    ok(
        "ip",
        &[
            "netns",
            "exec",
            lab.host(0),
            "nft",
            "delete",
            "element",
            "inet",
            "pipework_vxlan",
            "hosts4",
            "{ 10.214.1.2 }",
        ],
    );
    let (rc, v) = lab.doctor(&a.spec(), &b.spec());
    let c = assert_cause(rc, &v, "overlay-filtered");
    let fix = c["fix"].as_str().unwrap_or_default().to_string();
    assert_eq!(
        fix, "nft add element inet pipework_vxlan hosts4 { 10.214.1.2 }",
        "{c}"
    );
    let mut args = vec!["netns", "exec", lab.host(0)];
    args.extend(fix.splitn(6, ' '));
    ok("ip", &args);
    let (rc, v) = lab.doctor(&a.spec(), &b.spec());
    assert_eq!(rc, 0, "{v:#}");

    // A's agent stopped (it would re-create the device), then the
    // network's definition given another VNI: A's device no longer
    // matches it.
    lab.kill_agent(0);
    let key = format!("/pipework/overlay/net/{net}");
    let text = lab.etcdctl(&["get", "--print-value-only", &key]);
    let mut spec: Value = serde_json::from_str(text.trim()).expect("network record");
    let vni = spec["vni"].as_u64().expect("vni");
    spec["vni"] = Value::from(vni + 7);
    lab.etcdctl(&["put", &key, &spec.to_string()]);
    let (rc, v) = lab.doctor(&a.spec(), &b.spec());
    assert_cause(rc, &v, "overlay-agent-down");
    let c = assert_cause(rc, &v, "overlay-device-mismatch");
    assert!(
        c["detail"]
            .as_str()
            .unwrap_or_default()
            .contains(&format!("VNI {vni} (the network's is {})", vni + 7)),
        "{c}"
    );
    spec["vni"] = Value::from(vni);
    lab.etcdctl(&["put", &key, &spec.to_string()]);
    let (_, v) = lab.doctor(&a.spec(), &b.spec());
    assert!(
        !kinds(&v).contains(&"overlay-device-mismatch".to_string()),
        "{v:#}"
    );

    // B's host agent killed: its lease (3 s) takes host and endpoint away.
    lab.kill_agent(1);
    lab.wait("h1's lease to expire", |l| {
        !l.etcdctl(&["get", "/pipework/overlay/host/h1"])
            .contains("h1")
    });
    let (rc, v) = lab.doctor(&a.spec(), &b.spec());
    assert_cause(rc, &v, "overlay-peer-down");
    // A's own agent has been down since the VNI check.
    assert_cause(rc, &v, "overlay-agent-down");
}

#[test]
fn docker_containers_by_name_then_docker_user_rule_removed() {
    if !require_env() {
        return;
    }
    let br = BridgeGuard::new("pwyb");
    let a = Container::run("pwy");
    let b = Container::run("pwy");
    pipework_ok(&[&br.0, &a.name, "10.213.40.2/24", "--create"]);
    pipework_ok(&[&br.0, &b.name, "10.213.40.3/24"]);
    let snap = || {
        std::thread::sleep(std::time::Duration::from_millis(300));
        format!(
            "{}\n{}\n{}",
            snapshot(std::slice::from_ref(&br.0), &[]),
            a.net_state(),
            b.net_state()
        )
    };
    let run = || -> (i32, Value) {
        let before = snap();
        let o = pipework(&["doctor", &a.name, &b.name, "--json"]);
        assert_same(
            &before,
            &snap(),
            "host and containers across `pipework doctor`",
        );
        let v: Value = serde_json::from_str(&stdout(&o))
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}{}", stdout(&o), stderr(&o)));
        (o.status.code().unwrap_or(-1), v)
    };
    let (rc, v) = run();
    assert_eq!(rc, 0, "{v:#}");
    let c = format!("pipework:{}", br.0);
    ok(
        "iptables",
        &[
            "-w",
            "-D",
            "DOCKER-USER",
            "-i",
            &br.0,
            "-o",
            &br.0,
            "-m",
            "comment",
            "--comment",
            &c,
            "-j",
            "ACCEPT",
        ],
    );
    let (rc, v) = run();
    let cause = assert_cause(rc, &v, "forward-drop");
    assert!(
        cause["fix"]
            .as_str()
            .unwrap_or_default()
            .starts_with("iptables -I DOCKER-USER"),
        "{cause}"
    );
}

#[test]
fn point_to_point_link_healthy_then_one_end_down() {
    if !require_env() {
        return;
    }
    let mut w = World::new(50);
    let a = w.guest("");
    let b = w.guest("");
    pipework_ok(&[
        "link",
        &format!("{}:eth1", w.spec(a)),
        &format!("{}:eth1", w.spec(b)),
        "--ip-a",
        "10.213.50.1/30",
        "--ip-b",
        "10.213.50.2/30",
    ]);
    let (rc, v) = w.doctor(&[&w.spec(a), &w.spec(b)]);
    assert_eq!(rc, 0, "{v:#}");
    assert!(
        v["hops"].as_array().expect("hops").iter().any(|h| h["seen"]
            .as_str()
            .unwrap_or("")
            .starts_with("point-to-point veth")),
        "{v:#}"
    );
    w.in_ns(b, &["link", "set", "eth1", "down"]);
    let (rc, v) = w.doctor(&[&w.spec(a), &w.spec(b)]);
    assert_cause(rc, &v, "link-down");
}

#[test]
fn guest_and_host_without_a_host_address_on_the_bridge_is_no_route() {
    if !require_env() {
        return;
    }
    let w = pair(51);
    let br = w.bridge.0.clone();
    for (a, b) in [
        (w.spec(0), "host".to_string()),
        ("host".to_string(), w.spec(1)),
    ] {
        let (rc, v) = w.doctor(&[&a, &b]);
        let c = assert_cause(rc, &v, "no-route");
        assert_eq!(
            c["fix"],
            format!("ip addr add 10.213.51.250/24 dev {br}"),
            "{c}"
        );
    }
    ok("ip", &["addr", "add", "10.213.51.250/24", "dev", &br]);
    for (a, b) in [
        (w.spec(0), "host".to_string()),
        ("host".to_string(), w.spec(1)),
    ] {
        let (rc, v) = w.doctor(&[&a, &b]);
        assert_eq!(rc, 0, "{a} {b}: {v:#}");
    }
}
