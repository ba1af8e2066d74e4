//! The two Engine API calls `watch` needs beyond inspect: the `/events`
//! stream (one long chunked HTTP response, one JSON object per event) and
//! the list of running containers. Blocking I/O on the unix socket: the
//! stream has a thread of its own and nothing else to wait for.
use crate::error::{Error, Result};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

/// The engine socket from `--docker-host` (unix:///path or /path), else
/// DOCKER_HOST, else the usual places.
pub fn socket(flag: Option<&str>) -> Result<PathBuf> {
    let from_url = |u: &str| -> Result<PathBuf> {
        if let Some(p) = u.strip_prefix("unix://") {
            return Ok(PathBuf::from(p));
        }
        if u.starts_with('/') {
            return Ok(PathBuf::from(u));
        }
        Err(Error::bad(
            u,
            "watch speaks to the engine over its unix socket: give unix:///path/to/docker.sock",
        ))
    };
    if let Some(f) = flag {
        return from_url(f);
    }
    if let Ok(h) = std::env::var("DOCKER_HOST") {
        return from_url(&h);
    }
    crate::guest::docker::socket_path().ok_or_else(|| {
        Error::bad(
            "--docker-host",
            "no container engine socket found (give --docker-host unix:///path/to/docker.sock)",
        )
    })
}

/// One container event, as much of it as we use.
#[derive(Debug, Clone, Deserialize)]
pub struct Event {
    #[serde(rename = "Type", default)]
    pub kind: String,
    #[serde(rename = "Action", default)]
    pub action: String,
    #[serde(rename = "Actor", default)]
    pub actor: Actor,
    /// When the engine saw it, ns since the epoch.
    #[serde(rename = "timeNano", default)]
    pub time_nano: Option<u64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Actor {
    #[serde(rename = "ID", default)]
    pub id: String,
    /// The container's labels, plus name, image and exitCode.
    #[serde(rename = "Attributes", default)]
    pub attributes: BTreeMap<String, String>,
}

/// A running container from `GET /containers/json`.
#[derive(Debug, Clone, Deserialize)]
pub struct Listed {
    #[serde(rename = "Id")]
    pub id: String,
    #[serde(rename = "Names", default)]
    pub names: Vec<String>,
    #[serde(rename = "Labels", default)]
    pub labels: Option<BTreeMap<String, String>>,
}

impl Listed {
    pub fn name(&self) -> String {
        self.names
            .first()
            .map(|n| n.trim_start_matches('/').to_string())
            .unwrap_or_else(|| self.id.chars().take(12).collect())
    }
}

/// Running containers (the engine lists only running ones by default).
pub fn running(sock: &Path) -> Result<Vec<Listed>> {
    let (status, body) = crate::guest::docker::get(sock, "/containers/json")?;
    if status != 200 {
        return Err(Error::other(format!(
            "{}: listing containers: HTTP {status}",
            sock.display()
        )));
    }
    serde_json::from_slice(&body)
        .map_err(|e| Error::other(format!("{}: container list: {e}", sock.display())))
}

/// A subscription to container start and die events.
pub struct Events {
    r: BufReader<UnixStream>,
    chunked: bool,
    /// Bytes of the current chunk not read yet.
    left: usize,
    line: Vec<u8>,
}

/// `{"type":["container"],"event":["start","die"]}`, URL-encoded.
const FILTER: &str =
    "%7B%22type%22%3A%5B%22container%22%5D%2C%22event%22%3A%5B%22start%22%2C%22die%22%5D%7D";

impl Events {
    /// Subscribe. Returns once the engine has answered, so whatever starts
    /// after this call is in the stream (what `watch` relies on to resync
    /// from the list without a gap).
    pub fn subscribe(sock: &Path) -> Result<Events> {
        let ctx = || format!("container engine at {}", sock.display());
        let mut s = UnixStream::connect(sock).map_err(|e| Error::io(ctx(), e))?;
        let req = format!(
            "GET /events?filters={FILTER} HTTP/1.1\r\nHost: docker\r\nUser-Agent: pipework-watch\r\n\r\n"
        );
        s.write_all(req.as_bytes())
            .map_err(|e| Error::io(ctx(), e))?;
        let mut r = BufReader::new(s);
        let mut status = None;
        let mut chunked = false;
        loop {
            let mut l = String::new();
            if r.read_line(&mut l).map_err(|e| Error::io(ctx(), e))? == 0 {
                return Err(Error::other(format!("{}: closed the event stream", ctx())));
            }
            let l = l.trim_end();
            if l.is_empty() {
                break;
            }
            if status.is_none() {
                status = l.split_whitespace().nth(1).and_then(|c| c.parse().ok());
                continue;
            }
            let low = l.to_ascii_lowercase();
            if low.starts_with("transfer-encoding:") && low.contains("chunked") {
                chunked = true;
            }
        }
        if status != Some(200u16) {
            return Err(Error::other(format!(
                "{}: /events answered HTTP {}",
                ctx(),
                status.unwrap_or_default()
            )));
        }
        Ok(Events {
            r,
            chunked,
            left: 0,
            line: Vec::new(),
        })
    }

    /// The next container event; an error when the stream ends (dockerd
    /// stopped or restarted).
    pub fn next_event(&mut self) -> Result<Event> {
        loop {
            let line = self.next_line()?;
            let text = line.trim_ascii();
            if text.is_empty() {
                continue;
            }
            match serde_json::from_slice::<Event>(text) {
                Ok(e) => return Ok(e),
                // Not ours to judge: an engine newer than us may add
                // shapes; skip what does not parse.
                Err(_) => continue,
            }
        }
    }

    /// One newline-terminated line of the body, across chunk boundaries.
    fn next_line(&mut self) -> Result<Vec<u8>> {
        loop {
            if let Some(i) = self.line.iter().position(|b| *b == b'\n') {
                let rest = self.line.split_off(i + 1);
                return Ok(std::mem::replace(&mut self.line, rest));
            }
            self.fill()?;
        }
    }

    fn fill(&mut self) -> Result<()> {
        let gone = || Error::other("the container engine closed the event stream");
        if !self.chunked {
            let mut buf = [0u8; 4096];
            let n = self.r.read(&mut buf).map_err(|_| gone())?;
            if n == 0 {
                return Err(gone());
            }
            self.line.extend_from_slice(&buf[..n]);
            return Ok(());
        }
        if self.left == 0 {
            let mut size = String::new();
            if self.r.read_line(&mut size).map_err(|_| gone())? == 0 {
                return Err(gone());
            }
            let size = size.trim();
            if size.is_empty() {
                // The CRLF that ends the previous chunk's data.
                return Ok(());
            }
            let n = usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16)
                .map_err(|_| Error::other("malformed chunk in the event stream"))?;
            if n == 0 {
                return Err(gone());
            }
            self.left = n;
        }
        let mut buf = vec![0u8; self.left.min(8192)];
        let n = self.r.read(&mut buf).map_err(|_| gone())?;
        if n == 0 {
            return Err(gone());
        }
        self.left -= n;
        self.line.extend_from_slice(&buf[..n]);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sockets_from_flags() {
        assert_eq!(
            socket(Some("unix:///tmp/d.sock")).ok(),
            Some(PathBuf::from("/tmp/d.sock"))
        );
        assert_eq!(
            socket(Some("/tmp/d.sock")).ok(),
            Some(PathBuf::from("/tmp/d.sock"))
        );
        let e = socket(Some("tcp://1.2.3.4:2375"))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.starts_with("tcp://1.2.3.4:2375"), "{e}");
    }

    #[test]
    fn events_across_chunk_boundaries() {
        let (a, b) = UnixStream::pair().expect("pair");
        let body = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
                    5\r\n{\"Typ\r\n\
                    36\r\ne\":\"container\",\"Action\":\"start\",\"Actor\":{\"ID\":\"abc\"}}\n\r\n";
        let mut w = a;
        w.write_all(body.as_bytes()).expect("write");
        let mut r = BufReader::new(b);
        // Re-use subscribe's header parsing by hand: read past the headers.
        let mut l = String::new();
        while r.read_line(&mut l).expect("read") > 0 && l != "\r\n" {
            l.clear();
        }
        let mut ev = Events {
            r,
            chunked: true,
            left: 0,
            line: Vec::new(),
        };
        let e = ev.next_event().expect("event");
        assert_eq!((e.action.as_str(), e.actor.id.as_str()), ("start", "abc"));
        drop(w);
        assert!(ev.next_event().is_err());
    }
}
