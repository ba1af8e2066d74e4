//! OVS with the kernel (`system`) datapath: needs the openvswitch module,
//! which this host's kernel lacks, so it runs in the QEMU tier under
//! Debian's stock kernel:
//!
//!     cargo test --no-run --test ovs_vm
//!     scripts/vmtest.sh target/debug/deps/ovs_vm-<hash> --test-threads=1
//!
//! The test starts its own ovsdb-server and ovs-vswitchd (in the VM's
//! tmpfs) and stops them by pid. With 8021q available there, the trunk is
//! checked with real VLAN sub-interfaces in the trunk guest.
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn sh(cmd: &str, args: &[&str]) -> Output {
    Command::new(cmd).args(args).output().expect(cmd)
}

fn must(cmd: &str, args: &[&str]) {
    let o = sh(cmd, args);
    assert!(
        o.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// ovsdb-server + ovs-vswitchd of our own; stopped (by pid) on drop.
struct Ovs {
    dir: PathBuf,
    sock: String,
}

impl Ovs {
    fn start() -> Ovs {
        let dir = PathBuf::from("/tmp/pwo-vm-ovs");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let d = dir.display().to_string();
        let db = format!("{d}/conf.db");
        must(
            "ovsdb-tool",
            &["create", &db, "/usr/share/openvswitch/vswitch.ovsschema"],
        );
        must(
            "ovsdb-server",
            &[
                &db,
                &format!("--remote=punix:{d}/db.sock"),
                &format!("--pidfile={d}/ovsdb.pid"),
                &format!("--unixctl={d}/ovsdb.ctl"),
                &format!("--log-file={d}/ovsdb.log"),
                "--detach",
            ],
        );
        let sock = format!("unix:{d}/db.sock");
        must("ovs-vsctl", &[&format!("--db={sock}"), "--no-wait", "init"]);
        let o = Command::new("ovs-vswitchd")
            .env("OVS_RUNDIR", &d)
            .args([
                sock.as_str(),
                &format!("--pidfile={d}/vswitchd.pid"),
                &format!("--unixctl={d}/vswitchd.ctl"),
                &format!("--log-file={d}/vswitchd.log"),
                "--detach",
            ])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        Ovs { dir, sock }
    }

    fn vsctl(&self, args: &[&str]) -> String {
        let o = sh(
            "ovs-vsctl",
            &[&[format!("--db={}", self.sock).as_str()][..], args].concat(),
        );
        String::from_utf8_lossy(&o.stdout).trim().to_owned()
    }

    /// What to look at when traffic does not pass.
    fn diag(&self) -> String {
        let d = self.dir.display().to_string();
        let ctl = format!("{d}/vswitchd.ctl");
        let mut out = self.vsctl(&["show"]);
        for args in [
            &["-t", ctl.as_str(), "dpctl/show"][..],
            &["-t", ctl.as_str(), "dpctl/dump-flows"],
        ] {
            out.push_str(&String::from_utf8_lossy(&sh("ovs-appctl", args).stdout));
        }
        let log = std::fs::read_to_string(format!("{d}/vswitchd.log")).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(25).collect();
        out.push_str(&tail.into_iter().rev().collect::<Vec<_>>().join("\n"));
        out
    }

    fn pw(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_pipework"))
            .env("PIPEWORK_OVSDB", &self.sock)
            .args(args)
            .output()
            .unwrap()
    }

    fn pw_ok(&self, args: &[&str]) -> String {
        let o = self.pw(args);
        assert!(
            o.status.success(),
            "pipework {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stderr).into_owned()
    }
}

impl Drop for Ovs {
    fn drop(&mut self) {
        for p in ["vswitchd.pid", "ovsdb.pid"] {
            if let Ok(pid) = std::fs::read_to_string(self.dir.join(p))
                && let Ok(pid) = pid.trim().parse::<i32>()
            {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGTERM,
                );
            }
        }
    }
}

struct Ns(&'static str);

impl Ns {
    fn new(name: &'static str) -> Ns {
        let _ = sh("ip", &["netns", "del", name]);
        must("ip", &["netns", "add", name]);
        must("ip", &["-n", name, "link", "set", "lo", "up"]);
        Ns(name)
    }
    fn spec(&self) -> String {
        format!("netns:{}", self.0)
    }
    fn ip(&self, args: &[&str]) {
        must("ip", &[&["-n", self.0][..], args].concat());
    }
    fn ping(&self, ip: &str) -> bool {
        sh(
            "ip",
            &[
                "netns", "exec", self.0, "busybox", "ping", "-c", "1", "-W", "2", ip,
            ],
        )
        .status
        .success()
    }
}

impl Ns {
    /// Under TCG the kernel datapath's first packets go through slow
    /// upcalls to ovs-vswitchd and can time out: a reachability check gets
    /// a few tries (isolation checks keep the single try).
    fn reaches(&self, ip: &str) -> bool {
        (0..5).any(|_| self.ping(ip))
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        let _ = sh("ip", &["netns", "del", self.0]);
    }
}

#[test]
fn kernel_datapath_bridge_ports_tags_trunk_internal() {
    if !Path::new("/sys/module/openvswitch").exists() {
        eprintln!(
            "SKIP: this kernel has no openvswitch module; this test runs in the VM tier: \
             cargo test --no-run --test ovs_vm && scripts/vmtest.sh target/debug/deps/ovs_vm-<hash> --test-threads=1"
        );
        return;
    }
    let ovs = Ovs::start();
    let br = "ovspwok";
    let a = Ns::new("pwoka");
    let b = Ns::new("pwokb");
    let t = Ns::new("pwokt");
    let c = Ns::new("pwokc");

    // The classic rule creates the bridge on the kernel datapath, and
    // does not claim to have fallen back.
    let err = ovs.pw_ok(&[br, &a.spec(), "10.81.10.1/24", "@10"]);
    assert!(!err.contains("netdev"), "{err}");
    assert_eq!(ovs.vsctl(&["get", "Bridge", br, "datapath_type"]), "system");
    ovs.pw_ok(&[br, &b.spec(), "10.81.10.2/24", "@10"]);
    assert!(
        a.reaches("10.81.10.2"),
        "same tag, kernel datapath:\n{}\n{}",
        ovs.diag(),
        String::from_utf8_lossy(&sh("ip", &["-n", a.0, "addr"]).stdout)
    );

    // Internal port on the kernel datapath, different tag: isolated from
    // tag 10, reachable from the trunk below.
    ovs.pw_ok(&[
        br,
        "-i",
        "pwoki",
        &c.spec(),
        "10.81.20.3/24",
        "@20",
        "--ovs-internal",
    ]);
    assert!(!a.ping("10.81.20.3"));

    // Trunk carrying VLANs 10 and 20 into a guest that has real 802.1Q
    // sub-interfaces (8021q exists in this kernel).
    ovs.pw_ok(&[br, &t.spec(), "0/0", "--trunk", "10,20"]);
    for (vid, addr) in [("10", "10.81.10.9/24"), ("20", "10.81.20.9/24")] {
        let sub = format!("eth1.{vid}");
        t.ip(&[
            "link", "add", "link", "eth1", "name", &sub, "type", "vlan", "id", vid,
        ]);
        t.ip(&["addr", "add", addr, "dev", &sub]);
        t.ip(&["link", "set", &sub, "up"]);
    }
    assert!(t.reaches("10.81.10.1"), "VLAN 10 over the trunk");
    assert!(
        t.reaches("10.81.20.3"),
        "VLAN 20 over the trunk (to the internal port)"
    );
    // Those attaches reconfigured vswitchd: the internal port must still be
    // in its guest (a renamed one would have been deleted and re-created on
    // the host by now).
    assert!(
        sh("ip", &["-n", "pwokc", "link", "show", "pwoki"])
            .status
            .success(),
        "internal port lost from the guest"
    );

    // Detach leaves no rows and no devices.
    for g in [&a, &b, &c, &t] {
        ovs.pw_ok(&["detach", &g.spec()]);
    }
    assert_eq!(ovs.vsctl(&["list-ports", br]), "");
    let ifaces = ovs.vsctl(&["--columns=name", "find", "Interface", "type=internal"]);
    assert_eq!(
        ifaces.lines().filter(|l| l.contains("name")).count(),
        1,
        "{ifaces}"
    );
    ovs.vsctl(&["del-br", br]);
}
