//! Soak: pipework beside itself. Eight guests on two bridges are attached
//! and detached in loops, each guest by its own worker, while `pipework gc`
//! runs in a loop beside them and SIGKILLs land at random instants of the
//! attaches and detaches. Nothing here waits for anything to settle: gc
//! sees attaches mid-flight, half-built links of killed runs, and commits
//! racing its own snapshot.
//!
//! Afterwards:
//! - a final attach of every guest succeeds;
//! - `gc` leaves every finished attachment whole (the guests' state is the
//!   same before and after it);
//! - after detaching them all, the host and every guest look exactly as
//!   they did before the first attach.
//!
//! Along the way, a run that was not killed must succeed: a killed run may
//! leave work for the next one, never a refusal.
//! Runs about a minute (SOAK_SECS, default 45, for the loop itself).
mod common;
use common::*;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const GUESTS: usize = 8;

/// A tiny xorshift: the test needs varied instants, not good randomness,
/// and the seed is printed so a run can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

struct Guest {
    ns: String,
    bridge: String,
    ip: String,
    mac: String,
}

impl Guest {
    fn path(&self) -> String {
        format!("/run/netns/{}", self.ns)
    }
    fn attach_args(&self) -> Vec<String> {
        [
            self.bridge.as_str(),
            "-i",
            "eth1",
            &self.path(),
            &self.ip,
            &self.mac,
        ]
        .map(String::from)
        .to_vec()
    }
    fn detach_args(&self) -> Vec<String> {
        vec!["detach".into(), self.path()]
    }
}

/// One pipework run; with `kill_after`, SIGKILLed that long after it
/// started (if it is still running). Returns (killed, success, stderr).
fn run(args: &[String], kill_after: Option<Duration>) -> (bool, bool, String) {
    let mut child = Command::new(BIN)
        .args(args)
        .env("DOCKER_HOST", docker_host())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn pipework");
    let mut killed = false;
    if let Some(d) = kill_after {
        std::thread::sleep(d);
        if matches!(child.try_wait(), Ok(None)) {
            killed = child.kill().is_ok();
        }
    }
    let out = child.wait_with_output().expect("wait pipework");
    use std::os::unix::process::ExitStatusExt;
    let by_kill = out.status.signal() == Some(libc::SIGKILL);
    (
        killed && by_kill,
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// What belongs to this test on the host: links, addresses and routes
/// naming our prefix or a pipework temporary name (`pw.`), iptables rules
/// naming our bridges, and pipework's firewall markers for them.
fn our_host_state(prefix: &str) -> String {
    let mut s = String::new();
    for args in [
        &["-o", "link", "show"][..],
        &["-o", "addr", "show"],
        &["route", "show", "table", "all"],
    ] {
        s.push_str(&stdout(&sh("ip", args)));
    }
    s.push_str(&stdout(&sh("iptables", &["-S"])));
    let mut lines: Vec<String> = s
        .lines()
        .filter(|l| l.contains(prefix) || l.contains(" pw."))
        // What the kernel does to a bridge on its own as ports come and go
        // (IPv6 link-local autoconf, its routes) is not ours to compare.
        .filter(|l| !l.contains("fe80:") && !l.contains("ff00::/8"))
        .map(|l| match l.find(": <") {
            // A link: its name, MTU and master, not its carrier flags and
            // state, which an empty bridge changes by itself.
            Some(i) => {
                let keep: Vec<&str> = l[i..]
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .windows(2)
                    .filter(|w| matches!(w[0], "mtu" | "master"))
                    .flatten()
                    .copied()
                    .collect();
                format!("{} {}", &l[..i], keep.join(" "))
            }
            None => l.to_string(),
        })
        .collect();
    if let Ok(rd) = std::fs::read_dir("/run/pipework/firewall") {
        for e in rd.flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if n.contains(prefix) {
                lines.push(format!("marker {n}"));
            }
        }
    }
    lines.sort();
    lines.join("\n")
}

fn guests_state(guests: &[Guest]) -> String {
    guests
        .iter()
        .map(|g| {
            // IPv6 link-local autoconf finishes on its own time (DAD).
            let st: Vec<String> = ns_state(&g.path())
                .lines()
                .filter(|l| !l.contains("fe80:") && !l.contains("ff00::/8"))
                .map(String::from)
                .collect();
            format!("== {}\n{}", g.ns, st.join("\n"))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Guests and bridges go on drop, whatever the test did.
struct Rig {
    guests: Vec<Guest>,
    bridges: Vec<String>,
}

impl Drop for Rig {
    fn drop(&mut self) {
        for g in &self.guests {
            let _ = sh(BIN, &["detach", &g.path()]);
            let _ = sh("ip", &["netns", "del", &g.ns]);
        }
        for b in &self.bridges {
            let _ = sh("ip", &["link", "del", b]);
        }
    }
}

#[test]
fn attach_detach_gc_and_kills_side_by_side() {
    if !require_env() {
        return;
    }
    let prefix = uniq("pws");
    let bridges: Vec<String> = ["a", "b"]
        .iter()
        .map(|s| format!("br{prefix}{s}"))
        .collect();
    // The bridges exist before, so "as before" includes them (pipework
    // leaves a bridge it did not create alone).
    for (i, b) in bridges.iter().enumerate() {
        let mac = format!("02:00:00:96:ff:{i:02x}");
        ok("ip", &["link", "add", b, "address", &mac, "type", "bridge"]);
        ok("ip", &["link", "set", b, "up"]);
    }
    let guests: Vec<Guest> = (0..GUESTS)
        .map(|i| {
            let ns = format!("{prefix}g{i}");
            let _ = sh("ip", &["netns", "del", &ns]);
            ok("ip", &["netns", "add", &ns]);
            ok("ip", &["-n", &ns, "link", "set", "lo", "up"]);
            Guest {
                ns,
                bridge: bridges[i % 2].clone(),
                ip: format!("10.236.{}.{}/24", i % 2, i + 2),
                mac: format!("02:00:00:96:{:02x}:02", i),
            }
        })
        .collect();
    let rig = Arc::new(Rig {
        guests,
        bridges: bridges.clone(),
    });
    let before_host = our_host_state(&prefix);
    let before_guests = guests_state(&rig.guests);

    let secs: u64 = std::env::var("SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(45);
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1)
        | 1;
    eprintln!("soak: {secs} s, seed {seed:#x}");
    let stop = Arc::new(AtomicBool::new(false));
    let problems = Arc::new(Mutex::new(Vec::<String>::new()));
    let (runs, kills, gcs) = (
        Arc::new(AtomicU32::new(0)),
        Arc::new(AtomicU32::new(0)),
        Arc::new(AtomicU32::new(0)),
    );
    let deadline = Instant::now() + Duration::from_secs(secs);

    let mut workers = Vec::new();
    for i in 0..GUESTS {
        let (rig, stop, problems, runs, kills) = (
            rig.clone(),
            stop.clone(),
            problems.clone(),
            runs.clone(),
            kills.clone(),
        );
        let mut rng = Rng(seed.wrapping_mul(i as u64 * 2 + 3) | 1);
        workers.push(std::thread::spawn(move || {
            let g = &rig.guests[i];
            let addr = g.ip.split('/').next().unwrap_or_default().to_string();
            // Set after an attach that finished: only this worker detaches
            // this guest, so if its address is gone when the worker comes
            // back, something else (gc) took a finished attachment away.
            let mut attached = false;
            while Instant::now() < deadline && !stop.load(Ordering::Relaxed) {
                if attached {
                    let have = stdout(&sh("ip", &["-n", &g.ns, "-o", "addr", "show", "eth1"]));
                    if !have.contains(&format!("inet {addr}/")) {
                        problems
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .push(format!("{}: a finished attachment vanished", g.ns));
                    }
                }
                let attach = rng.below(3) != 0;
                let args = if attach {
                    g.attach_args()
                } else {
                    g.detach_args()
                };
                // One run in three is killed somewhere in its first 40 ms
                // (a debug attach takes 10-60 ms here).
                let kill = (rng.below(3) == 0).then(|| Duration::from_micros(rng.below(40_000)));
                let (killed, okay, err) = run(&args, kill);
                runs.fetch_add(1, Ordering::Relaxed);
                attached = attach && okay && !killed;
                if killed {
                    kills.fetch_add(1, Ordering::Relaxed);
                } else if !okay {
                    problems
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(format!(
                            "{} {}: {}",
                            g.ns,
                            if attach { "attach" } else { "detach" },
                            err.trim()
                        ));
                }
            }
        }));
    }
    let gc_loop = {
        let (stop, problems, gcs) = (stop.clone(), problems.clone(), gcs.clone());
        std::thread::spawn(move || {
            while Instant::now() < deadline && !stop.load(Ordering::Relaxed) {
                let (_, okay, err) = run(&["gc".to_string()], None);
                gcs.fetch_add(1, Ordering::Relaxed);
                if !okay {
                    problems
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(format!("gc: {}", err.trim()));
                }
            }
        })
    };
    for w in workers {
        if w.join().is_err() {
            stop.store(true, Ordering::Relaxed);
        }
    }
    let _ = gc_loop.join();
    eprintln!(
        "soak: {} runs, {} killed, {} gc passes",
        runs.load(Ordering::Relaxed),
        kills.load(Ordering::Relaxed),
        gcs.load(Ordering::Relaxed)
    );

    // A final attach of every guest succeeds, whatever the loop left.
    for g in &rig.guests {
        let (_, okay, err) = run(&g.attach_args(), None);
        assert!(okay, "final attach of {}: {err}", g.ns);
    }
    // gc leaves every finished attachment whole.
    let attached = guests_state(&rig.guests);
    for g in &rig.guests {
        assert!(
            attached.contains(&format!("{} ", g.ip.split('/').next().unwrap_or(""))),
            "{} has no address after its final attach:\n{attached}",
            g.ns
        );
    }
    let (_, okay, err) = run(&["gc".to_string()], None);
    assert!(okay, "gc after the soak: {err}");
    assert_same(
        &attached,
        &guests_state(&rig.guests),
        "the attached guests, across gc",
    );

    // Detach them all: the host and the guests are as before.
    for g in &rig.guests {
        let (_, okay, err) = run(&g.detach_args(), None);
        assert!(okay, "final detach of {}: {err}", g.ns);
    }
    assert_same(&before_guests, &guests_state(&rig.guests), "the guests");
    assert_same(&before_host, &our_host_state(&prefix), "the host");

    let problems = problems.lock().unwrap_or_else(|p| p.into_inner());
    assert!(
        problems.is_empty(),
        "{} run(s) that were not killed failed:\n{}",
        problems.len(),
        problems.join("\n")
    );
}
