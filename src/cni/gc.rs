//! GC: remove attachments the runtime no longer lists.
use super::attach::{Mode, runtime};
use super::error::{CniError, CniResult};
use super::types::{Attachment, NetConf};
use crate::inventory;
use crate::netlink::Net;

/// GC: remove our host-side links for this network whose attachment is
/// not in `cni.dev/valid-attachments`. Keeps going after errors.
pub fn gc(conf: &NetConf, _mode: Mode, valid: &[Attachment]) -> CniResult<()> {
    runtime()?.block_on(async {
        let host = Net::new(None, false)?;
        let mut first_err: Option<CniError> = None;
        let scan = inventory::scan(&host, inventory::host_ns(), "host").await?;
        for f in &scan.ours {
            let (l, rec) = (&f.link, &f.rec);
            if l.kind.as_deref() != Some("veth") {
                continue;
            }
            // Either spelling: an earlier version's records are collected too.
            let Some((net, cid, ifname)) = super::tag::decode(&rec.g) else {
                continue;
            };
            if net != conf.name
                || valid
                    .iter()
                    .any(|a| a.container_id == cid && a.ifname == ifname)
            {
                continue;
            }
            eprintln!("pipework (cni): GC: removing {} ({cid}/{ifname})", l.name);
            let r = match host.delete_link(l).await {
                Ok(()) => crate::firewall::release_bridge_if_unused(&host, &rec.h).await,
                Err(e) => Err(e),
            };
            if let Err(e) = r {
                first_err.get_or_insert(e.into());
            }
        }
        first_err.map_or(Ok(()), Err)
    })
}
