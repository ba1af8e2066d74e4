//! `pipework detach <guest> [-i IF]`: undo what attach built, using only the
//! records that verify (inventory.rs). Idempotent: nothing attached is
//! success. One interface that cannot be detached does not keep the
//! others: every one is tried, and the error at the end names each that
//! is left (as netavark's teardown does).
use crate::error::{Error, Result};
use crate::guest;
use crate::hooks;
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
    let hooks = hooks::get()?;
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
    let mut stuck: Vec<(String, Error)> = Vec::new();
    for f in scan.attachments() {
        let (link, rec) = (&f.link, &f.rec);
        if ifname.is_some_and(|i| i != link.name) {
            continue;
        }
        if let Some(pid) = f.building() {
            stuck.push((
                link.name.clone(),
                Error::bad(
                    &link.name,
                    format!("is being attached right now by pipework pid {pid}; wait for it"),
                ),
            ));
            continue;
        }
        let r = async {
            // Subsystems first (an overlay endpoint leaves etcd): if one
            // fails, this interface's detach fails having changed nothing.
            for before in hooks.before_detach {
                before(rec, dry_run).await?;
            }
            // Release a kept DHCP lease while the interface still exists,
            // so the DHCPRELEASE can reach the server.
            if !dry_run && let Err(e) = crate::dhcp::keeper::release(&guest.netns, &link.name).await
            {
                eprintln!("pipework: warning: DHCP release on {}: {e}", link.name);
            }
            crate::driver::undo(&host, &cont, rec).await
        };
        if let Err(e) = r.await {
            stuck.push((link.name.clone(), e));
            continue;
        }
        out.push(Detached {
            guest: guest.name.clone(),
            interface: link.name.clone(),
            kind: rec.k.to_string(),
            host: rec.h.clone(),
        });
    }
    if stuck.is_empty() {
        return Ok(out);
    }
    // One interface, nothing else done: its own error, as always.
    if stuck.len() == 1 && out.is_empty() {
        return Err(stuck.remove(0).1);
    }
    // Most errors already start with the interface's name.
    let left: Vec<String> = stuck
        .iter()
        .map(|(n, e)| {
            let e = e.to_string();
            if e.starts_with(&format!("{n}: ")) {
                e
            } else {
                format!("{n}: {e}")
            }
        })
        .collect();
    let done: Vec<&str> = out.iter().map(|d| d.interface.as_str()).collect();
    Err(Error::other(format!(
        "detach {}: {} interface{} left: {}{}",
        guest.name,
        stuck.len(),
        if stuck.len() == 1 { "" } else { "s" },
        left.join("; "),
        if done.is_empty() {
            String::new()
        } else {
            format!(" (detached: {})", done.join(", "))
        }
    )))
}
