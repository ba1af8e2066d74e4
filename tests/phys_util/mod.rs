//! Helpers for the phys tests: named test namespaces that clean up after
//! themselves, and iproute2 for *checking* results (the tool under test
//! never uses it on its core path).
#![allow(dead_code)]
use std::path::PathBuf;
use std::process::Command;

/// Say why a test is skipped where the user sees it: libtest captures
/// `eprintln!`, but not direct writes to the stderr handle.
pub fn skip(why: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "SKIP: {why}");
}

pub fn root_or_skip() -> bool {
    if nix::unistd::Uid::effective().is_root() {
        return true;
    }
    skip("needs root (creates network namespaces)");
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

/// The pipework binary under test.
pub const PIPEWORK: &str = env!("CARGO_BIN_EXE_pipework");

/// A small world: a "host" namespace (pipework runs inside it, so the real
/// host is never touched), a "LAN" namespace behind a veth whose host end
/// is the parent NIC, and guest namespaces.
pub struct World {
    pub host: TestNs,
    pub lan: TestNs,
    pub guests: Vec<TestNs>,
}

impl World {
    /// `tag` keeps namespaces of concurrent tests apart. The parent NIC is
    /// `pwp-up0` in the host; its peer `lan0` sits in the LAN namespace,
    /// behind a bridge `lanbr` (hairpin on) carrying `lan_ip`.
    pub fn new(tag: &str, guests: usize, lan_ip: &str) -> World {
        let host = TestNs::new(&format!("h{tag}"));
        let lan = TestNs::new(&format!("l{tag}"));
        host.sh(&[
            "link", "add", "pwp-up0", "type", "veth", "peer", "name", "lan0", "netns", &lan.name,
        ]);
        host.sh(&["link", "set", "pwp-up0", "up"]);
        lan.sh(&["link", "add", "lanbr", "type", "bridge"]);
        lan.sh(&["link", "set", "lan0", "master", "lanbr"]);
        lan.sh(&[
            "link",
            "set",
            "lan0",
            "type",
            "bridge_slave",
            "hairpin",
            "on",
        ]);
        lan.sh(&["link", "set", "lan0", "up"]);
        lan.sh(&["link", "set", "lanbr", "up"]);
        lan.sh(&["addr", "add", lan_ip, "dev", "lanbr"]);
        let guests = (0..guests)
            .map(|i| TestNs::new(&format!("g{tag}{i}")))
            .collect();
        World { host, lan, guests }
    }

    /// Run pipework inside the host namespace.
    pub fn pw(&self, args: &[&str]) -> std::process::Output {
        Command::new("ip")
            .args(["netns", "exec", &self.host.name, PIPEWORK])
            .args(args)
            .output()
            .expect("run pipework")
    }

    /// Run pipework, require success, return stdout.
    pub fn pw_ok(&self, args: &[&str]) -> String {
        let o = self.pw(args);
        assert!(
            o.status.success(),
            "pipework {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// Run pipework, require failure, return stderr.
    pub fn pw_err(&self, args: &[&str]) -> String {
        let o = self.pw(args);
        assert!(
            !o.status.success(),
            "pipework {} unexpectedly succeeded",
            args.join(" ")
        );
        String::from_utf8_lossy(&o.stderr).into_owned()
    }

    pub fn guest(&self, i: usize) -> String {
        format!("netns:{}", self.guests[i].name)
    }
}

/// Link names and kinds in a namespace, for before/after comparisons.
pub fn link_summary(ns: &TestNs) -> Vec<String> {
    let out = ns.out(&["-d", "-o", "link", "show"]);
    let mut v: Vec<String> = out
        .lines()
        .map(|l| {
            let mut w = l.split_whitespace();
            let name = w.nth(1).unwrap_or("").to_string();
            let kind = ["macvlan", "ipvlan", "vlan", "dummy", "veth", "bridge"]
                .into_iter()
                .find(|k| l.contains(&format!(" {k} ")))
                .unwrap_or("-");
            format!("{name} {kind}")
        })
        .collect();
    v.sort();
    v
}

/// One ping round from `ns`: true if any reply came back.
pub fn ping(ns: &TestNs, ip: &str) -> bool {
    let o = ns.exec(&["busybox", "ping", "-c", "2", "-W", "1", ip]);
    o.status.success()
}

pub fn busybox_or_skip() -> bool {
    if Command::new("busybox")
        .arg("true")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
    {
        return true;
    }
    skip("busybox not installed (apt-get install busybox-static), needed for ping");
    false
}
