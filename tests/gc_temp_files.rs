//! A write of pipework's own state goes to `.NAME.PID` and is renamed over
//! `NAME.json` (src/own.rs); a SIGKILL between the two leaves the temporary
//! file. gc removes those no live writer can still rename (its pid is gone,
//! or was reused by a process that started after the file was written) and
//! keeps the rest. The files are made here as a killed write leaves them,
//! in a state folder of this test's own (PIPEWORK_STATE_DIR).
mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

fn put(p: &Path, mtime: Option<SystemTime>) {
    std::fs::create_dir_all(p.parent().expect("a folder")).expect("mkdir");
    std::fs::write(p, b"{\"body\":{},\"tag\":\"\"}").expect("write");
    if let Some(t) = mtime {
        let f = std::fs::File::options().write(true).open(p).expect("open");
        f.set_modified(t).expect("set mtime");
    }
}

/// A pid that ran and is gone (reaped).
fn dead_pid() -> u32 {
    let mut c = Command::new("true").spawn().expect("spawn true");
    let pid = c.id();
    c.wait().expect("wait");
    assert!(!Path::new(&format!("/proc/{pid}")).exists());
    pid
}

fn gc(dir: &Path, dry: bool) -> serde_json::Value {
    let mut c = Command::new(BIN);
    c.arg("gc");
    if dry {
        c.arg("--dry-run");
    }
    let o = c
        .arg("--json")
        .env("PIPEWORK_STATE_DIR", dir)
        .env("DOCKER_HOST", docker_host())
        .stdin(Stdio::null())
        .output()
        .expect("run gc");
    // Other helpers' objects may leave gc with stuck items (exit 1); the
    // report is printed all the same.
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("gc --json: {e}: {}", stderr(&o)))
}

fn temp_items(report: &serde_json::Value) -> Vec<(String, String)> {
    report
        .as_array()
        .into_iter()
        .flatten()
        .filter(|i| i["kind"] == "temp-file")
        .map(|i| {
            (
                i["name"].as_str().unwrap_or_default().to_string(),
                i["action"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

#[test]
fn gc_removes_temp_files_no_live_writer_can_rename() {
    if !require_env() {
        return;
    }
    let dir = PathBuf::from(format!("/tmp/{}", uniq("pwtf")));
    let _ = std::fs::remove_dir_all(&dir);
    let dead = dead_pid();
    let me = std::process::id();
    let long_ago = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
    // Stale: a dead writer (run area, state area, the host key's own).
    let stale_dead = dir.join(format!("run/keepers/.k1.{dead}"));
    let stale_state = dir.join(format!("labs/.lab1.{dead}"));
    let stale_key = dir.join(format!("key.{dead}"));
    // Stale: pid 1 and this test run, but the files are older than them.
    let stale_reused = dir.join("run/overlay/4026531840/.agent.1");
    let stale_mine_old = dir.join(format!("sriov/.0000:01:10.2.{me}"));
    // Kept: this live process may still rename it; and files that are not
    // temporary files at all.
    let live = dir.join(format!("labs/.lab2.{me}"));
    let not_temp = [
        dir.join("labs/lab3.json"),
        dir.join(format!("labs/lab4.{dead}")),
        dir.join(format!("run/.{dead}")),
    ];
    for p in [&stale_dead, &stale_state, &stale_key, &live] {
        put(p, None);
    }
    for p in [&stale_reused, &stale_mine_old] {
        put(p, Some(long_ago));
    }
    for p in &not_temp {
        put(p, Some(long_ago));
    }
    let stale = [
        &stale_dead,
        &stale_state,
        &stale_key,
        &stale_reused,
        &stale_mine_old,
    ];
    let named = |items: &[(String, String)], p: &Path, action: &str| {
        items.iter().any(|(n, a)| Path::new(n) == p && a == action)
    };

    // A dry run names them and removes nothing.
    let items = temp_items(&gc(&dir, true));
    for p in stale {
        assert!(
            named(&items, p, "would be removed"),
            "{p:?} not in {items:?}"
        );
        assert!(p.exists(), "dry run removed {p:?}");
    }
    assert_eq!(items.len(), stale.len(), "{items:?}");

    let items = temp_items(&gc(&dir, false));
    for p in stale {
        assert!(named(&items, p, "removed"), "{p:?} not in {items:?}");
        assert!(!p.exists(), "{p:?} is still there");
    }
    assert_eq!(items.len(), stale.len(), "{items:?}");
    for p in not_temp.iter().chain([&live]) {
        assert!(p.exists(), "gc removed {p:?}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
