//! Crash safety of `lab up`: an edit killed (SIGKILL, strace fault
//! injection) at every netlink request it makes once its reads are done,
//! then `gc` and the next `up` converge to the file; `down` then leaves
//! the host as before.
//! Kept apart from lab_docker.rs, which stays quick.
mod common;
use common::*;

/// Whether a line names another test's object: every test prefix is `pw`
/// and a letter; ours is `pwl` (and `pl…` host ends).
/// Also the classic host ends other tests' attaches make (`v<if>pl<pid>`):
/// the lab names its own `pl<hex>`.
fn foreign(l: &str) -> bool {
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

/// Host state minus the other helpers' objects, sorted (see lab_docker.rs).
fn snap() -> String {
    let mut v: Vec<String> = host_state()
        .lines()
        .filter(|l| !foreign(l))
        .map(String::from)
        .collect();
    v.sort();
    v.join("\n")
}

struct LabGuard {
    name: String,
    dir: std::path::PathBuf,
}

impl LabGuard {
    fn new() -> LabGuard {
        let name = uniq("pwl");
        let dir = std::env::temp_dir().join(format!("{name}-files"));
        std::fs::create_dir_all(&dir).expect("lab dir");
        LabGuard { name, dir }
    }
    fn write(&self, file: &str, text: &str) -> String {
        let p = self.dir.join(file);
        std::fs::write(&p, text).expect("write lab file");
        p.display().to_string()
    }
}

impl Drop for LabGuard {
    fn drop(&mut self) {
        let _ = pipework(&["lab", "down", &self.name]);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Links of a namespace other than `lo`.
fn ns_links(ns: &Netns) -> Vec<String> {
    stdout(&ns.exec(&["ip", "-o", "link"]))
        .lines()
        .filter(|l| !l.contains(" lo:"))
        .map(String::from)
        .collect()
}

#[test]
fn an_edit_killed_at_any_netlink_request_converges_on_the_next_up() {
    if !require_env() {
        return;
    }
    let before = snap();
    let (a, b) = (Netns::new("pwlca"), Netns::new("pwlcb"));
    let g = LabGuard::new();
    let lab = |links: &str| {
        format!(
            "name = \"{}\"\n[nodes.a]\nnetns = \"{}\"\n[nodes.b]\nnetns = \"{}\"\n{links}",
            g.name, a.name, b.name
        )
    };
    // A second link, kept as is by the edit. (Bridge members' crash
    // safety is attach's, tested in crash_kill.rs; iptables spawns would
    // make every pass slow.)
    let bridge = |ip: &str| {
        format!(
            "[[links]]\nendpoints = [\"a:eth2\", \"b:eth2\"]\nips = [\"{ip}\", \"10.82.1.2/24\"]\n"
        )
    };
    let v1 = g.write(
        "v1.toml",
        &lab(&format!(
            "[[links]]\nendpoints = [\"a:eth1\", \"b:eth1\"]\nips = [\"10.82.0.1/30\", \"10.82.0.2/30\"]\n{}",
            bridge("10.82.1.1/24")
        )),
    );
    // v2: the p2p link's addresses edited (rebuilt under the same names,
    // the old ends renamed aside first); the second link unchanged.
    let v2 = g.write(
        "v2.toml",
        &lab(&format!(
            "[[links]]\nendpoints = [\"a:eth1\", \"b:eth1\"]\nips = [\"10.82.0.5/30\", \"10.82.0.6/30\"]\n{}",
            bridge("10.82.1.1/24")
        )),
    );
    pipework_ok(&["lab", "up", &v1]);
    // Every `up` first reads: one dump per namespace on the host, then the
    // addresses of the links it holds. A kill there changes nothing, and
    // on a busy host it is most of the requests: start a little before the
    // first change (`status` makes the same reads).
    let reads = {
        let t = std::env::temp_dir().join(format!("pwl-reads-{}", std::process::id()));
        let tf = t.display().to_string();
        sh(
            "strace",
            &[
                "-f",
                "-e",
                "trace=sendto",
                "-o",
                &tf,
                BIN,
                "lab",
                "status",
                &v2,
            ],
        );
        let n = std::fs::read_to_string(&t)
            .map(|s| s.lines().filter(|l| l.contains("sendto(")).count())
            .unwrap_or(0);
        let _ = std::fs::remove_file(&t);
        n
    };
    let first = reads.saturating_sub(20).max(1);
    for k in first.. {
        let o = sh(
            "strace",
            &[
                "-f",
                "-o",
                "/dev/null",
                "-e",
                &format!("inject=sendto:signal=SIGKILL:when={k}"),
                BIN,
                "lab",
                "up",
                &v2,
            ],
        );
        if o.status.success() {
            assert!(
                k > first + 10,
                "never killed: strace injection not working?"
            );
            break;
        }
        assert!(k < first + 200, "lab up still killed after {k} requests");
        // Whatever the kill left: gc, then up converges to the file.
        pipework_ok(&["gc"]);
        pipework_ok(&["lab", "up", &v2]);
        let s = pipework(&["lab", "status", &v2]);
        assert!(s.status.success(), "kill #{k}: {}", stdout(&s));
        assert_eq!(ns_links(&a).len(), 2, "kill #{k}: {:?}", ns_links(&a));
        assert_eq!(ns_links(&b).len(), 2, "kill #{k}: {:?}", ns_links(&b));
        pipework_ok(&["lab", "up", &v1]);
        assert_eq!(ns_links(&a).len(), 2, "kill #{k}: {:?}", ns_links(&a));
    }
    pipework_ok(&["lab", "down", &g.name]);
    assert!(ns_links(&a).is_empty() && ns_links(&b).is_empty());
    drop((a, b));
    assert_same(&before, &snap(), "host after killed edits and down");
}
