//! `lab down`: remove everything a lab built, found from its signed
//! records and its state file (the lab file is not needed), and the
//! removal helpers `up` shares.
use super::model::container_name;
use super::plan::{self, Current, Held};
use super::state;
use crate::error::Result;
use crate::inventory::host_ns;
use crate::netlink::Net;
use serde::Serialize;

#[derive(Debug, Serialize, Default)]
pub struct DownReport {
    pub lab: String,
    pub removed: Vec<String>,
    pub containers: Vec<String>,
    pub bridges: Vec<String>,
}

/// Detach one held record. The driver finds the link by the record's
/// name; a link renamed aside (or left so by a killed `up`) is found by
/// the name it has now: the record was verified on that very link.
pub(super) async fn remove(host: &Net, h: &Held<'_>, renamed: Option<&str>) -> Result<()> {
    let mut rec = h.found.rec.clone();
    rec.ifname = renamed.unwrap_or(&h.found.link.name).to_string();
    if h.ns.ino != host_ns() {
        let _ = crate::dhcp::keeper::release(&h.ns.ns, &rec.ifname).await;
    }
    // As `detach` does: an overlay endpoint leaves etcd first, so every
    // peer drops it.
    if rec.x.overlay_ip.is_some() || rec.x.overlay_ip6.is_some() {
        for before in crate::hooks::get()?.before_detach {
            before(&rec, false).await?;
        }
    }
    crate::driver::undo(host, h.net, &rec).await
}

pub(super) fn describe_held(h: &Held<'_>) -> String {
    let r = &h.found.rec;
    match r.k {
        crate::record::Kind::P2p => format!("{}:{} -- {}", r.g, r.ifname, r.h),
        k => format!("{}:{} -> {k} {}", r.g, r.ifname, r.h),
    }
}

/// Delete a bridge we created once no port is left on it. Returns whether
/// it is gone.
pub(super) async fn delete_bridge_if_empty(host: &Net, name: &str) -> Result<bool> {
    let links = host.links().await?;
    let Some(b) = links.iter().find(|l| l.name == name && l.is_bridge()) else {
        return Ok(true);
    };
    if links.iter().any(|l| l.controller == Some(b.index)) {
        return Ok(false);
    }
    crate::firewall::release_bridge_if_unused(host, name).await?;
    host.delete_link(b).await?;
    Ok(true)
}

/// Remove everything lab `name` built, found from the records and the
/// state file (the lab file is not needed).
pub async fn down(name: &str) -> Result<DownReport> {
    down_except(name, &Default::default()).await
}

/// `down`, leaving alone the records of units in `elsewhere` (another
/// host's part of a lab across hosts, seen when hosts share a machine).
pub async fn down_except(
    name: &str,
    elsewhere: &std::collections::HashSet<String>,
) -> Result<DownReport> {
    let _lock = crate::lock::Lock::take(&format!("lab-{name}"))?;
    let host = Net::new(None, false)?;
    let mut rep = DownReport {
        lab: name.to_string(),
        ..Default::default()
    };
    let cur = Current::read().await;
    let held: Vec<Held> = cur
        .held(name)
        .filter(|h| !plan::unit_of(&h.found.rec).is_some_and(|id| elsewhere.contains(id)))
        .collect();
    // Point-to-point links in one delete per namespace; the rest one by
    // one through their drivers.
    let gone = super::reap::p2p(&held).await?;
    let mut seen = std::collections::HashSet::new();
    for (i, h) in held.iter().enumerate() {
        if !gone.contains(&i) {
            remove(&host, h, None).await?;
        }
        if seen.insert(plan::unit_of(&h.found.rec).map(String::from)) {
            rep.removed.push(describe_held(h));
        }
    }
    let mut st = state::load(name)?;
    for (node, id) in std::mem::take(&mut st.containers) {
        super::engine()?.remove(&id)?;
        rep.containers.push(container_name(name, &node));
    }
    let mut keep = Vec::new();
    for b in std::mem::take(&mut st.bridges) {
        if delete_bridge_if_empty(&host, &b).await? {
            rep.bridges.push(b);
        } else {
            keep.push(b);
        }
    }
    st.bridges = keep;
    st.file = None;
    st.host = None;
    st.exec.clear();
    state::save(name, &st)?;
    Ok(rep)
}
