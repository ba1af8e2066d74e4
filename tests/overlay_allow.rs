//! Cross-host `--allow-from` between overlay networks (issue 19), on the
//! lab of tests/overlay.rs: real 3-member etcd, real agents, containers as
//! namespaces on three simulated hosts.
mod common;
mod overlay_lab;

use common::require_env;
use overlay_lab::*;

/// A listener in `ns` on `at` (kept open while the value lives; the
/// kernel completes handshakes without an accept).
fn listen(ns: &str, at: &str) -> std::net::TcpListener {
    in_ns(ns, || std::net::TcpListener::bind(at).expect("listen"))
}

fn has_link(lab: &Lab, i: usize, dev: &str) -> bool {
    run("ip", &["-n", &lab.host(i), "link", "show", "dev", dev])
        .status
        .success()
}

fn details(lab: &Lab, i: usize, dev: &str) -> String {
    ok(
        "ip",
        &["-d", "-n", &lab.host(i), "link", "show", "dev", dev],
    )
}

fn egress_table(lab: &Lab, i: usize) -> String {
    nft_list(lab, i, "table inet pipework_egress")
}

/// Networks ala, alb (`--allow-from ala`) and alc (joined to nothing),
/// one container each on hosts 0, 1 and 2. The hosts' own
/// `bridge-nf-call-iptables` is off, so only what the agent sets on its
/// bridges makes conntrack see the bridged half of a flow.
///
/// ala → alb across hosts: ping and TCP, the source kept; alb → ala: no
/// new connection (ping, TCP); alc isolated from both, both ways; egress
/// unchanged. Each host builds only the peers it routes for. Without the
/// bridge setting the replies are dropped (the check can fail); a
/// restarted agent puts it back. A network created later with
/// `--allow-from ala` is built where ala is used and goes with its
/// deletion; the devices of joined networks go with the last endpoint
/// that needed them, and their rules with them, also when the agent was
/// SIGKILLed meanwhile (the next one finishes).
#[test]
fn overlay_allow_from_across_hosts() {
    if !require_env() {
        return;
    }
    let mut lab = Lab::new("al", 121);
    for i in 0..3 {
        ok(
            "ip",
            &[
                "netns",
                "exec",
                &lab.host(i),
                "sysctl",
                "-qw",
                "net.bridge.bridge-nf-call-iptables=0",
            ],
        );
    }
    lab.pw_ok(0, &["overlay", "create", "ala", "--subnet", "10.61.0.0/24"]);
    let o = lab.pw(
        0,
        &[
            "overlay",
            "create",
            "alb",
            "--subnet",
            "10.62.0.0/24",
            "--allow-from",
            "ala",
        ],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        o.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    lab.pw_ok(0, &["overlay", "create", "alc", "--subnet", "10.63.0.0/24"]);
    let a = lab.container("a");
    let b = lab.container("b");
    let c = lab.container("c");
    lab.pw_ok(0, &["ala", &format!("netns:{a}"), "10.61.0.10/24"]);
    lab.pw_ok(1, &["alb", &format!("netns:{b}"), "10.62.0.20/24"]);
    lab.pw_ok(2, &["alc", &format!("netns:{c}"), "10.63.0.30/24"]);

    // h0 (ala's sender) builds alb; h1 (alb's) builds ala for its replies.
    lab.wait("h0 builds alb for ala's container", || {
        has_link(&lab, 0, "vx-alb")
    });
    lab.wait("h1 builds ala for alb's replies", || {
        has_link(&lab, 1, "vx-ala")
    });
    for (i, dev) in [(0, "ov-alb"), (1, "ov-ala"), (0, "ov-ala"), (1, "ov-alb")] {
        lab.wait("the bridge hands its frames to conntrack", || {
            let d = details(&lab, i, dev);
            d.contains("nf_call_iptables 1") && d.contains("nf_call_ip6tables 1")
        });
    }
    // Nothing is joined to alc: built on h2 only, never for a peer.
    for (i, dev) in [(0, "ov-alc"), (1, "ov-alc"), (2, "ov-ala"), (2, "ov-alb")] {
        assert!(!has_link(&lab, i, dev), "h{i} built {dev}");
    }
    assert!(!details(&lab, 2, "ov-alc").contains("nf_call_iptables 1"));
    lab.wait("h0 lets ala into alb", || {
        egress_table(&lab, 0)
            .contains("iifname \"ov-ala\" oifname \"ov-alb\" accept comment \"pipework:ov-alb\"")
    });

    // Routed, never masqueraded: b sees a's address.
    nft(&b, "add table ip pwvseen");
    nft(
        &b,
        "add chain ip pwvseen in { type filter hook input priority 0 ; }",
    );
    nft(
        &b,
        "add rule ip pwvseen in ip saddr 10.61.0.10 icmp type echo-request counter",
    );
    lab.wait("ala reaches alb across hosts", || {
        ping(&a, "10.62.0.20", 1).1 == 1
    });
    assert_eq!(ping(&a, "10.62.0.20", 3).1, 3, "ala → alb ping");
    let seen = nft(&b, "list table ip pwvseen");
    assert!(counted_first(&seen, "saddr 10.61.0.10 ") >= 4, "{seen}");
    let lb = listen(&b, "10.62.0.20:7000");
    let la = listen(&a, "10.61.0.10:7001");
    let lc = listen(&c, "10.63.0.30:7002");
    assert!(connects(&a, "10.62.0.20:7000"), "ala → alb TCP");
    assert!(connects(&a, "10.62.0.20:7000"), "ala → alb TCP again");

    // One way: alb never opens a connection to ala.
    assert_eq!(ping(&b, "10.61.0.10", 2).1, 0, "alb reached ala (ping)");
    assert!(!connects(&b, "10.61.0.10:7001"), "alb reached ala (TCP)");
    // alc meets neither, either way.
    for (from, to, port) in [
        (&a, "10.63.0.30", 7002),
        (&b, "10.63.0.30", 7002),
        (&c, "10.61.0.10", 7001),
        (&c, "10.62.0.20", 7000),
    ] {
        assert_eq!(ping(from, to, 1).1, 0, "{from} reached {to}");
        assert!(!connects(from, &format!("{to}:{port}")), "{from} → {to}");
    }
    // ... and the allowed way still works after all that.
    assert!(connects(&a, "10.62.0.20:7000"), "ala → alb TCP after");

    // Egress unchanged for a host that now has a peer's devices.
    internet(&mut lab, 1, None);
    lab.wait("egress from ala", || ping(&a, "198.51.100.1", 1).1 == 1);
    assert_eq!(ping(&a, "198.51.100.1", 2).1, 2, "egress from ala");
    let inet = format!("{}inet", lab.p);
    let li = listen(&inet, "198.51.100.1:7003");
    assert!(connects(&a, "198.51.100.1:7003"), "egress over TCP");
    drop(li);

    // Without the bridge setting on h1 (the agent stopped, so nothing
    // puts it back), h1's conntrack never sees a's SYN, which it only
    // bridges: b's SYN-ACK, routed there, is new to it and dropped.
    lab.kill_agent(1);
    let h1 = lab.host(1);
    ok(
        "ip",
        &[
            "-n",
            &h1,
            "link",
            "set",
            "ov-alb",
            "type",
            "bridge",
            "nf_call_iptables",
            "0",
        ],
    );
    assert!(
        !connects(&a, "10.62.0.20:7000"),
        "replies passed untracked: the check cannot fail"
    );
    assert_eq!(ping(&a, "10.62.0.20", 1).1, 0, "echo replies untracked");
    // (Started once the old lease is gone: one in its last second is
    // neither reused nor free.)
    lab.wait("h1's lease lapses", || {
        !lab.etcdctl(&["get", "/pipework/overlay/host/h1"])
            .contains("h1")
    });
    lab.start_agent(1);
    lab.wait("the restarted agent sets the bridge again", || {
        details(&lab, 1, "ov-alb").contains("nf_call_iptables 1")
    });
    lab.wait("ala → alb again", || connects(&a, "10.62.0.20:7000"));

    // A network created later with --allow-from ala: built where ala is
    // used (h0), nowhere else; gone with its deletion.
    lab.pw_ok(
        1,
        &[
            "overlay",
            "create",
            "ald",
            "--subnet",
            "10.64.0.0/24",
            "--allow-from",
            "ala",
        ],
    );
    lab.wait("h0 builds ald for ala", || has_link(&lab, 0, "vx-ald"));
    lab.wait("ald's rules on h0", || {
        egress_table(&lab, 0).contains("oifname \"ov-ald\" accept comment \"pipework:ov-ald\"")
    });
    assert!(!has_link(&lab, 1, "ov-ald") && !has_link(&lab, 2, "ov-ald"));
    lab.pw_ok(1, &["overlay", "delete", "ald"]);
    lab.wait("h0 removes ald with its deletion", || {
        !has_link(&lab, 0, "ov-ald") && !has_link(&lab, 0, "vx-ald")
    });
    lab.wait("and its rules", || {
        !egress_table(&lab, 0).contains("ov-ald")
    });

    // The devices of joined networks go with the last endpoint needing
    // them (a peer's, or their own), their rules with them.
    drop((la, lb, lc));
    lab.pw_ok(1, &["detach", &format!("netns:{b}")]);
    for dev in ["ov-ala", "vx-ala", "ov-alb", "vx-alb"] {
        lab.wait("h1 removes ala and alb with alb's last endpoint", || {
            !has_link(&lab, 1, dev)
        });
    }
    lab.wait("and their rules", || egress_table(&lab, 1).is_empty());
    assert!(has_link(&lab, 0, "ov-alb"), "h0's ala still routes to alb");
    // A SIGKILLed agent leaves them; the next one finishes.
    lab.kill_agent(0);
    lab.pw_ok(0, &["detach", &format!("netns:{a}")]);
    assert!(has_link(&lab, 0, "ov-alb") && has_link(&lab, 0, "ov-ala"));
    lab.wait("h0's lease lapses", || {
        !lab.etcdctl(&["get", "/pipework/overlay/host/h0"])
            .contains("h0")
    });
    lab.start_agent(0);
    for dev in ["ov-ala", "vx-ala", "ov-alb", "vx-alb"] {
        lab.wait("the next agent on h0 removes them", || {
            !has_link(&lab, 0, dev)
        });
    }
    lab.wait("and their rules", || egress_table(&lab, 0).is_empty());
    // alc, joined to nothing, keeps its devices until its deletion.
    lab.pw_ok(2, &["detach", &format!("netns:{c}")]);
    assert!(has_link(&lab, 2, "ov-alc"));
    for n in ["ala", "alb", "alc"] {
        lab.pw_ok(0, &["overlay", "delete", n]);
    }
    for i in 0..3 {
        lab.wait("the egress table goes with the last network", || {
            egress_table(&lab, i).is_empty()
        });
        for n in ["ala", "alb", "alc"] {
            lab.wait("every device goes with its network", || {
                !has_link(&lab, i, &format!("ov-{n}"))
            });
        }
    }
}
