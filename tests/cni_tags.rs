//! CNI's guest tag (src/cni/tag.rs) on real links: a 32-byte network name
//! with a 64-hex container ID (what Kubernetes/containerd pass) fits the
//! record of each kind this kernel has (bridge, macvlan, OVS) and `ls`
//! shows the full ID; a name too long is refused in one line
//! before anything is built; a record an earlier version wrote
//! (`cni:NET/ID/IF` with the short id) is still found by CHECK, DEL (with
//! and without the namespace), GC and `ls`. Real namespaces and links,
//! named pwc-tag* / pwctag*.
mod cni_util;

use cni_util::{Call, OURS, REF_DIR, Scratch, in_ns, run, sh, sh_ok, with_prev};
use pipework::cni::tag;
use pipework::record::{Ident, Record};
use serde_json::{Value, json};
use std::os::unix::fs::MetadataExt;

/// 32 bytes, as a Kubernetes network attachment may well be named.
const NET32: &str = "pwctag-kubernetes-pod-network-32";

/// A 64-hex container ID, unique to this run and to the test (`test`):
/// the tests run in parallel threads of one process, and one's DEL or GC
/// must never match another's attachment.
fn hex_id(test: u64) -> String {
    format!(
        "{:016x}{:016x}{:032x}",
        std::process::id(),
        test,
        0x5eed_c0ffee_u64
    )
}

/// Each test's own ID (`hex_id`) and network name (below): unique
/// prefixes, so no test's GC or `ls` lookup reaches another's.
const KINDS: u64 = 1;
const OVS: u64 = 2;
const OLD: u64 = 3;
/// The OVS test's network: as long as `k8s-pod-net` (11 bytes), which is
/// what fits beside the recorded socket path.
const NET_OVS: &str = "pwctag-ovs0";
/// The legacy test's network (its GC removes what of it is not listed).
const NET_OLD: &str = "pwctag-old";

fn links_in(ns: &str) -> String {
    in_ns(ns, &["ip", "-o", "link"])
}

fn ls() -> Vec<Value> {
    let o = std::process::Command::new(OURS)
        .args(["ls", "--json"])
        .output()
        .expect("pipework ls");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).expect("ls --json")
}

/// The `ls` entry of the attachment whose guest reads `guest`.
fn ls_entry(guest: &str, ifname: &str) -> Option<Value> {
    ls().into_iter()
        .find(|e| e["guest"] == guest && e["interface"] == ifname)
}

/// The alias (record) on `dev`, in namespace `ns` (None: the host).
fn alias(ns: Option<&str>, dev: &str) -> String {
    let path = format!("/sys/class/net/{dev}/ifalias");
    match ns {
        Some(n) => in_ns(n, &["cat", &path]),
        None => sh(&["cat", &path]),
    }
    .trim()
    .to_string()
}

/// Rewrite the record on `dev` as an earlier version wrote it: the legacy
/// tag and the short id, signed with the host key for the same link.
fn relabel_legacy(ns: Option<&str>, dev: &str, legacy: &str, cid: &str) {
    let a = alias(ns, dev);
    let mut rec: Record = serde_json::from_str(a.strip_prefix("pipework ").expect("a record"))
        .unwrap_or_else(|e| panic!("{dev}: {e}: {a}"));
    assert!(rec.g.starts_with("cnc:"), "{dev} was recorded compact: {a}");
    assert_eq!(rec.id, None, "{a}");
    rec.g = legacy.to_string();
    rec.id = Some(cid[..12].to_string());
    rec.t.clear();
    let ifindex = format!("/sys/class/net/{dev}/ifindex");
    let index: u32 = match ns {
        Some(n) => in_ns(n, &["cat", &ifindex]),
        None => sh(&["cat", &ifindex]),
    }
    .trim()
    .parse()
    .expect("ifindex");
    let ns_file = ns.map_or("/proc/self/ns/net".to_string(), |n| {
        format!("/run/netns/{n}")
    });
    let ino = std::fs::metadata(&ns_file).expect("netns").ino();
    let sealed = rec.seal(Ident { ns: ino, index }).expect("seal");
    let mut cmd = vec!["ip"];
    if let Some(n) = ns {
        cmd.extend(["-n", n]);
    }
    cmd.extend(["link", "set", "dev", dev, "alias", &sealed]);
    assert!(sh_ok(&cmd), "{cmd:?}");
}

fn conf(name: &str, extra: Value, addr: &str) -> Value {
    let mut c = json!({
        "cniVersion": "1.1.0", "name": name, "type": "pipework",
        "ipam": {"type": "static", "addresses": [{"address": addr}]}
    });
    for (k, v) in extra.as_object().expect("object") {
        c[k] = v.clone();
    }
    c
}

/// ADD, the compact tag on the link, `ls` spelling it out with the full
/// ID, CHECK, DEL, for one kind.
fn lifecycle(ns_name: &str, ns: &str, c: &Value, what: &str, test: u64) {
    let cid = hex_id(test);
    let call = Call {
        id: &cid,
        netns: ns,
        ifname: "eth0",
    };
    let res = call.ours("ADD", c).ok().clone();
    let net = c["name"].as_str().unwrap_or_default();
    let a = alias(Some(ns_name), "eth0");
    // The compact tag, not the legacy spelling with the 64-hex ID (which
    // would not fit a long name), and it decodes to the full ID.
    let rec: Record = serde_json::from_str(a.strip_prefix("pipework ").unwrap_or_default())
        .unwrap_or_else(|e| panic!("{what}: {e}: {a}"));
    assert!(rec.g.starts_with(&format!("cnc:{net}/")), "{what}: {a}");
    let (n, id, ifname) = tag::decode(&rec.g).unwrap_or_else(|| panic!("{what}: {a}"));
    assert_eq!(
        (n, id.as_str(), ifname),
        (net, cid.as_str(), "eth0"),
        "{what}: {a}"
    );
    let e = ls_entry(&format!("cni:{net}/{cid}/eth0"), "eth0")
        .unwrap_or_else(|| panic!("{what}: ls lacks it: {:?}", ls()));
    assert_eq!(e["container_id"], &cid[..12], "{what}: {e}");
    let cc = with_prev(c, &res);
    call.ours("CHECK", &cc).ok();
    call.ours("DEL", &cc).ok();
    assert!(
        !links_in(ns_name).contains("eth0"),
        "{what}: DEL removed eth0"
    );
    call.ours("DEL", &cc).ok();
}

#[test]
fn long_network_name_with_a_64_hex_id_fits_every_kind() {
    require_env!();
    let mut s = Scratch::default();
    let ns = s.netns("pwc-tag-kinds");
    let br = s.link("pwctagbr0");
    let m0 = s.link("pwctagm0");
    assert!(sh_ok(&[
        "ip", "link", "add", &m0, "type", "veth", "peer", "name", "pwctagm1"
    ]));
    assert!(sh_ok(&["ip", "link", "set", &m0, "up"]));
    let kinds = [
        // With a VLAN, ipvlan, sriov: src/cni/fits.rs's unit test (this
        // test's kernel may lack bridge VLAN filtering, 802.1Q, ipvlan).
        ("bridge", json!({"mode": "bridge", "bridge": br})),
        (
            "macvlan",
            json!({"mode": "macvlan", "master": m0, "macvlanMode": "passthru"}),
        ),
    ];
    for (what, extra) in kinds {
        lifecycle(
            "pwc-tag-kinds",
            &ns,
            &conf(NET32, extra, "10.231.90.5/24"),
            what,
            KINDS,
        );
    }
    // Too long for even this record: refused in one line saying by how
    // much, before anything is built.
    let long = format!("{NET32}-and-then-some-more-words");
    let c = conf(
        &long,
        json!({"mode": "bridge", "bridge": br, "vlan": 100}),
        "10.231.90.5/24",
    );
    let cid = hex_id(KINDS);
    let out = Call {
        id: &cid,
        netns: &ns,
        ifname: "eth0",
    }
    .ours("ADD", &c);
    assert_eq!(out.err_code(), 7, "{}", out.stdout);
    let msg = out.json["msg"].as_str().unwrap_or_default();
    assert_eq!(msg.lines().count(), 1, "{msg}");
    for w in [long.as_str(), "255", "bridge attachment", "43 as recorded"] {
        assert!(msg.contains(w), "{w}: {msg}");
    }
    assert!(!links_in("pwc-tag-kinds").contains("eth0"));
    let ports = sh(&["ip", "-o", "link", "show", "master", &br]);
    assert!(ports.trim().is_empty(), "{ports}");
}

/// OVS through a non-default OVSDB socket (the test environment's): the
/// socket's path is recorded too, so a shorter name fits, and a 32-byte
/// one is refused in one line naming the bytes over, no port left.
#[test]
fn ovs_records_the_socket_and_still_fits_a_64_hex_id() {
    require_env!();
    let db =
        std::env::var("PIPEWORK_OVSDB").unwrap_or_else(|_| "unix:/tmp/pw-env/ovs/db.sock".into());
    let sock = db.trim_start_matches("unix:").to_string();
    if !std::path::Path::new(&sock).exists() || !sh_ok(&["ovs-vsctl", "--version"]) {
        eprintln!("SKIP: no OVSDB socket at {sock} (scripts/env-up.sh starts OVS)");
        return;
    }
    let mut s = Scratch::default();
    let ns = s.netns("pwc-tag-ovs");
    let br = "pwctagovs0";
    let vsctl = |args: &[&str]| {
        let mut a = vec!["ovs-vsctl".to_string(), format!("--db={db}")];
        a.extend(args.iter().map(|s| s.to_string()));
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        sh_ok(&a)
    };
    vsctl(&["--if-exists", "del-br", br]);
    assert!(vsctl(&[
        "add-br",
        br,
        "--",
        "set",
        "bridge",
        br,
        "datapath_type=netdev"
    ]));
    let ovs = json!({"mode": "ovs", "bridge": br, "socket_file": db, "vlan": 100});
    let r = std::panic::catch_unwind(|| {
        lifecycle(
            "pwc-tag-ovs",
            &ns,
            &conf(NET_OVS, ovs.clone(), "10.231.91.5/24"),
            "ovs",
            OVS,
        );
        let cid = hex_id(OVS);
        let out = Call {
            id: &cid,
            netns: &ns,
            ifname: "eth0",
        }
        .ours("ADD", &conf(NET32, ovs.clone(), "10.231.91.5/24"));
        let msg = out.json["msg"].as_str().unwrap_or_default().to_string();
        assert_eq!(out.err_code(), 7, "{}", out.stdout);
        assert_eq!(msg.lines().count(), 1, "{msg}");
        assert!(
            msg.contains(NET32) && msg.contains("ovs attachment"),
            "{msg}"
        );
        assert!(!links_in("pwc-tag-ovs").contains("eth0"));
        let ports = sh(&["ovs-vsctl", &format!("--db={db}"), "list-ports", br]);
        assert!(ports.trim().is_empty(), "{ports}");
    });
    vsctl(&["--if-exists", "del-br", br]);
    if let Err(e) = r {
        std::panic::resume_unwind(e);
    }
}

/// Records an earlier version wrote (the legacy `cni:` tag with the full
/// ID, and the short id) stay manageable: `ls` lists them as before, CHECK
/// matches, DEL finds them through the namespace and, without one, on the
/// host side; GC removes one no longer listed.
#[test]
fn legacy_records_still_check_del_gc_and_list() {
    require_env!();
    let mut s = Scratch::default();
    let ns_name = "pwc-tag-old";
    let ns = s.netns(ns_name);
    let br = s.link("pwctagbr1");
    let net = NET_OLD;
    let cid = hex_id(OLD);
    let mut added = Vec::new();
    for (i, ifname) in ["eth0", "net1", "net2"].into_iter().enumerate() {
        let c = conf(
            net,
            json!({"mode": "bridge", "bridge": br}),
            &format!("10.231.92.{}/24", 5 + i),
        );
        let call = Call {
            id: &cid,
            netns: &ns,
            ifname,
        };
        let res = call.ours("ADD", &c).ok().clone();
        let host_end = res["interfaces"][1]["name"]
            .as_str()
            .expect("host end")
            .to_string();
        let legacy = format!("cni:{net}/{cid}/{ifname}");
        relabel_legacy(Some(ns_name), ifname, &legacy, &cid);
        relabel_legacy(None, &host_end, &legacy, &cid);
        assert!(alias(Some(ns_name), ifname).contains(&legacy));
        let e = ls_entry(&legacy, ifname).unwrap_or_else(|| panic!("ls: {:?}", ls()));
        assert_eq!(e["container_id"], &cid[..12], "{e}");
        added.push((ifname, c, res, host_end));
    }
    // CHECK and DEL through the namespace.
    let (ifname, c, res, host_end) = &added[0];
    let call = Call {
        id: &cid,
        netns: &ns,
        ifname,
    };
    call.ours("CHECK", &with_prev(c, res)).ok();
    call.ours("DEL", &with_prev(c, res)).ok();
    assert!(!links_in(ns_name).contains("eth0"), "{}", links_in(ns_name));
    assert!(!sh_ok(&["ip", "link", "show", host_end]));
    // DEL without the namespace: the host side, by its record.
    let (ifname, c, res, host_end) = &added[1];
    Call {
        id: &cid,
        netns: "",
        ifname,
    }
    .ours("DEL", &with_prev(c, res))
    .ok();
    assert!(!sh_ok(&["ip", "link", "show", host_end]));
    assert!(!links_in(ns_name).contains("net1"), "{}", links_in(ns_name));
    // GC with only another container listed.
    let (_, c, _, host_end) = &added[2];
    let mut g = c.clone();
    g["cni.dev/valid-attachments"] = json!([{"containerID": "pwc-other", "ifname": "net2"}]);
    run(
        OURS,
        &[("CNI_COMMAND", "GC"), ("CNI_PATH", REF_DIR)],
        g.to_string().as_bytes(),
    )
    .ok();
    assert!(!sh_ok(&["ip", "link", "show", host_end]));
    assert!(!links_in(ns_name).contains("net2"), "{}", links_in(ns_name));
}
