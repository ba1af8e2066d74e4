//! Resolve what the user called the container into a namespace pinned by an
//! open fd, plus the names we record on the links we build.
//!
//! Order (classic pipework's, made explicit): a namespace path, `netns:NAME`,
//! `pid:N` or a bare number that is a live pid, then a Docker (or Podman)
//! container name or id prefix through the Engine API (`engine`).
//!
//! A container's namespace is opened through its sandbox key, a
//! bind-mounted namespace file owned by the container: opening it cannot
//! race with pid reuse. Without one (host or container: network modes) we
//! open /proc/PID/ns/net and then confirm the container still runs with
//! that pid.
pub mod engine;
pub mod fs;

use crate::error::{Error, Result};
use crate::netns::NetNs;
use engine::Engine;
use std::path::{Path, PathBuf};

#[derive(Debug)]
pub struct Guest {
    pub netns: NetNs,
    /// Container name (without Docker's leading '/'), netns name, or pid.
    pub name: String,
    /// Full container id when the guest is a container.
    pub id: Option<String>,
    pub pid: Option<u32>,
}

impl Guest {
    /// Short form used in records and host interface names.
    pub fn short_id(&self) -> String {
        match &self.id {
            Some(id) => id.chars().take(12).collect(),
            None => self.name.clone(),
        }
    }
}

/// Where named namespaces live (`ip netns add` puts them in /run/netns).
pub fn netns_dir() -> PathBuf {
    for d in ["/run/netns", "/var/run/netns"] {
        if Path::new(d).is_dir() {
            return PathBuf::from(d);
        }
    }
    PathBuf::from("/run/netns")
}

pub fn resolve(spec: &str) -> Result<Guest> {
    if spec.is_empty() {
        return Err(Error::bad(
            "''",
            "empty guest: give a container name or id, a pid, netns:NAME or a namespace path",
        ));
    }
    if spec.starts_with('/') {
        if !Path::new(spec).exists() {
            return Err(Error::gone(spec, "no such namespace file"));
        }
        let netns = NetNs::open(Path::new(spec))?;
        let pid = pid_from_proc_path(spec);
        return Ok(Guest {
            netns,
            name: spec.to_string(),
            id: None,
            pid,
        });
    }
    if let Some(name) = spec.strip_prefix("netns:") {
        return named_netns(spec, name);
    }
    if let Some(n) = spec.strip_prefix("pid:") {
        let pid: u32 = n
            .parse()
            .map_err(|_| Error::bad(spec, "pid: takes a number, e.g. pid:1234"))?;
        return from_pid(spec, pid);
    }
    if spec.bytes().all(|b| b.is_ascii_digit())
        && Path::new(&format!("/proc/{spec}")).exists()
        && let Ok(pid) = spec.parse()
    {
        return from_pid(spec, pid);
    }
    let unknown = no_such(spec);
    if !engine::valid_ref(spec) {
        return Err(unknown);
    }
    let Some(engine) = Engine::from_env() else {
        return Err(Error::bad(
            spec,
            "not a pid or namespace, and no container engine socket found (set DOCKER_HOST=unix:///path/to/docker.sock)",
        ));
    };
    container(&engine, spec)
}

fn no_such(spec: &str) -> Error {
    Error::gone(
        spec,
        "no such container, pid or namespace (give a container name or id, pid:N, netns:NAME or /proc/PID/ns/net)",
    )
}

/// A container by name, id or id prefix, through `engine` (`pipework
/// watch --docker-host` names its engine explicitly).
pub fn container(engine: &Engine, spec: &str) -> Result<Guest> {
    if !engine::valid_ref(spec) {
        return Err(no_such(spec));
    }
    let Some(c) = engine.inspect(spec)? else {
        return Err(no_such(spec));
    };
    let name = c.name().to_string();
    if !c.state.running || c.state.pid == 0 {
        return Err(Error::gone(
            spec,
            format!(
                "container {name} is not running (status {}): start it first",
                c.state.status
            ),
        ));
    }
    let netns = match c.sandbox_key().map(Path::new).filter(|k| k.exists()) {
        Some(key) => NetNs::open(key)?,
        None => {
            let ns = NetNs::open(Path::new(&format!("/proc/{}/ns/net", c.state.pid)))?;
            // The pid could have been recycled between inspect and open:
            // make sure the container is still alive with the same pid.
            match engine.inspect(&c.id).ok().flatten() {
                Some(a) if a.state.running && a.state.pid == c.state.pid => ns,
                _ => {
                    return Err(Error::bad(
                        spec,
                        format!("container {name} exited while we were opening its namespace"),
                    ));
                }
            }
        }
    };
    Ok(Guest {
        netns,
        name,
        id: Some(c.id),
        pid: Some(c.state.pid),
    })
}

fn named_netns(spec: &str, name: &str) -> Result<Guest> {
    if name.is_empty() || name.contains('/') || name == "." || name == ".." {
        return Err(Error::bad(spec, "netns: takes a name from `ip netns list`"));
    }
    let path = netns_dir().join(name);
    if !path.exists() {
        return Err(Error::gone(
            spec,
            format!(
                "no such network namespace {} (create it with `ip netns add {name}`)",
                path.display()
            ),
        ));
    }
    let netns = NetNs::open(&path)?;
    Ok(Guest {
        netns,
        name: name.to_string(),
        id: None,
        pid: None,
    })
}

fn from_pid(spec: &str, pid: u32) -> Result<Guest> {
    let path = format!("/proc/{pid}/ns/net");
    let netns = NetNs::open(Path::new(&path))
        .map_err(|_| Error::gone(spec, format!("no running process {pid}")))?;
    Ok(Guest {
        netns,
        name: pid.to_string(),
        id: None,
        pid: Some(pid),
    })
}

fn pid_from_proc_path(p: &str) -> Option<u32> {
    p.strip_prefix("/proc/")?.split('/').next()?.parse().ok()
}
