//! Test rig for the DHCP tests: a server namespace `pwd-srv-*` running a
//! real dnsmasq, joined by a veth pair to a client namespace `pwd-cli-*`.
//! Nothing is created in the host namespace; everything is removed on drop.
#![allow(dead_code)]
use pipework::netns::NetNs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const SRV_IP: &str = "10.232.0.1";

pub struct Rig {
    pub srv: String,
    pub cli: String,
    pub dir: PathBuf,
    dnsmasq: Option<Child>,
}

fn run(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd}: {e}"));
    assert!(
        out.status.success(),
        "{cmd} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Why the DHCP integration tests cannot run here, if they cannot.
pub fn skip_reason() -> Option<String> {
    if !nix::unistd::geteuid().is_root() {
        return Some("needs root (network namespaces)".into());
    }
    if pipework::dhcp::external::which("dnsmasq").is_none() {
        return Some("dnsmasq is not installed (apt-get install dnsmasq-base)".into());
    }
    None
}

/// `let Some(rig) = rig!("tag") else { return };`
#[macro_export]
macro_rules! rig {
    ($tag:expr) => {{
        match dhcp_support::skip_reason() {
            Some(why) => {
                eprintln!("SKIP: {why}");
                None
            }
            None => Some(dhcp_support::Rig::new($tag)),
        }
    }};
}

impl Rig {
    pub fn new(tag: &str) -> Rig {
        let id = format!("{tag}{}", std::process::id());
        let rig = Rig {
            srv: format!("pwd-srv-{id}"),
            cli: format!("pwd-cli-{id}"),
            dir: std::env::temp_dir().join(format!("pwd-dhcp-{id}")),
            dnsmasq: None,
        };
        let _ = std::fs::remove_dir_all(&rig.dir);
        std::fs::create_dir_all(&rig.dir).expect("temp dir");
        run("ip", &["netns", "add", &rig.srv]);
        run("ip", &["netns", "add", &rig.cli]);
        run(
            "ip",
            &[
                "-n", &rig.srv, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0",
                "netns", &rig.cli,
            ],
        );
        rig.ip_srv(&["addr", "add", &format!("{SRV_IP}/24"), "dev", "eth0"]);
        rig.ip_srv(&["link", "set", "eth0", "up"]);
        rig.ip_srv(&["link", "set", "lo", "up"]);
        rig
    }

    pub fn ip_srv(&self, args: &[&str]) -> String {
        let mut a = vec!["-n", &self.srv];
        a.extend_from_slice(args);
        run("ip", &a)
    }

    pub fn ip_cli(&self, args: &[&str]) -> String {
        let mut a = vec!["-n", &self.cli];
        a.extend_from_slice(args);
        run("ip", &a)
    }

    pub fn cli_path(&self) -> PathBuf {
        PathBuf::from(format!("/run/netns/{}", self.cli))
    }

    pub fn cli_ns(&self) -> NetNs {
        NetNs::open(&self.cli_path()).expect("open client netns")
    }

    pub fn srv_ns(&self) -> NetNs {
        NetNs::open(Path::new(&format!("/run/netns/{}", self.srv))).expect("open server netns")
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.join("dnsmasq.log")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Start dnsmasq on the server side with `range` ("first,last") and
    /// extra options. Waits until it logs that its DHCP socket is bound.
    pub fn start_dnsmasq(&mut self, range: &str, extra: &[&str]) {
        self.stop_dnsmasq();
        let _ = std::fs::remove_file(self.log_path());
        let mut args: Vec<String> = [
            "netns",
            "exec",
            &self.srv,
            "dnsmasq",
            "--keep-in-foreground",
            "--conf-file=/dev/null",
            "--port=0",
            "--interface=eth0",
            "--bind-interfaces",
            "--except-interface=lo",
            "--no-ping",
            "--log-dhcp",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.push(format!("--dhcp-range={range},255.255.255.0,2m"));
        args.push(format!(
            "--dhcp-leasefile={}",
            self.dir.join("leases").display()
        ));
        args.push(format!(
            "--pid-file={}",
            self.dir.join("dnsmasq.pid").display()
        ));
        args.push(format!("--log-facility={}", self.log_path().display()));
        args.extend(extra.iter().map(|s| s.to_string()));
        let child = Command::new("ip")
            .args(&args)
            .stdin(Stdio::null())
            .spawn()
            .expect("start dnsmasq");
        self.dnsmasq = Some(child);
        let until = Instant::now() + Duration::from_secs(10);
        while !self.log().contains("sockets bound exclusively") {
            assert!(
                Instant::now() < until,
                "dnsmasq did not start: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn stop_dnsmasq(&mut self) {
        if let Some(mut c) = self.dnsmasq.take() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(c.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let _ = c.wait();
        }
    }

    /// IPv4 addresses on the client's eth0, as "a.b.c.d/len".
    pub fn cli_addrs(&self) -> Vec<String> {
        self.ip_cli(&["-4", "-o", "addr", "show", "dev", "eth0"])
            .lines()
            .filter_map(|l| {
                let mut w = l.split_whitespace();
                w.position(|x| x == "inet")?;
                w.next().map(String::from)
            })
            .collect()
    }

    pub fn cli_routes(&self) -> String {
        self.ip_cli(&["-4", "route", "show"])
    }

    /// Delete and recreate the client side (a container restart), with
    /// `mac` on the new eth0 if given.
    pub fn recreate_client(&self, mac: Option<&str>) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.cli])
            .status();
        // Namespace teardown is asynchronous in the kernel: wait for the
        // server's end of the old veth pair to go away.
        let gone = wait_for(10, || {
            let st = Command::new("ip")
                .args(["-n", &self.srv, "link", "show", "eth0"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .ok()?;
            (!st.success()).then_some(())
        });
        assert!(gone.is_some(), "old veth pair did not go away");
        run("ip", &["netns", "add", &self.cli]);
        run(
            "ip",
            &[
                "-n", &self.srv, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0",
                "netns", &self.cli,
            ],
        );
        self.ip_srv(&["addr", "add", &format!("{SRV_IP}/24"), "dev", "eth0"]);
        self.ip_srv(&["link", "set", "eth0", "up"]);
        if let Some(m) = mac {
            self.ip_cli(&["link", "set", "eth0", "address", m]);
        }
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        self.stop_dnsmasq();
        for ns in [&self.cli, &self.srv] {
            let _ = Command::new("ip")
                .args(["netns", "del", ns])
                .stderr(Stdio::null())
                .status();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Poll `f` until it returns `Some` or `secs` pass.
pub fn wait_for<T>(secs: u64, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let until = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= until {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}
