//! `gc` and `detach` with one item they cannot remove: they still remove
//! the rest, then fail with one line naming the stuck item.
//!
//! For `detach`: a guest's first interface is still being attached by a
//! live pipework (waiting for a DHCP server that never answers), its
//! second is attached; detach removes the second and names the first.
//!
//! The stuck item is an OVS row of ours whose device is gone, in a private
//! ovsdb-server this test starts (and stops by pid) with no ovs-vswitchd
//! behind it: gc deletes the row, and the change is never applied, so the
//! removal times out. The items gc can remove: a link a dead pipework
//! left under a temporary name in a namespace the test creates (its veth
//! peer on the host), which gc's first pass meets, before the OVS rows;
//! and, in a private DHCP state directory, the state of a keeper that is
//! gone, which gc's last pass meets, after them. Everything carries the
//! `pwg` prefix.
mod common;
use common::*;
use std::path::Path;
use std::process::{Child, Command, Stdio};

const SCHEMA: &str = "/usr/share/openvswitch/vswitch.ovsschema";

/// Root and the OVSDB tools; in CI a missing one is a failure.
fn require_ovsdb() -> bool {
    let root = sh("id", &["-u"]).stdout.starts_with(b"0\n");
    let tools = ["ovsdb-server", "ovsdb-tool", "ovs-vsctl"].iter().all(|t| {
        sh("sh", &["-c", &format!("command -v {t}")])
            .status
            .success()
    });
    let schema = Path::new(SCHEMA).exists();
    if root && tools && schema {
        return true;
    }
    let why = format!(
        "needs root ({root}), ovsdb-server/ovsdb-tool/ovs-vsctl ({tools}) and {SCHEMA} ({schema}): run scripts/env-up.sh"
    );
    if std::env::var_os("CI").is_some() {
        panic!("{why}");
    }
    eprintln!("SKIP: {why}");
    false
}

/// A private ovsdb-server with no vswitchd: stopped by its pid, its files
/// removed, when dropped.
struct Ovsdb {
    dir: String,
    child: Child,
}

impl Ovsdb {
    fn start(tag: &str) -> Ovsdb {
        let dir = format!("/tmp/{}", uniq(tag));
        std::fs::create_dir_all(&dir).expect("mkdir");
        let db = format!("{dir}/conf.db");
        ok("ovsdb-tool", &["create", &db, SCHEMA]);
        let child = Command::new("ovsdb-server")
            .arg(&db)
            .arg(format!("--remote=punix:{dir}/db.sock"))
            .arg(format!("--unixctl={dir}/ctl"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("ovsdb-server");
        let s = Ovsdb { dir, child };
        for _ in 0..100 {
            if Path::new(&s.sock()).exists() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        s.vsctl(&["--no-wait", "init"]);
        s
    }
    fn sock(&self) -> String {
        format!("{}/db.sock", self.dir)
    }
    fn vsctl(&self, args: &[&str]) -> String {
        let db = format!("--db=unix:{}", self.sock());
        let mut a = vec![db.as_str()];
        a.extend_from_slice(args);
        ok("ovs-vsctl", &a)
    }
}

impl Drop for Ovsdb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A pid that is certainly not a running pipework: a child that exited.
fn dead_pid() -> u32 {
    let mut c = Command::new("true").spawn().expect("true");
    let pid = c.id();
    c.wait().expect("wait");
    pid
}

#[test]
fn gc_goes_on_past_a_stuck_item_and_names_it() {
    if !require_ovsdb() {
        return;
    }
    let ovs = Ovsdb::start("pwgdb");
    let br = uniq("pwgbr");
    let port = uniq("pwgp");
    ovs.vsctl(&["--no-wait", "add-br", &br]);
    ovs.vsctl(&[
        "--no-wait",
        "add-port",
        &br,
        &port,
        "--",
        "set",
        "interface",
        &port,
        "external_ids:pipework.mode=veth",
        "external_ids:pipework.container_name=pwg-gone",
        "external_ids:container_iface=eth1",
    ]);
    assert!(!Path::new("/sys/class/net").join(&port).exists());

    // A dead pipework's unnamed guest end, its peer on the host.
    let ns = Netns::new("pwgn");
    let host_end = uniq("pwgh");
    let temp = format!("pw.{:x}.1", dead_pid());
    ok(
        "ip",
        &[
            "link", "add", &host_end, "type", "veth", "peer", "name", &temp, "netns", &ns.name,
        ],
    );
    assert_eq!(ns.links_but_lo().len(), 1, "{:?}", ns.links_but_lo());

    // A DHCP keeper that died without cleaning up after itself.
    let dhcp = format!("{}/dhcp", ovs.dir);
    std::fs::create_dir_all(&dhcp).expect("mkdir");
    let kif = uniq("pwgk");
    let state = format!("{dhcp}/1-{kif}.json");
    std::fs::write(
        &state,
        format!(
            r#"{{"netns":"/run/netns/pwg-gone","ns_inode":1,"ifname":"{kif}","mac":[2,0,0,0,0,1],"hostname":null,"client_id":[],"lease":null,"acquired_ms":0,"state":"init","renewals":0,"pid":{}}}"#,
            dead_pid()
        ),
    )
    .expect("write keeper state");

    let o = Command::new(BIN)
        .arg("gc")
        .env("PIPEWORK_OVSDB", format!("unix:{}", ovs.sock()))
        .env("PIPEWORK_DHCP_DIR", &dhcp)
        .stdin(Stdio::null())
        .output()
        .expect("run pipework gc");
    let err = stderr(&o);
    // Stuck: exit 1 and one line naming the row, where it is and why.
    assert_eq!(
        o.status.code(),
        Some(1),
        "stdout {} stderr {err}",
        stdout(&o)
    );
    let line = err
        .lines()
        .find(|l| l.starts_with("pipework: gc: "))
        .unwrap_or_else(|| panic!("no gc error line in {err}"));
    eprintln!("{line}");
    // Only our row is stuck here (other leftovers on a shared host may add
    // to what gc collects, never to this).
    assert!(
        line.contains("1 item stuck")
            && line.contains(&format!("ovs-port {port} ({br})"))
            && line.contains("ovs-vswitchd did not apply"),
        "{line}"
    );
    // The rest was done all the same.
    assert!(
        ns.links_but_lo().is_empty(),
        "the dead pipework's link is left: {:?}",
        ns.links_but_lo()
    );
    assert!(!Path::new("/sys/class/net").join(&host_end).exists());
    assert!(
        !Path::new(&state).exists(),
        "the dead keeper's state is left (gc stopped at the stuck row?)"
    );
    let others: usize = line
        .rsplit("; ")
        .next()
        .and_then(|t| t.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(others >= 2, "{line}");
    let _ = sh("ip", &["link", "del", &host_end]);
}

/// Whether `ns` has a link called `ifname`.
fn has_link(ns: &Netns, ifname: &str) -> bool {
    ns.exec(&["ip", "link", "show", ifname]).status.success()
}

#[test]
fn detach_goes_on_past_an_interface_being_attached_and_names_it() {
    let root = sh("id", &["-u"]).stdout.starts_with(b"0\n");
    if !root {
        assert!(std::env::var_os("CI").is_none(), "needs root");
        eprintln!("SKIP: needs root");
        return;
    }
    let br = BridgeGuard::new("brpwg");
    let ns = Netns::new("pwgd");
    let guest = ns.spec();
    // eth2 first: a DHCP attach with no server keeps its builder's pid in
    // the record for as long as it waits.
    let mut slow = Command::new(BIN)
        .args([&br.0, &guest, "dhcp", "-i", "eth2", "--dhcp-timeout", "5"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("run pipework");
    let t = std::time::Instant::now();
    while !has_link(&ns, "eth2") && t.elapsed().as_secs() < 5 {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(has_link(&ns, "eth2"), "eth2 never appeared");
    pipework_ok(&[&br.0, &guest, "10.98.0.2/24", "-i", "eth1"]);

    let o = pipework(&["detach", &guest]);
    let err = stderr(&o);
    eprintln!("{err}");
    assert!(!o.status.success(), "detach succeeded: {err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("eth2: is being attached right now by pipework pid")
            && err.contains("(detached: eth1)"),
        "{err}"
    );
    assert!(!has_link(&ns, "eth1"), "eth1 is still there");
    assert!(has_link(&ns, "eth2"), "the attach in progress was touched");

    // The slow attach gives up and rolls itself back.
    let _ = slow.wait();
    assert!(ns.links_but_lo().is_empty(), "{:?}", ns.links_but_lo());
}
