//! Network namespaces pinned by an open file descriptor.
//!
//! We resolve a guest to a namespace fd exactly once; every later step uses
//! that fd, so a container that exits and whose pid is reused cannot
//! redirect us into another namespace (pipework#204).
//!
//! Entering a namespace (`setns`) changes the calling *thread*. We never do it
//! on a tokio worker: `NetNs::run` spawns a short-lived thread, enters the
//! namespace there, runs the closure and lets the thread die. Sockets created
//! inside stay bound to that namespace after the thread is gone.
use crate::error::{Error, Result};
use nix::sched::{CloneFlags, setns};
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

// From <linux/nsfs.h>: _IO(0xb7, 0x3).
const NS_GET_NSTYPE: libc::c_ulong = 0xb703;

#[derive(Debug)]
pub struct NetNs {
    fd: OwnedFd,
    /// Where we opened it from, for messages.
    pub path: PathBuf,
}

impl NetNs {
    /// Open a namespace file and check that it really is a network namespace.
    pub fn open(path: &Path) -> Result<Self> {
        let file = File::open(path)
            .map_err(|e| Error::io(format!("cannot open namespace {}", path.display()), e))?;
        // SAFETY: ioctl on an fd we own, with no argument.
        let kind = unsafe { libc::ioctl(file.as_raw_fd(), NS_GET_NSTYPE as _) };
        if kind < 0 || kind != libc::CLONE_NEWNET {
            return Err(Error::bad(
                path.display(),
                "is not a network namespace (expected /proc/PID/ns/net or /var/run/netns/NAME)",
            ));
        }
        Ok(NetNs {
            fd: file.into(),
            path: path.to_path_buf(),
        })
    }

    /// The namespace of the calling thread.
    pub fn current() -> Result<Self> {
        Self::open(Path::new("/proc/thread-self/ns/net"))
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Identity of the namespace (inode on nsfs), stable while it lives.
    pub fn inode(&self) -> Result<u64> {
        let f = File::from(self.fd.try_clone()?);
        Ok(f.metadata()?.ino())
    }

    /// Run `f` on a fresh thread that has entered this namespace.
    pub fn run<R: Send>(&self, f: impl FnOnce() -> R + Send) -> Result<R> {
        std::thread::scope(|s| {
            s.spawn(|| {
                setns(self.fd.as_fd(), CloneFlags::CLONE_NEWNET).map_err(|e| {
                    Error::io(
                        format!("cannot enter namespace {}", self.path.display()),
                        e.into(),
                    )
                })?;
                Ok(f())
            })
            .join()
            .map_err(|_| Error::other("namespace worker thread panicked"))?
        })
    }
}
