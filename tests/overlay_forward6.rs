//! IPv6 of overlay networks on hosts whose ip6tables FORWARD drops
//! (Docker with `ip6tables: true`): the agent's accepts in ip6tables'
//! DOCKER-USER and in a native ip6 forward chain that drops, on the
//! three-host lab of tests/overlay_lab (real etcd, agents, VXLAN).
mod common;
mod overlay_lab;

use common::{BIN, require_env};
use overlay_lab::*;

/// Our accepts on host `ns`, as `iptables -S` / `ip6tables -S` list them.
fn accepts(tool: &str, ns: &str) -> Vec<String> {
    let o = xt(tool, ns, &["-S"]);
    assert!(o.status.success(), "{tool} -S: {o:?}");
    egress_accepts(&o)
}

fn v6(ns: &str) -> Vec<String> {
    accepts("ip6tables", ns)
}

/// Our accepts in h1's native ip6 forward chain.
fn native6(ns: &str) -> usize {
    nft(ns, "list chain ip6 pwf6 pwfwd")
        .matches("comment \"pipework-egress:")
        .count()
}

/// Delete our accept for ov-dual whose line holds `what` from h1's
/// native ip6 forward chain.
fn delete_native(ns: &str, what: &str) {
    let listed = nft(ns, "-a list chain ip6 pwf6 pwfwd");
    let handle = (listed.lines())
        .find(|l| l.contains("pipework-egress:ov-dual") && l.contains(what))
        .and_then(|l| l.rsplit("# handle ").next())
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|| panic!("no accept of ours with {what}: {listed}"));
    nft(ns, &format!("delete rule ip6 pwf6 pwfwd handle {handle}"));
}

/// `pipework doctor` on host `i` from container `from` to `to`: the
/// forward-accepts hop for `fam` (it must be there: the check ran) and
/// the `overlay-forward-drop` causes.
fn doctor_fwd(
    lab: &Lab,
    i: usize,
    from: &str,
    to: &str,
    fam: &str,
) -> (bool, Vec<serde_json::Value>) {
    let o = lab.pw(i, &["doctor", &format!("netns:{from}"), to, "--json"]);
    let d = String::from_utf8_lossy(&o.stdout).into_owned();
    let v: serde_json::Value = serde_json::from_str(&d).unwrap_or_else(|e| {
        panic!(
            "doctor json ({e}): {d}{}",
            String::from_utf8_lossy(&o.stderr)
        )
    });
    let name = format!("overlay dual forward accepts ({fam})");
    let hop = (v["hops"].as_array().into_iter().flatten())
        .find(|h| h["hop"] == name.as_str())
        .unwrap_or_else(|| panic!("no hop {name}: {d}"));
    let causes = (v["causes"].as_array().into_iter().flatten())
        .filter(|c| c["kind"] == "overlay-forward-drop")
        .cloned()
        .collect();
    (hop["ok"] == true, causes)
}

/// Host `i`'s killed agent's lease expired (its name free for the next).
fn gone(lab: &Lab, i: usize) {
    let key = format!("/pipework/overlay/host/h{i}");
    lab.wait("the killed agent's lease", || {
        !lab.etcdctl(&["get", &key]).contains(&key)
    });
}

/// A dual-stack network on hosts whose ip6tables (and iptables) FORWARD
/// drops, Docker's way: the agent accepts its IPv6 traffic in ip6tables'
/// DOCKER-USER (comment pipework-egress:BR) and in a native ip6 chain
/// that drops; an IPv4-only network gets none there. IPv6 egress and
/// cross-host IPv6 work; without our accepts (deleted by hand, the agent
/// stopped) IPv6 egress and cross-host IPv6 are dropped while IPv4 still
/// flows; the next agent puts them back; `gc` removes a killed agent's
/// leftovers on a host with no VXLAN device; they go with the networks.
#[test]
fn overlay_ipv6_accepts_with_ip6tables_forward_drop() {
    if !require_env() {
        return;
    }
    let mut lab = Lab::new("f6", 164);
    for i in 0..3 {
        docker_forward(&lab.host(i), &["iptables", "ip6tables"]);
    }
    let h0 = lab.host(0);
    let h1 = lab.host(1);
    let h2 = lab.host(2);
    // Bridged IPv6 goes through ip6tables here (else the test proves
    // nothing about the bridged, cross-host part).
    let nf = ok(
        "ip",
        &[
            "netns",
            "exec",
            &h0,
            "cat",
            "/proc/sys/net/bridge/bridge-nf-call-ip6tables",
        ],
    );
    assert_eq!(nf.trim(), "1");
    // h1 also has a native ip6 forward chain that drops.
    nft(&h1, "add table ip6 pwf6");
    nft(
        &h1,
        "add chain ip6 pwf6 pwfwd { type filter hook forward priority 0 ; policy drop ; }",
    );
    lab.pw_ok(
        0,
        &[
            "overlay",
            "create",
            "dual",
            "--subnet",
            "10.64.0.0/24",
            "--subnet6",
            "fd64::/64",
        ],
    );
    lab.pw_ok(
        0,
        &["overlay", "create", "four", "--subnet", "10.65.0.0/24"],
    );
    let c0 = lab.container("c0");
    let c1 = lab.container("c1");
    let c2 = lab.container("c2");
    let dual = |ip4: &str, ip6: &str, c: &str| {
        [
            "dual".to_string(),
            format!("netns:{c}"),
            ip4.to_string(),
            "--ip".to_string(),
            ip6.to_string(),
        ]
    };
    let a0 = dual("10.64.0.10/24", "fd64::10/64", &c0);
    let a1 = dual("10.64.0.11/24", "fd64::11/64", &c1);
    lab.pw_ok(0, &a0.iter().map(String::as_str).collect::<Vec<_>>());
    lab.pw_ok(1, &a1.iter().map(String::as_str).collect::<Vec<_>>());
    lab.pw_ok(0, &["four", &format!("netns:{c2}"), "10.65.0.10/24"]);

    // Cross-host IPv6: bridged within ov-dual on both hosts, through
    // ip6tables' FORWARD drop on both and h1's native ip6 chain.
    lab.wait("c0 reaches c1 over IPv6", || {
        ping(&c0, "fd64::11", 1).1 == 1
    });
    assert_eq!(ping(&c0, "fd64::11", 3), (3, 3));
    assert_eq!(ping(&c1, "fd64::10", 3), (3, 3));
    lab.wait("h0's IPv6 accepts", || v6(&h0).len() == 3);
    let s0 = v6(&h0);
    for want in [
        "-A DOCKER-USER -i ov-dual -o ov-dual -m comment --comment \"pipework-egress:ov-dual\" -j ACCEPT",
        "-A DOCKER-USER -i ov-dual ! -o ov-+ -m comment --comment \"pipework-egress:ov-dual\" -j ACCEPT",
        "-A DOCKER-USER -o ov-dual -m conntrack --ctstate RELATED,ESTABLISHED -m comment --comment \"pipework-egress:ov-dual\" -j ACCEPT",
    ] {
        assert!(s0.iter().any(|l| l == want), "{want} not in {s0:#?}");
    }
    // doctor finds nothing missing while our accepts are in place (h1:
    // ip6tables and its native ip6 chain).
    for (i, from, to, fam) in [
        (0, &c0, "fd64::11", "IPv6"),
        (0, &c0, "10.64.0.11", "IPv4"),
        (1, &c1, "fd64::10", "IPv6"),
    ] {
        let (ok, causes) = doctor_fwd(&lab, i, from, to, fam);
        assert!(ok && causes.is_empty(), "h{i} {fam}: {causes:?}");
    }
    // The IPv4-only network only in iptables: three each there.
    let s4 = accepts("iptables", &h0);
    assert_eq!(s4.len(), 6, "{s4:#?}");
    assert!(s4.iter().any(|l| l.contains("pipework-egress:ov-four")));
    assert_eq!(v6(&h1).len(), 3, "{:#?}", v6(&h1));
    let fw = nft(&h1, "list chain ip6 pwf6 pwfwd");
    assert_eq!(native6(&h1), 3, "{fw}");
    for want in [
        "iifname \"ov-dual\" oifname \"ov-dual\" accept comment \"pipework-egress:ov-dual\"",
        "oifname \"ov-dual\" ct state established,related accept comment \"pipework-egress:ov-dual\"",
    ] {
        assert!(fw.contains(want), "{want} not in {fw}");
    }
    assert!(v6(&h2).is_empty(), "no network on h2");

    // IPv6 egress, masqueraded, replies back through both drops.
    let inet = internet6(&mut lab, "fd64::/64");
    lab.wait("IPv6 egress from h0", || {
        ping(&c0, "2001:db8:77::1", 1).1 == 1
    });
    lab.wait("IPv6 egress from h1", || {
        ping(&c1, "2001:db8:77::1", 1).1 == 1
    });
    assert_eq!(ping(&c0, "2001:db8:77::1", 2).1, 2, "steady egress h0");
    assert_eq!(ping(&c1, "2001:db8:77::1", 2).1, 2, "steady egress h1");
    let seen = nft(&inet, "list table ip6 pwvseen");
    assert!(counted(&seen, "saddr fd00:164::1 ") >= 1, "{seen}");
    assert!(counted(&seen, "saddr fd00:164::2 ") >= 1, "{seen}");
    assert_eq!(counted(&seen, "fd64::/64"), 0, "{seen}");

    // Without our accepts the IPv6 traffic is dropped (the test can
    // fail): the agent stopped, its ip6tables rules deleted by hand.
    // h1's agent stopped too, one of its accepts in the native chain gone.
    lab.kill_agent(0);
    lab.kill_agent(1);
    delete_native(&h1, "ct state");
    assert_eq!(native6(&h1), 2);
    for l in v6(&h0) {
        let mut d: Vec<String> = l.split_whitespace().map(|w| w.replace('"', "")).collect();
        d[0] = "-D".into();
        let o = xt(
            "ip6tables",
            &h0,
            &d.iter().map(String::as_str).collect::<Vec<_>>(),
        );
        assert!(o.status.success(), "{d:?}: {o:?}");
    }
    assert!(v6(&h0).is_empty());
    assert_eq!(ping(&c0, "2001:db8:77::1", 2).1, 0, "IPv6 egress dropped");
    assert_eq!(ping(&c1, "fd64::10", 2).1, 0, "cross-host IPv6 dropped");
    // IPv4 keeps its accepts, and flows.
    assert_eq!(ping(&c1, "10.64.0.10", 2).1, 2, "IPv4 unaffected");
    // doctor names the missing accept c0 -> c1 needs (within ov-dual),
    // its fix, and the stopped agent, but not the egress and reply
    // accepts (not on that path); IPv4 on h0 is not reported (its
    // accepts are there).
    let (ok, causes) = doctor_fwd(&lab, 0, &c0, "fd64::11", "IPv6");
    assert!(!ok && causes.len() == 1, "{causes:?}");
    let c = causes[0].to_string();
    let within6 = "ip6tables -I DOCKER-USER -i ov-dual -o ov-dual -m comment --comment pipework-egress:ov-dual -j ACCEPT";
    assert!(c.contains(within6), "{within6} not in {c}");
    assert_eq!(causes[0]["fix"], within6, "{c}");
    assert!(!c.contains("! -o ov-+") && !c.contains("ctstate"), "{c}");
    assert!(c.contains("agent is not running"), "{c}");
    let (ok, causes) = doctor_fwd(&lab, 0, &c0, "10.64.0.11", "IPv4");
    assert!(ok && causes.is_empty(), "{causes:?}");
    // h1: its native chain lacks only the reply accept, which c1 -> c0
    // does not need: not reported; without the accept within ov-dual too,
    // reported.
    let (ok, causes) = doctor_fwd(&lab, 1, &c1, "fd64::10", "IPv6");
    assert!(ok && causes.is_empty(), "{causes:?}");
    delete_native(&h1, "iifname \"ov-dual\" oifname \"ov-dual\" accept");
    assert_eq!(native6(&h1), 1);
    let (ok, causes) = doctor_fwd(&lab, 1, &c1, "fd64::10", "IPv6");
    assert!(!ok && causes.len() == 1, "{causes:?}");
    let c = causes[0].to_string();
    assert!(
        c.contains("nftables chain `ip6 pwf6 pwfwd` lacks ours (comment pipework-egress:ov-dual)"),
        "{c}"
    );
    // IPv4: the egress accept gone from iptables' DOCKER-USER on h0:
    // c0 -> c1 does not need it, doctor reports no drop.
    let o = xt_v("iptables", &h0, &overlay_accept("-D", "dual", true));
    assert!(o.status.success(), "{o:?}");
    let (ok, causes) = doctor_fwd(&lab, 0, &c0, "10.64.0.11", "IPv4");
    assert!(ok && causes.is_empty(), "{causes:?}");
    // The accept within ov-dual gone too: doctor names it alone, and its
    // fix, as given, heals it (the egress one still missing).
    let within = overlay_accept("-D", "dual", false);
    let o = xt_v("iptables", &h0, &within);
    assert!(o.status.success(), "{o:?}");
    let (ok, causes) = doctor_fwd(&lab, 0, &c0, "10.64.0.11", "IPv4");
    assert!(!ok && causes.len() == 1, "{causes:?}");
    let fix = causes[0]["fix"].as_str().unwrap_or_default().to_string();
    assert_eq!(fix, format!("iptables -I {}", within[1..].join(" ")));
    let words: Vec<&str> = fix.split(' ').collect();
    let o = xt("iptables", &h0, &words[1..]);
    assert!(o.status.success(), "{o:?}");
    let (ok, causes) = doctor_fwd(&lab, 0, &c0, "10.64.0.11", "IPv4");
    assert!(ok && causes.is_empty(), "{causes:?}");
    // The next agents put them back, once.
    gone(&lab, 0);
    gone(&lab, 1);
    lab.start_agent(0);
    lab.start_agent(1);
    lab.wait("h1's agent re-makes its native accepts", || {
        native6(&h1) == 3
    });
    lab.wait("the next agent re-adds the IPv6 accepts", || {
        v6(&h0).len() == 3
    });
    lab.wait("IPv6 egress again", || {
        ping(&c0, "2001:db8:77::1", 1).1 == 1
    });
    // Both agents restarted: each resyncs its peers before the path is
    // whole again.
    lab.wait("cross-host IPv6 again", || ping(&c1, "fd64::10", 1).1 == 1);
    assert_eq!(ping(&c1, "fd64::10", 2).1, 2, "steady cross-host IPv6");
    assert_eq!(v6(&h0).len(), 3, "{:#?}", v6(&h0));

    // A killed agent's leftover on a host with no VXLAN device: gc (a
    // dry run changes nothing); a restarted agent removes them too.
    lab.kill_agent(2);
    let stale = overlay_accept("-I", "gone", false);
    assert!(xt_v("ip6tables", &h2, &stale).status.success());
    let dry = lab.pw_ok(2, &["gc", "--dry-run"]);
    assert_eq!(v6(&h2).len(), 1, "a dry run changes nothing: {dry}");
    lab.pw_ok(2, &["gc"]);
    assert!(v6(&h2).is_empty(), "{:#?}", v6(&h2));
    assert!(xt_v("ip6tables", &h2, &stale).status.success());
    gone(&lab, 2);
    lab.start_agent(2);
    lab.wait("the next agent removes leftovers", || v6(&h2).is_empty());

    // A network joined to nothing keeps its devices (and so its accepts)
    // until it is deleted: then they go on every host, native ones too.
    lab.pw_ok(1, &["detach", &format!("netns:{c1}")]);
    for c in [&c0, &c2] {
        lab.pw_ok(0, &["detach", &format!("netns:{c}")]);
    }
    for n in ["dual", "four"] {
        lab.pw_ok(0, &["overlay", "delete", n]);
    }
    for h in [&h0, &h1] {
        lab.wait("the accepts go with the networks", || {
            v6(h).is_empty() && accepts("iptables", h).is_empty()
        });
    }
    assert_eq!(native6(&h1), 0, "{}", nft(&h1, "list chain ip6 pwf6 pwfwd"));
    // dockerd's own chain and policy are left as they were.
    let s = String::from_utf8_lossy(&xt("ip6tables", &h0, &["-S"]).stdout).into_owned();
    assert!(
        s.contains("-P FORWARD DROP") && s.contains("-A FORWARD -j DOCKER-USER"),
        "{s}"
    );
}

/// Host `i`'s agent restarted where it finds no iptables or ip6tables
/// binary (a tmpfs over /usr/sbin in a mount namespace of its own).
fn hidden_agent(lab: &mut Lab, i: usize) {
    lab.kill_agent(i);
    gone(lab, i);
    let log = lab.agent_log_file(i);
    let name = format!("h{i}");
    let c = std::process::Command::new("ip")
        .args(["netns", "exec", &lab.host(i), "unshare", "-m", "sh", "-c"])
        .arg(
            "mount -t tmpfs pwn-no-sbin /usr/sbin && \
             exec \"$0\" overlay agent --underlay eth0 --name \"$1\" --ttl 3",
        )
        .args([BIN, &name])
        .env("PIPEWORK_ETCD", &lab.urls)
        .env("PIPEWORK_OVERLAY_CHECK", "2")
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .expect("agent");
    lab.agents[i] = Some(c);
    let key = format!("/pipework/overlay/host/{name}");
    lab.wait("the hidden agent's registration", || {
        lab.etcdctl(&["get", &key]).contains(&key)
    });
}

fn agent_log(lab: &Lab, i: usize) -> String {
    std::fs::read_to_string(format!("/tmp/{}-agent{i}.log", lab.p)).unwrap_or_default()
}

/// With no ip6tables binary the agent reads ip6tables' FORWARD policy
/// from the kernel: iptables-nft's `ip6 filter FORWARD` chain (h0) or
/// legacy x_tables through an AF_INET6 getsockopt (h1). Where it drops,
/// the agent says it cannot add the IPv6 accepts (and retries); where
/// nothing drops (h2) it says nothing. Only ip6tables drops here, so the
/// IPv4 side has nothing to add and the IPv6 answer is what is logged.
#[test]
fn overlay_ip6tables_forward_drop_found_without_the_binary() {
    if !require_env() {
        return;
    }
    let legacy = run("sh", &["-c", "command -v ip6tables-legacy"])
        .status
        .success();
    let mut lab = Lab::new("g6", 165);
    let o = xt("ip6tables", &lab.host(0), &["-P", "FORWARD", "DROP"]);
    assert!(o.status.success(), "{o:?}");
    if legacy {
        let o = xt("ip6tables-legacy", &lab.host(1), &["-P", "FORWARD", "DROP"]);
        assert!(o.status.success(), "{o:?}");
    }
    lab.pw_ok(
        0,
        &[
            "overlay",
            "create",
            "nobin",
            "--subnet",
            "10.66.0.0/24",
            "--subnet6",
            "fd66::/64",
        ],
    );
    let hosts: Vec<usize> = if legacy { vec![0, 1, 2] } else { vec![0, 2] };
    let mut cs = Vec::new();
    for &i in &hosts {
        hidden_agent(&mut lab, i);
        let c = lab.container(&format!("c{i}"));
        lab.pw_ok(
            i,
            &[
                "nobin",
                &format!("netns:{c}"),
                &format!("10.66.0.{}/24", 10 + i),
                "--ip",
                &format!("fd66::{}/64", 10 + i),
            ],
        );
        cs.push((i, c));
    }
    let cause = "ip6tables accepts for routed networks: there is no ip6tables binary";
    for &i in hosts.iter().filter(|&&i| i != 2) {
        lab.wait("the agent names the missing ip6tables", || {
            agent_log(&lab, i).contains(cause)
        });
    }
    // h2's agent built the network (the egress table is there) and had
    // nothing to say about ip6tables, nor iptables.
    lab.wait("h2's egress table", || {
        run(
            "ip",
            &[
                "netns",
                "exec",
                &lab.host(2),
                "nft",
                "list",
                "table",
                "inet",
                "pipework_egress",
            ],
        )
        .status
        .success()
    });
    std::thread::sleep(std::time::Duration::from_secs(3));
    let l2 = agent_log(&lab, 2);
    assert!(!l2.contains("accepts for routed networks"), "{l2}");
    assert!(
        !agent_log(&lab, 0).contains("iptables accepts for routed networks: there is no iptables"),
        "IPv4: nothing drops, nothing to say"
    );
    for (i, c) in cs {
        lab.pw_ok(i, &["detach", &format!("netns:{c}")]);
    }
    lab.pw_ok(0, &["overlay", "delete", "nobin"]);
}
