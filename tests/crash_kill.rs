//! Crash safety: pipework killed (SIGKILL) at any instant of an attach or a
//! detach leaves either the finished result or only objects recognisably
//! its own; re-running the same command finishes the job (exit 0), and
//! `pipework gc` then leaves exactly the finished state. A killed detach,
//! re-run, plus gc leaves the state from before the attach.
//!
//! Fault injection is strace's: `-e inject=SYSCALL:signal=SIGKILL:when=K`
//! kills pipework at its K-th call of SYSCALL, for K = 1, 2, … until a run
//! completes without being killed. One pass per syscall (strace counts each
//! syscall separately, so one pass per syscall is what reaches every call):
//! `sendto` is every netlink request and every OVSDB write, `write` the
//! wake-up pipes and every line on stderr, `clone3`/`clone` the iptables
//! spawns and the announcer fork, `wait4` the moment after each iptables
//! or ip6tables run (the rule exists, nothing recorded yet; the snapshots
//! hold both raw tables, where the notrack rules live). `-f` follows pipework's
//! threads and forks; `-b execve` lets go of iptables at its exec, so the
//! kill always hits pipework, never the iptables child.
//!
//! The guests are named network namespaces given by path, so every name
//! (host ends, hash names) is the same from one run to the next. macvlan
//! and --direct-phys run pipework inside a "host" namespace of their own
//! (the parent NIC is a veth there): the real host's routes are never
//! touched. The Linux bridge (with dockerd's DOCKER-USER rule) and OVS
//! (userspace datapath) run on the real host, on objects named `pwk…`.
//!
//! Plus a loop per bridge and OVS: 200 attaches and detaches killed after a
//! random 0–15 ms, then gc + detach must leave nothing behind.
mod common;
mod trust_util;

use common::*;
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};
use trust_util::*;

/// Syscall passes, see the module comment.
const PASSES: &[&str] = &["sendto", "sendmsg", "write", "clone3", "clone", "wait4"];

/// The passes to run: all, or those in PW_CRASH_PASSES (comma-separated,
/// for debugging one syscall).
fn passes() -> Vec<&'static str> {
    match std::env::var("PW_CRASH_PASSES") {
        Ok(v) => PASSES
            .iter()
            .copied()
            .filter(|p| v.split(',').any(|x| x == *p))
            .collect(),
        Err(_) => PASSES.to_vec(),
    }
}

/// One line per kill on stderr (shown with --nocapture), to see where the
/// time goes.
fn progress(kind: Kind, phase: &str, sys: &str, k: u32, pass_start: Instant) {
    if std::env::var_os("PW_CRASH_VERBOSE").is_some() {
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "{kind:?} {phase} {sys} #{k} (pass at {:.1} s)",
            pass_start.elapsed().as_secs_f64()
        );
    }
}

/// No attach makes anywhere near this many calls of one syscall.
const MAX_K: u32 = 400;

#[derive(Clone, Copy, PartialEq, Debug)]
enum Kind {
    Bridge,
    Macvlan,
    Phys,
    Ovs,
}

/// One driver's world: a guest namespace, the host side it plugs into, and
/// the states to compare against.
struct Rig {
    kind: Kind,
    n: u8,
    tag: String,
    /// Where pipework runs: None for the real host, else our namespace.
    host_ns: Option<String>,
    guest: String,
    lan: Option<String>,
    hostif: String,
    /// Host and guest snapshots before the attach and when it finished.
    pre: (String, String),
    fin: (String, String),
    /// Host link names before the attach and when it finished.
    pre_links: Vec<String>,
    fin_links: Vec<String>,
}

impl Rig {
    fn new(kind: Kind, n: u8) -> Rig {
        let r = Self::new_unchecked(kind, n);
        if let Some(p) = r.check_clean_cycle() {
            panic!("{p}");
        }
        r
    }

    fn new_unchecked(kind: Kind, n: u8) -> Rig {
        let tag = uniq("pwk");
        let hostif = match kind {
            Kind::Bridge => format!("br{tag}"),
            Kind::Ovs => format!("ovs{tag}"),
            Kind::Macvlan => format!("{tag}m"),
            Kind::Phys => format!("{tag}d"),
        };
        let mut r = Rig {
            kind,
            n,
            host_ns: None,
            guest: format!("{tag}g"),
            lan: None,
            hostif,
            tag,
            pre: Default::default(),
            fin: Default::default(),
            pre_links: vec![],
            fin_links: vec![],
        };
        r.build();
        r
    }

    fn guest_path(&self) -> String {
        format!("/run/netns/{}", self.guest)
    }

    fn build(&mut self) {
        netns_add(&self.guest);
        if matches!(self.kind, Kind::Macvlan | Kind::Phys) {
            let h = format!("{}h", self.tag);
            let l = format!("{}l", self.tag);
            netns_add(&h);
            netns_add(&l);
            let nic = &self.hostif;
            ok(
                "ip",
                &[
                    "-n",
                    &h,
                    "link",
                    "add",
                    nic,
                    "address",
                    &format!("02:00:00:97:{:02x}:05", self.n),
                    "type",
                    "veth",
                    "peer",
                    "name",
                    "lan0",
                    "address",
                    &format!("02:00:00:97:{:02x}:06", self.n),
                    "netns",
                    &l,
                ],
            );
            ok("ip", &["-n", &l, "link", "set", "lan0", "up"]);
            ok("ip", &["-n", &h, "link", "set", nic, "up"]);
            if self.kind == Kind::Phys {
                // What --direct-phys must give back: MTU, alias, address.
                ok("ip", &["-n", &h, "link", "set", nic, "mtu", "1450"]);
                ok(
                    "ip",
                    &["-n", &h, "link", "set", nic, "alias", "pwk test nic"],
                );
                ok(
                    "ip",
                    &[
                        "-n",
                        &h,
                        "addr",
                        "add",
                        &format!("10.233.{}.5/24", self.n),
                        "brd",
                        "+",
                        "dev",
                        nic,
                    ],
                );
            }
            self.host_ns = Some(h);
            self.lan = Some(l);
        }
        if self.kind == Kind::Ovs {
            // pipework creates the bridge by the classic rule ("ovs…"); it
            // stays, and belongs to the state before every attach.
            let o = self.pw(&self.attach_args());
            assert!(
                o.status.success(),
                "creating {}: {}",
                self.hostif,
                stderr(&o)
            );
            let o = self.pw(&self.detach_args());
            assert!(o.status.success(), "detach: {}", stderr(&o));
        }
        self.pre = self.state();
        self.pre_links = self.host_links();
        // The reference: a clean attach, and back.
        let o = self.pw(&self.attach_args());
        assert!(o.status.success(), "clean attach: {}", stderr(&o));
        self.fin = self.state();
        self.fin_links = self.host_links();
        let o = self.pw(&self.detach_args());
        assert!(o.status.success(), "clean detach: {}", stderr(&o));
        self.settle();
    }

    /// Does a clean attach and detach return to the start?
    fn check_clean_cycle(&self) -> Option<String> {
        let now = self.state();
        diff(&self.pre.0, &now.0)
            .or_else(|| diff(&self.pre.1, &now.1))
            .map(|d| {
                format!(
                    "{:?}: a clean attach and detach do not return to the start:\n  {d}",
                    self.kind
                )
            })
    }

    fn teardown(&self) {
        for ns in [Some(&self.guest), self.host_ns.as_ref(), self.lan.as_ref()]
            .into_iter()
            .flatten()
        {
            let _ = sh("ip", &["netns", "del", ns]);
        }
        if self.kind == Kind::Ovs {
            let _ = vsctl(&["--if-exists", "del-br", &self.hostif]);
        }
        if self.kind == Kind::Bridge {
            let _ = sh("ip", &["link", "del", &self.hostif]);
            drop_firewall(&self.hostif);
        }
        // Host ends and half-built links of ours (also `pw.` ones whose
        // line names our bridge, guest or record).
        for l in ok("ip", &["-o", "link", "show"]).lines() {
            if l.contains(&self.tag)
                && let Some(name) = l.split(": ").nth(1)
            {
                let name = name.split('@').next().unwrap_or(name);
                if name.starts_with(&self.tag) || name.starts_with("pw.") {
                    let _ = sh("ip", &["link", "del", name]);
                }
            }
        }
        let _ = std::fs::remove_file(self.trace_path());
    }

    /// After a detach: the Linux bridge pipework created stays (as
    /// documented); remove it so the host is as before the first attach.
    fn settle(&self) {
        if self.kind == Kind::Bridge {
            let _ = sh("ip", &["link", "del", &self.hostif]);
        }
    }

    /// Start over from scratch after a failure, so the next kill is judged
    /// on its own.
    fn reset(&mut self, rep: &mut Report) {
        self.teardown();
        self.build();
        if let Some(p) = self.check_clean_cycle() {
            rep.add(format!("after a reset: {p}"));
            self.pre = self.state();
        }
    }

    fn attach_args(&self) -> Vec<String> {
        let n = self.n;
        let ip = format!("10.233.{n}.2/24@10.233.{n}.1");
        let mac = format!("02:00:00:97:{n:02x}:02");
        let g = self.guest_path();
        let v = format!("{}v", self.tag);
        let a: Vec<&str> = match self.kind {
            Kind::Bridge | Kind::Ovs => {
                vec![&self.hostif, "-i", "eth1", "-l", &v, &g, &ip, &mac]
            }
            Kind::Macvlan => vec![&self.hostif, "-i", "eth1", &g, &ip, &mac],
            Kind::Phys => vec!["--direct-phys", &self.hostif, "-i", "eth1", &g, &ip],
        };
        a.into_iter().map(String::from).collect()
    }

    fn detach_args(&self) -> Vec<String> {
        vec!["detach".into(), self.guest_path()]
    }

    fn pw(&self, args: &[String]) -> Output {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        pw_in(self.host_ns.as_deref(), &a)
    }

    fn gc(&self) -> Output {
        pw_in(self.host_ns.as_deref(), &["gc"])
    }

    fn state(&self) -> (String, String) {
        (
            snapshot(
                self.host_ns.as_deref(),
                &self.tag,
                true,
                self.kind == Kind::Ovs,
            ),
            ns_snapshot(&self.guest_path(), true),
        )
    }

    /// Names of the host links of this test: all of our host namespace,
    /// or on the real host those whose line names our tag (our bridge,
    /// guest or record).
    fn host_links(&self) -> Vec<String> {
        text(&run_in(
            self.host_ns.as_deref(),
            "ip",
            &["-o", "link", "show"],
        ))
        .lines()
        .filter(|l| self.host_ns.is_some() || l.contains(&self.tag))
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).to_string())
        .collect()
    }

    fn trace_path(&self) -> String {
        format!("/tmp/{}.strace", self.tag)
    }

    /// pipework under strace, killed at the k-th call of `sys`. Returns
    /// the output and whether pipework itself was killed.
    fn killed_run(&self, args: &[String], sys: &str, k: u32) -> (Output, bool) {
        let trace = self.trace_path();
        let mut c = match &self.host_ns {
            Some(n) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", n, "strace"]);
                c
            }
            None => Command::new("strace"),
        };
        c.args(["-f", "-b", "execve", "-o", &trace, "-e"])
            .arg(format!("trace={sys}"))
            .arg("-e")
            .arg(format!("inject={sys}:signal=SIGKILL:when={k}"))
            .arg("--")
            .arg(BIN)
            .args(args)
            .env("DOCKER_HOST", docker_host())
            .env("PIPEWORK_OVSDB", ovsdb_url())
            .stdin(Stdio::null());
        let o = c.output().expect("run strace");
        // strace re-raises the signal that killed its tracee.
        let killed = o.status.signal() == Some(libc::SIGKILL)
            || std::fs::read_to_string(&trace).is_ok_and(|t| {
                t.lines()
                    .next()
                    .and_then(|l| l.split_whitespace().next())
                    .is_some_and(|pid| {
                        t.lines()
                            .any(|l| l.starts_with(pid) && l.contains("killed by SIGKILL"))
                    })
            });
        (o, killed)
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        self.teardown();
    }
}

fn netns_add(name: &str) {
    let _ = sh("ip", &["netns", "del", name]);
    ok("ip", &["netns", "add", name]);
    ok("ip", &["-n", name, "link", "set", "lo", "up"]);
}

/// Problems found, reported all at once at the end of a test.
#[derive(Default)]
struct Report {
    problems: Vec<String>,
    runs: u32,
    /// Kills that left a half-built `pw.*` link (shows the windows are hit).
    left_temp: u32,
}

impl Report {
    fn add(&mut self, what: String) {
        self.problems.push(what);
    }

    fn finish(self, name: &str, started: Instant) {
        let secs = started.elapsed().as_secs_f64();
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "{name}: {} killed runs in {secs:.1} s; a pw.* link was there after {} of them",
            self.runs,
            self.left_temp
        );
        if self.problems.is_empty() {
            return;
        }
        // A missing or failing gc shows in every run: say it once.
        let (gc, other): (Vec<&String>, Vec<&String>) = self
            .problems
            .iter()
            .partition(|p| p.contains(": gc failed: "));
        let mut lines: Vec<String> = other.iter().take(60).map(|s| s.to_string()).collect();
        if other.len() > 60 {
            lines.push(format!("… and {} more", other.len() - 60));
        }
        if let Some(first) = gc.first() {
            lines.push(format!("gc failed in {} runs, e.g. {first}", gc.len()));
        }
        panic!(
            "{name}: {} problem(s) in {} killed runs:\n{}",
            self.problems.len(),
            self.runs,
            lines.join("\n")
        );
    }
}

fn one_line(o: &Output) -> String {
    let e = stderr(o);
    format!("{} {:?}", o.status, e.trim_end())
}

/// Compare with an expected state; on a difference, note it.
fn expect_state(rig: &Rig, want: &(String, String), what: &str, rep: &mut Report) -> bool {
    let now = rig.state();
    let mut same = true;
    if let Some(d) = diff(&want.0, &now.0) {
        rep.add(format!("{what}: host differs:\n  {d}"));
        same = false;
    }
    if let Some(d) = diff(&want.1, &now.1) {
        rep.add(format!("{what}: guest differs:\n  {d}"));
        same = false;
    }
    same
}

/// Kill the attach at every step; after each: re-run, gc, finished state;
/// detach, the state from before.
fn attach_phase(rig: &mut Rig, rep: &mut Report) {
    let args = rig.attach_args();
    for sys in passes() {
        let t = Instant::now();
        for k in 1..=MAX_K {
            progress(rig.kind, "attach", sys, k, t);
            let at = format!("{:?} attach killed at {sys} #{k}", rig.kind);
            let (o, killed) = rig.killed_run(&args, sys, k);
            rep.runs += 1;
            if let Some(e) = esc_in(&o) {
                rep.add(format!("{at}: {e}"));
            }
            // Half-built host links carry a temporary `pw.` name.
            let links = rig.host_links();
            if links.iter().any(|l| l.starts_with("pw.")) {
                rep.left_temp += 1;
            }
            for l in links {
                if !l.starts_with("pw.")
                    && !rig.pre_links.contains(&l)
                    && !rig.fin_links.contains(&l)
                {
                    rep.add(format!(
                        "{at}: host link {l} is neither finished nor named pw.*"
                    ));
                }
            }
            let mut bad = false;
            let again = rig.pw(&args);
            if !again.status.success() {
                rep.add(format!("{at}: re-run failed: {}", one_line(&again)));
                bad = true;
            }
            let gc = rig.gc();
            if !gc.status.success() {
                rep.add(format!("{at}: gc failed: {}", one_line(&gc)));
            }
            let fin = rig.fin.clone();
            bad |= !expect_state(rig, &fin, &format!("{at}, re-run + gc"), rep);
            let d = rig.pw(&rig.detach_args());
            if !d.status.success() {
                rep.add(format!("{at}: detach failed: {}", one_line(&d)));
                bad = true;
            }
            rig.settle();
            let pre = rig.pre.clone();
            bad |= !expect_state(rig, &pre, &format!("{at}, then detach"), rep);
            if bad {
                rig.reset(rep);
            }
            if !killed {
                break;
            }
            assert!(
                k < MAX_K,
                "{at}: still killed at the cap; is strace counting?"
            );
        }
    }
}

/// Kill the detach at every step; after each: re-run, gc, the state from
/// before the attach.
fn detach_phase(rig: &mut Rig, rep: &mut Report) {
    let args = rig.detach_args();
    for sys in passes() {
        let t = Instant::now();
        for k in 1..=MAX_K {
            progress(rig.kind, "detach", sys, k, t);
            let at = format!("{:?} detach killed at {sys} #{k}", rig.kind);
            let a = rig.pw(&rig.attach_args());
            let fin = rig.fin.clone();
            if !a.status.success() || !expect_state(rig, &fin, &format!("{at}: attach"), rep) {
                // The clean attach is the reference itself: without it the
                // phase cannot go on.
                rep.add(format!("{at}: clean attach failed: {}", one_line(&a)));
                return;
            }
            let (o, killed) = rig.killed_run(&args, sys, k);
            rep.runs += 1;
            if let Some(e) = esc_in(&o) {
                rep.add(format!("{at}: {e}"));
            }
            let again = rig.pw(&args);
            let mut bad = false;
            if !again.status.success() {
                rep.add(format!("{at}: re-run failed: {}", one_line(&again)));
                bad = true;
            }
            let gc = rig.gc();
            if !gc.status.success() {
                rep.add(format!("{at}: gc failed: {}", one_line(&gc)));
            }
            rig.settle();
            let pre = rig.pre.clone();
            bad |= !expect_state(rig, &pre, &format!("{at}, re-run + gc"), rep);
            if bad {
                rig.reset(rep);
            }
            if !killed {
                break;
            }
            assert!(
                k < MAX_K,
                "{at}: still killed at the cap; is strace counting?"
            );
        }
    }
}

fn crash_test(kind: Kind, n: u8, name: &str) {
    if !require_env() || !have_strace() || (kind == Kind::Ovs && !have_ovs()) {
        return;
    }
    let started = Instant::now();
    let mut rig = Rig::new(kind, n);
    let mut rep = Report::default();
    attach_phase(&mut rig, &mut rep);
    detach_phase(&mut rig, &mut rep);
    rep.finish(name, started);
}

#[test]
fn killed_bridge_attach_and_detach_recover() {
    crash_test(Kind::Bridge, 1, "bridge");
}

#[test]
fn killed_macvlan_attach_and_detach_recover() {
    crash_test(Kind::Macvlan, 2, "macvlan");
}

#[test]
fn killed_direct_phys_attach_and_detach_recover() {
    crash_test(Kind::Phys, 3, "direct-phys");
}

#[test]
fn killed_ovs_attach_and_detach_recover() {
    crash_test(Kind::Ovs, 4, "ovs");
}

// ---- a marked host device: the host shim -----------------------------------

/// `host-shim` makes a macvlan the host keeps and marks it as pipework's
/// (the mark cannot ride on the RTM_NEWLINK that creates it). Killed at
/// every netlink request: a device under the shim's name is always the
/// marked, finished one (an unmarked one would make the re-run refuse it as
/// someone else's), gc removes the half-built one under a `pw.` name, and
/// the re-run finishes the job. The kills must hit that window at least
/// once, or the test would prove nothing.
#[test]
fn killed_host_shim_is_finished_by_the_next_run() {
    if !require_env() || !have_strace() {
        return;
    }
    let started = Instant::now();
    let rig = Rig::new(Kind::Macvlan, 7);
    let h = rig
        .host_ns
        .clone()
        .expect("macvlan rigs have a host namespace");
    let shim = format!("{}s", rig.tag);
    let addr = "10.233.7.250/24";
    let args: Vec<String> = ["host-shim", &rig.hostif, addr, "-l", &shim]
        .into_iter()
        .map(String::from)
        .collect();
    let pre_links = rig.host_links();
    let show = |name: &str| text(&run_in(Some(&h), "ip", &["-o", "link", "show", name]));
    let finished = |rep: &mut Report, at: &str| {
        let mut want = pre_links.clone();
        want.push(shim.clone());
        want.sort();
        let mut now = rig.host_links();
        now.sort();
        if now != want {
            rep.add(format!("{at}: host links {now:?}, wanted {want:?}"));
        }
        if !show(&shim).contains(" alias ") {
            rep.add(format!("{at}: {shim} carries no mark"));
        }
        let a = text(&run_in(
            Some(&h),
            "ip",
            &["-o", "addr", "show", "dev", &shim],
        ));
        if !a.contains(addr) {
            rep.add(format!("{at}: {shim} lacks {addr}: {a}"));
        }
    };
    let mut rep = Report::default();
    let o = rig.pw(&args);
    assert!(o.status.success(), "clean host-shim: {}", stderr(&o));
    finished(&mut rep, "clean run");
    ok("ip", &["-n", &h, "link", "del", &shim]);
    for sys in ["sendto", "sendmsg"] {
        for k in 1..=MAX_K {
            let at = format!("host-shim killed at {sys} #{k}");
            let (o, killed) = rig.killed_run(&args, sys, k);
            rep.runs += 1;
            let links = rig.host_links();
            if links.iter().any(|l| l.starts_with("pw.")) {
                rep.left_temp += 1;
            }
            for l in &links {
                if !l.starts_with("pw.") && !pre_links.contains(l) && *l != shim {
                    rep.add(format!(
                        "{at}: host link {l} is neither finished nor named pw.*"
                    ));
                }
            }
            if links.contains(&shim) && !show(&shim).contains(" alias ") {
                rep.add(format!("{at}: {shim} exists without its mark"));
            }
            let gc = rig.gc();
            if !gc.status.success() {
                rep.add(format!("{at}: gc failed: {}", one_line(&gc)));
            }
            if let Some(l) = rig.host_links().iter().find(|l| l.starts_with("pw.")) {
                rep.add(format!("{at}: gc left {l}"));
            }
            let again = rig.pw(&args);
            if !again.status.success() {
                rep.add(format!("{at}: re-run failed: {}", one_line(&again)));
            }
            finished(&mut rep, &at);
            let _ = run_in(Some(&h), "ip", &["link", "del", &shim]);
            if !killed {
                if !o.status.success() {
                    rep.add(format!("{at}: the unkilled run failed: {}", one_line(&o)));
                }
                break;
            }
            assert!(
                k < MAX_K,
                "{at}: still killed at the cap; is strace counting?"
            );
        }
    }
    let windows = rep.left_temp;
    rep.finish("host-shim", started);
    assert!(
        windows > 0,
        "no kill fell between the shim's creation and its mark: the window was never tested"
    );
}

// ---- random kills ----------------------------------------------------------

/// xorshift64*: enough randomness for delays, and a seed to print.
struct Rng(u64);

impl Rng {
    fn seeded() -> Rng {
        let seed = std::env::var("PW_CRASH_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(1)
                    | 1
            });
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "random kills: PW_CRASH_SEED={seed} repeats this run"
        );
        Rng(seed)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

fn random_kills(kind: Kind, n: u8, name: &str) {
    if !require_env() || (kind == Kind::Ovs && !have_ovs()) {
        return;
    }
    let started = Instant::now();
    let rig = Rig::new(kind, n);
    let mut rng = Rng::seeded();
    let attach = rig.attach_args();
    let detach = rig.detach_args();
    let mut completed = 0;
    let mut left_temp = 0;
    for _ in 0..200 {
        // Mostly attaches (each finds the previous one's debris), some
        // detaches, so both are cut at every stage.
        let args = if rng.below(10) < 7 { &attach } else { &detach };
        let delay = Duration::from_micros(rng.below(15_001));
        let mut child = Command::new(BIN)
            .args(args)
            .env("DOCKER_HOST", docker_host())
            .env("PIPEWORK_OVSDB", ovsdb_url())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn pipework");
        std::thread::sleep(delay);
        // Child::kill is SIGKILL to this pid, and only to it.
        let _ = child.kill();
        let st = child.wait().expect("wait");
        if st.signal().is_none() {
            completed += 1;
        }
        if rig.host_links().iter().any(|l| l.starts_with("pw.")) {
            left_temp += 1;
        }
    }
    let mut rep = Report {
        runs: 200,
        left_temp,
        ..Default::default()
    };
    let gc = rig.gc();
    if !gc.status.success() {
        rep.add(format!("gc failed: {}", one_line(&gc)));
    }
    let d = rig.pw(&detach);
    if !d.status.success() {
        rep.add(format!("detach failed: {}", one_line(&d)));
    }
    let gc = rig.gc();
    if !gc.status.success() {
        rep.add(format!("second gc failed: {}", one_line(&gc)));
    }
    rig.settle();
    expect_state(&rig, &rig.pre, "after 200 kills, gc + detach", &mut rep);
    // Nothing of ours is left, by name either.
    for l in ok("ip", &["-o", "link", "show"]).lines() {
        let name = l.split(": ").nth(1).unwrap_or_default();
        if name.starts_with("pw.") && l.contains(&rig.tag) {
            rep.add(format!("leftover temporary link: {l}"));
        }
        if name.starts_with(&format!("{}v", rig.tag)) {
            rep.add(format!("leftover host end: {l}"));
        }
    }
    if ok("iptables", &["-w", "-S"]).contains(&format!("pipework:{}", rig.hostif)) {
        rep.add(format!("leftover iptables rule for {}", rig.hostif));
    }
    for tool in ["iptables", "ip6tables"] {
        if ok(tool, &["-w", "-t", "raw", "-S"]).contains(&format!("pipework:{}", rig.hostif)) {
            rep.add(format!(
                "leftover {tool} raw-table notrack rule for {}",
                rig.hostif
            ));
        }
    }
    if kind == Kind::Ovs {
        let ports = vsctl(&["list-ports", &rig.hostif]);
        if !ports.trim().is_empty() {
            rep.add(format!("leftover OVS ports: {ports:?}"));
        }
        let rows = vsctl(&[
            "--columns=name,external_ids",
            "--format=csv",
            "list",
            "Interface",
        ]);
        for r in rows.lines().filter(|r| r.contains(&rig.guest)) {
            rep.add(format!("leftover OVS Interface row: {r}"));
        }
    }
    if links_with_prefix(None, "pw.").iter().any(|l| {
        sh("ip", &["-o", "link", "show", l])
            .stdout
            .windows(rig.tag.len())
            .any(|w| w == rig.tag.as_bytes())
    }) {
        rep.add("a pw.* link naming this test is left".into());
    }
    // And the same attach still works from there.
    let a = rig.pw(&attach);
    if !a.status.success() {
        rep.add(format!("attach after the kills failed: {}", one_line(&a)));
    } else {
        expect_state(&rig, &rig.fin, "attach after the kills", &mut rep);
        let d = rig.pw(&detach);
        if !d.status.success() {
            rep.add(format!("final detach failed: {}", one_line(&d)));
        }
        rig.settle();
        expect_state(&rig, &rig.pre, "final detach", &mut rep);
    }
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr(),
        "{name}: {completed} of 200 runs finished before their kill"
    );
    rep.finish(name, started);
}

#[test]
fn random_kills_of_bridge_attach_and_detach_leave_nothing() {
    random_kills(Kind::Bridge, 5, "random bridge");
}

#[test]
fn random_kills_of_ovs_attach_and_detach_leave_nothing() {
    random_kills(Kind::Ovs, 6, "random ovs");
}
