//! The common subset of a containerlab topology file, so a containerlab
//! user can bring theirs: `name`, `topology.nodes` of kind `linux` with
//! `image` and `cmd` (also from `topology.defaults` / `topology.kinds.linux`),
//! and `topology.links` with `endpoints: ["a:eth1", "b:eth1"]`.
//! Everything else containerlab knows (management network, binds, exec…)
//! is left to containerlab; keys we do not read are ignored.
use super::file::{Cmd, LinkToml, NodeToml, build};
use super::model::Lab;
use crate::error::{Error, Result};
use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Deserialize)]
struct File {
    name: String,
    topology: Topology,
}

#[derive(Deserialize)]
struct Topology {
    #[serde(default)]
    defaults: ClabNode,
    #[serde(default)]
    kinds: BTreeMap<String, ClabNode>,
    #[serde(default)]
    nodes: BTreeMap<String, ClabNode>,
    #[serde(default)]
    links: Vec<ClabLink>,
}

#[derive(Deserialize, Default, Clone)]
struct ClabNode {
    kind: Option<String>,
    image: Option<String>,
    cmd: Option<String>,
}

#[derive(Deserialize)]
struct ClabLink {
    endpoints: Vec<String>,
}

pub fn parse_yaml(text: &str) -> Result<Lab> {
    let f: File = serde_norway::from_str(text).map_err(|e| {
        Error::bad(
            "containerlab file",
            format!(
                "not the supported subset (name, topology.nodes, topology.links): {}",
                e.to_string().lines().next().unwrap_or_default()
            ),
        )
    })?;
    let t = f.topology;
    let linux = t.kinds.get("linux").cloned().unwrap_or_default();
    let mut nodes = BTreeMap::new();
    for (name, n) in t.nodes {
        let kind = n
            .kind
            .clone()
            .or(t.defaults.kind.clone())
            .unwrap_or_else(|| "linux".into());
        if kind != "linux" {
            return Err(Error::bad(
                format!("{name}: kind {kind}"),
                "only kind linux nodes are supported (other kinds need containerlab itself)",
            ));
        }
        let image = n
            .image
            .or(linux.image.clone())
            .or(t.defaults.image.clone())
            .ok_or_else(|| Error::bad(&name, "a linux node needs an image"))?;
        let cmd = n.cmd.or(linux.cmd.clone()).or(t.defaults.cmd.clone());
        nodes.insert(
            name,
            NodeToml {
                image: Some(image),
                cmd: cmd.map(Cmd::Line),
                ..Default::default()
            },
        );
    }
    let links = t
        .links
        .into_iter()
        .map(|l| LinkToml {
            endpoints: l.endpoints,
            ..Default::default()
        })
        .collect();
    build(f.name, nodes, links)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_common_subset_reads() {
        let lab = parse_yaml(
            r#"
name: c1
topology:
  kinds:
    linux:
      image: bb:latest
  nodes:
    r1:
      kind: linux
      cmd: /bin/sleep 3600
      mgmt-ipv4: 172.20.20.2
    r2:
      image: other:1
  links:
    - endpoints: ["r1:eth1", "r2:eth1"]
"#,
        )
        .expect("parses");
        assert_eq!(lab.nodes.len(), 2);
        assert_eq!(lab.units.len(), 1);
        match &lab.nodes["r1"].kind {
            super::super::model::NodeKind::Image { image, cmd } => {
                assert_eq!(image, "bb:latest");
                assert_eq!(cmd, &["/bin/sleep", "3600"]);
            }
            k => panic!("{k:?}"),
        }
        let e = parse_yaml(
            "name: c\ntopology:\n  nodes:\n    s:\n      kind: nokia_srlinux\n      image: x\n",
        )
        .expect_err("srl");
        assert!(e.to_string().contains("nokia_srlinux"), "{e}");
    }
}
