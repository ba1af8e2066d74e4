//! A scan that could not read every namespace must say so: `ls` warns that
//! its listing may be incomplete, and `gc` names what it could not scan as
//! stuck (and removes nothing for being absent from it) instead of taking
//! "not seen" for "not there". Made real with a file-descriptor limit too
//! small for one descriptor per namespace, over namespaces of our own.
mod common;

use common::*;
use std::process::{Command, Output, Stdio};

/// Descriptors for pipework: far fewer than the namespaces below.
const NOFILE: &str = "--nofile=24:24";

struct Namespaces(Vec<String>);

impl Drop for Namespaces {
    fn drop(&mut self) {
        for n in &self.0 {
            let _ = sh("ip", &["netns", "del", n]);
        }
    }
}

fn pw_limited(args: &[&str]) -> Output {
    Command::new("prlimit")
        .arg(NOFILE)
        .arg(BIN)
        .args(args)
        .env("DOCKER_HOST", docker_host())
        .stdin(Stdio::null())
        .output()
        .expect("run prlimit")
}

#[test]
fn ls_and_gc_say_when_they_could_not_scan_everything() {
    if !require_env() {
        return;
    }
    let tag = uniq("pwis");
    let nss = Namespaces((0..40).map(|i| format!("{tag}n{i}")).collect());
    for n in &nss.0 {
        ok("ip", &["netns", "add", n]);
    }

    // With enough descriptors: no warning.
    let o = pipework(&["ls"]);
    assert!(
        !stderr(&o).contains("may be incomplete"),
        "ls warned without a limit: {}",
        stderr(&o)
    );

    let o = pw_limited(&["ls"]);
    let e = stderr(&o);
    assert!(
        e.contains("this listing may be incomplete") && e.contains("could not be scanned"),
        "ls under {NOFILE} ({}): {e}",
        o.status
    );

    let o = pw_limited(&["gc", "--dry-run"]);
    let e = stderr(&o);
    assert!(!o.status.success(), "gc under {NOFILE} succeeded: {e}");
    assert!(
        e.contains("namespace") && e.contains("could not be scanned"),
        "gc under {NOFILE}: {e}"
    );
}
