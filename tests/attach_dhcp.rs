//! `pipework <bridge> <guest> dhcp` end to end: real dnsmasq in a server
//! namespace on the same bridge, real Docker containers as clients.
mod common;
use common::*;
use std::process::Command;

/// dnsmasq serving 10.236.0.0/24 on a server namespace attached to `br`.
struct Server {
    ns: Netns,
    pid: u32,
    log: String,
}

impl Server {
    fn start(br: &str) -> Server {
        let ns = Netns::new("pwtsrv");
        pipework_ok(&[br, &ns.spec(), "10.236.0.1/24"]);
        let dir = std::env::temp_dir().join(uniq("pwtdhcp"));
        std::fs::create_dir_all(&dir).expect("tmpdir");
        let d = dir.display();
        let pidfile = format!("{d}/dnsmasq.pid");
        let log = format!("{d}/dnsmasq.log");
        let st = Command::new("ip")
            .args([
                "netns",
                "exec",
                &ns.name,
                "dnsmasq",
                "--conf-file=/dev/null",
                "--port=0",
                "--interface=eth1",
                "--bind-interfaces",
                "--except-interface=lo",
            ])
            .args([
                "--dhcp-range=10.236.0.100,10.236.0.200,255.255.255.0,2m",
                "--dhcp-option=option:router,10.236.0.1",
                "--dhcp-option=option:dns-server,10.236.0.53",
                "--no-ping",
            ])
            .arg(format!("--dhcp-leasefile={d}/leases"))
            .arg(format!("--pid-file={pidfile}"))
            .arg(format!("--log-facility={log}"))
            .arg("--log-dhcp")
            .status()
            .expect("dnsmasq");
        assert!(st.success());
        let pid = wait_file(&pidfile).trim().parse().expect("pid");
        Server { ns, pid, log }
    }
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg(self.pid.to_string()).status();
        let _ = pipework(&["detach", &self.ns.spec()]);
    }
}

fn wait_file(p: &str) -> String {
    for _ in 0..100 {
        if let Ok(s) = std::fs::read_to_string(p)
            && !s.trim().is_empty()
        {
            return s;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("{p} never appeared");
}

fn have_dnsmasq() -> bool {
    if Command::new("dnsmasq").arg("--version").output().is_ok() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "dnsmasq missing: scripts/env-up.sh installs it"
    );
    eprintln!("SKIP: dnsmasq not installed");
    false
}

#[test]
fn dhcp_lease_is_applied_kept_listed_and_released() {
    if !require_env() || !have_dnsmasq() {
        return;
    }
    let g = BridgeGuard::new("brpwt");
    let srv = Server::start(&g.0);
    let c = Container::run("pwt-dh");
    let o = pipework_ok(&[&g.0, &c.name, "dhcp", "U:pwt-dhcp-seed", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("json");
    let addr = v["addresses"][0].as_str().expect("address").to_string();
    assert!(
        addr.starts_with("10.236.0.") && addr.ends_with("/24"),
        "{addr}"
    );
    assert_eq!(v["gateways"][0], "10.236.0.1");
    assert_eq!(v["dns"][0], "10.236.0.53", "DNS reported in --json");
    let keeper = v["dhcp"]["keeper_pid"].as_u64().expect("keeper pid");
    assert!(std::path::Path::new(&format!("/proc/{keeper}")).exists());

    // Applied in the container: address and default route via the router.
    assert!(
        c.exec_ok(&["ip", "-o", "addr", "show", "eth1"])
            .contains(&addr)
    );
    assert!(
        c.exec_ok(&["ip", "route"])
            .contains("default via 10.236.0.1 dev eth1")
    );
    // DNS was not written without --dns-write.
    assert!(
        !c.exec(&["cat", "/etc/resolv.conf"])
            .stdout
            .starts_with(b"# written by pipework")
    );
    // The hostname was the container name, as the original sent it.
    assert!(
        srv.log().contains(&c.name),
        "dnsmasq did not see hostname {}",
        c.name
    );

    // ls shows the lease state and expiry.
    let ls: serde_json::Value =
        serde_json::from_str(&stdout(&pipework_ok(&["ls", "--json"]))).expect("ls");
    let e = ls
        .as_array()
        .and_then(|a| a.iter().find(|e| e["guest"] == c.name.as_str()).cloned())
        .expect("entry");
    assert_eq!(e["dhcp"]["state"], "bound", "{e}");
    assert!(e["dhcp"]["expires_unix"].as_u64().is_some(), "{e}");

    // detach releases the lease and stops the keeper.
    pipework_ok(&["detach", &c.name]);
    for _ in 0..50 {
        if srv.log().contains("DHCPRELEASE")
            && !std::path::Path::new(&format!("/proc/{keeper}")).exists()
        {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(
        srv.log().contains("DHCPRELEASE"),
        "no DHCPRELEASE reached dnsmasq"
    );
    assert!(
        !std::path::Path::new(&format!("/proc/{keeper}")).exists(),
        "keeper still running"
    );

    // Same U: string on a new container → same lease (stable across restarts).
    drop(c);
    let c2 = Container::run("pwt-dh");
    let o = pipework_ok(&[&g.0, &c2.name, "dhcp:once", "U:pwt-dhcp-seed", "--json"]);
    let v2: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("json");
    assert_eq!(v2["addresses"][0].as_str(), Some(addr.as_str()));
    assert!(
        v2["dhcp"]["keeper_pid"].is_null(),
        "dhcp:once keeps no keeper"
    );
    pipework_ok(&["detach", &c2.name]);
}

#[test]
fn dhcp_without_server_times_out_and_rolls_back() {
    if !require_env() || !have_dnsmasq() {
        return;
    }
    let g = BridgeGuard::new("brpwt");
    let c = Container::run("pwt-dn");
    let host_before = host_state();
    let cont_before = c.net_state();
    let t = std::time::Instant::now();
    let o = pipework(&[&g.0, &c.name, "dhcp", "--dhcp-timeout", "1.5"]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("no lease"), "{err}");
    assert!(t.elapsed().as_secs_f64() >= 1.4);
    assert_same(&cont_before, &c.net_state(), "container");
    assert_same(&host_before, &host_state(), "host");
}

/// A container whose init chroots into `/r`, where `/etc/resolv.conf` is
/// an absolute symlink to `target` (a path that exists on the HOST).
/// Docker bind-mounts the container's own /etc/resolv.conf, so a guest
/// cannot replace that one; its init's root, which `--dns-write` writes
/// through, it can choose (CAP_SYS_CHROOT is a default capability).
fn container_with_resolv_symlink(tag: &str, target: &str, decoy: bool) -> Container {
    let name = uniq(tag);
    let dir = std::path::Path::new(target)
        .parent()
        .expect("parent")
        .display()
        .to_string();
    let mut script = format!(
        "set -e; b=busybox; $b mkdir -p /r/etc /r/bin /r{dir}; $b cp /bin/busybox /r/bin/; \
         $b ln -sf {target} /r/etc/resolv.conf; "
    );
    if decoy {
        script.push_str(&format!("echo guest decoy > /r{target}; "));
    }
    script.push_str("exec $b chroot /r /bin/busybox sleep 3600");
    let o = docker(&[
        "run",
        "-d",
        "--name",
        &name,
        "--network",
        "none",
        "bb:latest",
        "/bin/sh",
        "-c",
        &script,
    ]);
    assert!(o.status.success(), "docker run: {}", stderr(&o));
    let c = Container { name };
    // Wait for the chroot: until then /proc/PID/root is the image's root.
    for _ in 0..100 {
        let pid = c.pid();
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if cmd.windows(5).any(|w| w == b"sleep") {
            return c;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("container {} never reached its chroot", c.name);
}

#[test]
fn dns_write_never_follows_a_guest_symlink_onto_the_host() {
    if !require_env() || !have_dnsmasq() {
        return;
    }
    // The host file a hostile guest points its resolv.conf at.
    let dir = std::env::temp_dir().join(uniq("pwgdns"));
    std::fs::create_dir_all(&dir).expect("tmpdir");
    let victim = dir.join("victim");
    std::fs::write(&victim, "host bytes, not a resolv.conf\n").expect("victim");
    // An mtime in the past, so a rewrite within the same second shows too.
    let old = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000_000);
    std::fs::File::options()
        .write(true)
        .open(&victim)
        .and_then(|f| f.set_modified(old))
        .expect("mtime");
    let before = std::fs::read(&victim).expect("read");
    let target = victim.display().to_string();
    let host_unchanged = || {
        assert_eq!(
            std::fs::read(&victim).expect("victim"),
            before,
            "host file rewritten"
        );
        let m = std::fs::metadata(&victim).and_then(|m| m.modified());
        assert_eq!(m.expect("mtime"), old, "host file touched");
    };

    let g = BridgeGuard::new("brpwg");
    let _srv = Server::start(&g.0);

    // 1. The symlink's target exists inside the guest's root: the write is
    //    re-rooted there (what the guest itself would read), not the host.
    let c = container_with_resolv_symlink("pwg-dw", &target, true);
    let o = pipework_ok(&[&g.0, &c.name, "dhcp:once", "--dns-write"]);
    host_unchanged();
    let inside = c.exec_ok(&["cat", &format!("/r{target}")]);
    assert!(
        inside.starts_with("# written by pipework") && inside.contains("nameserver 10.236.0.53"),
        "not written inside the guest root: {inside:?} ({})",
        stderr(&o)
    );
    pipework_ok(&["detach", &c.name]);
    drop(c);

    // 2. Dangling inside the guest's root: refused, and the attach rolled
    //    back; still nothing on the host.
    let c = container_with_resolv_symlink("pwg-dw", &target, false);
    let cont_before = c.net_state();
    let o = pipework(&[&g.0, &c.name, "dhcp:once", "--dns-write"]);
    assert!(
        !o.status.success(),
        "attach through a dangling symlink succeeded"
    );
    let err = stderr(&o);
    assert!(err.contains("dangling symlink"), "{err}");
    host_unchanged();
    assert_same(&cont_before, &c.net_state(), "container");
    drop(c);
    let _ = std::fs::remove_dir_all(&dir);
}
