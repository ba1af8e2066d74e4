//! Helpers for the phys tests: named test namespaces that clean up after
//! themselves, and iproute2 for *checking* results (the tool under test
//! never uses it on its core path).
#![allow(dead_code)]
use std::path::PathBuf;
use std::process::Command;

pub fn root_or_skip() -> bool {
    if nix::unistd::Uid::effective().is_root() {
        return true;
    }
    eprintln!("SKIP: needs root (creates network namespaces)");
    false
}

/// Run a command, panic with its stderr if it fails, return stdout.
pub fn cmd_out(bin: &str, args: &[&str]) -> String {
    let out = Command::new(bin)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{bin}: {e}"));
    assert!(
        out.status.success(),
        "{bin} {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn host_ip(args: &[&str]) -> String {
    cmd_out("ip", args)
}

/// A network namespace named `pwp-<tag>-<pid>`, deleted (with everything in
/// it) on drop.
pub struct TestNs {
    pub name: String,
}

impl TestNs {
    pub fn new(tag: &str) -> Self {
        let name = format!("pwp-{tag}-{}", std::process::id());
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        cmd_out("ip", &["netns", "add", &name]);
        let ns = TestNs { name };
        ns.sh(&["link", "set", "lo", "up"]);
        ns
    }

    pub fn path(&self) -> PathBuf {
        PathBuf::from(format!("/var/run/netns/{}", self.name))
    }

    /// `ip -n NAME ARGS...`, must succeed.
    pub fn sh(&self, args: &[&str]) {
        self.out(args);
    }

    pub fn out(&self, args: &[&str]) -> String {
        let mut a = vec!["-n", &self.name];
        a.extend_from_slice(args);
        cmd_out("ip", &a)
    }

    /// `ip -n NAME ARGS...`, may fail; returns success.
    pub fn try_sh(&self, args: &[&str]) -> bool {
        Command::new("ip")
            .args(["-n", &self.name])
            .args(args)
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    }

    /// Run a program inside the namespace (e.g. busybox ping).
    pub fn exec(&self, args: &[&str]) -> std::process::Output {
        Command::new("ip")
            .args(["netns", "exec", &self.name])
            .args(args)
            .output()
            .expect("ip netns exec")
    }
}

impl Drop for TestNs {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}
