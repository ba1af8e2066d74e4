//! Crash safety of `lab up`: an edit killed (SIGKILL, strace fault
//! injection) at every netlink request it makes once its reads are done,
//! then `gc` and the next `up` converge to the file; `down` then leaves
//! the host as before.
//! Kept apart from lab_docker.rs, which stays quick.
mod common;
use common::*;

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

#[test]
fn an_edit_killed_at_any_netlink_request_converges_on_the_next_up() {
    if !require_env() {
        return;
    }
    let before = lab_snap();
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
        assert_eq!(
            a.links_but_lo().len(),
            2,
            "kill #{k}: {:?}",
            a.links_but_lo()
        );
        assert_eq!(
            b.links_but_lo().len(),
            2,
            "kill #{k}: {:?}",
            b.links_but_lo()
        );
        pipework_ok(&["lab", "up", &v1]);
        assert_eq!(
            a.links_but_lo().len(),
            2,
            "kill #{k}: {:?}",
            a.links_but_lo()
        );
    }
    pipework_ok(&["lab", "down", &g.name]);
    assert!(a.links_but_lo().is_empty() && b.links_but_lo().is_empty());
    drop((a, b));
    assert_same(&before, &lab_snap(), "host after killed edits and down");
}
