//! Backends: name resolution, health state, choosing one, connecting.
//!
//! A backend is healthy when the active checker last saw it answer and no
//! connection attempt failed recently (passive marking). Selection tries
//! healthy backends first in balance order, then the unhealthy ones as a
//! last resort: a wrong health verdict should cost latency, not an outage.
use super::config::Balance;
use super::log::{self, RateLimit, now_ms};
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;
use tokio::net::TcpStream;

/// How long a resolved name is reused before asking the resolver again.
const RESOLVE_TTL_MS: u64 = 5_000;
/// How long a passive failure keeps a backend out when no active check
/// will bring it back sooner.
const PASSIVE_HOLD_MS: u64 = 5_000;

pub struct Backend {
    /// `host:port` as configured.
    pub name: String,
    pub up: AtomicBool,
    pub down_until_ms: AtomicU64,
    pub active: AtomicUsize,
    pub total: AtomicU64,
    pub errors: AtomicU64,
    cache: Mutex<Option<(u64, Vec<SocketAddr>)>>,
    pub limit: RateLimit,
}

impl Backend {
    pub fn new(name: String) -> Self {
        Backend {
            name,
            up: AtomicBool::new(true),
            down_until_ms: AtomicU64::new(0),
            active: AtomicUsize::new(0),
            total: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            cache: Mutex::new(None),
            limit: RateLimit::default(),
        }
    }

    pub fn healthy(&self) -> bool {
        self.up.load(Ordering::Relaxed) && now_ms() >= self.down_until_ms.load(Ordering::Relaxed)
    }

    /// Resolve now, or reuse a fresh answer. Names are re-resolved so a
    /// backend that moves (container restarted, DNS changed) is followed.
    pub async fn resolve(&self) -> io::Result<Vec<SocketAddr>> {
        if let Ok(c) = self.cache.lock()
            && let Some((at, addrs)) = c.as_ref()
            && now_ms().saturating_sub(*at) < RESOLVE_TTL_MS
        {
            return Ok(addrs.clone());
        }
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host(&self.name).await?.collect();
        if addrs.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                "name has no address",
            ));
        }
        if let Ok(mut c) = self.cache.lock() {
            *c = Some((now_ms(), addrs.clone()));
        }
        Ok(addrs)
    }

    /// Connect with a deadline per address.
    pub async fn connect(&self, timeout: Duration) -> io::Result<TcpStream> {
        let addrs = self.resolve().await?;
        let mut last = io::Error::new(io::ErrorKind::NotFound, "no address");
        for a in addrs {
            match tokio::time::timeout(timeout, TcpStream::connect(a)).await {
                Ok(Ok(s)) => return Ok(s),
                Ok(Err(e)) => last = e,
                Err(_) => {
                    last = io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("connect timed out after {timeout:?}"),
                    )
                }
            }
        }
        Err(last)
    }

    /// Passive marking: a real connection failed; keep it out until the
    /// active checker (or the hold time) says otherwise.
    pub fn mark_failed(&self, listen: &str, err: &io::Error, hold: Duration) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        let hold_ms = (hold.as_millis() as u64).max(PASSIVE_HOLD_MS);
        self.down_until_ms
            .store(now_ms() + hold_ms, Ordering::Relaxed);
        self.log_error(listen, "backend connect failed", err);
    }

    /// Rate-limited error log: one line per window per backend.
    pub fn log_error(&self, listen: &str, msg: &str, err: &dyn std::fmt::Display) {
        if let Some(suppressed) = self.limit.allow() {
            log::warn(
                msg,
                &[
                    ("listen", &listen),
                    ("backend", &self.name),
                    ("err", err),
                    ("suppressed", &suppressed),
                ],
            );
        }
    }
}

/// The backends of one listener, with its balance policy.
pub struct BackendSet {
    pub backends: Vec<Arc<Backend>>,
    pub balance: Balance,
    rr: AtomicUsize,
}

impl BackendSet {
    /// Build a set, reusing `Backend`s from `old` with the same name so a
    /// reload keeps health state and connection counts.
    pub fn new(names: &[String], balance: Balance, old: Option<&BackendSet>) -> Self {
        let backends = names
            .iter()
            .map(|n| {
                old.and_then(|o| o.backends.iter().find(|b| &b.name == n).cloned())
                    .unwrap_or_else(|| Arc::new(Backend::new(n.clone())))
            })
            .collect();
        BackendSet {
            backends,
            balance,
            rr: AtomicUsize::new(0),
        }
    }

    /// Backends in the order to try them for one new connection.
    pub fn order(&self) -> Vec<Arc<Backend>> {
        let n = self.backends.len();
        if n == 0 {
            return Vec::new();
        }
        let mut list: Vec<Arc<Backend>> = match self.balance {
            Balance::Rr => {
                let start = self.rr.fetch_add(1, Ordering::Relaxed) % n;
                (0..n)
                    .map(|i| self.backends[(start + i) % n].clone())
                    .collect()
            }
            Balance::Leastconn => {
                // Rotate first so ties do not all land on the first backend.
                let start = self.rr.fetch_add(1, Ordering::Relaxed) % n;
                let mut v: Vec<_> = (0..n)
                    .map(|i| self.backends[(start + i) % n].clone())
                    .collect();
                v.sort_by_key(|b| b.active.load(Ordering::Relaxed));
                v
            }
        };
        // Stable partition: healthy first, keeping the balance order.
        list.sort_by_key(|b| !b.healthy());
        list
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(b: Balance) -> BackendSet {
        BackendSet::new(&["a:1".into(), "b:1".into(), "c:1".into()], b, None)
    }

    #[test]
    fn round_robin_rotates_and_skips_unhealthy() {
        let s = set(Balance::Rr);
        let firsts: Vec<String> = (0..3).map(|_| s.order()[0].name.clone()).collect();
        assert_eq!(firsts, ["a:1", "b:1", "c:1"]);
        s.backends[1].up.store(false, Ordering::Relaxed);
        let o = s.order();
        assert_eq!(o.last().unwrap().name, "b:1");
        assert!(s.order()[0].healthy());
    }

    #[test]
    fn leastconn_prefers_idle() {
        let s = set(Balance::Leastconn);
        s.backends[0].active.store(5, Ordering::Relaxed);
        s.backends[2].active.store(1, Ordering::Relaxed);
        assert_eq!(s.order()[0].name, "b:1");
    }

    #[test]
    fn reload_keeps_state() {
        let s = set(Balance::Rr);
        s.backends[0].active.store(7, Ordering::Relaxed);
        let n = BackendSet::new(&["a:1".into(), "d:1".into()], Balance::Rr, Some(&s));
        assert_eq!(n.backends[0].active.load(Ordering::Relaxed), 7);
        assert_eq!(n.backends[1].active.load(Ordering::Relaxed), 0);
    }
}
