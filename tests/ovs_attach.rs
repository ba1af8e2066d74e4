//! The `pipework` binary against real Open vSwitch (ovsdb-server +
//! ovs-vswitchd, userspace datapath in the test environment) and real
//! network namespaces / Docker containers this test creates.
//!
//! Every object is named with the `pwo` prefix (OVS bridges that pipework
//! must create by the classic rule start with `ovs`, so they are `ovspwo*`)
//! and removed afterwards. `ovs-vsctl` is used only as an independent
//! witness of the database contents, never to set things up for pipework.
use pipework::ovsdb::{Connection, ops, socket_path};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

// ---- environment ----------------------------------------------------------

fn ovsdb() -> Option<PathBuf> {
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("SKIP: needs root");
        return None;
    }
    let p = socket_path(None).ok()?;
    if p.exists() {
        Some(p)
    } else {
        eprintln!(
            "SKIP: no OVSDB socket at {} (start OVS; set PIPEWORK_OVSDB)",
            p.display()
        );
        None
    }
}

fn pw(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pipework"))
        .args(args)
        .output()
        .expect("run pipework")
}

fn ok(args: &[&str]) -> String {
    let out = pw(args);
    assert!(
        out.status.success(),
        "pipework {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn vsctl(sock: &Path, args: &[&str]) -> String {
    let out = Command::new("ovs-vsctl")
        .arg(format!("--db=unix:{}", sock.display()))
        .args(args)
        .output()
        .expect("ovs-vsctl");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn sh(cmd: &str, args: &[&str]) -> Output {
    Command::new(cmd).args(args).output().expect(cmd)
}

/// Named namespaces and OVS bridges, removed on drop (also on panic).
struct Scene {
    sock: PathBuf,
    netns: Vec<String>,
    bridges: Vec<String>,
    containers: Vec<String>,
}

impl Scene {
    fn new(sock: &Path) -> Self {
        Scene {
            sock: sock.to_path_buf(),
            netns: vec![],
            bridges: vec![],
            containers: vec![],
        }
    }

    fn netns(&mut self, name: &str) -> String {
        let _ = sh("ip", &["netns", "del", name]);
        assert!(sh("ip", &["netns", "add", name]).status.success());
        sh("ip", &["-n", name, "link", "set", "lo", "up"]);
        self.netns.push(name.to_owned());
        format!("netns:{name}")
    }

    /// A bridge pipework will find (or create) — remembered for cleanup.
    fn bridge(&mut self, name: &str) -> String {
        vsctl(&self.sock, &["--if-exists", "del-br", name]);
        self.bridges.push(name.to_owned());
        name.to_owned()
    }

    async fn existing_bridge(&mut self, name: &str) -> String {
        let name = self.bridge(name);
        let mut c = Connection::connect(&self.sock).await.unwrap();
        ops::create_bridge(&mut c, &name, "netdev").await.unwrap();
        name
    }

    fn ports(&self, bridge: &str) -> Vec<String> {
        vsctl(&self.sock, &["list-ports", bridge])
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

impl Drop for Scene {
    fn drop(&mut self) {
        for c in &self.containers {
            let _ = sh("docker", &["rm", "-f", c]);
        }
        for n in &self.netns {
            let _ = sh("ip", &["netns", "del", n]);
        }
        for b in &self.bridges {
            vsctl(&self.sock, &["--if-exists", "del-br", b]);
        }
    }
}

fn ping(ns: &str, ip: &str) -> bool {
    sh(
        "ip",
        &[
            "netns", "exec", ns, "busybox", "ping", "-c", "1", "-W", "2", ip,
        ],
    )
    .status
    .success()
}

/// Host-side links whose name starts with `prefix`.
fn host_links(prefix: &str) -> Vec<String> {
    std::fs::read_dir("/sys/class/net")
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(prefix))
        .collect()
}

fn guest_has(ns: &str, ifname: &str) -> bool {
    sh("ip", &["-n", ns, "link", "show", ifname])
        .status
        .success()
}

/// Ports pipework recorded (our marker in external_ids) on `bridge`.
async fn our_ports(sock: &Path, bridge: &str) -> Vec<ops::PortRecord> {
    let mut c = Connection::connect(sock).await.unwrap();
    ops::list_ports(&mut c)
        .await
        .unwrap()
        .into_iter()
        .filter(|p| p.bridge.as_deref() == Some(bridge))
        .collect()
}

/// Interface rows anywhere in OVSDB whose name is `name`.
fn interface_rows(sock: &Path, name: &str) -> String {
    vsctl(
        sock,
        &[
            "--columns=name",
            "find",
            "Interface",
            &format!("name={name}"),
        ],
    )
}

// ---- raw Ethernet frames (the host kernel has no 8021q) --------------------

const ETH_P_ALL: u16 = 0x0003;
const ETHERTYPE_TEST: u16 = 0x88b5; // IEEE local experimental

/// An AF_PACKET socket bound to `ifname` inside namespace `ns`.
fn packet_socket(ns: &str, ifname: &str) -> OwnedFd {
    let netns = pipework::netns::NetNs::open(&PathBuf::from(format!("/run/netns/{ns}"))).unwrap();
    let ifname = ifname.to_owned();
    netns
        .run(move || {
            // SAFETY: plain socket/bind/setsockopt calls on an fd we own.
            unsafe {
                let fd = libc::socket(
                    libc::AF_PACKET,
                    libc::SOCK_RAW,
                    i32::from(ETH_P_ALL.to_be()),
                );
                assert!(fd >= 0, "AF_PACKET socket");
                let cname = std::ffi::CString::new(ifname).unwrap();
                let index = libc::if_nametoindex(cname.as_ptr());
                assert!(index > 0, "no such interface");
                let mut sll: libc::sockaddr_ll = std::mem::zeroed();
                sll.sll_family = libc::AF_PACKET as u16;
                sll.sll_protocol = ETH_P_ALL.to_be();
                sll.sll_ifindex = index as i32;
                let r = libc::bind(
                    fd,
                    &sll as *const _ as *const libc::sockaddr,
                    std::mem::size_of::<libc::sockaddr_ll>() as u32,
                );
                assert_eq!(r, 0, "bind AF_PACKET");
                let tv = libc::timeval {
                    tv_sec: 0,
                    tv_usec: 200_000,
                };
                libc::setsockopt(
                    fd,
                    libc::SOL_SOCKET,
                    libc::SO_RCVTIMEO,
                    &tv as *const _ as *const libc::c_void,
                    std::mem::size_of::<libc::timeval>() as u32,
                );
                let one: libc::c_int = 1;
                libc::setsockopt(
                    fd,
                    libc::SOL_PACKET,
                    libc::PACKET_AUXDATA,
                    &one as *const _ as *const libc::c_void,
                    4,
                );
                OwnedFd::from_raw_fd(fd)
            }
        })
        .unwrap()
}

/// A broadcast frame carrying `marker`, 802.1Q-tagged with `vid` if given.
fn frame(vid: Option<u16>, marker: &str) -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend([0x02, 0x70, 0x77, 0x6f, 0x00, 0x01]);
    if let Some(v) = vid {
        f.extend(0x8100u16.to_be_bytes());
        f.extend(v.to_be_bytes());
    }
    f.extend(ETHERTYPE_TEST.to_be_bytes());
    f.extend(marker.as_bytes());
    if f.len() < 60 {
        f.resize(60, 0);
    }
    f
}

fn send(fd: &OwnedFd, frame: &[u8]) {
    // SAFETY: send on a bound packet socket.
    let n = unsafe {
        libc::send(
            fd.as_raw_fd(),
            frame.as_ptr() as *const libc::c_void,
            frame.len(),
            0,
        )
    };
    assert_eq!(n as usize, frame.len(), "send frame");
}

/// A received test frame: its payload and the VLAN it carried (from the
/// in-band tag or, when the kernel stripped it, PACKET_AUXDATA).
#[derive(Debug)]
struct Got {
    vid: Option<u16>,
    payload: String,
}

/// Collect our test frames arriving on `fd` for about `window`.
fn receive(fd: &OwnedFd, window: Duration) -> Vec<Got> {
    let mut out = Vec::new();
    let end = Instant::now() + window;
    while Instant::now() < end {
        let mut buf = [0u8; 2048];
        let mut cbuf = [0u8; 256];
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr() as *mut libc::c_void,
            iov_len: buf.len(),
        };
        // SAFETY: msghdr points at our stack buffers for the call.
        let (n, vlan_aux) = unsafe {
            let mut msg: libc::msghdr = std::mem::zeroed();
            msg.msg_iov = &mut iov;
            msg.msg_iovlen = 1;
            msg.msg_control = cbuf.as_mut_ptr() as *mut libc::c_void;
            msg.msg_controllen = cbuf.len();
            let n = libc::recvmsg(fd.as_raw_fd(), &mut msg, 0);
            let mut vlan = None;
            let mut c = libc::CMSG_FIRSTHDR(&msg);
            while !c.is_null() {
                if (*c).cmsg_level == libc::SOL_PACKET && (*c).cmsg_type == libc::PACKET_AUXDATA {
                    let aux = &*(libc::CMSG_DATA(c) as *const libc::tpacket_auxdata);
                    if aux.tp_status & libc::TP_STATUS_VLAN_VALID != 0 {
                        vlan = Some(aux.tp_vlan_tci & 0x0fff);
                    }
                }
                c = libc::CMSG_NXTHDR(&msg, c);
            }
            (n, vlan)
        };
        if n < 14 {
            continue;
        }
        let f = &buf[..n as usize];
        let (vid, rest) = if f[12..14] == 0x8100u16.to_be_bytes() {
            (Some(u16::from_be_bytes([f[14], f[15]]) & 0x0fff), &f[16..])
        } else {
            (vlan_aux, &f[12..])
        };
        if rest[..2] != ETHERTYPE_TEST.to_be_bytes() {
            continue;
        }
        let payload: String = String::from_utf8_lossy(&rest[2..])
            .trim_end_matches('\0')
            .to_owned();
        out.push(Got { vid, payload });
    }
    out
}

// ---- tests ------------------------------------------------------------------

#[tokio::test]
async fn classic_ovs_name_creates_bridge_and_two_guests_talk() {
    let Some(sock) = ovsdb() else { return };
    let mut s = Scene::new(&sock);
    let br = s.bridge("ovspwo1");
    let a = s.netns("pwo1a");
    let b = s.netns("pwo1b");

    let out = pw(&[&br, &a, "10.91.0.1/24"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Created by the classic rule, with the datapath this kernel supports,
    // and said so.
    let dp = vsctl(&sock, &["get", "Bridge", &br, "datapath_type"]);
    let kernel = pipework::ovsdb::datapath::kernel_has_openvswitch();
    assert_eq!(dp, if kernel { "system" } else { "netdev" });
    if !kernel {
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("netdev"), "no datapath note: {err}");
    }
    ok(&[&br, &b, "10.91.0.2/24"]);

    assert!(ping("pwo1a", "10.91.0.2"));
    assert!(ping("pwo1b", "10.91.0.1"));

    // A TCP payload crosses intact (the listener keeps stdin open: busybox
    // nc stops reading the network when its stdin hits EOF).
    let payload: Vec<u8> = (0..300_000u32).map(|i| (i * 7 + i / 251) as u8).collect();
    let file = std::env::temp_dir().join("pwo1-payload");
    let recv = std::env::temp_dir().join("pwo1-received");
    std::fs::write(&file, &payload).unwrap();
    let _ = std::fs::remove_file(&recv);
    let listener = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "sleep 8 | ip netns exec pwo1b busybox nc -l -p 5555 > {}",
            recv.display()
        ))
        .spawn()
        .unwrap();
    // Wait until the listener is bound (bounded retry, no timing asserted).
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        let ss = sh("ip", &["netns", "exec", "pwo1b", "ss", "-ltn"]);
        if String::from_utf8_lossy(&ss.stdout).contains(":5555") {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let sent = Command::new("ip")
        .args([
            "netns",
            "exec",
            "pwo1a",
            "busybox",
            "nc",
            "10.91.0.2",
            "5555",
        ])
        .stdin(Stdio::from(std::fs::File::open(&file).unwrap()))
        .status()
        .unwrap();
    assert!(sent.success());
    let deadline = Instant::now() + Duration::from_secs(8);
    let mut got = Vec::new();
    while Instant::now() < deadline {
        got = std::fs::read(&recv).unwrap_or_default();
        if got.len() >= payload.len() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut listener = listener;
    let _ = listener.kill();
    let _ = listener.wait();
    assert_eq!(got.len(), payload.len(), "TCP payload truncated");
    assert!(got == payload, "TCP payload corrupted");
    let _ = std::fs::remove_file(&file);
    let _ = std::fs::remove_file(&recv);

    // external_ids record who the port belongs to.
    let ours = our_ports(&sock, &br).await;
    assert_eq!(ours.len(), 2);
    let names: Vec<&str> = ours
        .iter()
        .filter_map(|p| {
            p.external_ids
                .get("pipework.container_name")
                .map(String::as_str)
        })
        .collect();
    assert!(
        names.contains(&"pwo1a") && names.contains(&"pwo1b"),
        "{names:?}"
    );
    assert!(
        ours.iter()
            .all(|p| p.external_ids.get("container_iface").map(String::as_str) == Some("eth1"))
    );

    // `ls` shows both as OVS attachments.
    let ls = ok(&["ls", "--json"]);
    let ls: serde_json::Value = serde_json::from_str(&ls).unwrap();
    let mine: Vec<&serde_json::Value> = ls
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["host"] == br.as_str())
        .collect();
    assert_eq!(mine.len(), 2, "{ls}");
    assert!(mine.iter().all(|e| e["kind"] == "ovs"));

    // Detach leaves no rows and no veth.
    let host_ifs: Vec<String> = ours.iter().map(|p| p.name.clone()).collect();
    ok(&["detach", &a]);
    ok(&["detach", &b]);
    assert!(our_ports(&sock, &br).await.is_empty());
    assert!(s.ports(&br).is_empty(), "{:?}", s.ports(&br));
    for h in &host_ifs {
        assert_eq!(interface_rows(&sock, h), "", "Interface row {h} left");
        assert!(host_links(h).is_empty(), "veth {h} left");
    }
    assert!(!guest_has("pwo1a", "eth1"));
    // Detach again: nothing to do, still success.
    ok(&["detach", &a]);
}

#[tokio::test]
async fn docker_containers_on_ovs_ping_and_pass_tcp() {
    let Some(sock) = ovsdb() else { return };
    if std::env::var_os("DOCKER_HOST").is_none() && !Path::new("/var/run/docker.sock").exists() {
        eprintln!("SKIP: no Docker engine (DOCKER_HOST unset)");
        return;
    }
    let mut s = Scene::new(&sock);
    let br = s.existing_bridge("pwob2").await;
    for c in ["pwo2c1", "pwo2c2"] {
        let _ = sh("docker", &["rm", "-f", c]);
        let out = sh(
            "docker",
            &[
                "run",
                "-d",
                "--name",
                c,
                "--network",
                "none",
                "bb:latest",
                "/bin/sleep",
                "600",
            ],
        );
        assert!(
            out.status.success(),
            "docker run: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        s.containers.push(c.to_owned());
    }
    ok(&[&br, "pwo2c1", "10.92.0.1/24"]);
    ok(&[&br, "pwo2c2", "10.92.0.2/24"]);

    let ping = sh(
        "docker",
        &["exec", "pwo2c1", "ping", "-c", "1", "-W", "2", "10.92.0.2"],
    );
    assert!(
        ping.status.success(),
        "{}",
        String::from_utf8_lossy(&ping.stdout)
    );

    // TCP: receiver keeps its stdin open, sender streams a known payload.
    let payload: Vec<u8> = (0..200_000u32)
        .map(|i| (i % 253) as u8 ^ (i >> 8) as u8)
        .collect();
    let mut listener = Command::new("docker")
        .args([
            "exec",
            "pwo2c2",
            "sh",
            "-c",
            "sleep 8 | nc -l -p 6000 > /tmp/got",
        ])
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut sent = false;
    while Instant::now() < deadline && !sent {
        let mut child = Command::new("docker")
            .args(["exec", "-i", "pwo2c1", "nc", "10.92.0.2", "6000"])
            .stdin(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        use std::io::Write;
        let wrote = child.stdin.take().unwrap().write_all(&payload).is_ok();
        sent = child.wait().unwrap().success() && wrote;
        if !sent {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    assert!(sent, "could not connect to the listener");
    let deadline = Instant::now() + Duration::from_secs(8);
    let mut got = Vec::new();
    while Instant::now() < deadline {
        got = sh("docker", &["exec", "pwo2c2", "cat", "/tmp/got"]).stdout;
        if got.len() >= payload.len() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = listener.kill();
    let _ = listener.wait();
    assert_eq!(got.len(), payload.len(), "TCP payload truncated");
    assert!(got == payload, "TCP payload corrupted");

    // The container id is recorded on the port (pipework#212).
    let id = String::from_utf8_lossy(&sh("docker", &["inspect", "-f", "{{.Id}}", "pwo2c1"]).stdout)
        .trim()
        .to_owned();
    let ours = our_ports(&sock, &br).await;
    assert!(
        ours.iter()
            .any(|p| p.external_ids.get("container_id") == Some(&id)
                && p.external_ids
                    .get("pipework.container_name")
                    .map(String::as_str)
                    == Some("pwo2c1")
                && p.external_ids.contains_key("pipework.pid")),
        "{ours:?}"
    );
    ok(&["detach", "pwo2c1"]);
    assert_eq!(s.ports(&br).len(), 1);
    // A container removed before detach takes its veth with it but leaves
    // the OVS row (pipework#143); detach by name still cleans that up.
    assert!(sh("docker", &["rm", "-f", "pwo2c2"]).status.success());
    assert_eq!(s.ports(&br).len(), 1, "row should outlive the container");
    ok(&["detach", "pwo2c2"]);
    assert!(s.ports(&br).is_empty(), "{:?}", s.ports(&br));
}

#[tokio::test]
async fn detach_of_a_vanished_namespace_removes_its_stale_rows() {
    let Some(sock) = ovsdb() else { return };
    let mut s = Scene::new(&sock);
    let br = s.existing_bridge("pwob8").await;
    let a = s.netns("pwo8a");
    let b = s.netns("pwo8b");
    ok(&[&br, &a, "10.98.8.1/24"]);
    ok(&[&br, &b, "10.98.8.2/24"]);
    assert!(sh("ip", &["netns", "del", "pwo8a"]).status.success());
    assert_eq!(s.ports(&br).len(), 2, "row should outlive the namespace");
    // `ls` shows the stale port (once the kernel has torn the namespace
    // and its veth down, which it does asynchronously).
    let deadline = Instant::now() + Duration::from_secs(5);
    let stale = loop {
        let ls: serde_json::Value = serde_json::from_str(&ok(&["ls", "--json"])).unwrap();
        let found =
            ls.as_array().unwrap().iter().any(|e| {
                e["guest"] == "pwo8a" && e["kind"] == "ovs-stale" && e["host"] == br.as_str()
            });
        if found || Instant::now() > deadline {
            break found;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(stale, "ls does not list the stale OVS port");
    ok(&["detach", &a]);
    let left = our_ports(&sock, &br).await;
    assert_eq!(left.len(), 1, "{left:?}");
    // Only the vanished guest's port went; the live one is untouched.
    assert_eq!(
        left[0]
            .external_ids
            .get("pipework.container_name")
            .map(String::as_str),
        Some("pwo8b")
    );
    assert!(guest_has("pwo8b", "eth1"));
}

#[tokio::test]
async fn access_tags_isolate() {
    let Some(sock) = ovsdb() else { return };
    let mut s = Scene::new(&sock);
    let br = s.existing_bridge("pwob3").await;
    let a = s.netns("pwo3a");
    let b = s.netns("pwo3b");
    let c = s.netns("pwo3c");
    ok(&[&br, &a, "10.93.0.1/24", "@10"]);
    ok(&[&br, &b, "10.93.0.2/24", "@10"]);
    ok(&[&br, &c, "10.93.0.3/24", "@20"]);
    let tags: Vec<String> = s
        .ports(&br)
        .iter()
        .map(|p| vsctl(&sock, &["get", "Port", p, "tag"]))
        .collect();
    assert_eq!(tags.iter().filter(|t| *t == "10").count(), 2, "{tags:?}");
    assert_eq!(tags.iter().filter(|t| *t == "20").count(), 1, "{tags:?}");
    // Positive control first, so the negative below means isolation.
    assert!(ping("pwo3a", "10.93.0.2"), "same tag must talk");
    assert!(!ping("pwo3a", "10.93.0.3"), "tag 10 reached tag 20");
    assert!(!ping("pwo3c", "10.93.0.2"), "tag 20 reached tag 10");
}

#[tokio::test]
async fn trunk_port_carries_two_vlans() {
    // The host kernel has no 8021q, so the trunk guest speaks raw 802.1Q
    // frames through an AF_PACKET socket: frames tagged 10 / 20 must come
    // out untagged on the matching access ports only, a VLAN outside the
    // trunk must go nowhere, and access-port traffic must reach the trunk
    // guest carrying its VLAN id.
    let Some(sock) = ovsdb() else { return };
    let mut s = Scene::new(&sock);
    let br = s.existing_bridge("pwob4").await;
    let t = s.netns("pwo4t");
    let a10 = s.netns("pwo4a");
    let a20 = s.netns("pwo4b");
    ok(&[&br, &t, "0/0", "--trunk", "10,20"]);
    ok(&[&br, &a10, "0/0", "@10"]);
    ok(&[&br, &a20, "0/0", "@20"]);

    let tport = our_ports(&sock, &br)
        .await
        .into_iter()
        .find(|p| {
            p.external_ids
                .get("pipework.container_name")
                .map(String::as_str)
                == Some("pwo4t")
        })
        .unwrap();
    assert_eq!(tport.trunks, vec![10, 20]);
    assert_eq!(tport.tag, None);

    let ft = packet_socket("pwo4t", "eth1");
    let f10 = packet_socket("pwo4a", "eth1");
    let f20 = packet_socket("pwo4b", "eth1");
    // Let the access ports learn nothing stale: send, then collect.
    for (vid, m) in [(10, "pwo-v10"), (20, "pwo-v20"), (30, "pwo-v30")] {
        send(&ft, &frame(Some(vid), m));
    }
    send(&ft, &frame(None, "pwo-untagged"));
    let g10 = receive(&f10, Duration::from_millis(600));
    let g20 = receive(&f20, Duration::from_millis(300));
    let p10: Vec<&str> = g10.iter().map(|g| g.payload.as_str()).collect();
    let p20: Vec<&str> = g20.iter().map(|g| g.payload.as_str()).collect();
    assert_eq!(p10, vec!["pwo-v10"], "{g10:?}");
    assert_eq!(p20, vec!["pwo-v20"], "{g20:?}");
    assert!(
        g10.iter().chain(&g20).all(|g| g.vid.is_none()),
        "access ports got tagged frames"
    );

    // Reverse: each access port's frame reaches the trunk tagged.
    send(&f10, &frame(None, "pwo-from10"));
    send(&f20, &frame(None, "pwo-from20"));
    let gt = receive(&ft, Duration::from_millis(600));
    let mut seen: Vec<(Option<u16>, &str)> =
        gt.iter().map(|g| (g.vid, g.payload.as_str())).collect();
    seen.sort();
    assert_eq!(
        seen,
        vec![(Some(10), "pwo-from10"), (Some(20), "pwo-from20")],
        "{gt:?}"
    );
}

#[tokio::test]
async fn internal_port_mode_and_ofport() {
    let Some(sock) = ovsdb() else { return };
    let mut s = Scene::new(&sock);
    let br = s.existing_bridge("pwob5").await;
    let a = s.netns("pwo5a");
    let b = s.netns("pwo5b");
    ok(&[
        &br,
        "-i",
        "pwo5i",
        &a,
        "10.95.0.1/24",
        "@7",
        "--ovs-internal",
        "--ofport",
        "71",
    ]);
    ok(&[&br, &b, "10.95.0.2/24", "@7"]);
    let ours = our_ports(&sock, &br).await;
    let internal = ours
        .iter()
        .find(|p| p.interface_type == "internal")
        .expect("internal port");
    assert_eq!(internal.ofport, Some(71));
    assert_eq!(internal.tag, Some(7));
    assert_eq!(
        internal.external_ids.get(ops::MODE_KEY).map(String::as_str),
        Some("internal")
    );
    // No veth: the guest's link is the OVS device itself, named as the
    // port (vswitchd tracks internal devices by name), not on the host.
    assert_eq!(internal.name, "pwo5i");
    assert!(host_links(&internal.name).is_empty());
    let kind =
        String::from_utf8_lossy(&sh("ip", &["-n", "pwo5a", "-d", "link", "show", "pwo5i"]).stdout)
            .into_owned();
    assert!(!kind.contains("veth"), "{kind}");
    assert!(ping("pwo5a", "10.95.0.2"));
    assert!(ping("pwo5b", "10.95.0.1"));

    // The requested OpenFlow port is taken: refused, and nothing remains.
    let c = s.netns("pwo5c");
    let out = pw(&[&br, &c, "10.95.0.3/24", "--ofport", "71"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("71"));
    assert_eq!(our_ports(&sock, &br).await.len(), 2);
    assert!(!guest_has("pwo5c", "eth1"));

    // A second internal port with the same name is refused: OVS names are
    // host-wide.
    let d = s.netns("pwo5d");
    let out = pw(&[&br, "-i", "pwo5i", &d, "10.95.0.4/24", "--ovs-internal"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("-i NAME"));

    ok(&["detach", &a]);
    assert!(
        !guest_has("pwo5a", "pwo5i"),
        "internal device left in the guest"
    );
    assert_eq!(interface_rows(&sock, &internal.name), "");
    assert_eq!(our_ports(&sock, &br).await.len(), 1);
}

#[tokio::test]
async fn failures_after_the_port_is_added_leave_no_rows_and_no_veth() {
    // The guest refuses IPv6 addresses, so attach fails *after* the OVS
    // rows and the veth exist: the journal must remove all of them.
    let Some(sock) = ovsdb() else { return };
    let mut s = Scene::new(&sock);
    let br = s.existing_bridge("pwob6").await;
    let g = s.netns("pwo6a");
    sh(
        "ip",
        &[
            "netns",
            "exec",
            "pwo6a",
            "sysctl",
            "-qw",
            "net.ipv6.conf.default.disable_ipv6=1",
        ],
    );
    let before = host_links("vpw");
    for extra in [None, Some("--ovs-internal")] {
        let mut args = vec![
            br.as_str(),
            "-i",
            "pwo6i",
            g.as_str(),
            "2001:db8:6::1/64",
            "@6",
        ];
        args.extend(extra);
        let out = pw(&args);
        assert!(!out.status.success(), "attach should fail ({extra:?})");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.trim().lines().count(), 1, "one-line error: {err}");
        assert!(s.ports(&br).is_empty(), "port row left: {:?}", s.ports(&br));
        assert!(
            vsctl(
                &sock,
                &[
                    "--columns=name",
                    "find",
                    "Interface",
                    "external_ids:pipework.container_name=pwo6a"
                ]
            )
            .is_empty()
        );
        assert!(!guest_has("pwo6a", "pwo6i"), "guest link left ({extra:?})");
        let mut after = host_links("vpw");
        after.retain(|l| !before.contains(l));
        assert!(after.is_empty(), "veth left: {after:?}");
    }
}

#[tokio::test]
async fn bad_input_is_refused_with_one_line_and_nothing_changes() {
    let Some(sock) = ovsdb() else { return };
    let mut s = Scene::new(&sock);
    let br = s.existing_bridge("pwob7").await;
    let g = s.netns("pwo7a");

    let check = |args: &[&str], code: i32, needles: &[&str]| {
        let out = pw(args);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(code), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
        for n in needles {
            assert!(err.contains(n), "{args:?}: {err:?} lacks {n:?}");
        }
    };
    // OVSDB socket missing: name it and say how to start OVS.
    check(
        &[
            "ovspwo7x",
            &g,
            "10.97.0.1/24",
            "--ovsdb",
            "unix:/nonexistent/pwo/db.sock",
        ],
        1,
        &["/nonexistent/pwo/db.sock", "start Open vSwitch"],
    );
    // Tag out of range.
    check(&[&br, &g, "10.97.0.1/24", "@4095"], 2, &["4095"]);
    check(
        &[&br, &g, "10.97.0.1/24", "--trunk", "10,4096"],
        2,
        &["10,4096", "1-4094"],
    );
    check(
        &[&br, &g, "10.97.0.1/24", "--ofport", "70000"],
        2,
        &["70000"],
    );
    // An existing Linux bridge with OVS-only options (a Linux bridge takes
    // --trunk itself): refused, naming the Linux bridge.
    let lb = "pwolb7";
    let _ = sh("ip", &["link", "del", lb]);
    assert!(
        sh("ip", &["link", "add", lb, "type", "bridge"])
            .status
            .success()
    );
    check(
        &[lb, &g, "10.97.0.1/24", "--ofport", "5"],
        2,
        &[lb, "Linux bridge"],
    );
    sh("ip", &["link", "del", lb]);
    // An existing device whose name says OVS but which is no OVS bridge.
    let fake = "ovspwo7v";
    let _ = sh("ip", &["link", "del", fake]);
    assert!(
        sh(
            "ip",
            &[
                "link", "add", fake, "type", "veth", "peer", "name", "pwo7vp"
            ]
        )
        .status
        .success()
    );
    check(&[fake, &g, "10.97.0.1/24"], 2, &[fake, "not an OVS bridge"]);
    sh("ip", &["link", "del", fake]);
    // Names OVS rejects: a host-side name that is already an OVS port
    // (here the bridge's own port), or one too long for a device.
    check(
        &[&br, &g, "10.97.0.1/24", "-l", &br],
        2,
        &[&br, "already exists"],
    );
    // A stale port row whose device is gone (what the original script left
    // behind, pipework#143) still owns its name in OVSDB.
    vsctl(&sock, &["--no-wait", "add-port", &br, "pwo7stale"]);
    check(
        &[&br, &g, "10.97.0.1/24", "-l", "pwo7stale"],
        2,
        &["pwo7stale", "OVS port", "stale"],
    );
    vsctl(&sock, &["--no-wait", "del-port", "pwo7stale"]);
    check(
        &[&br, &g, "10.97.0.1/24", "-l", "pwo-far-too-long-name"],
        2,
        &["pwo-far-too-long-name"],
    );

    // Nothing was created anywhere.
    assert!(s.ports(&br).is_empty());
    assert!(!vsctl(&sock, &["list-br"]).lines().any(|b| b == "ovspwo7x"));
    assert!(!guest_has("pwo7a", "eth1"));
}

#[tokio::test]
async fn a_bridge_created_by_a_failed_attach_is_removed_again() {
    let Some(sock) = ovsdb() else { return };
    let mut s = Scene::new(&sock);
    let br = s.bridge("ovspwo9");
    let g = s.netns("pwo9a");
    sh(
        "ip",
        &[
            "netns",
            "exec",
            "pwo9a",
            "sysctl",
            "-qw",
            "net.ipv6.conf.default.disable_ipv6=1",
        ],
    );
    let out = pw(&[&br, &g, "2001:db8:9::1/64"]);
    assert!(!out.status.success());
    assert!(
        !vsctl(&sock, &["list-br"]).lines().any(|b| b == br),
        "bridge {br} left behind"
    );
    assert!(host_links(&br).is_empty(), "bridge device left behind");
}

#[tokio::test]
async fn parallel_attaches_share_one_new_bridge() {
    let Some(sock) = ovsdb() else { return };
    let mut s = Scene::new(&sock);
    let br = s.bridge("ovspwop");
    let guests: Vec<String> = (0..8).map(|i| s.netns(&format!("pwop{i}"))).collect();
    let children: Vec<_> = guests
        .iter()
        .enumerate()
        .map(|(i, g)| {
            Command::new(env!("CARGO_BIN_EXE_pipework"))
                .args([
                    br.as_str(),
                    g.as_str(),
                    &format!("10.90.0.{}/24", i + 1),
                    "@5",
                ])
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(
        vsctl(&sock, &["list-br"])
            .lines()
            .filter(|b| *b == br)
            .count(),
        1
    );
    assert_eq!(our_ports(&sock, &br).await.len(), 8);
    assert!(ping("pwop0", "10.90.0.8"));
    for g in &guests {
        ok(&["detach", g]);
    }
    assert!(s.ports(&br).is_empty());
}
