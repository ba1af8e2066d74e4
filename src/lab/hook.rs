//! What a watcher (`pipework watch`) needs to re-plumb a lab node that
//! restarted: its interfaces died with its old namespace, and so did the
//! records on them, so the lab is found from the state of the labs that
//! are up (their file, remembered by `up`), and converged again, which
//! adds back exactly the missing units and clears the dead halves.
use super::apply::{self, UpReport};
use super::model::{Lab, NodeKind, Unit, container_name};
use super::{load, state};
use crate::error::Result;
use std::path::PathBuf;

/// Whether lab node `node` is the container with this name or id.
fn is_node(lab: &Lab, node: &str, name: &str, id: &str) -> bool {
    let Some(n) = lab.nodes.get(node) else {
        return false;
    };
    match &n.kind {
        NodeKind::Container(c) => {
            c == name || (!id.is_empty() && c.len() >= 12 && id.starts_with(c.as_str()))
        }
        NodeKind::Image(_) => container_name(&lab.name, node) == name,
        NodeKind::Netns(_) => false,
    }
}

/// The labs that are up (have state and a file) with this container as a
/// node: (lab name, file, node name). `name` without Docker's leading '/'.
pub fn labs_of(name: &str, id: &str) -> Vec<(String, PathBuf, String)> {
    let mut out = Vec::new();
    for l in state::list() {
        let Ok(st) = state::load(&l) else { continue };
        let Some(file) = st.file else { continue };
        let Ok(lab) = load(&file.display().to_string()) else {
            continue;
        };
        let lab = lab.for_host(st.host.as_deref());
        for node in lab.nodes.keys() {
            if is_node(&lab, node, name, id) {
                out.push((l.clone(), file.clone(), node.clone()));
            }
        }
    }
    out
}

/// The lab links with an end on `node`.
pub fn links_of<'a>(lab: &'a Lab, node: &str) -> Vec<&'a Unit> {
    lab.units
        .iter()
        .filter(|u| u.ends.iter().any(|e| e.node == node))
        .collect()
}

/// Re-plumb a container that (re)started: converge every lab that has it
/// as a node. Only the missing units are built.
pub async fn replumb(name: &str, id: &str) -> Result<Vec<UpReport>> {
    let mut out = Vec::new();
    let mut done = std::collections::HashSet::new();
    for (l, file, _) in labs_of(name, id) {
        if !done.insert(l.clone()) {
            continue;
        }
        let host = state::load(&l).ok().and_then(|s| s.host);
        let lab = load(&file.display().to_string())?.for_host(host.as_deref());
        out.push(apply::up(&lab, Some(&file)).await?);
    }
    Ok(out)
}
