//! VM tier: tests that need kernel features this host lacks (8021q, ipvlan,
//! dummy). `scripts/vmtest.sh` runs this binary under Debian's stock kernel:
//!
//!     cargo test --no-run --test vm_kernel
//!     scripts/vmtest.sh target/debug/deps/vm_kernel-* --test-threads=1
//!
//! On a kernel without a feature each test says so and which command runs
//! it; `.ci/run` runs the VM tier, so nothing is covered only by a skip.
mod phys_util;

use phys_util::*;

/// Can this kernel create links of `kind`? Probed in a throwaway namespace.
fn kernel_has(kind: &str) -> bool {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let ns = TestNs::new(&format!("probe{n}"));
    ns.sh(&[
        "link", "add", "pwp-pa", "type", "veth", "peer", "name", "pwp-pb",
    ]);
    let ok = match kind {
        "vlan" => ns.try_sh(&[
            "link", "add", "link", "pwp-pa", "name", "pwp-pa.5", "type", "vlan", "id", "5",
        ]),
        "ipvlan" => ns.try_sh(&[
            "link", "add", "link", "pwp-pa", "name", "pwp-iv", "type", "ipvlan", "mode", "l2",
        ]),
        other => ns.try_sh(&["link", "add", "pwp-probe", "type", other]),
    };
    if !ok {
        skip(&format!(
            "this kernel ({}) cannot create {kind} links; this test runs in the VM tier: \
             cargo test --no-run --test vm_kernel && scripts/vmtest.sh target/debug/deps/vm_kernel-<hash> --test-threads=1",
            std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .unwrap_or_default()
                .trim()
        ));
    }
    ok
}

fn ready(kinds: &[&str]) -> bool {
    root_or_skip() && busybox_or_skip() && kinds.iter().all(|k| kernel_has(k))
}

fn detail(ns: &TestNs, ifname: &str) -> String {
    ns.out(&["-d", "link", "show", ifname])
}

#[test]
fn vlan_macvlan_created_reused_and_removed_with_its_last_guest() {
    if !ready(&["vlan"]) {
        return;
    }
    let w = World::new("vl", 2, "10.231.20.1/24");
    // The LAN speaks VLAN 10 on its port, untagged traffic elsewhere.
    w.lan.sh(&[
        "link", "add", "link", "lanbr", "name", "lanbr.10", "type", "vlan", "id", "10",
    ]);
    w.lan
        .sh(&["addr", "add", "10.231.10.1/24", "dev", "lanbr.10"]);
    w.lan.sh(&["link", "set", "lanbr.10", "up"]);

    w.pw_ok(&["pwp-up0", &w.guest(0), "10.231.10.11/24", "@10"]);
    let v = detail(&w.host, "pwp-up0.10");
    assert!(v.contains("vlan protocol 802.1Q id 10"), "{v}");
    assert!(detail(&w.guests[0], "eth1").contains("macvlan mode bridge"));
    assert!(
        ping(&w.guests[0], "10.231.10.1"),
        "no tagged path to the LAN"
    );
    // Untagged LAN address is not reachable from VLAN 10.
    assert!(!ping(&w.guests[0], "10.231.20.1"));

    // Second guest reuses the VLAN interface.
    w.pw_ok(&[
        "pwp-up0",
        &w.guest(1),
        "10.231.10.12/24",
        "02:31:00:00:10:12@10",
    ]);
    assert!(ping(&w.guests[1], "10.231.10.11"));
    let ls = w.pw_ok(&["ls", "--json"]);
    assert!(ls.contains("pwp-up0.10"), "{ls}");

    // The VLAN interface stays while a guest uses it, goes with the last.
    w.pw_ok(&["detach", &w.guest(0)]);
    assert!(w.host.try_sh(&["link", "show", "pwp-up0.10"]));
    w.pw_ok(&["detach", &w.guest(1)]);
    assert!(
        !w.host.try_sh(&["link", "show", "pwp-up0.10"]),
        "VLAN interface left behind"
    );
}

/// The VLAN sub-interface is marked as pipework's in a second netlink
/// request (the kernel ignores IFLA_IFALIAS on create). pipework killed
/// (strace's SIGKILL injection) at each of its netlink requests of a `@VID`
/// attach: the re-run succeeds (a dead run's half-built VLAN under a `pw.`
/// name holds the VLAN id, and the re-run removes it), and detach + gc
/// leave the host as before: the VLAN was never left unmarked under its
/// final name (detach keeps those, as an administrator's).
#[test]
fn vlan_attach_killed_at_each_request_is_finished_by_the_re_run() {
    use std::os::unix::process::ExitStatusExt;
    if !ready(&["vlan"]) {
        return;
    }
    if std::process::Command::new("strace")
        .arg("-V")
        .output()
        .is_err()
    {
        skip("no strace");
        return;
    }
    let w = World::new("vk", 1, "10.231.22.1/24");
    let before = link_summary(&w.host);
    let guest = w.guest(0);
    let args = ["pwp-up0", guest.as_str(), "10.231.22.11/24", "@12"];
    let (mut windows, mut problems) = (0, Vec::new());
    for k in 1..=300 {
        let o = std::process::Command::new("ip")
            .args([
                "netns",
                "exec",
                &w.host.name,
                "strace",
                "-f",
                "-o",
                "/dev/null",
            ])
            .args(["-e", "trace=sendto", "-e"])
            .arg(format!("inject=sendto:signal=SIGKILL:when={k}"))
            .arg("--")
            .arg(PIPEWORK)
            .args(args)
            .output()
            .expect("run strace");
        // strace re-raises the signal that killed pipework.
        let killed = o.status.signal() == Some(libc::SIGKILL);
        let at = format!("killed at sendto #{k}");
        let links = link_summary(&w.host);
        if links.iter().any(|l| l.starts_with("pw.")) {
            windows += 1;
        }
        let again = w.pw(&args);
        if !again.status.success() {
            problems.push(format!(
                "{at}: re-run failed: {}",
                String::from_utf8_lossy(&again.stderr).trim_end()
            ));
        }
        let _ = w.pw(&["detach", &guest]);
        let _ = w.pw(&["gc"]);
        let after = link_summary(&w.host);
        if after != before {
            problems.push(format!("{at}: host links {after:?}, before {before:?}"));
            // Judge the next kill on its own.
            let _ = w.host.try_sh(&["link", "del", "pwp-up0.12"]);
        }
        if !killed {
            break;
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert!(
        windows > 0,
        "no kill fell between the VLAN's creation and its mark"
    );
}

#[test]
fn vlan_made_by_the_admin_is_reused_and_kept() {
    if !ready(&["vlan"]) {
        return;
    }
    let w = World::new("va", 1, "10.231.21.1/24");
    w.host.sh(&[
        "link",
        "add",
        "link",
        "pwp-up0",
        "name",
        "pwp-up0.11",
        "type",
        "vlan",
        "id",
        "11",
    ]);
    w.pw_ok(&["pwp-up0", &w.guest(0), "10.231.11.11/24", "@11"]);
    w.pw_ok(&["detach", &w.guest(0)]);
    assert!(
        w.host.try_sh(&["link", "show", "pwp-up0.11"]),
        "deleted the admin's VLAN"
    );
}

#[test]
fn vlan_name_taken_by_something_else_is_refused_cleanly() {
    if !ready(&["vlan", "dummy"]) {
        return;
    }
    let w = World::new("vc", 1, "10.231.22.1/24");
    w.host.sh(&["link", "add", "pwp-up0.20", "type", "dummy"]);
    w.host.sh(&[
        "link",
        "add",
        "link",
        "pwp-up0",
        "name",
        "pwp-up0.21",
        "type",
        "vlan",
        "id",
        "99",
    ]);
    let before = link_summary(&w.host);
    let e = w.pw_err(&["pwp-up0", &w.guest(0), "10.231.12.11/24", "@20"]);
    assert!(
        e.starts_with("pipework: pwp-up0.20: exists but is a dummy device, not VLAN 20"),
        "{e}"
    );
    let e = w.pw_err(&["pwp-up0", &w.guest(0), "10.231.12.11/24", "@21"]);
    assert!(
        e.starts_with("pipework: pwp-up0.21: exists but is VLAN 99"),
        "{e}"
    );
    assert_eq!(link_summary(&w.host), before);
    assert!(!w.guests[0].try_sh(&["link", "show", "eth1"]));
}

#[test]
fn vlan_with_direct_phys_moves_the_vlan_device() {
    if !ready(&["vlan"]) {
        return;
    }
    let w = World::new("vd", 1, "10.231.23.1/24");
    w.lan.sh(&[
        "link", "add", "link", "lanbr", "name", "lanbr.30", "type", "vlan", "id", "30",
    ]);
    w.lan
        .sh(&["addr", "add", "10.231.30.1/24", "dev", "lanbr.30"]);
    w.lan.sh(&["link", "set", "lanbr.30", "up"]);
    w.pw_ok(&[
        "--direct-phys",
        "pwp-up0",
        &w.guest(0),
        "10.231.30.11/24",
        "@30",
    ]);
    assert!(!w.host.try_sh(&["link", "show", "pwp-up0.30"]));
    assert!(detail(&w.guests[0], "eth1").contains("vlan protocol 802.1Q id 30"));
    assert!(ping(&w.guests[0], "10.231.30.1"));
    w.pw_ok(&["detach", &w.guest(0)]);
    // Created for this guest: gone, not returned.
    assert!(!w.host.try_sh(&["link", "show", "pwp-up0.30"]));
    assert!(!w.guests[0].try_sh(&["link", "show", "eth1"]));
    assert!(w.host.try_sh(&["link", "show", "pwp-up0"]));
}

#[test]
fn ipvlan_l2_and_l3() {
    if !ready(&["ipvlan"]) {
        return;
    }
    for mode in ["l2", "l3"] {
        let w = World::new(&format!("iv{mode}"), 2, "10.231.24.1/24");
        w.pw_ok(&["--ipvlan", mode, "pwp-up0", &w.guest(0), "10.231.24.11/24"]);
        w.pw_ok(&["--ipvlan", mode, "pwp-up0", &w.guest(1), "10.231.24.12/24"]);
        let d = detail(&w.guests[0], "eth1");
        assert!(
            d.contains(&format!("ipvlan  mode {mode}"))
                || d.contains(&format!("ipvlan mode {mode}")),
            "{d}"
        );
        // Every child shares the parent's MAC.
        let parent_mac = w.host.out(&["-br", "link", "show", "pwp-up0"]);
        let parent_mac = parent_mac
            .split_whitespace()
            .nth(2)
            .unwrap_or("?")
            .to_string();
        assert!(d.contains(&parent_mac), "{d} vs {parent_mac}");
        // Guests on one parent talk to each other in both modes.
        assert!(ping(&w.guests[0], "10.231.24.12"), "{mode}: guest to guest");
        if mode == "l2" {
            assert!(ping(&w.guests[0], "10.231.24.1"), "l2: guest to LAN");
        } else {
            // l3: no ARP from the LAN for the guests; route to them via the
            // host, which answers for its ipvlan children.
            w.host
                .sh(&["addr", "add", "10.231.25.5/24", "dev", "pwp-up0"]);
            w.lan.sh(&["addr", "add", "10.231.25.1/24", "dev", "lanbr"]);
            w.lan
                .sh(&["route", "add", "10.231.24.11/32", "via", "10.231.25.5"]);
            w.host.exec(&["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
            w.pw_ok(&["route", &w.guest(0), "add", "default", "dev", "eth1"]);
            assert!(
                ping(&w.guests[0], "10.231.25.1"),
                "l3: guest to LAN through the host's L3"
            );
        }
        w.pw_ok(&["detach", &w.guest(0)]);
        w.pw_ok(&["detach", &w.guest(1)]);
        assert!(!w.guests[0].try_sh(&["link", "show", "eth1"]));
    }
}

#[test]
fn macvlan_on_an_ipvlan_parent_explains_ebusy() {
    if !ready(&["ipvlan"]) {
        return;
    }
    let w = World::new("eb", 2, "10.231.26.1/24");
    w.pw_ok(&["--ipvlan", "l2", "pwp-up0", &w.guest(0), "10.231.26.11/24"]);
    let before = link_summary(&w.guests[1]);
    let e = w.pw_err(&["pwp-up0", &w.guest(1), "10.231.26.12/24"]);
    assert!(e.contains("EBUSY") && e.contains("never both"), "{e}");
    assert_eq!(e.trim_end().lines().count(), 1, "{e}");
    assert_eq!(link_summary(&w.guests[1]), before);
    // And the other way round.
    w.pw_ok(&["detach", &w.guest(0)]);
    w.pw_ok(&["pwp-up0", &w.guest(0), "10.231.26.11/24"]);
    let e = w.pw_err(&["--ipvlan", "l2", "pwp-up0", &w.guest(1), "10.231.26.12/24"]);
    assert!(e.contains("EBUSY"), "{e}");
    w.pw_ok(&["detach", &w.guest(0)]);
}

#[test]
fn dummy_interface_in_the_guest() {
    if !ready(&["dummy"]) {
        return;
    }
    let w = World::new("du", 1, "10.231.27.1/24");
    let before = link_summary(&w.host);
    w.pw_ok(&[
        "dummy",
        &w.guest(0),
        "192.168.21.101/24@192.168.21.1",
        "02:31:00:00:00:21",
    ]);
    let g = &w.guests[0];
    let d = g.out(&["-d", "addr", "show", "eth1"]);
    assert!(
        d.contains("dummy") && d.contains("192.168.21.101/24") && d.contains("02:31:00:00:00:21"),
        "{d}"
    );
    assert!(
        g.out(&["route"])
            .contains("default via 192.168.21.1 dev eth1")
    );
    assert_eq!(link_summary(&w.host), before, "dummy touched the host");
    let ls = w.pw_ok(&["ls", "--json"]);
    assert!(ls.contains("\"dummy\""), "{ls}");
    w.pw_ok(&["detach", &w.guest(0)]);
    assert!(!g.try_sh(&["link", "show", "eth1"]));
}
