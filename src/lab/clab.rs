//! A containerlab topology file, as containerlab users write Linux labs:
//! `name`, `topology.nodes` of kind `linux`, settings from
//! `topology.defaults`, `topology.kinds.linux` and `topology.groups` (a
//! node's own value wins over its group's, then its kind's, then the
//! defaults'; lists such as `binds` and `exec` add up in that order, maps
//! such as `env` merge), and `topology.links` with
//! `endpoints: ["a:eth1", "b:eth1"]`. Nodes of kind `bridge` and
//! `ovs-bridge` are host bridges: a link to one makes the other end a
//! member of that bridge (a bridge link).
//!
//! Nothing is dropped silently: every key pipework does not act on is
//! collected with its dotted path (`Lab::ignored`), for `up` to name on
//! stderr, or refuse under `--strict` before the host is touched.
//!
//! Unlike containerlab, nodes are not started privileged unless the file
//! says `privileged: true`: they get NET_ADMIN and NET_RAW (enough for
//! `exec` lines such as `ip addr add`), and `up` says so.
use super::file::{Cmd, LinkToml, NodeToml, build};
use super::model::Lab;
use crate::error::{Error, Result};
use serde_norway::{Mapping, Value};
use std::collections::BTreeMap;
use std::path::Path;

/// The keys of one node definition (node, group, kind or defaults) that
/// pipework reads, already checked for type.
#[derive(Default, Clone)]
struct Def {
    kind: Option<String>,
    group: Option<String>,
    image: Option<String>,
    cmd: Option<String>,
    entrypoint: Option<String>,
    user: Option<String>,
    network_mode: Option<String>,
    privileged: Option<bool>,
    binds: Vec<String>,
    exec: Vec<String>,
    cap_add: Vec<String>,
    env: BTreeMap<String, String>,
    labels: BTreeMap<String, String>,
}

fn bad_yaml(e: impl std::fmt::Display) -> Error {
    Error::bad(
        "containerlab file",
        format!(
            "not YAML pipework can read: {}",
            e.to_string().lines().next().unwrap_or_default()
        ),
    )
}

fn key_str(k: &Value) -> String {
    match k {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        _ => "?".into(),
    }
}

/// A scalar as text (YAML lets `env: {N: 1}` be a number).
fn scalar(v: &Value, at: &str) -> Result<String> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        _ => Err(Error::bad(at, "expected a single value")),
    }
}

fn list(v: &Value, at: &str) -> Result<Vec<String>> {
    match v {
        Value::Sequence(s) => s.iter().map(|x| scalar(x, at)).collect(),
        Value::Null => Ok(vec![]),
        _ => Err(Error::bad(at, "expected a list")),
    }
}

fn map(v: &Value, at: &str) -> Result<BTreeMap<String, String>> {
    match v {
        Value::Mapping(m) => m
            .iter()
            .map(|(k, x)| Ok((key_str(k), scalar(x, &format!("{at}.{}", key_str(k)))?)))
            .collect(),
        Value::Null => Ok(BTreeMap::new()),
        _ => Err(Error::bad(at, "expected a map")),
    }
}

fn mapping<'a>(v: &'a Value, at: &str) -> Result<Option<&'a Mapping>> {
    match v {
        Value::Mapping(m) => Ok(Some(m)),
        Value::Null => Ok(None),
        _ => Err(Error::bad(at, "expected a map")),
    }
}

/// Read one definition at `at`, noting the keys it does not act on.
fn def(v: &Value, at: &str, ignored: &mut Vec<String>) -> Result<Def> {
    let mut d = Def::default();
    let Some(m) = mapping(v, at)? else {
        return Ok(d);
    };
    for (k, x) in m {
        let k = key_str(k);
        let p = format!("{at}.{k}");
        match k.as_str() {
            "kind" => d.kind = Some(scalar(x, &p)?),
            "group" => d.group = Some(scalar(x, &p)?),
            "image" => d.image = Some(scalar(x, &p)?),
            "cmd" => d.cmd = Some(scalar(x, &p)?),
            "entrypoint" => d.entrypoint = Some(scalar(x, &p)?),
            "user" => d.user = Some(scalar(x, &p)?),
            "network-mode" => d.network_mode = Some(scalar(x, &p)?),
            "privileged" => match x {
                Value::Bool(b) => d.privileged = Some(*b),
                _ => return Err(Error::bad(p, "expected true or false")),
            },
            "binds" => d.binds = list(x, &p)?,
            "exec" => d.exec = list(x, &p)?,
            "cap-add" => d.cap_add = list(x, &p)?,
            "env" => d.env = map(x, &p)?,
            "labels" => d.labels = map(x, &p)?,
            "mgmt-ipv4" | "mgmt-ipv6" => ignored.push(format!(
                "{p} (no management network: nodes start with network none; give addresses on links)"
            )),
            _ => ignored.push(format!("{p} (not supported)")),
        }
    }
    Ok(d)
}

/// node > group > kind > defaults, containerlab's order.
fn merged(levels: &[&Def]) -> Def {
    // `levels` runs from the most specific to the least.
    let first = |f: &dyn Fn(&Def) -> Option<String>| levels.iter().find_map(|d| f(d));
    let mut out = Def {
        kind: first(&|d| d.kind.clone()),
        group: first(&|d| d.group.clone()),
        image: first(&|d| d.image.clone()),
        cmd: first(&|d| d.cmd.clone()),
        entrypoint: first(&|d| d.entrypoint.clone()),
        user: first(&|d| d.user.clone()),
        network_mode: first(&|d| d.network_mode.clone()),
        privileged: levels.iter().find_map(|d| d.privileged),
        ..Default::default()
    };
    // Lists add up from the least specific; maps merge, specific wins.
    let mut binds: BTreeMap<String, String> = BTreeMap::new();
    for d in levels.iter().rev() {
        for b in &d.binds {
            // A more specific bind to the same container path replaces.
            let dst = b.split(':').nth(1).unwrap_or(b).to_string();
            binds.insert(dst, b.clone());
        }
        for e in &d.exec {
            out.exec.push(e.clone());
        }
        for c in &d.cap_add {
            if !out.cap_add.contains(c) {
                out.cap_add.push(c.clone());
            }
        }
        out.env.extend(d.env.clone());
        out.labels.extend(d.labels.clone());
    }
    out.binds = binds.into_values().collect();
    out
}

pub fn parse_yaml(text: &str, base: &Path) -> Result<Lab> {
    let v: Value = serde_norway::from_str(text).map_err(bad_yaml)?;
    let top = mapping(&v, "containerlab file")?
        .ok_or_else(|| Error::bad("containerlab file", "empty"))?;
    let mut ignored = Vec::new();
    let mut name = None;
    let mut topo = None;
    for (k, x) in top {
        let k = key_str(k);
        match k.as_str() {
            "name" => name = Some(scalar(x, "name")?),
            "topology" => topo = Some(x),
            "mgmt" => ignored
                .push("mgmt (no management network: nodes start with network none)".to_string()),
            _ => ignored.push(format!("{k} (not supported)")),
        }
    }
    let name = name.ok_or_else(|| Error::bad("name", "a containerlab file needs a name"))?;
    let topo = topo
        .and_then(|t| mapping(t, "topology").transpose())
        .transpose()?
        .ok_or_else(|| Error::bad("topology", "a containerlab file needs a topology"))?;
    let (mut defaults, mut kinds, mut groups) = (Def::default(), BTreeMap::new(), BTreeMap::new());
    let mut raw_nodes = None;
    let mut raw_links = None;
    for (k, x) in topo {
        let k = key_str(k);
        let at = format!("topology.{k}");
        match k.as_str() {
            "defaults" => defaults = def(x, &at, &mut ignored)?,
            "kinds" | "groups" => {
                for (n, d) in mapping(x, &at)?.into_iter().flatten() {
                    let n = key_str(n);
                    let d = def(d, &format!("{at}.{n}"), &mut ignored)?;
                    if k == "kinds" {
                        kinds.insert(n, d);
                    } else {
                        groups.insert(n, d);
                    }
                }
            }
            "nodes" => raw_nodes = Some(x),
            "links" => raw_links = Some(x),
            _ => ignored.push(format!("{at} (not supported)")),
        }
    }
    let empty = Def::default();
    let mut nodes = BTreeMap::new();
    let mut segments: BTreeMap<String, String> = BTreeMap::new();
    for (n, x) in raw_nodes
        .map(|x| mapping(x, "topology.nodes"))
        .transpose()?
        .flatten()
        .into_iter()
        .flatten()
    {
        let n = key_str(n);
        let at = format!("topology.nodes.{n}");
        let own = def(x, &at, &mut ignored)?;
        let group = match &own.group {
            Some(g) => groups.get(g).ok_or_else(|| {
                Error::bad(
                    format!("{at}.group: {g}"),
                    "no such group in topology.groups",
                )
            })?,
            None => &empty,
        };
        // The kind picks the `kinds` entry: node's, else group's, else default.
        let kind = own
            .kind
            .clone()
            .or(group.kind.clone())
            .or(defaults.kind.clone())
            .unwrap_or_else(|| "linux".into());
        // containerlab's host bridges: not nodes here, but the segment the
        // links to them join (pipework makes a missing Linux bridge).
        if kind == "bridge" || kind == "ovs-bridge" {
            crate::request::check_ifname(&n)?;
            if let Value::Mapping(m) = x {
                for k in m
                    .keys()
                    .map(key_str)
                    .filter(|k| k != "kind" && k != "group")
                {
                    ignored.push(format!("{at}.{k} (not supported on a {kind} node)"));
                }
            }
            segments.insert(n, kind);
            continue;
        }
        if kind != "linux" {
            return Err(Error::bad(
                format!("{at}: kind {kind}"),
                "only kind linux nodes are supported (other kinds need containerlab itself)",
            ));
        }
        let k = kinds.get(&kind).unwrap_or(&empty);
        let d = merged(&[&own, group, k, &defaults]);
        match d.network_mode.as_deref() {
            None | Some("none") => {}
            Some(m) => {
                return Err(Error::bad(
                    format!("{at}.network-mode: {m}"),
                    "only network-mode none: lab nodes get their interfaces from the links",
                ));
            }
        }
        let image = d.image.ok_or_else(|| {
            Error::bad(
                &n,
                "a linux node needs an image (in the node, its group, kinds.linux or defaults)",
            )
        })?;
        nodes.insert(
            n,
            NodeToml {
                image: Some(image),
                cmd: d.cmd.map(Cmd::Line),
                entrypoint: d.entrypoint.map(Cmd::Line),
                binds: d.binds,
                exec: d.exec,
                env: d.env,
                labels: d.labels,
                user: d.user,
                privileged: d.privileged,
                cap_add: (!d.cap_add.is_empty()).then_some(d.cap_add),
                ..Default::default()
            },
        );
    }
    let mut links = Vec::new();
    let raw_links = match raw_links {
        None | Some(Value::Null) => vec![],
        Some(Value::Sequence(s)) => s.clone(),
        Some(_) => return Err(Error::bad("topology.links", "expected a list")),
    };
    for (i, l) in raw_links.iter().enumerate() {
        let at = format!("topology.links[{}]", i + 1);
        let mut t = LinkToml::default();
        for (k, x) in mapping(l, &at)?.into_iter().flatten() {
            let k = key_str(k);
            let p = format!("{at}.{k}");
            match k.as_str() {
                "endpoints" => {
                    t.endpoints = list(x, &p).map_err(|_| {
                        Error::bad(p, "endpoints as [\"node:ifname\", \"node:ifname\"]")
                    })?
                }
                "mtu" => {
                    t.mtu = Some(
                        scalar(x, &p)?
                            .parse()
                            .map_err(|_| Error::bad(&p, "an MTU is a number"))?,
                    )
                }
                _ => ignored.push(format!("{p} (not supported)")),
            }
        }
        // A link to a bridge node is that bridge's member.
        let on_seg: Vec<usize> = (0..t.endpoints.len())
            .filter(|&k| {
                t.endpoints[k]
                    .rsplit_once(':')
                    .is_some_and(|(n, _)| segments.contains_key(n))
            })
            .collect();
        match on_seg.as_slice() {
            [] => {}
            [k] if t.endpoints.len() == 2 => {
                let ep = t.endpoints.remove(*k);
                let (br, _) = ep.rsplit_once(':').unwrap_or_default();
                ignored.push(format!(
                    "{at}.endpoints: {ep} (the bridge's end of the veth is named by pipework)"
                ));
                t.kind = Some(
                    if segments[br] == "bridge" {
                        "bridge"
                    } else {
                        "ovs"
                    }
                    .into(),
                );
                t.bridge = Some(br.to_string());
            }
            _ => {
                return Err(Error::bad(
                    format!("{at}.endpoints"),
                    "a link joins a node to at most one bridge node",
                ));
            }
        }
        links.push(t);
    }
    let mut lab = build(name, nodes, links, base)?;
    lab.ignored = ignored;
    lab.clab = true;
    Ok(lab)
}

#[cfg(test)]
mod tests {
    use super::super::model::NodeKind;
    use super::*;

    fn img(lab: &Lab, n: &str) -> super::super::model::ImageNode {
        match &lab.nodes[n].kind {
            NodeKind::Image(i) => (**i).clone(),
            k => panic!("{k:?}"),
        }
    }

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
            Path::new("/"),
        )
        .expect("parses");
        assert_eq!(lab.nodes.len(), 2);
        assert_eq!(lab.units.len(), 1);
        let r1 = img(&lab, "r1");
        assert_eq!(r1.image, "bb:latest");
        assert_eq!(r1.cmd, ["/bin/sleep", "3600"]);
        assert_eq!(r1.cap_add, ["NET_ADMIN", "NET_RAW"]);
        assert!(!r1.privileged);
        assert_eq!(lab.ignored.len(), 1, "{:?}", lab.ignored);
        assert!(lab.ignored[0].starts_with("topology.nodes.r1.mgmt-ipv4 "));
        let e = parse_yaml(
            "name: c\ntopology:\n  nodes:\n    s:\n      kind: nokia_srlinux\n      image: x\n",
            Path::new("/"),
        )
        .expect_err("srl");
        assert!(e.to_string().contains("nokia_srlinux"), "{e}");
    }

    #[test]
    fn node_beats_group_beats_kind_beats_defaults() {
        let lab = parse_yaml(
            r#"
name: p
mgmt:
  network: x
topology:
  defaults:
    image: d:1
    cmd: /bin/d
    user: du
    env: {A: d, B: d, C: d, D: d}
    exec: [echo d]
    startup-config: x.cfg
  kinds:
    linux:
      image: k:1
      cmd: /bin/k
      env: {B: k, C: k, D: k}
      exec: [echo k]
  groups:
    g:
      image: g:1
      env: {C: g, D: g}
      exec: [echo g]
      privileged: true
  nodes:
    n1:
      group: g
      env: {D: n}
      exec: [echo n]
      cap-add: [SYS_ADMIN]
    n2: {}
"#,
            Path::new("/"),
        )
        .expect("parses");
        let n1 = img(&lab, "n1");
        assert_eq!(n1.image, "g:1");
        assert_eq!(n1.cmd, ["/bin/k"]);
        assert_eq!(n1.user.as_deref(), Some("du"));
        assert_eq!(n1.env, ["A=d", "B=k", "C=g", "D=n"]);
        let ex: Vec<String> = n1.exec.iter().map(|e| e.join(" ")).collect();
        assert_eq!(ex, ["echo d", "echo k", "echo g", "echo n"]);
        assert!(n1.privileged);
        assert_eq!(n1.cap_add, ["NET_ADMIN", "NET_RAW", "SYS_ADMIN"]);
        let n2 = img(&lab, "n2");
        assert_eq!(n2.image, "k:1");
        assert!(!n2.privileged);
        assert_eq!(n2.env, ["A=d", "B=k", "C=k", "D=k"]);
        assert_eq!(
            lab.ignored,
            [
                "mgmt (no management network: nodes start with network none)",
                "topology.defaults.startup-config (not supported)"
            ]
        );
        let e = parse_yaml(
            "name: c\ntopology:\n  nodes:\n    s:\n      group: nope\n      image: x\n",
            Path::new("/"),
        )
        .expect_err("group");
        assert!(e.to_string().contains("nope"), "{e}");
        let e = parse_yaml(
            "name: c\ntopology:\n  nodes:\n    s:\n      network-mode: host\n      image: x\n",
            Path::new("/"),
        )
        .expect_err("host mode");
        assert!(e.to_string().contains("network-mode: host"), "{e}");
    }

    #[test]
    fn bridge_nodes_become_bridge_links() {
        let lab = parse_yaml(
            r#"
name: b
topology:
  kinds:
    linux: {image: x}
  nodes:
    br-clab: {kind: bridge}
    sw: {kind: ovs-bridge}
    a: {}
    b: {}
  links:
    - endpoints: ["a:eth1", "br-clab:eth1"]
    - endpoints: ["br-clab:eth2", "b:eth1"]
    - endpoints: ["a:eth2", "sw:p1"]
    - endpoints: ["a:eth3", "b:eth3"]
"#,
            Path::new("/"),
        )
        .expect("parses");
        assert_eq!(lab.nodes.len(), 2);
        let kinds: Vec<String> = lab.units.iter().map(|u| u.describe()).collect();
        assert_eq!(
            kinds,
            [
                "a:eth1 -> bridge br-clab",
                "b:eth1 -> bridge br-clab",
                "a:eth2 -> ovs sw",
                "a:eth3 -- b:eth3"
            ]
        );
        assert_eq!(lab.ignored.len(), 3, "{:?}", lab.ignored);
        let e = parse_yaml(
            "name: c
topology:
  nodes:
    x: {kind: bridge}
    y: {kind: bridge}
  links:
    - endpoints: [\"x:e1\", \"y:e1\"]
",
            Path::new("/"),
        )
        .expect_err("two bridges");
        assert!(e.to_string().contains("links[1].endpoints"), "{e}");
    }

    #[test]
    fn binds_are_relative_to_the_file_and_must_exist() {
        let d = std::env::temp_dir().join(format!("pwl-binds-{}", std::process::id()));
        std::fs::create_dir_all(d.join("r1")).expect("dir");
        std::fs::write(d.join("r1/frr.conf"), "x").expect("file");
        let _ = std::os::unix::fs::symlink("/etc/shadow", d.join("r1/shadow"));
        let y = |b: &str| {
            format!(
                "name: b\ntopology:\n  nodes:\n    r1:\n      image: x\n      binds: [\"{b}\"]\n"
            )
        };
        let lab = parse_yaml(&y("r1/frr.conf:/etc/frr/frr.conf:ro"), &d).expect("bind");
        assert_eq!(
            img(&lab, "r1").binds,
            [format!("{}/r1/frr.conf:/etc/frr/frr.conf:ro", d.display())]
        );
        for (b, token) in [
            ("r1/nope:/etc/x", "nope"),
            ("r1/frr.conf:etc/x", "etc/x"),
            ("r1/frr.conf:/etc/x:rx", "rx"),
            // A link a node planted through a read-write bind.
            ("r1/shadow:/etc/frr/frr.conf", "symbolic link"),
            ("r1/../../etc/shadow:/x", "'..'"),
        ] {
            let e = parse_yaml(&y(b), &d).expect_err(b).to_string();
            assert!(e.contains(token), "{b}: {e}");
        }
        let _ = std::fs::remove_dir_all(&d);
    }
}
