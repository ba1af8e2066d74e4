//! `pipework ls`: every attachment on this host, read from the records on
//! the container-side links in every network namespace we can find
//! (through the inventory, which believes only records that verify).
use crate::error::Result;
use crate::inventory;
use serde::Serialize;

#[derive(Debug, Serialize)]
pub struct Entry {
    pub guest: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container_id: Option<String>,
    pub interface: String,
    pub kind: String,
    pub host: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host_interface: Option<String>,
    pub mac: String,
    pub addresses: Vec<String>,
    pub up: bool,
    /// Pid of the pipework that was building this attachment, while it is
    /// unfinished (a dead pid: `gc` or a re-run finishes the job).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unfinished: Option<u32>,
    /// Lease state and expiry when our DHCP keeper holds the address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dhcp: Option<crate::dhcp::keeper::KeeperStatus>,
    /// SR-IOV: the PF, VF index and PCI address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sriov: Option<crate::sriov::LsInfo>,
    /// Bridge (or OVS) VLANs of the port: the access VLAN, and `trunk
    /// 20-30` when it trunks (from its signed record: what pipework set).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vlan: Option<String>,
    /// The lab that built it (`pipework lab`), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lab: Option<String>,
    /// Bridge: attached with `--tc-redirect` (from its signed record).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub tc_redirect: bool,
}

pub async fn run() -> Result<Vec<Entry>> {
    let hooks = crate::hooks::get()?;
    let (all, unscanned) = inventory::scan_all_checked().await;
    if let Some(e) = inventory::incomplete_error(&unscanned) {
        // Say so rather than list less as if it were all.
        eprintln!("pipework: ls: this listing may be incomplete: {e}");
    }
    let ignored: Vec<inventory::Ignored> = all
        .iter()
        .flat_map(|(_, _, s)| s.ignored.iter().cloned())
        .collect();
    // OVS ports (their VLANs live in OVSDB, not in our records).
    let ports = crate::driver::ovs::all_ports().await;
    let ports = &ports;
    // Each attachment once, from its container side; addresses asked of
    // every namespace at the same time.
    let per_ns = futures::future::join_all(all.iter().map(|(ns, net, scan)| async move {
        let mut out = Vec::new();
        for f in scan.attachments() {
            let (l, rec) = (&f.link, &f.rec);
            let addrs = net.addrs(l.index).await.unwrap_or_default();
            let sriov = (rec.k == crate::record::Kind::Sriov)
                .then(|| crate::sriov::LsInfo::from_record(rec))
                .flatten();
            // A CNI record holds its container ID in the guest name only.
            let spelled = (hooks.guest_of)(rec);
            out.push(Entry {
                guest: spelled
                    .as_ref()
                    .map_or_else(|| rec.g.clone(), |s| s.0.clone()),
                container_id: rec
                    .id
                    .clone()
                    .or_else(|| spelled.as_ref().map(|s| s.1.chars().take(12).collect())),
                interface: l.name.clone(),
                kind: rec.k.to_string(),
                host: sriov
                    .as_ref()
                    .map_or_else(|| rec.h.clone(), |s| s.pf.clone()),
                host_interface: match &sriov {
                    Some(s) => Some(format!("vf{} {}", s.vf, s.pci)),
                    None => rec.hi.clone(),
                },
                mac: crate::request::format_mac(&l.mac),
                addresses: addrs.iter().map(|a| a.net.to_string()).collect(),
                up: l.up,
                unfinished: f.rec.p,
                dhcp: crate::dhcp::keeper::status(&ns.ns, &l.name).ok().flatten(),
                sriov,
                vlan: vlans(rec).or_else(|| ovs_vlans(ports, rec)),
                lab: (hooks.lab_of)(rec).map(String::from),
                tc_redirect: rec.x.tc_redirect.is_some(),
            });
        }
        out
    }))
    .await;
    let mut out: Vec<Entry> = per_ns.into_iter().flatten().collect();
    inventory::warn_ignored(&ignored);
    // OVS rows whose guest is gone live on in OVSDB only (pipework#143).
    out.extend(
        ports
            .iter()
            .filter(|p| crate::driver::ovs::is_stale(p))
            .cloned()
            .map(stale_entry),
    );
    out.sort_by(|a, b| (&a.guest, &a.interface).cmp(&(&b.guest, &b.interface)));
    Ok(out)
}

/// An OVS row whose guest is gone, as `ls` shows it (kind `ovs-stale`, so
/// the operator knows `pipework detach GUEST` or `gc` removes it).
fn stale_entry(p: crate::ovsdb::ops::PortRecord) -> Entry {
    let ids = &p.external_ids;
    let veth = ids.get(crate::ovsdb::ops::MODE_KEY).map(String::as_str) == Some("veth");
    Entry {
        guest: ids
            .get("pipework.container_name")
            .cloned()
            .unwrap_or_default(),
        container_id: ids
            .get("container_id")
            .map(|id| id.chars().take(12).collect()),
        interface: ids.get("container_iface").cloned().unwrap_or_default(),
        kind: "ovs-stale".into(),
        host: p.bridge.clone().unwrap_or_default(),
        host_interface: veth.then(|| p.name.clone()),
        mac: String::new(),
        addresses: vec![],
        up: false,
        unfinished: None,
        dhcp: None,
        sriov: None,
        vlan: port_vlans(&p),
        lab: None,
        tc_redirect: false,
    }
}

/// An OVS attachment's port's tag and trunks, from OVSDB.
fn ovs_vlans(
    ports: &[crate::ovsdb::ops::PortRecord],
    rec: &crate::record::Record,
) -> Option<String> {
    if rec.k != crate::record::Kind::Ovs {
        return None;
    }
    let name = rec.x.ovs_port.as_deref().or(rec.hi.as_deref())?;
    ports
        .iter()
        .find(|p| p.name == name && p.bridge.as_deref() == Some(rec.h.as_str()))
        .and_then(port_vlans)
}

fn port_vlans(p: &crate::ovsdb::ops::PortRecord) -> Option<String> {
    let trunk: Vec<String> = p.trunks.iter().map(|t| t.to_string()).collect();
    match (p.tag, trunk.is_empty()) {
        (None, true) => None,
        (Some(t), true) => Some(t.to_string()),
        (None, false) => Some(format!("trunk {}", trunk.join(","))),
        (Some(t), false) => Some(format!("{t} trunk {}", trunk.join(","))),
    }
}

/// `10`, `10 trunk 20-30` or `trunk 20-30`; None without VLANs.
fn vlans(rec: &crate::record::Record) -> Option<String> {
    match (rec.x.vlan, rec.x.trunk.as_deref()) {
        (None, None) => None,
        (Some(v), None) => Some(v.to_string()),
        (None, Some(t)) => Some(format!("trunk {t}")),
        (Some(v), Some(t)) => Some(format!("{v} trunk {t}")),
    }
}
