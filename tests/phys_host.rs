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
        eprintln!("SKIP: iproute2 (ip, tc) not installed");
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
