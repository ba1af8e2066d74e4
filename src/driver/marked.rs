//! Host devices that pipework shares and later removes (a VLAN
//! sub-interface, the host shim, an overlay's bridge and VXLAN device) are
//! recognised by a signed mark in their alias, bound to their ifindex. The
//! kernel ignores IFLA_IFALIAS in the RTM_NEWLINK that creates a link (and
//! the index is not known before it), so the mark takes a second request.
//! A SIGKILL between the two would leave an unmarked device under its
//! final name, which nothing may remove: an administrator's look-alike
//! looks the same.
//!
//! So such a device is born down under a temporary name (`pw.<pid>.<n>`:
//! only root on the host names host links, and `gc` removes one once that
//! pid is dead), then gets its final name, its mark and up in one
//! RTM_SETLINK. The kernel handles a request whole before a signal can
//! stop us, so at every instant the device is either recognisably
//! unfinished or finished.
use crate::error::Result;
use crate::inventory::{self, temp_owner};
use crate::netlink::{Link, Net};
use crate::record::MarkKind;
use std::future::Future;

/// Create a host device with `born(name)` (which must leave it down) and
/// commit it as `name`, marked as `kind` of `of`. None when `name` was
/// taken meanwhile (another pipework finished first, or an administrator):
/// ours is gone again and the caller looks at what holds the name. In a
/// dry run `born` gets the final name and nothing else is sent.
///
/// A creation refused with EEXIST may be the kernel's one-per-key rule (one
/// VLAN id per parent, one VNI per port) against a device of `link_kind`
/// that a killed pipework left under a temporary name: those are removed,
/// as `gc` would, and the creation is tried once more (under a new
/// temporary name).
pub async fn create<F, Fut>(
    host: &Net,
    name: &str,
    link_kind: &str,
    (kind, of): (MarkKind, &str),
    born: F,
) -> Result<Option<Link>>
where
    F: Fn(String) -> Fut,
    Fut: Future<Output = Result<Link>>,
{
    if host.dry_run {
        return born(name.to_string()).await.map(Some);
    }
    let l = match born(inventory::temp_name()).await {
        Ok(l) => l,
        Err(e) if e.errno() == Some(libc::EEXIST) => {
            // Or the temporary name itself was taken: a killed process
            // that had our pid left it. The next name is another one.
            clear_abandoned(host, link_kind).await?;
            born(inventory::temp_name()).await?
        }
        Err(e) => return Err(e),
    };
    let commit = async {
        let alias = inventory::mark_alias(&l, kind, of)?;
        host.rename_alias_up(&l, name, &alias).await
    };
    if let Err(e) = commit.await {
        let _ = host.delete_link(&l).await;
        return match e.errno() {
            Some(libc::EEXIST) => Ok(None),
            _ => Err(e),
        };
    }
    Ok(host
        .link_by_index(l.index)
        .await?
        .filter(|now| now.name == name))
}

/// Remove the host links of `link_kind` under temporary names whose
/// pipework is dead (each re-read first: one renamed or relabelled since
/// the dump is not the one we saw). Returns how many went.
async fn clear_abandoned(host: &Net, link_kind: &str) -> Result<usize> {
    let mut n = 0;
    for l in host.links().await? {
        if l.kind.as_deref() != Some(link_kind)
            || temp_owner(&l.name).is_none_or(inventory::alive)
            || !inventory::unchanged(host, &l).await?
        {
            continue;
        }
        host.delete_link(&l).await?;
        n += 1;
    }
    Ok(n)
}
