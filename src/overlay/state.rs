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
    /// Hold leases (ownership of this host's addresses), one per grace
    /// period in use: seconds → lease. A reservation lives under the one
    /// for its network's grace.
    #[serde(default)]
    pub hold: std::collections::BTreeMap<u64, i64>,
}

impl AgentState {
    /// The hold lease for a network with `grace`. The agent takes one for
    /// each grace its networks use as soon as it sees them: a network
    /// created a moment ago may need a short wait.
    pub async fn hold_for(&self, net: &str, grace: u64) -> Result<i64> {
        if let Some(l) = self.hold.get(&grace) {
            return Ok(*l);
        }
        for _ in 0..30 {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            if let Some(l) = load().and_then(|s| s.hold.get(&grace).copied()) {
                return Ok(l);
            }
        }
        Err(Error::bad(
            net,
            format!(
                "the overlay agent holds no lease for a {grace}s grace yet; is `pipework overlay agent` running and connected to etcd?"
            ),
        ))
    }
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
