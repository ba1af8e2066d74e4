//! Every seed of every fuzz target, through the same harness the fuzzer
//! runs (pipework::fuzzing), on stable and without cargo-fuzz: so the
//! seeds, and the crash inputs added to them after a fix, are regression
//! tests in the ordinary `cargo test` run.
//!
//! A seed named `ok-*` must be accepted and one named `err-*` rejected;
//! any other name (the dhcp_reply originals, `regress-*`) only must not
//! panic. A panic anywhere fails the test with the seed's path.
use pipework::fuzzing;
use std::path::{Path, PathBuf};

type Harness = fn(&[u8]) -> fuzzing::Verdict;

/// Each target, its harness, and how many seeds it must at least have (so
/// a lost or misnamed directory cannot make the test pass vacuously).
const TARGETS: &[(&str, Harness, usize)] = &[
    ("dhcp_reply", fuzzing::dhcp_reply, 6),
    ("cli_argv", fuzzing::cli_argv, 40),
    ("cni_config", fuzzing::cni_config, 30),
    ("ovsdb_reply", fuzzing::ovsdb_reply, 25),
];

fn seeds(target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/seeds")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

struct Tally {
    ok: usize,
    err: usize,
    other: usize,
    /// Seeds whose verdict contradicts their name, all reported at once.
    wrong: Vec<String>,
}

fn run(target: &str, harness: Harness) -> Tally {
    let mut t = Tally {
        ok: 0,
        err: 0,
        other: 0,
        wrong: Vec::new(),
    };
    for path in seeds(target) {
        let data = std::fs::read(&path).expect("readable seed");
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let verdict = std::panic::catch_unwind(|| harness(&data))
            .unwrap_or_else(|_| panic!("{} panicked", path.display()));
        match (name.split('-').next(), &verdict) {
            (Some("ok"), Ok(_)) => t.ok += 1,
            (Some("err"), Err(why)) if !why.is_empty() => t.err += 1,
            (Some("ok" | "err"), _) => t.wrong.push(format!("{target}/{name}: {verdict:?}")),
            _ => t.other += 1,
        }
    }
    t
}

#[test]
fn every_seed_of_every_target() {
    for &(target, harness, min) in TARGETS {
        let t = run(target, harness);
        assert!(
            t.wrong.is_empty(),
            "verdicts contradict names:\n{}",
            t.wrong.join("\n")
        );
        let total = t.ok + t.err + t.other;
        assert!(total >= min, "{target}: {total} seeds, expected {min}+");
        // The new targets keep both accepted and rejected examples, so
        // both sides of every parser stay covered.
        if target != "dhcp_reply" {
            assert!(
                t.ok >= 10 && t.err >= 10,
                "{target}: {} ok, {} err",
                t.ok,
                t.err
            );
        }
    }
}

/// The verdicts say what was parsed, not just that something was.
#[test]
fn verdicts_name_what_was_parsed() {
    let seed = |target: &str, name: &str| {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fuzz/seeds")
            .join(target)
            .join(name);
        std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    };
    assert_eq!(
        fuzzing::dhcp_reply(&seed("dhcp_reply", "ack")),
        Ok("ack".into())
    );
    assert_eq!(
        fuzzing::dhcp_reply(&seed("dhcp_reply", "nak")),
        Ok("nak".into())
    );
    assert_eq!(
        fuzzing::dhcp_reply(&seed("dhcp_reply", "offer")),
        Ok("offer".into())
    );
    let v = fuzzing::cli_argv(&seed("cli_argv", "ok-dhcp")).unwrap_or_default();
    assert!(v.starts_with("attach Dhcp"), "{v}");
    assert_eq!(
        fuzzing::cli_argv(&seed("cli_argv", "ok-ls")),
        Ok("ls".into())
    );
    let e = fuzzing::cli_argv(&seed("cli_argv", "err-missing-prefix")).unwrap_err();
    assert!(e.contains("Maybe you meant 10.0.0.2/24?"), "{e}");
    assert_eq!(
        fuzzing::cni_config(&seed("cni_config", "ok-cni-args-ip")),
        Ok("bridge 2 ips".into())
    );
    let e = fuzzing::cni_config(&seed("cni_config", "err-not-json")).unwrap_err();
    assert!(e.ends_with("(code 6)"), "{e}");
    let e = fuzzing::cni_config(&seed("cni_config", "err-version")).unwrap_err();
    assert!(e.ends_with("(code 1)"), "{e}");
    assert_eq!(
        fuzzing::ovsdb_reply(&seed("ovsdb_reply", "ok-add_port")),
        Ok("add_port: ofport 7".into())
    );
    let e = fuzzing::ovsdb_reply(&seed("ovsdb_reply", "err-create_bridge-duplicate")).unwrap_err();
    assert!(e.contains("already exists"), "{e}");
}
