//! `pipework ambassador --netns <container>`: the listener lives inside a
//! real Docker container's namespace (named like attach's guests), the
//! backend on the host's loopback; the container reaches it at 127.0.0.1.
mod common;

use common::{Container, require_env};
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

#[test]
fn container_reaches_host_backend_through_ambassador_in_its_namespace() {
    if !require_env() {
        return;
    }
    let c = Container::run("pwa");
    // Backend on the host's loopback: greets and closes, so busybox nc ends.
    let backend = TcpListener::bind("127.0.0.1:0").unwrap();
    let bport = backend.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut s in backend.incoming().flatten() {
            let _ = s.write_all(b"hello from the host\n");
        }
    });
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut amb = Command::new(common::BIN)
        .args([
            "ambassador",
            "--netns",
            &c.name,
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--to",
            &format!("127.0.0.1:{bport}"),
        ])
        .env("DOCKER_HOST", common::docker_host())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let err = amb.stderr.take().unwrap();
    std::thread::spawn(move || {
        for l in BufReader::new(err).lines().map_while(Result::ok) {
            eprintln!("[amb] {l}");
            let _ = tx.send(l);
        }
    });
    let ready = rx
        .iter()
        .find(|l| l.contains("msg=ready") || l.starts_with("pipework:"))
        .unwrap_or_default();
    assert!(
        ready.contains("msg=ready"),
        "ambassador did not start: {ready}"
    );

    let out = c.exec_ok(&["nc", "127.0.0.1", &port.to_string()]);
    assert_eq!(out.trim(), "hello from the host");
    // The host's own loopback has no such listener.
    assert!(
        TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(2)).is_err()
    );
    let _ = amb.kill();
    let _ = amb.wait();
}
