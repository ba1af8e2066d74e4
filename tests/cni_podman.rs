//! Podman 4 with its CNI backend runs pipework as the network plugin:
//! containers get their address, reach each other, and `podman rm` (DEL)
//! leaves nothing behind. Uses scripts/cni-podman.sh for the private setup.
mod cni_util;

use cni_util::{Scratch, sh, sh_ok};
use std::process::Command;

const DIR: &str = "/tmp/pwc-podman-test";
const NET: &str = "pwcpodnet";
const BR: &str = "pwcpod1";
const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/cni-podman.sh");

fn podman(args: &[&str]) -> (bool, String) {
    let out = Command::new(SCRIPT)
        .arg("run")
        .arg(DIR)
        .args(args)
        .output()
        .expect("run podman");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    if !out.status.success() {
        eprintln!("podman {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    (out.status.success(), text)
}

struct Teardown;
impl Drop for Teardown {
    fn drop(&mut self) {
        let _ = Command::new(SCRIPT).args(["teardown", DIR]).status();
    }
}

fn eth0_v4(name: &str) -> String {
    let (ok, out) = podman(&["exec", name, "ip", "-o", "-4", "addr", "show", "eth0"]);
    assert!(ok, "exec in {name}");
    out.split_whitespace().nth(3).unwrap_or("").to_string()
}

#[test]
fn podman_runs_pipework_as_its_cni_plugin() {
    require_env!();
    if !sh_ok(&["podman", "--version"]) {
        eprintln!("SKIP: podman not installed (apt-get install --no-install-recommends podman)");
        return;
    }
    let mut s = Scratch::default();
    s.link(BR);
    let _ = Command::new(SCRIPT).args(["teardown", DIR]).status();
    let _t = Teardown;
    let st = Command::new(SCRIPT)
        .args(["setup", DIR, cni_util::OURS, NET, BR, "10.231.20.0/24"])
        .status()
        .expect("setup");
    assert!(st.success(), "cni-podman.sh setup");

    // One-shot container: the address comes from our plugin (host-local).
    let (ok, out) = podman(&[
        "run",
        "--rm",
        "--network",
        NET,
        "localhost/bb",
        "ip",
        "-o",
        "-4",
        "addr",
        "show",
        "eth0",
    ]);
    assert!(ok);
    assert!(out.contains("10.231.20."), "{out}");

    // Two long-running containers ping each other across our bridge.
    for n in ["pwc-pod-a", "pwc-pod-b"] {
        let (ok, _) = podman(&[
            "run",
            "-d",
            "--name",
            n,
            "--network",
            NET,
            "localhost/bb",
            "sleep",
            "600",
        ]);
        assert!(ok, "start {n}");
    }
    let a = eth0_v4("pwc-pod-a");
    let b = eth0_v4("pwc-pod-b");
    assert!(
        a.starts_with("10.231.20.") && b.starts_with("10.231.20.") && a != b,
        "{a} {b}"
    );
    let b_ip = b.split('/').next().unwrap_or("");
    let (ok, out) = podman(&["exec", "pwc-pod-a", "ping", "-c", "2", "-W", "3", b_ip]);
    assert!(ok, "a pings b: {out}");
    let ports = sh(&["ip", "-o", "link", "show", "master", BR]);
    assert_eq!(ports.lines().count(), 2, "two ports on {BR}: {ports}");

    let ids: Vec<String> = ["pwc-pod-a", "pwc-pod-b"]
        .iter()
        .map(|n| {
            podman(&["inspect", "-f", "{{.Id}}", n])
                .1
                .trim()
                .to_string()
        })
        .collect();
    // podman rm runs the CNI DEL.
    let (ok, _) = podman(&["rm", "-f", "-t", "0", "pwc-pod-a", "pwc-pod-b"]);
    assert!(ok);
    let ports = sh(&["ip", "-o", "link", "show", "master", BR]);
    assert!(ports.trim().is_empty(), "no ports left: {ports}");
    let leases: Vec<_> = std::fs::read_dir(format!("{DIR}/ipam/{NET}"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().to_string())
                .collect()
        })
        .unwrap_or_default();
    assert!(
        leases.iter().all(|f| !f.starts_with("10.")),
        "host-local leases released: {leases:?}"
    );
    let rules = sh(&["iptables", "-w", "-S"]);
    assert!(
        !rules.contains(&format!("pipework:{BR}")),
        "accept rule removed with the last port"
    );
    let cache = sh(&["ls", "/var/lib/cni/results"]);
    for id in &ids {
        assert!(
            !id.is_empty() && !cache.contains(id.as_str()),
            "libcni cache for {id} removed"
        );
    }
}
