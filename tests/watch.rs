//! `pipework watch` against a real dockerd that each test starts for itself
//! (own data root, exec root, socket and pidfile under /tmp/pww-*, no
//! bridge, no iptables) and stops by its pid: restarting the shared engine
//! would pull it from under the other test files. Test objects are named
//! `pww*` (Linux bridges `brpww*`, OVS bridges `ovspww*`).
mod common;
use common::{ok, sh, uniq};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const IMAGE_TAR: &str = "/tmp/pw-env/bb.tar";

fn root() -> bool {
    nix::unistd::Uid::effective().is_root()
}

/// Can these tests run here? In CI a missing piece is a failure.
fn ready() -> bool {
    let dockerd = Path::new("/usr/sbin/dockerd").exists() || Path::new("/usr/bin/dockerd").exists();
    let why = match (root(), dockerd, Path::new(IMAGE_TAR).exists()) {
        (true, true, true) => return true,
        (r, d, i) => {
            format!("needs root ({r}), dockerd ({d}) and {IMAGE_TAR} ({i}): run scripts/env-up.sh")
        }
    };
    assert!(std::env::var_os("CI").is_none(), "{why}");
    eprintln!("SKIP: {why}");
    false
}

fn wait_for(secs: u64, mut f: impl FnMut() -> bool) -> bool {
    let until = Instant::now() + Duration::from_secs(secs);
    loop {
        if f() {
            return true;
        }
        if Instant::now() > until {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A private dockerd.
struct Dockerd {
    dir: PathBuf,
    child: Option<Child>,
}

impl Dockerd {
    fn start(tag: &str) -> Dockerd {
        let dir = PathBuf::from(format!("/tmp/{}", uniq(tag)));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dockerd dir");
        let mut d = Dockerd { dir, child: None };
        d.launch();
        let o = d.docker(&["import", IMAGE_TAR, "bb:latest"]);
        assert!(o.status.success(), "import: {}", err(&o));
        d
    }

    fn sock(&self) -> String {
        format!("unix://{}/d.sock", self.dir.display())
    }

    fn launch(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("dockerd.log"))
            .expect("log");
        let d = self.dir.display();
        // In a network namespace of its own: a dockerd started with
        // `--bridge=none` deletes `docker0`, and in the host's namespace
        // that would be the shared engine's bridge. `unshare` execs dockerd,
        // so the pid stopped below is dockerd's.
        let child = Command::new("unshare")
            .args([
                "--net",
                "--",
                "dockerd",
                &format!("--data-root={d}/data"),
                &format!("--exec-root={d}/exec"),
                &format!("--pidfile={d}/d.pid"),
                &format!("--host={}", self.sock()),
                "--bridge=none",
                "--iptables=false",
                "--ip6tables=false",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start dockerd");
        self.child = Some(child);
        assert!(
            wait_for(30, || self.docker(&["version"]).status.success()),
            "private dockerd did not answer"
        );
    }

    /// SIGTERM by pid; dockerd stops its containers and exits.
    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(c.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let _ = c.wait();
        }
    }

    fn docker(&self, args: &[&str]) -> Output {
        Command::new("docker")
            .args(args)
            .env("DOCKER_HOST", self.sock())
            .stdin(Stdio::null())
            .output()
            .expect("docker")
    }

    /// A docker command left running (to run many side by side).
    fn spawn(&self, args: &[&str]) -> Child {
        let mut a = args.to_vec();
        if a.first() == Some(&"run") {
            a.extend_from_slice(&["bb:latest", "/bin/sleep", "3600"]);
        }
        Command::new("docker")
            .args(&a)
            .env("DOCKER_HOST", self.sock())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("docker")
    }

    #[track_caller]
    fn docker_ok(&self, args: &[&str]) -> String {
        let o = self.docker(args);
        assert!(o.status.success(), "docker {args:?}: {}", err(&o));
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// `docker run -d` a labelled busybox.
    fn run(&self, name: &str, extra: &[&str]) {
        let mut a = vec!["run", "-d", "--name", name, "--network", "none"];
        a.extend_from_slice(extra);
        a.extend_from_slice(&["bb:latest", "/bin/sleep", "3600"]);
        self.docker_ok(&a);
    }

    /// The container's addresses on `ifname`, if it has that interface.
    fn addr(&self, name: &str, ifname: &str) -> Option<String> {
        let o = self.docker(&["exec", name, "ip", "-o", "addr", "show", ifname]);
        o.status
            .success()
            .then(|| String::from_utf8_lossy(&o.stdout).into_owned())
    }

    fn pid(&self, name: &str) -> String {
        self.docker_ok(&["inspect", "-f", "{{.State.Pid}}", name])
            .trim()
            .to_string()
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        if self.child.is_some() {
            let ids = self.docker(&["ps", "-aq"]);
            let ids = String::from_utf8_lossy(&ids.stdout).into_owned();
            let mut rm = vec!["rm", "-f"];
            rm.extend(ids.split_whitespace());
            if rm.len() > 2 {
                let _ = self.docker(&rm);
            }
        }
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A running `pipework watch`, its stderr in a file; killed by pid on drop.
struct Watch {
    child: Child,
    log: PathBuf,
}

impl Watch {
    fn start(d: &Dockerd, allow: &[&str]) -> Watch {
        let log = d.dir.join("watch.log");
        let f = std::fs::File::create(&log).expect("watch log");
        let mut args = vec!["watch".to_string(), format!("--docker-host={}", d.sock())];
        args.extend(allow.iter().map(|a| format!("--allow={a}")));
        let child = Command::new(env!("CARGO_BIN_EXE_pipework"))
            .args(&args)
            .env("DOCKER_HOST", d.sock())
            .env(
                "PIPEWORK_OVSDB",
                std::env::var("PIPEWORK_OVSDB")
                    .unwrap_or_else(|_| "unix:/tmp/pw-env/ovs/db.sock".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(f)
            .spawn()
            .expect("start watch");
        let w = Watch { child, log };
        assert!(w.wait_log("following", 10), "{}", w.text());
        w
    }
    fn text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
    fn wait_log(&self, needle: &str, secs: u64) -> bool {
        wait_for(secs, || self.text().contains(needle))
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Linux bridges the tests name, plus their firewall rules, removed on drop.
struct Bridges(Vec<String>);

impl Drop for Bridges {
    fn drop(&mut self) {
        for b in &self.0 {
            if b.starts_with("ovs") {
                let _ = sh("ovs-vsctl", &[&ovsdb_arg(), "--if-exists", "del-br", b]);
            } else {
                let _ = sh("ip", &["link", "del", b]);
            }
            let rules = String::from_utf8_lossy(&sh("iptables", &["-S"]).stdout).into_owned();
            for r in rules.lines() {
                if r.contains(&format!("pipework:{b}\""))
                    || r.ends_with(&format!("pipework:{b} -j ACCEPT"))
                {
                    let args: Vec<&str> =
                        r.split_whitespace().map(|w| w.trim_matches('"')).collect();
                    let mut del = vec!["-D"];
                    del.extend_from_slice(&args[1..]);
                    let _ = sh("iptables", &del);
                }
            }
            let _ = std::fs::remove_file(format!("/run/pipework/firewall/{b}"));
        }
    }
}

fn ovsdb_arg() -> String {
    let db =
        std::env::var("PIPEWORK_OVSDB").unwrap_or_else(|_| "unix:/tmp/pw-env/ovs/db.sock".into());
    format!("--db={db}")
}

fn ovs_up() -> bool {
    let db =
        std::env::var("PIPEWORK_OVSDB").unwrap_or_else(|_| "unix:/tmp/pw-env/ovs/db.sock".into());
    Path::new(db.trim_start_matches("unix:")).exists()
}

fn forward_drops() -> bool {
    ok("iptables", &["-S", "FORWARD"]).contains("-P FORWARD DROP")
}

fn rule_present(bridge: &str) -> bool {
    ok("iptables", &["-S"]).contains(&format!("pipework:{bridge}"))
}

/// A DHCP server (dnsmasq) in a namespace of its own, on `bridge`.
struct DhcpServer {
    ns: String,
    child: Child,
}

impl DhcpServer {
    fn on(bridge: &str, dir: &Path) -> DhcpServer {
        let ns = uniq("pwwsrv");
        let (a, b) = (uniq("pwwsa"), uniq("pwwsb"));
        ok("ip", &["netns", "add", &ns]);
        ok(
            "ip",
            &[
                "link", "add", &a, "type", "veth", "peer", "name", &b, "netns", &ns,
            ],
        );
        ok("ip", &["link", "set", &a, "master", bridge, "up"]);
        let x = |args: &[&str]| {
            let mut v = vec!["netns", "exec", &ns, "ip"];
            v.extend_from_slice(args);
            ok("ip", &v);
        };
        x(&["link", "set", &b, "name", "eth0"]);
        x(&["addr", "add", "10.61.0.1/24", "dev", "eth0"]);
        x(&["link", "set", "eth0", "up"]);
        let log = dir.join("dnsmasq.log");
        let child = Command::new("ip")
            .args([
                "netns",
                "exec",
                &ns,
                "dnsmasq",
                "--keep-in-foreground",
                "--conf-file=/dev/null",
            ])
            .args([
                "--port=0",
                "--interface=eth0",
                "--bind-interfaces",
                "--except-interface=lo",
            ])
            .args([
                "--no-ping",
                "--dhcp-range=10.61.0.100,10.61.0.200,255.255.255.0,2m",
            ])
            .arg(format!("--dhcp-leasefile={}", dir.join("leases").display()))
            .arg(format!("--pid-file={}", dir.join("dnsmasq.pid").display()))
            .arg(format!("--log-facility={}", log.display()))
            .stdin(Stdio::null())
            .spawn()
            .expect("dnsmasq");
        assert!(
            wait_for(10, || std::fs::read_to_string(&log)
                .is_ok_and(|l| l.contains("DHCP, IP range"))),
            "dnsmasq did not start"
        );
        DhcpServer { ns, child }
    }
}

impl Drop for DhcpServer {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = self.child.wait();
        let _ = sh("ip", &["netns", "del", &self.ns]);
    }
}

/// The DHCP keeper state file of a namespace, and the keeper's pid.
fn keeper_of(ns_inode: &str) -> Option<(PathBuf, u32)> {
    let dir = std::env::var("PIPEWORK_DHCP_DIR").unwrap_or_else(|_| "/run/pipework/dhcp".into());
    std::fs::read_dir(dir).ok()?.flatten().find_map(|e| {
        let p = e.path();
        let name = p.file_name()?.to_str()?.to_string();
        if !(name.starts_with(&format!("{ns_inode}-")) && name.ends_with(".json")) {
            return None;
        }
        let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&p).ok()?).ok()?;
        Some((p, v["pid"].as_u64()? as u32))
    })
}

/// `ip -o addr show IF` in the namespace of `pid`, if it has that interface.
fn addr_in(pid: &str, ifname: &str) -> Option<String> {
    let net = format!("--net=/proc/{pid}/ns/net");
    let o = sh("nsenter", &[&net, "--", "ip", "-o", "addr", "show", ifname]);
    o.status
        .success()
        .then(|| String::from_utf8_lossy(&o.stdout).into_owned())
}

fn ns_inode(pid: &str) -> String {
    ok("stat", &["-L", "-c", "%i", &format!("/proc/{pid}/ns/net")])
        .trim()
        .to_string()
}

#[test]
fn restart_kill_bad_labels_and_refusals() {
    if !ready() {
        return;
    }
    let d = Dockerd::start("pwwd");
    let br = uniq("brpww");
    let ovs = uniq("ovspww");
    let mut bridges = Bridges(vec![br.clone()]);
    ok("ip", &["link", "add", &br, "type", "bridge"]);
    ok("ip", &["link", "set", &br, "up"]);
    let _dhcp = DhcpServer::on(&br, &d.dir);
    let w = Watch::start(&d, &["brpww*", "ovspww*"]);

    // One container with a static address and a DHCP lease on the Linux
    // bridge, and a port on an OVS bridge (created by the classic rule).
    let a = uniq("pwwa");
    let mut labels = vec![
        format!("pipework.eth1={br} 10.61.0.2/24"),
        format!("pipework.eth2={br} dhcp"),
    ];
    if ovs_up() {
        bridges.0.push(ovs.clone());
        labels.push(format!("pipework.eth3={ovs} 10.62.0.2/24"));
    }
    let mut extra = vec![];
    for l in &labels {
        extra.extend(["--label", l.as_str()]);
    }
    d.run(&a, &extra);
    assert!(
        wait_for(20, || d
            .addr(&a, "eth2")
            .is_some_and(|s| s.contains("inet 10.61.0.1"))),
        "not plumbed: {}",
        w.text()
    );
    assert!(
        d.addr(&a, "eth1")
            .is_some_and(|s| s.contains("10.61.0.2/24"))
    );

    // docker restart: a new namespace, plumbed again from the labels.
    let old = d.pid(&a);
    d.docker_ok(&["restart", "-t", "0", &a]);
    assert_ne!(d.pid(&a), old);
    assert!(
        wait_for(20, || d
            .addr(&a, "eth1")
            .is_some_and(|s| s.contains("10.61.0.2/24"))
            && d.addr(&a, "eth2")
                .is_some_and(|s| s.contains("inet 10.61.0."))),
        "not re-plumbed after restart: {}",
        w.text()
    );
    if ovs_up() {
        assert!(
            wait_for(10, || d.addr(&a, "eth3").is_some()),
            "{}",
            w.text()
        );
    }

    // docker kill: the keeper, the OVS row and the bridge's firewall rule go.
    let (state, keeper) = keeper_of(&ns_inode(&d.pid(&a))).expect("a DHCP keeper runs for eth2");
    let fw = forward_drops();
    if fw {
        assert!(rule_present(&br));
    }
    d.docker_ok(&["kill", &a]);
    assert!(
        wait_for(15, || !state.exists()
            && !Path::new(&format!("/proc/{keeper}")).exists()),
        "keeper {keeper} still there: {}",
        w.text()
    );
    if ovs_up() {
        assert!(
            wait_for(10, || ok("ovs-vsctl", &[&ovsdb_arg(), "list-ports", &ovs])
                .trim()
                .is_empty()),
            "OVS rows left: {}",
            w.text()
        );
    }
    if fw {
        // Only the DHCP server's port is left, and it is not ours.
        assert!(
            wait_for(10, || !rule_present(&br)),
            "rule left: {}",
            w.text()
        );
    }

    // A bad label: one line naming the container and the token, nothing made.
    let bad = uniq("pwwbad");
    d.run(
        &bad,
        &["--label", &format!("pipework.eth1={br} 10.61.0.300/24")],
    );
    assert!(
        w.wait_log(&format!("{bad}: label pipework.eth1: 10.61.0.300/24"), 10),
        "{}",
        w.text()
    );
    // A host side outside --allow: refused, said so, nothing made.
    let refused = uniq("pwwref");
    d.run(&refused, &["--label", "pipework.eth1=eth0 10.63.0.2/24"]);
    assert!(
        w.wait_log(
            &format!("{refused}: label pipework.eth1: refused host side eth0"),
            10
        ),
        "{}",
        w.text()
    );
    for c in [&bad, &refused] {
        assert_eq!(
            w.text().matches(&format!("{c}: ")).count(),
            1,
            "{}",
            w.text()
        );
        let links = d.docker_ok(&["exec", c, "ip", "-o", "link"]);
        assert_eq!(links.lines().count(), 1, "only lo: {links}");
    }
}

#[test]
fn twenty_restarts_at_once_are_all_replumbed() {
    if !ready() {
        return;
    }
    let d = Dockerd::start("pwwd");
    let br = uniq("brpww");
    let _bridges = Bridges(vec![br.clone()]);
    let w = Watch::start(&d, &["brpww*"]);
    let names: Vec<String> = (0..20).map(|_| uniq("pwwm")).collect();
    // Started side by side, as the restarts below.
    let runs: Vec<Child> = names
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let label = format!("pipework.eth1={br} 10.64.0.{}/24", i + 10);
            d.spawn(&[
                "run",
                "-d",
                "--name",
                n,
                "--network",
                "none",
                "--label",
                &label,
            ])
        })
        .collect();
    for mut c in runs {
        assert!(c.wait().expect("docker run").success());
    }
    // Looked at from the host through each container's pid: twenty
    // `docker exec`s per poll would be most of this test's time.
    let all = |pids: &[String]| {
        pids.iter().enumerate().all(|(i, p)| {
            addr_in(p, "eth1").is_some_and(|s| s.contains(&format!("10.64.0.{}/24", i + 10)))
        })
    };
    let pids: Vec<String> = names.iter().map(|n| d.pid(n)).collect();
    assert!(wait_for(30, || all(&pids)), "{}", w.text());
    let restarts: Vec<Child> = names
        .iter()
        .map(|n| d.spawn(&["restart", "-t", "0", n]))
        .collect();
    for mut c in restarts {
        assert!(c.wait().expect("restart").success());
    }
    let new: Vec<String> = names.iter().map(|n| d.pid(n)).collect();
    for ((n, p), q) in names.iter().zip(&pids).zip(&new) {
        assert_ne!(p, q, "{n} was not restarted");
    }
    assert!(wait_for(30, || all(&new)), "{}", w.text());
    // And they talk: the bridge's firewall rule (dockerd's FORWARD DROP)
    // survived twenty releases and re-plumbs racing each other.
    d.docker_ok(&[
        "exec",
        &names[0],
        "ping",
        "-c",
        "1",
        "-W",
        "2",
        "10.64.0.29",
    ]);
}

#[test]
fn own_start_and_dockerd_restart_are_resynced() {
    if !ready() {
        return;
    }
    let mut d = Dockerd::start("pwwd");
    let br = uniq("brpww");
    let _bridges = Bridges(vec![br.clone()]);
    // Running before watch starts: its own start plumbs it from the list.
    let c = uniq("pwwr");
    d.run(
        &c,
        &[
            "--restart=always",
            "--label",
            &format!("pipework.eth1={br} 10.65.0.2/24"),
        ],
    );
    let w = Watch::start(&d, &["brpww*"]);
    assert!(
        wait_for(20, || d.addr(&c, "eth1").is_some()),
        "{}",
        w.text()
    );
    let old = d.pid(&c);
    d.stop();
    assert!(w.wait_log("reconnecting", 10), "{}", w.text());
    d.launch();
    assert!(
        wait_for(30, || d
            .addr(&c, "eth1")
            .is_some_and(|s| s.contains("10.65.0.2/24"))),
        "not re-plumbed after the engine restart: {}",
        w.text()
    );
    assert_ne!(d.pid(&c), old);
    assert!(w.text().contains("resyncing"), "{}", w.text());
}

/// A container that is a node of a lab that is up gets the lab's links
/// back on restart (issue #13: "or a node of a lab that is up"), with no
/// label of its own: the point-to-point link to its neighbour is rebuilt.
#[test]
fn a_lab_node_is_replumbed_on_restart() {
    if !ready() {
        return;
    }
    let d = Dockerd::start("pwwl");
    let (a, b) = (uniq("pwwla"), uniq("pwwlb"));
    d.run(&a, &[]);
    d.run(&b, &[]);
    let lab = uniq("pwwlab");
    let file = d.dir.join("lab.toml");
    std::fs::write(
        &file,
        format!(
            "name = \"{lab}\"\n[nodes.a]\ncontainer = \"{a}\"\n[nodes.b]\ncontainer = \"{b}\"\n\
             [[links]]\nendpoints = [\"a:eth1\", \"b:eth1\"]\nips = [\"10.66.0.1/30\", \"10.66.0.2/30\"]\n"
        ),
    )
    .expect("lab file");
    let pw = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_pipework"))
            .args(args)
            .env("DOCKER_HOST", d.sock())
            .output()
            .expect("pipework")
    };
    let file_s = file.display().to_string();
    let o = pw(&["lab", "up", &file_s]);
    assert!(o.status.success(), "lab up: {}", err(&o));
    let w = Watch::start(&d, &[]);
    d.docker_ok(&["restart", "-t", "0", &a]);
    let back = wait_for(20, || {
        d.addr(&a, "eth1")
            .is_some_and(|s| s.contains("10.66.0.1/30"))
    });
    let ping = back
        && d.docker(&["exec", &a, "ping", "-c", "1", "-W", "2", "10.66.0.2"])
            .status
            .success();
    let o = pw(&["lab", "down", &lab]);
    assert!(back, "lab link not back after restart: {}", w.text());
    assert!(ping, "no ping across the rebuilt link: {}", w.text());
    assert!(w.text().contains("re-plumbed"), "{}", w.text());
    assert!(o.status.success(), "lab down: {}", err(&o));
    assert!(d.addr(&b, "eth1").is_none(), "lab down left b's end");
}
