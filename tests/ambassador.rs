//! `pipework ambassador` end to end: the real binary, real sockets on
//! loopback (and in a test namespace named pwa-*), real signals.
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_pipework");
/// Upper bound for anything we wait for; a failure, never a timing assertion.
const PATIENCE: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------- helpers

struct Amb {
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
}

impl Amb {
    fn start(args: &[String]) -> Amb {
        Self::start_env(args, &[])
    }

    fn start_env(args: &[String], env: &[(String, String)]) -> Amb {
        let mut cmd = Command::new(BIN);
        cmd.arg("ambassador")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn pipework");
        let log = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().expect("stderr");
        let l2 = log.clone();
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("[amb] {line}");
                l2.lock().unwrap().push(line);
            }
        });
        let a = Amb { child, log };
        assert!(
            a.wait_log("msg=ready"),
            "ambassador did not become ready: {:?}",
            a.lines()
        );
        a
    }

    fn lines(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    fn wait_log(&self, pat: &str) -> bool {
        self.wait_log_count(pat, 1)
    }

    fn wait_log_count(&self, pat: &str, n: usize) -> bool {
        wait_until(|| self.lines().iter().filter(|l| l.contains(pat)).count() >= n)
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    fn signal(&self, sig: i32) {
        // SAFETY: signalling our own child by pid.
        assert_eq!(unsafe { libc::kill(self.pid(), sig) }, 0);
    }

    fn fd_count(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .expect("proc fd")
            .count()
    }

    /// Wait for exit; None if it is still running after PATIENCE.
    fn wait_exit(&mut self) -> Option<std::process::ExitStatus> {
        let t = Instant::now();
        while t.elapsed() < PATIENCE {
            if let Ok(Some(s)) = self.child.try_wait() {
                return Some(s);
            }
            thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Amb {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn wait_until(mut f: impl FnMut() -> bool) -> bool {
    let t = Instant::now();
    while t.elapsed() < PATIENCE {
        if f() {
            return true;
        }
        thread::sleep(Duration::from_millis(25));
    }
    f()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

/// A TCP backend on 127.0.0.1: writes `tag` (if any) on accept, then echoes
/// until EOF and half-closes back. Stopping closes the listening socket.
struct Server {
    port: u16,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

fn server(port: u16, tag: Option<&'static [u8]>) -> Server {
    let l = TcpListener::bind(("127.0.0.1", port)).expect("bind backend");
    let port = l.local_addr().unwrap().port();
    l.set_nonblocking(true).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let st = stop.clone();
    let handle = thread::spawn(move || {
        while !st.load(Ordering::Relaxed) {
            match l.accept() {
                Ok((c, _)) => {
                    thread::spawn(move || echo(c, tag));
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    thread::sleep(Duration::from_millis(2))
                }
                Err(_) => thread::sleep(Duration::from_millis(2)),
            }
        }
    });
    Server {
        port,
        stop,
        handle: Some(handle),
    }
}

fn echo(mut c: TcpStream, tag: Option<&[u8]>) {
    c.set_nonblocking(false).ok();
    if let Some(t) = tag
        && c.write_all(t).is_err()
    {
        return;
    }
    let mut buf = [0u8; 16384];
    loop {
        match c.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if c.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
        }
    }
    let _ = c.shutdown(Shutdown::Write);
}

impl Server {
    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn connect(port: u16) -> TcpStream {
    let c = TcpStream::connect(("127.0.0.1", port)).expect("connect to ambassador");
    c.set_read_timeout(Some(PATIENCE)).unwrap();
    c
}

/// Connect, read the backend's one-byte tag.
fn tag_of(port: u16) -> u8 {
    let mut c = connect(port);
    let mut t = [0u8; 1];
    c.read_exact(&mut t).expect("tag");
    t[0]
}

fn echo_roundtrip(c: &mut TcpStream, msg: &[u8]) {
    c.write_all(msg).unwrap();
    let mut back = vec![0u8; msg.len()];
    c.read_exact(&mut back).expect("echo");
    assert_eq!(back, msg);
}

/// Deterministic pseudo-random bytes (xorshift), so mismatches are real.
fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn metric(port: u16, line_prefix: &str) -> Option<u64> {
    let mut c = TcpStream::connect(("127.0.0.1", port)).ok()?;
    c.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").ok()?;
    let mut body = String::new();
    c.read_to_string(&mut body).ok()?;
    body.lines()
        .find(|l| l.starts_with(line_prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

fn have(bin: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {bin}")])
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

// ------------------------------------------------------------------ tests

#[test]
fn byte_exact_both_directions_with_half_close() {
    // Backend: read everything until EOF (client half-closed), check it,
    // then send its own payload and close. Second connection: the backend
    // sends first and half-closes, then reads the client's payload.
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let bport = l.local_addr().unwrap().port();
    let up = pattern(3 << 20, 7);
    let down = pattern(5 << 20, 11);
    let (up2, down2) = (up.clone(), down.clone());
    let backend = thread::spawn(move || {
        let (mut a, _) = l.accept().unwrap();
        let mut got = Vec::new();
        a.read_to_end(&mut got).unwrap();
        assert!(
            got == up2,
            "client->backend bytes differ (len {})",
            got.len()
        );
        a.write_all(&down2).unwrap();
        drop(a);
        let (mut b, _) = l.accept().unwrap();
        b.write_all(&down2).unwrap();
        b.shutdown(Shutdown::Write).unwrap();
        let mut got = Vec::new();
        b.read_to_end(&mut got).unwrap();
        assert!(
            got == up2,
            "client->backend bytes differ after backend half-close"
        );
        b.write_all(b"").ok();
    });
    let port = free_port();
    let _a = Amb::start(&s(&[
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--to",
        &format!("127.0.0.1:{bport}"),
        "--health-interval",
        "0",
    ]));

    let mut c = connect(port);
    c.write_all(&up).unwrap();
    c.shutdown(Shutdown::Write).unwrap();
    let mut got = Vec::new();
    c.read_to_end(&mut got).unwrap();
    assert!(
        got == down,
        "backend->client bytes differ (len {})",
        got.len()
    );

    let mut c = connect(port);
    let mut got = Vec::new();
    c.read_to_end(&mut got).unwrap(); // ends when the backend half-closes
    assert!(
        got == down,
        "backend->client bytes differ before half-close"
    );
    c.write_all(&up).unwrap();
    c.shutdown(Shutdown::Write).unwrap();
    backend.join().expect("backend assertions");
}

#[test]
fn failover_when_one_backend_is_down() {
    let dead = free_port(); // nothing listens there
    let live = server(0, Some(b"L"));
    let port = free_port();
    let a = Amb::start(&s(&[
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--to",
        &format!("127.0.0.1:{dead}"),
        "--to",
        &live.addr(),
        "--health-interval",
        "0",
    ]));
    for _ in 0..10 {
        assert_eq!(tag_of(port), b'L');
    }
    // Passive marking logged (rate-limited: once, however many attempts).
    assert!(a.wait_log("backend connect failed"));
    assert_eq!(
        a.lines()
            .iter()
            .filter(|l| l.contains("backend connect failed"))
            .count(),
        1
    );
}

#[test]
fn health_check_takes_backend_out_and_back() {
    let a_srv = server(0, Some(b"A"));
    let b_srv = server(0, Some(b"B"));
    let bport = b_srv.port;
    let port = free_port();
    let mport = free_port();
    let amb = Amb::start(&s(&[
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--to",
        &a_srv.addr(),
        "--to",
        &b_srv.addr(),
        "--health-interval",
        "100ms",
        "--metrics",
        &format!("127.0.0.1:{mport}"),
    ]));
    let up_b = format!(
        "pipework_ambassador_backend_up{{listen=\"tcp:127.0.0.1:{port}\",backend=\"127.0.0.1:{bport}\"}}"
    );
    assert!(wait_until(|| metric(mport, &up_b) == Some(1)));
    let tags: Vec<u8> = (0..4).map(|_| tag_of(port)).collect();
    assert!(tags.contains(&b'A') && tags.contains(&b'B'), "{tags:?}");

    drop(b_srv);
    assert!(amb.wait_log("msg=\"backend down\""));
    assert!(wait_until(|| metric(mport, &up_b) == Some(0)));
    for _ in 0..6 {
        assert_eq!(tag_of(port), b'A');
    }

    let _b_again = server(bport, Some(b"B"));
    assert!(amb.wait_log("msg=\"backend up\""));
    assert!(wait_until(|| metric(mport, &up_b) == Some(1)));
    let tags: Vec<u8> = (0..4).map(|_| tag_of(port)).collect();
    assert!(tags.contains(&b'B'), "{tags:?}");
}

#[test]
fn reload_keeps_established_connections() {
    let one = server(0, Some(b"1"));
    let two = server(0, Some(b"2"));
    let port = free_port();
    let port2 = free_port();
    let cfg = std::env::temp_dir().join(format!("pwa-reload-{}.toml", std::process::id()));
    let write = |to: &str, extra: &str| {
        std::fs::write(
            &cfg,
            format!("[[listen]]\naddr = \"127.0.0.1:{port}\"\nto = [\"{to}\"]\n{extra}"),
        )
        .unwrap()
    };
    write(&one.addr(), "");
    let a = Amb::start(&s(&["--config", cfg.to_str().unwrap()]));
    let mut c = connect(port);
    let mut t = [0u8; 1];
    c.read_exact(&mut t).unwrap();
    assert_eq!(&t, b"1");
    echo_roundtrip(&mut c, b"before reload");

    // Switch the backend and add a listener.
    write(
        &two.addr(),
        &format!(
            "[[listen]]\naddr = \"127.0.0.1:{port2}\"\nto = [\"{}\"]\n",
            one.addr()
        ),
    );
    a.signal(libc::SIGHUP);
    assert!(a.wait_log("msg=reloaded"));
    echo_roundtrip(&mut c, b"after reload, same connection");
    assert_eq!(tag_of(port), b'2');
    assert_eq!(tag_of(port2), b'1');

    // A broken file keeps the running setup.
    std::fs::write(&cfg, "[[listen]\n").unwrap();
    a.signal(libc::SIGHUP);
    assert!(a.wait_log("reload failed"));
    assert_eq!(tag_of(port), b'2');
    echo_roundtrip(&mut c, b"still here");
    std::fs::remove_file(&cfg).ok();
}

#[test]
fn sigterm_stops_accepting_and_drains() {
    let srv = server(0, None);
    let port = free_port();
    let mut a = Amb::start(&s(&[
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--to",
        &srv.addr(),
        "--drain-timeout",
        "60s",
    ]));
    let mut c = connect(port);
    echo_roundtrip(&mut c, b"hello");
    a.signal(libc::SIGTERM);
    assert!(a.wait_log("msg=draining"));
    assert!(a.wait_log("msg=\"stopped accepting\""));
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "new connections must be refused while draining"
    );
    // The established connection still works, and the process waits for it.
    echo_roundtrip(&mut c, b"during drain");
    assert!(
        a.child.try_wait().unwrap().is_none(),
        "exited before the connection ended"
    );
    c.shutdown(Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    c.read_to_end(&mut rest).unwrap();
    drop(c);
    let st = a
        .wait_exit()
        .expect("ambassador did not exit after draining");
    assert!(st.success(), "{st:?}");
    assert!(a.lines().iter().any(|l| l.contains("msg=drained")));
}

#[test]
fn drain_deadline_closes_stragglers() {
    let srv = server(0, None);
    let port = free_port();
    let mut a = Amb::start(&s(&[
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--to",
        &srv.addr(),
        "--drain-timeout",
        "300ms",
    ]));
    let mut c = connect(port);
    echo_roundtrip(&mut c, b"x");
    a.signal(libc::SIGTERM);
    let st = a
        .wait_exit()
        .expect("ambassador ignored its drain deadline");
    assert!(st.success());
    assert!(
        a.lines()
            .iter()
            .any(|l| l.contains("drain deadline passed"))
    );
    let mut buf = [0u8; 8];
    assert!(matches!(c.read(&mut buf), Ok(0) | Err(_)));
}

#[test]
fn udp_round_trip_per_client_sessions() {
    let backend = UdpSocket::bind("127.0.0.1:0").unwrap();
    let bport = backend.local_addr().unwrap().port();
    thread::spawn(move || {
        let mut buf = [0u8; 2048];
        // Echo with the backend-side source port appended, so each client
        // can tell its session had its own socket.
        while let Ok((n, peer)) = backend.recv_from(&mut buf) {
            let mut out = buf[..n].to_vec();
            out.extend_from_slice(format!("|{}", peer.port()).as_bytes());
            let _ = backend.send_to(&out, peer);
        }
    });
    let port = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let _a = Amb::start(&s(&[
        "--listen",
        &format!("udp:127.0.0.1:{port}"),
        "--to",
        &format!("127.0.0.1:{bport}"),
    ]));
    let mut seen = Vec::new();
    for i in 0..2 {
        let c = UdpSocket::bind("127.0.0.1:0").unwrap();
        c.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        c.connect(("127.0.0.1", port)).unwrap();
        let msg = format!("ping {i}");
        let mut reply = None;
        for _ in 0..20 {
            c.send(msg.as_bytes()).unwrap();
            let mut buf = [0u8; 2048];
            if let Ok(n) = c.recv(&mut buf) {
                reply = Some(String::from_utf8_lossy(&buf[..n]).to_string());
                break;
            }
        }
        let reply = reply.expect("no UDP reply through the ambassador");
        let (body, src) = reply.split_once('|').unwrap();
        assert_eq!(body, msg);
        seen.push(src.to_string());
    }
    assert_ne!(seen[0], seen[1], "two clients shared one backend session");
}

struct TestNs(String);

impl Drop for TestNs {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

#[test]
fn netns_listener_lives_inside_the_namespace() {
    if !have("ip") {
        eprintln!("SKIP: iproute2 `ip` not installed");
        return;
    }
    let name = format!("pwa-amb-{}", std::process::id());
    let ok = Command::new("ip")
        .args(["netns", "add", &name])
        .status()
        .unwrap()
        .success();
    assert!(ok, "ip netns add {name}");
    let _ns = TestNs(name.clone());
    assert!(
        Command::new("ip")
            .args(["-n", &name, "link", "set", "lo", "up"])
            .status()
            .unwrap()
            .success()
    );
    let srv = server(0, Some(b"H"));
    let port = free_port();
    let _a = Amb::start(&s(&[
        "--netns",
        &format!("netns:{name}"),
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--to",
        &srv.addr(),
    ]));
    // From inside the namespace, 127.0.0.1:port reaches the host's backend.
    let ns = pipework::netns::NetNs::open(std::path::Path::new(&format!("/var/run/netns/{name}")))
        .unwrap();
    let c = ns
        .run(|| TcpStream::connect(("127.0.0.1", port)))
        .unwrap()
        .expect("connect inside the namespace");
    let mut c = c;
    c.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut t = [0u8; 1];
    c.read_exact(&mut t).unwrap();
    assert_eq!(&t, b"H");
    echo_roundtrip(&mut c, b"from the guest");
    // And the host's loopback has no such listener.
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
}

#[test]
fn from_env_builds_listeners_from_docker_links() {
    let srv = server(0, Some(b"E"));
    let port = free_port();
    let env = vec![
        (
            format!("PWADB_PORT_{port}_TCP"),
            format!("tcp://{}", srv.addr()),
        ),
        (
            format!("PWADB_PORT_{port}_TCP_ADDR"),
            "127.0.0.1".to_string(),
        ),
    ];
    let _a = Amb::start_env(&s(&["--from-env", "--env-bind", "127.0.0.1"]), &env);
    let mut c = connect(port);
    let mut t = [0u8; 1];
    c.read_exact(&mut t).unwrap();
    assert_eq!(&t, b"E");
    echo_roundtrip(&mut c, b"linked");
}

#[test]
fn backend_killed_mid_stream_ends_client_connection() {
    if !have("socat") {
        eprintln!("SKIP: socat not installed (used as a killable backend process)");
        return;
    }
    let bport = free_port();
    let mut backend = Command::new("socat")
        .args([
            &format!("TCP-LISTEN:{bport},bind=127.0.0.1,reuseaddr"),
            "EXEC:yes",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let port = free_port();
    let a = Amb::start(&s(&[
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--to",
        &format!("127.0.0.1:{bport}"),
        "--health-interval",
        "0",
    ]));
    let mut c = None;
    assert!(wait_until(|| {
        // socat may not listen yet: the ambassador closes us at once then.
        let mut s = connect(port);
        let mut b = [0u8; 1];
        if s.read_exact(&mut b).is_ok() {
            c = Some(s);
            true
        } else {
            false
        }
    }));
    let mut c = c.unwrap();
    let mut buf = vec![0u8; 65536];
    let mut total = 0;
    while total < 1 << 20 {
        total += c.read(&mut buf).unwrap();
    }
    backend.kill().unwrap(); // SIGKILL, by pid
    backend.wait().unwrap();
    // Drain what is in flight; the stream must then end (EOF or reset),
    // not hang until the read timeout.
    let ended = loop {
        match c.read(&mut buf) {
            Ok(0) => break true,
            Ok(_) => continue,
            Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::TimedOut => {
                break false;
            }
            Err(_) => break true,
        }
    };
    assert!(
        ended,
        "client connection stayed open after the backend died"
    );
    drop(a);
}

#[test]
fn fd_count_back_to_start_after_10000_connections() {
    let srv = server(0, None);
    let port = free_port();
    let a = Amb::start(&s(&[
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--to",
        &srv.addr(),
        "--health-interval",
        "0",
    ]));
    let start = a.fd_count();
    let workers: Vec<_> = (0..8)
        .map(|w| {
            thread::spawn(move || {
                for i in 0..1250 {
                    let mut c = connect(port);
                    let msg = format!("{w}-{i}");
                    echo_roundtrip(&mut c, msg.as_bytes());
                }
            })
        })
        .collect();
    for w in workers {
        w.join().expect("client worker");
    }
    let mut last = 0;
    let back = wait_until(|| {
        last = a.fd_count();
        last == start
    });
    assert!(
        back,
        "fds: {start} at start, {last} after 10,000 connections"
    );
}

#[test]
fn max_conns_refuses_extra_connections() {
    let srv = server(0, None);
    let port = free_port();
    let _a = Amb::start(&s(&[
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--to",
        &srv.addr(),
        "--max-conns",
        "2",
    ]));
    let mut c1 = connect(port);
    let mut c2 = connect(port);
    echo_roundtrip(&mut c1, b"1");
    echo_roundtrip(&mut c2, b"2");
    let mut c3 = connect(port);
    let _ = c3.write_all(b"3");
    let mut b = [0u8; 1];
    assert!(
        matches!(c3.read(&mut b), Ok(0) | Err(_)),
        "third connection was served"
    );
    drop(c1);
    // A slot frees up once the first connection is gone.
    assert!(wait_until(|| {
        let mut c = connect(port);
        let _ = c.write_all(b"4");
        matches!(c.read(&mut b), Ok(1))
    }));
}

fn run_fail(args: &[&str]) -> (i32, String) {
    let out = Command::new(BIN)
        .arg("ambassador")
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[test]
fn bad_input_is_one_line_and_nonzero() {
    let (code, err) = run_fail(&["--listen", "127.0.0.1:70000", "--to", "a:1"]);
    assert_eq!(code, 2);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("127.0.0.1:70000") && err.contains("out of range"),
        "{err}"
    );

    let (code, err) = run_fail(&["--listen", "localhost-ish", "--to", "a:1"]);
    assert_eq!(code, 2);
    assert!(err.contains("localhost-ish"), "{err}");

    let (code, err) = run_fail(&["--listen", "127.0.0.1:1000", "--to", "db:99999"]);
    assert_eq!(code, 2);
    assert!(err.contains("db:99999"), "{err}");

    let (code, err) = run_fail(&[
        "--listen",
        "127.0.0.1:1000",
        "--to",
        "a:1",
        "--balance",
        "fastest",
    ]);
    assert_eq!(code, 2);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("fastest"), "{err}");

    let (code, err) = run_fail(&[
        "--listen",
        "127.0.0.1:1000",
        "--to",
        "a:1",
        "--idle-timeout",
        "5x",
    ]);
    assert_eq!(code, 2);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("5x"), "{err}");

    let busy = TcpListener::bind("127.0.0.1:0").unwrap();
    let p = busy.local_addr().unwrap().port();
    let (code, err) = run_fail(&["--listen", &format!("127.0.0.1:{p}"), "--to", "a:1"]);
    assert_eq!(code, 1);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("already in use"), "{err}");
}

#[test]
fn unknown_backend_host_warns_and_keeps_running() {
    let port = free_port();
    let mport = free_port();
    let mut a = Amb::start(&s(&[
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--to",
        "pwa-no-such-host.invalid:80",
        "--health-interval",
        "100ms",
        "--metrics",
        &format!("127.0.0.1:{mport}"),
    ]));
    assert!(a.lines().iter().any(|l| l.contains("does not resolve")));
    // The checker keeps retrying the name (each failure counts).
    let errors = format!(
        "pipework_ambassador_backend_errors_total{{listen=\"tcp:127.0.0.1:{port}\",backend=\"pwa-no-such-host.invalid:80\"}}"
    );
    assert!(wait_until(|| metric(mport, &errors).is_some_and(|n| n >= 3)));
    assert!(
        a.child.try_wait().unwrap().is_none(),
        "exited on an unknown host"
    );
}

#[test]
fn small_messages_with_immediate_half_close() {
    // Data and FIN often arrive together: the small-read path must still
    // notice the EOF (a missed one would hang here until the read timeout).
    let srv = server(0, None);
    let port = free_port();
    let _a = Amb::start(&s(&[
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--to",
        &srv.addr(),
        "--health-interval",
        "0",
    ]));
    for i in 0..300 {
        let mut c = connect(port);
        let msg = format!("request {i}");
        c.write_all(msg.as_bytes()).unwrap();
        c.shutdown(Shutdown::Write).unwrap();
        let mut got = String::new();
        c.read_to_string(&mut got).expect("reply then EOF");
        assert_eq!(got, msg);
    }
}

#[test]
fn idle_timeout_closes_silent_connections() {
    let srv = server(0, None);
    let port = free_port();
    let _a = Amb::start(&s(&[
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--to",
        &srv.addr(),
        "--idle-timeout",
        "1s",
    ]));
    let mut idle = connect(port);
    echo_roundtrip(&mut idle, b"once");
    // A connection that keeps talking (every 50 ms) outlives the timeout.
    let mut busy = connect(port);
    let talker = thread::spawn(move || {
        for _ in 0..20 {
            echo_roundtrip(&mut busy, b"x");
            thread::sleep(Duration::from_millis(50));
        }
    });
    // The silent one is closed by the ambassador: the read ends instead of
    // running into the read timeout.
    let mut b = [0u8; 1];
    let r = idle.read(&mut b);
    assert!(
        matches!(&r, Ok(0))
            || matches!(&r, Err(e) if e.kind() != ErrorKind::WouldBlock && e.kind() != ErrorKind::TimedOut),
        "idle connection was not closed: {r:?}"
    );
    talker.join().expect("busy connection was cut");
}
