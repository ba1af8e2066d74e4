//! The agent's two kinds of etcd lease, and the task that keeps them.
//!
//! - The host lease (short: `--ttl`) is liveness. The host key and every
//!   endpoint key live under it: when the host dies or is cut off, its
//!   peers drop its FDB and neighbour entries within two TTLs.
//! - Hold leases (long: a network's grace, a day by default) are
//!   ownership. The address reservations live under them: a host cut off
//!   for minutes or hours finds its addresses still its own, and `auto`
//!   never hands them to another container meanwhile.
//!
//! Both are kept alive from one task. One that lapsed anyway is replaced,
//! and the main loop is told to publish this host's endpoints again.
use super::state::{self, AgentState};
use super::store::{EtcdOpts, Store};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What the agent's tasks share, and what it tells the host's other
/// pipework commands through its state file.
pub struct Shared {
    pub host: String,
    pub etcd: EtcdOpts,
    pub ttl: i64,
    pub lease: AtomicI64,
    /// Set when a lease was replaced: the main loop re-publishes this
    /// host's endpoints (and clears it only once that succeeded).
    pub renewed: AtomicBool,
    /// Grace seconds → hold lease.
    pub hold: Mutex<BTreeMap<u64, i64>>,
    /// Counts keepalives that worked after one that failed: etcd was out
    /// of reach, so the watch stream may be silently dead (a cut path
    /// sends no reset). The main loop opens it again from its revision.
    pub reached_again: std::sync::atomic::AtomicU64,
}

fn log(msg: impl std::fmt::Display) {
    eprintln!("pipework overlay agent: {msg}");
}

impl Shared {
    pub fn holds(&self) -> BTreeMap<u64, i64> {
        self.hold.lock().map(|h| h.clone()).unwrap_or_default()
    }

    pub fn hold_for(&self, grace: u64) -> Option<i64> {
        self.hold.lock().ok()?.get(&grace).copied()
    }

    /// Write the state file (signed, atomic) from the current leases.
    pub fn save(&self) -> crate::error::Result<()> {
        state::save(&AgentState {
            host: self.host.clone(),
            lease: self.lease.load(Ordering::SeqCst),
            pid: std::process::id(),
            etcd: self.etcd.clone(),
            hold: self.holds(),
        })
    }

    /// Take a hold lease for every grace in `graces` that has none yet.
    pub async fn ensure_holds(
        &self,
        st: &Store,
        graces: impl IntoIterator<Item = u64>,
    ) -> crate::error::Result<()> {
        let mut added = false;
        for g in graces {
            if self.hold_for(g).is_some() {
                continue;
            }
            let id = st.lease_grant(g.min(i64::MAX as u64) as i64).await?;
            if let Ok(mut h) = self.hold.lock() {
                h.insert(g, id);
            }
            added = true;
        }
        if added {
            self.save()?;
        }
        Ok(())
    }

    /// Hold leases of a previous agent of this host that are still alive:
    /// its reservations stay valid across the restart.
    pub async fn adopt_holds(&self, st: &Store, prev: &BTreeMap<u64, i64>) {
        for (g, id) in prev {
            if let Ok(t) = st.lease_ttl(*id).await
                && t > 0
                && let Ok(mut h) = self.hold.lock()
            {
                h.insert(*g, *id);
            }
        }
    }
}

/// Renew the host lease every TTL/3 and each hold lease every third of
/// its grace (at most every 10 minutes). A lease that lapsed is replaced
/// and the main loop told.
pub async fn keepalive(sh: Arc<Shared>) {
    let period = Duration::from_millis((sh.ttl as u64 * 1000 / 3).max(300));
    let mut store: Option<Store> = None;
    let mut wait = period;
    let mut held: BTreeMap<i64, Instant> = BTreeMap::new();
    let mut failing = false;
    loop {
        tokio::time::sleep(wait).await;
        // After a failure, try again soon: the lease is running out.
        wait = Duration::from_millis(200);
        if store.is_none() {
            store = Store::connect(&sh.etcd).await.ok();
        }
        let Some(st) = store.clone() else { continue };
        let id = sh.lease.load(Ordering::SeqCst);
        let r = st.lease_keepalive(id).await;
        if r.is_ok() && std::mem::take(&mut failing) {
            sh.reached_again.fetch_add(1, Ordering::SeqCst);
        }
        match r {
            Ok(t) if t > 0 => wait = period,
            Ok(_) => {
                log(format_args!("lease {id:x} expired; registering again"));
                if let Ok(n) = st.lease_grant(sh.ttl).await {
                    sh.lease.store(n, Ordering::SeqCst);
                    let _ = sh.save();
                    sh.renewed.store(true, Ordering::SeqCst);
                }
                continue;
            }
            Err(e) => {
                log(format_args!("keepalive: {e}"));
                store = None;
                failing = true;
                continue;
            }
        }
        for (g, id) in sh.holds() {
            let every = Duration::from_secs((g / 3).clamp(1, 600));
            if held.get(&id).is_some_and(|t| t.elapsed() < every) {
                continue;
            }
            match st.lease_keepalive(id).await {
                Ok(t) if t > 0 => {
                    held.insert(id, Instant::now());
                }
                Ok(_) => {
                    // Silent longer than the grace: the reservations are
                    // gone. Take a new hold and publish again (addresses
                    // nobody took meanwhile come back to this host).
                    log(format_args!(
                        "hold lease {id:x} ({g}s grace) expired; reserving this host's addresses again"
                    ));
                    if let Ok(n) = st.lease_grant(g.min(i64::MAX as u64) as i64).await {
                        if let Ok(mut h) = sh.hold.lock() {
                            h.insert(g, n);
                        }
                        let _ = sh.save();
                        sh.renewed.store(true, Ordering::SeqCst);
                    }
                }
                Err(e) => {
                    log(format_args!("keepalive (hold): {e}"));
                    wait = Duration::from_millis(200);
                }
            }
        }
    }
}
