//! The host key that authenticates our records.
//!
//! A guest with CAP_NET_ADMIN can write any alias on the links in its own
//! namespace, so a record read from a guest link proves nothing by itself.
//! Every record we write carries an HMAC made with a key that only root on
//! the host can read; a record without a valid tag is reported and ignored.
//! The key lives on disk (not in /run) because OVS rows and the links of
//! long-lived namespaces outlive a single boot's tmpfs only in spirit, but a
//! phys record must stay verifiable for as long as the NIC sits in a guest.
use crate::error::{Error, Result};
use hmac::{KeyInit, Mac};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::PathBuf;
use std::sync::Mutex;

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// Bytes of HMAC-SHA256 kept in a record: 96 bits, as IPsec truncates,
/// because a link alias holds only 255 bytes.
pub const TAG_BYTES: usize = 12;

/// Where the key lives; `PIPEWORK_STATE_DIR` moves it (tests, read-only /var).
pub fn dir() -> PathBuf {
    std::env::var_os("PIPEWORK_STATE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/lib/pipework"))
}

/// Cached once found; a miss is not cached, so a key created later in this
/// process (first signing) is seen by the verifications after it.
static KEY: Mutex<Option<[u8; 32]>> = Mutex::new(None);

fn read_key() -> Option<[u8; 32]> {
    let bytes = std::fs::read(dir().join("key")).ok()?;
    bytes.try_into().ok()
}

/// Create the key once per host. Two first runs racing both write a
/// candidate and `link` it into place: exactly one wins, the other reads
/// the winner's key, so no record is ever signed with a lost key.
fn create_key() -> Result<[u8; 32]> {
    let d = dir();
    std::fs::create_dir_all(&d).map_err(|e| Error::io(format!("creating {}", d.display()), e))?;
    let _ = std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700));
    let mut k = [0u8; 32];
    // getrandom(2) blocks only before the pool is initialised at boot.
    let n = unsafe { libc::getrandom(k.as_mut_ptr().cast(), k.len(), 0) };
    if n != k.len() as isize {
        return Err(Error::io(
            "reading random bytes for the host key",
            std::io::Error::last_os_error(),
        ));
    }
    let tmp = d.join(format!("key.{}", std::process::id()));
    write_private(&tmp, &k)?;
    let linked = std::fs::hard_link(&tmp, d.join("key"));
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => Ok(k),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            read_key().ok_or_else(|| Error::other("the host key file is unreadable or damaged"))
        }
        Err(e) => Err(Error::io("installing the host key", e)),
    }
}

/// Write `bytes` to a new file only root can read (0600), synced: the
/// first half of every atomic install (the caller links or renames it).
pub fn write_private(path: &std::path::Path, bytes: &[u8]) -> Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| Error::io(format!("creating {}", path.display()), e))?;
    f.write_all(bytes)
        .and_then(|_| f.sync_all())
        .map_err(|e| Error::io(format!("writing {}", path.display()), e))
}

/// The key for verifying. None when this host never wrote a record.
pub fn get() -> Option<[u8; 32]> {
    let mut g = KEY.lock().unwrap_or_else(|p| p.into_inner());
    if g.is_none() {
        *g = read_key();
    }
    *g
}

/// The key for signing, created on first use.
pub fn get_or_create() -> Result<[u8; 32]> {
    if let Some(k) = get() {
        return Ok(k);
    }
    let k = create_key()?;
    *KEY.lock().unwrap_or_else(|p| p.into_inner()) = Some(k);
    Ok(k)
}

/// Truncated HMAC-SHA256 of `parts`, each length-prefixed so that no two
/// different part lists hash alike.
pub fn tag(key: &[u8; 32], parts: &[&[u8]]) -> [u8; TAG_BYTES] {
    let mut m = match <HmacSha256 as KeyInit>::new_from_slice(key) {
        Ok(m) => m,
        // HMAC accepts keys of any length.
        Err(_) => unreachable!("HMAC takes any key length"),
    };
    for p in parts {
        m.update(&(p.len() as u64).to_le_bytes());
        m.update(p);
    }
    let full = m.finalize().into_bytes();
    let mut out = [0u8; TAG_BYTES];
    out.copy_from_slice(&full[..TAG_BYTES]);
    out
}

/// Constant-time comparison, so a guest probing tags learns nothing from timing.
pub fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_depend_on_every_part_and_their_boundaries() {
        let k = [7u8; 32];
        let a = tag(&k, &[b"ab", b"c"]);
        assert_eq!(a, tag(&k, &[b"ab", b"c"]));
        assert_ne!(a, tag(&k, &[b"a", b"bc"]));
        assert_ne!(a, tag(&[8u8; 32], &[b"ab", b"c"]));
        assert!(same(&a, &a));
        assert!(!same(&a, &tag(&k, &[b"abc"])));
    }
}
