//! `pipework detach <guest> [-i IF]`: undo what attach built, using only the
//! records that verify (inventory.rs). Idempotent: nothing attached is
//! success.
use crate::error::{Error, Result};
use crate::guest;
use crate::inventory;
use crate::netlink::Net;
use serde::Serialize;

#[derive(Debug, Serialize)]
pub struct Detached {
    pub guest: String,
    pub interface: String,
    pub kind: String,
    pub host: String,
}

pub async fn run(guest_spec: &str, ifname: Option<&str>, dry_run: bool) -> Result<Vec<Detached>> {
    let guest = match guest::resolve(guest_spec) {
        Ok(g) => g,
        // A guest that is gone took its veth ends with it; only OVS keeps
        // rows for them (pipework#143), which the OVS driver removes.
        Err(Error::GuestGone { .. }) => {
            let rows = crate::driver::ovs::detach_gone(guest_spec, ifname, dry_run).await?;
            return Ok(rows
                .into_iter()
                .map(|p| Detached {
                    guest: p
                        .external_ids
                        .get("pipework.container_name")
                        .cloned()
                        .unwrap_or_else(|| guest_spec.to_owned()),
                    interface: p
                        .external_ids
                        .get("container_iface")
                        .cloned()
                        .unwrap_or_default(),
                    kind: "ovs".into(),
                    host: p.bridge.unwrap_or_default(),
                })
                .collect());
        }
        Err(e) => return Err(e),
    };
    let host = Net::new(None, dry_run)?;
    let cont = Net::new(Some(&guest.netns), dry_run)?;
    let scan = inventory::scan(&cont, guest.netns.inode()?, &guest.name).await?;
    inventory::warn_ignored(
        &scan
            .ignored
            .iter()
            .filter(|i| ifname.is_none_or(|n| n == i.link))
            .cloned()
            .collect::<Vec<_>>(),
    );
    let mut out = Vec::new();
    for f in scan.attachments() {
        let (link, rec) = (&f.link, &f.rec);
        if ifname.is_some_and(|i| i != link.name) {
            continue;
        }
        if let Some(pid) = f.building() {
            return Err(Error::bad(
                &link.name,
                format!("is being attached right now by pipework pid {pid}; wait for it"),
            ));
        }
        // An overlay endpoint leaves etcd first: if etcd cannot be
        // reached the detach fails having changed nothing.
        crate::overlay::attach::before_detach(rec, dry_run).await?;
        // Release a kept DHCP lease while the interface still exists, so
        // the DHCPRELEASE can reach the server.
        if !dry_run && let Err(e) = crate::dhcp::keeper::release(&guest.netns, &link.name).await {
            eprintln!("pipework: warning: DHCP release on {}: {e}", link.name);
        }
        crate::driver::undo(&host, &cont, rec).await?;
        out.push(Detached {
            guest: guest.name.clone(),
            interface: link.name.clone(),
            kind: rec.k.to_string(),
            host: rec.h.clone(),
        });
    }
    Ok(out)
}
