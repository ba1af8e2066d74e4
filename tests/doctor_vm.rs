//! `pipework doctor` and Linux bridge VLAN filtering: two access ports in
//! VLAN 10 can talk, a port in VLAN 20 cannot, and doctor names the
//! cause (`vlan-mismatch`) and the `bridge vlan` command that fixes it.
//! Needs a kernel with CONFIG_BRIDGE_VLAN_FILTERING, so it runs in the VM
//! tier (scripts/vm-tier.sh doctor_vm); on a kernel without it, it says
//! SKIP. pipework runs inside a "host" namespace of its own, so the real
//! host is not touched. Every object is `pwy`.
mod common;

use common::*;
use serde_json::Value;

fn kernel_filters_vlans() -> bool {
    let ns = Netns::new("pwyp");
    ok(
        "ip",
        &["-n", &ns.name, "link", "add", "pwyprobe", "type", "bridge"],
    );
    sh(
        "ip",
        &[
            "-n",
            &ns.name,
            "link",
            "set",
            "pwyprobe",
            "type",
            "bridge",
            "vlan_filtering",
            "1",
        ],
    )
    .status
    .success()
}

/// pipework inside `host`.
fn pw(host: &Netns, args: &[&str]) -> std::process::Output {
    let mut a = vec!["netns", "exec", &host.name, BIN];
    a.extend_from_slice(args);
    sh("ip", &a)
}

fn snapshot(nss: &[&Netns], host: &Netns) -> String {
    let mut s: String = nss.iter().map(|n| ns_state(&n.path())).collect();
    s.push_str(&stdout(&sh("bridge", &["-n", &host.name, "vlan", "show"])));
    s.lines()
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

#[test]
fn bridge_vlan_filtering_10_against_20_is_vlan_mismatch() {
    if !kernel_filters_vlans() {
        eprintln!("SKIP: this kernel has no bridge VLAN filtering (the VM tier runs this test)");
        return;
    }
    let host = Netns::new("pwyh");
    ok("ip", &["-n", &host.name, "link", "set", "lo", "up"]);
    let g: Vec<Netns> = (0..3).map(|_| Netns::new("pwy")).collect();
    let br = "brpwyv";
    for (n, ip, vlan) in [
        (&g[0], "10.52.0.1/24", "@10"),
        (&g[1], "10.52.0.2/24", "@10"),
        (&g[2], "10.52.0.3/24", "@20"),
    ] {
        ok("ip", &["-n", &n.name, "link", "set", "lo", "up"]);
        let o = pw(&host, &[br, &n.spec(), ip, vlan]);
        assert!(o.status.success(), "attach {vlan}: {}", stderr(&o));
    }
    let all: Vec<&Netns> = std::iter::once(&host).chain(g.iter()).collect();
    let doctor = |b: &Netns| -> (i32, Value) {
        std::thread::sleep(std::time::Duration::from_millis(500));
        let before = snapshot(&all, &host);
        let o = pw(&host, &["doctor", &g[0].spec(), &b.spec(), "--json"]);
        assert_same(&before, &snapshot(&all, &host), "namespaces across doctor");
        eprintln!("{}{}", stdout(&o), stderr(&o));
        let v: Value = serde_json::from_str(&stdout(&o))
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}{}", stdout(&o), stderr(&o)));
        (o.status.code().unwrap_or(-1), v)
    };
    let (rc, v) = doctor(&g[1]);
    assert_eq!(rc, 0, "same VLAN: {v:#}");
    let (rc, v) = doctor(&g[2]);
    assert_eq!(rc, 1, "{v:#}");
    let causes = v["causes"].as_array().expect("causes");
    assert_eq!(causes.len(), 1, "{v:#}");
    let c = &causes[0];
    assert_eq!(c["kind"], "vlan-mismatch", "{v:#}");
    let fix = c["fix"].as_str().unwrap_or_default().to_string();
    assert!(
        fix.starts_with("bridge vlan add dev ") && fix.ends_with(" vid 10 pvid untagged"),
        "{c}"
    );
    // The fix, as given, makes them talk.
    let words: Vec<&str> = fix.split(' ').collect();
    let mut args = vec!["-n", host.name.as_str()];
    args.extend_from_slice(&words[1..]);
    ok("bridge", &args);
    let (rc, v) = doctor(&g[2]);
    assert_eq!(rc, 0, "after the fix: {v:#}");
}
