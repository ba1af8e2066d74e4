//! `lab up`: converge the host to the file. It runs under one undo
//! journal: a failure anywhere puts the host back as it was before this
//! `up`, including containers it started and bridges it created; removals
//! come last, once every addition has succeeded.
use super::build::add;
use super::container::{LAB_LABEL, SPEC_LABEL, exec, run, spec_hash};
use super::down::{delete_bridge_if_empty, describe_held, remove};
use super::model::{Lab, LinkKind, NodeKind, container_name};
use super::plan::{self, Current, Held};
use super::{netem, state};
use crate::error::{Error, Result};
use crate::guest::{self, Guest};
use crate::inventory::{self, host_ns};
use crate::netlink::{Journal, Net};
use crate::netns::NetNs;
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
    /// Nodes whose `exec` lines ran, and how many.
    pub exec: Vec<(String, usize)>,
    /// What the user should know (a node running an older definition).
    pub notes: Vec<String>,
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
/// start journaled and remembered in the state file at once). Also the
/// nodes whose `exec` lines must run although this `up` did not start
/// them: never begun (an `up` killed before the first line), or begun in
/// a namespace the container no longer has (it restarted).
fn nodes(
    lab: &Lab,
    st: &mut state::State,
    j: &mut Journal,
    rep: &mut UpReport,
) -> Result<(BTreeMap<String, Guest>, Vec<String>)> {
    let mut out = BTreeMap::new();
    let mut rerun = Vec::new();
    for n in lab.nodes.values() {
        if let NodeKind::Image(i) = &n.kind {
            let cname = container_name(&lab.name, &n.name);
            let engine = super::engine()?;
            let found = engine.inspect(&cname)?;
            // Ours but not in the state: a `up` killed between starting it
            // and saving the state. Adopt it, so `down` removes it.
            if let Some(c) = &found
                && c.label(LAB_LABEL) == Some(lab.name.as_str())
                && !st.containers.contains_key(&n.name)
            {
                st.containers.insert(n.name.clone(), c.id.clone());
                // Its exec lines run only after this save: none began.
                if !i.exec.is_empty() {
                    st.exec
                        .insert(n.name.clone(), state::ExecRun::pending(i.exec.len()));
                }
                state::save(&lab.name, st)?;
            }
            if let Some(c) = &found
                && st.containers.contains_key(&n.name)
            {
                if c.label(SPEC_LABEL) != Some(spec_hash(i).as_str()) {
                    rep.notes.push(format!(
                        "nodes.{}: its container runs an older definition of the node (image, cmd, binds, env, exec…); lab down then up applies the new one",
                        n.name
                    ));
                }
                if let Some(r) = st.exec.get(&n.name)
                    && r.begun
                    && r.ok < r.of
                {
                    rep.notes.push(format!(
                        "nodes.{}: only {} of its {} exec lines ran (an up was interrupted); lab down then up runs them again",
                        n.name, r.ok, r.of
                    ));
                }
            }
            match found {
                Some(c) if c.state.running => {}
                Some(c) => engine.start(&c.id)?,
                None => {
                    let id = run(&engine, &cname, i, &lab.name)?;
                    st.containers.insert(n.name.clone(), id.clone());
                    // In the same save as the id: a kill before the first
                    // exec line leaves "not begun", which the next `up`
                    // finishes.
                    if !i.exec.is_empty() {
                        st.exec
                            .insert(n.name.clone(), state::ExecRun::pending(i.exec.len()));
                    }
                    state::save(&lab.name, st)?;
                    rep.started.push(n.name.clone());
                    let (labn, node) = (lab.name.clone(), n.name.clone());
                    j.record(format!("container {cname}"), async move {
                        engine.remove(&id)?;
                        let mut s = state::load(&labn)?;
                        s.containers.remove(&node);
                        s.exec.remove(&node);
                        state::save(&labn, &s)
                    });
                }
            }
        }
        let g = guest::resolve(&n.guest_spec(&lab.name))
            .map_err(|e| Error::bad(format!("nodes.{}", n.name), e))?;
        if let NodeKind::Image(i) = &n.kind
            && !i.exec.is_empty()
            && !rep.started.contains(&n.name)
            && st.containers.contains_key(&n.name)
        {
            let now = super::engine()?
                .inspect(&container_name(&lab.name, &n.name))?
                .map(|c| c.state.started_at)
                .unwrap_or_default();
            match st.exec.get(&n.name) {
                None => {
                    rep.notes.push(format!(
                        "nodes.{}: no record of its exec lines (an up was interrupted before them): running them now",
                        n.name
                    ));
                    rerun.push(n.name.clone());
                }
                Some(r) if !r.begun => rerun.push(n.name.clone()),
                Some(r) if r.ok == r.of && !r.started.is_empty() && r.started != now => {
                    rep.notes.push(format!(
                        "nodes.{}: its container restarted (a new network namespace): its exec lines run again",
                        n.name
                    ));
                    rerun.push(n.name.clone());
                }
                Some(_) => {}
            }
        }
        out.insert(n.name.clone(), g);
    }
    Ok((out, rerun))
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
            if source.is_some() && (st.file != source || st.host != lab.host) {
                st.file = source;
                st.host = lab.host.clone();
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
    let (guests, rerun) = nodes(lab, st, j, rep)?;
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
    // Links are up: the `exec` lines of the nodes this run started, in
    // order. A failing line fails the `up`, and the journal takes back
    // everything it made (the node's container included).
    for n in rep.started.iter().chain(&rerun) {
        if let Some(NodeKind::Image(i)) = lab.nodes.get(n).map(|x| &x.kind)
            && !i.exec.is_empty()
        {
            exec(lab, n, i, st)?;
            rep.exec.push((n.clone(), i.exec.len()));
        }
    }
    // Every addition stands: keep it whatever happens next. A removal that
    // fails now must not roll the additions back (their predecessors may
    // already be gone, leaving neither); it is reported, and the next `up`
    // finishes it, since what it left carries the lab's records.
    std::mem::replace(j, Journal::new()).commit();
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
                .is_some_and(|x| matches!(x.kind, NodeKind::Image(_)))
        })
        .cloned()
        .collect();
    for n in gone {
        st.exec.remove(&n);
        if let Some(id) = st.containers.remove(&n) {
            super::engine()?.remove(&id)?;
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
