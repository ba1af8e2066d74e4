//! `gc` for VFs: a state file names a VF we gave away; when its guest's
//! namespace is gone (the kernel has already returned the netdev to the
//! host, under the guest's name for it or `devN`) or its builder died
//! before handing it over, the VF is put back from the state file.
//!
//! The decision is made on snapshots (gc's namespace scan, one dump of the
//! host's VF netdevs, the state file as read), so before it acts it looks
//! again: the state file must read the same after the builder was found
//! dead (an attach that committed and exited meanwhile rewrote it), and a
//! namespace missing from the scan must still be missing from a fresh list
//! (an attach into a namespace newer than the scan is not a dead guest).
use super::restore as vf;
use super::state::{self, Held};
use crate::inventory::{self, Namespace, Scan};
use crate::netlink::Net;
use std::collections::{HashMap, HashSet};

/// One VF that was (or in a dry run would be) put back.
pub struct Returned {
    /// The VF netdev's name on the host before the restore, if there.
    pub name: String,
    pub action: &'static str,
    pub reason: String,
}

/// What the pass did, and the VFs it could not put back (by netdev name
/// or PCI address, with why).
#[derive(Default)]
pub struct Collected {
    pub returned: Vec<Returned>,
    pub stuck: Vec<(String, crate::Error)>,
}

pub async fn collect(host: &Net, all: &[(Namespace, Net, Scan)], dry_run: bool) -> Collected {
    let live: HashMap<u64, &Net> = all.iter().map(|(n, net, _)| (n.ino, net)).collect();
    let mut out = Collected::default();
    let pcis = state::held();
    if pcis.is_empty() {
        return out;
    }
    let on_host = match vf::links_by_pci(host).await {
        Ok(l) => l,
        Err(e) => {
            let why = e.to_string();
            out.stuck
                .extend(pcis.into_iter().map(|p| (p, crate::Error::other(&why))));
            return out;
        }
    };
    let mut now_live: Option<(HashSet<u64>, Vec<inventory::Unscanned>)> = None;
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
        // Look again before acting (see the top of this file).
        if !matches!(Held::load(&pci), Ok(Some(now)) if now == h) {
            continue;
        }
        if guest.is_none() {
            let (now, unopened) = now_live.get_or_insert_with(|| {
                let (nss, failed) = inventory::namespaces_checked();
                (nss.into_iter().map(|n| n.ino).collect(), failed)
            });
            if now.contains(&h.ns) {
                continue;
            }
            // Not found, but not every namespace could be looked at: the
            // VF may still be in use there.
            if let Some(e) = inventory::incomplete_error(unopened) {
                out.stuck
                    .push((pci, crate::Error::other(format!("kept: {e}"))));
                continue;
            }
        }
        let name = on_host
            .get(&pci)
            .map(|l| l.name.clone())
            .unwrap_or_else(|| h.name.clone());
        if !dry_run && let Err(e) = vf::restore(host, guest, &h).await {
            out.stuck.push((name, e));
            continue;
        }
        out.returned.push(Returned {
            name,
            action,
            reason: format!(
                "VF {} of {} ({pci}): {why}; returned as {} with its MTU, MAC and VF properties",
                h.vf, h.pf, h.name
            ),
        });
    }
    out
}
