//! The overlay test lab, shared by tests/overlay*.rs: three simulated
//! hosts (network namespaces on an underlay bridge in its own namespace),
//! a 3-member etcd cluster with one member per host, an agent per host,
//! containers as namespaces; and the probes and fixtures those tests share.
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
            lab.plug(&format!("{p}u{i}"), &h);
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
        let t0 = Instant::now();
        while !lab.etcd_ready() {
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "etcd cluster did not come up"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Whether etcd is healthy: a write commits (through the quorum).
    pub fn etcd_ready(&self) -> bool {
        run(
            "ip",
            &[
                "netns",
                "exec",
                &self.host(0),
                "etcdctl",
                "--endpoints",
                &self.urls,
                "put",
                "/pwv",
                "x",
            ],
        )
        .status
        .success()
    }

    /// Namespace `ns` on the underlay bridge as its `eth0`, by the veth
    /// `port` (the name on the underlay's side).
    pub fn plug(&self, port: &str, ns: &str) {
        let ul = format!("{}ul", self.p);
        ok(
            "ip",
            &[
                "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns,
            ],
        );
        ok("ip", &["link", "set", port, "netns", &ul]);
        ok(
            "ip",
            &["-n", &ul, "link", "set", port, "master", "ulbr", "up"],
        );
    }

    pub fn netns(&mut self, name: &str) {
        ok("ip", &["netns", "add", name]);
        self.nss.push(name.to_string());
    }

    pub fn start_agent(&mut self, i: usize) {
        self.start_agent_ttl(i, TTL);
    }

    /// Host `i`'s agent with lease TTL `ttl` (seconds), started and
    /// registered.
    pub fn start_agent_ttl(&mut self, i: usize, ttl: u64) {
        self.spawn_agent_on(i, "eth0", ttl);
        // Ready once it has registered.
        let key = format!("/pipework/overlay/host/h{i}");
        self.wait("agent registration", || {
            self.etcdctl(&["get", &key]).contains(&key)
        });
    }

    /// Start host `i`'s agent without waiting for it to reach etcd.
    pub fn spawn_agent(&mut self, i: usize) {
        self.spawn_agent_on(i, "eth0", TTL);
    }

    /// Host `i`'s agent log, opened for appending (an agent's stderr).
    pub fn agent_log_file(&self, i: usize) -> std::fs::File {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(format!("/tmp/{}-agent{i}.log", self.p))
            .expect("log")
    }

    /// Start host `i`'s agent with `--underlay underlay` (a device or an
    /// address) and lease TTL `ttl`, without waiting for it to reach etcd.
    pub fn spawn_agent_on(&mut self, i: usize, underlay: &str, ttl: u64) {
        let log = self.agent_log_file(i);
        let c = Command::new("ip")
            .args(["netns", "exec", &self.host(i), BIN, "overlay", "agent"])
            .args([
                "--underlay",
                underlay,
                "--name",
                &format!("h{i}"),
                "--ttl",
                &ttl.to_string(),
            ])
            .env("PIPEWORK_ETCD", &self.urls)
            // The kernel-side check and sweep every 2 s, not 30.
            .env("PIPEWORK_OVERLAY_CHECK", "2")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("agent");
        if self.agents.len() <= i {
            self.agents.resize_with(i + 1, || None);
        }
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
    ping_with(ns, ip, &["-c", &count.to_string(), "-i", "0.05", "-W", "1"])
}

/// busybox ping from `ns` to `ip` with options `opts`: (sent, received).
pub fn ping_with(ns: &str, ip: &str, opts: &[&str]) -> (u32, u32) {
    let o = run(
        "ip",
        &[&["netns", "exec", ns, "busybox", "ping"][..], opts, &[ip]].concat(),
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

/// `sum` plus `data`'s 16-bit big-endian words (the Internet checksum's
/// sum, not yet folded).
pub fn sum16(data: &[u8], mut sum: u32) -> u32 {
    for c in data.chunks(2) {
        sum += u32::from(c[0]) << 8 | u32::from(*c.get(1).unwrap_or(&0));
    }
    sum
}

/// The Internet checksum of a `sum16` sum.
pub fn fold(mut sum: u32) -> u16 {
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// SO_RCVTIMEO of socket `fd`: a recv gives up after `d`.
pub fn recv_timeout(fd: i32, d: Duration) {
    let tv = libc::timeval {
        tv_sec: d.as_secs() as libc::time_t,
        tv_usec: d.subsec_micros() as libc::suseconds_t,
    };
    // SAFETY: a timeval that lives across the call, its size given.
    unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&tv as *const libc::timeval).cast(),
            16,
        )
    };
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
        recv_timeout(fd, Duration::from_secs(2));
        let mut pkt = vec![0u8; size - 20];
        pkt[0] = 8; // echo request
        pkt[4] = 0x77; // id
        pkt[7] = 1; // seq
        let ck = fold(sum16(&pkt, 0));
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

/// `nft` in namespace `ns`, argv as nft joins it.
pub fn nft(ns: &str, args: &str) -> String {
    let mut a = vec!["netns", "exec", ns, "nft"];
    a.extend(args.split_whitespace());
    ok("ip", &a)
}

/// `nft list {what}` on host `i` (empty where that fails: no such table).
pub fn nft_list(lab: &Lab, i: usize, what: &str) -> String {
    let h = lab.host(i);
    let mut a = vec!["netns", "exec", &h, "nft", "list"];
    a.extend(what.split_whitespace());
    String::from_utf8_lossy(&run("ip", &a).stdout).into_owned()
}

/// The packets of each rule whose line in an nft listing contains
/// `what`, in order (None: that line has no counter).
fn counters<'a>(listing: &'a str, what: &'a str) -> impl Iterator<Item = Option<u64>> + 'a {
    listing.lines().filter(move |l| l.contains(what)).map(|l| {
        let w: Vec<&str> = l.split_whitespace().collect();
        let at = w.iter().position(|x| *x == "packets")?;
        w.get(at + 1)?.parse().ok()
    })
}

/// Packets counted by all the rules whose lines contain `what`.
pub fn counted(listing: &str, what: &str) -> u64 {
    counters(listing, what).flatten().sum()
}

/// Packets counted by the first rule whose line contains `what`.
pub fn counted_first(listing: &str, what: &str) -> u64 {
    counters(listing, what).next().flatten().unwrap_or(0)
}

/// Whether a TCP connect from namespace `ns` to `to` completes in 1 s.
pub fn connects(ns: &str, to: &str) -> bool {
    let a: std::net::SocketAddr = to.parse().expect("socket address");
    in_ns(ns, || {
        std::net::TcpStream::connect_timeout(&a, Duration::from_secs(1)).is_ok()
    })
}

/// "The internet": a namespace on the underlay with no route back to the
/// overlay, 198.51.100.1 on its loopback; hosts 0..`routed` route there.
/// With `subnet`, echo requests reaching it are counted by source: the
/// routed hosts' underlay addresses and the overlay's `subnet` (which
/// must never be seen).
pub fn internet(lab: &mut Lab, routed: usize, subnet: Option<&str>) -> String {
    world(lab, false, routed, subnet)
}

/// "The IPv6 internet": 2001:db8:77::1 on the loopback of a namespace of
/// the underlay with no route back to the overlay; hosts 0 and 1 route
/// there over an IPv6 underlay address each; echo requests counted by
/// source (those addresses and the overlay's `subnet6`).
pub fn internet6(lab: &mut Lab, subnet6: &str) -> String {
    world(lab, true, 2, Some(subnet6))
}

fn world(lab: &mut Lab, v6: bool, routed: usize, subnet: Option<&str>) -> String {
    let inet = lab.container("inet");
    lab.plug(&format!("{}ui", lab.p), &inet);
    let sub = lab.sub;
    let (iaddr, plen, far, net) = if v6 {
        let a = format!("fd00:{sub}::60");
        (a, 64, "2001:db8:77::1/128", "2001:db8:77::/64")
    } else {
        let a = format!("10.231.{sub}.60");
        (a, 24, "198.51.100.1/32", "198.51.100.0/24")
    };
    // IPv6 addresses with no DAD: usable at once.
    let add = |ns: &str, a: &str, dev: &str| {
        let mut args = vec!["-n", ns, "addr", "add", a, "dev", dev];
        if v6 {
            args.push("nodad");
        }
        ok("ip", &args)
    };
    add(&inet, &format!("{iaddr}/{plen}"), "eth0");
    add(&inet, far, "lo");
    ok("ip", &["-n", &inet, "link", "set", "eth0", "up"]);
    ok("ip", &["-n", &inet, "link", "set", "lo", "up"]);
    let mut sources = vec![];
    for i in 0..routed {
        let h = lab.host(i);
        let mut route = vec!["-n", &h];
        let src = if v6 {
            let a = format!("fd00:{sub}::{}", i + 1);
            add(&h, &format!("{a}/64"), "eth0");
            route.push("-6");
            a
        } else {
            lab.addr(i)
        };
        route.extend(["route", "add", net, "via", &iaddr]);
        ok("ip", &route);
        sources.push(src);
    }
    if let Some(subnet) = subnet {
        sources.push(subnet.to_string());
        let (fam, icmp) = if v6 {
            ("ip6", "icmpv6")
        } else {
            ("ip", "icmp")
        };
        nft(&inet, &format!("add table {fam} pwvseen"));
        nft(
            &inet,
            &format!("add chain {fam} pwvseen in {{ type filter hook input priority 0 ; }}"),
        );
        for src in sources {
            nft(
                &inet,
                &format!(
                    "add rule {fam} pwvseen in {fam} saddr {src} {icmp} type echo-request counter"
                ),
            );
        }
    }
    inet
}

/// `tool` (iptables, ip6tables…) in namespace `ns`, waiting for its lock.
pub fn xt(tool: &str, ns: &str, args: &[&str]) -> Output {
    let mut a = vec!["netns", "exec", ns, tool, "-w"];
    a.extend(args);
    run("ip", &a)
}

/// The agent's DOCKER-USER accept for overlay network `net` after the
/// operation (`-I`, `-D`): within the network (`-i ov-NET -o ov-NET`), or
/// for its egress (`-i ov-NET ! -o ov-+`).
pub fn overlay_accept(op: &str, net: &str, egress: bool) -> Vec<String> {
    let dev = format!("ov-{net}");
    let out: &[&str] = if egress {
        &["!", "-o", "ov-+"]
    } else {
        &["-o", &dev]
    };
    let mut v: Vec<String> = [op, "DOCKER-USER", "-i", &dev].map(String::from).to_vec();
    v.extend(out.iter().map(|s| s.to_string()));
    let comment = format!("pipework-egress:{dev}");
    v.extend(["-m", "comment", "--comment", &comment, "-j", "ACCEPT"].map(String::from));
    v
}

/// `xt` with owned arguments.
pub fn xt_v(tool: &str, ns: &str, args: &[String]) -> Output {
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    xt(tool, ns, &a)
}

/// Our accepts (comment `pipework-egress:`) in a `-S` listing.
pub fn egress_accepts(listing: &Output) -> Vec<String> {
    String::from_utf8_lossy(&listing.stdout)
        .lines()
        .filter(|l| l.contains("pipework-egress:"))
        .map(str::to_string)
        .collect()
}

/// dockerd's shape for each of `tools` (iptables, ip6tables), in a host
/// namespace we made: FORWARD policy DROP, FORWARD jumping to
/// DOCKER-USER first (which returns).
pub fn docker_forward(ns: &str, tools: &[&str]) {
    for tool in tools {
        for a in [
            &["-N", "DOCKER-USER"][..],
            &["-A", "DOCKER-USER", "-j", "RETURN"],
            &["-I", "FORWARD", "-j", "DOCKER-USER"],
            &["-P", "FORWARD", "DROP"],
        ] {
            let o = xt(tool, ns, a);
            assert!(o.status.success(), "{tool} {a:?}: {o:?}");
        }
    }
}
