//! The OVSDB client and ops against the real ovsdb-server + ovs-vswitchd
//! (userspace datapath in the test environment). Every object is named
//! `pwo*` and removed afterwards; `ovs-vsctl` is used only as an independent
//! witness of what is in the database, never by the code under test.
use pipework::ovsdb::{Connection, datapath, ops, socket_path};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

fn socket() -> Option<PathBuf> {
    let p = socket_path(None).ok()?;
    if p.exists() {
        Some(p)
    } else {
        eprintln!(
            "SKIP: no OVSDB socket at {} (set PIPEWORK_OVSDB)",
            p.display()
        );
        None
    }
}

fn vsctl(sock: &std::path::Path, args: &[&str]) -> String {
    let out = Command::new("ovs-vsctl")
        .arg(format!("--db=unix:{}", sock.display()))
        .args(args)
        .output()
        .expect("ovs-vsctl");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Removes the bridge and links whatever happens to the test.
struct Cleanup {
    sock: PathBuf,
    bridge: &'static str,
    links: Vec<&'static str>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        vsctl(&self.sock, &["--if-exists", "del-br", self.bridge]);
        for l in &self.links {
            let _ = Command::new("ip").args(["link", "del", l]).output();
        }
    }
}

fn veth(a: &str, b: &str) {
    let st = Command::new("ip")
        .args(["link", "add", a, "type", "veth", "peer", "name", b])
        .status()
        .unwrap();
    assert!(st.success());
    Command::new("ip")
        .args(["link", "set", a, "up"])
        .status()
        .unwrap();
}

fn link_exists(name: &str) -> bool {
    std::path::Path::new("/sys/class/net").join(name).exists()
}

#[tokio::test]
async fn bridge_and_veth_port_lifecycle() {
    let Some(sock) = socket() else { return };
    let _c = Cleanup {
        sock: sock.clone(),
        bridge: "pwolbr1",
        links: vec!["pwol1a"],
    };
    let mut conn = Connection::connect(&sock).await.unwrap();

    assert!(
        ops::find_bridge(&mut conn, "pwolbr1")
            .await
            .unwrap()
            .is_none()
    );
    let dp = datapath::for_new_bridge();
    assert_eq!(dp == "system", datapath::kernel_has_openvswitch());
    let br = ops::create_bridge(&mut conn, "pwolbr1", "netdev")
        .await
        .unwrap();
    assert_eq!(br.datapath_type, "netdev");
    assert_eq!(
        vsctl(&sock, &["get", "Bridge", "pwolbr1", "datapath_type"]),
        "netdev"
    );
    assert_eq!(
        ops::bridge_datapath_type(&mut conn, "pwolbr1")
            .await
            .unwrap()
            .as_deref(),
        Some("netdev")
    );
    // The bridge's own internal port exists once create_bridge returns:
    // vswitchd has applied it (cur_cfg caught up), so its tap is there.
    assert!(
        link_exists("pwolbr1"),
        "bridge device not created by vswitchd"
    );

    // A second create with the same name is bad input, not a crash.
    let dup = ops::create_bridge(&mut conn, "pwolbr1", "netdev")
        .await
        .unwrap_err();
    assert_eq!(dup.exit_code(), 2, "{dup}");

    veth("pwol1a", "pwol1b");
    let mut ids = BTreeMap::new();
    ids.insert(ops::MODE_KEY.to_string(), "veth".to_string());
    ids.insert("container_id".to_string(), "pwo-cid".to_string());
    let spec = ops::PortSpec {
        name: "pwol1a".into(),
        bridge: "pwolbr1".into(),
        tag: Some(10),
        trunks: vec![20, 21],
        ofport_request: Some(77),
        external_ids: ids.clone(),
        internal: false,
    };
    let added = ops::add_port(&mut conn, &spec).await.unwrap();
    assert_eq!(added.ofport, 77);
    assert_eq!(vsctl(&sock, &["get", "Port", "pwol1a", "tag"]), "10");
    assert_eq!(
        vsctl(&sock, &["get", "Port", "pwol1a", "trunks"]),
        "[20, 21]"
    );
    assert_eq!(
        vsctl(&sock, &["get", "Interface", "pwol1a", "ofport"]),
        "77"
    );
    assert_eq!(
        vsctl(
            &sock,
            &["get", "Interface", "pwol1a", "external_ids:container_id"]
        ),
        "pwo-cid"
    );
    assert_eq!(vsctl(&sock, &["port-to-br", "pwol1a"]), "pwolbr1");

    let rec = ops::find_port(&mut conn, "pwol1a").await.unwrap().unwrap();
    assert_eq!(rec.bridge.as_deref(), Some("pwolbr1"));
    assert_eq!(rec.tag, Some(10));
    assert_eq!(rec.trunks, vec![20, 21]);
    assert_eq!(rec.ofport, Some(77));
    assert_eq!(rec.external_ids, ids);
    let ours = ops::list_ports(&mut conn).await.unwrap();
    assert!(ours.iter().any(|p| p.name == "pwol1a"));
    // The bridge's own port carries no marker, so it is not listed as ours.
    assert!(!ours.iter().any(|p| p.name == "pwolbr1"));

    assert!(ops::delete_port(&mut conn, "pwol1a").await.unwrap());
    assert!(!ops::delete_port(&mut conn, "pwol1a").await.unwrap());
    assert!(ops::find_port(&mut conn, "pwol1a").await.unwrap().is_none());
    assert_eq!(
        vsctl(
            &sock,
            &["--if-exists", "get", "Interface", "pwol1a", "name"]
        ),
        ""
    );

    assert!(ops::delete_bridge(&mut conn, "pwolbr1").await.unwrap());
    assert!(
        ops::find_bridge(&mut conn, "pwolbr1")
            .await
            .unwrap()
            .is_none()
    );
    assert!(!ops::delete_bridge(&mut conn, "pwolbr1").await.unwrap());
}

#[tokio::test]
async fn failed_ports_leave_no_rows() {
    let Some(sock) = socket() else { return };
    let _c = Cleanup {
        sock: sock.clone(),
        bridge: "pwolbr2",
        links: vec!["pwol2a"],
    };
    let mut conn = Connection::connect(&sock).await.unwrap();
    ops::create_bridge(&mut conn, "pwolbr2", "netdev")
        .await
        .unwrap();

    // No such network device: vswitchd reports it in Interface.error; the
    // rows must be gone again when add_port returns.
    let ghost = ops::PortSpec {
        name: "pwolghost".into(),
        bridge: "pwolbr2".into(),
        ..Default::default()
    };
    let err = ops::add_port(&mut conn, &ghost).await.unwrap_err();
    assert!(err.to_string().contains("pwolghost"), "{err}");
    assert!(
        ops::find_port(&mut conn, "pwolghost")
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        vsctl(
            &sock,
            &["--if-exists", "get", "Interface", "pwolghost", "name"]
        ),
        ""
    );

    // Bridge that does not exist: nothing is written.
    veth("pwol2a", "pwol2b");
    let nobr = ops::PortSpec {
        name: "pwol2a".into(),
        bridge: "pwolnobr".into(),
        ..Default::default()
    };
    let err = ops::add_port(&mut conn, &nobr).await.unwrap_err();
    assert!(err.to_string().contains("pwolnobr"), "{err}");
    assert!(ops::find_port(&mut conn, "pwol2a").await.unwrap().is_none());

    // A name OVS cannot turn into a device is refused before any write.
    let long = ops::PortSpec {
        name: "pwo-much-too-long-name".into(),
        bridge: "pwolbr2".into(),
        ..Default::default()
    };
    let err = ops::add_port(&mut conn, &long).await.unwrap_err();
    assert_eq!(err.exit_code(), 2);
    assert!(
        ops::find_port(&mut conn, "pwo-much-too-long-name")
            .await
            .unwrap()
            .is_none()
    );

    // Clash with an existing port name (the bridge's own port).
    let clash = ops::PortSpec {
        name: "pwolbr2".into(),
        bridge: "pwolbr2".into(),
        ..Default::default()
    };
    let err = ops::add_port(&mut conn, &clash).await.unwrap_err();
    assert_eq!(err.exit_code(), 2, "{err}");

    // Only the bridge's own port is left.
    assert_eq!(vsctl(&sock, &["list-ports", "pwolbr2"]), "");
    ops::delete_bridge(&mut conn, "pwolbr2").await.unwrap();
}

#[tokio::test]
async fn internal_port_gets_a_device() {
    let Some(sock) = socket() else { return };
    let _c = Cleanup {
        sock: sock.clone(),
        bridge: "pwolbr3",
        links: vec![],
    };
    let mut conn = Connection::connect(&sock).await.unwrap();
    ops::create_bridge(&mut conn, "pwolbr3", "netdev")
        .await
        .unwrap();
    let spec = ops::PortSpec {
        name: "pwol3i".into(),
        bridge: "pwolbr3".into(),
        internal: true,
        tag: Some(4094),
        ..Default::default()
    };
    let added = ops::add_port(&mut conn, &spec).await.unwrap();
    assert!(added.ofport > 0);
    assert!(
        link_exists("pwol3i"),
        "vswitchd did not create the internal device"
    );
    assert_eq!(
        vsctl(&sock, &["get", "Interface", "pwol3i", "type"]),
        "internal"
    );
    ops::delete_port(&mut conn, "pwol3i").await.unwrap();
    assert!(!link_exists("pwol3i"), "internal device left behind");
    ops::delete_bridge(&mut conn, "pwolbr3").await.unwrap();
}
