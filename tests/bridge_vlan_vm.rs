//! VLANs on a Linux bridge (`pipework BR GUEST IP @VID`, `--trunk`), with
//! bridge VLAN filtering. The working path needs a kernel with
//! CONFIG_BRIDGE_VLAN_FILTERING, so it runs in the VM tier (this file is
//! `*_vm.rs`: scripts/vm-tier.sh runs it under Debian's kernel); on a
//! kernel that refuses `vlan_filtering`, the refusal itself is tested.
//!
//! Everything happens inside test namespaces: pipework runs in a "host"
//! namespace of its own (`ip netns exec`), so the real host is not touched.
mod phys_util;

use phys_util::*;
use std::process::{Command, Output};

/// Can this kernel turn VLAN filtering on? Probed in a throwaway namespace.
fn kernel_filters_vlans() -> bool {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let ns = TestNs::new(&format!("bvprobe{n}"));
    ns.sh(&["link", "add", "pwwprobe", "type", "bridge"]);
    ns.try_sh(&[
        "link",
        "set",
        "pwwprobe",
        "type",
        "bridge",
        "vlan_filtering",
        "1",
    ])
}

/// pipework, run inside `host`.
fn pw(host: &TestNs, args: &[&str]) -> Output {
    Command::new("ip")
        .args(["netns", "exec", &host.name, PIPEWORK])
        .args(args)
        .output()
        .expect("run pipework")
}

#[track_caller]
fn pw_ok(host: &TestNs, args: &[&str]) -> String {
    let o = pw(host, args);
    assert!(
        o.status.success(),
        "pipework {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Everything a refused attach could have touched in `ns`: links (name,
/// flags, MTU, controller), each bridge's vlan_filtering, addresses. Not
/// the MACs and offload sizes a bridge takes from its ports: the kernel
/// keeps those when a port leaves, whoever removes it.
fn snapshot(ns: &TestNs) -> String {
    let mut s: String = ns
        .out(&["-o", "link", "show"])
        .lines()
        .map(|l| format!("{}\n", l.split("link/").next().unwrap_or(l)))
        .collect();
    for w in ns
        .out(&["-d", "link", "show", "type", "bridge"])
        .split(" vlan_filtering ")
        .skip(1)
    {
        s.push_str(&format!(
            "vlan_filtering {}\n",
            w.split(' ').next().unwrap_or("")
        ));
    }
    s.push_str(&ns.out(&["-o", "addr", "show"]));
    s
}

#[test]
fn refused_in_one_line_where_the_kernel_cannot_filter() {
    if !root_or_skip() {
        return;
    }
    if kernel_filters_vlans() {
        skip(
            "this kernel filters VLANs on bridges; the refusal is tested where it cannot (the host tier)",
        );
        return;
    }
    let host = TestNs::new("bvrh");
    let g = TestNs::new("bvrg");
    let spec = format!("netns:{}", g.name);
    // An existing bridge (refused before anything is built) and one the
    // classic rule would create (created, then rolled back).
    host.sh(&["link", "add", "brpwwe", "type", "bridge"]);
    let before = (snapshot(&host), snapshot(&g));
    for args in [
        vec!["brpwwe", spec.as_str(), "10.0.0.2/24", "@10"],
        vec!["brpwwn", spec.as_str(), "10.0.0.2/24", "@10"],
        vec!["brpwwe", spec.as_str(), "0/0", "--trunk", "10,20-30"],
    ] {
        let o = pw(&host, &args);
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        assert!(!o.status.success(), "{args:?}");
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
        assert!(
            err.contains("CONFIG_BRIDGE_VLAN_FILTERING") && err.contains(args[0]),
            "{args:?}: {err}"
        );
        assert_eq!(
            (snapshot(&host), snapshot(&g)),
            before,
            "{args:?} changed something"
        );
    }
}

/// `bridge -j vlan show dev PORT` inside `ns`: (vid, flags) pairs.
fn port_vlans(ns: &TestNs, port: &str) -> Vec<(u64, Vec<String>)> {
    let o = Command::new("ip")
        .args([
            "netns", "exec", &ns.name, "bridge", "-j", "vlan", "show", "dev", port,
        ])
        .output()
        .expect("bridge vlan show");
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_default();
    let mut out = Vec::new();
    for dev in v.as_array().into_iter().flatten() {
        for e in dev["vlans"].as_array().into_iter().flatten() {
            let first = e["vlan"].as_u64().unwrap_or(0);
            let last = e["vlanEnd"].as_u64().unwrap_or(first);
            let flags: Vec<String> = e["flags"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|f| f.as_str().map(String::from))
                .collect();
            out.extend((first..=last).map(|vid| (vid, flags.clone())));
        }
    }
    out
}

/// The host end of a guest's veth: the bridge port whose peer is in `g`.
fn port_of(host: &TestNs, br: &str, prefix_count_before: &[String]) -> String {
    let ports: Vec<String> = host
        .out(&["-o", "link", "show", "master", br])
        .lines()
        .filter_map(|l| {
            l.split(": ")
                .nth(1)
                .map(|n| n.split('@').next().unwrap_or(n).to_string())
        })
        .filter(|n| !prefix_count_before.contains(n))
        .collect();
    assert_eq!(ports.len(), 1, "{ports:?}");
    ports[0].clone()
}

fn ports(host: &TestNs, br: &str) -> Vec<String> {
    host.out(&["-o", "link", "show", "master", br])
        .lines()
        .filter_map(|l| {
            l.split(": ")
                .nth(1)
                .map(|n| n.split('@').next().unwrap_or(n).to_string())
        })
        .collect()
}

fn filtering(host: &TestNs, br: &str) -> bool {
    host.out(&["-d", "link", "show", br])
        .contains("vlan_filtering 1")
}

#[test]
fn access_ports_isolate_trunks_carry_tags_existing_ports_keep_working() {
    if !root_or_skip() || !busybox_or_skip() {
        return;
    }
    if !kernel_filters_vlans() {
        skip(
            "this kernel cannot filter VLANs on bridges; this test runs in the VM tier: scripts/vm-tier.sh bridge_vlan_vm",
        );
        return;
    }
    let host = TestNs::new("bvh");
    let br = "brpwwv";
    // A bridge that already carries untagged traffic: the host's own
    // address and a port to a namespace that predates any VLAN.
    // A fixed MAC, as pipework gives its own bridges: otherwise the bridge
    // takes its ports' lowest MAC, and the old port's neighbour entry for
    // the host goes stale whenever a port leaves.
    host.sh(&[
        "link",
        "add",
        br,
        "address",
        "02:00:00:00:50:01",
        "type",
        "bridge",
    ]);
    host.sh(&["addr", "add", "10.51.0.254/24", "dev", br]);
    host.sh(&["link", "set", br, "up"]);
    let old = TestNs::new("bvold");
    host.sh(&[
        "link", "add", "pwwold", "type", "veth", "peer", "name", "eth0", "netns", &old.name,
    ]);
    host.sh(&["link", "set", "pwwold", "master", br, "up"]);
    old.sh(&["addr", "add", "10.51.0.1/24", "dev", "eth0"]);
    old.sh(&["link", "set", "eth0", "up"]);
    assert!(ping(&old, "10.51.0.254"));

    let g: Vec<TestNs> = (0..4).map(|i| TestNs::new(&format!("bvg{i}"))).collect();
    let spec = |i: usize| format!("netns:{}", g[i].name);
    let mut seen = ports(&host, br);
    let mut attach = |args: &[&str]| {
        pw_ok(&host, args);
        let p = port_of(&host, br, &seen);
        seen.push(p.clone());
        p
    };
    let p1 = attach(&[br, &spec(0), "10.50.0.1/24", "@10"]);
    let p2 = attach(&[br, &spec(1), "10.50.0.2/24", "@10"]);
    let p3 = attach(&[br, &spec(2), "10.50.0.3/24", "@20"]);
    let p4 = attach(&[br, &spec(3), "0/0", "--trunk", "10,20-22"]);
    assert!(filtering(&host, br));

    // Access ports: their VLAN only, as PVID and untagged; VLAN 1 left.
    for (p, vid) in [(&p1, 10), (&p2, 10), (&p3, 20)] {
        let v = port_vlans(&host, p);
        assert_eq!(v.len(), 1, "{p}: {v:?}");
        assert_eq!(v[0].0, vid, "{p}: {v:?}");
        assert!(v[0].1.iter().any(|f| f == "PVID"), "{p}: {v:?}");
        assert!(v[0].1.iter().any(|f| f == "Egress Untagged"), "{p}: {v:?}");
    }
    // The trunk: tagged VLANs, no PVID.
    let t = port_vlans(&host, &p4);
    assert_eq!(
        t.iter().map(|x| x.0).collect::<Vec<_>>(),
        vec![10, 20, 21, 22],
        "{t:?}"
    );
    assert!(t.iter().all(|x| x.1.is_empty()), "{t:?}");
    // The bridge device itself joined none of them.
    let own = port_vlans(&host, br);
    assert!(own.iter().all(|x| x.0 == 1), "{own:?}");

    // Same VLAN pings; another VLAN in the same subnet cannot.
    assert!(ping(&g[0], "10.50.0.2"));
    assert!(!ping(&g[0], "10.50.0.3"));
    // The trunk port sees VLAN 10 tagged: a VLAN interface on it talks.
    g[3].sh(&[
        "link", "add", "link", "eth1", "name", "eth1.10", "type", "vlan", "id", "10",
    ]);
    g[3].sh(&["addr", "add", "10.50.0.4/24", "dev", "eth1.10"]);
    g[3].sh(&["link", "set", "eth1.10", "up"]);
    assert!(ping(&g[3], "10.50.0.1"));
    // The port that predates the VLANs still reaches the host.
    assert!(ping(&old, "10.51.0.254"));

    // Detach: filtering stays while a VLAN port is left, goes with the last.
    for (i, n) in g.iter().enumerate() {
        pw_ok(&host, &["detach", &format!("netns:{}", n.name)]);
        assert_eq!(filtering(&host, br), i < 3, "after detaching {i}");
    }
    assert!(ping(&old, "10.51.0.254"));
}

#[test]
fn a_failed_attach_rolls_the_vlan_setup_back() {
    if !root_or_skip() {
        return;
    }
    if !kernel_filters_vlans() {
        skip(
            "this kernel cannot filter VLANs on bridges; this test runs in the VM tier: scripts/vm-tier.sh bridge_vlan_vm",
        );
        return;
    }
    let host = TestNs::new("bvfh");
    let g = TestNs::new("bvfg");
    // IPv6 off in the guest: adding the address fails after the bridge,
    // its filtering and the port's VLANs were set up.
    let off = Command::new("ip")
        .args([
            "netns",
            "exec",
            &g.name,
            "sysctl",
            "-qw",
            "net.ipv6.conf.all.disable_ipv6=1",
            "net.ipv6.conf.default.disable_ipv6=1",
        ])
        .status()
        .expect("sysctl");
    assert!(off.success());
    host.sh(&["link", "add", "brpwwf", "type", "bridge"]);
    let before = (snapshot(&host), snapshot(&g));
    let spec = format!("netns:{}", g.name);
    for br in ["brpwwf", "brpwwg"] {
        let o = pw(&host, &[br, &spec, "2001:db8::5/64", "@10"]);
        assert!(!o.status.success(), "{br}: attach should fail");
        assert_eq!(
            (snapshot(&host), snapshot(&g)),
            before,
            "{br}: not rolled back"
        );
    }
    assert!(!filtering(&host, "brpwwf"));
}

/// Review finding: filtering pipework turned on stayed on for good when
/// its VLAN containers died without a detach (and, before the marker, a
/// SIGKILL between turning it on and the first record left no trace at
/// all). `gc` now turns it off once no VLAN port of ours is left.
#[test]
fn gc_turns_filtering_off_after_the_vlan_guests_died() {
    if !root_or_skip() {
        return;
    }
    if !kernel_filters_vlans() {
        skip(
            "this kernel cannot filter VLANs on bridges; this test runs in the VM tier: scripts/vm-tier.sh bridge_vlan_vm",
        );
        return;
    }
    let host = TestNs::new("bvdh");
    let g = TestNs::new("bvdg");
    host.sh(&["link", "add", "brpwwd", "type", "bridge"]);
    pw_ok(
        &host,
        &[
            "brpwwd",
            &format!("netns:{}", g.name),
            "10.77.0.2/24",
            "@10",
        ],
    );
    assert!(filtering(&host, "brpwwd"));
    // The guest dies without a detach: its namespace goes, the veth with it.
    let _ = Command::new("ip").args(["netns", "del", &g.name]).status();
    let t0 = std::time::Instant::now();
    while !ports(&host, "brpwwd").is_empty() && t0.elapsed().as_secs() < 10 {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(ports(&host, "brpwwd").is_empty());
    assert!(filtering(&host, "brpwwd"), "nothing but gc turns it off");
    let out = pw_ok(&host, &["gc"]);
    assert!(out.contains("vlan-filtering"), "{out}");
    assert!(!filtering(&host, "brpwwd"), "gc left filtering on: {out}");
    // A bridge filtering on its own admin's say is never touched.
    host.sh(&[
        "link",
        "set",
        "brpwwd",
        "type",
        "bridge",
        "vlan_filtering",
        "1",
    ]);
    pw_ok(&host, &["gc"]);
    assert!(
        filtering(&host, "brpwwd"),
        "gc turned off an admin's filtering"
    );
}
