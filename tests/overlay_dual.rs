//! Dual-stack and IPv6-only overlay networks (issue #19), on the
//! three-host lab of tests/overlay_lab: real etcd, real agents, real
//! VXLAN devices in namespaces the tests make.
mod common;
mod overlay_lab;

use common::{BIN, require_env};
use overlay_lab::*;
use std::io::Write;
use std::process::{Command, Stdio};

/// `ip -o addr show dev eth1` in a container, one family.
fn addrs(ns: &str, fam: &str, dev: &str) -> String {
    ok("ip", &["-n", ns, fam, "-o", "addr", "show", "dev", dev])
}

fn mac_of(ns: &str, dev: &str) -> String {
    let out = ok("ip", &["-n", ns, "-o", "link", "show", "dev", dev]);
    out.split_whitespace()
        .skip_while(|w| *w != "link/ether")
        .nth(1)
        .unwrap_or_default()
        .to_string()
}

fn keys(lab: &Lab, prefix: &str) -> Vec<String> {
    lab.etcdctl(&["get", "--prefix", "--keys-only", prefix])
        .lines()
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect()
}

/// Dual stack across hosts: `auto` gives one address of each family with
/// one MAC; IPv4 and IPv6 pings cross hosts; the static dual form; an
/// IPv6-only network; the IPv6 anycast gateway (same on every host, never
/// on the VXLAN); IPv6 egress masqueraded to the host's underlay address;
/// status; detach releases both addresses.
#[test]
fn overlay_dual_stack_and_ipv6_only_across_hosts() {
    if !require_env() {
        return;
    }
    let mut lab = Lab::new("6a", 161);
    let created = lab.pw_ok(
        0,
        &[
            "overlay",
            "create",
            "dual",
            "--subnet",
            "10.61.0.0/24",
            "--subnet6",
            "fd61::/64",
        ],
    );
    assert!(created.contains("gateway 10.61.0.1 fd61::1"), "{created}");
    lab.pw_ok(0, &["overlay", "create", "six", "--subnet6", "fd62::/64"]);
    let c1 = lab.container("c1");
    let c2 = lab.container("c2");
    let c3 = lab.container("c3");
    lab.pw_ok(0, &["dual", &format!("netns:{c1}"), "auto"]);
    lab.pw_ok(1, &["dual", &format!("netns:{c2}"), "auto"]);
    // The static dual form: the IPv6 address as the classic extra --ip.
    lab.pw_ok(
        2,
        &[
            "dual",
            &format!("netns:{c3}"),
            "10.61.0.30/24",
            "--ip",
            "fd61::30/64",
        ],
    );
    // c1 took the first free addresses (.1 is the gateway), c2 the next.
    assert!(addrs(&c1, "-6", "eth1").contains("fd61::2/64"));
    let a2 = addrs(&c2, "-6", "eth1");
    assert!(a2.contains("fd61::3/64"), "{a2}");
    assert!(addrs(&c2, "-4", "eth1").contains("10.61.0.3/24"));
    assert!(addrs(&c3, "-6", "eth1").contains("fd61::30/64"));
    // One endpoint key and one reservation per address.
    let eps = keys(&lab, "/pipework/overlay/ep/dual/");
    assert_eq!(eps.len(), 6, "{eps:?}");
    assert_eq!(keys(&lab, "/pipework/overlay/resv/dual/").len(), 6);
    // One MAC for both families, from the IPv4 address.
    assert_eq!(mac_of(&c2, "eth1"), "02:77:0a:3d:00:03");
    // IPv4 and IPv6 across hosts, both ways.
    lab.wait("c1 pings c2 over IPv6", || ping(&c1, "fd61::3", 1).1 == 1);
    assert_eq!(ping(&c1, "fd61::3", 3), (3, 3));
    assert_eq!(ping(&c2, "fd61::30", 3), (3, 3));
    assert_eq!(ping(&c1, "10.61.0.3", 3), (3, 3));
    assert_eq!(ping(&c3, "10.61.0.3", 3), (3, 3));
    // h0 programs one FDB entry for c2's MAC and a permanent neighbour
    // entry per address (the vxlan device answers NS from these).
    let e = lab.entries(0, "dual");
    assert_eq!(
        e.matches("02:77:0a:3d:00:03 dst 10.231.161.2").count(),
        1,
        "{e}"
    );
    assert!(
        e.contains("fd61::3 lladdr 02:77:0a:3d:00:03 PERMANENT"),
        "{e}"
    );
    assert!(
        e.contains("10.61.0.3 lladdr 02:77:0a:3d:00:03 PERMANENT"),
        "{e}"
    );
    // The IPv6 gateway: on every host's bridge, same MAC, a default route
    // through it, never an entry on the VXLAN.
    for i in 0..2 {
        let a = ok(
            "ip",
            &["-n", &lab.host(i), "-o", "addr", "show", "dev", "ov-dual"],
        );
        assert!(
            a.contains("fd61::1/64") && a.contains("10.61.0.1/24"),
            "{a}"
        );
    }
    assert_eq!(
        mac_of(&lab.host(0), "ov-dual"),
        mac_of(&lab.host(1), "ov-dual")
    );
    let r6 = ok("ip", &["-n", &c1, "-6", "route", "show"]);
    assert!(r6.contains("default via fd61::1"), "{r6}");
    assert!(!lab.entries(1, "dual").contains("fd61::1 "));
    assert_eq!(
        ping(&c1, "fd61::1", 1).1,
        1,
        "the local IPv6 gateway answers"
    );
    // --no-default-route: neither family's default route.
    let c6 = lab.container("c6");
    lab.pw_ok(
        0,
        &["dual", &format!("netns:{c6}"), "auto", "--no-default-route"],
    );
    let r =
        ok("ip", &["-n", &c6, "-6", "route", "show"]) + &ok("ip", &["-n", &c6, "route", "show"]);
    assert!(!r.contains("default"), "{r}");
    assert!(addrs(&c6, "-6", "eth1").contains("fd61::"), "{r}");
    lab.pw_ok(0, &["detach", &format!("netns:{c6}")]);

    // IPv6 only: auto and static, pinged across hosts.
    let c4 = lab.container("c4");
    let c5 = lab.container("c5");
    lab.pw_ok(0, &["six", &format!("netns:{c4}"), "auto"]);
    lab.pw_ok(1, &["six", &format!("netns:{c5}"), "fd62::55/64"]);
    assert!(addrs(&c4, "-6", "eth1").contains("fd62::2/64"));
    assert!(addrs(&c4, "-4", "eth1").is_empty());
    assert_eq!(mac_of(&c4, "eth1"), "02:76:00:00:00:02");
    lab.wait("c4 pings c5", || ping(&c4, "fd62::55", 1).1 == 1);
    assert_eq!(ping(&c4, "fd62::55", 3), (3, 3));
    assert_eq!(ping(&c5, "fd62::2", 3), (3, 3));

    // doctor across hosts on the IPv6-only network: every hop healthy,
    // the overlay hop found by the IPv6 endpoint.
    let o = lab.pw(
        0,
        &[
            "doctor",
            &format!("netns:{c4}"),
            &format!("netns:{c5}"),
            "--json",
        ],
    );
    let d = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success(),
        "{d}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let v: serde_json::Value = serde_json::from_str(&d).expect("doctor json");
    let hop = v["hops"]
        .as_array()
        .and_then(|h| h.iter().find(|h| h["hop"] == "overlay six vx-six"))
        .cloned()
        .unwrap_or_default();
    assert!(hop.to_string().contains("fd62::55"), "{d}");

    // status: subnet6 and the IPv6 endpoints, in text and JSON.
    let st = lab.pw_ok(0, &["overlay", "status"]);
    assert!(st.contains("fd61::/64") && st.contains("fd62::55"), "{st}");
    let js = lab.pw_ok(0, &["overlay", "status", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&js).expect("status json");
    let six = v["networks"]
        .as_array()
        .and_then(|n| n.iter().find(|n| n["name"] == "six"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(six["subnet6"], "fd62::/64", "{js}");
    assert!(six.get("subnet").is_none(), "{js}");
    assert_eq!(v["drift"].as_array().map(Vec::len), Some(0), "{js}");

    // IPv6 egress: masqueraded to each host's own underlay address.
    let inet = internet6(&mut lab, "fd61::/64");
    lab.wait("c1 reaches the IPv6 internet", || {
        ping(&c1, "2001:db8:77::1", 1).1 == 1
    });
    assert_eq!(ping(&c2, "2001:db8:77::1", 2).1, 2, "egress from h1");
    let seen = nft(&inet, "list table ip6 pwvseen");
    assert!(counted(&seen, "saddr fd00:161::1 ") >= 1, "{seen}");
    assert_eq!(counted(&seen, "saddr fd00:161::2 "), 2, "{seen}");
    assert_eq!(counted(&seen, "fd61::/64"), 0, "{seen}");
    let t = nft(&lab.host(0), "list table inet pipework_egress");
    assert!(t.contains("ip6 saddr fd61::/64"), "{t}");
    // Isolation holds for IPv6 as for IPv4: dual never reaches six.
    assert_eq!(ping(&c1, "fd62::2", 2).1, 0, "dual reached six");

    // Detach gives back both addresses, endpoint and reservation.
    lab.pw_ok(1, &["detach", &format!("netns:{c2}")]);
    let left = keys(&lab, "/pipework/overlay/");
    assert!(
        !left
            .iter()
            .any(|k| k.ends_with("/10.61.0.3") || k.ends_with("/fd61::3")),
        "{left:?}"
    );
    lab.wait("h0 drops c2's entries", || {
        let e = lab.entries(0, "dual");
        // (The bridge's own learned entry for the MAC ages out alone.)
        !e.contains("02:77:0a:3d:00:03 dst") && !e.contains("lladdr 02:77:0a:3d:00:03")
    });
    lab.pw_ok(0, &["detach", &format!("netns:{c1}")]);
    lab.pw_ok(2, &["detach", &format!("netns:{c3}")]);
    lab.pw_ok(0, &["detach", &format!("netns:{c4}")]);
    lab.pw_ok(1, &["detach", &format!("netns:{c5}")]);
    lab.pw_ok(0, &["overlay", "delete", "dual"]);
    lab.pw_ok(0, &["overlay", "delete", "six"]);
}

/// Bad input: each refused in one line, etcd and the host unchanged.
/// And CNI ADD on a dual-stack network returns both families with their
/// gateways and default routes; CHECK passes; DEL releases both.
#[test]
fn overlay_dual_bad_input_and_cni() {
    if !require_env() {
        return;
    }
    let mut lab = Lab::new("6b", 162);
    lab.pw_ok(
        0,
        &[
            "overlay",
            "create",
            "dual",
            "--subnet",
            "10.63.0.0/24",
            "--subnet6",
            "fd63::/64",
        ],
    );
    let c1 = lab.container("c1");
    lab.pw_ok(0, &["dual", &format!("netns:{c1}"), "auto"]);
    let c = lab.container("c");
    let snap = |lab: &Lab| {
        (
            lab.etcdctl(&["get", "--prefix", "/pipework/overlay/"]),
            links(&c),
            ok("ip", &["-n", &lab.host(0), "-o", "addr", "show"]),
            ok("ip", &["-n", &lab.host(0), "-o", "link", "show"]),
        )
    };
    // The agent finishes c1's network after the attach returns (the
    // gateway addresses, link-local DAD): start from a settled host.
    let mut before = snap(&lab);
    for _ in 0..15 {
        std::thread::sleep(std::time::Duration::from_secs(2));
        let again = snap(&lab);
        if again == before {
            break;
        }
        before = again;
    }
    let cont = format!("netns:{c}");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["overlay", "create", "bad"], "--subnet6"),
        (
            vec!["overlay", "create", "bad", "--subnet6", "fd63::/96"],
            "overlaps network dual",
        ),
        (
            vec!["overlay", "create", "bad", "--subnet6", "fd64::1/64"],
            "network address",
        ),
        (
            vec!["overlay", "create", "bad", "--subnet6", "fd64::/124"],
            "/120",
        ),
        (
            vec![
                "overlay",
                "create",
                "bad",
                "--subnet6",
                "fd64::/64",
                "--gateway6",
                "fd65::1",
            ],
            "--gateway6",
        ),
        (
            vec!["dual", &cont, "10.63.0.40/24", "--ip", "fd99::5/64"],
            "outside",
        ),
        (vec!["dual", &cont, "fd63::2/64"], "in use by"),
        // A free IPv4 address with a taken IPv6 one: neither is claimed.
        (
            vec!["dual", &cont, "10.63.0.41/24", "--ip", "fd63::2/64"],
            "in use by",
        ),
        (
            vec!["dual", &cont, "fd63::5/64", "--ip", "fd63::6/64"],
            "one address per family",
        ),
    ];
    for (args, token) in cases {
        let o = lab.pw(0, &args);
        let e = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{args:?} succeeded");
        assert!(e.contains(token), "{args:?}: {e}");
        assert_eq!(e.trim().lines().count(), 1, "{args:?}: {e}");
        let after = snap(&lab);
        assert!(
            after == before,
            "{args:?} changed something: {after:?} vs {before:?}"
        );
    }

    // CNI: ADD returns both families, CHECK passes, DEL releases both.
    let conf = serde_json::json!({"cniVersion": "1.0.0", "name": "dual", "type": "pipework", "mode": "overlay"});
    let cni = |verb: &str, conf: &serde_json::Value| {
        let mut ch = Command::new("ip")
            .args(["netns", "exec", &lab.host(1), BIN])
            .env("CNI_COMMAND", verb)
            .env("CNI_CONTAINERID", "pwvdualcni1")
            .env("CNI_NETNS", format!("/run/netns/{c}"))
            .env("CNI_IFNAME", "eth0")
            .env("CNI_PATH", "/usr/lib/cni")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cni");
        if let Some(mut i) = ch.stdin.take() {
            i.write_all(conf.to_string().as_bytes()).expect("stdin");
        }
        ch.wait_with_output().expect("cni")
    };
    let o = cni("ADD", &conf);
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let res: serde_json::Value = serde_json::from_str(&out).expect("result");
    let ips = res["ips"].as_array().cloned().unwrap_or_default();
    assert_eq!(ips.len(), 2, "{out}");
    assert_eq!(ips[0]["address"], "10.63.0.3/24", "{out}");
    assert_eq!(ips[0]["gateway"], "10.63.0.1", "{out}");
    assert_eq!(ips[1]["address"], "fd63::3/64", "{out}");
    assert_eq!(ips[1]["gateway"], "fd63::1", "{out}");
    let routes = res["routes"].to_string();
    assert!(
        routes.contains("\"0.0.0.0/0\"") && routes.contains("\"::/0\""),
        "{out}"
    );
    assert!(addrs(&c, "-6", "eth0").contains("fd63::3/64"));
    let r6 = ok("ip", &["-n", &c, "-6", "route", "show"]);
    assert!(r6.contains("default via fd63::1"), "{r6}");
    // Across hosts from the container CNI made, over IPv6.
    lab.wait("c pings c1 over IPv6", || ping(&c, "fd63::2", 1).1 == 1);
    let mut check = conf.clone();
    check["prevResult"] = res.clone();
    let o = cni("CHECK", &check);
    assert!(
        o.status.success(),
        "CHECK: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    let o = cni("DEL", &conf);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let left = keys(&lab, "/pipework/overlay/");
    assert!(
        !left
            .iter()
            .any(|k| k.ends_with("/10.63.0.3") || k.ends_with("/fd63::3")),
        "{left:?}"
    );
    lab.pw_ok(0, &["detach", &format!("netns:{c1}")]);
    lab.pw_ok(0, &["overlay", "delete", "dual"]);
}

/// Start host `i`'s agent with an IPv6 underlay address (the lab's own
/// agents use eth0's IPv4 one), kept in `lab.agents` so the lab stops it.
fn agent_on_ipv6(lab: &mut Lab, i: usize) {
    let ul = format!("fd00:{}::{}", lab.sub, i + 1);
    lab.spawn_agent_on(i, &ul, TTL);
    let key = format!("/pipework/overlay/host/h{i}");
    lab.wait("agent registration", || {
        lab.etcdctl(&["get", &key]).contains(&ul)
    });
}

/// An IPv6 underlay: VXLAN over IPv6 between hosts, `--mtu auto` takes
/// its 70 bytes (1500 - 70 = 1430), the FDB entries point at IPv6 VTEPs,
/// and a dual-stack network works across it, DF at the MTU included.
#[test]
fn overlay_dual_stack_over_an_ipv6_underlay() {
    if !require_env() {
        return;
    }
    let mut lab = Lab::bare("6c", 163);
    lab.start_etcd();
    for i in 0..2 {
        let h = lab.host(i);
        let a = format!("fd00:{}::{}/64", lab.sub, i + 1);
        ok("ip", &["-n", &h, "addr", "add", &a, "dev", "eth0", "nodad"]);
        agent_on_ipv6(&mut lab, i);
    }
    let created = lab.pw_ok(
        0,
        &[
            "overlay",
            "create",
            "u6",
            "--subnet",
            "10.64.0.0/24",
            "--subnet6",
            "fd64::/64",
        ],
    );
    assert!(created.contains("mtu 1430"), "{created}");
    let c0 = lab.container("c0");
    let c1 = lab.container("c1");
    lab.pw_ok(0, &["u6", &format!("netns:{c0}"), "auto"]);
    lab.pw_ok(1, &["u6", &format!("netns:{c1}"), "auto"]);
    assert!(links(&c1).contains("mtu 1430"), "{}", links(&c1));
    lab.wait("c0 pings c1 over IPv6", || ping(&c0, "fd64::3", 1).1 == 1);
    assert_eq!(ping(&c0, "10.64.0.3", 3), (3, 3));
    assert_eq!(ping(&c1, "fd64::2", 3), (3, 3));
    // The VXLAN guard lists the members' IPv6 underlay addresses.
    let g = ok(
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
    );
    assert!(g.contains("fd00:163::2"), "{g}");
    let e = lab.entries(0, "u6");
    assert!(e.contains("02:77:0a:40:00:03 dst fd00:163::2"), "{e}");
    let ip1: std::net::Ipv4Addr = "10.64.0.3".parse().expect("ip");
    assert_eq!(df_ping(&c0, ip1, 1430), Ok(true));
    assert_eq!(df_ping(&c0, ip1, 1431), Err(libc::EMSGSIZE));
    // h1's agent dead past its lease: both of c1's endpoints leave etcd;
    // a new agent publishes both again from c1's signed record.
    lab.kill_agent(1);
    let c1_eps = |lab: &Lab| {
        keys(lab, "/pipework/overlay/ep/u6/")
            .iter()
            .filter(|k| k.ends_with("/10.64.0.3") || k.ends_with("/fd64::3"))
            .count()
    };
    lab.wait("c1's endpoints lapse", || c1_eps(&lab) == 0);
    agent_on_ipv6(&mut lab, 1);
    lab.wait("c1's endpoints are published again", || c1_eps(&lab) == 2);
    lab.wait("c0 pings c1 over IPv6 again", || {
        ping(&c0, "fd64::3", 1).1 == 1
    });
    lab.pw_ok(0, &["detach", &format!("netns:{c0}")]);
    lab.pw_ok(1, &["detach", &format!("netns:{c1}")]);
    lab.pw_ok(0, &["overlay", "delete", "u6"]);
}
