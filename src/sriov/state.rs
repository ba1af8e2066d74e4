//! What a VF looked like before we gave it away, kept on the host side.
//!
//! Once a VF's netdev is in a guest, the guest can rename it, re-alias it or
//! change its MAC and MTU; so the record on the link can say what the
//! attachment is, but never how to put the VF back. That lives here: one
//! file per VF in the state area (`own`: root only, named by the VF's PCI
//! address, signed with the host key), written before anything changes
//! and removed only once everything is back. The file is also the VF's
//! claim: a VF with a file is taken.
use super::props::Props;
use super::sysfs::is_pci_address;
use crate::error::{Error, Result};
use crate::own::{self, Area};
use serde::{Deserialize, Serialize};

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
}

/// The folder of VF state files in the state area.
const FOLDER: &str = "sriov";

fn check(pci: &str) -> Result<()> {
    if is_pci_address(pci) {
        Ok(())
    } else {
        Err(Error::bad(pci, "not a PCI address (dddd:bb:dd.f)"))
    }
}

impl Held {
    /// Written before anything changes (`own::write`: signed, bound to the
    /// VF's PCI address, atomic).
    pub fn save(&self) -> Result<()> {
        check(&self.pci)?;
        own::write(Area::State, FOLDER, &self.pci, self)
    }

    /// The VF's state file, verified; a forged or moved one is refused.
    pub fn load(pci: &str) -> Result<Option<Held>> {
        check(pci)?;
        let h: Option<Held> = own::read(Area::State, FOLDER, pci)?;
        match h {
            Some(h) if h.pci != pci => Err(Error::other(format!(
                "the state of VF {pci} names {}; not acting on it",
                h.pci
            ))),
            other => Ok(other),
        }
    }

    /// Forget the VF (it is back as it was): it is free again.
    pub fn remove(&self) -> Result<()> {
        check(&self.pci)?;
        own::remove(Area::State, FOLDER, &self.pci)
    }
}

/// The PCI addresses with a state file (held VFs), sorted.
pub fn held() -> Vec<String> {
    own::names(Area::State, FOLDER)
        .into_iter()
        .filter(|n| is_pci_address(n))
        .collect()
}
