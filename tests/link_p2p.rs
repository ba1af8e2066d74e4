//! `pipework link`: a veth pair straight between two guests (a real
//! container and a named namespace), or a guest and the host.
mod common;
use common::*;

#[test]
fn links_two_guests_and_the_host_and_undoes_it() {
    if !require_env() {
        return;
    }
    let before = host_state();
    let c = Container::run("pwl-c");
    let ns = Netns::new("pwln");
    let a = format!("{}:eth1", c.name);
    let b = format!("{}:eth2", ns.spec());
    let host_if = uniq("pwlh");
    pipework_ok(&[
        "link",
        &a,
        &b,
        "--mtu",
        "1400",
        "--ip-a",
        "10.77.0.1/30",
        "--ip-b",
        "10.77.0.2/30",
        "--mac-a",
        "U:pwl-a",
    ]);
    let l = c.exec_ok(&["ip", "-o", "link", "show", "eth1"]);
    assert!(l.contains("mtu 1400") && l.contains(",UP"), "{l}");
    let want_mac = {
        let o = ok("sh", &["-c", "echo pwl-a | md5sum"]);
        format!(
            "02:{}:{}:{}:{}:{}",
            &o[0..2],
            &o[2..4],
            &o[4..6],
            &o[6..8],
            &o[8..10]
        )
    };
    assert!(l.contains(&want_mac), "{l}");
    assert!(
        stdout(&ns.exec(&["ip", "-o", "addr", "show", "eth2"])).contains("10.77.0.2/30"),
        "address on the namespace end"
    );
    c.exec_ok(&["ping", "-c", "1", "-W", "2", "10.77.0.2"]);

    // Same again: nothing changes; the other end's name taken: refused.
    let o = pipework_ok(&["link", &a, &b, "--json"]);
    assert!(stdout(&o).contains("\"unchanged\": true"), "{}", stdout(&o));
    let o = pipework(&["link", &format!("{}:eth5", c.name), &b]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("eth2"), "{}", stderr(&o));
    assert!(c.exec(&["ip", "link", "show", "eth5"]).status.code() != Some(0));

    // A guest-to-host link.
    pipework_ok(&[
        "link",
        &format!("{}:eth3", c.name),
        &format!("host:{host_if}"),
        "--ip-b",
        "10.77.1.1/30",
        "--ip-a",
        "10.77.1.2/30",
    ]);
    assert!(ok("ip", &["-o", "addr", "show", &host_if]).contains("10.77.1.1/30"));
    c.exec_ok(&["ping", "-c", "1", "-W", "2", "10.77.1.1"]);

    // ls knows every end, from both sides.
    let ls = stdout(&pipework_ok(&["ls", "--json"]));
    let v: serde_json::Value = serde_json::from_str(&ls).expect("ls json");
    let p2p: Vec<&serde_json::Value> = v
        .as_array()
        .expect("array")
        .iter()
        .filter(|e| e["kind"] == "p2p")
        .filter(|e| {
            let g = e["guest"].as_str().unwrap_or_default();
            g == c.name || g == ns.name || e["interface"] == host_if.as_str()
        })
        .collect();
    assert_eq!(p2p.len(), 4, "{ls}");

    // detach from one side removes both ends.
    pipework_ok(&["detach", &c.name]);
    assert!(!stdout(&ns.exec(&["ip", "-o", "link"])).contains("eth2"));
    assert!(links_matching(&host_if).is_empty());
    drop(c);
    drop(ns);
    assert_same(&before, &host_state(), "host after link + detach");
}

#[test]
fn bad_ends_change_nothing() {
    if !require_env() {
        return;
    }
    let before = host_state();
    for (args, token) in [
        (vec!["link", "nocolon", "host:x"], "nocolon"),
        (
            vec!["link", "host:pwlq", "host:pwlq2", "--ip-a", "10.0.0.1"],
            "--ip-a",
        ),
        (vec!["link", "pwl-nosuch:eth1", "host:pwlq"], "pwl-nosuch"),
    ] {
        let o = pipework(&args);
        assert!(!o.status.success(), "{args:?}");
        let e = stderr(&o);
        assert_eq!(e.lines().count(), 1, "{e}");
        assert!(e.contains(token), "{e}");
    }
    assert_same(&before, &host_state(), "host after refused links");
}

#[test]
fn gc_removes_a_pair_a_dead_pipework_left_unnamed_between_two_guests() {
    if !require_env() {
        return;
    }
    let a = Netns::new("pwlga");
    let b = Netns::new("pwlgb");
    // What a pipework killed right after creating the pair leaves: both
    // ends under temporary names of its (now dead) pid.
    let dead = "3ffff1";
    ok(
        "ip",
        &[
            "link",
            "add",
            &format!("pw.{dead}.1"),
            "netns",
            &a.name,
            "type",
            "veth",
            "peer",
            "name",
            &format!("pw.{dead}.2"),
            "netns",
            &b.name,
        ],
    );
    // Not a pair of one pid: left alone.
    ok(
        "ip",
        &[
            "link",
            "add",
            "pw.3ffff2.1",
            "netns",
            &a.name,
            "type",
            "veth",
            "peer",
            "name",
            "pw.3ffff3.1",
            "netns",
            &b.name,
        ],
    );
    let o = stdout(&pipework_ok(&["gc", "--json"]));
    assert!(o.contains(&format!("pw.{dead}.")), "{o}");
    let la = stdout(&a.exec(&["ip", "-o", "link"]));
    let lb = stdout(&b.exec(&["ip", "-o", "link"]));
    assert!(!la.contains(&format!("pw.{dead}")), "{la}");
    assert!(!lb.contains(&format!("pw.{dead}")), "{lb}");
    assert!(
        la.contains("pw.3ffff2.1") && lb.contains("pw.3ffff3.1"),
        "{la}{lb}"
    );
}

#[test]
fn a_link_killed_at_any_netlink_request_is_finished_off_by_gc() {
    if !require_env() {
        return;
    }
    let a = Netns::new("pwlka");
    let b = Netns::new("pwlkb");
    let (ea, eb) = (format!("{}:eth1", a.spec()), format!("{}:eth1", b.spec()));
    // strace kills pipework at the entry of its K-th sendto (every netlink
    // request), for K = 1, 2, … until a run gets through.
    for k in 1.. {
        let o = sh(
            "strace",
            &[
                "-f",
                "-o",
                "/dev/null",
                "-e",
                &format!("inject=sendto:signal=SIGKILL:when={k}"),
                BIN,
                "link",
                &ea,
                &eb,
                "--ip-a",
                "10.78.0.1/30",
                "--ip-b",
                "10.78.0.2/30",
            ],
        );
        if o.status.success() {
            assert!(k > 5, "never killed: strace injection not working?");
            break;
        }
        assert!(k < 100, "pipework link still killed after {k} requests");
        pipework_ok(&["gc"]);
        assert!(
            a.links_but_lo().is_empty(),
            "kill #{k}: {:?}",
            a.links_but_lo()
        );
        assert!(
            b.links_but_lo().is_empty(),
            "kill #{k}: {:?}",
            b.links_but_lo()
        );
    }
    assert!(stdout(&a.exec(&["ip", "-o", "addr"])).contains("10.78.0.1/30"));
    pipework_ok(&["detach", &a.spec()]);
    assert!(b.links_but_lo().is_empty());
}
