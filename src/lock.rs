//! Host-wide advisory locks (flock on /run/pipework/NAME.lock), for the few
//! read-check-write sequences that the kernel does not make atomic for us.
use crate::error::{Error, Result};
use nix::fcntl::{Flock, FlockArg};
use std::fs::{File, OpenOptions};

pub struct Lock(#[allow(dead_code)] Flock<File>);

impl Lock {
    pub fn take(name: &str) -> Result<Lock> {
        // Names embed interface names, some of which come from records a
        // guest could have forged (`vlan-<hi>` on detach): keep each to one
        // component of the lock directory.
        let name = crate::untrusted::check_component(name, "lock")
            .map_err(|r| Error::bad(r.token, r.reason))?;
        let dir = crate::own::root(crate::own::Area::Run);
        std::fs::create_dir_all(&dir)
            .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        let path = dir.join(format!("{name}.lock"));
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
        Flock::lock(f, FlockArg::LockExclusive)
            .map(Lock)
            .map_err(|(_, e)| Error::io(format!("locking {}", path.display()), e.into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_would_leave_the_lock_directory_are_refused() {
        for bad in [
            "vlan-../../etc/shadow",
            "../x",
            "a/b",
            "..",
            "",
            "vlan-\x1b",
        ] {
            assert!(Lock::take(bad).is_err(), "{bad:?}");
        }
    }
}
