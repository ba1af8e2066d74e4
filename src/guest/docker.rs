//! Docker Engine API over its unix socket (no docker CLI needed).
//!
//! One `GET /containers/{name}/json` gives us the id, the name, whether it
//! runs, its pid and its sandbox key. The sandbox key is a bind-mounted
//! namespace file owned by the container: opening it cannot race with pid
//! reuse. Without one (host or container: network modes) we open
//! /proc/PID/ns/net and then confirm the container still runs with that pid.
use super::Guest;
use crate::error::{Error, Result};
use crate::netns::NetNs;
use serde::Deserialize;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Deserialize)]
struct Inspect {
    #[serde(rename = "Id")]
    id: String,
    #[serde(rename = "Name")]
    name: String,
    #[serde(rename = "State")]
    state: State,
    #[serde(rename = "NetworkSettings")]
    network: Option<NetworkSettings>,
}

#[derive(Deserialize)]
struct State {
    #[serde(rename = "Running")]
    running: bool,
    #[serde(rename = "Pid")]
    pid: u32,
    #[serde(rename = "Status", default)]
    status: String,
}

#[derive(Deserialize)]
struct NetworkSettings {
    #[serde(rename = "SandboxKey", default)]
    sandbox_key: String,
}

/// The engine socket: DOCKER_HOST when it is a unix:// URL, else Docker's
/// default, else Podman's Docker-compatible sockets.
pub fn socket_path() -> Option<PathBuf> {
    if let Ok(h) = std::env::var("DOCKER_HOST") {
        return h.strip_prefix("unix://").map(PathBuf::from);
    }
    let uid = nix::unistd::getuid();
    let candidates = [
        PathBuf::from("/var/run/docker.sock"),
        PathBuf::from("/run/podman/podman.sock"),
        PathBuf::from(format!("/run/user/{uid}/podman/podman.sock")),
    ];
    candidates.into_iter().find(|p| p.exists())
}

fn valid_ref(s: &str) -> bool {
    // Docker names are [a-zA-Z0-9][a-zA-Z0-9_.-]*, ids are hex: anything else
    // cannot be a container and must not reach the URL unescaped.
    !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
}

pub fn resolve(spec: &str) -> Result<Guest> {
    let unknown = || {
        Error::gone(
            spec,
            "no such container, pid or namespace (give a container name or id, pid:N, netns:NAME or /proc/PID/ns/net)",
        )
    };
    if !valid_ref(spec) {
        return Err(unknown());
    }
    let Some(sock) = socket_path() else {
        return Err(Error::bad(
            spec,
            "not a pid or namespace, and no container engine socket found (set DOCKER_HOST=unix:///path/to/docker.sock)",
        ));
    };
    resolve_at(&sock, spec)
}

/// Resolve a container through the engine at `sock` (`pipework watch
/// --docker-host` names its engine explicitly).
pub fn resolve_at(sock: &Path, spec: &str) -> Result<Guest> {
    let unknown = || {
        Error::gone(
            spec,
            "no such container, pid or namespace (give a container name or id, pid:N, netns:NAME or /proc/PID/ns/net)",
        )
    };
    if !valid_ref(spec) {
        return Err(unknown());
    }
    let (status, body) = get(sock, &format!("/containers/{spec}/json"))?;
    match status {
        200 => {}
        404 => {
            let msg = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(String::from))
                .unwrap_or_default();
            if msg.contains("multiple") {
                return Err(Error::bad(
                    spec,
                    "ambiguous container id prefix: give more characters or the name",
                ));
            }
            return Err(unknown());
        }
        s => {
            return Err(Error::other(format!(
                "{}: container engine answered HTTP {s}: {}",
                sock.display(),
                String::from_utf8_lossy(&body).trim()
            )));
        }
    }
    let info: Inspect = serde_json::from_slice(&body)
        .map_err(|e| Error::other(format!("container engine reply for {spec}: {e}")))?;
    let name = info.name.trim_start_matches('/').to_string();
    if !info.state.running || info.state.pid == 0 {
        return Err(Error::gone(
            spec,
            format!(
                "container {name} is not running (status {}): start it first",
                info.state.status
            ),
        ));
    }
    let key = info.network.map(|n| n.sandbox_key).unwrap_or_default();
    let netns = if !key.is_empty() && Path::new(&key).exists() {
        NetNs::open(Path::new(&key))?
    } else {
        let ns = NetNs::open(Path::new(&format!("/proc/{}/ns/net", info.state.pid)))?;
        // The pid could have been recycled between inspect and open: make
        // sure the container is still alive with the same pid.
        let (s2, b2) = get(sock, &format!("/containers/{}/json", info.id))?;
        let again: Option<Inspect> = (s2 == 200)
            .then(|| serde_json::from_slice(&b2).ok())
            .flatten();
        match again {
            Some(a) if a.state.running && a.state.pid == info.state.pid => ns,
            _ => {
                return Err(Error::bad(
                    spec,
                    format!("container {name} exited while we were opening its namespace"),
                ));
            }
        }
    };
    Ok(Guest {
        netns,
        name,
        id: Some(info.id),
        pid: Some(info.state.pid),
    })
}

/// Minimal HTTP/1.1 GET over a unix socket. `Connection: close` lets us read
/// to EOF; chunked bodies (Podman) are decoded.
pub(crate) fn get(sock: &Path, path: &str) -> Result<(u16, Vec<u8>)> {
    let ctx = || format!("container engine at {}", sock.display());
    let mut s = UnixStream::connect(sock).map_err(|e| Error::io(ctx(), e))?;
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: docker\r\nUser-Agent: pipework\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes())
        .map_err(|e| Error::io(ctx(), e))?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).map_err(|e| Error::io(ctx(), e))?;
    parse_response(&buf).ok_or_else(|| Error::other(format!("{}: malformed HTTP reply", ctx())))
}

pub(crate) fn parse_response(buf: &[u8]) -> Option<(u16, Vec<u8>)> {
    let split = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&buf[..split]).ok()?;
    let body = &buf[split + 4..];
    let mut lines = head.split("\r\n");
    let status: u16 = lines.next()?.split_whitespace().nth(1)?.parse().ok()?;
    let chunked = lines.any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    if !chunked {
        return Some((status, body.to_vec()));
    }
    let mut out = Vec::new();
    let mut rest = body;
    loop {
        let eol = rest.windows(2).position(|w| w == b"\r\n")?;
        let size_str = std::str::from_utf8(&rest[..eol]).ok()?;
        let size = usize::from_str_radix(size_str.split(';').next()?.trim(), 16).ok()?;
        rest = &rest[eol + 2..];
        if size == 0 {
            return Some((status, out));
        }
        out.extend_from_slice(rest.get(..size)?);
        rest = rest.get(size + 2..)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_and_chunked_bodies() {
        let r = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}";
        assert_eq!(parse_response(r), Some((200, b"{}".to_vec())));
        let c = b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        assert_eq!(parse_response(c), Some((404, b"abcde".to_vec())));
        assert_eq!(parse_response(b"garbage"), None);
    }

    #[test]
    fn refs_that_cannot_be_containers() {
        assert!(valid_ref("web1"));
        assert!(valid_ref("a1b2c3"));
        assert!(!valid_ref("../etc"));
        assert!(!valid_ref("a b"));
        assert!(!valid_ref(""));
    }
}
