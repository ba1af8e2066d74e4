//! Helpers for the CNI tests: run our binary (or a reference plugin) the
//! way a runtime does — environment variables plus config on stdin — and
//! own the namespaces and bridges a test creates.
#![allow(dead_code)]
use serde_json::{Value, json};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

pub const OURS: &str = env!("CARGO_BIN_EXE_pipework");
pub const REF_DIR: &str = "/usr/lib/cni";

/// What a plugin invocation produced.
#[derive(Debug)]
pub struct Out {
    pub code: i32,
    pub json: Value,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    /// The CNI error code, asserting this was an error result.
    pub fn err_code(&self) -> u64 {
        assert_ne!(self.code, 0, "expected failure, got {}", self.stdout);
        self.json["code"]
            .as_u64()
            .unwrap_or_else(|| panic!("no error code in {:?} / {}", self.stdout, self.stderr))
    }

    pub fn ok(&self) -> &Value {
        assert_eq!(
            self.code, 0,
            "plugin failed: {} {}",
            self.stdout, self.stderr
        );
        &self.json
    }
}

/// Run `plugin` with exactly these CNI_* variables (nothing inherited but PATH).
pub fn run(plugin: &str, vars: &[(&str, &str)], stdin: &[u8]) -> Out {
    let mut cmd = Command::new(plugin);
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in vars {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn plugin");
    let _ = child.stdin.take().expect("stdin").write_all(stdin);
    let out = child.wait_with_output().expect("wait plugin");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    Out {
        code: out.status.code().unwrap_or(-1),
        json: serde_json::from_str(stdout.trim()).unwrap_or(Value::Null),
        stdout,
        stderr: String::from_utf8_lossy(&out.stderr).to_string(),
    }
}

/// One attachment's parameters, as a runtime would pass them.
pub struct Call<'a> {
    pub id: &'a str,
    pub netns: &'a str,
    pub ifname: &'a str,
}

impl Call<'_> {
    pub fn exec(&self, plugin: &str, cmd: &str, conf: &Value) -> Out {
        let vars = [
            ("CNI_COMMAND", cmd),
            ("CNI_CONTAINERID", self.id),
            ("CNI_NETNS", self.netns),
            ("CNI_IFNAME", self.ifname),
            ("CNI_PATH", REF_DIR),
        ];
        run(plugin, &vars, conf.to_string().as_bytes())
    }
    pub fn ours(&self, cmd: &str, conf: &Value) -> Out {
        self.exec(OURS, cmd, conf)
    }
}

/// `conf` with `prevResult` set, as a runtime sends for CHECK and DEL.
pub fn with_prev(conf: &Value, prev: &Value) -> Value {
    let mut c = conf.clone();
    c["prevResult"] = prev.clone();
    c
}

pub fn sh(args: &[&str]) -> String {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    String::from_utf8_lossy(&out.stdout).to_string()
}

pub fn sh_ok(args: &[&str]) -> bool {
    Command::new(args[0])
        .args(&args[1..])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// None when the test can run; else the reason to skip.
pub fn missing_prereq() -> Option<String> {
    if !nix::unistd::Uid::effective().is_root() {
        return Some("needs root (creates namespaces and links)".into());
    }
    for p in ["host-local", "static", "bridge"] {
        if !Path::new(REF_DIR).join(p).exists() {
            return Some(format!(
                "{REF_DIR}/{p} missing (apt-get install containernetworking-plugins)"
            ));
        }
    }
    None
}

#[macro_export]
macro_rules! require_env {
    () => {
        if let Some(why) = cni_util::missing_prereq() {
            eprintln!("SKIP: {why}");
            return;
        }
    };
}

/// Namespaces and host links a test made; removed on drop, even on panic.
#[derive(Default)]
pub struct Scratch {
    netns: Vec<String>,
    links: Vec<String>,
    dirs: Vec<String>,
}

impl Scratch {
    pub fn netns(&mut self, name: &str) -> String {
        let _ = sh_ok(&["ip", "netns", "del", name]);
        assert!(sh_ok(&["ip", "netns", "add", name]), "ip netns add {name}");
        self.netns.push(name.to_string());
        format!("/run/netns/{name}")
    }

    /// A host link (bridge) the plugin will create; deleted afterwards.
    pub fn link(&mut self, name: &str) -> String {
        let _ = sh_ok(&["ip", "link", "del", name]);
        self.links.push(name.to_string());
        name.to_string()
    }

    pub fn dir(&mut self, path: &str) -> String {
        let _ = std::fs::remove_dir_all(path);
        self.dirs.push(path.to_string());
        path.to_string()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        for n in &self.netns {
            let _ = sh_ok(&["ip", "netns", "del", n]);
        }
        for l in &self.links {
            let _ = sh_ok(&["ip", "link", "del", l]);
            let _ = std::fs::remove_file(format!("/run/pipework/firewall/{l}"));
            // The bridge driver's FORWARD accept rule, if a test left it.
            for chain in ["DOCKER-USER", "FORWARD"] {
                let c = format!("pipework:{l}");
                while sh_ok(&[
                    "iptables",
                    "-w",
                    "-D",
                    chain,
                    "-i",
                    l,
                    "-o",
                    l,
                    "-m",
                    "comment",
                    "--comment",
                    &c,
                    "-j",
                    "ACCEPT",
                ]) {}
            }
            // And its raw-table notrack rules (firewall/notrack.rs).
            let c = format!("pipework:{l}");
            for (tool, dir, only) in [
                ("iptables", "notrack", &[][..]),
                (
                    "ip6tables",
                    "notrack6",
                    &["!", "-s", "fe80::/10", "!", "-d", "fe80::/10"][..],
                ),
            ] {
                let _ = std::fs::remove_file(format!("/run/pipework/firewall/{dir}/{l}"));
                let mut a = vec![tool, "-w", "-t", "raw", "-D", "PREROUTING"];
                a.extend(only);
                a.extend(["-i", l, "-m", "comment", "--comment", &c]);
                a.extend(["-j", "CT", "--notrack"]);
                while sh_ok(&a) {}
            }
        }
        for d in &self.dirs {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

/// A bridge-mode config with the static IPAM type.
pub fn static_conf(version: &str, name: &str, bridge: &str, addr: &str, gw: &str) -> Value {
    json!({
        "cniVersion": version,
        "name": name,
        "type": "pipework",
        "mode": "bridge",
        "bridge": bridge,
        "isGateway": true,
        "ipam": {
            "type": "static",
            "addresses": [{"address": addr, "gateway": gw}],
            "routes": [{"dst": "0.0.0.0/0"}]
        }
    })
}

/// `ip -o -4 addr` and routes inside a namespace, for comparisons.
pub fn in_ns(ns_name: &str, args: &[&str]) -> String {
    let mut v = vec!["ip", "netns", "exec", ns_name];
    v.extend_from_slice(args);
    sh(&v)
}
