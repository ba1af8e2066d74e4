//! Lease keeping with a real dnsmasq: renewal at T1, NAK -> start over,
//! release on detach, exit when the namespace dies.
mod dhcp_support;
use dhcp_support::{rt, wait_for};
use pipework::dhcp::{self, DhcpOptions, keeper};
use pipework::netlink::Journal;
use std::path::Path;

fn exe() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_pipework"))
}

fn dir_for(tag: &str) -> std::path::PathBuf {
    // Keeper state of this test binary only; the variable is read by the
    // library in this process and inherited by the keepers it starts.
    let d = std::env::temp_dir().join(format!("pwd-keeper-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&d).expect("dir");
    d
}

/// A 2 min lease (dnsmasq's minimum) with T1 5 s and T2 8 s, so the keeper
/// renews within seconds.
const SHORT: [&str; 2] = ["--dhcp-option=option:T1,5", "--dhcp-option=option:T2,8"];

#[test]
fn keeper_renews_restarts_on_nak_and_releases() {
    let Some(mut rig) = rig!("keep") else { return };
    let d = dir_for("a");
    // SAFETY: set before any thread of ours reads the environment; the
    // only other test in this binary sets the same value.
    unsafe { std::env::set_var("PIPEWORK_DHCP_DIR", &d) };
    let mut args = vec!["--dhcp-authoritative"];
    args.extend(SHORT);
    rig.start_dnsmasq("10.232.0.100,10.232.0.200", &args);
    let ns = rig.cli_ns();
    let rt = rt();
    let opts = DhcpOptions {
        hostname: Some("pwd-keep".into()),
        ..Default::default()
    };
    let (lease, pid) = rt.block_on(async {
        let lease = dhcp::acquire(&ns, "eth0", &opts).await.expect("lease");
        let mut j = Journal::new();
        dhcp::apply(&ns, "eth0", &lease, &mut j)
            .await
            .expect("apply");
        j.commit();
        let pid = keeper::spawn_with(exe(), &ns, "eth0", &lease, &opts)
            .await
            .expect("spawn keeper");
        (lease, pid)
    });
    assert_eq!((lease.t1, lease.t2), (5, 8));
    assert!(keeper::keeper_alive(pid));
    let st = keeper::status(&ns, "eth0").expect("status").expect("state");
    assert_eq!(st.address, Some(format!("{}/24", lease.address)));
    assert!(st.expires_unix.is_some());

    // Renewal at T1: the keeper's unicast REQUEST is ACKed.
    let renewed = wait_for(20, || {
        let s = keeper::status(&ns, "eth0").ok()??;
        (s.renewals >= 1 && s.state == "bound").then_some(s)
    });
    let renewed = renewed.unwrap_or_else(|| {
        panic!(
            "no renewal; keeper log: {}\ndnsmasq: {}",
            std::fs::read_to_string(d.join(format!("{}-eth0.log", ns.inode().unwrap_or(0))))
                .unwrap_or_default(),
            rig.log()
        )
    });
    assert_eq!(renewed.address, Some(format!("{}/24", lease.address)));
    let log = rig.log();
    assert!(
        log.contains(&format!("DHCPACK(eth0) {}", lease.address)),
        "{log}"
    );
    assert_eq!(rig.cli_addrs(), vec![format!("{}/24", lease.address)]);

    // The server now has another range and forgets us: the next renewal is
    // NAKed and the keeper must start over from DISCOVER.
    rig.stop_dnsmasq();
    let _ = std::fs::remove_file(rig.dir.join("leases"));
    rig.start_dnsmasq("10.232.0.50,10.232.0.60", &args);
    let moved = wait_for(30, || {
        let a = rig.cli_addrs();
        (a.len() == 1 && a[0].starts_with("10.232.0.5")
            || a.iter().any(|x| x.starts_with("10.232.0.60")))
        .then_some(a)
    });
    let log = rig.log();
    assert!(
        moved.is_some(),
        "no new lease after NAK: {:?}\n{log}",
        rig.cli_addrs()
    );
    assert!(log.contains("DHCPNAK"), "{log}");
    let st = keeper::status(&ns, "eth0").expect("status").expect("state");
    assert_eq!(st.address.as_deref(), moved.as_ref().map(|a| a[0].as_str()));

    // Detach: DHCPRELEASE reaches the server, the keeper is gone.
    let released = rt.block_on(keeper::release(&ns, "eth0")).expect("release");
    assert!(released);
    assert!(!keeper::keeper_alive(pid));
    let log = wait_for(5, || {
        let l = rig.log();
        l.contains("DHCPRELEASE").then_some(l)
    });
    assert!(log.is_some(), "no DHCPRELEASE: {}", rig.log());
    assert!(keeper::status(&ns, "eth0").expect("status").is_none());
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn keeper_exits_when_namespace_dies() {
    let Some(mut rig) = rig!("die") else { return };
    let d = dir_for("a");
    // SAFETY: see above; same value.
    unsafe { std::env::set_var("PIPEWORK_DHCP_DIR", &d) };
    rig.start_dnsmasq("10.232.0.100,10.232.0.200", &[]);
    let rt = rt();
    let (pid, inode) = {
        let ns = rig.cli_ns();
        rt.block_on(async {
            let opts = DhcpOptions::default();
            let lease = dhcp::acquire(&ns, "eth0", &opts).await.expect("lease");
            let mut j = Journal::new();
            dhcp::apply(&ns, "eth0", &lease, &mut j)
                .await
                .expect("apply");
            j.commit();
            let pid = keeper::spawn_with(exe(), &ns, "eth0", &lease, &opts)
                .await
                .expect("spawn");
            (pid, ns.inode().expect("inode"))
        })
        // `ns` dropped here: we hold nothing of the namespace either.
    };
    assert!(keeper::keeper_alive(pid));
    let st = std::process::Command::new("ip")
        .args(["netns", "del", &rig.cli])
        .status()
        .expect("ip");
    assert!(st.success());
    let gone = wait_for(10, || (!keeper::keeper_alive(pid)).then_some(()));
    assert!(gone.is_some(), "keeper {pid} outlived its namespace");
    assert!(
        !d.join(format!("{inode}-eth0.json")).exists(),
        "state file left behind"
    );
}

#[test]
fn keeper_rebinds_by_broadcast_when_server_ignores_unicast() {
    let Some(mut rig) = rig!("rebind") else {
        return;
    };
    if pipework::dhcp::external::which("iptables").is_none() {
        eprintln!("SKIP: iptables is not installed");
        return;
    }
    let d = dir_for("a");
    // SAFETY: see above; same value.
    unsafe { std::env::set_var("PIPEWORK_DHCP_DIR", &d) };
    rig.start_dnsmasq("10.232.0.100,10.232.0.200", &SHORT);
    let ns = rig.cli_ns();
    let rt = rt();
    let (lease, pid) = rt.block_on(async {
        let opts = DhcpOptions::default();
        let lease = dhcp::acquire(&ns, "eth0", &opts).await.expect("lease");
        let mut j = Journal::new();
        dhcp::apply(&ns, "eth0", &lease, &mut j)
            .await
            .expect("apply");
        j.commit();
        let pid = keeper::spawn_with(exe(), &ns, "eth0", &lease, &opts)
            .await
            .expect("spawn");
        (lease, pid)
    });
    // The server stops hearing unicast: RENEWING (T1) goes unanswered and
    // only the REBINDING broadcast (T2) can reach it. The rule lives in
    // the server's namespace, which the rig deletes.
    let st = std::process::Command::new("ip")
        .args([
            "netns", "exec", &rig.srv, "iptables", "-I", "INPUT", "-p", "udp",
        ])
        .args(["--dport", "67", "-d", dhcp_support::SRV_IP, "-j", "DROP"])
        .status()
        .expect("iptables");
    assert!(st.success());
    let log_path = d.join(format!("{}-eth0.log", ns.inode().expect("inode")));
    let rebound = wait_for(25, || {
        let s = keeper::status(&ns, "eth0").ok()??;
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        (s.renewals >= 1 && log.contains("rebound")).then_some(s)
    });
    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
    let rebound =
        rebound.unwrap_or_else(|| panic!("no rebind; keeper: {log}\ndnsmasq: {}", rig.log()));
    assert_eq!(rebound.address, Some(format!("{}/24", lease.address)));
    assert!(
        !log.contains("renewed"),
        "unicast renewal got through: {log}"
    );
    assert!(rt.block_on(keeper::release(&ns, "eth0")).expect("release"));
    assert!(!keeper::keeper_alive(pid));
}
