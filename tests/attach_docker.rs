//! Root integration tests for the foundation issue, against a real dockerd
//! (scripts/env-up.sh) and real kernel objects. Run with --test-threads=1:
//! several tests compare whole-host snapshots.
mod common;
use common::*;

fn addr_of(c: &Container, ifname: &str) -> String {
    c.exec_ok(&["ip", "-o", "addr", "show", ifname])
}

#[test]
fn classic_forms_work_against_docker() {
    if !require_env() {
        return;
    }
    let g = BridgeGuard::new("brpwt");
    let br = g.0.clone();
    let c = Container::run("pwt-c");
    let id = stdout(&docker(&["inspect", "-f", "{{.Id}}", &c.name]))
        .trim()
        .to_string();

    // pipework br1 $CID 192.168.1.1/24 (by id)
    pipework_ok(&[&br, &id, "192.168.1.1/24"]);
    assert!(addr_of(&c, "eth1").contains("inet 192.168.1.1/24"));

    // pipework br1 web1 192.168.4.25/20@192.168.4.1 (by name, with gateway)
    pipework_ok(&[&br, &c.name, "-i", "eth2", "192.168.4.25/20@192.168.4.1"]);
    assert!(addr_of(&c, "eth2").contains("inet 192.168.4.25/20"));
    assert!(
        c.exec_ok(&["ip", "route"])
            .contains("default via 192.168.4.1 dev eth2")
    );

    // pipework br1 -i eth2 -l hostapp1 $CID 10.0.0.5/24
    let lif = uniq("pwtl");
    pipework_ok(&[&br, "-i", "eth3", "-l", &lif, &id[..12], "10.0.0.5/24"]);
    let host = ok("ip", &["-o", "link", "show", &lif]);
    assert!(host.contains(&format!("master {br}")), "{host}");
    assert!(host.contains("state UP"), "{host}");

    // pipework br1 $CID 0/0
    pipework_ok(&[&br, "-i", "eth4", &c.name, "0/0"]);
    let l = c.exec_ok(&["ip", "-o", "addr", "show", "eth4"]);
    assert!(!l.contains("inet "), "{l}");
    assert!(
        c.exec_ok(&["ip", "-o", "link", "show", "eth4"])
            .contains(",UP")
    );

    // pipework br1 $CID 10.0.0.2/24 26:2e:71:98:60:8f
    pipework_ok(&[
        &br,
        "-i",
        "eth5",
        &c.name,
        "10.0.0.2/24",
        "26:2e:71:98:60:8f",
    ]);
    assert!(
        c.exec_ok(&["ip", "link", "show", "eth5"])
            .contains("26:2e:71:98:60:8f")
    );

    // pipework br1 $CID 10.0.0.2/24 U:myhost.example.com — byte-identical to
    // the shell script: echo U-string | md5sum → 02: + first five bytes.
    pipework_ok(&[
        &br,
        "-i",
        "eth6",
        &c.name,
        "10.0.1.2/24",
        "U:myhost.example.com",
    ]);
    let sum = ok("sh", &["-c", "echo myhost.example.com | md5sum"]);
    let h = &sum[..10];
    let want = format!(
        "02:{}:{}:{}:{}:{}",
        &h[0..2],
        &h[2..4],
        &h[4..6],
        &h[6..8],
        &h[8..10]
    );
    assert!(
        c.exec_ok(&["ip", "link", "show", "eth6"]).contains(&want),
        "want {want}"
    );

    // MTU inherited from the bridge, both ends.
    assert!(
        c.exec_ok(&["ip", "link", "show", "eth1"])
            .contains("mtu 1500")
    );

    // ls --json lists all six.
    let ls = stdout(&pipework_ok(&["ls", "--json"]));
    let v: serde_json::Value = serde_json::from_str(&ls).expect("ls json");
    let mine = v
        .as_array()
        .map(|a| a.iter().filter(|e| e["guest"] == c.name.as_str()).count())
        .unwrap_or(0);
    assert_eq!(mine, 6, "ls found {mine} of 6");

    pipework_ok(&["detach", &c.name]);
    drop(c);
}

#[test]
fn ipv6_with_gateway() {
    if !require_env() {
        return;
    }
    let g = BridgeGuard::new("brpwt");
    let br = g.0.clone();
    let c = Container::run_with("pwt-6", &["--sysctl", "net.ipv6.conf.all.disable_ipv6=0"]);
    pipework_ok(&[&br, "-a", "6", &c.name, "2001:db8::5/64@2001:db8::1"]);
    assert!(addr_of(&c, "eth1").contains("inet6 2001:db8::5/64"));
    assert!(
        c.exec_ok(&["ip", "-6", "route"])
            .contains("default via 2001:db8::1 dev eth1")
    );
    pipework_ok(&["detach", &c.name]);
}

#[test]
fn two_containers_ping_on_a_new_bridge_with_dockerd_running() {
    if !require_env() {
        return;
    }
    let g = BridgeGuard::new("brpwt");
    let br = g.0.clone();
    let a = Container::run("pwt-a");
    let b = Container::run("pwt-b");
    let o = pipework_ok(&[&br, &a.name, "10.77.0.1/24"]);
    // dockerd's FORWARD DROP was detected and worked around, and said so.
    let forward = ok("iptables", &["-S", "FORWARD"]);
    if forward.contains("-P FORWARD DROP") {
        assert!(stderr(&o).contains("ACCEPT"), "{}", stderr(&o));
        assert!(ok("iptables", &["-S"]).contains(&format!("pipework:{br}")));
    }
    pipework_ok(&[&br, &b.name, "10.77.0.2/24"]);
    a.exec_ok(&["ping", "-c", "2", "-W", "2", "10.77.0.2"]);
    b.exec_ok(&["ping", "-c", "2", "-W", "2", "10.77.0.1"]);

    // The rule stays while one attachment remains, and goes with the last.
    pipework_ok(&["detach", &a.name]);
    if forward.contains("-P FORWARD DROP") {
        assert!(ok("iptables", &["-S"]).contains(&format!("pipework:{br}")));
    }
    pipework_ok(&["detach", &b.name]);
    assert!(!ok("iptables", &["-S"]).contains(&format!("pipework:{br}")));
}

#[test]
fn detach_leaves_nothing_behind_and_is_idempotent() {
    if !require_env() {
        return;
    }
    let g = BridgeGuard::new("brpwt");
    let br = g.0.clone();
    // A fixed address: a bridge without one takes its ports' MACs and is
    // left with 00:00:… when the last port goes (kernel behaviour).
    ok(
        "ip",
        &[
            "link",
            "add",
            &br,
            "address",
            "02:00:00:00:78:01",
            "type",
            "bridge",
        ],
    );
    let c = Container::run("pwt-d");
    let host_before = host_state();
    let cont_before = c.net_state();
    pipework_ok(&[
        &br,
        &c.name,
        "10.78.0.2/24@10.78.0.1",
        "--ip",
        "10.79.0.2/24",
    ]);
    assert_ne!(c.net_state(), cont_before);
    pipework_ok(&["detach", &c.name, "-i", "eth1"]);
    assert_same(&cont_before, &c.net_state(), "container");
    assert_same(&host_before, &host_state(), "host");
    // Again: nothing to do, still success.
    let o = pipework_ok(&["detach", &c.name, "-i", "eth1"]);
    assert!(stderr(&o).contains("nothing"), "{}", stderr(&o));
}

#[test]
fn late_failure_rolls_everything_back() {
    if !require_env() {
        return;
    }
    // Docker disables IPv6 inside containers by default, so the kernel
    // refuses the second address — after the bridge, the veth, the first
    // address, the default-route change and the iptables rule exist.
    let g = BridgeGuard::new("brpwt");
    let br = g.0.clone();
    let c = Container::run("pwt-r");
    let host_before = host_state();
    let cont_before = c.net_state();
    let o = pipework(&[
        &br,
        &c.name,
        "10.80.0.2/24@10.80.0.1",
        "--ip",
        "2001:db8:80::2/64",
    ]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(err.contains("2001:db8:80::2/64"), "{err}");
    assert_same(&cont_before, &c.net_state(), "container");
    assert_same(&host_before, &host_state(), "host");
    assert!(links_matching(&br).is_empty());
}

#[test]
fn rerun_is_a_noop_and_a_conflict_changes_nothing() {
    if !require_env() {
        return;
    }
    let g = BridgeGuard::new("brpwt");
    let br = g.0.clone();
    let c = Container::run("pwt-i");
    pipework_ok(&[&br, &c.name, "10.81.0.2/24"]);
    let host1 = host_state();
    let cont1 = c.net_state();
    let o = pipework_ok(&[&br, &c.name, "10.81.0.2/24", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("json");
    assert_eq!(v["unchanged"], true);
    assert_same(&host1, &host_state(), "host");
    let o = pipework(&[&br, &c.name, "10.81.0.3/24"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("eth1"), "{}", stderr(&o));
    assert_same(&cont1, &c.net_state(), "container");
    assert_same(&host1, &host_state(), "host");
    pipework_ok(&["detach", &c.name]);
}

#[test]
fn guest_forms_pid_netns_and_paths() {
    if !require_env() {
        return;
    }
    let g = BridgeGuard::new("brpwt");
    let br = g.0.clone();
    let c = Container::run("pwt-g");
    let pid = c.pid();
    pipework_ok(&[&br, "-i", "eth1", &pid, "10.82.0.1/24"]);
    pipework_ok(&[&br, "-i", "eth2", &format!("pid:{pid}"), "10.82.1.1/24"]);
    pipework_ok(&[
        &br,
        "-i",
        "eth3",
        &format!("/proc/{pid}/ns/net"),
        "10.82.2.1/24",
    ]);
    for i in ["eth1", "eth2", "eth3"] {
        assert!(addr_of(&c, i).contains("inet 10.82."), "{i}");
    }
    let n = Netns::new("pwtn");
    pipework_ok(&[&br, &n.spec(), "10.82.3.1/24"]);
    pipework_ok(&[&br, "-i", "eth2", &n.path(), "10.82.4.1/24"]);
    let a = String::from_utf8_lossy(&n.exec(&["ip", "-o", "addr"]).stdout).into_owned();
    assert!(
        a.contains("10.82.3.1/24") && a.contains("10.82.4.1/24"),
        "{a}"
    );
    pipework_ok(&["detach", &n.spec()]);
    pipework_ok(&["detach", &c.name]);
    drop(n);
}

#[test]
fn dry_run_prints_iproute2_and_changes_nothing() {
    if !require_env() {
        return;
    }
    let g = BridgeGuard::new("brpwt");
    let br = g.0.clone();
    let c = Container::run("pwt-n");
    let host_before = host_state();
    let cont_before = c.net_state();
    let o = pipework_ok(&[&br, &c.name, "10.83.0.2/24@10.83.0.1", "--dry-run"]);
    let out = stdout(&o);
    assert!(out.contains(&format!("ip link add {br}")), "{out}");
    assert!(out.contains("type veth peer name eth1"), "{out}");
    assert!(out.contains("addr add 10.83.0.2/24 dev eth1"), "{out}");
    assert!(
        out.contains("route replace default via 10.83.0.1 dev eth1"),
        "{out}"
    );
    assert_same(&host_before, &host_state(), "host");
    assert_same(&cont_before, &c.net_state(), "container");
}

#[test]
fn gratuitous_arp_updates_the_neighbour() {
    if !require_env() {
        return;
    }
    let g = BridgeGuard::new("brpwt");
    let br = g.0.clone();
    let a = Netns::new("pwta");
    let b = Netns::new("pwtb");
    // b learns from unsolicited ARP only with arp_accept.
    assert!(
        b.exec(&["sysctl", "-qw", "net.ipv4.conf.all.arp_accept=1"])
            .status
            .success()
    );
    assert!(
        b.exec(&["sysctl", "-qw", "net.ipv4.conf.default.arp_accept=1"])
            .status
            .success()
    );
    pipework_ok(&[&br, &b.spec(), "10.84.0.2/24"]);
    pipework_ok(&[&br, &a.spec(), "10.84.0.1/24", "02:00:00:84:00:01"]);
    let mut seen = String::new();
    for _ in 0..50 {
        seen = String::from_utf8_lossy(&b.exec(&["ip", "neigh", "show", "10.84.0.1"]).stdout)
            .into_owned();
        if seen.contains("02:00:00:84:00:01") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(
        seen.contains("02:00:00:84:00:01"),
        "neighbour table of b: {seen:?}"
    );
    drop(a);
    drop(b);
}

#[test]
fn thirty_two_parallel_attaches_share_one_new_bridge() {
    if !require_env() {
        return;
    }
    let g = BridgeGuard::new("brpwt");
    let br = g.0.clone();
    let nss: Vec<Netns> = (0..32).map(|_| Netns::new("pwtp")).collect();
    let children: Vec<_> = nss
        .iter()
        .enumerate()
        .map(|(i, n)| {
            std::process::Command::new(BIN)
                .args([&br, &n.spec(), &format!("10.85.0.{}/24", i + 1)])
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("spawn")
        })
        .collect();
    for c in children {
        let o = c.wait_with_output().expect("wait");
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let ports = ok("ip", &["-o", "link", "show", "master", &br]);
    assert_eq!(ports.lines().count(), 32, "{ports}");
    assert_eq!(links_matching(&format!(": {br}:")).len(), 1);
    for n in &nss {
        pipework_ok(&["detach", &n.spec()]);
    }
    drop(nss);
}

#[test]
fn stopped_unknown_and_ambiguous_guests_are_clear_errors() {
    if !require_env() {
        return;
    }
    let g = BridgeGuard::new("brpwt");
    let br = g.0.clone();
    let c = Container::run("pwt-s");
    assert!(docker(&["stop", "-t", "0", &c.name]).status.success());
    let o = pipework(&[&br, &c.name, "10.86.0.2/24"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("not running"), "{}", stderr(&o));
    let o = pipework(&[&br, "pwt-no-such-container", "10.86.0.2/24"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).starts_with("pipework: pwt-no-such-container:"),
        "{}",
        stderr(&o)
    );
    assert!(links_matching(&br).is_empty());
}
