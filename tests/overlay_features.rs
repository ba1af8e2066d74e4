//! Overlay features beyond the datapath (issue 19), on the same lab as
//! tests/overlay.rs: real 3-member etcd in host namespaces, real agents.
mod common;
mod overlay_lab;

use common::require_env;
use overlay_lab::*;

/// The guard's set of registered underlay addresses on host `i`.
fn guard_hosts(lab: &Lab, i: usize) -> String {
    let o = run(
        "ip",
        &[
            "netns",
            "exec",
            &lab.host(i),
            "nft",
            "list",
            "set",
            "inet",
            "pipework_vxlan",
            "hosts4",
        ],
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn guard_table(lab: &Lab, i: usize) -> String {
    let o = run(
        "ip",
        &[
            "netns",
            "exec",
            &lab.host(i),
            "nft",
            "list",
            "table",
            "inet",
            "pipework_vxlan",
        ],
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Packets the guard dropped on host `i` (the IPv4 rule's counter).
fn guard_drops(lab: &Lab, i: usize) -> u64 {
    let t = guard_table(lab, i);
    t.lines()
        .find(|l| l.contains("@hosts4"))
        .and_then(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            let at = w.iter().position(|x| *x == "packets")?;
            w.get(at + 1)?.parse().ok()
        })
        .unwrap_or(0)
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
