//! What a VF looked like before we gave it away, kept on the host side.
//!
//! Once a VF's netdev is in a guest, the guest can rename it, re-alias it or
//! change its MAC and MTU; so the record on the link can say what the
//! attachment is, but never how to put the VF back. That lives here: one
//! file per VF under the state directory (root only), named by the VF's PCI
//! address and signed with the host key, written before anything changes
//! and removed only once everything is back. The file is also the VF's
//! claim: a VF with a file is taken.
use super::props::Props;
use super::sysfs::is_pci_address;
use crate::error::{Error, Result};
use crate::key;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::PathBuf;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Held {
    /// The VF's PCI address (the file's name).
    pub pci: String,
    /// The PF's PCI address and, for messages, its netdev name.
    pub pf_pci: String,
    pub pf: String,
    /// VF index on the PF.
    pub vf: u32,
    /// The VF netdev on the host: name, MTU, MAC, up, alias.
    pub name: String,
    pub mtu: u32,
    pub mac: String,
    pub up: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alias: Option<String>,
    /// The VF's properties on the PF before we changed them.
    pub props: Props,
    /// The guest: namespace inode, its name for messages, the interface.
    pub ns: u64,
    pub guest: String,
    pub ifname: String,
    /// The pipework building this attachment, until it commits (a dead
    /// pid marks work for `gc` to undo).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p: Option<u32>,
    /// HMAC over the rest (hex); empty while unsigned.
    #[serde(default)]
    pub t: String,
}

pub fn dir() -> PathBuf {
    key::dir().join("sriov")
}

fn path(pci: &str) -> Result<PathBuf> {
    if !is_pci_address(pci) {
        return Err(Error::bad(pci, "not a PCI address (dddd:bb:dd.f)"));
    }
    Ok(dir().join(format!("{pci}.json")))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl Held {
    fn body(&self) -> String {
        let mut h = self.clone();
        h.t.clear();
        serde_json::to_string(&h).unwrap_or_default()
    }

    fn compute(&self, k: &[u8; 32]) -> String {
        hex(&key::tag(
            k,
            &[b"pipework-sriov-v1", self.body().as_bytes()],
        ))
    }

    /// The file's text, signed with `k`.
    fn seal(&self, k: &[u8; 32]) -> String {
        let mut h = self.clone();
        h.t = h.compute(k);
        serde_json::to_string(&h).unwrap_or_default()
    }

    /// Parse and verify a file's text found under the name `pci`.
    fn open(text: &str, pci: &str, k: Option<[u8; 32]>) -> std::result::Result<Held, &'static str> {
        let h: Held = serde_json::from_str(text).map_err(|_| "not a well-formed VF state")?;
        let k = k.ok_or("no host key to verify it")?;
        if h.pci != pci || !key::same(h.t.as_bytes(), h.compute(&k).as_bytes()) {
            return Err("signature does not match");
        }
        let mut h = h;
        h.t.clear();
        Ok(h)
    }

    /// Write (or rewrite) the file atomically: a reader sees the old or the
    /// new version, never half of one.
    pub fn save(&self) -> Result<()> {
        let k = key::get_or_create()?;
        let d = dir();
        std::fs::create_dir_all(&d)
            .map_err(|e| Error::io(format!("creating {}", d.display()), e))?;
        let _ = std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700));
        let dst = path(&self.pci)?;
        let tmp = d.join(format!(".{}.{}", self.pci, std::process::id()));
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| Error::io(format!("creating {}", tmp.display()), e))?;
        f.write_all(self.seal(&k).as_bytes())
            .and_then(|_| f.sync_all())
            .map_err(|e| Error::io(format!("writing {}", tmp.display()), e))?;
        std::fs::rename(&tmp, &dst)
            .map_err(|e| Error::io(format!("installing {}", dst.display()), e))
    }

    /// The state of VF `pci`, if one is held and verifies. A file that does
    /// not verify is an error: the VF stays claimed (we will not hand it
    /// out) but nothing is restored from it.
    pub fn load(pci: &str) -> Result<Option<Held>> {
        let p = path(pci)?;
        let text = match std::fs::read_to_string(&p) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(format!("reading {}", p.display()), e)),
        };
        Held::open(&text, pci, key::get())
            .map(Some)
            .map_err(|why| Error::other(format!("{}: {why}; not acting on it", p.display())))
    }

    pub fn remove(&self) -> Result<()> {
        let p = path(&self.pci)?;
        match std::fs::remove_file(&p) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(Error::io(format!("removing {}", p.display()), e))
            }
            _ => Ok(()),
        }
    }
}

/// The PCI addresses with a state file (held VFs), sorted.
pub fn held() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir())
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| {
                    let n = e.file_name().to_str()?.to_string();
                    let pci = n.strip_suffix(".json")?;
                    is_pci_address(pci).then(|| pci.to_string())
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_verifies_only_unedited_and_under_its_own_name() {
        let k = [7u8; 32];
        let h = Held {
            pci: "0000:01:10.2".into(),
            pf_pci: "0000:01:00.0".into(),
            pf: "eth0".into(),
            vf: 1,
            name: "eth2".into(),
            mtu: 1500,
            mac: "02:00:00:00:00:01".into(),
            ns: 4026532000,
            guest: "web1".into(),
            ifname: "eth1".into(),
            p: Some(42),
            ..Default::default()
        };
        let text = h.seal(&k);
        assert_eq!(Held::open(&text, "0000:01:10.2", Some(k)), Ok(h.clone()));
        // Renamed to claim another VF, edited, or signed with another key.
        assert!(Held::open(&text, "0000:01:10.4", Some(k)).is_err());
        let edited = text.replace("eth2", "eth0");
        assert!(Held::open(&edited, "0000:01:10.2", Some(k)).is_err());
        assert!(Held::open(&text, "0000:01:10.2", Some([8; 32])).is_err());
        assert!(Held::open(&text, "0000:01:10.2", None).is_err());
        assert!(Held::open("{}", "0000:01:10.2", Some(k)).is_err());
        assert!(path("../key").is_err());
    }
}
