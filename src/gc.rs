//! `pipework gc [--dry-run] [--json]`: finish or remove what a killed run,
//! a vanished guest or an interrupted detach left behind. It acts only on
//! what the inventory recognises as ours (verified records, temporary names
//! owned by dead pipeworks, OVS rows with our external_ids, iptables rules
//! with our comment, keeper state files), never on anything else.
use crate::dhcp::keeper;
use crate::driver::{ovs, phys, vlan};
use crate::error::Result;
use crate::inventory::{self, Ignored, host_ns, temp_owner};
use crate::netlink::Net;
use crate::netns::NetNs;
use crate::record::Kind;
use serde::Serialize;
use std::collections::HashSet;

#[derive(Debug, Serialize)]
pub struct Collected {
    /// What kind of object: link, attachment, phys, vlan, ovs-port,
    /// iptables-rule, dhcp-keeper.
    pub kind: &'static str,
    pub name: String,
    /// Where it is: a namespace path, a bridge, a chain.
    #[serde(rename = "where")]
    pub place: String,
    /// removed, rolled-back, restored (or "would …" in a dry run).
    pub action: String,
    pub reason: String,
}

struct Out {
    dry_run: bool,
    items: Vec<Collected>,
}

impl Out {
    fn push(&mut self, kind: &'static str, name: &str, place: &str, action: &str, reason: String) {
        let action = if self.dry_run {
            format!("would be {action}")
        } else {
            action.to_string()
        };
        self.items.push(Collected {
            kind,
            name: name.to_string(),
            place: place.to_string(),
            action,
            reason,
        });
    }
}

pub async fn run(dry_run: bool) -> Result<Vec<Collected>> {
    let host = Net::new(None, false)?;
    let host_file = NetNs::current()?;
    let mut out = Out {
        dry_run,
        items: Vec::new(),
    };
    let mut ignored: Vec<Ignored> = Vec::new();
    let all = inventory::scan_all().await;
    let live: HashSet<u64> = all.iter().map(|(n, _, _)| n.ino).collect();

    for (ns, net, scan) in &all {
        ignored.extend(scan.ignored.iter().cloned());
        if ns.ino == host_ns() {
            host_leftovers(&host, scan, &mut out).await?;
            let returned = returned_nics(&host, scan, &live, &mut out).await?;
            ignored.retain(|i| !returned.contains(&i.link));
            continue;
        }
        // Attachments whose builder died before the commit: roll back.
        for f in scan.attachments() {
            let Some(pid) = f.abandoned_by() else {
                continue;
            };
            if !inventory::unchanged(net, &f.link).await? {
                continue;
            }
            out.push(
                "attachment",
                &f.link.name,
                &ns.label,
                "rolled back",
                format!("unfinished: pipework pid {pid} died while attaching it"),
            );
            if !dry_run {
                let _ = keeper::release(&ns.ns, &f.link.name).await;
                crate::driver::undo(&host, net, &f.rec).await?;
            }
        }
        // Links a dead pipework created here and never named.
        for l in &scan.links {
            if temp_owner(&l.name).is_none() {
                continue;
            }
            if let Some(pid) = inventory::abandoned_guest_temp(net, l, &host_file).await?
                && inventory::unchanged(net, l).await?
            {
                out.push(
                    "link",
                    &l.name,
                    &ns.label,
                    "removed",
                    format!("unfinished: pipework pid {pid} died before naming it"),
                );
                if !dry_run {
                    net.delete_link(l).await?;
                }
            }
        }
    }

    for (i, l, pid) in inventory::abandoned_p2p_temps(&all).await {
        let (ns, net, _) = &all[i];
        if !inventory::unchanged(net, &l).await? {
            continue;
        }
        out.push(
            "link",
            &l.name,
            &ns.label,
            "removed",
            format!("unfinished point-to-point link: pipework pid {pid} died before naming it"),
        );
        if !dry_run {
            net.delete_link(&l).await?;
        }
    }
    for r in crate::sriov::gc::collect(&host, &all, dry_run).await? {
        ignored.retain(|i| i.link != r.name);
        out.push("sriov-vf", &r.name, "host", r.action, r.reason);
    }
    vlans(&host, &all, &mut out).await?;
    // Bridge VLAN filtering pipework turned on, with no VLAN port of ours
    // left (containers that died without a detach, or a crash before the
    // first port's record): off again, as the last detach would have.
    if !dry_run {
        for b in crate::driver::bridge_vlan::marked_bridges() {
            if crate::driver::bridge_vlan::release_filtering(&host, &b).await? {
                out.push(
                    "vlan-filtering",
                    &b,
                    "host",
                    "turned off",
                    "pipework turned it on and no VLAN port of its own is left".into(),
                );
            }
        }
    }
    for b in crate::firewall::rule_bridges() {
        if crate::firewall::collect(&host, &b, dry_run).await? {
            out.push(
                "iptables-rule",
                &format!("pipework:{b}"),
                "DOCKER-USER/FORWARD",
                "removed",
                format!("bridge {b} is gone or has no pipework port left"),
            );
        }
    }
    for (port, bridge) in ovs::collect_stale(dry_run).await? {
        out.push(
            "ovs-port",
            &port,
            &bridge,
            "removed",
            "its device is gone (guest exited without a detach, or a killed attach)".into(),
        );
    }
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    for (st, _) in keeper::list() {
        // A keeper being started: its state is written (pid 0) before the
        // process exists. Give it a minute before calling it dead.
        if st.pid == 0 && now_ms.saturating_sub(st.acquired_ms) < 60_000 {
            continue;
        }
        let why = if !keeper::keeper_alive(st.pid) {
            "the keeper process is gone"
        } else if !live.contains(&st.ns_inode) {
            "its namespace is gone"
        } else {
            continue;
        };
        out.push(
            "dhcp-keeper",
            &st.ifname,
            &st.netns.display().to_string(),
            "removed",
            why.into(),
        );
        if !dry_run {
            keeper::release_key(st.ns_inode, &st.ifname).await?;
        }
    }
    inventory::warn_ignored(&ignored);
    Ok(out.items)
}

/// In the host namespace: host ends under temporary names whose pipework
/// died (deleting one deletes its veth pair), and devices whose phys
/// attach or detach was cut short (restored from their own record).
async fn host_leftovers(host: &Net, scan: &inventory::Scan, out: &mut Out) -> Result<()> {
    for l in &scan.links {
        let Some(pid) = temp_owner(&l.name).filter(|p| !inventory::alive(*p)) else {
            continue;
        };
        if !inventory::unchanged(host, l).await? {
            continue;
        }
        out.push(
            "link",
            &l.name,
            "host",
            "removed",
            format!("unfinished: pipework pid {pid} died before naming it"),
        );
        if !out.dry_run {
            host.delete_link(l).await?;
        }
    }
    // A point-to-point end on the host (`host:NAME`) whose builder died.
    for f in scan.attachments().filter(|f| f.rec.k == Kind::P2p) {
        let Some(pid) = f.abandoned_by() else {
            continue;
        };
        if !inventory::unchanged(host, &f.link).await? {
            continue;
        }
        out.push(
            "attachment",
            &f.link.name,
            "host",
            "rolled back",
            format!("unfinished: pipework pid {pid} died while linking it"),
        );
        if !out.dry_run {
            inventory::delete_if_ours(host, &f.rec).await?;
        }
    }
    for f in &scan.ours {
        if f.rec.k != Kind::Phys {
            continue;
        }
        let Some(pid) = f.abandoned_by() else {
            continue;
        };
        let Some(orig) = phys::Original::from_record(&f.rec) else {
            continue;
        };
        if f.link.name != orig.n {
            continue;
        }
        if !inventory::unchanged(host, &f.link).await? {
            continue;
        }
        out.push(
            "phys",
            &f.link.name,
            "host",
            "restored",
            format!(
                "pipework pid {pid} died while moving it; MTU, MAC, alias and addresses put back"
            ),
        );
        if !out.dry_run {
            phys::restore_on_host(host, &f.link, &orig).await?;
        }
    }
    Ok(())
}

/// Physical devices the kernel gave back when their guest's namespace died
/// (it returns a real NIC to the host under its guest-side name, and
/// destroys virtual ones). Their record was sealed for the dead namespace:
/// in the host namespace, where no guest can write, it still verifies with
/// that identity, and it says how to put the NIC back. Returns their names.
async fn returned_nics(
    host: &Net,
    scan: &inventory::Scan,
    live: &HashSet<u64>,
    out: &mut Out,
) -> Result<Vec<String>> {
    use crate::record::{Ident, Record, Seen};
    let mut names = Vec::new();
    for l in &scan.links {
        let Some(ns) = Record::claimed_ns(l.alias.as_deref()).filter(|n| !live.contains(n)) else {
            continue;
        };
        let id = Ident { ns, index: l.index };
        let Seen::Ours(rec) = Record::read(l.alias.as_deref(), id) else {
            continue;
        };
        let Some(orig) = phys::Original::from_record(&rec).filter(|_| rec.k == Kind::Phys) else {
            continue;
        };
        names.push(l.name.clone());
        out.push(
            "phys",
            &l.name,
            "host",
            "restored",
            format!(
                "its guest's namespace is gone; returned as {} with its MTU, MAC and addresses",
                orig.n
            ),
        );
        if out.dry_run {
            continue;
        }
        let mut back = l.clone();
        if l.name != orig.n {
            host.rename(l, &orig.n).await?;
            back.name = orig.n.clone();
        }
        phys::restore_on_host(host, &back, &orig).await?;
    }
    Ok(names)
}

/// VLAN sub-interfaces we created that no attachment uses any more.
async fn vlans(
    host: &Net,
    all: &[(inventory::Namespace, Net, inventory::Scan)],
    out: &mut Out,
) -> Result<()> {
    // The host's links and every attachment come from the scan gc already
    // made; no second pass over the namespaces.
    let ours: Vec<String> = all
        .iter()
        .filter(|(ns, _, _)| ns.ino == host_ns())
        .flat_map(|(_, _, s)| s.links.iter())
        .filter(|l| {
            l.kind.as_deref() == Some("vlan") && l.alias.as_deref() == Some(vlan::CREATED_ALIAS)
        })
        .map(|l| l.name.clone())
        .collect();
    let users: Vec<&inventory::Found> = all.iter().flat_map(|(_, _, s)| s.attachments()).collect();
    for name in ours {
        if users.iter().any(|f| f.rec.hi.as_deref() == Some(&name)) {
            continue;
        }
        if !out.dry_run {
            vlan::release_if_unused(host, &name).await?;
            if host.link_by_name(&name).await?.is_some() {
                continue;
            }
        }
        out.push(
            "vlan",
            &name,
            "host",
            "removed",
            "created by pipework and no guest uses it".into(),
        );
    }
    Ok(())
}
