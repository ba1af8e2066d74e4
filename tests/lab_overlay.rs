//! A lab across hosts: one file names nodes on two hosts (`host = "h0"`,
//! `host = "h1"`) joined by an overlay link; each host runs
//! `lab up FILE --host H` for its part, and the overlay (real etcd, real
//! agents, kernel VXLAN) joins them. Hosts are network namespaces on an
//! underlay bridge in a namespace of its own, as in tests/overlay.rs.
mod common;
use common::{BIN, require_env, uniq};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn run(cmd: &str, args: &[&str]) -> Output {
    Command::new(cmd)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("spawn")
}

#[track_caller]
fn ok(cmd: &str, args: &[&str]) -> String {
    let o = run(cmd, args);
    assert!(
        o.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

struct Hosts {
    p: String,
    nss: Vec<String>,
    procs: Vec<Child>,
    url: String,
}

impl Hosts {
    fn host(&self, i: usize) -> String {
        format!("{}h{i}", self.p)
    }
    fn addr(i: usize) -> String {
        format!("10.239.7.{}", i + 1)
    }
    fn netns(&mut self, n: &str) {
        ok("ip", &["netns", "add", n]);
        self.nss.push(n.to_string());
    }

    fn new() -> Hosts {
        let p = uniq("pwl");
        let mut h = Hosts {
            p: p.clone(),
            nss: vec![],
            procs: vec![],
            url: format!("http://{}:2379", Hosts::addr(0)),
        };
        let ul = format!("{p}ul");
        h.netns(&ul);
        ok("ip", &["-n", &ul, "link", "add", "ulbr", "type", "bridge"]);
        ok("ip", &["-n", &ul, "link", "set", "ulbr", "up"]);
        for i in 0..2 {
            let hn = h.host(i);
            h.netns(&hn);
            let port = format!("{p}u{i}");
            ok(
                "ip",
                &[
                    "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns", &hn,
                ],
            );
            ok("ip", &["link", "set", &port, "netns", &ul]);
            ok(
                "ip",
                &["-n", &ul, "link", "set", &port, "master", "ulbr", "up"],
            );
            let a = format!("{}/24", Hosts::addr(i));
            ok("ip", &["-n", &hn, "addr", "add", &a, "dev", "eth0"]);
            ok("ip", &["-n", &hn, "link", "set", "eth0", "up"]);
            ok("ip", &["-n", &hn, "link", "set", "lo", "up"]);
        }
        // One etcd member, on h0.
        let a = Hosts::addr(0);
        let dir = format!("/tmp/{p}-etcd");
        let _ = std::fs::remove_dir_all(&dir);
        let c = Command::new("ip")
            .args(["netns", "exec", &h.host(0), "etcd", "--name", "m0"])
            .args(["--data-dir", &dir])
            .args(["--listen-peer-urls", &format!("http://{a}:2380")])
            .args(["--listen-client-urls", &format!("http://{a}:2379")])
            .args(["--advertise-client-urls", &format!("http://{a}:2379")])
            .args(["--initial-advertise-peer-urls", &format!("http://{a}:2380")])
            .args(["--initial-cluster", &format!("m0=http://{a}:2380")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("etcd");
        h.procs.push(c);
        h.wait("etcd", || {
            run(
                "ip",
                &[
                    "netns",
                    "exec",
                    &h.host(0),
                    "etcdctl",
                    "--endpoints",
                    &h.url,
                    "put",
                    "/pwl",
                    "x",
                ],
            )
            .status
            .success()
        });
        for i in 0..2 {
            let c = Command::new("ip")
                .args(["netns", "exec", &h.host(i), BIN, "overlay", "agent"])
                .args(["--underlay", "eth0", "--name", &format!("h{i}")])
                .args(["--ttl", "10"])
                .env("PIPEWORK_ETCD", &h.url)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("agent");
            h.procs.push(c);
            let key = format!("/pipework/overlay/host/h{i}");
            h.wait("agent registration", || h.etcd_get(&key).contains(&key));
        }
        h
    }

    fn etcd_get(&self, prefix: &str) -> String {
        String::from_utf8_lossy(
            &run(
                "ip",
                &[
                    "netns",
                    "exec",
                    &self.host(0),
                    "etcdctl",
                    "--endpoints",
                    &self.url,
                    "get",
                    "--prefix",
                    "--keys-only",
                    prefix,
                ],
            )
            .stdout,
        )
        .into_owned()
    }

    #[track_caller]
    fn wait(&self, what: &str, mut f: impl FnMut() -> bool) {
        let t0 = Instant::now();
        while !f() {
            assert!(t0.elapsed() < Duration::from_secs(20), "timed out: {what}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// pipework on host `i`.
    fn pw(&self, i: usize, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.host(i), BIN])
            .args(args)
            .env("PIPEWORK_ETCD", &self.url)
            .stdin(Stdio::null())
            .output()
            .expect("pipework")
    }

    #[track_caller]
    fn pw_ok(&self, i: usize, args: &[&str]) -> String {
        let o = self.pw(i, args);
        assert!(
            o.status.success(),
            "pipework {args:?} on h{i}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        for c in self.procs.iter_mut().rev() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(format!("/tmp/{}-etcd", self.p));
        for ns in self.nss.iter().rev() {
            if let Ok(m) = std::fs::metadata(format!("/run/netns/{ns}")) {
                use std::os::unix::fs::MetadataExt;
                let _ = std::fs::remove_dir_all(format!("/run/pipework/overlay/{}", m.ino()));
            }
            let _ = run("ip", &["netns", "del", ns]);
        }
    }
}

fn pings(ns: &str, ip: &str) -> bool {
    run(
        "ip",
        &[
            "netns", "exec", ns, "busybox", "ping", "-c", "1", "-W", "1", ip,
        ],
    )
    .status
    .success()
}

#[test]
fn a_lab_across_two_hosts_over_the_overlay() {
    if !require_env() {
        return;
    }
    let mut h = Hosts::new();
    let net = format!("n{}", &h.p[3..]);
    let net = &net[..net.len().min(12)];
    h.pw_ok(0, &["overlay", "create", net, "--subnet", "10.78.0.0/24"]);
    let (a, b) = (format!("{}a", h.p), format!("{}b", h.p));
    h.netns(&a);
    h.netns(&b);
    let lab = h.p.clone();
    let file = format!("/tmp/{lab}.toml");
    std::fs::write(
        &file,
        format!(
            r#"name = "{lab}"
[nodes.a]
netns = "{a}"
host = "h0"
[nodes.b]
netns = "{b}"
host = "h1"
[[links]]
kind = "overlay"
network = "{net}"
endpoints = ["a:eth1", "b:eth1"]
ips = ["10.78.0.11/24", "10.78.0.12/24"]
"#
        ),
    )
    .expect("write");
    // A point-to-point link cannot span hosts: refused, naming the link.
    let bad = format!("/tmp/{lab}-bad.toml");
    std::fs::write(
        &bad,
        std::fs::read_to_string(&file)
            .expect("read")
            .replace("kind = \"overlay\"\n", ""),
    )
    .expect("write");
    let o = h.pw(0, &["lab", "up", &bad, "--host", "h0"]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("only an overlay link spans hosts"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );

    // The plan names the overlay attach, and changes nothing.
    let plan = h.pw_ok(0, &["lab", "up", "--dry-run", &file, "--host", "h0"]);
    assert!(
        plan.contains(&format!("pipework {net} netns:{a} 10.78.0.11/24 -i eth1")),
        "{plan}"
    );
    assert!(!plan.contains(&b), "{plan}");
    assert!(!ok("ip", &["-n", &a, "-o", "link"]).contains("eth1"));

    let out = h.pw_ok(0, &["lab", "up", &file, "--host", "h0"]);
    assert!(out.contains("1 added, 0 removed, 0 unchanged"), "{out}");
    let out = h.pw_ok(1, &["lab", "up", &file, "--host", "h1"]);
    assert!(out.contains("1 added, 0 removed, 0 unchanged"), "{out}");
    // Each host built its own node's end only, on its own overlay bridge.
    for (ns, ip) in [(&a, "10.78.0.11/24"), (&b, "10.78.0.12/24")] {
        let l = ok("ip", &["-n", ns, "-o", "addr", "show", "dev", "eth1"]);
        assert!(l.contains(ip), "{ns}: {l}");
    }
    let eps = h.etcd_get(&format!("/pipework/overlay/ep/{net}/"));
    assert_eq!(eps.lines().filter(|l| !l.is_empty()).count(), 2, "{eps}");
    // End to end, across the VXLAN between the two hosts.
    h.wait("a ping from a to b over the overlay", || {
        pings(&a, "10.78.0.12")
    });
    assert!(pings(&b, "10.78.0.11"));

    // Converging h0 again changes nothing, and leaves h1's part alone.
    let out = h.pw_ok(0, &["lab", "up", &file, "--host", "h0"]);
    assert!(out.contains("0 added, 0 removed, 1 unchanged"), "{out}");
    let st = h.pw_ok(1, &["lab", "status", &file, "--host", "h1"]);
    assert!(st.contains("matches the file"), "{st}");
    assert!(pings(&a, "10.78.0.12"));

    // h0's down takes its end (and its address in etcd) only.
    h.pw_ok(0, &["lab", "down", &file, "--host", "h0"]);
    assert!(!ok("ip", &["-n", &a, "-o", "link"]).contains("eth1"));
    assert!(ok("ip", &["-n", &b, "-o", "link"]).contains("eth1"));
    let eps = h.etcd_get(&format!("/pipework/overlay/ep/{net}/"));
    assert_eq!(eps.lines().filter(|l| !l.is_empty()).count(), 1, "{eps}");
    h.pw_ok(1, &["lab", "down", &file, "--host", "h1"]);
    assert!(!ok("ip", &["-n", &b, "-o", "link"]).contains("eth1"));
    let eps = h.etcd_get(&format!("/pipework/overlay/ep/{net}/"));
    assert!(eps.trim().is_empty(), "{eps}");
    let _ = std::fs::remove_file(&file);
    let _ = std::fs::remove_file(&bad);
}
