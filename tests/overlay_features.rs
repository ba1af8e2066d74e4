//! Overlay features beyond the datapath (issue 19), on the same lab as
//! tests/overlay.rs: real 3-member etcd in host namespaces, real agents.
mod common;
mod overlay_lab;

use common::require_env;
use overlay_lab::*;

/// The guard's set of registered underlay addresses on host `i`.
fn guard_hosts(lab: &Lab, i: usize) -> String {
    nft_list(lab, i, "set inet pipework_vxlan hosts4")
}

fn guard_table(lab: &Lab, i: usize) -> String {
    nft_list(lab, i, "table inet pipework_vxlan")
}

/// Packets the guard dropped on host `i` (the IPv4 rule's counter).
fn guard_drops(lab: &Lab, i: usize) -> u64 {
    counted_first(&guard_table(lab, i), "saddr != @hosts4")
}

/// Whether container `ns` has a neighbour entry for `ip` (made by an ARP
/// request that reached it).
fn heard_from(ns: &str, ip: &str) -> bool {
    let o = run("ip", &["-n", ns, "neigh", "show", ip]);
    !String::from_utf8_lossy(&o.stdout).trim().is_empty()
}

/// A rogue VTEP on the underlay (right VNI, right port, not in etcd) asks
/// for a container's address: its ARP never reaches the container, the
/// guard counts the drops, members still ping. Registered in etcd, the
/// same VTEP is heard (the check can fail); unregistered, dropped again.
/// A dead host leaves the set; the last network gone removes the table.
#[test]
fn overlay_vxlan_only_from_members() {
    if !require_env() {
        return;
    }
    let mut lab = Lab::new("f", 112);
    lab.pw_ok(
        0,
        &[
            "overlay",
            "create",
            "guard",
            "--subnet",
            "10.52.0.0/24",
            "--vni",
            "5101",
        ],
    );
    let c0 = lab.container("c0");
    let c1 = lab.container("c1");
    lab.pw_ok(0, &["guard", &format!("netns:{c0}"), "10.52.0.10/24"]);
    lab.pw_ok(1, &["guard", &format!("netns:{c1}"), "10.52.0.11/24"]);
    lab.wait("c0 reaches c1", || ping(&c0, "10.52.0.11", 1).1 == 1);
    for i in 0..2 {
        lab.wait("the guard lists the three hosts", || {
            let s = guard_hosts(&lab, i);
            (0..3).all(|h| s.contains(&lab.addr(h)))
        });
    }
    // Host 2 has no network: no guard there.
    assert!(guard_table(&lab, 2).is_empty());

    // The rogue: a VTEP on the underlay bridge, flooding to h0.
    let rogue = lab.container("rogue");
    let ul = format!("{}ul", lab.p);
    let rport = format!("{}ur", lab.p);
    let raddr = format!("10.231.{}.50", lab.sub);
    ok(
        "ip",
        &[
            "link", "add", &rport, "type", "veth", "peer", "name", "eth0", "netns", &rogue,
        ],
    );
    ok("ip", &["link", "set", &rport, "netns", &ul]);
    ok(
        "ip",
        &["-n", &ul, "link", "set", &rport, "master", "ulbr", "up"],
    );
    ok(
        "ip",
        &[
            "-n",
            &rogue,
            "addr",
            "add",
            &format!("{raddr}/24"),
            "dev",
            "eth0",
        ],
    );
    ok("ip", &["-n", &rogue, "link", "set", "eth0", "up"]);
    ok(
        "ip",
        &[
            "-n", &rogue, "link", "add", "vr", "type", "vxlan", "id", "5101", "dstport", "4789",
            "local", &raddr, "dev", "eth0",
        ],
    );
    ok(
        "bridge",
        &[
            "-n",
            &rogue,
            "fdb",
            "append",
            "00:00:00:00:00:00",
            "dev",
            "vr",
            "dst",
            &lab.addr(0),
        ],
    );
    ok(
        "ip",
        &["-n", &rogue, "addr", "add", "10.52.0.99/24", "dev", "vr"],
    );
    ok("ip", &["-n", &rogue, "link", "set", "vr", "up"]);
    let knock = |lab: &Lab| {
        // Each ping resolves 10.52.0.10 afresh: ARP requests to h0.
        for _ in 0..3 {
            let _ = run("ip", &["-n", &rogue, "neigh", "flush", "dev", "vr"]);
            ping(&rogue, "10.52.0.10", 1);
        }
        let _ = lab;
    };
    let before = guard_drops(&lab, 0);
    knock(&lab);
    assert!(
        !heard_from(&c0, "10.52.0.99"),
        "the rogue's ARP reached the container"
    );
    assert!(
        guard_drops(&lab, 0) > before,
        "the guard dropped nothing: {}",
        guard_table(&lab, 0)
    );
    assert_eq!(ping(&c0, "10.52.0.11", 3).1, 3, "members still ping");

    // Registered, the same VTEP is heard: the check above can fail.
    let key = "/pipework/overlay/host/rogue";
    lab.etcdctl(&[
        "put",
        key,
        &format!(
            r#"{{"name":"rogue","underlay":"{raddr}","underlay_if":"eth0","underlay_mtu":1500,"lease":0}}"#
        ),
    ]);
    lab.wait("h0's guard admits the new host", || {
        guard_hosts(&lab, 0).contains(&raddr)
    });
    lab.wait("the registered VTEP's ARP reaches the container", || {
        knock(&lab);
        heard_from(&c0, "10.52.0.99")
    });
    // Gone from etcd: dropped again.
    lab.etcdctl(&["del", key]);
    lab.wait("h0's guard forgets the host", || {
        !guard_hosts(&lab, 0).contains(&raddr)
    });
    ok("ip", &["-n", &c0, "neigh", "flush", "all"]);
    knock(&lab);
    assert!(!heard_from(&c0, "10.52.0.99"), "unregistered, still heard");

    // A host that dies leaves the set (its lease lapses).
    lab.kill_agent(2);
    lab.wait("h2 leaves h0's guard", || {
        !guard_hosts(&lab, 0).contains(&lab.addr(2))
    });
    assert_eq!(ping(&c0, "10.52.0.11", 3).1, 3, "members still ping");

    // Flushed by someone else: the agent's check puts it back.
    ok(
        "ip",
        &[
            "netns",
            "exec",
            &lab.host(1),
            "nft",
            "delete",
            "table",
            "inet",
            "pipework_vxlan",
        ],
    );
    lab.wait("h1's guard is back", || {
        guard_hosts(&lab, 1).contains(&lab.addr(0))
    });

    // The last network gone: the table goes with its devices.
    lab.pw_ok(0, &["detach", &format!("netns:{c0}")]);
    lab.pw_ok(1, &["detach", &format!("netns:{c1}")]);
    lab.pw_ok(0, &["overlay", "delete", "guard"]);
    for i in 0..2 {
        lab.wait("the guard goes with the last network", || {
            guard_table(&lab, i).is_empty()
        });
    }
}

/// A container may reach "the internet" through egress, never the
/// underlay addresses of overlay hosts: `c2` (network iso, on h0) aims a
/// VXLAN device of its own at h1's underlay with egr's VNI and port.
/// Masqueraded to h0's address (a member of h1's guard) its frames would
/// land in egr on h1; the guard's `contain` chain on h0 drops them, and
/// TCP to etcd (h1's, and h0's own through the gateway). Flushing that
/// chain lets the frames through: the check can fail. The agent's
/// re-install (table deleted) brings the chain back.
fn containers_stay_off_the_underlay(lab: &Lab, c0: &str, c1ip: &str, c2: &str) {
    let vx = ok(
        "ip",
        &["-d", "-n", &lab.host(1), "link", "show", "dev", "vx-egr"],
    );
    let after = |w: &str| {
        let t: Vec<&str> = vx.split_whitespace().collect();
        let at = t.iter().position(|x| *x == w).expect(w);
        t[at + 1].to_string()
    };
    let (vni, port) = (after("id"), after("dstport"));
    let h1 = lab.addr(1);
    ok(
        "ip",
        &[
            "-n", c2, "link", "add", "vi", "type", "vxlan", "id", &vni, "dstport", &port, "remote",
            &h1,
        ],
    );
    ok(
        "ip",
        &["-n", c2, "addr", "add", "10.53.0.98/24", "dev", "vi"],
    );
    ok("ip", &["-n", c2, "link", "set", "vi", "up"]);
    let c1 = format!("{}c1", lab.p);
    let knock = || {
        for _ in 0..3 {
            let _ = run("ip", &["-n", c2, "neigh", "flush", "dev", "vi"]);
            ping(c2, c1ip, 1);
        }
    };
    let guard0 = || nft(&lab.host(0), "list table inet pipework_vxlan");
    let before = counted_first(&guard0(), "ip daddr @hosts4");
    knock();
    assert!(
        !heard_from(&c1, "10.53.0.98"),
        "a container's VXLAN frames reached a container on h1"
    );
    assert!(
        counted_first(&guard0(), "ip daddr @hosts4") > before,
        "{}",
        guard0()
    );
    // etcd: h1's client port (routed), h0's own (delivered).
    let etcd_before = counted_first(&guard0(), "tcp dport 2379-2380");
    assert!(connects(&lab.host(0), &format!("{h1}:2379")), "etcd is up");
    assert!(
        !connects(c0, &format!("{h1}:2379")),
        "a container reached h1's etcd"
    );
    let h0 = lab.addr(0);
    assert!(
        !connects(c0, &format!("{h0}:2379")),
        "a container reached h0's etcd"
    );
    assert!(counted_first(&guard0(), "tcp dport 2379-2380") > etcd_before);
    // Ordinary egress still works, TCP to the same port included.
    assert_eq!(ping(c0, "198.51.100.1", 2).1, 2, "egress from h0");
    assert!(connects(c0, "198.51.100.1:2379"), "egress over TCP");

    // Without the chain the frames land: the check above can fail.
    nft(&lab.host(0), "flush chain inet pipework_vxlan contain");
    lab.wait("the frames land in egr on h1 without `contain`", || {
        knock();
        heard_from(&c1, "10.53.0.98")
    });
    nft(&lab.host(0), "delete table inet pipework_vxlan");
    lab.wait("h0's agent puts the guard back, `contain` with it", || {
        run(
            "ip",
            &[
                "netns",
                "exec",
                &lab.host(0),
                "nft",
                "list",
                "table",
                "inet",
                "pipework_vxlan",
            ],
        )
        .status
        .success()
            && guard0().contains("ip daddr @hosts4")
    });
    ok("ip", &["-n", &c1, "neigh", "flush", "all"]);
    knock();
    assert!(!heard_from(&c1, "10.53.0.98"), "heard after the re-install");
    ok("ip", &["-n", c2, "link", "del", "vi"]);
}

fn route(ns: &str) -> String {
    ok("ip", &["-n", ns, "-4", "route", "show"])
}

/// The anycast gateway: every host's bridge carries the network's gateway
/// address with the same MAC; containers route through their own host's
/// copy; traffic leaving the overlay is masqueraded to that host's
/// underlay address (seen so by "the internet", a namespace on the
/// underlay with no route back to the overlay); two networks are isolated
/// unless `--allow-from` (one way: replies only). Bad gateways are refused
/// with nothing written; the table goes with the last network.
#[test]
fn overlay_egress_through_anycast_gateway_and_isolation() {
    if !require_env() {
        return;
    }
    let mut lab = Lab::new("x", 113);
    let o = lab.pw(
        0,
        &[
            "overlay",
            "create",
            "bad",
            "--subnet",
            "10.53.0.0/24",
            "--gateway",
            "10.99.0.1",
        ],
    );
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && e.contains("--gateway"), "{e}");
    assert_eq!(e.trim().lines().count(), 1, "{e}");
    assert!(
        lab.etcdctl(&["get", "--prefix", "/pipework/overlay/net/"])
            .is_empty()
    );

    let o = lab.pw(
        0,
        &[
            "overlay",
            "create",
            "bad",
            "--subnet",
            "10.53.0.0/24",
            "--allow-from",
            "nosuch",
        ],
    );
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && e.contains("nosuch"), "{e}");
    assert_eq!(e.trim().lines().count(), 1, "{e}");
    assert!(
        lab.etcdctl(&["get", "--prefix", "/pipework/overlay/net/"])
            .is_empty()
    );
    let created = lab.pw_ok(0, &["overlay", "create", "egr", "--subnet", "10.53.0.0/24"]);
    assert!(created.contains("gateway 10.53.0.1"), "{created}");
    lab.pw_ok(
        0,
        &[
            "overlay",
            "create",
            "iso",
            "--subnet",
            "10.54.0.0/24",
            "--gateway",
            "10.54.0.254",
        ],
    );
    let o = lab.pw(
        0,
        &[
            "overlay",
            "create",
            "alw",
            "--subnet",
            "10.55.0.0/24",
            "--allow-from",
            "egr",
        ],
    );
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{e}");
    lab.pw_ok(
        0,
        &[
            "overlay",
            "create",
            "nod",
            "--subnet",
            "10.56.0.0/24",
            "--no-default-route",
        ],
    );
    let c0 = lab.container("c0");
    let c1 = lab.container("c1");
    let c2 = lab.container("c2");
    let c3 = lab.container("c3");
    let c4 = lab.container("c4");
    // The gateway is nobody's address.
    let o = lab.pw(0, &["egr", &format!("netns:{c0}"), "10.53.0.1/24"]);
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && e.contains("gateway"), "{e}");
    lab.pw_ok(0, &["egr", &format!("netns:{c0}"), "10.53.0.10/24"]);
    lab.pw_ok(1, &["egr", &format!("netns:{c1}"), "auto"]);
    lab.pw_ok(0, &["iso", &format!("netns:{c2}"), "10.54.0.10/24"]);
    lab.pw_ok(0, &["alw", &format!("netns:{c3}"), "10.55.0.10/24"]);
    lab.pw_ok(0, &["nod", &format!("netns:{c4}"), "10.56.0.10/24"]);
    assert!(
        route(&c0).contains("default via 10.53.0.1"),
        "{}",
        route(&c0)
    );
    assert!(
        route(&c2).contains("default via 10.54.0.254"),
        "{}",
        route(&c2)
    );
    assert!(!route(&c4).contains("default"), "{}", route(&c4));
    let c5 = lab.container("c5");
    lab.pw_ok(
        0,
        &[
            "egr",
            &format!("netns:{c5}"),
            "10.53.0.20/24",
            "--no-default-route",
        ],
    );
    assert!(!route(&c5).contains("default"), "{}", route(&c5));
    let c1ip = ip_of(&lab, &c1).to_string();
    assert_ne!(c1ip, "10.53.0.1", "auto never hands out the gateway");
    lab.wait("c0 reaches c1", || ping(&c0, &c1ip, 1).1 == 1);
    // Same gateway address and MAC on both hosts' bridges.
    let br = |i: usize| {
        ok(
            "ip",
            &["-n", &lab.host(i), "-o", "addr", "show", "dev", "ov-egr"],
        )
    };
    let mac = |i: usize| {
        ok(
            "ip",
            &["-n", &lab.host(i), "-o", "link", "show", "dev", "ov-egr"],
        )
    };
    for i in 0..2 {
        assert!(br(i).contains("10.53.0.1/24"), "{}", br(i));
    }
    let m = |s: String| {
        s.split_whitespace()
            .skip_while(|w| *w != "link/ether")
            .nth(1)
            .map(str::to_string)
    };
    assert_eq!(m(mac(0)), m(mac(1)));
    assert_eq!(ping(&c0, "10.53.0.1", 1).1, 1, "the local gateway answers");
    // A stale gateway (a network re-created with another --gateway) on
    // the agent's bridge goes when the agent next builds the network.
    ok(
        "ip",
        &[
            "-n",
            &lab.host(0),
            "addr",
            "add",
            "10.53.0.254/24",
            "dev",
            "ov-egr",
        ],
    );
    let h0 = lab.host(0);
    let br0 = move || ok("ip", &["-n", &h0, "-o", "addr", "show", "dev", "ov-egr"]);
    lab.kill_agent(0);
    lab.start_agent(0);
    lab.wait("the restarted agent removes the stale gateway", || {
        !br0().contains("10.53.0.254/")
    });
    assert!(br0().contains("10.53.0.1/24"), "{}", br0());
    assert_eq!(ping(&c0, "10.53.0.1", 1).1, 1, "the gateway still answers");
    // Never announced: no FDB or neighbour entry for it on the VXLAN.
    assert!(!lab.entries(1, "egr").contains("10.53.0.1 "));

    let inet = internet(&mut lab, 2, Some("10.53.0.0/24"));
    assert_eq!(ping(&c0, "198.51.100.1", 2).1, 2, "egress from h0");
    assert_eq!(ping(&c1, "198.51.100.1", 2).1, 2, "egress from h1");
    let seen = nft(&inet, "list table ip pwvseen");
    assert_eq!(
        counted_first(&seen, &format!("saddr {} ", lab.addr(0))),
        2,
        "{seen}"
    );
    assert_eq!(
        counted_first(&seen, &format!("saddr {} ", lab.addr(1))),
        2,
        "{seen}"
    );
    assert_eq!(counted_first(&seen, "10.53.0.0/24"), 0, "{seen}");
    // Rules carry our comment.
    let t = nft(&lab.host(0), "list table inet pipework_egress");
    assert!(t.contains("comment \"pipework:ov-egr\""), "{t}");

    // Containers never reach the overlay hosts' underlay addresses.
    let listener = in_ns(&inet, || {
        std::net::TcpListener::bind("198.51.100.1:2379").expect("listen")
    });
    containers_stay_off_the_underlay(&lab, &c0, &c1ip, &c2);
    drop(listener);

    // Routed between overlays, never masqueraded: c3 sees c0's address.
    nft(&c3, "add table ip pwvseen");
    nft(
        &c3,
        "add chain ip pwvseen in { type filter hook input priority 0 ; }",
    );
    nft(
        &c3,
        "add rule ip pwvseen in ip saddr 10.53.0.10 icmp type echo-request counter",
    );

    // Isolation: egr and iso never meet; alw takes egr's, one way.
    assert_eq!(ping(&c0, "10.54.0.10", 2).1, 0, "egr reached iso");
    assert_eq!(ping(&c2, "10.53.0.10", 2).1, 0, "iso reached egr");
    // (The first reply waited for: ARP through two gateways, under load.)
    lab.wait("alw --allow-from egr", || ping(&c0, "10.55.0.10", 1).1 == 1);
    assert_eq!(ping(&c0, "10.55.0.10", 2).1, 2, "alw --allow-from egr");
    let seen = nft(&c3, "list table ip pwvseen");
    assert!(counted_first(&seen, "saddr 10.53.0.10 ") >= 2, "{seen}");
    assert_eq!(ping(&c3, "10.53.0.10", 2).1, 0, "alw reached egr");
    assert_eq!(ping(&c2, "10.55.0.10", 2).1, 0, "iso reached alw");

    // An admin's look-alike bridge is used, never given an address nor
    // stripped of one.
    let h1 = lab.host(1);
    ok(
        "ip",
        &["-n", &h1, "link", "add", "ov-frn", "type", "bridge"],
    );
    ok(
        "ip",
        &["-n", &h1, "addr", "add", "10.57.0.254/24", "dev", "ov-frn"],
    );
    ok("ip", &["-n", &h1, "link", "set", "ov-frn", "up"]);
    lab.pw_ok(0, &["overlay", "create", "frn", "--subnet", "10.57.0.0/24"]);
    let c6 = lab.container("c6");
    lab.pw_ok(1, &["frn", &format!("netns:{c6}"), "10.57.0.10/24"]);
    lab.wait("h1's agent builds frn", || {
        run("ip", &["-n", &h1, "link", "show", "dev", "vx-frn"])
            .status
            .success()
    });
    let a = ok("ip", &["-n", &h1, "-o", "addr", "show", "dev", "ov-frn"]);
    assert!(
        a.contains("10.57.0.254/24") && !a.contains("10.57.0.1/"),
        "{a}"
    );
    lab.pw_ok(1, &["detach", &format!("netns:{c6}")]);
    lab.pw_ok(0, &["overlay", "delete", "frn"]);

    // The last endpoint gone on a host: the table goes there.
    lab.pw_ok(1, &["detach", &format!("netns:{c1}")]);
    for c in [&c0, &c2, &c3, &c4, &c5] {
        lab.pw_ok(0, &["detach", &format!("netns:{c}")]);
    }
    for n in ["egr", "iso", "alw", "nod"] {
        lab.pw_ok(0, &["overlay", "delete", n]);
    }
    for i in 0..2 {
        lab.wait("the egress table goes with the last network", || {
            !run(
                "ip",
                &[
                    "netns",
                    "exec",
                    &lab.host(i),
                    "nft",
                    "list",
                    "table",
                    "inet",
                    "pipework_egress",
                ],
            )
            .status
            .success()
        });
    }
}

/// iptables in namespace `ns`.
fn ipt(ns: &str, args: &[&str]) -> std::process::Output {
    xt("iptables", ns, args)
}

/// Our accepts on host `ns`, as `iptables -S` lists them.
fn accepts(ns: &str) -> Vec<String> {
    egress_accepts(&ipt(ns, &["-S"]))
}

/// Our accepts in h1's native nftables chain (0 where there is none).
fn native(ns: &str) -> usize {
    let o = run(
        "ip",
        &[
            "netns", "exec", ns, "nft", "list", "chain", "inet", "pwkfw", "pwfwd",
        ],
    );
    String::from_utf8_lossy(&o.stdout)
        .matches("comment \"pipework-egress:ov-egr\"")
        .count()
}

/// The anycast gateway on hosts whose FORWARD drops (dockerd's policy and
/// DOCKER-USER chain): the agent accepts its networks' traffic in
/// DOCKER-USER (comment pipework-egress:BR), so cross-host pings, egress
/// (masqueraded, replies by conntrack) and --allow-from work, while two
/// networks stay isolated. Flushed, the accepts come back at the agent's
/// check; a SIGKILLed agent's are finished by the next run, or by `gc`
/// once no VXLAN device is left; the last network takes them.
#[test]
fn overlay_egress_and_isolation_with_forward_drop() {
    if !require_env() {
        return;
    }
    let mut lab = Lab::new("k", 114);
    for i in 0..3 {
        docker_forward(&lab.host(i), &["iptables"]);
    }
    // h1 has a native nftables firewall besides (firewalld's shape): its
    // dropping forward chain needs our accepts too.
    nft(&lab.host(1), "add table inet pwkfw");
    nft(
        &lab.host(1),
        "add chain inet pwkfw pwfwd { type filter hook forward priority 0 ; policy drop ; }",
    );
    lab.pw_ok(0, &["overlay", "create", "egr", "--subnet", "10.57.0.0/24"]);
    lab.pw_ok(0, &["overlay", "create", "iso", "--subnet", "10.58.0.0/24"]);
    lab.pw_ok(
        0,
        &[
            "overlay",
            "create",
            "alw",
            "--subnet",
            "10.59.0.0/24",
            "--allow-from",
            "egr",
        ],
    );
    let c0 = lab.container("c0");
    let c1 = lab.container("c1");
    let c2 = lab.container("c2");
    let c3 = lab.container("c3");
    lab.pw_ok(0, &["egr", &format!("netns:{c0}"), "10.57.0.10/24"]);
    lab.pw_ok(1, &["egr", &format!("netns:{c1}"), "10.57.0.11/24"]);
    lab.pw_ok(0, &["iso", &format!("netns:{c2}"), "10.58.0.10/24"]);
    lab.pw_ok(0, &["alw", &format!("netns:{c3}"), "10.59.0.10/24"]);
    let h0 = lab.host(0);
    let h1 = lab.host(1);
    // Bridged frames go through iptables here (else the test proves nothing).
    let nf = ok(
        "ip",
        &[
            "netns",
            "exec",
            &h0,
            "cat",
            "/proc/sys/net/bridge/bridge-nf-call-iptables",
        ],
    );
    assert_eq!(nf.trim(), "1");
    // Cross-host: bridged within ov-egr on both hosts, FORWARD drops.
    lab.wait("c0 reaches c1 across hosts", || {
        ping(&c0, "10.57.0.11", 1).1 == 1
    });
    let a0 = accepts(&h0);
    for want in [
        "-A DOCKER-USER -i ov-egr -o ov-egr -m comment --comment \"pipework-egress:ov-egr\" -j ACCEPT",
        "-A DOCKER-USER -i ov-egr ! -o ov-+ -m comment --comment \"pipework-egress:ov-egr\" -j ACCEPT",
        "-A DOCKER-USER -o ov-egr -m conntrack --ctstate RELATED,ESTABLISHED -m comment --comment \"pipework-egress:ov-egr\" -j ACCEPT",
        "-A DOCKER-USER -i ov-egr -o ov-alw -m comment --comment \"pipework-egress:ov-alw\" -j ACCEPT",
    ] {
        assert!(a0.iter().any(|l| l == want), "{want} not in {a0:#?}");
    }
    // Three per network here, one more for alw's --allow-from; none in
    // FORWARD itself (dockerd's chain for users is DOCKER-USER).
    assert_eq!(a0.len(), 10, "{a0:#?}");
    assert!(a0.iter().all(|l| l.starts_with("-A DOCKER-USER ")));
    // h1: egr's three, and alw's four: alw allows egr, so h1 (c1 of
    // egr) also routes into alw (cross-host --allow-from).
    assert_eq!(accepts(&h1).len(), 7, "{:#?}", accepts(&h1));
    let fw = nft(&h1, "list chain inet pwkfw pwfwd");
    assert_eq!(native(&h1), 3, "{fw}");
    for want in [
        "iifname \"ov-egr\" oifname \"ov-egr\" accept comment \"pipework-egress:ov-egr\"",
        "iifname \"ov-egr\" oifname != \"ov-*\" accept comment \"pipework-egress:ov-egr\"",
        "oifname \"ov-egr\" ct state established,related accept comment \"pipework-egress:ov-egr\"",
    ] {
        assert!(fw.contains(want), "{want} not in {fw}");
    }
    assert!(accepts(&lab.host(2)).is_empty(), "no network on h2");

    // Egress, masqueraded, replies back through FORWARD's drop.
    let inet = internet(&mut lab, 2, Some("10.57.0.0/24"));
    // (Waited for: the underlay's first ARP on a loaded machine.)
    lab.wait("egress from h0", || ping(&c0, "198.51.100.1", 1).1 == 1);
    lab.wait("egress from h1", || ping(&c1, "198.51.100.1", 1).1 == 1);
    for c in [&c0, &c1] {
        assert_eq!(ping(c, "198.51.100.1", 2).1, 2, "steady egress from {c}");
    }
    let seen = nft(&inet, "list table ip pwvseen");
    for i in 0..2 {
        let n = counted_first(&seen, &format!("saddr {} ", lab.addr(i)));
        assert!(n >= 1, "h{i} not seen: {seen}");
    }
    assert_eq!(counted_first(&seen, "10.57.0.0/24"), 0, "{seen}");

    // Isolation holds; --allow-from one way.
    assert_eq!(ping(&c0, "10.58.0.10", 2).1, 0, "egr reached iso");
    assert_eq!(ping(&c2, "10.57.0.10", 2).1, 0, "iso reached egr");
    lab.wait("alw --allow-from egr", || ping(&c0, "10.59.0.10", 1).1 == 1);
    assert_eq!(ping(&c0, "10.59.0.10", 2).1, 2, "alw --allow-from egr");
    // Across hosts too, through both FORWARD drops (c1 on h1, c3 on h0).
    lab.wait("alw --allow-from egr across hosts", || {
        ping(&c1, "10.59.0.10", 1).1 == 1
    });
    assert_eq!(ping(&c3, "10.57.0.10", 2).1, 0, "alw reached egr");
    assert_eq!(ping(&c3, "10.57.0.11", 2).1, 0, "alw reached egr on h1");
    assert_eq!(ping(&c2, "10.59.0.10", 2).1, 0, "iso reached alw");

    // Flushed: the agent's check puts them back (and only once).
    assert!(ipt(&h1, &["-F", "DOCKER-USER"]).status.success());
    assert_eq!(ping(&c1, "198.51.100.1", 1).1, 0, "flushed: dropped");
    lab.wait("the check re-adds the accepts", || accepts(&h1).len() == 7);
    assert_eq!(ping(&c1, "198.51.100.1", 2).1, 2, "egress again");
    lab.wait("c1 reaches c0 again", || ping(&c1, "10.57.0.10", 1).1 == 1);
    nft(&h1, "flush chain inet pwkfw pwfwd");
    assert_eq!(ping(&c1, "198.51.100.1", 1).1, 0, "nft flushed: dropped");
    lab.wait("the check re-adds the nft accepts", || native(&h1) == 3);
    assert_eq!(ping(&c1, "198.51.100.1", 2).1, 2, "egress again (nft)");

    // A SIGKILLed agent leaves them (its containers keep working); `gc`
    // keeps them while their bridge and VXLAN device are there; the next
    // agent takes over without a duplicate.
    lab.kill_agent(0);
    // (A copy it left, as an agent killed between insert and bookkeeping
    // could: the next agent keeps one.)
    let dup = [
        "-I",
        "DOCKER-USER",
        "-i",
        "ov-egr",
        "-o",
        "ov-egr",
        "-m",
        "comment",
        "--comment",
        "pipework-egress:ov-egr",
        "-j",
        "ACCEPT",
    ];
    assert!(ipt(&h0, &dup).status.success());
    lab.pw_ok(0, &["gc"]);
    assert_eq!(accepts(&h0).len(), 11, "{:#?}", accepts(&h0));
    lab.start_agent(0);
    lab.wait("the next agent drops the copy", || accepts(&h0).len() == 10);
    std::thread::sleep(std::time::Duration::from_secs(3));
    assert_eq!(accepts(&h0).len(), 10, "{:#?}", accepts(&h0));
    assert_eq!(ping(&c0, "198.51.100.1", 1).1, 1, "egress after restart");

    // A killed agent's leftovers on a host with no VXLAN device: gc.
    lab.kill_agent(2);
    let h2 = lab.host(2);
    let stale = overlay_accept("-I", "gone", false);
    let stale: Vec<&str> = stale.iter().map(String::as_str).collect();
    assert!(ipt(&h2, &stale).status.success());
    let dry = lab.pw_ok(2, &["gc", "--dry-run"]);
    assert_eq!(accepts(&h2).len(), 1, "a dry run changes nothing: {dry}");
    lab.pw_ok(2, &["gc"]);
    assert!(accepts(&h2).is_empty(), "{:#?}", accepts(&h2));
    // ... and a restarted agent with no network here removes them too.
    assert!(ipt(&h2, &stale).status.success());
    lab.start_agent(2);
    lab.wait("the next agent removes leftovers", || {
        accepts(&h2).is_empty()
    });

    // The networks' devices gone (with the egress table): their accepts.
    lab.pw_ok(1, &["detach", &format!("netns:{c1}")]);
    for c in [&c0, &c2, &c3] {
        lab.pw_ok(0, &["detach", &format!("netns:{c}")]);
    }
    // egr and alw, joined by --allow-from, lose their devices (and so
    // their accepts) with their last endpoint here; iso keeps its
    // devices until deleted: gc leaves its accepts and the egress table's
    // isolation alone.
    lab.wait("egr's and alw's accepts go with their devices", || {
        accepts(&h0).len() == 3
    });
    lab.pw_ok(0, &["gc"]);
    assert_eq!(accepts(&h0).len(), 3, "{:#?}", accepts(&h0));
    let t = nft(&h0, "list table inet pipework_egress");
    assert_eq!(t.matches(" drop comment ").count(), 1, "{t}");
    for n in ["egr", "iso", "alw"] {
        lab.pw_ok(0, &["overlay", "delete", n]);
    }
    for h in [&h0, &h1] {
        lab.wait("the accepts go with the egress table", || {
            accepts(h).is_empty() && native(h) == 0
        });
        lab.wait("the egress table goes with the last network", || {
            !run(
                "ip",
                &[
                    "netns",
                    "exec",
                    h,
                    "nft",
                    "list",
                    "table",
                    "inet",
                    "pipework_egress",
                ],
            )
            .status
            .success()
        });
    }
    // dockerd's own chain and policy are left as they were.
    let s = String::from_utf8_lossy(&ipt(&h0, &["-S"]).stdout).into_owned();
    assert!(
        s.contains("-P FORWARD DROP") && s.contains("-A FORWARD -j DOCKER-USER"),
        "{s}"
    );
}
