//! What a running agent tells the other pipework commands of its host:
//! its host name, its etcd lease and how it reaches etcd. One file per
//! network namespace, so several simulated hosts on one machine (the
//! tests) each find their own agent.
use super::store::EtcdOpts;
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AgentState {
    pub host: String,
    pub lease: i64,
    pub pid: u32,
    pub etcd: EtcdOpts,
}

pub fn path() -> PathBuf {
    PathBuf::from(format!(
        "/run/pipework/overlay/{}/agent.json",
        crate::inventory::host_ns()
    ))
}

pub fn load() -> Option<AgentState> {
    let text = std::fs::read(path()).ok()?;
    serde_json::from_slice(&text).ok()
}

/// Written atomically (temp file + rename): an attach never reads half a file.
pub fn save(s: &AgentState) -> Result<()> {
    let p = path();
    if let Some(dir) = p.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    }
    let tmp = p.with_extension(format!("tmp.{}", std::process::id()));
    std::fs::write(&tmp, serde_json::to_vec_pretty(s).unwrap_or_default())
        .map_err(|e| Error::io(format!("writing {}", tmp.display()), e))?;
    std::fs::rename(&tmp, &p).map_err(|e| Error::io(format!("writing {}", p.display()), e))
}

/// The agent of this host, or a one-line hint to start it.
pub fn require(net: &str) -> Result<AgentState> {
    load().ok_or_else(|| {
        Error::bad(
            net,
            "no overlay agent runs on this host; start `pipework overlay agent --underlay IFACE` first",
        )
    })
}
