//! Shared helpers for the root integration tests: run the real binary, make
//! real containers and namespaces with a unique prefix, snapshot host state.
#![allow(dead_code)]
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

pub const BIN: &str = env!("CARGO_BIN_EXE_pipework");

/// Unique, short (fits in 15-char link names) per-test-run prefix.
pub fn uniq(tag: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::SeqCst);
    format!("{tag}{:x}{n}", std::process::id() % 0xfff)
}

pub fn sh(cmd: &str, args: &[&str]) -> Output {
    Command::new(cmd)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd}: {e}"))
}

pub fn ok(cmd: &str, args: &[&str]) -> String {
    let o = sh(cmd, args);
    assert!(
        o.status.success(),
        "{cmd} {args:?} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn pipework(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env("DOCKER_HOST", docker_host())
        .env(
            "PIPEWORK_OVSDB",
            std::env::var("PIPEWORK_OVSDB")
                .unwrap_or_else(|_| "unix:/tmp/pw-env/ovs/db.sock".into()),
        )
        .stdin(Stdio::null())
        .output()
        .expect("run pipework")
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[track_caller]
pub fn pipework_ok(args: &[&str]) -> Output {
    let o = pipework(args);
    assert!(
        o.status.success(),
        "pipework {args:?} failed: {}",
        stderr(&o)
    );
    o
}

pub fn docker_host() -> String {
    std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///tmp/pw-env/docker/docker.sock".into())
}

/// Are we root with the environment from scripts/env-up.sh? In CI (CI set)
/// a missing environment is a failure, never a silent skip.
pub fn require_env() -> bool {
    let root = nix_is_root();
    let sock = docker_host().trim_start_matches("unix://").to_string();
    let docker = std::path::Path::new(&sock).exists();
    if root && docker {
        return true;
    }
    let why =
        format!("needs root ({root}) and dockerd at {sock} ({docker}): run scripts/env-up.sh");
    if std::env::var_os("CI").is_some() {
        panic!("{why}");
    }
    eprintln!("SKIP: {why}");
    false
}

fn nix_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false)
}

pub fn docker(args: &[&str]) -> Output {
    Command::new("docker")
        .args(args)
        .env("DOCKER_HOST", docker_host())
        .stdin(Stdio::null())
        .output()
        .expect("run docker")
}

/// A running busybox container, removed (with -f) when dropped.
pub struct Container {
    pub name: String,
}

impl Container {
    pub fn run(tag: &str) -> Container {
        Self::run_with(tag, &[])
    }
    pub fn run_with(tag: &str, extra: &[&str]) -> Container {
        let name = uniq(tag);
        let mut args = vec!["run", "-d", "--name", &name, "--network", "none"];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["bb:latest", "/bin/sleep", "3600"]);
        let o = docker(&args);
        assert!(o.status.success(), "docker run: {}", stderr(&o));
        Container { name }
    }
    pub fn exec(&self, args: &[&str]) -> Output {
        let mut a = vec!["exec", &self.name];
        a.extend_from_slice(args);
        docker(&a)
    }
    #[track_caller]
    pub fn exec_ok(&self, args: &[&str]) -> String {
        let o = self.exec(args);
        assert!(o.status.success(), "docker exec {args:?}: {}", stderr(&o));
        stdout(&o)
    }
    pub fn pid(&self) -> String {
        stdout(&docker(&["inspect", "-f", "{{.State.Pid}}", &self.name]))
            .trim()
            .to_string()
    }
    /// Everything about the container's network we might have touched.
    pub fn net_state(&self) -> String {
        let pid = self.pid();
        ns_state(&format!("/proc/{pid}/ns/net"))
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = docker(&["rm", "-f", &self.name]);
    }
}

/// A named network namespace (`ip netns add`), deleted when dropped.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(tag: &str) -> Netns {
        let name = uniq(tag);
        ok("ip", &["netns", "add", &name]);
        Netns { name }
    }
    pub fn exec(&self, args: &[&str]) -> Output {
        let mut a = vec!["netns", "exec", &self.name];
        a.extend_from_slice(args);
        sh("ip", &a)
    }
    pub fn path(&self) -> String {
        format!("/run/netns/{}", self.name)
    }
    pub fn spec(&self) -> String {
        format!("netns:{}", self.name)
    }
}

impl Netns {
    /// Its links other than `lo`, one `ip -o link` line each.
    pub fn links_but_lo(&self) -> Vec<String> {
        stdout(&self.exec(&["ip", "-o", "link"]))
            .lines()
            .filter(|l| !l.contains(" lo:"))
            .map(String::from)
            .collect()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = sh("ip", &["netns", "del", &self.name]);
    }
}

pub fn ns_state(path: &str) -> String {
    let mut s = String::new();
    for args in [
        &["-o", "link", "show"][..],
        &["-o", "addr", "show"],
        &["route", "show", "table", "all"],
        &["-6", "route", "show", "table", "all"],
        &["rule", "show"],
    ] {
        let net = format!("--net={path}");
        let mut a = vec![net.as_str(), "--", "ip"];
        a.extend_from_slice(args);
        s.push_str(&String::from_utf8_lossy(&sh("nsenter", &a).stdout));
    }
    assert!(s.contains("lo"), "could not read namespace state of {path}");
    s.lines().map(normalise).collect::<Vec<_>>().join("\n")
}

/// Drop fields that change on their own (DAD progress, lifetimes).
fn normalise(l: &str) -> String {
    l.split(" valid_lft")
        .next()
        .unwrap_or(l)
        .replace(" tentative", "")
        .replace(" linkdown", "")
}

/// Compare two snapshots and show only the lines that differ.
#[track_caller]
pub fn assert_same(before: &str, after: &str, what: &str) {
    if before == after {
        return;
    }
    let b: std::collections::HashSet<&str> = before.lines().collect();
    let a: std::collections::HashSet<&str> = after.lines().collect();
    let gone: Vec<_> = before.lines().filter(|l| !a.contains(l)).collect();
    let new: Vec<_> = after.lines().filter(|l| !b.contains(l)).collect();
    panic!("{what} changed:\n  missing now: {gone:#?}\n  new: {new:#?}");
}

/// Deletes a bridge (and our iptables rule for it) when dropped, so a
/// failing test does not leave objects behind.
pub struct BridgeGuard(pub String);

impl BridgeGuard {
    pub fn new(tag: &str) -> BridgeGuard {
        BridgeGuard(uniq(tag))
    }
}

impl Drop for BridgeGuard {
    fn drop(&mut self) {
        let _ = sh("ip", &["link", "del", &self.0]);
        let _ = std::fs::remove_file(format!("/run/pipework/firewall/{}", self.0));
        let c = format!("pipework:{}", self.0);
        for chain in ["DOCKER-USER", "FORWARD"] {
            let _ = sh(
                "iptables",
                &[
                    "-w",
                    "-D",
                    chain,
                    "-i",
                    &self.0,
                    "-o",
                    &self.0,
                    "-m",
                    "comment",
                    "--comment",
                    &c,
                    "-j",
                    "ACCEPT",
                ],
            );
        }
        for (tool, dir, only) in [
            ("iptables", "notrack", &[][..]),
            (
                "ip6tables",
                "notrack6",
                &["!", "-s", "fe80::/10", "!", "-d", "fe80::/10"][..],
            ),
        ] {
            let _ = std::fs::remove_file(format!("/run/pipework/firewall/{dir}/{}", self.0));
            let mut args = vec!["-w", "-t", "raw", "-D", "PREROUTING"];
            args.extend(only);
            args.extend(["-i", &self.0, "-m", "comment", "--comment", &c]);
            args.extend(["-j", "CT", "--notrack"]);
            let _ = sh(tool, &args);
        }
    }
}

/// Host networking state, minus objects owned by other concurrent users of
/// this machine (other agents' test prefixes) and volatile counters.
pub fn host_state() -> String {
    let mut s = String::new();
    for args in [
        &["-o", "link", "show"][..],
        &["-o", "addr", "show"],
        &["route", "show", "table", "all"],
        &["-6", "route", "show", "table", "all"],
    ] {
        s.push_str(&String::from_utf8_lossy(&sh("ip", args).stdout));
    }
    s.push_str(&String::from_utf8_lossy(&sh("iptables", &["-S"]).stdout));
    s.push_str(&String::from_utf8_lossy(
        &sh("iptables", &["-S", "-t", "nat"]).stdout,
    ));
    // The bridge's notrack rule (firewall/notrack.rs).
    s.push_str(&String::from_utf8_lossy(
        &sh("iptables", &["-S", "-t", "raw"]).stdout,
    ));
    s.push_str(&String::from_utf8_lossy(
        &sh("ip6tables", &["-S", "-t", "raw"]).stdout,
    ));
    // pwb: scripts/bench-datapath.sh's objects.
    let foreign = ["pwa", "pwo", "pwd", "pwc", "pwp", "pwg", "pwb", "docker0"];
    s.lines()
        .filter(|l| !foreign.iter().any(|f| l.contains(f)) || l.contains("pwt"))
        // The kernel adds a link-local address's local route when its DAD
        // ends, on its own time: a bridge made just before a snapshot
        // would differ from itself a moment later. The link still shows.
        .filter(|l| !l.starts_with("local fe80:"))
        .map(normalise)
        .collect::<Vec<_>>()
        .join("\n")
}

pub fn links_matching(pat: &str) -> Vec<String> {
    ok("ip", &["-o", "link", "show"])
        .lines()
        .filter(|l| l.contains(pat))
        .map(String::from)
        .collect()
}

/// Whether a line names another test's object: every test prefix is `pw`
/// and a letter; ours is `pwl` (and `pl…` host ends).
/// Also the classic host ends other tests' attaches make (`v<if>pl<pid>`):
/// the lab names its own `pl<hex>`.
pub fn foreign_to_lab(l: &str) -> bool {
    let b = l.as_bytes();
    let prefix = b
        .windows(3)
        .any(|w| w[0] == b'p' && w[1] == b'w' && w[2].is_ascii_lowercase() && w[2] != b'l');
    let classic = l.split(|c: char| !c.is_ascii_alphanumeric()).any(|t| {
        t.starts_with('v')
            && t.split_once("pl")
                .is_some_and(|(_, pid)| !pid.is_empty() && pid.bytes().all(|c| c.is_ascii_digit()))
    });
    prefix || classic
}

/// Host state minus the objects of the other helpers working on this
/// machine at the same time (their own prefixes), sorted: what is there
/// counts, not the order the kernel lists it in.
pub fn lab_snap() -> String {
    let mut v: Vec<String> = host_state()
        .lines()
        .filter(|l| !foreign_to_lab(l))
        .map(String::from)
        .collect();
    v.sort();
    v.join("\n")
}
