//! `pipework detach <guest> [-i IF]`: undo what attach built, using only the
//! records on the kernel objects. Idempotent: nothing attached is success.
use crate::driver::AnyDriver;
use crate::error::{Error, Result};
use crate::guest;
use crate::netlink::Net;
use crate::record::Record;
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
        Err(Error::BadInput { reason, .. })
            if reason.contains("no such") || reason.contains("not running") =>
        {
            return crate::driver::ovs::detach_gone(guest_spec, ifname, dry_run).await;
        }
        Err(e) => return Err(e),
    };
    let host = Net::new(None, dry_run)?;
    let cont = Net::new(Some(&guest.netns), dry_run)?;
    let mut out = Vec::new();
    for link in cont.links().await? {
        let Some(rec) = link.alias.as_deref().and_then(Record::decode) else {
            continue;
        };
        if ifname.is_some_and(|i| i != link.name) {
            continue;
        }
        AnyDriver::for_record(&rec)?
            .detach(&host, &cont, &rec)
            .await?;
        out.push(Detached {
            guest: guest.name.clone(),
            interface: link.name.clone(),
            kind: rec.k.clone(),
            host: rec.h.clone(),
        });
    }
    Ok(out)
}
