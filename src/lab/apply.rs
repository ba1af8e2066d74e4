//! `lab up` (converge) and `lab down` (remove what the records say the
//! lab built). `up` runs under one undo journal: a failure anywhere puts
//! the host back as it was before this `up`, including containers it
//! started and bridges it created; removals come last, once every
//! addition has succeeded.
use super::model::{Lab, LinkKind, NodeKind, Unit, container_name};
use super::plan::{self, Current, Held};
use super::{engine, netem, state};
use crate::driver::AnyDriver;
use crate::error::{Error, Result};
use crate::guest::{self, Guest};
use crate::inventory::{self, host_ns};
use crate::link::{self, EndSpec, LinkRequest};
use crate::netlink::{Journal, Net};
use crate::netns::NetNs;
use crate::request::{Addressing, AttachRequest, HostMode};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::Path;

#[derive(Debug, Serialize, Default)]
pub struct UpReport {
    pub lab: String,
    pub started: Vec<String>,
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub unchanged: usize,
}

#[derive(Debug, Serialize, Default)]
pub struct DownReport {
    pub lab: String,
    pub removed: Vec<String>,
    pub containers: Vec<String>,
    pub bridges: Vec<String>,
}

/// A second handle on a namespace already pinned (undo steps outlive the
/// borrow of the node that pinned it).
pub fn dup(ns: &NetNs) -> Result<NetNs> {
    use std::os::fd::AsRawFd;
    let mut d = NetNs::open(Path::new(&format!("/proc/self/fd/{}", ns.fd().as_raw_fd())))?;
    d.path = ns.path.clone();
    Ok(d)
}

/// Resolve every node, starting image nodes that do not run yet (each
/// start journaled and remembered in the state file at once).
fn nodes(
    lab: &Lab,
    st: &mut state::State,
    j: &mut Journal,
    rep: &mut UpReport,
) -> Result<BTreeMap<String, Guest>> {
    let mut out = BTreeMap::new();
    for n in lab.nodes.values() {
        if let NodeKind::Image { image, cmd } = &n.kind {
            let cname = container_name(&lab.name, &n.name);
            match engine::inspect(&cname)? {
                Some((_, true)) => {}
                Some((id, false)) => engine::start(&id)?,
                None => {
                    let id = engine::run(&cname, image, cmd, &lab.name)?;
                    st.containers.insert(n.name.clone(), id.clone());
                    state::save(&lab.name, st)?;
                    rep.started.push(n.name.clone());
                    let (labn, node) = (lab.name.clone(), n.name.clone());
                    j.record(format!("container {cname}"), async move {
                        engine::remove(&id)?;
                        let mut s = state::load(&labn)?;
                        s.containers.remove(&node);
                        state::save(&labn, &s)
                    });
                }
            }
        }
        let g = guest::resolve(&n.guest_spec(&lab.name))
            .map_err(|e| Error::bad(format!("nodes.{}", n.name), e))?;
        out.insert(n.name.clone(), g);
    }
    Ok(out)
}

/// Converge `lab`; `source` is the file it came from (remembered for
/// `watch`).
pub async fn up(lab: &Lab, source: Option<&Path>) -> Result<UpReport> {
    if let Some(u) = lab.units.iter().find(|u| !u.impair.is_none())
        && !netem::available()
    {
        return Err(netem::unavailable(&format!("links[{}]", u.index + 1)));
    }
    let _lock = crate::lock::Lock::take(&format!("lab-{}", lab.name))?;
    let mut st = state::load(&lab.name)?;
    let source = source
        .map(|p| std::path::absolute(p).map_err(|e| Error::io(p.display(), e)))
        .transpose()?;
    let mut rep = UpReport {
        lab: lab.name.clone(),
        ..Default::default()
    };
    let mut j = Journal::new();
    match converge(lab, &mut st, &mut j, &mut rep).await {
        Ok(()) => {
            j.commit();
            if source.is_some() && st.file != source {
                st.file = source;
                state::save(&lab.name, &st)?;
            }
            Ok(rep)
        }
        Err(e) => {
            j.rollback().await;
            Err(e)
        }
    }
}

async fn converge(
    lab: &Lab,
    st: &mut state::State,
    j: &mut Journal,
    rep: &mut UpReport,
) -> Result<()> {
    let guests = nodes(lab, st, j, rep)?;
    let mut inos: BTreeMap<String, u64> = BTreeMap::new();
    for (n, g) in &guests {
        inos.insert(n.clone(), g.netns.inode()?);
    }
    inos.insert("host".into(), host_ns());
    let host = Net::new(None, false)?;

    // Bridges this run will create: remembered, and deleted on rollback.
    for h in lab.units.iter().filter_map(|u| match &u.kind {
        LinkKind::Bridge(b) => Some(b.as_str()),
        _ => None,
    }) {
        if st.bridges.iter().any(|b| b == h) || host.link_by_name(h).await?.is_some() {
            continue;
        }
        st.bridges.push(h.to_string());
        state::save(&lab.name, st)?;
        let (h2, labn, net) = (h.to_string(), lab.name.clone(), host.clone());
        j.record(format!("bridge {h}"), async move {
            delete_bridge_if_empty(&net, &h2).await?;
            let mut s = state::load(&labn)?;
            s.bridges.retain(|b| *b != h2);
            state::save(&labn, &s)
        });
    }

    let cur = Current::read().await;
    let held: Vec<Held> = cur.held(&lab.name).collect();
    let p = plan::diff(lab, &held, &inos).await;
    rep.unchanged = p.unchanged;

    // An edited unit keeps its interface names: its old links are in the
    // way of the new ones. Move them aside (down, temporary name; renamed
    // back on rollback) and remove them with the other removals.
    let mut aside: BTreeMap<usize, String> = BTreeMap::new();
    for &i in &p.remove {
        let h = &held[i];
        let (n, ifname) = (h.found.rec.n, &h.found.rec.ifname);
        let in_the_way = p.add.iter().any(|&k| {
            lab.units[k]
                .ends
                .iter()
                .any(|e| inos.get(&e.node) == Some(&n) && e.ifname == *ifname)
        });
        if !in_the_way || h.found.link.name != *ifname {
            continue;
        }
        let tmp = inventory::temp_name();
        h.net.rename(&h.found.link, &tmp).await?;
        let (net, mut l, orig) = (h.net.clone(), h.found.link.clone(), ifname.clone());
        l.name = tmp.clone();
        j.record(format!("{orig} renamed aside"), async move {
            net.rename(&l, &orig).await?;
            l.name = orig;
            net.set_up(&l).await
        });
        aside.insert(i, tmp);
    }
    for &i in &p.add {
        let u = &lab.units[i];
        add(lab, u, &guests, &host, j)
            .await
            .map_err(|e| Error::other(format!("links[{}] {}: {e}", u.index + 1, u.describe())))?;
        rep.added.push(u.describe());
    }
    // Every addition stands: now the removals.
    let mut seen = std::collections::HashSet::new();
    for &i in &p.remove {
        let h = &held[i];
        remove(&host, h, aside.get(&i).map(String::as_str)).await?;
        if seen.insert(plan::unit_of(&h.found.rec).map(String::from)) {
            rep.removed.push(describe_held(h));
        }
    }
    // Image nodes gone from the file: their containers go too.
    let gone: Vec<String> = st
        .containers
        .keys()
        .filter(|n| {
            !lab.nodes
                .get(*n)
                .is_some_and(|x| matches!(x.kind, NodeKind::Image { .. }))
        })
        .cloned()
        .collect();
    for n in gone {
        if let Some(id) = st.containers.remove(&n) {
            engine::remove(&id)?;
            rep.removed
                .push(format!("container {}", container_name(&lab.name, &n)));
        }
    }
    // Bridges the lab made that no unit uses any more.
    let used: Vec<&str> = lab.units.iter().filter_map(|u| u.kind.host()).collect();
    let mut keep = Vec::new();
    for b in std::mem::take(&mut st.bridges) {
        if used.contains(&b.as_str()) || !delete_bridge_if_empty(&host, &b).await? {
            keep.push(b);
        } else {
            rep.removed.push(format!("bridge {b}"));
        }
    }
    st.bridges = keep;
    state::save(&lab.name, st)
}

/// Build one unit, journaling how to take it away again.
async fn add(
    lab: &Lab,
    u: &Unit,
    guests: &BTreeMap<String, Guest>,
    host: &Net,
    j: &mut Journal,
) -> Result<()> {
    let extras = plan::extras(&lab.name, u);
    let end_ns = |node: &str| -> Result<NetNs> {
        match guests.get(node) {
            Some(g) => dup(&g.netns),
            None => NetNs::current(),
        }
    };
    match &u.kind {
        LinkKind::P2p => {
            let (ea, eb) = (&u.ends[0], &u.ends[1]);
            let spec = |e: &super::model::End| EndSpec {
                guest: e.node.clone(),
                ifname: e.ifname.clone(),
                addrs: e.addrs.clone(),
                mac: e.mac,
            };
            let req = LinkRequest {
                a: spec(ea),
                b: spec(eb),
                mtu: u.mtu,
                extras,
            };
            let a = end_of(guests, &ea.node)?;
            let b = end_of(guests, &eb.node)?;
            link::build(&req, &a, &b, j).await?;
        }
        kind => {
            let e = &u.ends[0];
            let g = guests
                .get(&e.node)
                .ok_or_else(|| Error::bad(&e.node, "not a node"))?;
            let mut req = AttachRequest {
                host: kind.host().unwrap_or_default().to_string(),
                guest: g.name.clone(),
                ifname: e.ifname.clone(),
                addressing: if e.addrs.is_empty() {
                    Addressing::None
                } else {
                    Addressing::Static {
                        addrs: e.addrs.clone(),
                        gateways: vec![],
                    }
                },
                mac: e.mac,
                vlan: u.vlan,
                mtu: u.mtu,
                create: matches!(kind, LinkKind::Bridge(_)),
                host_ifname: (!matches!(kind, LinkKind::Macvlan { .. }))
                    .then(|| plan::host_ifname(&lab.name, u)),
                record_extras: extras,
                ..Default::default()
            };
            if let LinkKind::Macvlan { mode, .. } = kind {
                req.mode = HostMode::Macvlan(mode.clone());
            }
            fits(&req, g, kind)?;
            crate::attach::attach_to(&req, g).await?;
            let ns = dup(&g.netns)?;
            let (labn, id) = (lab.name.clone(), u.id());
            j.record(format!("{} {}", e.node, e.ifname), async move {
                remove_unit_in(&ns, &labn, &id).await
            });
        }
    }
    if !u.impair.is_none() {
        for e in &u.ends {
            let ns = end_ns(&e.node)?;
            let net = if guests.contains_key(&e.node) {
                Net::new(Some(&ns), false)?
            } else {
                host.clone()
            };
            let l = net
                .link_by_name(&e.ifname)
                .await?
                .ok_or_else(|| Error::other(format!("{} vanished", e.ifname)))?;
            netem::apply(&net, &l, &u.impair).await?;
        }
    }
    Ok(())
}

/// Refuse, before building, a record that would not fit in the link's
/// alias (255 bytes): long container, lab or interface names add up.
fn fits(req: &AttachRequest, g: &Guest, kind: &LinkKind) -> Result<()> {
    let mut x = req.record_extras.clone();
    match kind {
        LinkKind::Ovs(_) => {
            x.insert(
                "port".into(),
                req.host_ifname.clone().unwrap_or_default().into(),
            );
        }
        LinkKind::Macvlan { mode, .. } => {
            x.insert("mode".into(), mode.clone().into());
        }
        _ => {}
    }
    use crate::record::Kind;
    let r = crate::record::Record {
        k: match kind {
            LinkKind::Macvlan { .. } => Kind::Macvlan,
            LinkKind::Ovs(_) => Kind::Ovs,
            _ => Kind::Bridge,
        },
        h: req.host.clone(),
        hi: req.host_ifname.clone(),
        g: g.name.clone(),
        id: g.id.as_ref().map(|_| g.short_id()),
        ifname: req.ifname.clone(),
        n: u64::MAX,
        x,
        ..Default::default()
    };
    if r.sealed_len() > 255 {
        return Err(Error::bad(
            &g.name,
            "names too long for the link's record (255 bytes): use a shorter container, lab or interface name",
        ));
    }
    Ok(())
}

fn end_of(guests: &BTreeMap<String, Guest>, node: &str) -> Result<link::End> {
    if node == "host" {
        return link::resolve("host");
    }
    let g = guests
        .get(node)
        .ok_or_else(|| Error::bad(node, "not a node"))?;
    Ok(link::End {
        netns: dup(&g.netns)?,
        ino: g.netns.inode()?,
        label: g.name.clone(),
        id: g.id.as_ref().map(|_| g.short_id()),
        host: false,
    })
}

/// Undo of an attach unit: detach whatever records of it `ns` holds.
async fn remove_unit_in(ns: &NetNs, lab: &str, id: &str) -> Result<()> {
    let host = Net::new(None, false)?;
    let net = Net::new(Some(ns), false)?;
    let scan = inventory::scan(&net, ns.inode()?, "").await?;
    for f in scan.attachments() {
        if plan::lab_of(&f.rec) == Some(lab) && plan::unit_of(&f.rec) == Some(id) {
            AnyDriver::for_record(&f.rec)
                .detach(&host, &net, &f.rec)
                .await?;
        }
    }
    Ok(())
}

/// Detach one held record. The driver finds the link by the record's
/// name; a link renamed aside (or left so by a killed `up`) is found by
/// the name it has now: the record was verified on that very link.
async fn remove(host: &Net, h: &Held<'_>, renamed: Option<&str>) -> Result<()> {
    let mut rec = h.found.rec.clone();
    rec.ifname = renamed.unwrap_or(&h.found.link.name).to_string();
    if h.ns.ino != host_ns() {
        let _ = crate::dhcp::keeper::release(&h.ns.ns, &rec.ifname).await;
    }
    AnyDriver::for_record(&rec).detach(host, h.net, &rec).await
}

fn describe_held(h: &Held<'_>) -> String {
    let r = &h.found.rec;
    match r.k {
        crate::record::Kind::P2p => format!("{}:{} -- {}", r.g, r.ifname, r.h),
        k => format!("{}:{} -> {k} {}", r.g, r.ifname, r.h),
    }
}

/// Delete a bridge we created once no port is left on it. Returns whether
/// it is gone.
async fn delete_bridge_if_empty(host: &Net, name: &str) -> Result<bool> {
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
    let _lock = crate::lock::Lock::take(&format!("lab-{name}"))?;
    let host = Net::new(None, false)?;
    let mut rep = DownReport {
        lab: name.to_string(),
        ..Default::default()
    };
    let cur = Current::read().await;
    let held: Vec<Held> = cur.held(name).collect();
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
        engine::remove(&id)?;
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
    state::save(name, &st)?;
    Ok(rep)
}
