//! A process-wide pool of kernel pipes for splice(2).
//!
//! A pipe costs two file descriptors. Giving each connection its own pair
//! of pipes would make 9,000 idle connections cost 36,000 fds on top of the
//! 18,000 sockets, far past `ulimit -n`. Instead a direction borrows a pipe
//! only while bytes are in flight and returns it empty, so the number of
//! pipes tracks the number of connections *moving data right now*. A
//! trimmer closes pipes the pool did not need for a whole tick, so an idle
//! ambassador returns to its start-up fd count.
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Pipe capacity we ask for. Bigger pipes mean fewer splice calls per byte
/// on a fast stream; pages are only allocated while data sits in the pipe,
/// so an empty pooled pipe costs no memory. (The kernel charges capacity
/// against the per-user pipe budget, which is why this is not larger.)
/// `PIPEWORK_PIPE_KB` overrides it for tuning.
fn want_capacity() -> libc::c_int {
    static CAP: std::sync::OnceLock<libc::c_int> = std::sync::OnceLock::new();
    *CAP.get_or_init(|| {
        std::env::var("PIPEWORK_PIPE_KB")
            .ok()
            .and_then(|v| v.parse::<libc::c_int>().ok())
            .filter(|k| (4..=1024).contains(k))
            .map_or(256 * 1024, |k| k * 1024)
    })
}

/// Upper bound on pipes alive at once; past it a burst falls back to a
/// buffered copy rather than eating the fds that accept() needs.
const MAX_PIPES: usize = 1024;

pub struct Pipe {
    pub r: OwnedFd,
    pub w: OwnedFd,
    pub cap: usize,
}

impl Drop for Pipe {
    fn drop(&mut self) {
        POOL.live.fetch_sub(1, Ordering::Relaxed);
    }
}

pub struct PipePool {
    free: Mutex<Vec<Pipe>>,
    live: AtomicUsize,
    /// Smallest free-list length seen since the last trim: that many pipes
    /// sat unused for the whole interval.
    low: AtomicUsize,
}

pub static POOL: PipePool = PipePool {
    free: Mutex::new(Vec::new()),
    live: AtomicUsize::new(0),
    low: AtomicUsize::new(0),
};

impl PipePool {
    /// An empty pipe, or `None` when pipes are exhausted (use a buffer then).
    pub fn get(&self) -> Option<Pipe> {
        if let Ok(mut f) = self.free.lock()
            && let Some(p) = f.pop()
        {
            self.low.fetch_min(f.len(), Ordering::Relaxed);
            return Some(p);
        }
        if self.live.load(Ordering::Relaxed) >= MAX_PIPES {
            return None;
        }
        let mut fds = [0 as RawFd; 2];
        // SAFETY: pipe2 fills two fds on success; we take ownership at once.
        let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) };
        if rc != 0 {
            return None;
        }
        // SAFETY: both fds were just returned by pipe2 and are owned by nobody else.
        let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        self.live.fetch_add(1, Ordering::Relaxed);
        // SAFETY: fcntl on a pipe fd we own. May fail (EPERM past the per-user
        // pipe page budget); the default size still works.
        unsafe { libc::fcntl(w.as_raw_fd(), libc::F_SETPIPE_SZ, want_capacity()) };
        // SAFETY: as above.
        let cap = unsafe { libc::fcntl(w.as_raw_fd(), libc::F_GETPIPE_SZ) };
        let cap = if cap > 0 { cap as usize } else { 4096 };
        Some(Pipe { r, w, cap })
    }

    /// Return a pipe; the caller guarantees it is empty.
    pub fn put(&self, p: Pipe) {
        if let Ok(mut f) = self.free.lock() {
            f.push(p);
        }
    }

    /// Close the pipes nobody needed since the last call.
    pub fn trim(&self) {
        if let Ok(mut f) = self.free.lock() {
            let idle = self.low.load(Ordering::Relaxed).min(f.len());
            let keep = f.len() - idle;
            f.truncate(keep);
            self.low.store(f.len(), Ordering::Relaxed);
        }
    }

    pub fn live(&self) -> usize {
        self.live.load(Ordering::Relaxed)
    }

    pub fn pooled(&self) -> usize {
        self.free.lock().map(|f| f.len()).unwrap_or(0)
    }
}
