//! Host-tier tests for the physical-NIC family: everything this host's
//! kernel can do (macvlan, veth, bridge). The VM tier (tests/vm_kernel.rs)
//! covers 8021q, ipvlan and dummy.
//!
//! Every object is named with the `pwp` prefix and lives in a namespace the
//! test made itself.
mod phys_util;

use phys_util::*;
use pipework::netns::NetNs;
use pipework::passthrough::{self, Tool};
use pipework::wait::wait_for_link;
use std::ffi::OsString;
#[allow(unused_imports)]
use std::process::Command;
use std::time::Duration;

fn os(args: &[&str]) -> Vec<OsString> {
    args.iter().map(OsString::from).collect()
}

#[test]
fn route_rule_tc_passthroughs_run_in_the_guest_namespace() {
    if !root_or_skip() {
        return;
    }
    if passthrough::find_binary("ip").is_none() || passthrough::find_binary("tc").is_none() {
        // iproute2 is a test dependency in CI; say why if a dev box lacks it.
        skip("iproute2 (ip, tc) not installed");
        return;
    }
    let ns = TestNs::new("pt");
    ns.sh(&[
        "link", "add", "pwp-pt0", "type", "veth", "peer", "name", "pwp-pt1",
    ]);
    ns.sh(&["link", "set", "pwp-pt0", "up"]);
    ns.sh(&["addr", "add", "10.231.7.2/24", "dev", "pwp-pt0"]);
    let guest = NetNs::open(&ns.path()).expect("open test netns");

    let rc = passthrough::run(
        Tool::Route,
        &guest,
        &os(&[
            "add",
            "10.231.99.0/24",
            "via",
            "10.231.7.1",
            "dev",
            "pwp-pt0",
        ]),
    )
    .expect("route pass-through");
    assert_eq!(rc, 0);
    assert!(
        ns.out(&["route", "show"])
            .contains("10.231.99.0/24 via 10.231.7.1")
    );
    // The host's table is untouched.
    assert!(!host_ip(&["route", "show"]).contains("10.231.99.0/24"));

    let rc = passthrough::run(
        Tool::Rule,
        &guest,
        &os(&["add", "from", "10.231.7.2", "table", "231"]),
    )
    .expect("rule pass-through");
    assert_eq!(rc, 0);
    assert!(
        ns.out(&["rule", "show"])
            .contains("from 10.231.7.2 lookup 231")
    );
    assert!(!host_ip(&["rule", "show"]).contains("10.231.7.2"));

    let rc = passthrough::run(
        Tool::Tc,
        &guest,
        &os(&[
            "qdisc", "add", "dev", "pwp-pt0", "root", "tbf", "rate", "1mbit", "burst", "32kbit",
            "latency", "400ms",
        ]),
    )
    .expect("tc pass-through");
    assert_eq!(rc, 0);
    let q = cmd_out("tc", &["-n", &ns.name, "qdisc", "show", "dev", "pwp-pt0"]);
    assert!(q.contains("qdisc tbf"), "{q}");

    // The tool's own exit status is passed on (a route that cannot be added).
    let rc = passthrough::run(
        Tool::Route,
        &guest,
        &os(&["add", "10.231.98.0/24", "via", "192.0.2.1"]),
    )
    .expect("spawn");
    assert_ne!(rc, 0);
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

#[test]
fn wait_returns_once_the_link_comes_up() {
    if !root_or_skip() {
        return;
    }
    let ns = TestNs::new("wait");
    let guest = NetNs::open(&ns.path()).expect("open test netns");
    let rt = runtime();
    rt.block_on(async {
        let waiter = tokio::spawn(async move {
            // Generous bound: success below proves an event woke us, not the timeout.
            wait_for_link(Some(&guest), "eth1", Some(Duration::from_secs(60))).await
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        // Present but down (its peer too): must keep waiting.
        ns.sh(&[
            "link", "add", "eth1", "type", "veth", "peer", "name", "pwp-w1",
        ]);
        ns.sh(&["link", "set", "eth1", "up"]);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            !waiter.is_finished(),
            "--wait returned before eth1 had carrier"
        );
        ns.sh(&["link", "set", "pwp-w1", "up"]);
        let r = waiter.await.expect("join");
        assert!(r.is_ok(), "{r:?}");
    });
}

#[test]
fn wait_sees_a_link_that_is_already_up() {
    if !root_or_skip() {
        return;
    }
    let ns = TestNs::new("wup");
    ns.sh(&[
        "link", "add", "eth1", "type", "veth", "peer", "name", "pwp-w2",
    ]);
    ns.sh(&["link", "set", "eth1", "up"]);
    ns.sh(&["link", "set", "pwp-w2", "up"]);
    let guest = NetNs::open(&ns.path()).expect("open test netns");
    let r = runtime().block_on(wait_for_link(
        Some(&guest),
        "eth1",
        Some(Duration::from_secs(60)),
    ));
    assert!(r.is_ok(), "{r:?}");
}

#[test]
fn wait_times_out_with_a_message() {
    if !root_or_skip() {
        return;
    }
    let ns = TestNs::new("wto");
    let guest = NetNs::open(&ns.path()).expect("open test netns");
    let r = runtime().block_on(wait_for_link(
        Some(&guest),
        "eth9",
        Some(Duration::from_millis(300)),
    ));
    let e = r.expect_err("nothing brings eth9 up").to_string();
    assert!(e.starts_with("eth9: not up after"), "{e}");
}

// ---- macvlan ----------------------------------------------------------------

/// The guest-side link: `(kind, parent-ish detail)` from `ip -d link`.
fn guest_link(ns: &TestNs, ifname: &str) -> String {
    ns.out(&["-d", "link", "show", ifname])
}

#[test]
fn macvlan_modes_between_two_guests_on_one_parent() {
    if !root_or_skip() || !busybox_or_skip() {
        return;
    }
    let w = World::new("mv", 2, "10.231.1.1/24");
    let (c0, c1) = (&w.guests[0], &w.guests[1]);
    // (mode, guests reach each other with the LAN bridge hairpinning)
    for (mode, peer_ok) in [("bridge", true), ("private", false), ("vepa", true)] {
        w.pw_ok(&[
            "pwp-up0",
            "--macvlan-mode",
            mode,
            &w.guest(0),
            "10.231.1.11/24",
        ]);
        w.pw_ok(&[
            "pwp-up0",
            "--macvlan-mode",
            mode,
            &w.guest(1),
            "10.231.1.12/24",
        ]);
        let d = guest_link(c0, "eth1");
        assert!(d.contains(&format!("macvlan mode {mode}")), "{d}");
        assert!(ping(c0, "10.231.1.1"), "{mode}: guest cannot reach the LAN");
        assert!(ping(c1, "10.231.1.1"), "{mode}: guest cannot reach the LAN");
        assert_eq!(ping(c0, "10.231.1.12"), peer_ok, "{mode}: guest to guest");
        if mode == "vepa" {
            // VEPA sends even local traffic to the wire: without the
            // switch's hairpin the guests cannot see each other.
            w.lan.sh(&[
                "link",
                "set",
                "lan0",
                "type",
                "bridge_slave",
                "hairpin",
                "off",
            ]);
            w.lan.sh(&["neigh", "flush", "all"]);
            c0.sh(&["neigh", "flush", "all"]);
            assert!(
                !ping(c0, "10.231.1.12"),
                "vepa: reached the peer without hairpin"
            );
            w.lan.sh(&[
                "link",
                "set",
                "lan0",
                "type",
                "bridge_slave",
                "hairpin",
                "on",
            ]);
        }
        // ls shows both, detach removes both.
        let ls = w.pw_ok(&["ls", "--json"]);
        assert!(
            ls.contains(&w.guests[0].name) && ls.contains("\"macvlan\""),
            "{ls}"
        );
        w.pw_ok(&["detach", &w.guest(0)]);
        w.pw_ok(&["detach", &w.guest(1), "-i", "eth1"]);
        assert!(!c0.try_sh(&["link", "show", "eth1"]));
        assert!(!c1.try_sh(&["link", "show", "eth1"]));
    }
}

#[test]
fn macvlan_passthru_takes_the_parent_alone() {
    if !root_or_skip() || !busybox_or_skip() {
        return;
    }
    let w = World::new("pt", 2, "10.231.5.1/24");
    w.pw_ok(&[
        "pwp-up0",
        "--macvlan-mode",
        "passthru",
        &w.guest(0),
        "10.231.5.11/24",
    ]);
    assert!(guest_link(&w.guests[0], "eth1").contains("macvlan mode passthru"));
    assert!(ping(&w.guests[0], "10.231.5.1"));
    // A second child on a passthru parent: the kernel says no; nothing is left behind.
    let before = link_summary(&w.guests[1]);
    let e = w.pw_err(&[
        "pwp-up0",
        "--macvlan-mode",
        "passthru",
        &w.guest(1),
        "10.231.5.12/24",
    ]);
    assert!(e.starts_with("pipework: ") && e.lines().count() == 1, "{e}");
    assert_eq!(link_summary(&w.guests[1]), before);
    w.pw_ok(&["detach", &w.guest(0)]);
}

#[test]
fn macvlan_is_the_default_with_parent_mtu_and_mac_selection() {
    if !root_or_skip() || !busybox_or_skip() {
        return;
    }
    let w = World::new("mac", 2, "10.231.3.1/24");
    w.host.sh(&[
        "link",
        "set",
        "pwp-up0",
        "mtu",
        "1400",
        "address",
        "02:31:00:00:00:07",
    ]);
    // Classic form, no mode: macvlan bridge, MTU from the parent.
    w.pw_ok(&["pwp-up0", &w.guest(0), "10.231.3.11/24"]);
    let d = guest_link(&w.guests[0], "eth1");
    assert!(
        d.contains("macvlan mode bridge") && d.contains("mtu 1400"),
        "{d}"
    );
    // mac: picks the same parent by its MAC.
    w.pw_ok(&[
        "mac:02:31:00:00:00:07",
        "-i",
        "eth2",
        &w.guest(1),
        "10.231.3.12/24",
        "02:31:00:00:00:12",
    ]);
    let d = guest_link(&w.guests[1], "eth2");
    assert!(
        d.contains("macvlan") && d.contains("02:31:00:00:00:12"),
        "{d}"
    );
    assert!(ping(&w.guests[1], "10.231.3.1"));
    assert!(ping(&w.guests[1], "10.231.3.11"));
    w.pw_ok(&["detach", &w.guest(0)]);
    w.pw_ok(&["detach", &w.guest(1)]);
}

// ---- --direct-phys ------------------------------------------------------------

#[test]
fn direct_phys_round_trip_restores_name_mtu_and_addresses() {
    if !root_or_skip() || !busybox_or_skip() {
        return;
    }
    let w = World::new("dp", 1, "10.231.2.1/24");
    let h = &w.host;
    h.sh(&[
        "link",
        "set",
        "pwp-up0",
        "mtu",
        "1450",
        "alias",
        "pwp test uplink",
    ]);
    h.sh(&["addr", "add", "10.231.2.5/24", "dev", "pwp-up0"]);
    h.sh(&[
        "addr",
        "add",
        "2001:db8:231::5/64",
        "dev",
        "pwp-up0",
        "nodad",
    ]);
    let mac = h.out(&["-br", "link", "show", "pwp-up0"]);
    let mac = mac
        .split_whitespace()
        .nth(2)
        .unwrap_or_default()
        .to_string();

    // Selected by MAC, renamed in the guest (the README's example).
    w.pw_ok(&[
        "--direct-phys",
        &format!("mac:{mac}"),
        "-i",
        "container0",
        &w.guest(0),
        "10.231.2.50/24",
    ]);
    assert!(
        !h.try_sh(&["link", "show", "pwp-up0"]),
        "NIC still on the host"
    );
    let g = &w.guests[0];
    let d = g.out(&["-d", "addr", "show", "container0"]);
    assert!(d.contains("10.231.2.50/24") && d.contains("veth"), "{d}");
    assert!(ping(g, "10.231.2.1"));
    let ls = w.pw_ok(&["ls", "--json"]);
    assert!(ls.contains("\"phys\""), "{ls}");

    w.pw_ok(&["detach", &w.guest(0)]);
    assert!(!g.try_sh(&["link", "show", "container0"]));
    let back = h.out(&["addr", "show", "pwp-up0"]);
    assert!(back.contains("mtu 1450"), "{back}");
    assert!(back.contains("state UP") || back.contains(",UP"), "{back}");
    assert!(back.contains("inet 10.231.2.5/24"), "{back}");
    assert!(back.contains("inet6 2001:db8:231::5/64"), "{back}");
    assert!(!back.contains("10.231.2.50"), "{back}");
    assert!(
        h.out(&["-d", "link", "show", "pwp-up0"])
            .contains("alias pwp test uplink")
    );
    // Detach again: nothing attached, still success.
    w.pw_ok(&["detach", &w.guest(0)]);
}

#[test]
fn direct_phys_failure_rolls_the_nic_back() {
    if !root_or_skip() {
        return;
    }
    let w = World::new("dr", 1, "10.231.6.1/24");
    let h = &w.host;
    h.sh(&["link", "set", "pwp-up0", "mtu", "1300"]);
    h.sh(&["addr", "add", "10.231.6.5/24", "dev", "pwp-up0"]);
    // Global addresses and the administrative state: carrier and the
    // link-local address come back asynchronously after a namespace move.
    let state = || {
        let link = h.out(&["-o", "link", "show", "pwp-up0"]);
        let flags = link.split_whitespace().nth(2).unwrap_or("").to_string();
        let addrs = h.out(&["-o", "addr", "show", "dev", "pwp-up0", "scope", "global"]);
        let addrs: Vec<String> = addrs
            .lines()
            .filter_map(|l| l.split_whitespace().nth(3).map(String::from))
            .collect();
        (flags.contains(",UP") || flags.contains("<UP"), addrs)
    };
    let before = state();
    assert!(before.0 && before.1 == ["10.231.6.5/24"], "{before:?}");
    // IPv6 off in the guest: adding the v6 address fails after the move.
    w.guests[0].exec(&["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"]);
    w.guests[0].exec(&["sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1"]);
    let e = w.pw_err(&[
        "--direct-phys",
        "pwp-up0",
        &w.guest(0),
        "10.231.6.50/24",
        "--ip",
        "2001:db8:236::50/64",
    ]);
    assert!(e.contains("2001:db8:236::50"), "{e}");
    assert_eq!(state(), before);
    assert!(h.out(&["link", "show", "pwp-up0"]).contains("mtu 1300"));
    assert!(!w.guests[0].try_sh(&["link", "show", "eth1"]));
}

// ---- pass-throughs and --wait through the binary ----------------------------------

#[test]
fn cli_route_rule_tc_and_wait() {
    if !root_or_skip() || passthrough::find_binary("tc").is_none() {
        return;
    }
    let w = World::new("cl", 1, "10.231.7.1/24");
    let g = w.guest(0);
    // --wait inside the guest, started before the interface exists.
    let waiter = std::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            &w.guests[0].name,
            PIPEWORK,
            "--wait",
            "-i",
            "eth1",
            "--timeout",
            "60",
        ])
        .spawn()
        .expect("spawn --wait");
    let mut waiter = waiter;
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        waiter.try_wait().expect("poll").is_none(),
        "--wait exited before any attach"
    );
    w.pw_ok(&["pwp-up0", &g, "10.231.7.11/24"]);
    let st = waiter.wait().expect("wait");
    assert!(st.success(), "--wait failed: {st}");

    w.pw_ok(&["route", &g, "add", "10.231.70.0/24", "via", "10.231.7.1"]);
    assert!(
        w.guests[0]
            .out(&["route"])
            .contains("10.231.70.0/24 via 10.231.7.1 dev eth1")
    );
    w.pw_ok(&["rule", &g, "add", "from", "10.231.7.11", "lookup", "77"]);
    assert!(
        w.guests[0]
            .out(&["rule"])
            .contains("from 10.231.7.11 lookup 77")
    );
    w.pw_ok(&[
        "tc", &g, "qdisc", "add", "dev", "eth1", "root", "handle", "1:", "htb",
    ]);
    assert!(
        cmd_out(
            "tc",
            &["-n", &w.guests[0].name, "qdisc", "show", "dev", "eth1"]
        )
        .contains("qdisc htb 1:")
    );
    // The tool's failure is passed on, with its own message.
    let o = w.pw(&["route", &g, "add", "10.231.71.0/24", "via", "192.0.2.99"]);
    assert!(!o.status.success());
    w.pw_ok(&["detach", &g]);
}

// ---- host shim ---------------------------------------------------------------------

#[test]
fn host_shim_lets_the_host_reach_macvlan_guests() {
    if !root_or_skip() || !busybox_or_skip() {
        return;
    }
    let w = World::new("hs", 2, "10.231.4.1/24");
    let h = &w.host;
    // A real switch does not send a frame back out of the port it came in
    // on: without hairpin, host and macvlan guests cannot meet on the wire.
    w.lan.sh(&[
        "link",
        "set",
        "lan0",
        "type",
        "bridge_slave",
        "hairpin",
        "off",
    ]);
    h.sh(&["addr", "add", "10.231.4.5/24", "dev", "pwp-up0"]);
    w.pw_ok(&["pwp-up0", &w.guest(0), "10.231.4.11/24"]);
    assert!(ping(h, "10.231.4.1"), "host cannot reach the LAN");
    assert!(
        !ping(h, "10.231.4.11"),
        "macvlan guest reachable from the host without a shim?"
    );

    let out = w.pw_ok(&["host-shim", "pwp-up0", "10.231.4.6/24"]);
    assert!(out.contains("10.231.4.11/32 dev shim-pwp-up0"), "{out}");
    assert!(ping(h, "10.231.4.11"), "host still cannot reach the guest");
    assert!(ping(h, "10.231.4.1"), "host lost the LAN");
    // Idempotent.
    w.pw_ok(&["host-shim", "pwp-up0", "10.231.4.6/24"]);

    // A guest attached later gets its route at attach, and loses it at detach.
    w.pw_ok(&["pwp-up0", &w.guest(1), "10.231.4.12/24"]);
    assert!(h.out(&["route"]).contains("10.231.4.12 dev shim-pwp-up0"));
    assert!(ping(h, "10.231.4.12"));
    w.pw_ok(&["detach", &w.guest(1)]);
    assert!(!h.out(&["route"]).contains("10.231.4.12"));
    w.pw_ok(&["detach", &w.guest(0)]);
    assert!(!h.out(&["route"]).contains("10.231.4.11"));
}

// ---- bad input ------------------------------------------------------------------------

#[test]
fn bad_input_table() {
    if !root_or_skip() {
        return;
    }
    let w = World::new("bad", 1, "10.231.9.1/24");
    w.host.sh(&["link", "add", "pwp-br0", "type", "bridge"]);
    w.host.sh(&[
        "link",
        "add",
        "pwp-longparent0",
        "type",
        "veth",
        "peer",
        "name",
        "pwp-lp1",
    ]);
    let g = w.guest(0);
    let g = g.as_str();
    // (args, the token the one-line error must start with, and a word of the fix)
    let table: &[(&[&str], &str, &str)] = &[
        (&["pwp-up0", g, "10.0.0.2/24", "@4095"], "4095", "1-4094"),
        (&["pwp-up0", g, "10.0.0.2/24", "@0"], "0", "1-4094"),
        (
            &["pwp-up0", g, "10.0.0.2/24", "02:00:00:00:00:01@5000"],
            "5000",
            "1-4094",
        ),
        (
            &["--macvlan-mode", "bridge", "pwp-nope0", g, "10.0.0.2/24"],
            "pwp-nope0",
            "no such host interface",
        ),
        (
            &["--direct-phys", "pwp-nope0", g, "10.0.0.2/24"],
            "pwp-nope0",
            "no such host interface",
        ),
        (
            &["--ipvlan", "l2", "pwp-nope0", g, "10.0.0.2/24"],
            "pwp-nope0",
            "no such host interface",
        ),
        (
            &["--ipvlan", "l2", "pwp-br0", g, "10.0.0.2/24"],
            "pwp-br0",
            "needs a NIC",
        ),
        (
            &["--ipvlan", "l4", "pwp-up0", g, "10.0.0.2/24"],
            "l4",
            "l2, l3 or l3s",
        ),
        (
            &[
                "--ipvlan",
                "l2",
                "pwp-up0",
                g,
                "10.0.0.2/24",
                "02:00:00:00:00:01",
            ],
            "02:00:00:00:00:01",
            "share the parent's MAC",
        ),
        (
            &["--macvlan-mode", "source", "pwp-up0", g, "10.0.0.2/24"],
            "source",
            "bridge, private, vepa or passthru",
        ),
        (
            &["--macvlan-mode", "bridge", "pwp-br0", g, "10.0.0.2/24"],
            "pwp-br0",
            "needs a NIC",
        ),
        (
            &["--direct-phys", "pwp-br0", g, "10.0.0.2/24"],
            "pwp-br0",
            "is a bridge",
        ),
        (&["--direct-phys", "lo", g, "10.0.0.2/24"], "lo", "loopback"),
        (
            &["mac:02:99:00:00:00:99", g, "10.0.0.2/24"],
            "mac:02:99:00:00:00:99",
            "no host interface has this MAC",
        ),
        (
            &["mac:zz", g, "10.0.0.2/24"],
            "mac:zz",
            "mac:XX:XX:XX:XX:XX:XX",
        ),
        (
            &["pwp-up0", "--mtu", "9000", g, "10.0.0.2/24"],
            "9000",
            "parent",
        ),
        (&["dummy", g, "10.0.0.2/24", "@5"], "@5", "drop the @VLAN"),
        (
            &["pwp-longparent0", g, "10.0.0.2/24", "@100"],
            "@100",
            "15 characters",
        ),
        (
            &[
                "--direct-phys",
                "pwp-up0",
                "--macvlan-mode",
                "bridge",
                g,
                "10.0.0.2/24",
            ],
            "--direct-phys/--macvlan-mode/--ipvlan",
            "only one",
        ),
        (&["host-shim", "pwp-up0"], "pwp-up0", "usage"),
        (
            &["host-shim", "pwp-br0", "10.0.0.9/24"],
            "pwp-br0",
            "is a bridge",
        ),
        (
            &["host-shim", "pwp-nope0", "10.0.0.9/24"],
            "pwp-nope0",
            "no such host interface",
        ),
        (&["host-shim", "pwp-up0", "10.0.0.9"], "10.0.0.9", "prefix"),
        (&["route"], "<guest>", "pipework route"),
        (
            &["--wait", "-i", "eth/1"],
            "eth/1",
            "invalid interface name",
        ),
    ];
    let host_before = link_summary(&w.host);
    let guest_before = link_summary(&w.guests[0]);
    let routes_before = w.host.out(&["route"]);
    for (args, token, fix) in table {
        let e = w.pw_err(args);
        let line = e.trim_end();
        assert_eq!(line.lines().count(), 1, "{args:?}: not one line: {e}");
        assert!(
            line.starts_with(&format!("pipework: {token}: ")),
            "{args:?}: error does not start with the token {token:?}: {e}"
        );
        assert!(line.contains(fix), "{args:?}: no {fix:?} in: {e}");
        assert_eq!(
            link_summary(&w.host),
            host_before,
            "{args:?} changed the host"
        );
        assert_eq!(
            link_summary(&w.guests[0]),
            guest_before,
            "{args:?} changed the guest"
        );
        assert_eq!(
            w.host.out(&["route"]),
            routes_before,
            "{args:?} changed routes"
        );
    }
}

#[test]
fn dry_run_prints_the_plan_and_changes_nothing() {
    if !root_or_skip() {
        return;
    }
    let w = World::new("dry", 1, "10.231.8.1/24");
    let host_before = link_summary(&w.host);
    let guest_before = link_summary(&w.guests[0]);
    let g = w.guest(0);
    let out = w.pw_ok(&[
        "pwp-up0",
        "--macvlan-mode",
        "vepa",
        &g,
        "10.231.8.11/24",
        "@8",
        "--dry-run",
    ]);
    assert!(out.contains("type vlan id 8"), "{out}");
    assert!(
        out.contains("link add link pwp-up0.8 name eth1") && out.contains("type macvlan mode vepa"),
        "{out}"
    );
    let out = w.pw_ok(&[
        "--direct-phys",
        "pwp-up0",
        &g,
        "10.231.8.11/24",
        "--dry-run",
    ]);
    assert!(out.contains("ip link set pwp-up0 netns"), "{out}");
    let out = w.pw_ok(&[
        "--ipvlan",
        "l3s",
        "pwp-up0",
        &g,
        "10.231.8.11/24",
        "--dry-run",
    ]);
    assert!(out.contains("type ipvlan mode l3s"), "{out}");
    let out = w.pw_ok(&["host-shim", "pwp-up0", "10.231.8.2/24", "--dry-run"]);
    assert!(out.contains("type macvlan mode bridge"), "{out}");
    assert_eq!(link_summary(&w.host), host_before);
    assert_eq!(link_summary(&w.guests[0]), guest_before);
}
