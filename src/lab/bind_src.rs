//! A bind's host path, resolved one component at a time without following
//! a symbolic link. A node with a read-write bind can write into the lab
//! directory; a link it plants there (`r1/frr.conf -> /etc/shadow`) must
//! not be bound into a container by the next `up`. Each component is
//! opened with `O_PATH|O_NOFOLLOW` below the one before, so what we check
//! is what the kernel walked, and Docker is given the resolved absolute
//! path. `..` is refused: below the lab's directory means below it.
//!
//! Absolute sources (written by the lab's author) are walked the same way
//! from `/`: a symlink anywhere in them is refused with the real path to
//! write instead. (Docker resolves the path again when it mounts; a link
//! planted in that instant is a race we narrow, not close.)
use nix::errno::Errno;
use nix::fcntl::{OFlag, open, openat};
use nix::sys::stat::{Mode, SFlag, fstat};
use std::path::{Component, Path, PathBuf};

/// `src` (as written in the lab file) resolved below `base` (the lab
/// file's directory) when relative, or from `/` when absolute.
pub fn resolve(src: &str, base: &Path) -> Result<PathBuf, String> {
    let rel = Path::new(src);
    let mut out = if rel.is_absolute() {
        PathBuf::from("/")
    } else {
        // The directory the author put the lab file in is trusted as a
        // whole (it may itself be reached through a link).
        std::fs::canonicalize(base).map_err(|e| format!("{}: {e}", base.display()))?
    };
    let flags = OFlag::O_PATH | OFlag::O_CLOEXEC;
    let mut fd = open(&out, flags | OFlag::O_DIRECTORY, Mode::empty())
        .map_err(|e| format!("{}: {e}", out.display()))?;
    for c in rel.components() {
        let n = match c {
            Component::RootDir | Component::CurDir | Component::Prefix(_) => continue,
            Component::ParentDir => {
                return Err(format!(
                    "{src}: '..' is not allowed in a bind's host path (name the file below the lab's directory, or by an absolute path)"
                ));
            }
            Component::Normal(n) => n,
        };
        out.push(n);
        let next = match openat(&fd, n, flags | OFlag::O_NOFOLLOW, Mode::empty()) {
            Ok(x) => x,
            Err(Errno::ENOENT) => return Err(format!("{} does not exist", out.display())),
            Err(e) => return Err(format!("{}: {e}", out.display())),
        };
        let st = fstat(&next).map_err(|e| format!("{}: {e}", out.display()))?;
        if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFLNK {
            return Err(format!(
                "{} is a symbolic link, which a bind never follows (bind the real path, or remove the link if a node planted it)",
                out.display()
            ));
        }
        fd = next;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_and_dotdot_are_refused_plain_paths_resolved() {
        let d = std::env::temp_dir().join(format!("pwl-bsrc-{}", std::process::id()));
        std::fs::create_dir_all(d.join("r1")).expect("dir");
        std::fs::write(d.join("r1/frr.conf"), "x").expect("file");
        std::os::unix::fs::symlink("/etc/shadow", d.join("r1/evil")).expect("link");
        std::os::unix::fs::symlink("/etc", d.join("up")).expect("link");
        let ok = resolve("./r1//frr.conf", &d).expect("plain");
        assert_eq!(ok, d.join("r1/frr.conf"));
        assert_eq!(resolve("r1", &d).expect("dir"), d.join("r1"));
        for (src, token) in [
            ("r1/evil", "symbolic link"),
            ("up/shadow", "symbolic link"),
            ("r1/../r1/frr.conf", "'..'"),
            ("../x", "'..'"),
            ("r1/nope", "does not exist"),
            ("r1/frr.conf/x", "Not a directory"),
        ] {
            let e = resolve(src, &d).expect_err(src);
            assert!(e.contains(token), "{src}: {e}");
        }
        assert_eq!(
            resolve(
                &format!("{}/r1/frr.conf", d.display()),
                Path::new("/nowhere")
            )
            .expect("absolute"),
            d.join("r1/frr.conf")
        );
        let e = resolve(&format!("{}/r1/evil", d.display()), &d).expect_err("abs link");
        assert!(e.contains("symbolic link"), "{e}");
        let _ = std::fs::remove_dir_all(&d);
    }
}
