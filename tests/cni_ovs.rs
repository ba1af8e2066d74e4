//! Mode "ovs" through CNI: two containers on an Open vSwitch bridge
//! (userspace datapath, real ovsdb-server/ovs-vswitchd from
//! scripts/env-up.sh) get their addresses, reach each other, and DEL —
//! also after the namespace is gone — leaves no port row behind.
mod cni_util;

use cni_util::{Call, Scratch, sh, sh_ok, with_prev};
use serde_json::json;

fn db() -> String {
    std::env::var("PIPEWORK_OVSDB").unwrap_or_else(|_| {
        format!(
            "unix:{}/ovs/db.sock",
            std::env::var("PW_ENV").unwrap_or_else(|_| "/tmp/pw-env".into())
        )
    })
}

struct OvsBridge(String, String);
impl Drop for OvsBridge {
    fn drop(&mut self) {
        let _ = sh_ok(&[
            "ovs-vsctl",
            &format!("--db={}", self.1),
            "--if-exists",
            "del-br",
            &self.0,
        ]);
    }
}

fn ports(db: &str, br: &str) -> String {
    sh(&["ovs-vsctl", &format!("--db={db}"), "list-ports", br])
}

#[test]
fn ovs_mode_attaches_pings_and_cleans_up() {
    require_env!();
    let db = db();
    let sock = db.trim_start_matches("unix:").to_string();
    if !std::path::Path::new(&sock).exists() || !sh_ok(&["ovs-vsctl", "--version"]) {
        eprintln!("SKIP: no OVSDB socket at {sock} (scripts/env-up.sh starts OVS)");
        return;
    }
    let mut s = Scratch::default();
    let br = "pwcovs1".to_string();
    let _ = sh_ok(&[
        "ovs-vsctl",
        &format!("--db={db}"),
        "--if-exists",
        "del-br",
        &br,
    ]);
    assert!(sh_ok(&[
        "ovs-vsctl",
        &format!("--db={db}"),
        "add-br",
        &br,
        "--",
        "set",
        "bridge",
        &br,
        "datapath_type=netdev"
    ]));
    let _guard = OvsBridge(br.clone(), db.clone());
    let ns1 = s.netns("pwc-ovs-a");
    let ns2 = s.netns("pwc-ovs-b");
    let conf = |addr: &str| {
        json!({
            "cniVersion": "1.1.0", "name": "pwcovs", "type": "pipework", "mode": "ovs",
            "bridge": br, "socket_file": db,
            "ipam": {"type": "static", "addresses": [{"address": addr}]}
        })
    };
    let (c1, c2) = (conf("10.231.70.1/24"), conf("10.231.70.2/24"));
    let a = Call {
        id: "pwc-ovs-a",
        netns: &ns1,
        ifname: "eth0",
    };
    let b = Call {
        id: "pwc-ovs-b",
        netns: &ns2,
        ifname: "eth0",
    };
    let ra = a.ours("ADD", &c1).ok().clone();
    let rb = b.ours("ADD", &c2).ok().clone();
    assert_eq!(ra["interfaces"][0]["name"], br.as_str(), "{ra}");
    let port = ra["interfaces"][1]["name"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(ports(&db, &br).contains(&port), "port {port} on {br}");
    assert!(
        sh_ok(&[
            "ip",
            "netns",
            "exec",
            "pwc-ovs-a",
            "busybox",
            "ping",
            "-c",
            "1",
            "-W",
            "3",
            "10.231.70.2"
        ]),
        "a reaches b over OVS"
    );
    a.ours("CHECK", &with_prev(&c1, &ra)).ok();
    a.ours("DEL", &with_prev(&c1, &ra)).ok();
    a.ours("DEL", &with_prev(&c1, &ra)).ok();
    assert!(!ports(&db, &br).contains(&port), "DEL removed {port}");
    // b's namespace disappears first; DEL without it still removes the row.
    assert!(sh_ok(&["ip", "netns", "del", "pwc-ovs-b"]));
    Call {
        id: "pwc-ovs-b",
        netns: "",
        ifname: "eth0",
    }
    .ours("DEL", &with_prev(&c2, &rb))
    .ok();
    assert!(
        ports(&db, &br).trim().is_empty(),
        "no rows left: {}",
        ports(&db, &br)
    );
}
