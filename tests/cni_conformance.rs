//! CNI conformance by environment variables, the way cnitool and every
//! runtime call a plugin: each verb, each error code we can provoke, and
//! the idempotency rules of DEL. Real namespaces and links, named pwc-*.
mod cni_util;

use cni_util::{Call, OURS, Scratch, in_ns, run, static_conf, with_prev};
use serde_json::{Value, json};

const VERSIONS: [&str; 4] = ["0.3.1", "0.4.0", "1.0.0", "1.1.0"];

fn vars<'a>(cmd: &'a str, netns: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("CNI_COMMAND", cmd),
        ("CNI_CONTAINERID", "pwc-ctr"),
        ("CNI_NETNS", netns),
        ("CNI_IFNAME", "eth0"),
        ("CNI_PATH", cni_util::REF_DIR),
    ]
}

fn without<'a>(v: &[(&'a str, &'a str)], key: &str) -> Vec<(&'a str, &'a str)> {
    v.iter().filter(|(k, _)| *k != key).cloned().collect()
}

fn conf(version: &str) -> Value {
    static_conf(version, "pwcconf", "pwccf0", "10.231.0.5/24", "10.231.0.1")
}

fn links_in(ns: &str) -> String {
    in_ns(ns, &["ip", "-o", "link"])
}

#[test]
fn version_verb_reports_every_version() {
    let out = run(
        OURS,
        &[("CNI_COMMAND", "VERSION")],
        br#"{"cniVersion":"0.4.0"}"#,
    );
    let v = out.ok();
    assert_eq!(v["cniVersion"], "0.4.0");
    let sup: Vec<&str> = v["supportedVersions"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|x| x.as_str())
        .collect();
    for want in VERSIONS {
        assert!(sup.contains(&want), "{want} missing from {sup:?}");
    }
    // Some runtimes probe with no stdin at all.
    let out = run(OURS, &[("CNI_COMMAND", "VERSION")], b"");
    assert_eq!(out.ok()["cniVersion"], "1.1.0");
}

#[test]
fn missing_or_bad_environment_is_code_4() {
    require_env!();
    let c = conf("1.1.0").to_string();
    let all = vars("ADD", "/run/netns/pwc-none");
    for (cmd, key) in [
        ("ADD", "CNI_NETNS"),
        ("ADD", "CNI_CONTAINERID"),
        ("ADD", "CNI_IFNAME"),
        ("CHECK", "CNI_NETNS"),
        ("DEL", "CNI_IFNAME"),
        ("DEL", "CNI_CONTAINERID"),
        ("GC", "CNI_PATH"),
    ] {
        let mut v = without(&all, key);
        v.retain(|(k, _)| *k != "CNI_COMMAND");
        v.push(("CNI_COMMAND", cmd));
        let out = run(OURS, &v, c.as_bytes());
        assert_eq!(out.err_code(), 4, "{cmd} without {key}: {}", out.stdout);
        assert!(
            out.json["msg"].as_str().unwrap().contains(key),
            "{}",
            out.stdout
        );
        assert_eq!(out.json["cniVersion"], "1.1.0");
    }
    let out = run(OURS, &[("CNI_COMMAND", "FROB")], c.as_bytes());
    assert_eq!(out.err_code(), 4);
    let mut v = without(&all, "CNI_CONTAINERID");
    v.push(("CNI_CONTAINERID", "-starts-with-dash"));
    assert_eq!(run(OURS, &v, c.as_bytes()).err_code(), 4);
    let mut v = without(&all, "CNI_IFNAME");
    v.push(("CNI_IFNAME", "much-too-long-ifname"));
    assert_eq!(run(OURS, &v, c.as_bytes()).err_code(), 4);
}

#[test]
fn malformed_json_is_code_6() {
    let v = vars("ADD", "/run/netns/pwc-none");
    for bad in [&b"{not json"[..], b"", b"[1,2", b"\xff\xfe"] {
        let out = run(OURS, &v, bad);
        assert_eq!(out.err_code(), 6, "{:?}", String::from_utf8_lossy(bad));
    }
    let out = run(OURS, &[("CNI_COMMAND", "VERSION")], b"{oops");
    assert_eq!(out.err_code(), 6);
}

#[test]
fn invalid_config_is_code_7() {
    let v = vars("ADD", "/run/netns/pwc-none");
    let mut c = conf("1.1.0");
    c["mtu"] = json!("big");
    assert_eq!(run(OURS, &v, c.to_string().as_bytes()).err_code(), 7);
    let mut c = conf("1.1.0");
    c["name"] = json!("-bad name");
    assert_eq!(run(OURS, &v, c.to_string().as_bytes()).err_code(), 7);
    let mut c = conf("1.1.0");
    c["mtu"] = json!(20);
    let out = run(OURS, &v, c.to_string().as_bytes());
    assert_eq!(out.err_code(), 7);
    assert!(out.json["msg"].as_str().unwrap().contains("mtu"));
    let mut c = conf("1.1.0");
    c["mode"] = json!("macvlan");
    let out = run(OURS, &v, c.to_string().as_bytes());
    assert_eq!(out.err_code(), 7, "macvlan without master: {}", out.stdout);
    assert!(out.json["msg"].as_str().unwrap().contains("master"));
    // An overlay's bridge must keep netfilter and conntrack.
    for mode in ["overlay", "ovs"] {
        let mut c = conf("1.1.0");
        c["mode"] = json!(mode);
        c["tcRedirect"] = json!(true);
        let out = run(OURS, &v, c.to_string().as_bytes());
        assert_eq!(out.err_code(), 7, "{mode} with tcRedirect: {}", out.stdout);
        assert!(out.json["msg"].as_str().unwrap().contains("tcRedirect"));
    }
    // Name and container ID must fit in the record on the link.
    let id = "a".repeat(64);
    let mut v = without(&vars("ADD", "/run/netns/pwc-none"), "CNI_CONTAINERID");
    v.push(("CNI_CONTAINERID", &id));
    let mut c = conf("1.1.0");
    c["name"] = json!("n".repeat(100));
    let out = run(OURS, &v, c.to_string().as_bytes());
    assert_eq!(out.err_code(), 7, "{}", out.stdout);
    assert!(out.json["msg"].as_str().unwrap().contains("too long"));
}

#[test]
fn unsupported_version_is_code_1() {
    let v = vars("ADD", "/run/netns/pwc-none");
    for bad in ["0.2.0", "0.1.0", "9.0.0", ""] {
        let c = conf(bad);
        let out = run(OURS, &v, c.to_string().as_bytes());
        assert_eq!(out.err_code(), 1, "cniVersion {bad:?}");
        assert!(out.json["details"].as_str().unwrap().contains("1.1.0"));
    }
    // Verbs newer than the config's version.
    for (cmd, ver) in [("CHECK", "0.3.1"), ("GC", "1.0.0"), ("STATUS", "1.0.0")] {
        let out = run(
            OURS,
            &vars(cmd, "/run/netns/pwc-none"),
            conf(ver).to_string().as_bytes(),
        );
        assert_eq!(out.err_code(), 1, "{cmd} with {ver}");
        assert_eq!(out.json["cniVersion"], ver, "error in the caller's version");
    }
}

#[test]
fn unsupported_field_is_code_2() {
    let v = vars("ADD", "/run/netns/pwc-none");
    let mut c = conf("1.0.0");
    c["mode"] = json!("tunnel");
    let out = run(OURS, &v, c.to_string().as_bytes());
    assert_eq!(out.err_code(), 2);
    assert!(
        out.json["msg"].as_str().unwrap().contains("tunnel"),
        "names the value"
    );
    let mut c = conf("1.0.0");
    c["ipMasq"] = json!(true);
    let out = run(OURS, &v, c.to_string().as_bytes());
    assert_eq!(out.err_code(), 2);
    assert!(out.json["msg"].as_str().unwrap().contains("ipMasq"));
}

#[test]
fn unknown_namespace_is_code_3() {
    require_env!();
    let c = conf("1.1.0").to_string();
    let out = run(
        OURS,
        &vars("ADD", "/run/netns/pwc-does-not-exist"),
        c.as_bytes(),
    );
    assert_eq!(out.err_code(), 3);
    let prev = json!({"cniVersion":"1.1.0","interfaces":[{"name":"eth0","sandbox":"/run/netns/pwc-does-not-exist"}]});
    let out = run(
        OURS,
        &vars("CHECK", "/run/netns/pwc-does-not-exist"),
        with_prev(&conf("1.1.0"), &prev).to_string().as_bytes(),
    );
    assert_eq!(out.err_code(), 3);
}

#[test]
fn unreadable_stdin_is_code_5() {
    // Reading a directory fails with EISDIR: an I/O failure, not a decode one.
    let out = std::process::Command::new(OURS)
        .env_clear()
        .envs(vars("ADD", "/run/netns/pwc-none"))
        .stdin(std::fs::File::open("/").expect("open /"))
        .output()
        .expect("run");
    assert_ne!(out.status.code(), Some(0));
    let v: Value = serde_json::from_slice(&out.stdout).expect("error JSON on stdout");
    assert_eq!(v["code"], 5, "{v}");
}

#[test]
fn missing_ipam_plugin_is_code_50() {
    require_env!();
    let mut s = Scratch::default();
    let ns = s.netns("pwc-cf-ipam50");
    let mut c = conf("1.1.0");
    c["ipam"] = json!({"type": "pwc-no-such-ipam"});
    let out = run(OURS, &vars("ADD", &ns), c.to_string().as_bytes());
    assert_eq!(out.err_code(), 50);
    assert!(
        out.json["msg"]
            .as_str()
            .unwrap()
            .contains("pwc-no-such-ipam")
    );
    let out = run(OURS, &vars("STATUS", &ns), c.to_string().as_bytes());
    assert_eq!(out.err_code(), 50);
    // DEL still succeeds: nothing can have been allocated.
    run(OURS, &vars("DEL", &ns), c.to_string().as_bytes()).ok();
}

#[test]
fn status_ok_for_bridge_and_50_for_missing_master() {
    require_env!();
    let out = run(
        OURS,
        &vars("STATUS", ""),
        conf("1.1.0").to_string().as_bytes(),
    );
    out.ok();
    assert!(
        out.stdout.trim().is_empty(),
        "STATUS prints nothing on success"
    );
    let mut c = conf("1.1.0");
    c["mode"] = json!("macvlan");
    c["master"] = json!("pwc-nonexist");
    let out = run(OURS, &vars("STATUS", ""), c.to_string().as_bytes());
    assert!(matches!(out.err_code(), 50 | 2), "{}", out.stdout);
}

/// ADD, CHECK, DEL, DEL again, DEL without CNI_NETNS, for every version.
#[test]
fn lifecycle_in_every_version() {
    require_env!();
    let mut s = Scratch::default();
    let br = s.link("pwccf1");
    for (i, ver) in VERSIONS.iter().enumerate() {
        let ns_name = format!("pwc-cf-life{i}");
        let ns = s.netns(&ns_name);
        let addr = format!("10.231.1.{}/24", 10 + i);
        let c = static_conf(ver, "pwclife", &br, &addr, "10.231.1.1");
        let call = Call {
            id: "pwc-life",
            netns: &ns,
            ifname: "eth0",
        };
        let res = call.ours("ADD", &c).ok().clone();
        assert_eq!(res["cniVersion"], *ver);
        let ip = &res["ips"][0];
        assert_eq!(ip["address"], addr);
        assert_eq!(ip["gateway"], "10.231.1.1");
        if ver.starts_with('0') {
            assert_eq!(ip["version"], "4", "{ver} tags IPs with their family");
        } else {
            assert!(ip.get("version").is_none(), "{ver} has no per-IP version");
        }
        let idx = ip["interface"].as_u64().expect("interface index") as usize;
        assert_eq!(res["interfaces"][idx]["name"], "eth0");
        assert_eq!(res["interfaces"][idx]["sandbox"], ns.as_str());
        assert_eq!(res["interfaces"][0]["name"], br.as_str());
        // Kernel agrees with the result.
        let a = in_ns(&ns_name, &["ip", "-o", "-4", "addr", "show", "eth0"]);
        assert!(a.contains(&addr), "{a}");
        let r = in_ns(&ns_name, &["ip", "route"]);
        assert!(r.contains("default via 10.231.1.1 dev eth0"), "{r}");
        let cc = with_prev(&c, &res);
        if *ver != "0.3.1" {
            call.ours("CHECK", &cc).ok();
        }
        call.ours("DEL", &cc).ok();
        assert!(!links_in(&ns_name).contains("eth0"), "DEL removed eth0");
        call.ours("DEL", &cc).ok();
        let no_ns = Call {
            id: "pwc-life",
            netns: "",
            ifname: "eth0",
        };
        no_ns.ours("DEL", &cc).ok();
        // DEL with no prevResult at all is fine too.
        call.ours("DEL", &c).ok();
    }
    let ports = cni_util::sh(&["ip", "-o", "link", "show", "master", &br]);
    assert!(ports.trim().is_empty(), "no ports left on {br}: {ports}");
}

#[test]
fn add_fails_if_interface_exists() {
    require_env!();
    let mut s = Scratch::default();
    let ns = s.netns("pwc-cf-exists");
    let br = s.link("pwccf2");
    // An interface of that name made by someone else.
    assert!(cni_util::sh_ok(&[
        "ip",
        "-n",
        "pwc-cf-exists",
        "link",
        "add",
        "eth0",
        "type",
        "veth",
        "peer",
        "name",
        "pwcpeer0"
    ]));
    let c = static_conf("1.1.0", "pwcexists", &br, "10.231.2.5/24", "10.231.2.1");
    let call = Call {
        id: "pwc-exists",
        netns: &ns,
        ifname: "eth0",
    };
    let out = call.ours("ADD", &c);
    assert_eq!(out.err_code(), 102, "{}", out.stdout);
    // Nothing was changed: no bridge, the foreign eth0 untouched.
    assert!(
        !cni_util::sh_ok(&["ip", "link", "show", &br]),
        "bridge not created"
    );
    let l = links_in("pwc-cf-exists");
    assert!(l.contains("eth0@pwcpeer0"), "{l}");
    assert!(!in_ns("pwc-cf-exists", &["ip", "-o", "addr"]).contains("10.231.2.5"));
}

#[test]
fn check_after_interface_deleted_by_hand_fails() {
    require_env!();
    let mut s = Scratch::default();
    let ns = s.netns("pwc-cf-check");
    let br = s.link("pwccf3");
    let c = static_conf("1.1.0", "pwccheck", &br, "10.231.3.5/24", "10.231.3.1");
    let call = Call {
        id: "pwc-check",
        netns: &ns,
        ifname: "eth0",
    };
    let res = call.ours("ADD", &c).ok().clone();
    let cc = with_prev(&c, &res);
    call.ours("CHECK", &cc).ok();
    // An address removed by hand is noticed too.
    assert!(cni_util::sh_ok(&[
        "ip",
        "-n",
        "pwc-cf-check",
        "addr",
        "del",
        "10.231.3.5/24",
        "dev",
        "eth0"
    ]));
    let out = call.ours("CHECK", &cc);
    assert_eq!(out.err_code(), 103);
    assert!(
        out.json["msg"].as_str().unwrap().contains("10.231.3.5"),
        "{}",
        out.stdout
    );
    assert!(cni_util::sh_ok(&[
        "ip",
        "-n",
        "pwc-cf-check",
        "link",
        "del",
        "eth0"
    ]));
    let out = call.ours("CHECK", &cc);
    assert_eq!(out.err_code(), 103);
    assert!(
        out.json["msg"].as_str().unwrap().contains("missing"),
        "{}",
        out.stdout
    );
    call.ours("DEL", &cc).ok();
    // CHECK without prevResult is a config error.
    assert_eq!(call.ours("CHECK", &c).err_code(), 7);
}

#[test]
fn del_without_netns_removes_the_host_side() {
    require_env!();
    let mut s = Scratch::default();
    let ns = s.netns("pwc-cf-nons");
    let br = s.link("pwccf4");
    let c = static_conf("1.1.0", "pwcnons", &br, "10.231.4.5/24", "10.231.4.1");
    let call = Call {
        id: "pwc-nons",
        netns: &ns,
        ifname: "eth0",
    };
    let res = call.ours("ADD", &c).ok().clone();
    assert_eq!(
        res["interfaces"].as_array().unwrap().len(),
        3,
        "bridge, host veth, eth0: {res}"
    );
    let host_if = res["interfaces"][1]["name"].as_str().unwrap().to_string();
    assert!(cni_util::sh_ok(&["ip", "link", "show", &host_if]));
    // The runtime lost the namespace path: we still find our host side.
    Call {
        id: "pwc-nons",
        netns: "",
        ifname: "eth0",
    }
    .ours("DEL", &with_prev(&c, &res))
    .ok();
    assert!(
        !cni_util::sh_ok(&["ip", "link", "show", &host_if]),
        "{host_if} removed"
    );
    assert!(!links_in("pwc-cf-nons").contains("eth0"));
}

#[test]
fn host_local_ipam_is_delegated() {
    require_env!();
    let mut s = Scratch::default();
    let ns = s.netns("pwc-cf-hl");
    let br = s.link("pwccf5");
    let data = s.dir("/tmp/pwc-cf-hl-ipam");
    let c = json!({
        "cniVersion": "1.1.0", "name": "pwchl", "type": "pipework", "mode": "bridge",
        "bridge": br, "isGateway": true,
        "ipam": {"type": "host-local", "dataDir": data, "subnet": "10.231.5.0/24",
                 "routes": [{"dst": "0.0.0.0/0"}]}
    });
    let call = Call {
        id: "pwc-hl",
        netns: &ns,
        ifname: "eth0",
    };
    let res = call.ours("ADD", &c).ok().clone();
    assert_eq!(res["ips"][0]["address"], "10.231.5.2/24");
    assert_eq!(res["ips"][0]["gateway"], "10.231.5.1");
    let lease = format!("{data}/pwchl/10.231.5.2");
    assert!(
        std::path::Path::new(&lease).exists(),
        "host-local recorded the lease"
    );
    let cc = with_prev(&c, &res);
    call.ours("CHECK", &cc).ok();
    call.ours("DEL", &cc).ok();
    assert!(
        !std::path::Path::new(&lease).exists(),
        "DEL released the lease"
    );
    call.ours("DEL", &cc).ok();
}

#[test]
fn runtime_config_mac_and_ips_are_honoured() {
    require_env!();
    let mut s = Scratch::default();
    let ns = s.netns("pwc-cf-rc");
    let br = s.link("pwccf6");
    let mut c = static_conf("1.1.0", "pwcrc", &br, "10.231.6.5/24", "10.231.6.1");
    c["runtimeConfig"] = json!({"mac": "02:00:00:c0:ff:ee", "ips": ["10.231.6.77/24"]});
    let call = Call {
        id: "pwc-rc",
        netns: &ns,
        ifname: "eth0",
    };
    let res = call.ours("ADD", &c).ok().clone();
    assert_eq!(res["ips"][0]["address"], "10.231.6.77/24");
    let idx = res["ips"][0]["interface"].as_u64().unwrap() as usize;
    assert_eq!(res["interfaces"][idx]["mac"], "02:00:00:c0:ff:ee");
    let l = in_ns("pwc-cf-rc", &["ip", "-o", "link", "show", "eth0"]);
    assert!(l.contains("02:00:00:c0:ff:ee"), "{l}");
    let a = in_ns("pwc-cf-rc", &["ip", "-o", "-4", "addr", "show", "eth0"]);
    assert!(
        a.contains("10.231.6.77/24") && !a.contains("10.231.6.5/"),
        "{a}"
    );
    call.ours("DEL", &with_prev(&c, &res)).ok();
}

#[test]
fn prev_result_is_passed_through_in_a_chain() {
    require_env!();
    let mut s = Scratch::default();
    let ns = s.netns("pwc-cf-chain");
    let br = s.link("pwccf7");
    let prev = json!({
        "cniVersion": "1.0.0",
        "interfaces": [{"name": "pwcother0", "mac": "02:00:00:00:00:01", "sandbox": ns}],
        "ips": [{"address": "192.0.2.9/32", "interface": 0}],
        "routes": [{"dst": "192.0.2.0/24"}],
        "dns": {"nameservers": ["192.0.2.53"]}
    });
    let c = with_prev(
        &static_conf("1.0.0", "pwcchain", &br, "10.231.7.5/24", "10.231.7.1"),
        &prev,
    );
    let call = Call {
        id: "pwc-chain",
        netns: &ns,
        ifname: "eth1",
    };
    let res = call.ours("ADD", &c).ok().clone();
    assert_eq!(
        res["interfaces"][0]["name"], "pwcother0",
        "previous plugin's interface kept first"
    );
    assert_eq!(res["ips"][0]["address"], "192.0.2.9/32");
    assert_eq!(res["ips"][0]["interface"], 0);
    let ours = &res["ips"][1];
    assert_eq!(ours["address"], "10.231.7.5/24");
    let idx = ours["interface"].as_u64().unwrap() as usize;
    assert_eq!(res["interfaces"][idx]["name"], "eth1");
    assert_eq!(res["dns"]["nameservers"][0], "192.0.2.53");
    assert!(
        res["routes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["dst"] == "192.0.2.0/24")
    );
    call.ours("DEL", &with_prev(&c, &res)).ok();
}

#[test]
fn gc_removes_attachments_not_listed() {
    require_env!();
    let mut s = Scratch::default();
    let ns1 = s.netns("pwc-cf-gc1");
    let ns2 = s.netns("pwc-cf-gc2");
    let br = s.link("pwccf8");
    let c1 = static_conf("1.1.0", "pwcgc", &br, "10.231.8.5/24", "10.231.8.1");
    let c2 = static_conf("1.1.0", "pwcgc", &br, "10.231.8.6/24", "10.231.8.1");
    let a = Call {
        id: "pwc-gc-keep",
        netns: &ns1,
        ifname: "eth0",
    };
    let b = Call {
        id: "pwc-gc-stale",
        netns: &ns2,
        ifname: "eth0",
    };
    let ra = a.ours("ADD", &c1).ok().clone();
    b.ours("ADD", &c2).ok();
    let mut g = c1.clone();
    g["cni.dev/valid-attachments"] = json!([{"containerID": "pwc-gc-keep", "ifname": "eth0"}]);
    let out = cni_util::run(
        OURS,
        &[("CNI_COMMAND", "GC"), ("CNI_PATH", cni_util::REF_DIR)],
        g.to_string().as_bytes(),
    );
    out.ok();
    assert!(
        links_in("pwc-cf-gc1").contains("eth0"),
        "listed attachment kept"
    );
    assert!(
        !links_in("pwc-cf-gc2").contains("eth0"),
        "stale attachment removed"
    );
    a.ours("CHECK", &with_prev(&c1, &ra)).ok();
    a.ours("DEL", &with_prev(&c1, &ra)).ok();
}

#[test]
fn bridge_naming_a_non_bridge_is_code_7_and_changes_nothing() {
    require_env!();
    let mut s = Scratch::default();
    let ns = s.netns("pwc-cf-notbr");
    let l = s.link("pwcnotbr0");
    assert!(cni_util::sh_ok(&[
        "ip",
        "link",
        "add",
        &l,
        "type",
        "veth",
        "peer",
        "name",
        "pwcnotbr1"
    ]));
    let c = static_conf("1.1.0", "pwcnotbr", &l, "10.231.10.5/24", "10.231.10.1");
    let out = Call {
        id: "pwc-notbr",
        netns: &ns,
        ifname: "eth0",
    }
    .ours("ADD", &c);
    assert_eq!(out.err_code(), 7, "{}", out.stdout);
    assert!(out.json["msg"].as_str().unwrap().contains("pwcnotbr0"));
    assert!(!links_in("pwc-cf-notbr").contains("eth0"));
    let master = cni_util::sh(&["ip", "-o", "link", "show", "pwcnotbr1"]);
    assert!(!master.contains("master"), "{master}");
}

#[test]
fn del_after_namespace_destroyed_succeeds_and_releases_the_bridge_rule() {
    require_env!();
    let mut s = Scratch::default();
    let ns = s.netns("pwc-cf-gone");
    let br = s.link("pwccf9");
    let c = static_conf("1.0.0", "pwcgone", &br, "10.231.11.5/24", "10.231.11.1");
    let call = Call {
        id: "pwc-gone",
        netns: &ns,
        ifname: "eth0",
    };
    let res = call.ours("ADD", &c).ok().clone();
    let tag = format!("pipework:{br}");
    // The bridge driver adds an accept rule only where FORWARD drops
    // bridged frames (a dockerd host); whatever it did must be undone.
    let had_rule = cni_util::sh(&["iptables", "-w", "-S"]).contains(&tag);
    // The runtime destroys the namespace first and then calls DEL without it.
    assert!(cni_util::sh_ok(&["ip", "netns", "del", "pwc-cf-gone"]));
    let gone = Call {
        id: "pwc-gone",
        netns: "",
        ifname: "eth0",
    };
    gone.ours("DEL", &with_prev(&c, &res)).ok();
    // Also with the stale path still given.
    call.ours("DEL", &with_prev(&c, &res)).ok();
    let ports = cni_util::sh(&["ip", "-o", "link", "show", "master", &br]);
    assert!(ports.trim().is_empty(), "{ports}");
    if had_rule {
        assert!(
            !cni_util::sh(&["iptables", "-w", "-S"]).contains(&tag),
            "rule released"
        );
    }
}

/// Runtimes ADD many containers at once: eight parallel ADDs onto a bridge
/// that does not exist yet all succeed, with distinct host-local leases,
/// and eight parallel DELs leave nothing.
#[test]
fn parallel_adds_and_dels_on_a_new_bridge() {
    require_env!();
    let mut s = Scratch::default();
    let br = s.link("pwccf10");
    let data = s.dir("/tmp/pwc-cf-par-ipam");
    let c = json!({
        "cniVersion": "1.1.0", "name": "pwcpar", "type": "pipework", "bridge": br,
        "isGateway": true,
        "ipam": {"type": "host-local", "dataDir": data, "subnet": "10.231.12.0/24",
                 "routes": [{"dst": "0.0.0.0/0"}]}
    });
    let nss: Vec<String> = (0..8).map(|i| s.netns(&format!("pwc-cf-par{i}"))).collect();
    let ids: Vec<String> = (0..8).map(|i| format!("pwc-par-{i}")).collect();
    let results: Vec<Value> = std::thread::scope(|sc| {
        let hs: Vec<_> = (0..8)
            .map(|i| {
                let (ns, id, c) = (&nss[i], &ids[i], &c);
                sc.spawn(move || {
                    Call {
                        id,
                        netns: ns,
                        ifname: "eth0",
                    }
                    .ours("ADD", c)
                    .ok()
                    .clone()
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().expect("thread")).collect()
    });
    let mut addrs: Vec<&str> = results
        .iter()
        .map(|r| r["ips"][0]["address"].as_str().unwrap())
        .collect();
    addrs.sort();
    addrs.dedup();
    assert_eq!(addrs.len(), 8, "distinct leases: {addrs:?}");
    let ports = cni_util::sh(&["ip", "-o", "link", "show", "master", &br]);
    assert_eq!(ports.lines().count(), 8, "{ports}");
    std::thread::scope(|sc| {
        for i in 0..8 {
            let (ns, id, c, r) = (&nss[i], &ids[i], &c, &results[i]);
            sc.spawn(move || {
                Call {
                    id,
                    netns: ns,
                    ifname: "eth0",
                }
                .ours("DEL", &with_prev(c, r))
                .ok();
            });
        }
    });
    let ports = cni_util::sh(&["ip", "-o", "link", "show", "master", &br]);
    assert!(ports.trim().is_empty(), "{ports}");
    let left: Vec<String> = std::fs::read_dir(format!("{data}/pwcpar"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().to_string())
                .collect()
        })
        .unwrap_or_default();
    assert!(left.iter().all(|f| !f.starts_with("10.")), "{left:?}");
}

/// Runtimes read a plugin's stdout until EOF. Nothing we leave running
/// (such as the neighbour announcer) may keep that pipe open once the
/// plugin has exited, or every ADD would last as long as that process.
#[test]
fn stdout_reaches_eof_when_the_plugin_exits() {
    use std::io::{Read, Write};
    require_env!();
    let mut s = Scratch::default();
    let ns = s.netns("pwc-cf-eof");
    let br = s.link("pwccf11");
    let c = static_conf("1.1.0", "pwceof", &br, "10.231.13.5/24", "10.231.13.1");
    let mut child = std::process::Command::new(OURS)
        .env_clear()
        .envs(vars("ADD", &ns))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(c.to_string().as_bytes())
        .expect("write");
    let status = child.wait().expect("wait");
    assert!(status.success());
    let mut out = child.stdout.take().expect("stdout");
    nix::fcntl::fcntl(
        &out,
        nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
    )
    .expect("nonblock");
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match out.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                panic!("the plugin exited but a process it left behind still holds its stdout")
            }
            Err(e) => panic!("read: {e}"),
        }
    }
    let res: Value = serde_json::from_slice(&buf).expect("result JSON");
    let call = Call {
        id: "pwc-ctr",
        netns: &ns,
        ifname: "eth0",
    };
    call.ours("DEL", &with_prev(&c, &res)).ok();
}

#[test]
fn dual_stack_static_addresses_and_routes() {
    require_env!();
    let mut s = Scratch::default();
    let ns = s.netns("pwc-cf-v6");
    let br = s.link("pwccf12");
    let c = json!({
        "cniVersion": "0.4.0", "name": "pwcv6", "type": "pipework", "bridge": br,
        "ipam": {"type": "static",
                 "addresses": [{"address": "10.231.14.5/24", "gateway": "10.231.14.1"},
                               {"address": "fd00:231:14::5/64", "gateway": "fd00:231:14::1"}],
                 "routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}]}
    });
    let call = Call {
        id: "pwc-v6",
        netns: &ns,
        ifname: "eth0",
    };
    let res = call.ours("ADD", &c).ok().clone();
    assert_eq!(res["ips"][0]["version"], "4");
    assert_eq!(res["ips"][1]["version"], "6");
    assert_eq!(res["ips"][1]["address"], "fd00:231:14::5/64");
    let a = in_ns("pwc-cf-v6", &["ip", "-o", "-6", "addr", "show", "eth0"]);
    assert!(a.contains("fd00:231:14::5/64"), "{a}");
    let r6 = in_ns("pwc-cf-v6", &["ip", "-6", "route"]);
    assert!(r6.contains("default via fd00:231:14::1 dev eth0"), "{r6}");
    let r4 = in_ns("pwc-cf-v6", &["ip", "-4", "route"]);
    assert!(r4.contains("default via 10.231.14.1 dev eth0"), "{r4}");
    let cc = with_prev(&c, &res);
    call.ours("CHECK", &cc).ok();
    call.ours("DEL", &cc).ok();
    assert!(!links_in("pwc-cf-v6").contains("eth0"));
}

/// `mode` reaches every driver in the build. Until a driver is built in,
/// its mode is refused with code 2 and nothing is changed; once it is,
/// the full ADD/CHECK/DEL cycle must work through CNI.
#[test]
fn macvlan_and_phys_modes_reach_their_drivers() {
    require_env!();
    let mut s = Scratch::default();
    let ns = s.netns("pwc-cf-modes");
    let m0 = s.link("pwccfm0");
    assert!(cni_util::sh_ok(&[
        "ip", "link", "add", &m0, "type", "veth", "peer", "name", "pwccfm1"
    ]));
    assert!(cni_util::sh_ok(&["ip", "link", "set", &m0, "up"]));
    for (mode, master, extra) in [
        ("macvlan", "pwccfm0", json!({"macvlanMode": "bridge"})),
        ("phys", "pwccfm1", json!({})),
    ] {
        let mut c = json!({
            "cniVersion": "1.1.0", "name": "pwcmodes", "type": "pipework",
            "mode": mode, "master": master,
            "ipam": {"type": "static", "addresses": [{"address": "10.231.15.5/24"}]}
        });
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        let st = run(OURS, &vars("STATUS", ""), c.to_string().as_bytes());
        let call = Call {
            id: "pwc-modes",
            netns: &ns,
            ifname: "eth0",
        };
        if st.code != 0 {
            // Driver not in this build: refused up front, host untouched.
            assert_eq!(st.err_code(), 50, "{mode}: {}", st.stdout);
            let out = call.ours("ADD", &c);
            assert_eq!(out.err_code(), 2, "{mode}: {}", out.stdout);
            assert!(out.json["msg"].as_str().unwrap().contains(mode));
            assert!(!links_in("pwc-cf-modes").contains("eth0"));
            continue;
        }
        let res = call.ours("ADD", &c).ok().clone();
        let a = in_ns("pwc-cf-modes", &["ip", "-o", "-4", "addr", "show", "eth0"]);
        assert!(a.contains("10.231.15.5/24"), "{mode}: {a}");
        let cc = with_prev(&c, &res);
        call.ours("CHECK", &cc).ok();
        call.ours("DEL", &cc).ok();
        call.ours("DEL", &cc).ok();
        assert!(
            !links_in("pwc-cf-modes").contains("eth0"),
            "{mode}: DEL removed eth0"
        );
    }
    // phys gives the interface back to the host under its own name.
    assert!(cni_util::sh_ok(&["ip", "link", "show", "pwccfm1"]));
}

/// Our rules for `br` in the raw table's PREROUTING, IPv4 and IPv6.
fn notrack_rules(br: &str) -> (usize, usize) {
    let tag = format!("pipework:{br}");
    let n = |tool: &str| {
        cni_util::sh(&[tool, "-w", "-t", "raw", "-S", "PREROUTING"])
            .lines()
            .filter(|l| l.contains(&tag) && l.ends_with("-j CT --notrack"))
            .count()
    };
    (n("iptables"), n("ip6tables"))
}

/// Bridge mode and conntrack (firewall/notrack.rs): an ADD onto a bridge
/// the host does not route for adds the raw-table notrack rules and DEL
/// removes them; `"keepConntrack": true` adds none (only the accept rule);
/// `"isGateway": true` adds none either, since it makes the host the
/// bridge's gateway.
#[test]
fn keep_conntrack_key_and_the_notrack_rules() {
    require_env!();
    let filtered = |t: &str| {
        std::fs::read_to_string(format!("/proc/sys/net/bridge/bridge-nf-call-{t}"))
            .is_ok_and(|v| v.trim() == "1")
    };
    assert!(
        filtered("iptables") && filtered("ip6tables"),
        "needs bridge-nf-call-iptables=1 and -ip6tables=1 (dockerd, scripts/env-up.sh)"
    );
    let mut s = Scratch::default();
    let cases = [
        ("pwccfct1", "pwc-cf-ct1", "10.231.40", None, (1, 1)),
        (
            "pwccfct2",
            "pwc-cf-ct2",
            "10.231.41",
            Some("keepConntrack"),
            (0, 0),
        ),
        (
            "pwccfct3",
            "pwc-cf-ct3",
            "10.231.42",
            Some("isGateway"),
            (0, 0),
        ),
    ];
    for (br, ns, net, key, want) in cases {
        let br = s.link(br);
        let path = s.netns(ns);
        let mut c = static_conf(
            "1.0.0",
            "pwcct",
            &br,
            &format!("{net}.5/24"),
            &format!("{net}.1"),
        );
        c["isGateway"] = json!(false);
        if let Some(k) = key {
            c[k] = json!(true);
        }
        let call = Call {
            id: "pwc-ct",
            netns: &path,
            ifname: "eth0",
        };
        let res = call.ours("ADD", &c).ok().clone();
        assert_eq!(notrack_rules(&br), want, "after ADD with {key:?}");
        // The accept rule is there either way (dockerd drops bridged frames).
        let filter = cni_util::sh(&["iptables", "-w", "-S"]);
        assert!(filter.contains(&format!("pipework:{br}")), "{filter}");
        call.ours("DEL", &with_prev(&c, &res)).ok();
        assert_eq!(notrack_rules(&br), (0, 0), "after DEL with {key:?}");
    }
}
