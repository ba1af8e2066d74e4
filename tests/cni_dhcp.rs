//! The reference `dhcp` IPAM plugin, delegated to: its daemon leases an
//! address from a real dnsmasq over our bridge, on the container interface
//! our driver built (which is why the link exists before IPAM runs).
mod cni_util;

use cni_util::{Call, Scratch, in_ns, sh_ok, with_prev};
use serde_json::json;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const D: &str = "/tmp/pwc-dhcp-test";

/// Processes this test started, stopped by pid.
struct Procs(Vec<Child>, Vec<String>);
impl Drop for Procs {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
        for pidfile in &self.1 {
            if let Some(pid) = std::fs::read_to_string(pidfile)
                .ok()
                .and_then(|p| p.trim().parse::<i32>().ok())
            {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGTERM,
                );
            }
        }
    }
}

fn wait_for(path: &str) -> bool {
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(10) {
        if std::path::Path::new(path).exists() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

#[test]
fn dhcp_ipam_is_delegated_and_leases_over_our_link() {
    require_env!();
    if !sh_ok(&["sh", "-c", "command -v dnsmasq"])
        || !std::path::Path::new("/usr/lib/cni/dhcp").exists()
    {
        eprintln!("SKIP: needs dnsmasq (dnsmasq-base) and /usr/lib/cni/dhcp");
        return;
    }
    let mut s = Scratch::default();
    let dir = s.dir(D);
    std::fs::create_dir_all(&dir).expect("mkdir");
    s.netns("pwc-dh-srv");
    let ns = s.netns("pwc-dh-c1");
    let br = s.link("pwcdh0");
    s.link("pwcdhs0");
    // The DHCP server's segment: our bridge plus a server namespace on it.
    for cmd in [
        vec!["ip", "link", "add", &br, "type", "bridge"],
        vec!["ip", "link", "set", &br, "up"],
        vec![
            "ip",
            "link",
            "add",
            "pwcdhs0",
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            "pwc-dh-srv",
        ],
        vec!["ip", "link", "set", "pwcdhs0", "master", &br, "up"],
        vec![
            "ip",
            "-n",
            "pwc-dh-srv",
            "addr",
            "add",
            "10.231.50.1/24",
            "dev",
            "eth0",
        ],
        vec!["ip", "-n", "pwc-dh-srv", "link", "set", "eth0", "up"],
    ] {
        assert!(sh_ok(&cmd), "{cmd:?}");
    }
    let mut procs = Procs(vec![], vec![format!("{dir}/dnsmasq.pid")]);
    let leases = format!("{dir}/leases");
    let st = Command::new("ip")
        .args([
            "netns",
            "exec",
            "pwc-dh-srv",
            "dnsmasq",
            "--conf-file=/dev/null",
            "--port=0",
        ])
        .args([
            "--interface=eth0",
            "--bind-interfaces",
            "--except-interface=lo",
        ])
        .args(["--dhcp-range=10.231.50.100,10.231.50.200,255.255.255.0,1h"])
        .args(["--dhcp-option=option:router,10.231.50.1", "--no-ping"])
        .arg(format!("--dhcp-leasefile={leases}"))
        .arg(format!("--pid-file={dir}/dnsmasq.pid"))
        .status()
        .expect("dnsmasq");
    assert!(st.success(), "dnsmasq started");
    let sock = format!("{dir}/dhcp.sock");
    procs.0.push(
        Command::new("/usr/lib/cni/dhcp")
            .args(["daemon", "-socketpath", &sock, "-timeout", "5s"])
            .stdout(Stdio::null())
            .spawn()
            .expect("dhcp daemon"),
    );
    assert!(wait_for(&sock), "dhcp daemon socket");

    let c = json!({
        "cniVersion": "1.0.0", "name": "pwcdhcp", "type": "pipework", "mode": "bridge",
        "bridge": br, "ipam": {"type": "dhcp", "daemonSocketPath": sock}
    });
    let call = Call {
        id: "pwc-dhcp-1",
        netns: &ns,
        ifname: "eth0",
    };
    let res = call.ours("ADD", &c).ok().clone();
    let addr = res["ips"][0]["address"].as_str().unwrap_or("").to_string();
    assert!(
        addr.starts_with("10.231.50.") && addr.ends_with("/24"),
        "{res}"
    );
    assert_eq!(res["ips"][0]["gateway"], "10.231.50.1");
    let a = in_ns("pwc-dh-c1", &["ip", "-o", "-4", "addr", "show", "eth0"]);
    assert!(a.contains(&addr), "lease applied to eth0: {a}");
    assert!(
        sh_ok(&[
            "ip",
            "netns",
            "exec",
            "pwc-dh-c1",
            "busybox",
            "ping",
            "-c",
            "1",
            "-W",
            "3",
            "10.231.50.1"
        ]),
        "reaches the DHCP server over our bridge"
    );
    let ip = addr.split('/').next().unwrap_or("");
    assert!(
        std::fs::read_to_string(&leases)
            .unwrap_or_default()
            .contains(ip)
    );
    let cc = with_prev(&c, &res);
    call.ours("DEL", &cc).ok();
    assert!(!in_ns("pwc-dh-c1", &["ip", "-o", "link"]).contains("eth0"));
    call.ours("DEL", &cc).ok();

    // STATUS reports the daemon's absence as "not available".
    let mut gone = c.clone();
    gone["cniVersion"] = json!("1.1.0");
    gone["ipam"]["daemonSocketPath"] = json!(format!("{dir}/no-such.sock"));
    let out = cni_util::run(
        cni_util::OURS,
        &[("CNI_COMMAND", "STATUS"), ("CNI_PATH", cni_util::REF_DIR)],
        gone.to_string().as_bytes(),
    );
    assert_eq!(out.err_code(), 50, "{}", out.stdout);

    // Our own client as IPAM ("pipework-dhcp"): no daemon involved, the
    // lease is kept by a keeper and released on DEL.
    let ns2 = s.netns("pwc-dh-c2");
    let c2 = json!({
        "cniVersion": "1.1.0", "name": "pwcdhcp2", "type": "pipework", "mode": "bridge",
        "bridge": br, "ipam": {"type": "pipework-dhcp"}
    });
    let call2 = Call {
        id: "pwc-dhcp-2",
        netns: &ns2,
        ifname: "eth0",
    };
    let res2 = call2.ours("ADD", &c2).ok().clone();
    let addr2 = res2["ips"][0]["address"].as_str().unwrap_or("").to_string();
    assert!(
        addr2.starts_with("10.231.50.") && addr2.ends_with("/24"),
        "{res2}"
    );
    assert_eq!(res2["ips"][0]["gateway"], "10.231.50.1");
    assert_eq!(res2["routes"][0]["dst"], "0.0.0.0/0", "{res2}");
    let a2 = in_ns("pwc-dh-c2", &["ip", "-o", "-4", "addr", "show", "eth0"]);
    assert!(a2.contains(&addr2), "lease applied to eth0: {a2}");
    assert!(in_ns("pwc-dh-c2", &["ip", "route"]).contains("default via 10.231.50.1 dev eth0"));
    let ip2 = addr2.split('/').next().unwrap_or("").to_string();
    assert!(
        std::fs::read_to_string(&leases)
            .unwrap_or_default()
            .contains(&ip2)
    );
    call2.ours("DEL", &with_prev(&c2, &res2)).ok();
    // DHCPRELEASE reached dnsmasq: the lease is gone from its file.
    let t = Instant::now();
    while std::fs::read_to_string(&leases)
        .unwrap_or_default()
        .contains(&ip2)
        && t.elapsed() < Duration::from_secs(5)
    {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        !std::fs::read_to_string(&leases)
            .unwrap_or_default()
            .contains(&ip2),
        "lease not released"
    );
    assert!(!in_ns("pwc-dh-c2", &["ip", "-o", "link"]).contains("eth0"));
    drop(procs);
}
