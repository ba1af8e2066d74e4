//! The overlay test lab, shared by tests/overlay.rs and
//! tests/overlay_features.rs: three simulated hosts (network namespaces on
//! an underlay bridge in its own namespace), a 3-member etcd cluster with
//! one member per host, an agent per host, containers as namespaces.
#![allow(dead_code)]
use super::common::BIN;
use std::os::fd::AsFd;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};
pub const TTL: u64 = 3;

pub fn run(cmd: &str, args: &[&str]) -> Output {
    Command::new(cmd)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd}: {e}"))
}

#[track_caller]
pub fn ok(cmd: &str, args: &[&str]) -> String {
    let o = run(cmd, args);
    assert!(
        o.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// One lab: `p` is the unique prefix of every object it makes.
pub struct Lab {
    pub p: String,
    pub sub: u8,
    pub etcd: Vec<Option<Child>>,
    pub agents: Vec<Option<Child>>,
    pub nss: Vec<String>,
    pub urls: String,
    /// Pid files of processes a script started for this lab.
    pub pidfiles: Vec<String>,
}

impl Lab {
    pub fn host(&self, i: usize) -> String {
        format!("{}h{i}", self.p)
    }
    pub fn addr(&self, i: usize) -> String {
        format!("10.231.{}.{}", self.sub, i + 1)
    }

    pub fn new(tag: &str, sub: u8) -> Lab {
        let mut lab = Lab::bare(tag, sub);
        lab.start_etcd();
        for i in 0..3 {
            lab.agents.push(None);
            lab.start_agent(i);
        }
        lab
    }

    /// Underlay and host namespaces only.
    pub fn bare(tag: &str, sub: u8) -> Lab {
        let p = format!("pwv{tag}{:x}", std::process::id() % 0xfff);
        let mut lab = Lab {
            p: p.clone(),
            sub,
            etcd: vec![],
            agents: vec![],
            nss: vec![],
            urls: String::new(),
            pidfiles: vec![],
        };
        let ul = format!("{p}ul");
        lab.netns(&ul);
        ok("ip", &["-n", &ul, "link", "add", "ulbr", "type", "bridge"]);
        ok("ip", &["-n", &ul, "link", "set", "ulbr", "up"]);
        for i in 0..3 {
            let h = lab.host(i);
            lab.netns(&h);
            let port = format!("{p}u{i}");
            ok(
                "ip",
                &[
                    "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns", &h,
                ],
            );
            ok("ip", &["link", "set", &port, "netns", &ul]);
            ok(
                "ip",
                &["-n", &ul, "link", "set", &port, "master", "ulbr", "up"],
            );
            ok(
                "ip",
                &[
                    "-n",
                    &h,
                    "addr",
                    "add",
                    &format!("{}/24", lab.addr(i)),
                    "dev",
                    "eth0",
                ],
            );
            ok("ip", &["-n", &h, "link", "set", "eth0", "up"]);
            ok("ip", &["-n", &h, "link", "set", "lo", "up"]);
        }
        lab.urls = (0..3)
            .map(|i| format!("http://{}:2379", lab.addr(i)))
            .collect::<Vec<_>>()
            .join(",");
        lab
    }

    pub fn start_etcd(&mut self) {
        let lab = self;
        let p = lab.p.clone();
        let cluster = (0..3)
            .map(|i| format!("m{i}=http://{}:2380", lab.addr(i)))
            .collect::<Vec<_>>()
            .join(",");
        for i in 0..3 {
            let a = lab.addr(i);
            let dir = format!("/tmp/{p}-etcd{i}");
            let _ = std::fs::remove_dir_all(&dir);
            let c = Command::new("ip")
                .args([
                    "netns",
                    "exec",
                    &lab.host(i),
                    "etcd",
                    "--name",
                    &format!("m{i}"),
                ])
                .args(["--data-dir", &dir])
                .args(["--listen-peer-urls", &format!("http://{a}:2380")])
                .args(["--listen-client-urls", &format!("http://{a}:2379")])
                .args(["--advertise-client-urls", &format!("http://{a}:2379")])
                .args(["--initial-advertise-peer-urls", &format!("http://{a}:2380")])
                .args([
                    "--initial-cluster",
                    &cluster,
                    "--initial-cluster-state",
                    "new",
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("etcd");
            lab.etcd.push(Some(c));
        }
        // Healthy once a write commits through the quorum.
        let t0 = Instant::now();
        while !run(
            "ip",
            &[
                "netns",
                "exec",
                &lab.host(0),
                "etcdctl",
                "--endpoints",
                &lab.urls,
                "put",
                "/pwv",
                "x",
            ],
        )
        .status
        .success()
        {
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "etcd cluster did not come up"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub fn netns(&mut self, name: &str) {
        ok("ip", &["netns", "add", name]);
        self.nss.push(name.to_string());
    }

    pub fn start_agent(&mut self, i: usize) {
        self.spawn_agent(i);
        // Ready once it has registered.
        let key = format!("/pipework/overlay/host/h{i}");
        self.wait("agent registration", || {
            self.etcdctl(&["get", &key]).contains(&key)
        });
    }

    /// Start host `i`'s agent without waiting for it to reach etcd.
    pub fn spawn_agent(&mut self, i: usize) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(format!("/tmp/{}-agent{i}.log", self.p))
            .expect("log");
        let c = Command::new("ip")
            .args(["netns", "exec", &self.host(i), BIN, "overlay", "agent"])
            .args([
                "--underlay",
                "eth0",
                "--name",
                &format!("h{i}"),
                "--ttl",
                &TTL.to_string(),
            ])
            .env("PIPEWORK_ETCD", &self.urls)
            // The kernel-side check and sweep every 2 s, not 30.
            .env("PIPEWORK_OVERLAY_CHECK", "2")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("agent");
        self.agents[i] = Some(c);
    }

    pub fn kill_agent(&mut self, i: usize) {
        if let Some(mut c) = self.agents[i].take() {
            // `ip netns exec` execs the agent: the pid is the agent's.
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn kill_etcd(&mut self, i: usize) {
        if let Some(mut c) = self.etcd[i].take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn etcdctl(&self, args: &[&str]) -> String {
        let o = run(
            "ip",
            &[
                &[
                    "netns",
                    "exec",
                    &self.host(0),
                    "etcdctl",
                    "--endpoints",
                    &self.urls,
                ][..],
                args,
            ]
            .concat(),
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// pipework on host `i`.
    pub fn pw(&self, i: usize, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.host(i), BIN])
            .args(args)
            .env("PIPEWORK_ETCD", &self.urls)
            .stdin(Stdio::null())
            .output()
            .expect("pipework")
    }

    #[track_caller]
    pub fn pw_ok(&self, i: usize, args: &[&str]) -> String {
        let o = self.pw(i, args);
        assert!(
            o.status.success(),
            "pipework {args:?} on h{i}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// A container namespace; attached later by name.
    pub fn container(&mut self, name: &str) -> String {
        let n = format!("{}{name}", self.p);
        self.netns(&n);
        n
    }

    #[track_caller]
    pub fn wait(&self, what: &str, mut f: impl FnMut() -> bool) {
        let t0 = Instant::now();
        while !f() {
            assert!(
                t0.elapsed() < Duration::from_secs(20),
                "timed out waiting for {what}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// FDB and neighbour entries on host `i`'s VXLAN device for `net`.
    pub fn entries(&self, i: usize, net: &str) -> String {
        let vx = format!("vx-{net}");
        let f = run("bridge", &["-n", &self.host(i), "fdb", "show", "dev", &vx]);
        let n = run("ip", &["-n", &self.host(i), "neigh", "show", "dev", &vx]);
        format!(
            "{}{}",
            String::from_utf8_lossy(&f.stdout),
            String::from_utf8_lossy(&n.stdout)
        )
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for f in &self.pidfiles {
            if let Ok(pid) = std::fs::read_to_string(f)
                && let Ok(pid) = pid.trim().parse::<i32>()
            {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
        for i in 0..self.agents.len() {
            self.kill_agent(i);
        }
        for i in 0..self.etcd.len() {
            self.kill_etcd(i);
            let _ = std::fs::remove_dir_all(format!("/tmp/{}-etcd{i}", self.p));
        }
        // Agent logs stay only when the test failed.
        if !std::thread::panicking() {
            for i in ["0", "1", "2", "root"] {
                let _ = std::fs::remove_file(format!("/tmp/{}-agent{i}.log", self.p));
            }
        }
        for ns in self.nss.iter().rev() {
            // The agent's state for this namespace (keyed by its inode).
            if let Ok(m) = std::fs::metadata(format!("/run/netns/{ns}")) {
                use std::os::unix::fs::MetadataExt;
                let _ = std::fs::remove_dir_all(format!("/run/pipework/overlay/{}", m.ino()));
            }
            let _ = run("ip", &["netns", "del", ns]);
        }
    }
}

/// Run `f` inside network namespace `ns` (on a thread of its own).
pub fn in_ns<R: Send>(ns: &str, f: impl FnOnce() -> R + Send) -> R {
    let file = std::fs::File::open(format!("/run/netns/{ns}")).expect("netns");
    std::thread::scope(|s| {
        s.spawn(|| {
            nix::sched::setns(file.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
            f()
        })
        .join()
        .expect("thread")
    })
}

pub fn ping(ns: &str, ip: &str, count: u32) -> (u32, u32) {
    let o = run(
        "ip",
        &[
            "netns",
            "exec",
            ns,
            "busybox",
            "ping",
            "-c",
            &count.to_string(),
            "-i",
            "0.05",
            "-W",
            "1",
            ip,
        ],
    );
    let out = String::from_utf8_lossy(&o.stdout);
    let line = out
        .lines()
        .find(|l| l.contains("packets transmitted"))
        .unwrap_or("");
    let nums: Vec<u32> = line
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    (
        nums.first().copied().unwrap_or(0),
        nums.get(1).copied().unwrap_or(0),
    )
}

/// ICMP echo with DF set, `size` bytes of IP packet. Ok(true) = reply,
/// Err(errno) = the kernel refused to send (EMSGSIZE for too big).
pub fn df_ping(ns: &str, dst: std::net::Ipv4Addr, size: usize) -> Result<bool, i32> {
    in_ns(ns, || unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_ICMP);
        assert!(fd >= 0, "raw socket");
        let v: libc::c_int = libc::IP_PMTUDISC_DO;
        libc::setsockopt(
            fd,
            libc::IPPROTO_IP,
            libc::IP_MTU_DISCOVER,
            (&v as *const libc::c_int).cast(),
            4,
        );
        let tv = libc::timeval {
            tv_sec: 2,
            tv_usec: 0,
        };
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&tv as *const libc::timeval).cast(),
            16,
        );
        let mut pkt = vec![0u8; size - 20];
        pkt[0] = 8; // echo request
        pkt[4] = 0x77; // id
        pkt[7] = 1; // seq
        let mut sum: u32 = 0;
        for c in pkt.chunks(2) {
            sum += u32::from(c[0]) << 8 | u32::from(*c.get(1).unwrap_or(&0));
        }
        while sum >> 16 != 0 {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        let ck = !(sum as u16);
        pkt[2] = (ck >> 8) as u8;
        pkt[3] = ck as u8;
        let mut sa: libc::sockaddr_in = std::mem::zeroed();
        sa.sin_family = libc::AF_INET as u16;
        sa.sin_addr.s_addr = u32::from(dst).to_be();
        let r = libc::sendto(
            fd,
            pkt.as_ptr().cast(),
            pkt.len(),
            0,
            (&sa as *const libc::sockaddr_in).cast(),
            16,
        );
        if r < 0 {
            let e = *libc::__errno_location();
            libc::close(fd);
            return Err(e);
        }
        let mut buf = vec![0u8; 65536];
        loop {
            let n = libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0);
            if n < 0 {
                libc::close(fd);
                return Ok(false);
            }
            let ihl = usize::from(buf[0] & 0xf) * 4;
            if n as usize > ihl + 8 && buf[ihl] == 0 && buf[ihl + 4] == 0x77 {
                libc::close(fd);
                return Ok(n as usize == size);
            }
        }
    })
}

pub fn ip_of(lab: &Lab, ns: &str) -> std::net::Ipv4Addr {
    let _ = lab;
    let out = ok("ip", &["-n", ns, "-4", "-o", "addr", "show", "dev", "eth1"]);
    let w: Vec<&str> = out.split_whitespace().collect();
    let i = w.iter().position(|x| *x == "inet").expect("inet");
    w[i + 1]
        .split('/')
        .next()
        .and_then(|s| s.parse().ok())
        .expect("addr")
}

pub fn links(ns: &str) -> String {
    ok("ip", &["-n", ns, "-o", "link", "show"])
}
