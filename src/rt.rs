//! The one place a tokio runtime is built.
//!
//! Almost everything here waits on the kernel or a socket, not on the CPU:
//! a current-thread runtime starts in microseconds and is plenty. Only the
//! ambassador, which moves bytes for many connections, asks for workers.
use crate::error::{Error, Result};
use tokio::runtime::{Builder, Runtime};

/// A current-thread runtime with every driver (I/O, time) on.
pub fn current() -> Result<Runtime> {
    Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::io("starting the async runtime", e))
}

/// A multi-threaded runtime: `threads` workers, or one per CPU.
pub fn multi(threads: Option<usize>) -> Result<Runtime> {
    let mut b = Builder::new_multi_thread();
    if let Some(n) = threads {
        b.worker_threads(n.max(1));
    }
    b.enable_all()
        .build()
        .map_err(|e| Error::io("starting the async runtime", e))
}
