//! `pipework gc [--dry-run] [--json]`: finish or remove what a killed run,
//! a vanished guest or an interrupted detach left behind. It acts only on
//! what the inventory recognises as ours (verified records, temporary names
//! owned by dead pipeworks, OVS rows with our external_ids, iptables rules
//! with our comment, keeper state files), never on anything else.
use crate::dhcp::keeper;
use crate::driver::{ovs, phys, vlan};
use crate::error::{Error, Result};
use crate::hooks::{self, GcCtx, GcItem, Stuck};
use crate::inventory::{self, Ignored, host_ns, temp_owner};
use crate::netlink::Net;
use crate::netns::NetNs;
use crate::record::Kind;
use serde::Serialize;
use std::collections::HashSet;

#[derive(Debug, Serialize)]
pub struct Collected {
    /// What kind of object: link, attachment, phys, vlan, ovs-port,
    /// iptables-rule, dhcp-keeper, temp-file.
    pub kind: &'static str,
    pub name: String,
    /// Where it is: a namespace path, a bridge, a chain.
    #[serde(rename = "where")]
    pub place: String,
    /// removed, rolled-back, restored (or "would …" in a dry run).
    pub action: String,
    pub reason: String,
}

/// Everything one gc did, and every item it could not deal with.
#[derive(Debug, Serialize)]
pub struct Report {
    pub collected: Vec<Collected>,
    pub stuck: Vec<Stuck>,
}

struct Out {
    dry_run: bool,
    items: Vec<Collected>,
    stuck: Vec<Stuck>,
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

    fn stuck(&mut self, kind: &'static str, name: &str, place: &str, e: &Error) {
        self.stuck.push(Stuck {
            kind,
            name: name.to_string(),
            place: place.to_string(),
            error: e.to_string(),
        });
    }

    /// An item whose action ran (or, in a dry run, would run) and gave
    /// `r`: listed when it was done (`Ok(true)`), skipped when a re-check
    /// found it changed (`Ok(false)`), named as stuck on an error.
    fn settle(&mut self, item: GcItem, r: Result<bool>) {
        match r {
            Ok(true) => self.push(item.kind, &item.name, &item.place, item.action, item.reason),
            Ok(false) => {}
            Err(e) => self.stuck(item.kind, &item.name, &item.place, &e),
        }
    }
}

fn item(
    kind: &'static str,
    name: &str,
    place: &str,
    action: &'static str,
    reason: String,
) -> GcItem {
    GcItem {
        kind,
        name: name.to_string(),
        place: place.to_string(),
        action,
        reason,
    }
}

/// `gc`, as the command line runs it: what was collected, or, when any
/// item is stuck, one error naming every stuck item (the rest was done
/// all the same; `report` returns both).
/// The one line naming every stuck item, if any (and how many others were
/// collected): what a caller that has shown the collected items exits with.
pub fn stuck_error(r: &Report) -> Option<Error> {
    if r.stuck.is_empty() {
        return None;
    }
    let names: Vec<String> = r.stuck.iter().map(|s| s.to_string()).collect();
    Some(Error::other(format!(
        "gc: {} item{} stuck: {}; {} other{} collected",
        r.stuck.len(),
        if r.stuck.len() == 1 { "" } else { "s" },
        names.join("; "),
        r.collected.len(),
        if r.collected.len() == 1 { "" } else { "s" },
    )))
}

/// Every pass over every item, whatever fails on the way (as netavark's
/// teardown does): one stuck object never keeps gc from the others. Errs
/// only when gc cannot start (no hooks, no host netlink socket).
pub async fn report(dry_run: bool) -> Result<Report> {
    let hooks = hooks::get()?;
    let host = Net::new(None, false)?;
    let host_file = NetNs::current()?;
    let mut out = Out {
        dry_run,
        items: Vec::new(),
        stuck: Vec::new(),
    };
    let mut ignored: Vec<Ignored> = Vec::new();
    let (all, unscanned) = inventory::scan_all_checked().await;
    // A namespace that failed to scan is still alive: nothing is collected
    // for being "gone" from it; gc says it could not look.
    let live: HashSet<u64> = all
        .iter()
        .map(|(n, _, _)| n.ino)
        .chain(unscanned.iter().map(|u| u.ino))
        .collect();
    // Namespaces found but not opened: their inodes are unknown, so
    // nothing may be called gone while there are any.
    let unopened: Vec<inventory::Unscanned> =
        unscanned.iter().filter(|u| u.ino == 0).cloned().collect();
    for u in &unscanned {
        out.stuck(
            "namespace",
            &u.label,
            &u.label,
            &Error::other(format!("could not be scanned: {}", u.why)),
        );
    }

    for (ns, net, scan) in &all {
        ignored.extend(scan.ignored.iter().cloned());
        if ns.ino == host_ns() {
            host_leftovers(&host, scan, &mut out).await;
            let returned = returned_nics(&host, scan, &live, &mut out).await;
            ignored.retain(|i| !returned.contains(&i.link));
            continue;
        }
        // Attachments whose builder died before the commit: roll back.
        for f in scan.attachments() {
            let Some(pid) = f.abandoned_by() else {
                continue;
            };
            let it = item(
                "attachment",
                &f.link.name,
                &ns.label,
                "rolled back",
                format!("unfinished: pipework pid {pid} died while attaching it"),
            );
            let r = async {
                if !inventory::unchanged(net, &f.link).await? {
                    return Ok(false);
                }
                if !dry_run {
                    let _ = keeper::release(&ns.ns, &f.link.name).await;
                    crate::driver::undo(&host, net, &f.rec).await?;
                }
                Ok(true)
            };
            out.settle(it, r.await);
        }
        // Links a dead pipework created here and never named.
        for l in &scan.links {
            if temp_owner(&l.name).is_none() {
                continue;
            }
            let r = async {
                let Some(pid) = inventory::abandoned_guest_temp(net, l, &host_file).await? else {
                    return Ok(None);
                };
                if !inventory::unchanged(net, l).await? {
                    return Ok(None);
                }
                if !dry_run {
                    net.delete_link(l).await?;
                }
                Ok(Some(pid))
            };
            match r.await {
                Ok(Some(pid)) => out.push(
                    "link",
                    &l.name,
                    &ns.label,
                    "removed",
                    format!("unfinished: pipework pid {pid} died before naming it"),
                ),
                Ok(None) => {}
                Err(e) => out.stuck("link", &l.name, &ns.label, &e),
            }
        }
    }

    // The subsystems' passes (point-to-point links).
    let cx = GcCtx {
        host: &host,
        all: &all,
        unscanned: &unscanned,
        dry_run,
    };
    for pass in hooks.gc {
        let r = pass(&cx).await;
        for i in r.items {
            out.push(i.kind, &i.name, &i.place, i.action, i.reason);
        }
        out.stuck.extend(r.stuck);
    }
    let sriov = crate::sriov::gc::collect(&host, &all, dry_run).await;
    for r in sriov.returned {
        ignored.retain(|i| i.link != r.name);
        out.push("sriov-vf", &r.name, "host", r.action, r.reason);
    }
    for (name, e) in sriov.stuck {
        out.stuck("sriov-vf", &name, "host", &e);
    }
    vlans(&host, &all, &unscanned, &mut out).await;
    // Bridge VLAN filtering pipework turned on, with no VLAN port of ours
    // left (containers that died without a detach, or a crash before the
    // first port's record): off again, as the last detach would have.
    if !dry_run {
        for b in crate::driver::bridge_vlan::marked_bridges() {
            match crate::driver::bridge_vlan::release_filtering(&host, &b).await {
                Ok(true) => out.push(
                    "vlan-filtering",
                    &b,
                    "host",
                    "turned off",
                    "pipework turned it on and no VLAN port of its own is left".into(),
                ),
                Ok(false) => {}
                Err(e) => out.stuck("vlan-filtering", &b, "host", &e),
            }
        }
    }
    // --tc-redirect rules whose target is gone or no longer an opted-in
    // port of the same bridge (after the abandoned attachments above went).
    match crate::driver::tc_redirect::sweep_all(&host, dry_run).await {
        Ok(gone) => {
            for r in gone {
                out.push(
                    "tc-redirect",
                    &format!("ifindex {} -> {}", r.port, r.target),
                    "host",
                    "removed",
                    "its target port is gone or is not an opted-in port of that bridge".into(),
                );
            }
        }
        Err(e) => out.stuck("tc-redirect", "tc redirect rules", "host", &e),
    }
    for b in crate::firewall::rule_bridges() {
        let name = format!("pipework:{b}");
        match crate::firewall::collect(&host, &b, dry_run).await {
            Ok(true) => out.push(
                "iptables-rule",
                &name,
                "DOCKER-USER/FORWARD",
                "removed",
                format!("bridge {b} is gone or has no pipework port left"),
            ),
            Ok(false) => {}
            Err(e) => out.stuck("iptables-rule", &name, "DOCKER-USER/FORWARD", &e),
        }
    }
    match crate::firewall::collect_vxlan_guard(&host, dry_run).await {
        Ok(true) => out.push(
            "nftables-table",
            &crate::firewall::vxlan_guard_name(),
            "host",
            "removed",
            "no VXLAN device is left for it to guard (an overlay accept: or its bridge is gone)"
                .into(),
        ),
        Ok(false) => {}
        Err(e) => out.stuck(
            "nftables-table",
            &crate::firewall::vxlan_guard_name(),
            "host",
            &e,
        ),
    }
    let (removed, stuck) = ovs::collect_stale(dry_run).await;
    for (port, bridge) in removed {
        out.push(
            "ovs-port",
            &port,
            &bridge,
            "removed",
            "its device is gone (guest exited without a detach, or a killed attach)".into(),
        );
    }
    for (port, bridge, e) in stuck {
        out.stuck("ovs-port", &port, &bridge, &e);
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
            // A namespace file we could not open (its inode unknown) may
            // be this keeper's: its guest would lose its lease.
            if let Some(e) = inventory::incomplete_error(&unopened) {
                let place = st.netns.display().to_string();
                out.stuck(
                    "dhcp-keeper",
                    &st.ifname,
                    &place,
                    &Error::other(format!("kept: {e}")),
                );
                continue;
            }
            "its namespace is gone"
        } else {
            continue;
        };
        let place = st.netns.display().to_string();
        let r = if dry_run {
            Ok(())
        } else {
            keeper::release_key(st.ns_inode, &st.ifname)
                .await
                .map(|_| ())
        };
        match r {
            Ok(()) => out.push("dhcp-keeper", &st.ifname, &place, "removed", why.into()),
            Err(e) => out.stuck("dhcp-keeper", &st.ifname, &place, &e),
        }
    }
    for (t, r) in crate::own::sweep_temps(dry_run) {
        let name = t.path.display().to_string();
        match r {
            Ok(()) => out.push(
                "temp-file",
                &name,
                "host",
                "removed",
                format!("pipework pid {} was killed while writing it", t.pid),
            ),
            Err(e) => out.stuck("temp-file", &name, "host", &e),
        }
    }
    inventory::warn_ignored(&ignored);
    Ok(Report {
        collected: out.items,
        stuck: out.stuck,
    })
}

/// In the host namespace: host ends under temporary names whose pipework
/// died (deleting one deletes its veth pair), and devices whose phys
/// attach or detach was cut short (restored from their own record).
/// (Point-to-point ends on the host are the `link` gc hook's.)
async fn host_leftovers(host: &Net, scan: &inventory::Scan, out: &mut Out) {
    for l in &scan.links {
        let Some(pid) = temp_owner(&l.name).filter(|p| !inventory::alive(*p)) else {
            continue;
        };
        let it = item(
            "link",
            &l.name,
            "host",
            "removed",
            format!("unfinished: pipework pid {pid} died before naming it"),
        );
        let r = async {
            if !inventory::unchanged(host, l).await? {
                return Ok(false);
            }
            if !out.dry_run {
                host.delete_link(l).await?;
            }
            Ok(true)
        }
        .await;
        out.settle(it, r);
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
        let it = item(
            "phys",
            &f.link.name,
            "host",
            "restored",
            format!(
                "pipework pid {pid} died while moving it; MTU, MAC, alias and addresses put back"
            ),
        );
        let r = async {
            if !inventory::unchanged(host, &f.link).await? {
                return Ok(false);
            }
            if !out.dry_run {
                phys::restore_on_host(host, &f.link, &orig).await?;
            }
            Ok(true)
        }
        .await;
        out.settle(it, r);
    }
}

/// Physical devices the kernel gave back when their guest's namespace died
/// (it returns a real NIC to the host under its guest-side name, and
/// destroys virtual ones). Their record was sealed for the dead namespace:
/// in the host namespace, where no guest can write, it still verifies with
/// that identity, and it says how to put the NIC back. Returns their names.
///
/// A `--direct-phys` attach seals the NIC's record for its guest while the
/// NIC is still on the host, and that guest may be newer than gc's scan:
/// before acting, the builder must be dead, the namespace gone in a fresh
/// look, and the link as the scan saw it.
async fn returned_nics(
    host: &Net,
    scan: &inventory::Scan,
    live: &HashSet<u64>,
    out: &mut Out,
) -> Vec<String> {
    use crate::record::{Ident, Record, Seen};
    let mut names = Vec::new();
    let mut now_live: Option<(HashSet<u64>, Vec<inventory::Unscanned>)> = None;
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
        if rec.p.is_some_and(inventory::alive) {
            continue;
        }
        let (now, unopened) = now_live.get_or_insert_with(|| {
            let (nss, failed) = inventory::namespaces_checked();
            (nss.into_iter().map(|n| n.ino).collect(), failed)
        });
        if now.contains(&ns) {
            continue;
        }
        // Its namespace may be one we could not open: leave the NIC be.
        if let Some(e) = inventory::incomplete_error(unopened) {
            out.stuck("phys", &l.name, "host", &Error::other(format!("kept: {e}")));
            continue;
        }
        names.push(l.name.clone());
        let it = item(
            "phys",
            &l.name,
            "host",
            "restored",
            format!(
                "its guest's namespace is gone; returned as {} with its MTU, MAC and addresses",
                orig.n
            ),
        );
        let r = async {
            if !inventory::unchanged(host, l).await? {
                return Ok(false);
            }
            if out.dry_run {
                return Ok(true);
            }
            let mut back = l.clone();
            if l.name != orig.n {
                host.rename(l, &orig.n).await?;
                back.name = orig.n.clone();
            }
            phys::restore_on_host(host, &back, &orig).await?;
            Ok(true)
        }
        .await;
        out.settle(it, r);
    }
    names
}

/// VLAN sub-interfaces we created that no attachment uses any more.
/// (`release_if_unused` asks again under the VLAN's lock before deleting.)
/// None while a namespace could not be scanned: a child of the VLAN there
/// would die with it.
async fn vlans(
    host: &Net,
    all: &[(inventory::Namespace, Net, inventory::Scan)],
    unscanned: &[inventory::Unscanned],
    out: &mut Out,
) {
    // The host's links and every attachment come from the scan gc already
    // made; no second pass over the namespaces.
    let ours: Vec<String> = all
        .iter()
        .filter(|(ns, _, _)| ns.ino == host_ns())
        .flat_map(|(_, _, s)| s.links.iter())
        .filter(|l| vlan::created_by_us(l))
        .map(|l| l.name.clone())
        .collect();
    let users: Vec<&inventory::Found> = all.iter().flat_map(|(_, _, s)| s.attachments()).collect();
    for name in ours {
        if users.iter().any(|f| f.rec.hi.as_deref() == Some(&name)) {
            continue;
        }
        if let Some(e) = inventory::incomplete_error(unscanned) {
            out.stuck("vlan", &name, "host", &Error::other(format!("kept: {e}")));
            continue;
        }
        let it = item(
            "vlan",
            &name,
            "host",
            "removed",
            "created by pipework and no guest uses it".into(),
        );
        let r = async {
            if !out.dry_run {
                vlan::release_if_unused(host, &name).await?;
                if host.link_by_name(&name).await?.is_some() {
                    return Ok(false);
                }
            }
            Ok(true)
        }
        .await;
        out.settle(it, r);
    }
}
