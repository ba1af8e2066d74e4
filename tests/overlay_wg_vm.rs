//! Encrypted overlay networks (`overlay create --encrypt`) under Debian's
//! kernel, which has WireGuard (scripts/vm-tier.sh loads the module): the
//! overlay lab's three host namespaces, etcd and agents inside one VM.
//!
//! What it holds: an encrypted ping's payload never shows on the underlay
//! (an AF_PACKET capture of every frame there) while a clear network's
//! does; clear-text VXLAN for the encrypted network's VNI, sent from a
//! member's addresses, never reaches the container; a dead host's peer
//! goes from the others; no private key in etcd, outputs or logs; the
//! WireGuard device goes with the last encrypted network.
mod common;
mod overlay_lab;

use overlay_lab::*;
use std::os::unix::fs::MetadataExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// The ping payload byte (busybox `ping -p`): 32 of them in a row never
/// come out of a cipher.
const PAT: u8 = 0xa7;

fn has_pattern(b: &[u8]) -> bool {
    b.windows(32).any(|w| w.iter().all(|x| *x == PAT))
}

/// Every frame on every interface of namespace `ns` until stopped.
struct Capture {
    stop: Arc<AtomicBool>,
    t: std::thread::JoinHandle<Vec<Vec<u8>>>,
}

impl Capture {
    fn start(ns: &str) -> Capture {
        let stop = Arc::new(AtomicBool::new(false));
        let (s2, ns) = (stop.clone(), ns.to_string());
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let t = std::thread::spawn(move || {
            in_ns(&ns, || unsafe {
                let proto = (libc::ETH_P_ALL as u16).to_be() as i32;
                let fd = libc::socket(libc::AF_PACKET, libc::SOCK_RAW, proto);
                assert!(fd >= 0, "AF_PACKET socket");
                recv_timeout(fd, Duration::from_millis(200));
                let _ = ready_tx.send(());
                let mut frames = Vec::new();
                let mut buf = vec![0u8; 65536];
                while !s2.load(Ordering::SeqCst) {
                    let n = libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0);
                    if n > 0 {
                        frames.push(buf[..n as usize].to_vec());
                    }
                }
                libc::close(fd);
                frames
            })
        });
        let _ = ready_rx.recv();
        Capture { stop, t }
    }

    fn stop(self) -> Vec<Vec<u8>> {
        self.stop.store(true, Ordering::SeqCst);
        self.t.join().expect("capture")
    }
}

/// busybox ping with the payload byte; (sent, received).
fn pattern_ping(ns: &str, ip: &str) -> (u32, u32) {
    let opts = ["-c", "3", "-i", "0.2", "-W", "2", "-s", "200", "-p", "a7"];
    ping_with(ns, ip, &opts)
}

/// An Ethernet frame to container address `dst` of an overlay network
/// (its MAC is derived from the address), carrying UDP to port 9999.
fn inner_frame(dst: std::net::Ipv4Addr, marker: &[u8]) -> Vec<u8> {
    let o = dst.octets();
    let mut f = vec![0x02, 0x77, o[0], o[1], o[2], o[3]];
    f.extend_from_slice(&[0x02, 0x77, o[0], o[1], o[2], 99, 0x08, 0x00]);
    let src = [o[0], o[1], o[2], 99];
    let udp_len = 8 + marker.len();
    let mut ip = vec![0x45, 0, 0, 0, 0, 1, 0, 0, 64, 17, 0, 0];
    ip[2..4].copy_from_slice(&((20 + udp_len) as u16).to_be_bytes());
    ip.extend_from_slice(&src);
    ip.extend_from_slice(&o);
    let ck = fold(sum16(&ip, 0));
    ip[10..12].copy_from_slice(&ck.to_be_bytes());
    f.extend_from_slice(&ip);
    f.extend_from_slice(&40000u16.to_be_bytes());
    f.extend_from_slice(&9999u16.to_be_bytes());
    f.extend_from_slice(&(udp_len as u16).to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.extend_from_slice(marker);
    f
}

fn vxlan(vni: u32, inner: &[u8]) -> Vec<u8> {
    let v = vni.to_be_bytes();
    let mut p = vec![0x08, 0, 0, 0, v[1], v[2], v[3], 0];
    p.extend_from_slice(inner);
    p
}

/// Whether container `ns` gets a UDP datagram on port 9999 while `send`
/// runs (three tries).
fn delivered(ns: &str, send: impl Fn()) -> bool {
    let ns2 = ns.to_string();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let rx = std::thread::spawn(move || {
        in_ns(&ns2, || {
            let s = std::net::UdpSocket::bind("0.0.0.0:9999").expect("bind 9999");
            s.set_read_timeout(Some(Duration::from_secs(3)))
                .expect("timeout");
            let _ = ready_tx.send(());
            let mut b = [0u8; 2048];
            s.recv(&mut b).is_ok()
        })
    });
    let _ = ready_rx.recv();
    for _ in 0..3 {
        send();
        std::thread::sleep(Duration::from_millis(200));
    }
    rx.join().expect("receiver")
}

/// Clear-text VXLAN over IPv4 UDP from `ns`'s address `from` to `to`.
fn send_udp4(ns: &str, from: &str, to: &str, payload: &[u8]) {
    in_ns(ns, || {
        let s = std::net::UdpSocket::bind(format!("{from}:0")).expect("bind");
        s.send_to(payload, format!("{to}:4789")).expect("send");
    });
}

/// A whole frame out of `ns`'s eth0: IPv6, source and destination given
/// (any source: a forged one), UDP to 4789 with `payload`.
fn send_raw6(
    ns: &str,
    dst_mac: [u8; 6],
    src: std::net::Ipv6Addr,
    dst: std::net::Ipv6Addr,
    payload: &[u8],
) {
    let udp_len = (8 + payload.len()) as u16;
    let mut udp = Vec::new();
    udp.extend_from_slice(&40001u16.to_be_bytes());
    udp.extend_from_slice(&4789u16.to_be_bytes());
    udp.extend_from_slice(&udp_len.to_be_bytes());
    udp.extend_from_slice(&[0, 0]);
    udp.extend_from_slice(payload);
    let mut pseudo = Vec::new();
    pseudo.extend_from_slice(&src.octets());
    pseudo.extend_from_slice(&dst.octets());
    pseudo.extend_from_slice(&u32::from(udp_len).to_be_bytes());
    pseudo.extend_from_slice(&[0, 0, 0, 17]);
    let ck = fold(sum16(&udp, sum16(&pseudo, 0)));
    udp[6..8].copy_from_slice(&ck.to_be_bytes());
    let mut f = dst_mac.to_vec();
    f.extend_from_slice(&[0x02, 0x55, 0, 0, 0, 1, 0x86, 0xdd]);
    f.extend_from_slice(&[0x60, 0, 0, 0]);
    f.extend_from_slice(&udp_len.to_be_bytes());
    f.extend_from_slice(&[17, 64]);
    f.extend_from_slice(&src.octets());
    f.extend_from_slice(&dst.octets());
    f.extend_from_slice(&udp);
    in_ns(ns, || unsafe {
        let fd = libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0);
        assert!(fd >= 0, "AF_PACKET socket");
        let mut sa: libc::sockaddr_ll = std::mem::zeroed();
        sa.sll_family = libc::AF_PACKET as u16;
        sa.sll_ifindex = libc::if_nametoindex(c"eth0".as_ptr()) as i32;
        sa.sll_halen = 6;
        sa.sll_addr[..6].copy_from_slice(&dst_mac);
        let r = libc::sendto(
            fd,
            f.as_ptr().cast(),
            f.len(),
            0,
            (&sa as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as u32,
        );
        assert!(r > 0, "send raw frame");
        libc::close(fd);
    });
}

fn mac_of(ns: &str, dev: &str) -> [u8; 6] {
    let out = ok("ip", &["-n", ns, "-o", "link", "show", dev]);
    let w: Vec<&str> = out.split_whitespace().collect();
    let i = w.iter().position(|x| *x == "link/ether").expect("ether");
    let mut m = [0u8; 6];
    for (k, b) in w[i + 1].split(':').enumerate().take(6) {
        m[k] = u8::from_str_radix(b, 16).expect("mac");
    }
    m
}

fn status(lab: &Lab, i: usize) -> (String, serde_json::Value) {
    let s = lab.pw_ok(i, &["overlay", "status", "--json"]);
    let v = serde_json::from_str(&s).expect("status json");
    (s, v)
}

fn peer_keys(v: &serde_json::Value) -> Vec<String> {
    v["wireguard"]["peers"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|p| p["public_key"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

fn host_record(lab: &Lab, i: usize) -> serde_json::Value {
    let out = lab.etcdctl(&[
        "get",
        "--print-value-only",
        &format!("/pipework/overlay/host/h{i}"),
    ]);
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("host record h{i}: {e}: {out}"))
}

/// The overlay lab's three hosts, leaner for TCG: one etcd member (on
/// h0) and a 10 s lease TTL, so a slow moment of the emulated CPUs never
/// lets a live host's lease lapse.
fn lean_lab() -> Lab {
    let mut lab = Lab::bare("w", 121);
    let a = lab.addr(0);
    let dir = format!("/tmp/{}-etcd0", lab.p);
    let _ = std::fs::remove_dir_all(&dir);
    let etcd = std::process::Command::new("ip")
        .args(["netns", "exec", &lab.host(0), "etcd", "--data-dir", &dir])
        .args(["--listen-client-urls", &format!("http://{a}:2379")])
        .args(["--advertise-client-urls", &format!("http://{a}:2379")])
        .args(["--listen-peer-urls", "http://127.0.0.1:2380"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("etcd");
    lab.etcd.push(Some(etcd));
    lab.urls = format!("http://{a}:2379");
    lab.wait("etcd", || lab.etcd_ready());
    for i in 0..3 {
        lab.start_agent_ttl(i, 10);
    }
    lab
}

/// On failure, the agents' logs (the VM's /tmp goes with it).
struct ShowLogs(String);

impl Drop for ShowLogs {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for i in 0..3 {
                let f = format!("/tmp/{}-agent{i}.log", self.0);
                eprintln!(
                    "--- {f}\n{}",
                    std::fs::read_to_string(&f).unwrap_or_default()
                );
            }
        }
    }
}

#[test]
fn overlay_encrypted_network_in_the_vm() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("SKIP: needs root");
        return;
    }
    if !std::path::Path::new("/sys/module/wireguard").exists() {
        eprintln!(
            "SKIP: no WireGuard in this kernel; run it with scripts/vm-tier.sh overlay_wg_vm"
        );
        return;
    }
    // The VM mounts the host's root read-only: keys and state in /tmp.
    let state = std::env::temp_dir().join(format!("pwwg-state-{}", std::process::id()));
    std::fs::create_dir_all(&state).expect("state dir");
    // SAFETY: set before any thread of this test starts.
    unsafe { std::env::set_var("PIPEWORK_STATE_DIR", &state) };
    let mut lab = lean_lab();
    let _logs = ShowLogs(lab.p.clone());
    let made = lab.pw_ok(
        0,
        &[
            "overlay",
            "create",
            "sec",
            "--subnet",
            "10.61.0.0/24",
            "--encrypt",
            "--json",
        ],
    );
    let spec: serde_json::Value = serde_json::from_str(&made).expect("create json");
    assert_eq!(spec["encrypt"], true, "{made}");
    // Both encapsulations off a 1500 underlay: 1500 - 60 - 70.
    assert_eq!(spec["mtu"], 1370, "{made}");
    let sec_vni = spec["vni"].as_u64().expect("vni") as u32;
    let clr = lab.pw_ok(
        0,
        &[
            "overlay",
            "create",
            "clr",
            "--subnet",
            "10.62.0.0/24",
            "--json",
        ],
    );
    let clr: serde_json::Value = serde_json::from_str(&clr).expect("create json");
    let clr_vni = clr["vni"].as_u64().expect("vni") as u32;

    let c0 = lab.container("c0");
    let c1 = lab.container("c1");
    let d0 = lab.container("d0");
    let d1 = lab.container("d1");
    lab.pw_ok(0, &["sec", &format!("netns:{c0}"), "auto"]);
    lab.pw_ok(1, &["sec", &format!("netns:{c1}"), "auto"]);
    lab.pw_ok(0, &["clr", &format!("netns:{d0}"), "auto"]);
    lab.pw_ok(1, &["clr", &format!("netns:{d1}"), "auto"]);
    let ip_c1 = ip_of(&lab, &c1);
    let ip_d1 = ip_of(&lab, &d1);
    assert!(links(&c0).contains("mtu 1370"), "{}", links(&c0));

    // Peers: each host's record carries its public key and tunnel
    // address; h0's kernel has h1 and h2 as peers at their underlay.
    let keys: Vec<String> = (0..3)
        .map(|i| {
            host_record(&lab, i)["wg"]["key"]
                .as_str()
                .expect("wg key in host record")
                .to_string()
        })
        .collect();
    lab.wait("h0's peers", || {
        let (_, v) = status(&lab, 0);
        let p = peer_keys(&v);
        p.contains(&keys[1]) && p.contains(&keys[2])
    });
    let (_, v) = status(&lab, 0);
    assert_eq!(v["wireguard"]["public_key"], keys[0].as_str(), "{v}");
    let h1_peer = v["wireguard"]["peers"]
        .as_array()
        .and_then(|a| a.iter().find(|p| p["public_key"] == keys[1].as_str()))
        .cloned()
        .expect("h1 peer");
    assert_eq!(
        h1_peer["endpoint"],
        format!("{}:51820", lab.addr(1)).as_str(),
        "{v}"
    );

    // The encrypted ping passes; its payload never shows on the wire.
    let ul = format!("{}ul", lab.p);
    let cap = Capture::start(&ul);
    let (tx, rx) = pattern_ping(&c0, &ip_c1.to_string());
    let frames = cap.stop();
    assert_eq!((tx, rx), (3, 3), "encrypted ping");
    assert!(frames.len() >= 6, "the capture saw the traffic");
    assert!(
        !frames.iter().any(|f| has_pattern(f)),
        "the encrypted network's payload is on the underlay in clear"
    );
    // doctor between the two encrypted containers: healthy, its FDB
    // expectation is the peer's tunnel address (what the agent wrote),
    // both of the peer's addresses admitted by the guard.
    let o = lab.pw(
        0,
        &[
            "doctor",
            &format!("netns:{c0}"),
            &format!("netns:{c1}"),
            "--json",
        ],
    );
    let doc = String::from_utf8_lossy(&o.stdout).into_owned();
    let dv: serde_json::Value = serde_json::from_str(&doc).expect("doctor json");
    let causes = dv["causes"].as_array().cloned().unwrap_or_default();
    assert!(
        o.status.success() && causes.is_empty(),
        "doctor between healthy encrypted containers: {doc}"
    );
    let tunnel1 = host_record(&lab, 1)["wg"]["inner"]
        .as_str()
        .expect("inner")
        .to_string();
    let hops = dv["hops"].as_array().cloned().unwrap_or_default();
    assert!(
        hops.iter().any(|h| h["hop"] == "overlay sec vx-sec"
            && h["ok"] == true
            && h["seen"]
                .as_str()
                .unwrap_or("")
                .contains(&format!("→ {tunnel1}"))),
        "{doc}"
    );
    assert!(
        hops.iter()
            .any(|h| h["hop"] == "overlay sec tunnel source filter" && h["ok"] == true),
        "{doc}"
    );
    // A gc while the agent runs keeps its WireGuard device, even in the
    // moment no VXLAN device rides on it yet (the agent makes the device
    // first, then the VXLAN device): the agent stopped, vx-sec deleted.
    let h1 = lab.host(1);
    let pid1 = lab.agents[1].as_ref().expect("agent 1").id() as i32;
    let pid1 = nix::unistd::Pid::from_raw(pid1);
    nix::sys::signal::kill(pid1, nix::sys::signal::Signal::SIGSTOP).expect("stop agent");
    ok("ip", &["-n", &h1, "link", "del", "vx-sec"]);
    let gc = lab.pw(1, &["gc"]);
    nix::sys::signal::kill(pid1, nix::sys::signal::Signal::SIGCONT).expect("resume agent");
    let gc_out = String::from_utf8_lossy(&gc.stdout);
    assert!(gc.status.success() && !gc_out.contains("pw-wg"), "{gc_out}");
    assert!(
        links(&h1).contains("pw-wg"),
        "gc took a live agent's device"
    );
    lab.wait("vx-sec back on h1, the encrypted ping through", || {
        links(&h1).contains("vx-sec") && pattern_ping(&c0, &ip_c1.to_string()).1 == 3
    });
    // The same capture sees a clear network's payload: it can fail.
    let cap = Capture::start(&ul);
    let (tx, rx) = pattern_ping(&d0, &ip_d1.to_string());
    let frames = cap.stop();
    assert_eq!((tx, rx), (3, 3), "clear ping");
    assert!(
        frames.iter().any(|f| has_pattern(f)),
        "the clear network's payload is visible"
    );

    // Clear-text VXLAN from a member (h0's underlay address) to h1: the
    // clear network's VNI reaches its container (so this check can
    // fail), the encrypted network's never does.
    let (h0, h1) = (lab.host(0), lab.host(1));
    let (a0, a1) = (lab.addr(0), lab.addr(1));
    let pkt = vxlan(clr_vni, &inner_frame(ip_d1, b"pw-spoof"));
    assert!(
        delivered(&d1, || send_udp4(&h0, &a0, &a1, &pkt)),
        "control: clear-text VXLAN of the clear network is delivered"
    );
    let pkt = vxlan(sec_vni, &inner_frame(ip_c1, b"pw-spoof"));
    assert!(
        !delivered(&c1, || send_udp4(&h0, &a0, &a1, &pkt)),
        "clear-text VXLAN over the underlay reached an encrypted network"
    );
    // The same over IPv6 with h0's tunnel address as source, to h1's
    // tunnel address, outside the tunnel: the guard drops it.
    let inner = |i: usize| -> std::net::Ipv6Addr {
        host_record(&lab, i)["wg"]["inner"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .expect("inner address")
    };
    let mac1 = mac_of(&h1, "eth0");
    let (i0, i1) = (inner(0), inner(1));
    let sealed = || -> u64 {
        let rules = ok(
            "ip",
            &[
                "netns",
                "exec",
                &h1,
                "nft",
                "list",
                "table",
                "inet",
                "pipework_vxlan",
            ],
        );
        let line = rules
            .lines()
            .find(|l| l.contains("pipework:vxlan-encrypted"))
            .unwrap_or_else(|| panic!("no rule for the encrypted VNI: {rules}"))
            .to_string();
        // On the network's VXLAN port only: WireGuard's port is in
        // `@ports`, and there these bytes are a session index.
        assert!(
            line.contains("udp dport 4789") && !line.contains("@ports"),
            "{line}"
        );
        let w: Vec<&str> = line.split_whitespace().collect();
        let i = w.iter().position(|x| *x == "packets").expect("counter");
        w[i + 1].parse().expect("count")
    };
    let before = sealed();
    assert!(
        !delivered(&c1, || send_raw6(&h0, mac1, i0, i1, &pkt)),
        "clear-text VXLAN from a member's tunnel address reached an encrypted network"
    );
    assert!(
        sealed() > before,
        "the guard's rule for the VNI dropped them"
    );
    // Without the guard the same frames do arrive (the check can fail),
    // and the agent puts the guard back at its next check.
    ok(
        "ip",
        &[
            "netns",
            "exec",
            &h1,
            "nft",
            "delete",
            "table",
            "inet",
            "pipework_vxlan",
        ],
    );
    assert!(
        delivered(&c1, || send_raw6(&h0, mac1, i0, i1, &pkt)),
        "control: without the guard the forged frame is delivered"
    );
    lab.wait("the guard back on h1", || {
        run(
            "ip",
            &[
                "netns",
                "exec",
                &h1,
                "nft",
                "list",
                "table",
                "inet",
                "pipework_vxlan",
            ],
        )
        .status
        .success()
    });
    assert!(
        !delivered(&c1, || send_raw6(&h0, mac1, i0, i1, &pkt)),
        "dropped again once the guard is back"
    );
    // Still fine after all that.
    assert_eq!(pattern_ping(&c0, &ip_c1.to_string()).1, 3);

    // No private key anywhere but the key files.
    let mut outputs = vec![
        made.clone(),
        lab.etcdctl(&["get", "--prefix", "/pipework/"]),
    ];
    for i in 0..3 {
        outputs.push(status(&lab, i).0);
        outputs.push(lab.pw_ok(i, &["overlay", "status"]));
    }
    let mut privs = Vec::new();
    for i in 0..3 {
        let ino = std::fs::metadata(format!("/run/netns/{}", lab.host(i)))
            .expect("netns")
            .ino();
        let f = state.join(format!("overlay/{ino}/wg.key"));
        let meta = std::fs::metadata(&f).expect("key file");
        assert_eq!(meta.mode() & 0o777, 0o600, "{}", f.display());
        privs.push(std::fs::read_to_string(&f).expect("key").trim().to_string());
    }
    // Private and public keys differ, and each host has its own.
    assert!(privs.iter().all(|p| p.len() == 44 && !keys.contains(p)));
    // Host death: h2's agent killed, its lease lapses, its peer goes.
    lab.kill_agent(2);
    lab.wait("h2's peer removed from h0", || {
        !peer_keys(&status(&lab, 0).1).contains(&keys[2])
    });
    assert!(peer_keys(&status(&lab, 1).1).contains(&keys[0]));
    // What an agent killed between making its device and configuring it
    // leaves (no key, no peer, no mark): gc knows it and removes it.
    let h2 = lab.host(2);
    ok(
        "ip",
        &["-n", &h2, "link", "add", "pw-wg", "type", "wireguard"],
    );
    let gc = lab.pw_ok(2, &["gc"]);
    assert!(gc.contains("pw-wg"), "{gc}");
    assert!(!links(&h2).contains("pw-wg"), "{}", links(&h2));
    // The same left for the next agent: it removes it (no encrypted
    // network on h2). The host comes back with the key it had (made once,
    // never rewritten) and is a peer of h0 again.
    ok(
        "ip",
        &["-n", &h2, "link", "add", "pw-wg", "type", "wireguard"],
    );
    lab.start_agent_ttl(2, 10);
    assert_eq!(host_record(&lab, 2)["wg"]["key"], keys[2].as_str());
    lab.wait("h2's peer back on h0, its blank device gone", || {
        peer_keys(&status(&lab, 0).1).contains(&keys[2]) && !links(&h2).contains("pw-wg")
    });
    for i in 0..3 {
        outputs.push(
            std::fs::read_to_string(format!("/tmp/{}-agent{i}.log", lab.p)).unwrap_or_default(),
        );
    }
    for p in &privs {
        for o in &outputs {
            assert!(!o.contains(p.as_str()), "a private key leaked: {o}");
        }
    }

    // gc leaves a device in use alone; the last encrypted network gone,
    // the device goes from every host.
    let gc = lab.pw_ok(1, &["gc"]);
    assert!(!gc.contains("pw-wg"), "gc leaves a device in use: {gc}");
    lab.pw_ok(0, &["detach", &format!("netns:{c0}")]);
    lab.pw_ok(1, &["detach", &format!("netns:{c1}")]);
    lab.pw_ok(0, &["overlay", "delete", "sec"]);
    lab.wait("pw-wg removed from h0 and h1", || {
        !links(&h0).contains("pw-wg") && !links(&h1).contains("pw-wg")
    });
    assert!(links(&h0).contains("vx-clr"), "the clear network stays");
    let _ = std::fs::remove_dir_all(&state);
}
