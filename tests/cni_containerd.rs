//! containerd's `ctr run --rm --cni` runs pipework from /opt/cni/bin with
//! our config first in /etc/cni/net.d; both are restored afterwards
//! (scripts/cni-containerd.sh). The container gets its address, reaches
//! its gateway, and the DEL on exit leaves no port and no lease behind.
mod cni_util;

use cni_util::{Scratch, sh, sh_ok};
use std::path::Path;
use std::process::Command;

const DIR: &str = "/tmp/pwc-containerd-test";
const NET: &str = "pwcctrnet";
const BR: &str = "pwcctr1";
const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/cni-containerd.sh");

struct Restore;
impl Drop for Restore {
    fn drop(&mut self) {
        let _ = Command::new(SCRIPT).args(["teardown", DIR]).status();
    }
}

fn listing(dir: &str) -> String {
    sh(&["ls", "-la", "--time-style=+", dir])
}

#[test]
fn ctr_run_cni_uses_pipework() {
    require_env!();
    let sock = format!(
        "{}/docker/exec/containerd/containerd.sock",
        std::env::var("PW_ENV").unwrap_or_else(|_| "/tmp/pw-env".into())
    );
    if !sh_ok(&["ctr", "--version"]) || !Path::new(&sock).exists() {
        eprintln!("SKIP: no ctr or no containerd at {sock} (scripts/env-up.sh starts it)");
        return;
    }
    let before_conf = listing("/etc/cni/net.d");
    let before_bin = listing("/opt/cni/bin");
    let mut s = Scratch::default();
    s.link(BR);
    {
        let _r = Restore;
        let st = Command::new(SCRIPT)
            .args(["setup", DIR, cni_util::OURS, NET, BR, "10.231.30.0/24"])
            .status()
            .expect("setup");
        assert!(st.success(), "cni-containerd.sh setup");
        let out = Command::new(SCRIPT)
            .args([
                "ctr",
                DIR,
                "run",
                "--rm",
                "--cni",
                "docker.io/library/bb:latest",
                "pwc-ctr-1",
            ])
            .args([
                "sh",
                "-c",
                "ip -o -4 addr show eth0 && ping -c 1 -W 3 10.231.30.1",
            ])
            .output()
            .expect("ctr run");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "ctr run: {text} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(text.contains("inet 10.231.30."), "{text}");
        assert!(text.contains("1 packets received"), "{text}");
        let ports = sh(&["ip", "-o", "link", "show", "master", BR]);
        assert!(
            ports.trim().is_empty(),
            "DEL on exit removed the port: {ports}"
        );
        let leases: Vec<String> = std::fs::read_dir(format!("{DIR}/ipam/{NET}"))
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().to_string())
                    .collect()
            })
            .unwrap_or_default();
        assert!(leases.iter().all(|f| !f.starts_with("10.")), "{leases:?}");
        let rules = sh(&["iptables", "-w", "-S"]);
        assert!(
            !rules.contains(&format!("pipework:{BR}")),
            "no accept rule left for {BR}"
        );
    }
    assert_eq!(
        listing("/etc/cni/net.d"),
        before_conf,
        "/etc/cni/net.d restored"
    );
    assert_eq!(listing("/opt/cni/bin"), before_bin, "/opt/cni/bin restored");
}
