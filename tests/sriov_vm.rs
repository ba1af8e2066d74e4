//! SR-IOV on real (emulated) hardware: QEMU's igb (Intel 82576, 7 VFs) with
//! Debian's igb and igbvf drivers. Runs in the VM tier, which adds the NIC
//! for tests whose name contains "sriov":
//!
//!     scripts/vm-tier.sh sriov_vm
//!
//! Elsewhere (no SR-IOV NIC) every test says so and passes without
//! asserting anything about VFs. pipework runs in the VM's own namespace
//! (where the PF is); guests are namespaces named `pws-*`; state files go
//! to a tmpfs directory of the VM.
use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const PIPEWORK: &str = env!("CARGO_BIN_EXE_pipework");
const STATE: &str = "/tmp/pws-state";

fn skip(why: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "SKIP: {why}");
}

fn run(bin: &str, args: &[&str]) -> Output {
    Command::new(bin)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{bin}: {e}"))
}

fn must(bin: &str, args: &[&str]) -> String {
    let o = run(bin, args);
    assert!(
        o.status.success(),
        "{bin} {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn pw(args: &[&str]) -> Output {
    Command::new(PIPEWORK)
        .args(args)
        .env("PIPEWORK_STATE_DIR", STATE)
        .output()
        .expect("run pipework")
}

fn pw_ok(args: &[&str]) -> String {
    let o = pw(args);
    assert!(
        o.status.success(),
        "pipework {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Must fail with one line on stderr; returns it.
fn pw_err(args: &[&str]) -> String {
    let o = pw(args);
    let e = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(
        !o.status.success(),
        "pipework {} unexpectedly succeeded",
        args.join(" ")
    );
    let lines: Vec<&str> = e.lines().filter(|l| !l.contains("rollback")).collect();
    assert_eq!(lines.len(), 1, "not one line: {e}");
    lines[0].to_string()
}

/// The PF: the first netdev with SR-IOV capability, with all its VFs
/// enabled (once per boot) and up (the igb PF must be up for its VFs).
fn pf() -> Option<&'static str> {
    static PF: OnceLock<Option<String>> = OnceLock::new();
    PF.get_or_init(|| {
        if !nix::unistd::Uid::effective().is_root() {
            skip("needs root");
            return None;
        }
        let found = std::fs::read_dir("/sys/class/net").ok()?.flatten().find_map(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            Path::new(&format!("/sys/class/net/{n}/device/sriov_totalvfs"))
                .exists()
                .then_some(n)
        });
        let Some(pf) = found else {
            skip(
                "no SR-IOV NIC here; these tests run in the VM tier with QEMU's igb: scripts/vm-tier.sh sriov_vm",
            );
            return None;
        };
        let dev = format!("/sys/class/net/{pf}/device");
        let total = std::fs::read_to_string(format!("{dev}/sriov_totalvfs")).ok()?;
        let num = std::fs::read_to_string(format!("{dev}/sriov_numvfs")).ok()?;
        if num.trim() != total.trim() {
            std::fs::write(format!("{dev}/sriov_numvfs"), "0").ok()?;
            std::fs::write(format!("{dev}/sriov_numvfs"), total.trim()).ok()?;
        }
        must("ip", &["link", "set", &pf, "up"]);
        // The VF netdevs appear as their driver probes them.
        let want: usize = total.trim().parse().ok()?;
        wait_for(|| vfs(&pf).iter().filter(|v| v.netdev.is_some()).count() == want);
        Some(pf)
    })
    .as_deref()
}

/// igb refuses a VF rate above the PF's link speed, and the speed is 0
/// while the link is down: after the VFs are (re)made the emulated PF
/// renegotiates for a moment. Tests that set `--max-tx-rate` wait for it.
fn wait_link(pf: &str) {
    let up = wait_for(|| {
        std::fs::read_to_string(format!("/sys/class/net/{pf}/speed"))
            .ok()
            .and_then(|s| s.trim().parse::<i64>().ok())
            .is_some_and(|v| v > 0)
    });
    assert!(up, "{pf}: no link speed after 20 s");
}

fn wait_for(mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + Duration::from_secs(20);
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    false
}

/// One VF as the host sees it.
#[derive(Debug, Clone, PartialEq)]
struct VfView {
    pci: String,
    /// Host netdev name, MTU, MAC (None while it is in a guest).
    netdev: Option<(String, String, String)>,
}

fn vfs(pf: &str) -> Vec<VfView> {
    let dev = format!("/sys/class/net/{pf}/device");
    let num: usize = std::fs::read_to_string(format!("{dev}/sriov_numvfs"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    (0..num)
        .map(|i| {
            let pci = std::fs::read_link(format!("{dev}/virtfn{i}"))
                .ok()
                .and_then(|t| t.file_name().map(|f| f.to_string_lossy().into_owned()))
                .unwrap_or_default();
            let netdev = std::fs::read_dir(format!("/sys/bus/pci/devices/{pci}/net"))
                .ok()
                .and_then(|mut rd| rd.next())
                .and_then(|e| e.ok())
                .map(|e| {
                    let n = e.file_name().to_string_lossy().into_owned();
                    let rd = |f: &str| {
                        std::fs::read_to_string(format!("/sys/class/net/{n}/{f}"))
                            .unwrap_or_default()
                            .trim()
                            .to_string()
                    };
                    let (mtu, mac) = (rd("mtu"), rd("address"));
                    (n, mtu, mac)
                });
            VfView { pci, netdev }
        })
        .collect()
}

/// `ip link show PF`'s line for each VF, split into the administrative
/// MAC and everything else.
fn pf_lines(pf: &str) -> BTreeMap<u32, (String, String)> {
    let out = must("ip", &["link", "show", pf]);
    out.lines()
        .filter_map(|l| {
            let l = l.trim();
            let rest = l.strip_prefix("vf ")?;
            let (n, rest) = rest.split_once(char::is_whitespace)?;
            let mut words: Vec<&str> = rest.split_whitespace().collect();
            let i = words.iter().position(|w| *w == "link/ether")?;
            let mac = words.get(i + 1)?.trim_end_matches(',').to_string();
            words.drain(i..=i + 1);
            Some((n.parse().ok()?, (mac, words.join(" "))))
        })
        .collect()
}

/// Everything that must come back after a detach or a rollback.
#[derive(Debug, Clone, PartialEq)]
struct Snapshot {
    vfs: Vec<VfView>,
    lines: BTreeMap<u32, (String, String)>,
}

fn snapshot(pf: &str) -> Snapshot {
    Snapshot {
        vfs: vfs(pf),
        lines: pf_lines(pf),
    }
}

/// The host as it was: every VF netdev back under its name, MTU and MAC,
/// every VF property as before. The administrative MAC is either what it
/// was or, when none was set, the VF's own MAC (igb reports the MAC the
/// VF driver registered once no administrative one is set).
fn assert_restored(before: &Snapshot, pf: &str, what: &str) {
    let now = snapshot(pf);
    assert_eq!(now.vfs, before.vfs, "{what}: VF netdevs differ");
    for (i, (mac0, rest0)) in &before.lines {
        let (mac, rest) = &now.lines[i];
        assert_eq!(rest, rest0, "{what}: VF {i}'s properties differ");
        let own = before.vfs[*i as usize]
            .netdev
            .as_ref()
            .map(|n| n.2.clone())
            .unwrap_or_default();
        assert!(
            mac == mac0 || *mac == own,
            "{what}: VF {i}'s MAC is {mac}, was {mac0} (its own {own})"
        );
    }
    let left: Vec<_> = std::fs::read_dir(format!("{STATE}/sriov"))
        .map(|rd| rd.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "{what}: state files left: {left:?}");
}

/// A namespace `pws-<tag>`, deleted on drop.
struct Ns(String);

impl Ns {
    fn new(tag: &str) -> Ns {
        let n = format!("pws-{tag}");
        let _ = run("ip", &["netns", "del", &n]);
        must("ip", &["netns", "add", &n]);
        must("ip", &["-n", &n, "link", "set", "lo", "up"]);
        Ns(n)
    }
    fn spec(&self) -> String {
        format!("netns:{}", self.0)
    }
    fn exec(&self, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.0])
            .args(args)
            .output()
            .expect("ip netns exec")
    }
    fn ip(&self, args: &[&str]) -> String {
        let mut a = vec!["-n", self.0.as_str()];
        a.extend_from_slice(args);
        must("ip", &a)
    }
    /// igbvf reports carrier a few seconds after it is brought up.
    fn wait_carrier(&self, ifname: &str) -> bool {
        wait_for(|| {
            self.exec(&["cat", &format!("/sys/class/net/{ifname}/carrier")])
                .stdout
                .starts_with(b"1")
        })
    }
    fn ping(&self, ip: &str) -> bool {
        (0..5).any(|_| {
            self.exec(&["busybox", "ping", "-c", "1", "-W", "2", ip])
                .status
                .success()
        })
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        let _ = pw(&["detach", &self.spec()]);
        let _ = run("ip", &["netns", "del", &self.0]);
    }
}

/// Run `f` on a thread inside namespace `ns`.
fn in_ns<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> std::thread::JoinHandle<T> {
    let path = format!("/var/run/netns/{ns}");
    std::thread::spawn(move || {
        let fd = std::fs::File::open(&path).expect("open netns");
        nix::sched::setns(&fd, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        f()
    })
}

/// The PCI address `ls` reports for a guest's interface.
fn ls_pci(guest: &str) -> Option<String> {
    let ls: serde_json::Value = serde_json::from_str(&pw_ok(&["ls", "--json"])).ok()?;
    ls.as_array()?
        .iter()
        .find(|e| e["guest"] == guest)
        .and_then(|e| e["sriov"]["pci"].as_str().map(str::to_string))
}

#[test]
fn sriov_two_guests_on_two_vfs_ping_and_carry_tcp() {
    let Some(pf) = pf() else { return };
    let before = snapshot(pf);
    let (a, b) = (Ns::new("a"), Ns::new("b"));
    // Used once with administrative MACs and given back first: a restored
    // VF must carry traffic again (its unicast filter intact).
    let (v0, v1) = (format!("vf:{pf}:0"), format!("vf:{pf}:1"));
    pw_ok(&[&v0, &a.spec(), "10.76.0.1/24", "02:5a:00:00:01:01"]);
    pw_ok(&[&v1, &b.spec(), "10.76.0.2/24", "02:5a:00:00:01:02"]);
    assert!(
        a.wait_carrier("eth1") && b.wait_carrier("eth1"),
        "no carrier"
    );
    assert!(a.ping("10.76.0.2"), "no ping between VFs with admin MACs");
    pw_ok(&["detach", &a.spec()]);
    pw_ok(&["detach", &b.spec()]);
    assert_restored(&before, pf, "after the first use");
    let vf = format!("vf:{pf}");
    pw_ok(&[&vf, &a.spec(), "10.77.0.1/24"]);
    pw_ok(&[&vf, &b.spec(), "10.77.0.2/24"]);
    let (pa, pb) = (ls_pci("pws-a"), ls_pci("pws-b"));
    assert!(pa.is_some() && pa != pb, "{pa:?} {pb:?}");
    assert!(
        a.wait_carrier("eth1") && b.wait_carrier("eth1"),
        "no carrier"
    );
    assert!(a.ping("10.77.0.2"), "no ping through the NIC's switch");

    // A TCP payload from a to b (sockets opened inside each namespace).
    let payload: Vec<u8> = (0..64 * 1024u32).map(|i| (i % 251) as u8).collect();
    let (tx, rx) = std::sync::mpsc::channel();
    let server = in_ns(&b.0, move || {
        let l = std::net::TcpListener::bind("10.77.0.2:5001").expect("bind");
        let _ = tx.send(());
        let (mut c, _) = l.accept().expect("accept");
        c.set_read_timeout(Some(Duration::from_secs(30))).ok();
        let mut got = Vec::new();
        std::io::Read::read_to_end(&mut c, &mut got).expect("read");
        got
    });
    rx.recv_timeout(Duration::from_secs(10)).expect("listener");
    let sent = payload.clone();
    in_ns(&a.0, move || {
        let mut c = std::net::TcpStream::connect_timeout(
            &"10.77.0.2:5001".parse().expect("addr"),
            Duration::from_secs(10),
        )
        .expect("connect");
        std::io::Write::write_all(&mut c, &sent).expect("send");
        c.shutdown(std::net::Shutdown::Write).expect("shutdown");
    })
    .join()
    .expect("client");
    let got = server.join().expect("server");
    assert!(
        got == payload,
        "payload: {} of {} bytes",
        got.len(),
        payload.len()
    );

    pw_ok(&["detach", &a.spec()]);
    pw_ok(&["detach", &b.spec()]);
    assert_restored(&before, pf, "after detaching both");
}

#[test]
fn sriov_properties_show_on_the_pf_and_go_with_detach() {
    let Some(pf) = pf() else { return };
    let before = snapshot(pf);
    let g = Ns::new("p");
    let spec = format!("vf:{pf}:2");
    wait_link(pf);
    pw_ok(&[
        &spec,
        &g.spec(),
        "-i",
        "data0",
        "--mtu",
        "9000",
        "10.78.0.1/24",
        "02:5a:00:00:00:02@42",
        "--spoofchk",
        "off",
        "--trust",
        "on",
        "--max-tx-rate",
        "100",
    ]);
    let (mac, rest) = pf_lines(pf)[&2].clone();
    assert_eq!(mac, "02:5a:00:00:00:02");
    for want in [
        "vlan 42",
        "spoof checking off",
        "trust on",
        "max_tx_rate 100Mbps",
    ] {
        assert!(rest.contains(want), "{want} not in: {rest}");
    }
    let link = g.ip(&["link", "show", "data0"]);
    assert!(
        link.contains("mtu 9000") && link.contains("02:5a:00:00:00:02"),
        "{link}"
    );
    let ls = pw_ok(&["ls"]);
    assert!(ls.contains(&format!("vf2 {}", before.vfs[2].pci)), "{ls}");

    // A second attach of the same VF is refused, naming who holds it.
    let h = Ns::new("q");
    let e = pw_err(&[&spec, &h.spec(), "0/0"]);
    assert!(e.contains("in use by pipework (guest pws-p)"), "{e}");

    // A dry run changes nothing.
    let dry = pw_ok(&["detach", &g.spec(), "-i", "data0", "--dry-run"]);
    assert!(dry.contains("netns 1"), "{dry}");
    assert!(
        g.ip(&["link", "show"]).contains("data0"),
        "dry run moved the VF"
    );
    let lines = pf_lines(pf);
    let any = format!("vf:{pf}");
    let plan = pw_ok(&[&any, &h.spec(), "--dry-run", "0/0", "@5", "--trust", "on"]);
    assert!(
        plan.contains("vlan 5") && plan.contains("trust on"),
        "{plan}"
    );
    assert_eq!(pf_lines(pf), lines, "a dry run changed a VF");
    assert_eq!(
        std::fs::read_dir(format!("{STATE}/sriov"))
            .map(|d| d.count())
            .unwrap_or(0),
        1
    );

    pw_ok(&["detach", &g.spec(), "-i", "data0"]);
    let (mac, rest) = pf_lines(pf)[&2].clone();
    assert_ne!(mac, "02:5a:00:00:00:02", "the admin MAC stayed");
    assert!(
        !rest.contains("vlan 42") && !rest.contains("max_tx_rate"),
        "{rest}"
    );
    assert_restored(&before, pf, "after detach");
}

#[test]
fn sriov_parallel_attaches_get_distinct_vfs_and_a_full_pf_fails_cleanly() {
    let Some(pf) = pf() else { return };
    let before = snapshot(pf);
    let total = before.vfs.len();
    assert_eq!(total, 7, "the emulated 82576 has 7 VFs");
    let guests: Vec<Ns> = (0..8).map(|i| Ns::new(&format!("par{i}"))).collect();
    let vf = format!("vf:{pf}");
    let attach = |range: std::ops::Range<usize>| -> Vec<Output> {
        let children: Vec<_> = range
            .map(|i| {
                Command::new(PIPEWORK)
                    .args([&vf, &guests[i].spec(), &format!("10.79.0.{}/24", i + 1)])
                    .env("PIPEWORK_STATE_DIR", STATE)
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .expect("spawn pipework")
            })
            .collect();
        children
            .into_iter()
            .map(|c| c.wait_with_output().expect("wait"))
            .collect()
    };
    for (i, o) in attach(0..6).iter().enumerate() {
        assert!(
            o.status.success(),
            "attach {i}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let pcis: HashSet<String> = (0..6)
        .filter_map(|i| ls_pci(&format!("pws-par{i}")))
        .collect();
    assert_eq!(pcis.len(), 6, "six attaches, six distinct VFs: {pcis:?}");

    // One VF left, two takers.
    let last = attach(6..8);
    let ok: Vec<&Output> = last.iter().filter(|o| o.status.success()).collect();
    assert_eq!(ok.len(), 1, "exactly one of the last two gets the last VF");
    let failed = last
        .iter()
        .find(|o| !o.status.success())
        .expect("one failed");
    let e = String::from_utf8_lossy(&failed.stderr);
    assert_eq!(e.trim_end().lines().count(), 1, "{e}");
    assert!(
        e.contains("no free VF") && e.contains(&format!("7 of {total} in use")),
        "{e}"
    );
    assert_eq!(
        std::fs::read_dir(format!("{STATE}/sriov"))
            .map(|d| d.count())
            .unwrap_or(0),
        7
    );
    for g in &guests {
        pw_ok(&["detach", &g.spec()]);
    }
    assert_restored(&before, pf, "after detaching all eight");
}

#[test]
fn sriov_a_late_failure_and_a_refused_property_roll_everything_back() {
    let Some(pf) = pf() else { return };
    let before = snapshot(pf);
    let g = Ns::new("rb");
    let spec = format!("vf:{pf}:4");
    wait_link(pf);
    // Late: the VF is configured, moved and up before DHCP gives up.
    let e = pw_err(&[
        &spec,
        &g.spec(),
        "--mtu",
        "4000",
        "dhcp:once",
        "--dhcp-timeout",
        "1",
        "02:5a:00:00:00:04@7",
        "--trust",
        "on",
        "--spoofchk",
        "off",
        "--max-tx-rate",
        "200",
    ]);
    assert!(e.to_lowercase().contains("dhcp"), "{e}");
    assert!(
        !g.ip(&["link", "show"]).contains("eth1"),
        "VF left in the guest"
    );
    assert_restored(&before, pf, "after a late failure");

    // Refused by the NIC after MAC and VLAN were set: igb has no VF link
    // state control. The error names the property and the errno.
    let e = pw_err(&[
        &spec,
        &g.spec(),
        "0/0",
        "02:5a:00:00:00:05@8",
        "--link-state",
        "enable",
    ]);
    assert!(
        e.contains("--link-state enable") && e.contains("EOPNOTSUPP"),
        "{e}"
    );
    assert_restored(&before, pf, "after a refused property");
    // And igb takes no minimum rate (EINVAL), nor 802.1ad VLANs.
    let e = pw_err(&[&spec, &g.spec(), "0/0", "--min-tx-rate", "10"]);
    assert!(
        e.contains("--min-tx-rate 10") && e.contains("EINVAL"),
        "{e}"
    );
    let e = pw_err(&[&spec, &g.spec(), "0/0", "@9", "--vlan-proto", "802.1ad"]);
    assert!(
        e.contains("802.1ad") && e.contains("EPROTONOSUPPORT"),
        "{e}"
    );
    assert_restored(&before, pf, "after refused rates and protocols");

    // Bad input: nothing changes.
    let e = pw_err(&[&format!("vf:{pf}:9"), &g.spec(), "0/0"]);
    assert!(e.contains("out of range") && e.contains("0-6"), "{e}");
    let e = pw_err(&["vf:lo", &g.spec(), "0/0"]);
    assert!(e.contains("not a PCI NIC"), "{e}");
    let e = pw_err(&[&spec, &g.spec(), "0/0", "--vlan-qos", "3"]);
    assert!(e.contains("needs a VLAN id"), "{e}");
    assert_restored(&before, pf, "after bad input");
}

#[test]
fn sriov_gc_returns_the_vf_of_a_deleted_namespace() {
    let Some(pf) = pf() else { return };
    let before = snapshot(pf);
    let g = Ns::new("gc");
    let spec = format!("vf:{pf}:5");
    pw_ok(&[
        &spec,
        &g.spec(),
        "-i",
        "eth1",
        "--mtu",
        "2000",
        "10.80.0.1/24",
        "02:5a:00:00:00:06@11",
        "--trust",
        "on",
    ]);
    // The guest dies without a detach: the kernel hands the VF back to the
    // host under the guest's name for it (or devN when that is taken).
    must("ip", &["netns", "del", &g.0]);
    assert!(
        wait_for(|| vfs(pf)[5].netdev.is_some()),
        "the VF did not come back to the host"
    );
    let out = pw_ok(&["gc"]);
    assert!(
        out.contains("sriov-vf") && out.contains("namespace is gone"),
        "{out}"
    );
    assert_restored(&before, pf, "after gc");
    // Nothing left to collect.
    assert!(!pw_ok(&["gc"]).contains("sriov-vf"));
}

/// Run pipework as a CNI plugin, the way a runtime does.
fn cni(cmd: &str, conf: &serde_json::Value, netns: &str, cid: &str) -> Output {
    use std::io::Write;
    let mut c = Command::new(PIPEWORK)
        .env("CNI_COMMAND", cmd)
        .env("CNI_CONTAINERID", cid)
        .env("CNI_NETNS", netns)
        .env("CNI_IFNAME", "net1")
        .env("CNI_PATH", "/usr/lib/cni")
        .env("PIPEWORK_STATE_DIR", STATE)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn pipework as CNI");
    let _ = c
        .stdin
        .take()
        .map(|mut i| i.write_all(conf.to_string().as_bytes()));
    c.wait_with_output().expect("CNI output")
}

#[test]
fn sriov_cni_add_del_with_a_sriov_cni_config() {
    let Some(pf) = pf() else { return };
    let before = snapshot(pf);
    let g = Ns::new("cni");
    let netns = format!("/var/run/netns/{}", g.0);
    // sriov-cni's own keys; only "type" changed.
    let conf = serde_json::json!({
        "cniVersion": "1.0.0",
        "name": "pws-sriovnet",
        "type": "pipework",
        "deviceID": before.vfs[3].pci,
        "vlan": 100,
        "vlanQoS": 2,
        "spoofchk": "off",
        "trust": "on",
        "max_tx_rate": 100,
        "mac": "02:5a:00:00:00:33",
        "ipam": {"type": "static", "addresses": [{"address": "10.81.0.5/24"}]}
    });
    wait_link(pf);
    let o = cni("ADD", &conf, &netns, "pws-cid1");
    assert!(
        o.status.success(),
        "ADD: {}",
        String::from_utf8_lossy(&o.stdout)
    );
    let res: serde_json::Value = serde_json::from_slice(&o.stdout).expect("result JSON");
    assert_eq!(res["interfaces"][0]["name"], "net1", "{res}");
    assert_eq!(res["interfaces"][0]["mac"], "02:5a:00:00:00:33", "{res}");
    assert_eq!(res["ips"][0]["address"], "10.81.0.5/24", "{res}");
    let (mac, rest) = pf_lines(pf)[&3].clone();
    assert_eq!(mac, "02:5a:00:00:00:33");
    for want in [
        "vlan 100, qos 2",
        "spoof checking off",
        "trust on",
        "max_tx_rate 100Mbps",
    ] {
        assert!(rest.contains(want), "{want} not in: {rest}");
    }
    assert!(g.ip(&["addr", "show", "net1"]).contains("10.81.0.5/24"));
    let o = cni("DEL", &conf, &netns, "pws-cid1");
    assert!(
        o.status.success(),
        "DEL: {}",
        String::from_utf8_lossy(&o.stdout)
    );
    assert_restored(&before, pf, "after CNI DEL");
    // DEL again: idempotent.
    assert!(cni("DEL", &conf, &netns, "pws-cid1").status.success());

    // The older form (master + vf), and a namespace destroyed before DEL
    // (as `ctr run --rm` does): DEL finds the VF back on the host.
    let conf = serde_json::json!({
        "cniVersion": "1.0.0",
        "name": "pws-sriovnet",
        "type": "pipework",
        "mode": "sriov",
        "master": pf,
        "vf": 6,
        "trust": "on",
        "ipam": {"type": "static", "addresses": [{"address": "10.81.0.6/24"}]}
    });
    let o = cni("ADD", &conf, &netns, "pws-cid2");
    assert!(
        o.status.success(),
        "ADD: {}",
        String::from_utf8_lossy(&o.stdout)
    );
    assert!(pf_lines(pf)[&6].1.contains("trust on"));
    must("ip", &["netns", "del", &g.0]);
    assert!(wait_for(|| vfs(pf)[6].netdev.is_some()), "VF 6 not back");
    let o = cni("DEL", &conf, "", "pws-cid2");
    assert!(
        o.status.success(),
        "DEL: {}",
        String::from_utf8_lossy(&o.stdout)
    );
    assert_restored(&before, pf, "after DEL without a namespace");
}

#[test]
fn sriov_a_pf_with_sriov_disabled_is_refused_in_one_line() {
    let Some(pf) = pf() else { return };
    let dev = format!("/sys/class/net/{pf}/device");
    let total = std::fs::read_to_string(format!("{dev}/sriov_totalvfs")).expect("totalvfs");
    std::fs::write(format!("{dev}/sriov_numvfs"), "0").expect("disable VFs");
    let g = Ns::new("off");
    let e = pw_err(&[&format!("vf:{pf}"), &g.spec(), "0/0"]);
    // Back as the other tests expect it before asserting anything.
    std::fs::write(format!("{dev}/sriov_numvfs"), total.trim()).expect("enable VFs");
    let want: usize = total.trim().parse().expect("a number");
    assert!(wait_for(|| vfs(pf)
        .iter()
        .filter(|v| v.netdev.is_some())
        .count()
        == want));
    assert!(
        e.contains("SR-IOV is disabled") && e.contains("sriov_numvfs"),
        "{e}"
    );
}

/// pipework under strace, killed at its `k`-th netlink send; true if it
/// was killed (false: it finished before reaching the k-th).
fn killed_at(k: u32, args: &[&str]) -> bool {
    let o = Command::new("strace")
        .args(["-f", "-o", "/dev/null", "-e", "trace=sendto", "-e"])
        .arg(format!("inject=sendto:signal=SIGKILL:when={k}"))
        .arg("--")
        .arg(PIPEWORK)
        .args(args)
        .env("PIPEWORK_STATE_DIR", STATE)
        .stdin(Stdio::null())
        .output()
        .expect("run strace");
    use std::os::unix::process::ExitStatusExt;
    o.status.signal() == Some(libc::SIGKILL)
        || String::from_utf8_lossy(&o.stderr).contains("killed by SIGKILL")
}

#[test]
fn sriov_sigkill_at_every_netlink_send_leaves_what_gc_or_a_rerun_finishes() {
    let Some(pf) = pf() else { return };
    if !run("strace", &["-V"]).status.success() {
        skip("no strace");
        return;
    }
    let before = snapshot(pf);
    let g = Ns::new("kill");
    let spec = format!("vf:{pf}:1");
    let args = [
        spec.as_str(),
        &g.spec(),
        "--mtu",
        "3000",
        "10.82.0.1/24",
        "02:5a:00:00:00:12@12",
        "--trust",
        "on",
        "--spoofchk",
        "off",
    ];
    let mut k = 1;
    loop {
        let killed = killed_at(k, &args);
        if !killed {
            pw_ok(&["detach", &g.spec()]);
            assert_restored(&before, pf, &format!("after the unkilled run k={k}"));
            break;
        }
        if k % 2 == 1 {
            // gc finishes or undoes what the killed run left; a detach
            // removes a committed attachment.
            let o = pw(&["gc"]);
            assert!(
                o.status.success(),
                "gc after a kill at send {k}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
        } else {
            // The next attach recognises the killed run's leftovers.
            let o = pw(&args);
            assert!(
                o.status.success(),
                "re-run after a kill at send {k}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
        }
        pw_ok(&["detach", &g.spec()]);
        assert_restored(&before, pf, &format!("killed at netlink send {k}"));
        k += 1;
        assert!(k < 80, "still killed at send {k}: is strace counting?");
    }
    assert!(k > 5, "only {k} sends: the kill points were not reached");

    // The same for detach: whatever a killed detach left, gc finishes.
    let mut k = 1;
    loop {
        pw_ok(&args);
        let killed = killed_at(k, &["detach", &g.spec()]);
        let o = pw(&["gc"]);
        assert!(
            o.status.success(),
            "gc after a detach killed at send {k}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        pw_ok(&["detach", &g.spec()]);
        assert_restored(&before, pf, &format!("detach killed at netlink send {k}"));
        if !killed {
            break;
        }
        k += 1;
        assert!(k < 80, "detach still killed at send {k}");
    }
}

/// Needs no SR-IOV NIC: runs on any host as root.
#[test]
fn sriov_flags_and_vf_names_are_checked_before_anything_changes() {
    if !nix::unistd::Uid::effective().is_root() {
        skip("needs root");
        return;
    }
    let g = Ns::new("flags");
    let links = g.ip(&["-o", "link", "show"]);
    let e = pw_err(&["lo", &g.spec(), "0/0", "--trust", "on"]);
    assert!(
        e.contains("--trust") && e.contains("only applies to SR-IOV VFs"),
        "{e}"
    );
    let e = pw_err(&["vf:pwsnope0", &g.spec(), "0/0"]);
    assert!(e.contains("no such interface pwsnope0"), "{e}");
    let e = pw_err(&["vf:lo:x", &g.spec(), "0/0"]);
    assert!(e.contains("must be a number"), "{e}");
    let e = pw_err(&["0000:ff:1f.7", &g.spec(), "0/0"]);
    assert!(e.contains("no PCI device 0000:ff:1f.7"), "{e}");
    let e = pw_err(&["vf:lo", &g.spec(), "0/0", "--link-state", "up"]);
    assert!(e.starts_with("pipework: up: --link-state takes"), "{e}");
    assert_eq!(g.ip(&["-o", "link", "show"]), links);
}
