//! What a running agent tells the other pipework commands of its host:
//! its host name, its etcd lease and how it reaches etcd. One file per
//! network namespace, so several simulated hosts on one machine (the
//! tests) each find their own agent.
use super::store::EtcdOpts;
use crate::error::{Error, Result};
use crate::own::{self, Area};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AgentState {
    pub host: String,
    pub lease: i64,
    pub pid: u32,
    pub etcd: EtcdOpts,
}

/// One folder per network namespace in the run area (`own`).
fn folder() -> String {
    format!("overlay/{}", crate::inventory::host_ns())
}

/// Whether an agent has written its state here (cheap: no verification).
pub fn exists() -> bool {
    own::exists(Area::Run, &folder(), "agent")
}

/// The agent's state; None when there is none or it does not verify.
pub fn load() -> Option<AgentState> {
    own::read(Area::Run, &folder(), "agent").ok().flatten()
}

/// Written signed and atomically: an attach never reads half a file.
pub fn save(s: &AgentState) -> Result<()> {
    own::write(Area::Run, &folder(), "agent", s)
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
