//! Undoing an attachment, shared by DEL and by ADD's rollback (so neither
//! verb's module depends on the other).
use super::error::CniResult;
use crate::inventory;
use crate::netlink::Net;

/// Undo the attachment tagged `tag` (recorded in either spelling, see
/// `super::tag`): through the driver while the
/// container side is reachable, else by deleting the tagged host link.
/// `bridge`: the Linux bridge this attachment used, if known from the
/// config, so its firewall accept rule is released even when the kernel
/// already removed every trace of the attachment (namespace destroyed
/// before DEL, as `ctr run --rm --cni` does).
pub(super) async fn detach(
    host: &Net,
    cont: Option<(&Net, u64)>,
    tag: &str,
    bridge: Option<&str>,
) -> CniResult<()> {
    if let Some((cont, ino)) = cont {
        let mut found = false;
        let scan = inventory::scan(cont, ino, tag).await?;
        inventory::warn_ignored(&scan.ignored);
        for f in scan.attachments() {
            if super::tag::same(&f.rec.g, tag) {
                crate::driver::undo(host, cont, &f.rec).await?;
                found = true;
            }
        }
        if found {
            // The driver removed the host side too (a veth dies as a pair).
            return Ok(());
        }
    }
    // No container side to go through: find the host side by its record.
    let mut found = false;
    let scan = inventory::scan(host, inventory::host_ns(), "host").await?;
    for f in &scan.ours {
        let (l, rec) = (&f.link, &f.rec);
        // Host ends only: a phys device on its way back is not a veth.
        if super::tag::same(&rec.g, tag) && l.kind.as_deref() == Some("veth") {
            host.delete_link(l).await?;
            crate::firewall::release_bridge_if_unused(host, &rec.h).await?;
            found = true;
        }
    }
    if let (false, Some(b)) = (found, bridge) {
        crate::firewall::release_bridge_if_unused(host, b).await?;
    }
    Ok(())
}
