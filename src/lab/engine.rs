//! The few Docker Engine API calls a lab needs to run image nodes: create
//! (no network, as `--network none`), start, inspect, remove. Over the
//! same unix socket as guest resolution; no docker CLI.
use crate::error::{Error, Result};
use crate::guest::docker::{parse_response, socket_path};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

fn sock() -> Result<PathBuf> {
    socket_path().ok_or_else(|| {
        Error::other(
            "an image node needs a container engine: no socket found (set DOCKER_HOST=unix:///path/to/docker.sock)",
        )
    })
}

fn call(method: &str, path: &str, body: Option<&serde_json::Value>) -> Result<(u16, Vec<u8>)> {
    let sock = sock()?;
    let ctx = || format!("container engine at {}", sock.display());
    let mut s = UnixStream::connect(&sock).map_err(|e| Error::io(ctx(), e))?;
    let _ = s.set_read_timeout(Some(Duration::from_secs(60)));
    let payload = body.map(|b| b.to_string()).unwrap_or_default();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: docker\r\nUser-Agent: pipework\r\nConnection: close\r\n"
    );
    if body.is_some() {
        req.push_str("Content-Type: application/json\r\n");
    }
    req.push_str(&format!(
        "Content-Length: {}\r\n\r\n{payload}",
        payload.len()
    ));
    s.write_all(req.as_bytes())
        .map_err(|e| Error::io(ctx(), e))?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).map_err(|e| Error::io(ctx(), e))?;
    parse_response(&buf).ok_or_else(|| Error::other(format!("{}: malformed HTTP reply", ctx())))
}

fn fail(what: &str, status: u16, body: &[u8]) -> Error {
    let msg = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(String::from))
        .unwrap_or_else(|| String::from_utf8_lossy(body).trim().to_string());
    Error::other(format!(
        "{what}: container engine answered HTTP {status}: {msg}"
    ))
}

/// A container's id and whether it runs, if it exists.
/// A container's id, whether it runs, and the lab its `pipework.lab`
/// label names (set by `run`).
pub fn inspect(name: &str) -> Result<Option<(String, bool, Option<String>)>> {
    let (st, body) = call("GET", &format!("/containers/{name}/json"), None)?;
    match st {
        200 => {
            let v: serde_json::Value = serde_json::from_slice(&body)
                .map_err(|e| Error::other(format!("engine reply for {name}: {e}")))?;
            let id = v["Id"].as_str().unwrap_or_default().to_string();
            let running = v["State"]["Running"].as_bool().unwrap_or(false);
            let lab = v["Config"]["Labels"]["pipework.lab"]
                .as_str()
                .map(String::from);
            Ok(Some((id, running, lab)))
        }
        404 => Ok(None),
        s => Err(fail(name, s, &body)),
    }
}

/// Create (no network, labelled with the lab) and start; returns the id.
pub fn run(name: &str, image: &str, cmd: &[String], lab: &str) -> Result<String> {
    let mut spec = serde_json::json!({
        "Image": image,
        "Labels": {"pipework.lab": lab},
        "HostConfig": {"NetworkMode": "none"},
    });
    if !cmd.is_empty() {
        spec["Cmd"] = serde_json::json!(cmd);
    }
    let (st, body) = call(
        "POST",
        &format!("/containers/create?name={name}"),
        Some(&spec),
    )?;
    if st != 201 {
        return Err(if st == 404 {
            Error::bad(
                image,
                "no such image on this engine (pull or load it first)",
            )
        } else {
            fail(name, st, &body)
        });
    }
    let v: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|e| Error::other(format!("engine reply for {name}: {e}")))?;
    let id = v["Id"].as_str().unwrap_or_default().to_string();
    start(&id).inspect_err(|_| {
        let _ = remove(&id);
    })?;
    Ok(id)
}

pub fn start(id: &str) -> Result<()> {
    let (st, body) = call("POST", &format!("/containers/{id}/start"), None)?;
    match st {
        204 | 304 => Ok(()),
        s => Err(fail(id, s, &body)),
    }
}

/// Remove (forcefully: it is ours); gone already is fine.
pub fn remove(id: &str) -> Result<()> {
    let (st, body) = call("DELETE", &format!("/containers/{id}?force=true"), None)?;
    match st {
        204 | 404 => Ok(()),
        s => Err(fail(id, s, &body)),
    }
}
