//! `gc` for VFs: a state file names a VF we gave away; when its guest's
//! namespace is gone (the kernel has already returned the netdev to the
//! host, under the guest's name for it or `devN`) or its builder died
//! before handing it over, the VF is put back from the state file.
use super::restore as vf;
use super::state::{self, Held};
use crate::error::Result;
use crate::inventory::{self, Namespace, Scan};
use crate::netlink::Net;
use std::collections::HashMap;

/// One VF that was (or in a dry run would be) put back.
pub struct Returned {
    /// The VF netdev's name on the host before the restore, if there.
    pub name: String,
    pub action: &'static str,
    pub reason: String,
}

pub async fn collect(
    host: &Net,
    all: &[(Namespace, Net, Scan)],
    dry_run: bool,
) -> Result<Vec<Returned>> {
    let live: HashMap<u64, &Net> = all.iter().map(|(n, net, _)| (n.ino, net)).collect();
    let mut out = Vec::new();
    let pcis = state::held();
    if pcis.is_empty() {
        return Ok(out);
    }
    let on_host = vf::links_by_pci(host).await?;
    for pci in pcis {
        let h = match Held::load(&pci) {
            Ok(Some(h)) => h,
            Ok(None) => continue,
            Err(e) => {
                eprintln!("pipework: gc: {e}");
                continue;
            }
        };
        let guest = live.get(&h.ns).copied();
        let (action, why) = match (h.p, guest) {
            (Some(p), _) if inventory::alive(p) => continue,
            (Some(p), _) => (
                "rolled back",
                format!("unfinished: pipework pid {p} died while attaching it"),
            ),
            (None, None) => (
                "restored",
                format!("its guest {}'s namespace is gone", h.guest),
            ),
            // Committed and its guest alive: attached, unless a detach
            // was cut short after the VF was already back on the host.
            (None, Some(_)) if on_host.contains_key(&pci) => (
                "restored",
                format!("a detach from {} was interrupted", h.guest),
            ),
            (None, Some(_)) => continue,
        };
        let name = on_host
            .get(&pci)
            .map(|l| l.name.clone())
            .unwrap_or_else(|| h.name.clone());
        out.push(Returned {
            name,
            action,
            reason: format!(
                "VF {} of {} ({pci}): {why}; returned as {} with its MTU, MAC and VF properties",
                h.vf, h.pf, h.name
            ),
        });
        if !dry_run {
            vf::restore(host, guest, &h).await?;
        }
    }
    Ok(out)
}
