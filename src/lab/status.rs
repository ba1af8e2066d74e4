//! `lab status`: every node and link of the file, and whether the kernel
//! still matches it (records present in each node's current namespace,
//! links up, addresses in place), plus records of the lab the file no
//! longer names.
use super::model::{Lab, NodeKind};
use super::plan::{self, Current, Held};
use crate::guest;
use crate::inventory::host_ns;
use serde::Serialize;
use std::collections::BTreeMap;

#[derive(Debug, Serialize)]
pub struct NodeStatus {
    pub name: String,
    pub kind: &'static str,
    pub guest: String,
    pub running: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
    /// How its `exec` lines went (`4/4 ok`), for nodes that have some.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exec: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct LinkStatus {
    pub id: String,
    pub link: String,
    pub kind: &'static str,
    /// ok, missing, partial, or drifted (down, or an address gone).
    pub state: &'static str,
}

#[derive(Debug, Serialize)]
pub struct Status {
    pub lab: String,
    pub matches: bool,
    pub nodes: Vec<NodeStatus>,
    pub links: Vec<LinkStatus>,
    /// Records of this lab that the file does not name.
    pub stale: Vec<String>,
}

pub async fn run(lab: &Lab) -> Status {
    let mut inos: BTreeMap<String, u64> = BTreeMap::new();
    inos.insert("host".into(), host_ns());
    let st = super::state::load(&lab.name).unwrap_or_default();
    let mut nodes = Vec::new();
    for n in lab.nodes.values() {
        let exec = match &n.kind {
            NodeKind::Image(i) if !i.exec.is_empty() => Some(match st.exec.get(&n.name) {
                Some(r) if !r.begun => {
                    format!("0/{} not run yet (the next up runs them)", r.of)
                }
                Some(r) if r.ok < r.of => format!("{}/{} (interrupted)", r.ok, r.of),
                Some(r) if r.of == i.exec.len() => format!("{}/{} ok", r.ok, r.of),
                Some(r) => format!("{}/{} ok (the file now has {})", r.ok, r.of, i.exec.len()),
                None => format!("0/{} run (exec runs when up starts the node)", i.exec.len()),
            }),
            _ => None,
        };
        let spec = n.guest_spec(&lab.name);
        let (running, problem) = match guest::resolve(&spec) {
            Ok(g) => {
                if let Ok(i) = g.netns.inode() {
                    inos.insert(n.name.clone(), i);
                }
                (true, None)
            }
            Err(e) => (false, Some(e.to_string())),
        };
        nodes.push(NodeStatus {
            name: n.name.clone(),
            kind: match n.kind {
                NodeKind::Container(_) => "container",
                NodeKind::Image(_) => "image",
                NodeKind::Netns(_) => "netns",
            },
            guest: spec,
            running,
            problem,
            exec,
        });
    }
    let cur = Current::read().await;
    let held: Vec<Held> = cur.held(&lab.name).collect();
    let mut links = Vec::new();
    let mut known = lab.elsewhere.clone();
    for u in &lab.units {
        known.insert(u.id());
        let mut present = 0;
        let mut drifted = false;
        for (k, e) in u.ends.iter().enumerate() {
            let Some(h) = plan::end_held(&held, u, k, &inos) else {
                continue;
            };
            present += 1;
            drifted |= plan::drifted(h, e).await;
        }
        let state = match (present, drifted) {
            (0, _) => "missing",
            (p, _) if p < u.ends.len() => "partial",
            (_, true) => "drifted",
            _ => "ok",
        };
        links.push(LinkStatus {
            id: u.id(),
            link: u.describe(),
            kind: u.kind.name(),
            state,
        });
    }
    let stale: Vec<String> = held
        .iter()
        .filter(|h| !plan::unit_of(&h.found.rec).is_some_and(|id| known.contains(id)))
        .map(|h| {
            format!(
                "{}:{} ({})",
                h.found.rec.g, h.found.rec.ifname, h.found.rec.k
            )
        })
        .collect();
    let matches = nodes.iter().all(|n| n.running)
        && links.iter().all(|l| l.state == "ok")
        && stale.is_empty();
    Status {
        lab: lab.name.clone(),
        matches,
        nodes,
        links,
        stale,
    }
}
