//! Lab impairments (netem). Runs in the VM tier (Debian's kernel has
//! sch_netem): the qdisc is on both ends with the file's delay, loss and
//! rate. On a kernel without netem (this host) `lab up` must say so in one
//! line and change nothing.
mod phys_util;
use phys_util::*;

fn state_dir(tag: &str) -> std::path::PathBuf {
    // The VM mounts the host's root read-only: keep the key and lab state
    // in /tmp (a tmpfs there).
    let d = std::env::temp_dir().join(format!("pwl-state-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&d).expect("state dir");
    d
}

fn lab(args: &[&str], state: &std::path::Path) -> std::process::Output {
    std::process::Command::new(PIPEWORK)
        .args(args)
        .env("PIPEWORK_STATE_DIR", state)
        .output()
        .expect("run pipework")
}

#[test]
fn impairments_are_netem_on_both_ends_or_refused_in_one_line() {
    if !root_or_skip() {
        return;
    }
    let a = TestNs::new("la");
    let b = TestNs::new("lb");
    let st = state_dir("netem");
    let name = format!("pwlvm{}", std::process::id() % 100000);
    let file = st.join("lab.toml");
    std::fs::write(
        &file,
        format!(
            r#"name = "{name}"
[nodes.a]
netns = "{}"
[nodes.b]
netns = "{}"
[[links]]
endpoints = ["a:eth1", "b:eth1"]
ips = ["10.79.0.1/30", "10.79.0.2/30"]
delay = "20ms"
loss = "1%"
rate = "10mbit"
"#,
            a.name, b.name
        ),
    )
    .expect("lab file");
    let f = file.display().to_string();
    let has_netem = std::path::Path::new("/sys/module/sch_netem").exists()
        || a.exec(&["tc", "qdisc", "add", "dev", "lo", "root", "netem"])
            .status
            .success();
    let o = lab(&["lab", "up", &f], &st);
    if !has_netem {
        assert!(!o.status.success());
        let e = String::from_utf8_lossy(&o.stderr);
        assert!(e.contains("netem not available"), "{e}");
        assert_eq!(e.lines().count(), 1, "{e}");
        assert!(!a.out(&["-o", "link"]).contains("eth1"));
        assert!(!b.out(&["-o", "link"]).contains("eth1"));
        skip("this kernel has no netem: the qdisc itself is checked in the VM tier");
        let _ = std::fs::remove_dir_all(&st);
        return;
    }
    assert!(
        o.status.success(),
        "lab up: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    for ns in [&a, &b] {
        let q = ns.exec(&["tc", "qdisc", "show", "dev", "eth1"]);
        let q = String::from_utf8_lossy(&q.stdout);
        assert!(
            q.contains("netem") && q.contains("delay 20ms") && q.contains("loss 1%"),
            "{q}"
        );
        assert!(q.contains("rate 10Mbit"), "{q}");
    }
    assert!(ping(&a, "10.79.0.2"));
    let o = lab(&["lab", "down", &name], &st);
    assert!(o.status.success());
    assert!(!a.out(&["-o", "link"]).contains("eth1"));
    let _ = std::fs::remove_dir_all(&st);
}
