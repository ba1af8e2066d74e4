//! The classic external-client forms, run in the namespace against a real
//! dnsmasq: udhcpc (busybox) and dhclient, with their pidfile handling.
mod dhcp_support;
use dhcp_support::rt;
use pipework::dhcp::external::{self, Client};
use std::os::unix::fs::PermissionsExt;

fn script(dir: &std::path::Path, name: &str, body: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, format!("#!/bin/sh\n{body}\nexit 0\n")).expect("script");
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    p.display().to_string()
}

#[test]
fn udhcpc_form_runs_busybox_udhcpc_in_the_namespace() {
    let Some(mut rig) = rig!("udh") else { return };
    if external::which("udhcpc").is_none() && external::which("busybox").is_none() {
        eprintln!("SKIP: neither udhcpc nor busybox is installed");
        return;
    }
    rig.start_dnsmasq("10.232.0.100,10.232.0.200", &[]);
    // busybox-static ships no default script: give it one, as users must.
    let s = script(
        &rig.dir,
        "udhcpc.sh",
        r#"[ "$1" = bound ] && ip addr add "$ip/$mask" dev "$interface""#,
    );
    let guest = format!("pwd-udh{}", std::process::id());
    let form = external::parse(&format!("udhcpc:-s {s} -t 5")).expect("form");
    assert_eq!(form.client, Client::Udhcpc);
    let ns = rig.cli_ns();
    rt().block_on(external::run(
        &ns,
        "eth0",
        &guest,
        &form,
        std::time::Duration::from_secs(20),
    ))
    .expect("udhcpc");
    let addrs = rig.cli_addrs();
    assert_eq!(addrs.len(), 1, "{addrs:?}");
    assert!(
        addrs[0].starts_with("10.232.0.") && addrs[0].ends_with("/24"),
        "{addrs:?}"
    );
    // The hostname went out as the original sent it.
    assert!(rig.log().contains(&guest), "{}", rig.log());
    // Non-foreground form: udhcpc -q exited and its pidfile is gone.
    assert!(!external::udhcpc_pidfile(&guest).exists());
}

#[test]
fn dhclient_form_runs_and_is_stopped_after_the_lease() {
    let Some(mut rig) = rig!("dhcl") else { return };
    if external::which("dhclient").is_none() {
        eprintln!("SKIP: dhclient is not installed (isc-dhcp-client)");
        return;
    }
    rig.start_dnsmasq("10.232.0.100,10.232.0.200", &[]);
    // Our own script: the default one would rewrite the host's resolv.conf.
    let s = script(
        &rig.dir,
        "dhclient.sh",
        r#"case "$reason" in BOUND|REBOOT|RENEW) ip addr add "$new_ip_address/$new_subnet_mask" dev "$interface" 2>/dev/null ;; esac"#,
    );
    let guest = format!("pwd-dhcl{}", std::process::id());
    let form = external::parse(&format!("dhclient:-sf {s} -1")).expect("form");
    let ns = rig.cli_ns();
    let pidfile = external::dhclient_pidfile(&guest);
    rt().block_on(external::run(
        &ns,
        "eth0",
        &guest,
        &form,
        std::time::Duration::from_secs(20),
    ))
    .expect("dhclient");
    let addrs = rig.cli_addrs();
    assert_eq!(addrs.len(), 1, "{addrs:?}");
    assert!(addrs[0].starts_with("10.232.0."), "{addrs:?}");
    // Non-foreground form: the daemonized dhclient was stopped (the
    // original killed it so it would not outlive the interface).
    assert!(!pidfile.exists(), "pidfile left: {}", pidfile.display());
    let needle = pidfile.display().to_string();
    let survivor = dhcp_support::wait_for(3, || {
        let alive = std::fs::read_dir("/proc").ok()?.flatten().any(|e| {
            std::fs::read(e.path().join("cmdline"))
                .map(|c| String::from_utf8_lossy(&c).contains(&needle))
                .unwrap_or(false)
        });
        (!alive).then_some(())
    });
    assert!(survivor.is_some(), "dhclient for {guest} still running");
    let _ = std::fs::remove_file(external::dhclient_leasefile(&guest));
}

#[test]
fn missing_client_is_a_clear_error() {
    if external::which("dhcpcd").is_some() {
        eprintln!("SKIP: dhcpcd is installed here");
        return;
    }
    let form = external::parse("dhcpcd").expect("form");
    let err = external::command_line(&form, "eth0", "web").expect_err("not installed");
    let msg = err.to_string();
    assert!(
        msg.starts_with("dhcpcd:") && msg.contains("not installed"),
        "{msg}"
    );
}
