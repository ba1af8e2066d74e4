//! Files inside a guest's root, opened so that nothing the guest planted
//! can send us to a host file.
//!
//! The guest owns everything under its root: any component of
//! `etc/resolv.conf` may be a symlink it made, and an absolute one
//! (`/etc/resolv.conf -> /etc/shadow`) followed through ordinary path APIs
//! from `/proc/PID/root/...` resolves against *our* root, so a privileged
//! write would land on the host. Here every lookup is one `openat2(2)`
//! relative to the guest's root fd with `RESOLVE_IN_ROOT` (the kernel
//! treats that fd as `/` for the whole walk: absolute symlinks and `..`
//! are re-rooted inside the guest, which is what the guest itself would
//! see) and `RESOLVE_NO_MAGICLINKS` (no `/proc/self/root`-style jumps).
//!
//! The guest also chooses the *type* of what a name leads to. Opening a
//! device node or FIFO it planted would run a host driver's open (a
//! watchdog arms on open) or block forever, so each file is first opened
//! `O_PATH` (no open side effects), checked to be a regular file, and only
//! then reopened for I/O through `/proc/self/fd`, which names that very
//! inode and cannot be swapped underneath us.
//!
//! Without openat2 (Linux < 5.6, or a seccomp filter that hides it) we
//! refuse: there is no safe fallback with ordinary path APIs.
use crate::error::{Error, Result};
use crate::netlink::Journal;
use nix::errno::Errno;
use nix::fcntl::{OFlag, OpenHow, ResolveFlag, openat2};
use nix::sys::stat::{Mode, SFlag};
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::Path;
use std::sync::Arc;

/// Largest file we keep a copy of for rollback. A guest can make its
/// resolv.conf as large as its disk (or sparse and larger still); reading
/// that into a root process's memory is not something it gets to ask for.
pub const MAX_BACKUP: u64 = 1 << 20;

/// A guest's root directory, pinned by an `O_PATH` fd.
#[derive(Debug)]
pub struct GuestRoot {
    fd: OwnedFd,
    /// How we name it in messages, e.g. `/proc/1234/root`.
    label: String,
}

impl GuestRoot {
    /// The root directory of process `pid`, as that process sees it (its
    /// mount namespace and chroot). With `netns_inode`, the process must
    /// still be in that network namespace: the pid came from the engine a
    /// moment ago and may have exited and been reused by a host process,
    /// whose root is the host's. Both checks go through one fd on
    /// `/proc/PID`, which stays bound to the process it was opened for
    /// (lookups fail once it exits), so they cannot be split by a reuse.
    pub fn of_process(pid: u32, netns_inode: Option<u64>) -> Result<GuestRoot> {
        let label = format!("/proc/{pid}/root");
        let gone = |e: Errno| {
            Error::io(
                format!("cannot open the root of guest process {pid}"),
                e.into(),
            )
        };
        // /proc is the host's: ordinary lookups are fine up to here.
        let proc_dir = nix::fcntl::open(
            format!("/proc/{pid}").as_str(),
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(gone)?;
        if let Some(want) = netns_inode {
            let st = nix::sys::stat::fstatat(&proc_dir, "ns/net", nix::fcntl::AtFlags::empty())
                .map_err(gone)?;
            if st.st_ino != want {
                return Err(Error::other(format!(
                    "process {pid} is no longer in the guest's network namespace (it exited and the pid was reused?); not touching its files"
                )));
            }
        }
        // `root` is a magic link to the process's root; following it is the
        // point, and it is the last step that uses the host's view.
        let fd = nix::fcntl::openat(
            &proc_dir,
            "root",
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(gone)?;
        Ok(GuestRoot { fd, label })
    }

    /// Any directory taken as a guest root (tests, or a rootfs the caller
    /// has already pinned). `dir` itself is resolved normally: it must be
    /// a path the host trusts.
    pub fn open_dir(dir: &Path) -> Result<GuestRoot> {
        let fd = nix::fcntl::open(
            dir,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| Error::io(format!("cannot open {}", dir.display()), e.into()))?;
        Ok(GuestRoot {
            fd,
            label: dir.display().to_string(),
        })
    }

    /// `rel` as we name it in messages (the guest chose part of the path
    /// only through symlinks, which we do not print).
    pub fn label(&self, rel: &str) -> String {
        format!(
            "{}/{}",
            self.label.trim_end_matches('/'),
            rel.trim_start_matches('/')
        )
    }

    fn err(&self, what: &str, rel: &str, e: Errno) -> Error {
        match e {
            Errno::ENOSYS => Error::other(format!(
                "cannot {what} {}: openat2(2) is not available (Linux 5.6 or later is needed, and no seccomp filter hiding it); refusing to use ordinary paths, which a symlink in the guest could point at a host file",
                self.label(rel)
            )),
            Errno::ELOOP => Error::other(format!(
                "cannot {what} {}: too many symlinks, or a /proc magic link, on the way (refused inside a guest root)",
                self.label(rel)
            )),
            e => Error::io(format!("cannot {what} {}", self.label(rel)), e.into()),
        }
    }

    /// One confined lookup. `rel` is interpreted with this root as `/`.
    fn open_in(&self, rel: &str, flags: OFlag, mode: Mode) -> nix::Result<OwnedFd> {
        // openat2 is strict where openat is lax: with O_PATH, any flag but
        // O_CLOEXEC/O_DIRECTORY/O_NOFOLLOW is EINVAL (openat ignores them).
        let extra = if flags.contains(OFlag::O_PATH) {
            OFlag::O_CLOEXEC
        } else {
            OFlag::O_CLOEXEC | OFlag::O_NOCTTY
        };
        let how = OpenHow::new()
            .flags(flags | extra)
            .mode(mode)
            .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
        // EAGAIN: a rename in the guest raced with our `..` walk and the
        // kernel could not prove we stayed inside; it asks us to retry.
        // The guest could keep that up, so only a few times.
        let mut last = Errno::EAGAIN;
        for _ in 0..16 {
            match openat2(self.fd.as_fd(), rel, how) {
                Err(Errno::EAGAIN) => last = Errno::EAGAIN,
                r => return r,
            }
        }
        Err(last)
    }

    /// `O_PATH` handle on the regular file at `rel`, or None if nothing is
    /// there (including a dangling symlink: its target does not exist).
    fn regular(&self, what: &str, rel: &str) -> Result<Option<OwnedFd>> {
        let fd = match self.open_in(rel, OFlag::O_PATH, Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) => return Ok(None),
            Err(e) => return Err(self.err(what, rel, e)),
        };
        let st = nix::sys::stat::fstat(&fd).map_err(|e| self.err(what, rel, e))?;
        if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT != SFlag::S_IFREG {
            return Err(Error::other(format!(
                "cannot {what} {}: not a regular file in the guest (refusing to open a device, FIFO, socket or directory it put there)",
                self.label(rel)
            )));
        }
        Ok(Some(fd))
    }

    /// Reopen an `O_PATH` fd for I/O. /proc/self/fd/N is the host's procfs
    /// and names exactly the inode we checked.
    fn reopen(
        &self,
        what: &str,
        rel: &str,
        path_fd: &OwnedFd,
        flags: OFlag,
    ) -> Result<std::fs::File> {
        let p = format!("/proc/self/fd/{}", path_fd.as_raw_fd());
        nix::fcntl::open(
            p.as_str(),
            flags | OFlag::O_CLOEXEC | OFlag::O_NOCTTY | OFlag::O_NONBLOCK,
            Mode::empty(),
        )
        .map(std::fs::File::from)
        .map_err(|e| self.err(what, rel, e))
    }

    /// The content of `rel`, None if absent. Refuses anything but a regular
    /// file, and files over `max` bytes.
    pub fn read(&self, rel: &str, max: u64) -> Result<Option<Vec<u8>>> {
        let Some(pfd) = self.regular("read", rel)? else {
            return Ok(None);
        };
        let f = self.reopen("read", rel, &pfd, OFlag::O_RDONLY)?;
        let mut buf = Vec::new();
        f.take(max + 1)
            .read_to_end(&mut buf)
            .map_err(|e| Error::io(format!("cannot read {}", self.label(rel)), e))?;
        if buf.len() as u64 > max {
            return Err(Error::other(format!(
                "{} is larger than {max} bytes; not touching it",
                self.label(rel)
            )));
        }
        Ok(Some(buf))
    }

    /// Replace the content of `rel` with `data`: truncate the regular file
    /// that is there, or create one (mode 0644) if the name is free.
    /// Returns whether the file was created.
    ///
    /// A symlink is followed inside the root. A *dangling* symlink is
    /// refused: creating through it would make a file somewhere the guest
    /// picked, and rollback could not tell what to remove; `O_EXCL`
    /// makes the kernel refuse it for us.
    pub fn write(&self, rel: &str, data: &[u8]) -> Result<bool> {
        let (mut f, created) = match self.regular("write", rel)? {
            Some(pfd) => (
                self.reopen("write", rel, &pfd, OFlag::O_WRONLY | OFlag::O_TRUNC)?,
                false,
            ),
            None => {
                let fd = self
                    .open_in(
                        rel,
                        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL,
                        Mode::from_bits_truncate(0o644),
                    )
                    .map_err(|e| match e {
                        Errno::EEXIST => Error::other(format!(
                            "cannot write {}: it is a dangling symlink in the guest (or appeared just now); not creating its target",
                            self.label(rel)
                        )),
                        e => self.err("create", rel, e),
                    })?;
                (std::fs::File::from(fd), true)
            }
        };
        f.write_all(data)
            .map_err(|e| Error::io(format!("cannot write {}", self.label(rel)), e))?;
        Ok(created)
    }

    /// Remove the name `rel` (the link itself if it is a symlink), through
    /// its parent directory opened inside the root. Returns whether
    /// something was removed.
    pub fn remove(&self, rel: &str) -> Result<bool> {
        let rel = rel.trim_start_matches('/');
        let (parent, name) = rel.rsplit_once('/').unwrap_or((".", rel));
        if name.is_empty() || name == "." || name == ".." {
            return Err(Error::other(format!(
                "cannot remove {}: not a file name",
                self.label(rel)
            )));
        }
        let dir = match self.open_in(parent, OFlag::O_PATH | OFlag::O_DIRECTORY, Mode::empty()) {
            Ok(d) => d,
            Err(Errno::ENOENT) => return Ok(false),
            Err(e) => return Err(self.err("remove", rel, e)),
        };
        match nix::unistd::unlinkat(&dir, name, nix::unistd::UnlinkatFlags::NoRemoveDir) {
            Ok(()) => Ok(true),
            Err(Errno::ENOENT) => Ok(false),
            Err(e) => Err(self.err("remove", rel, e)),
        }
    }
}

/// Write `data` to `rel` in the guest's root and journal the undo: the
/// previous content is written back through the same confined lookup, or
/// the file removed if there was none. Fails (before writing) if the old
/// content cannot be saved.
pub fn write_restorable(
    root: Arc<GuestRoot>,
    rel: &str,
    data: &[u8],
    journal: &mut Journal,
) -> Result<()> {
    let old = root.read(rel, MAX_BACKUP)?;
    let created = root.write(rel, data)?;
    let rel = rel.to_string();
    journal.record(root.label(&rel), async move {
        match old {
            Some(b) if !created => root.write(&rel, &b).map(|_| ()),
            // Absent before (or it vanished between our read and write and
            // we created it): leave the name free again.
            _ => root.remove(&rel).map(|_| ()),
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;
    use std::path::PathBuf;

    /// A temp dir acting as a guest root, plus a host file outside it.
    struct Rig {
        root: PathBuf,
        host: PathBuf,
    }

    impl Rig {
        fn new(tag: &str) -> Rig {
            let base = std::env::temp_dir().join(format!("pwgfs-{tag}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&base);
            let root = base.join("root");
            std::fs::create_dir_all(root.join("etc")).expect("mkdir");
            let host = base.join("host-secret");
            std::fs::write(&host, "host bytes\n").expect("host file");
            Rig { root, host }
        }
        fn guest(&self) -> GuestRoot {
            GuestRoot::open_dir(&self.root).expect("open root")
        }
        fn host_untouched(&self) {
            assert_eq!(
                std::fs::read_to_string(&self.host).expect("host file"),
                "host bytes\n"
            );
        }
        /// Where an absolute host path lands when re-rooted in the guest.
        fn inside(&self, abs: &Path) -> PathBuf {
            self.root.join(abs.strip_prefix("/").expect("absolute"))
        }
    }

    impl Drop for Rig {
        fn drop(&mut self) {
            if let Some(base) = self.root.parent() {
                let _ = std::fs::remove_dir_all(base);
            }
        }
    }

    fn run(j: Journal) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("rt");
        rt.block_on(j.rollback());
    }

    #[test]
    fn absolute_symlink_is_followed_inside_the_root() {
        let r = Rig::new("abs");
        symlink(&r.host, r.root.join("etc/resolv.conf")).expect("symlink");
        let g = r.guest();
        // Target absent inside the root: the symlink dangles there, so the
        // write is refused rather than creating a file the guest chose.
        let e = g
            .write("etc/resolv.conf", b"nameserver 10.0.0.53\n")
            .expect_err("dangling");
        assert!(e.to_string().contains("dangling symlink"), "{e}");
        r.host_untouched();
        // Target present inside the root: that is where the write lands.
        let inside = r.inside(&r.host);
        std::fs::create_dir_all(inside.parent().expect("parent")).expect("mkdir");
        std::fs::write(&inside, "guest decoy\n").expect("decoy");
        assert!(
            !g.write("etc/resolv.conf", b"nameserver 10.0.0.53\n")
                .expect("write")
        );
        r.host_untouched();
        assert_eq!(
            std::fs::read_to_string(&inside).expect("inside"),
            "nameserver 10.0.0.53\n"
        );
        // Reads are confined the same way.
        assert_eq!(
            g.read("etc/resolv.conf", MAX_BACKUP)
                .expect("read")
                .as_deref(),
            Some(&b"nameserver 10.0.0.53\n"[..])
        );
    }

    #[test]
    fn relative_escapes_stay_inside() {
        let r = Rig::new("rel");
        // Enough `..` to climb far past the temp dir on the host.
        let up = "../".repeat(12);
        let host_rel = r.host.strip_prefix("/").expect("absolute");
        symlink(
            format!("{up}{}", host_rel.display()),
            r.root.join("etc/resolv.conf"),
        )
        .expect("symlink");
        let g = r.guest();
        assert!(g.write("etc/resolv.conf", b"x\n").is_err());
        assert_eq!(g.read("etc/resolv.conf", MAX_BACKUP).expect("read"), None);
        r.host_untouched();
        // A path with `..` of its own is clamped at the root too.
        let direct = format!("{up}{}", host_rel.display());
        assert_eq!(g.read(&direct, MAX_BACKUP).expect("read"), None);
        assert!(g.write(&direct, b"x\n").is_err());
        r.host_untouched();
        // A symlinked directory on the way is re-rooted as well.
        let host_dir = r.host.parent().expect("dir");
        symlink(host_dir, r.root.join("var")).expect("symlink dir");
        let name = r
            .host
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        assert!(g.write(&format!("var/{name}"), b"x\n").is_err());
        assert_eq!(
            g.read(&format!("var/{name}"), MAX_BACKUP).expect("read"),
            None
        );
        r.host_untouched();
    }

    #[test]
    fn magic_links_and_special_files_are_refused() {
        let r = Rig::new("magic");
        symlink("/proc/self/root/etc/hostname", r.root.join("etc/a")).expect("symlink");
        let g = r.guest();
        // Re-rooted, /proc does not exist inside this root: nothing there.
        assert_eq!(g.read("etc/a", MAX_BACKUP).expect("read"), None);
        // A root that has a procfs (ours): its magic links are not followed.
        let host = GuestRoot::open_dir(Path::new("/")).expect("/");
        for magic in [
            "proc/self/root/etc/hostname",
            "proc/self/cwd/x",
            "proc/self/exe",
        ] {
            let e = host.read(magic, MAX_BACKUP).expect_err(magic);
            assert!(e.to_string().contains("magic link"), "{magic}: {e}");
        }
        // A directory, and a FIFO (opening it for write would block).
        std::fs::create_dir(r.root.join("etc/dir")).expect("mkdir");
        assert!(g.write("etc/dir", b"x").is_err());
        nix::unistd::mkfifo(&r.root.join("etc/fifo"), Mode::from_bits_truncate(0o644))
            .expect("mkfifo");
        let e = g.write("etc/fifo", b"x").expect_err("fifo");
        assert!(e.to_string().contains("not a regular file"), "{e}");
        assert!(g.read("etc/fifo", MAX_BACKUP).is_err());
    }

    #[test]
    fn rollback_restores_previous_content() {
        let r = Rig::new("undo");
        let p = r.root.join("etc/resolv.conf");
        std::fs::write(&p, "nameserver 192.0.2.1\n").expect("write");
        let g = Arc::new(r.guest());
        let mut j = Journal::new();
        write_restorable(g.clone(), "etc/resolv.conf", b"new\n", &mut j).expect("write");
        assert_eq!(std::fs::read_to_string(&p).expect("read"), "new\n");
        run(j);
        assert_eq!(
            std::fs::read_to_string(&p).expect("read"),
            "nameserver 192.0.2.1\n"
        );

        // Previously absent: created, then removed again.
        let q = r.root.join("etc/new.conf");
        let mut j = Journal::new();
        write_restorable(g.clone(), "etc/new.conf", b"new\n", &mut j).expect("write");
        assert_eq!(std::fs::read_to_string(&q).expect("read"), "new\n");
        run(j);
        assert!(!q.exists());
    }

    #[test]
    fn rollback_through_a_symlink_restores_the_target_inside() {
        let r = Rig::new("undolink");
        let inside = r.inside(&r.host);
        std::fs::create_dir_all(inside.parent().expect("parent")).expect("mkdir");
        std::fs::write(&inside, "guest decoy\n").expect("decoy");
        symlink(&r.host, r.root.join("etc/resolv.conf")).expect("symlink");
        let mut j = Journal::new();
        write_restorable(Arc::new(r.guest()), "etc/resolv.conf", b"new\n", &mut j).expect("write");
        run(j);
        assert_eq!(
            std::fs::read_to_string(&inside).expect("read"),
            "guest decoy\n"
        );
        assert!(r.root.join("etc/resolv.conf").is_symlink());
        r.host_untouched();
    }

    #[test]
    fn oversized_files_are_not_backed_up() {
        let r = Rig::new("big");
        let p = r.root.join("etc/resolv.conf");
        let f = std::fs::File::create(&p).expect("create");
        f.set_len(MAX_BACKUP + 1).expect("sparse");
        let mut j = Journal::new();
        let e = write_restorable(Arc::new(r.guest()), "etc/resolv.conf", b"x", &mut j)
            .expect_err("too big");
        assert!(e.to_string().contains("larger than"), "{e}");
        // Refused before writing anything.
        assert_eq!(std::fs::metadata(&p).expect("meta").len(), MAX_BACKUP + 1);
    }

    #[test]
    fn own_process_root_is_found_and_checked() {
        let pid = std::process::id();
        let ino = std::fs::metadata("/proc/self/ns/net").map(|m| {
            use std::os::unix::fs::MetadataExt;
            m.ino()
        });
        let Ok(ino) = ino else {
            eprintln!("SKIP: no /proc/self/ns/net");
            return;
        };
        assert!(GuestRoot::of_process(pid, Some(ino)).is_ok());
        let e = GuestRoot::of_process(pid, Some(ino ^ 1)).expect_err("other netns");
        assert!(e.to_string().contains("no longer"), "{e}");
    }
}
