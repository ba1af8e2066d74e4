//! Limits of dual-stack overlay networks, on the three-host lab of
//! tests/overlay_lab: an IPv6-only endpoint's MAC (the address's last 32
//! bits) claimed atomically with its address; a dual-stack CNI record that
//! must fit the 255-byte link alias; `--mtu auto` under IPv6's 1280.
mod common;
mod overlay_lab;

use common::{BIN, require_env};
use overlay_lab::*;
use std::io::Write;
use std::process::{Command, Stdio};

fn keys(lab: &Lab, prefix: &str) -> Vec<String> {
    lab.etcdctl(&["get", "--prefix", "--keys-only", prefix])
        .lines()
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect()
}

/// pipework on host `i`, started now (not waited for).
fn spawn(lab: &Lab, i: usize, args: &[&str]) -> std::process::Child {
    Command::new("ip")
        .args(["netns", "exec", &lab.host(i), BIN])
        .args(args)
        .env("PIPEWORK_ETCD", &lab.urls)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("pipework")
}

const MACS: &str = "/pipework/overlay/mac/six/";

/// Two hosts attach, at the same moment, static IPv6 addresses whose last
/// 32 bits match (so would their MACs): exactly one wins, the other is
/// refused in one line naming its address and the MAC. A reservation
/// (its host cut off, its endpoint lapsed) keeps the MAC too; release,
/// `overlay host rm` and network delete free the MAC keys.
#[test]
fn overlay_ipv6_only_macs_are_claimed_with_the_address() {
    if !require_env() {
        return;
    }
    let mut lab = Lab::new("6d", 164);
    lab.pw_ok(0, &["overlay", "create", "six", "--subnet6", "fd65::/64"]);
    let mut winners = Vec::new();
    let mut losers = Vec::new();
    for r in 0..4u32 {
        let (ca, cb) = (
            lab.container(&format!("a{r}")),
            lab.container(&format!("b{r}")),
        );
        let (ia, ib) = (
            format!("fd65::1:0:0:{}", r + 5),
            format!("fd65::2:0:0:{}", r + 5),
        );
        let mac = format!("02:76:00:00:00:{:02x}", r + 5);
        let pa = spawn(
            &lab,
            1,
            &["six", &format!("netns:{ca}"), &format!("{ia}/64")],
        );
        let pb = spawn(
            &lab,
            2,
            &["six", &format!("netns:{cb}"), &format!("{ib}/64")],
        );
        let oa = pa.wait_with_output().expect("a");
        let ob = pb.wait_with_output().expect("b");
        assert!(
            oa.status.success() != ob.status.success(),
            "round {r}: exactly one must win: {:?} / {:?}",
            String::from_utf8_lossy(&oa.stderr),
            String::from_utf8_lossy(&ob.stderr)
        );
        let (win, lose, lo, lost_ip) = if oa.status.success() {
            ((1, ca, ia), (2, cb, ib.clone()), ob, ib)
        } else {
            ((2, cb, ib), (1, ca, ia.clone()), oa, ia)
        };
        let e = String::from_utf8_lossy(&lo.stderr);
        assert_eq!(e.trim().lines().count(), 1, "{e}");
        assert!(e.contains(&lost_ip) && e.contains(&mac), "{e}");
        assert!(links(&lose.1).lines().all(|l| !l.contains("eth1")));
        winners.push(win);
        losers.push(lose);
    }
    // One MAC key per winner; the losers left nothing in etcd.
    assert_eq!(keys(&lab, MACS).len(), 4, "{:?}", keys(&lab, MACS));
    for (_, _, ip) in &losers {
        let left = keys(&lab, "/pipework/overlay/");
        assert!(!left.iter().any(|k| k.ends_with(ip.as_str())), "{left:?}");
    }
    // Release frees the MAC: the loser's address now attaches.
    let (h, c, _) = &winners[0];
    lab.pw_ok(*h, &["detach", &format!("netns:{c}")]);
    assert_eq!(keys(&lab, MACS).len(), 3);
    let (h, c, ip) = &losers[0];
    lab.pw_ok(*h, &["six", &format!("netns:{c}"), &format!("{ip}/64")]);
    lab.pw_ok(*h, &["detach", &format!("netns:{c}")]);
    assert_eq!(keys(&lab, MACS).len(), 3);

    // Host 1 cut off past its lease: its endpoints lapse, its
    // reservations (and MACs) stay; the clashing address is still refused.
    // (winners[0] was detached above.)
    let on2: Vec<_> = winners[1..].iter().filter(|w| w.0 == 2).cloned().collect();
    let c = lab.container("extra");
    let ip1 = "fd65::1:0:0:20";
    lab.pw_ok(1, &["six", &format!("netns:{c}"), &format!("{ip1}/64")]);
    lab.kill_agent(1);
    lab.wait("host 1's endpoints lapse", || {
        !keys(&lab, "/pipework/overlay/ep/six/")
            .iter()
            .any(|k| k.ends_with(ip1))
    });
    assert!(
        keys(&lab, "/pipework/overlay/resv/six/")
            .iter()
            .any(|k| k.ends_with(ip1))
    );
    let d = lab.container("clash");
    let o = lab.pw(2, &["six", &format!("netns:{d}"), "fd65::3:0:0:20/64"]);
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success(),
        "a reserved address's MAC was given twice"
    );
    assert!(e.contains("fd65::3:0:0:20") && e.contains(ip1), "{e}");
    assert_eq!(e.trim().lines().count(), 1, "{e}");
    // `overlay host rm` releases host 1's MACs with its addresses.
    lab.wait("host 1 unregistered", || {
        keys(&lab, "/pipework/overlay/host/h1").is_empty()
    });
    lab.pw_ok(0, &["overlay", "host", "rm", "h1"]);
    let left = keys(&lab, MACS);
    assert_eq!(left.len(), on2.len(), "{left:?}");
    lab.pw_ok(2, &["six", &format!("netns:{d}"), "fd65::3:0:0:20/64"]);
    lab.pw_ok(2, &["detach", &format!("netns:{d}")]);
    // A release that predates MAC keys (an older agent's: endpoint and
    // reservation only) leaves the MAC key: the agent's sweep drops it.
    let o = lab.container("old");
    let ip2 = "fd65::2:0:0:30";
    lab.pw_ok(2, &["six", &format!("netns:{o}"), &format!("{ip2}/64")]);
    let mk = format!("{MACS}02:76:00:00:00:30");
    assert_eq!(keys(&lab, &mk), vec![mk.clone()]);
    lab.etcdctl(&["del", &format!("/pipework/overlay/ep/six/{ip2}")]);
    lab.etcdctl(&["del", &format!("/pipework/overlay/resv/six/{ip2}")]);
    lab.wait("the orphaned MAC key is swept", || {
        keys(&lab, &mk).is_empty()
    });
    lab.pw_ok(2, &["detach", &format!("netns:{o}")]);
    // Host 1's agent back: it publishes its containers again from their
    // records, as endpoints written before MAC keys existed are, and
    // takes their MAC keys with them (host rm had dropped them).
    let on1: Vec<_> = winners[1..].iter().filter(|w| w.0 == 1).cloned().collect();
    lab.start_agent(1);
    let want = on1.len() + on2.len() + 1;
    lab.wait("host 1's MAC keys are back", || {
        keys(&lab, MACS).len() == want
    });
    // Detach releases every MAC key; delete leaves none.
    for (h, c, _) in on1.iter().chain(&on2) {
        lab.pw_ok(*h, &["detach", &format!("netns:{c}")]);
    }
    lab.pw_ok(1, &["detach", &format!("netns:{c}")]);
    assert!(keys(&lab, MACS).is_empty(), "{:?}", keys(&lab, MACS));
    lab.pw_ok(0, &["overlay", "delete", "six"]);
    assert!(keys(&lab, "/pipework/overlay/mac/").is_empty());
}

/// CNI ADD on a dual-stack network with a 64-hex container ID (what
/// containerd passes): its link record, both addresses in it, fits the
/// 255-byte alias, the ID recorded in 43 bytes (src/cni/tag.rs), even with
/// a Kubernetes-like network name; CHECK passes, `ls` shows the full ID,
/// DEL cleans. A record too long (a 64-byte ID that is not hex keeps its
/// 64 bytes) is refused in one line before anything is built, its
/// addresses given back.
#[test]
fn overlay_dual_cni_with_a_64_hex_container_id() {
    if !require_env() {
        return;
    }
    let mut lab = Lab::new("6e", 165);
    for (n, s4, s6) in [
        ("dual", "10.66.0.0/24", "fd66::/64"),
        ("k8s-pod-net", "10.67.0.0/24", "fd67::/64"),
    ] {
        lab.pw_ok(
            0,
            &["overlay", "create", n, "--subnet", s4, "--subnet6", s6],
        );
    }
    let c = lab.container("c");
    let hex = format!("{:064x}", u128::from(std::process::id()) << 64 | 0xabcdef);
    let cni = |verb: &str, net: &str, cid: &str, prev: Option<&serde_json::Value>| {
        let mut conf = serde_json::json!({"cniVersion": "1.0.0", "name": net, "type": "pipework", "mode": "overlay"});
        if let Some(p) = prev {
            conf["prevResult"] = p.clone();
        }
        let mut ch = Command::new("ip")
            .args(["netns", "exec", &lab.host(1), BIN])
            .env("CNI_COMMAND", verb)
            .env("CNI_CONTAINERID", cid)
            .env("CNI_NETNS", format!("/run/netns/{c}"))
            .env("CNI_IFNAME", "eth0")
            .env("CNI_PATH", "/usr/lib/cni")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cni");
        if let Some(mut i) = ch.stdin.take() {
            i.write_all(conf.to_string().as_bytes()).expect("stdin");
        }
        ch.wait_with_output().expect("cni")
    };
    for (net, v4, v6) in [
        ("dual", "10.66.0.2/24", "fd66::2/64"),
        ("k8s-pod-net", "10.67.0.2/24", "fd67::2/64"),
    ] {
        let o = cni("ADD", net, &hex, None);
        let out = String::from_utf8_lossy(&o.stdout).into_owned();
        assert!(
            o.status.success(),
            "{net}: {out}{}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(out.contains(v4) && out.contains(v6), "{out}");
        let res: serde_json::Value = serde_json::from_str(&out).expect("result");
        let l = ok("ip", &["-n", &c, "-o", "link", "show", "dev", "eth0"]);
        assert!(l.contains("alias pipework "), "{l}");
        assert!(l.contains(&format!("cnc:{net}/")), "{l}");
        let o = cni("CHECK", net, &hex, Some(&res));
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
        let ls: serde_json::Value =
            serde_json::from_str(&lab.pw_ok(1, &["ls", "--json"])).expect("ls --json");
        let guest = format!("cni:{net}/{hex}/eth0");
        let e = ls
            .as_array()
            .and_then(|a| a.iter().find(|e| e["guest"] == guest.as_str()))
            .unwrap_or_else(|| panic!("ls lacks {guest}: {ls}"));
        assert_eq!(e["container_id"], &hex[..12], "{e}");
        let o = cni("DEL", net, &hex, Some(&res));
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert!(!links(&c).contains("eth0"), "{}", links(&c));
        assert!(keys(&lab, "/pipework/overlay/ep/").is_empty());
        assert!(keys(&lab, "/pipework/overlay/resv/").is_empty());
    }

    // Too long: one line naming the network, nothing left in etcd or the
    // container.
    let upper = hex.to_ascii_uppercase();
    let o = cni("ADD", "k8s-pod-net", &upper, None);
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(!o.status.success(), "{out}");
    for w in ["k8s-pod-net", "255", "dual-stack", "(64 bytes)"] {
        assert!(out.contains(w), "{w}: {out}");
    }
    let v: serde_json::Value = serde_json::from_str(&out).expect("error json");
    assert_eq!(
        v["msg"].as_str().map(|m| m.lines().count()),
        Some(1),
        "{out}"
    );
    assert!(!links(&c).contains("eth0"), "{}", links(&c));
    assert!(keys(&lab, "/pipework/overlay/ep/").is_empty());
    assert!(keys(&lab, "/pipework/overlay/resv/").is_empty());
    lab.pw_ok(0, &["overlay", "delete", "dual"]);
    lab.pw_ok(0, &["overlay", "delete", "k8s-pod-net"]);
}

/// `--mtu auto` with `--subnet6` over an underlay too small for IPv6's
/// 1280: refused in one line naming `--mtu`, the value and the host,
/// nothing written; the same underlay without IPv6 is fine.
#[test]
fn overlay_auto_mtu_under_1280_refused_with_ipv6() {
    if !require_env() {
        return;
    }
    let mut lab = Lab::new("6f", 166);
    // Host 2's underlay carries 1300: 1250 after VXLAN's 50 bytes.
    ok(
        "ip",
        &["-n", &lab.host(2), "link", "set", "eth0", "mtu", "1300"],
    );
    lab.kill_agent(2);
    lab.spawn_agent(2);
    lab.wait("host 2 registers its 1300 underlay", || {
        lab.etcdctl(&["get", "/pipework/overlay/host/h2"])
            .contains("\"underlay_mtu\":1300")
    });
    let o = lab.pw(
        0,
        &[
            "overlay",
            "create",
            "small",
            "--subnet",
            "10.68.0.0/24",
            "--subnet6",
            "fd68::/64",
        ],
    );
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "created with an MTU under 1280");
    assert_eq!(e.trim().lines().count(), 1, "{e}");
    for w in ["--mtu", "1250", "h2", "--subnet6"] {
        assert!(e.contains(w), "{w}: {e}");
    }
    assert!(keys(&lab, "/pipework/overlay/net/").is_empty());
    assert!(keys(&lab, "/pipework/overlay/vni/").is_empty());
    let out = lab.pw_ok(
        0,
        &["overlay", "create", "small", "--subnet", "10.68.0.0/24"],
    );
    assert!(out.contains("mtu 1250"), "{out}");
    lab.pw_ok(0, &["overlay", "delete", "small"]);
}
