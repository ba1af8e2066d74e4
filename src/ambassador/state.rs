//! Runtime state shared by listeners, connections, health checks and metrics.
use super::backend::BackendSet;
use super::config::{ListenAddr, Settings};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use tokio::sync::Notify;

/// Process-wide: settings (swapped on reload) and the global connection count.
pub struct Shared {
    settings: RwLock<Arc<Settings>>,
    /// Open TCP connections over all listeners; bounded by `max_conns`.
    pub active: AtomicUsize,
    /// Signalled when `active` drops to zero while draining.
    pub idle: Notify,
}

impl Shared {
    pub fn new(s: Settings) -> Self {
        Shared {
            settings: RwLock::new(Arc::new(s)),
            active: AtomicUsize::new(0),
            idle: Notify::new(),
        }
    }

    pub fn settings(&self) -> Arc<Settings> {
        match self.settings.read() {
            Ok(s) => s.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    pub fn set_settings(&self, s: Settings) {
        match self.settings.write() {
            Ok(mut g) => *g = Arc::new(s),
            Err(p) => *p.into_inner() = Arc::new(s),
        }
    }
}

#[derive(Default)]
pub struct Stats {
    pub active: AtomicUsize,
    pub total: AtomicU64,
    pub rejected: AtomicU64,
    pub failed: AtomicU64,
    /// Client → backend.
    pub bytes_up: AtomicU64,
    /// Backend → client.
    pub bytes_down: AtomicU64,
    pub udp_sessions: AtomicUsize,
}

/// One listening socket and what it forwards to.
pub struct ListenerState {
    pub listen: ListenAddr,
    pub label: String,
    backends: RwLock<Arc<BackendSet>>,
    pub stats: Stats,
    /// Set when the listener should stop accepting (reload removed it, or SIGTERM).
    pub stopped: AtomicBool,
    pub stop: Notify,
}

impl ListenerState {
    pub fn new(listen: ListenAddr, set: BackendSet) -> Self {
        ListenerState {
            listen,
            label: listen.to_string(),
            backends: RwLock::new(Arc::new(set)),
            stats: Stats::default(),
            stopped: AtomicBool::new(false),
            stop: Notify::new(),
        }
    }

    pub fn backends(&self) -> Arc<BackendSet> {
        match self.backends.read() {
            Ok(s) => s.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    pub fn set_backends(&self, set: BackendSet) {
        match self.backends.write() {
            Ok(mut g) => *g = Arc::new(set),
            Err(p) => *p.into_inner() = Arc::new(set),
        }
    }

    pub fn shut(&self) {
        self.stopped.store(true, Ordering::Relaxed);
        self.stop.notify_waiters();
    }

    /// Resolves once `shut` has been called (also if it was called earlier).
    pub async fn stopped(&self) {
        loop {
            let n = self.stop.notified();
            if self.stopped.load(Ordering::Relaxed) {
                return;
            }
            n.await;
        }
    }
}

/// Counts a value up for as long as the guard lives.
pub struct Gauge<'a>(&'a AtomicUsize);

impl<'a> Gauge<'a> {
    pub fn new(a: &'a AtomicUsize) -> Self {
        a.fetch_add(1, Ordering::Relaxed);
        Gauge(a)
    }
}

impl Drop for Gauge<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}
