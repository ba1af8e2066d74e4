//! The lab file: TOML as written by people, checked in full before the
//! host is touched (one-line errors naming the bad token).
//!
//! ```toml
//! name = "demo"
//! [nodes.r1]
//! image = "bb:latest"          # started by the lab, no network
//! cmd = ["/bin/sleep", "1d"]
//! binds = ["r1/frr.conf:/etc/frr/frr.conf:ro"]   # host side relative to this file
//! exec = ["ip addr add 10.0.0.1/30 dev eth1"]    # after its links are up
//! env = { A = "1" }            # also: labels, user, entrypoint, privileged, cap_add
//! [nodes.web]
//! container = "web1"           # exists already; never stopped by the lab
//! [nodes.ns1]
//! netns = "blue"               # an `ip netns` namespace
//! [[links]]                    # point-to-point (the default)
//! endpoints = ["r1:eth1", "web:eth1"]
//! ips = ["10.0.0.1/30", "10.0.0.2/30"]
//! [[links]]
//! kind = "bridge"              # also: ovs, macvlan (with parent = "eth0"),
//!                              # overlay (network = "NET"; nodes may say host = "h2")
//! bridge = "br-lab"
//! endpoints = ["r1:eth2", "ns1:eth1"]
//! ```
use super::model::{DEFAULT_CAPS, End, ImageNode, Lab, LinkKind, Node, NodeKind, Unit};
use crate::error::{Error, Result};
use crate::request::{check_ifname, parse_cidr, parse_mac_token};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileToml {
    name: String,
    #[serde(default)]
    nodes: BTreeMap<String, NodeToml>,
    #[serde(default)]
    links: Vec<LinkToml>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct NodeToml {
    pub container: Option<String>,
    pub image: Option<String>,
    #[serde(default)]
    pub cmd: Option<Cmd>,
    pub netns: Option<String>,
    #[serde(default)]
    pub entrypoint: Option<Cmd>,
    #[serde(default)]
    pub binds: Vec<String>,
    #[serde(default)]
    pub exec: Vec<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    pub user: Option<String>,
    pub privileged: Option<bool>,
    pub cap_add: Option<Vec<String>>,
    /// The host that runs this node (labs across hosts).
    pub host: Option<String>,
}

/// `cmd` as a list or as one string split on spaces (containerlab's form).
#[derive(Deserialize, Clone)]
#[serde(untagged)]
pub(super) enum Cmd {
    List(Vec<String>),
    Line(String),
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct LinkToml {
    pub kind: Option<String>,
    pub endpoints: Vec<String>,
    pub bridge: Option<String>,
    pub network: Option<String>,
    pub parent: Option<String>,
    pub mode: Option<String>,
    #[serde(default)]
    pub ips: Vec<String>,
    #[serde(default)]
    pub macs: Vec<String>,
    pub mtu: Option<u32>,
    pub vlan: Option<u16>,
    pub delay: Option<String>,
    pub loss: Option<String>,
    pub rate: Option<String>,
}

pub fn parse_toml(text: &str, base: &Path) -> Result<Lab> {
    let f: FileToml = toml::from_str(text).map_err(|e| {
        let first = e.to_string();
        let first = first.lines().last().unwrap_or_default().to_string();
        Error::bad("lab file", format!("not a valid lab: {first}"))
    })?;
    build(f.name, f.nodes, f.links, base)
}

/// Shared by the TOML and containerlab readers: validate everything.
pub(super) fn build(
    name: String,
    nodes: BTreeMap<String, NodeToml>,
    links: Vec<LinkToml>,
    base: &Path,
) -> Result<Lab> {
    check_lab_name(&name)?;
    let mut out = Lab {
        name,
        ..Default::default()
    };
    for (n, t) in nodes {
        check_node_name(&n)?;
        let image_only = !t.binds.is_empty()
            || !t.exec.is_empty()
            || !t.env.is_empty()
            || !t.labels.is_empty()
            || t.user.is_some()
            || t.entrypoint.is_some()
            || t.privileged.is_some()
            || t.cap_add.is_some();
        if image_only && t.image.is_none() {
            return Err(Error::bad(
                format!("nodes.{n}"),
                "binds, exec, env, labels, user, entrypoint, privileged and cap_add need an image node (image = IMAGE)",
            ));
        }
        let kind = match (t.container.clone(), t.image.clone(), t.netns.clone()) {
            (Some(c), None, None) => NodeKind::Container(c),
            (None, Some(i), None) => NodeKind::Image(Box::new(image_node(
                &n,
                i,
                t.cmd,
                ImageToml {
                    entrypoint: t.entrypoint,
                    binds: t.binds,
                    exec: t.exec,
                    env: t.env,
                    labels: t.labels,
                    user: t.user,
                    privileged: t.privileged,
                    cap_add: t.cap_add,
                },
                base,
            )?)),
            (None, None, Some(ns)) => NodeKind::Netns(ns),
            _ => {
                return Err(Error::bad(
                    format!("nodes.{n}"),
                    "give exactly one of container = NAME, image = IMAGE or netns = NAME",
                ));
            }
        };
        if let Some(h) = &t.host
            && (h.is_empty() || h == "host" || check_node_name(h).is_err())
        {
            return Err(Error::bad(
                h,
                format!("nodes.{n}.host: a host name, as given to lab up --host"),
            ));
        }
        out.nodes.insert(
            n.clone(),
            Node {
                name: n,
                kind,
                host: t.host,
            },
        );
    }
    let mut taken: BTreeMap<(String, String), usize> = BTreeMap::new();
    for (i, l) in links.into_iter().enumerate() {
        let unit = link(&out, i, l)?;
        for e in &unit.ends {
            if let Some(prev) = taken.insert((e.node.clone(), e.ifname.clone()), i) {
                return Err(Error::bad(
                    format!("{}:{}", e.node, e.ifname),
                    format!(
                        "used by links #{} and #{}; each interface once",
                        prev + 1,
                        i + 1
                    ),
                ));
            }
        }
        out.units.extend(split(unit));
    }
    Ok(out)
}

/// An image node's container settings, as read.
struct ImageToml {
    entrypoint: Option<Cmd>,
    binds: Vec<String>,
    exec: Vec<String>,
    env: BTreeMap<String, String>,
    labels: BTreeMap<String, String>,
    user: Option<String>,
    privileged: Option<bool>,
    cap_add: Option<Vec<String>>,
}

fn argv(c: Cmd, at: &str) -> Result<Vec<String>> {
    match c {
        Cmd::List(v) => Ok(v),
        Cmd::Line(s) => super::words::split(&s).map_err(|e| Error::bad(at, e)),
    }
}

fn image_node(
    n: &str,
    image: String,
    cmd: Option<Cmd>,
    t: ImageToml,
    base: &Path,
) -> Result<ImageNode> {
    let at = |k: &str| format!("nodes.{n}.{k}");
    let cmd = cmd
        .map(|c| argv(c, &at("cmd")))
        .transpose()?
        .unwrap_or_default();
    let entrypoint = t
        .entrypoint
        .map(|c| argv(c, &at("entrypoint")))
        .transpose()?;
    let mut exec = Vec::new();
    for (i, line) in t.exec.iter().enumerate() {
        let v = super::words::split(line)
            .map_err(|e| Error::bad(at(&format!("exec[{}]", i + 1)), e))?;
        if v.is_empty() {
            return Err(Error::bad(
                at(&format!("exec[{}]", i + 1)),
                "an empty command",
            ));
        }
        exec.push(v);
    }
    let mut binds = Vec::new();
    for b in &t.binds {
        binds.push(bind(b, base).map_err(|e| Error::bad(b, format!("{}: {e}", at("binds"))))?);
    }
    for k in t.env.keys() {
        if k.is_empty() || k.contains('=') || k.contains('\0') {
            return Err(Error::bad(k, format!("{}: not a variable name", at("env"))));
        }
    }
    if t.labels.keys().any(|k| k.starts_with("pipework.")) {
        return Err(Error::bad(
            at("labels"),
            "pipework.* labels are pipework's own",
        ));
    }
    // Ours always, the file's on top (as containerlab's add to the engine's).
    let mut cap_add: Vec<String> = DEFAULT_CAPS.iter().map(|c| c.to_string()).collect();
    for c in t.cap_add.unwrap_or_default() {
        if !cap_add.contains(&c) {
            cap_add.push(c);
        }
    }
    for c in &cap_add {
        if c.is_empty() || !c.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(Error::bad(
                c,
                format!("{}: a capability name like NET_ADMIN", at("cap-add")),
            ));
        }
    }
    Ok(ImageNode {
        image,
        cmd,
        entrypoint,
        env: t.env.iter().map(|(k, v)| format!("{k}={v}")).collect(),
        labels: t.labels,
        binds,
        user: t.user,
        privileged: t.privileged.unwrap_or(false),
        cap_add,
        exec,
    })
}

/// `SRC:DST[:OPTS]`: SRC relative to the lab file's folder (the lab
/// author's host path: resolved as given, it is not a guest's), which must
/// exist (the engine would otherwise make an empty folder there); DST an
/// absolute path in the container.
fn bind(b: &str, base: &Path) -> std::result::Result<String, String> {
    const OPTS: [&str; 11] = [
        "ro", "rw", "z", "Z", "shared", "slave", "private", "rshared", "rslave", "rprivate",
        "nocopy",
    ];
    let mut parts = b.split(':');
    let (Some(src), Some(dst)) = (parts.next(), parts.next()) else {
        return Err("a bind is HOST_PATH:CONTAINER_PATH[:ro]".into());
    };
    let opts = parts.next();
    if parts.next().is_some() || src.is_empty() {
        return Err("a bind is HOST_PATH:CONTAINER_PATH[:ro]".into());
    }
    if !dst.starts_with('/') {
        return Err(format!("container path {dst} must be absolute"));
    }
    if let Some(o) = opts
        && !o.split(',').all(|x| OPTS.contains(&x))
    {
        return Err(format!("options {o}: ro, rw, z, Z or a propagation mode"));
    }
    // Never through a symlink (a node may have planted one): see bind_src.
    let p = super::bind_src::resolve(src, base)?;
    let s = p.display().to_string();
    if s.contains(':') {
        return Err(format!("{s}: a host path with ':' cannot be bound"));
    }
    Ok(match opts {
        Some(o) => format!("{s}:{dst}:{o}"),
        None => format!("{s}:{dst}"),
    })
}

fn check_lab_name(n: &str) -> Result<()> {
    if n.is_empty()
        || n.len() > 24
        || !n
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(Error::bad(
            n,
            "lab name: 1-24 characters of letters, digits, - and _",
        ));
    }
    Ok(())
}

fn check_node_name(n: &str) -> Result<()> {
    if n == "host" {
        return Err(Error::bad(
            n,
            "node name reserved: host:IFNAME names the host's end of a link",
        ));
    }
    if n.is_empty()
        || n.len() > 32
        || !n
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
    {
        return Err(Error::bad(
            n,
            "node name: 1-32 characters of letters, digits, -, _ and .",
        ));
    }
    Ok(())
}

/// One `[[links]]` entry, checked, as one unit with all its ends.
fn link(lab: &Lab, i: usize, l: LinkToml) -> Result<Unit> {
    let at = |what: &str| format!("links[{}].{what}", i + 1);
    let kind = match l.kind.as_deref() {
        None | Some("p2p") | Some("veth") => LinkKind::P2p,
        Some("bridge") => LinkKind::Bridge(
            l.bridge
                .clone()
                .ok_or_else(|| Error::bad(at("bridge"), "a bridge link names its bridge"))?,
        ),
        Some("ovs") => LinkKind::Ovs(
            l.bridge
                .clone()
                .ok_or_else(|| Error::bad(at("bridge"), "an ovs link names its OVS bridge"))?,
        ),
        Some("macvlan") => LinkKind::Macvlan {
            parent: l.parent.clone().ok_or_else(|| {
                Error::bad(at("parent"), "a macvlan link names its host NIC (parent)")
            })?,
            mode: l.mode.clone().unwrap_or_else(|| "bridge".into()),
        },
        Some("overlay") => LinkKind::Overlay(l.network.clone().ok_or_else(|| {
            Error::bad(
                at("network"),
                "an overlay link names its network (network = \"NET\", see pipework overlay create)",
            )
        })?),
        Some(k) => {
            return Err(Error::bad(
                k,
                "link kind: p2p (default), bridge, ovs, macvlan or overlay",
            ));
        }
    };
    if let LinkKind::Overlay(net) = &kind {
        if l.ips.len() != l.endpoints.len() || l.ips.iter().any(|a| a.contains(',')) {
            return Err(Error::bad(
                at("ips"),
                "an overlay link gives each endpoint one address (ip/len in the network's subnet)",
            ));
        }
        if net.is_empty()
            || net.len() > 12
            || !net
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        {
            return Err(Error::bad(
                net,
                "an overlay network name: 1-12 of a-z 0-9 - _",
            ));
        }
    }
    match &kind {
        LinkKind::Bridge(h) | LinkKind::Ovs(h) | LinkKind::Macvlan { parent: h, .. } => {
            check_ifname(h)?
        }
        LinkKind::P2p | LinkKind::Overlay(_) => {}
    }
    if let LinkKind::Macvlan { mode, .. } = &kind {
        crate::driver::macvlan::parse_mode(mode)?;
    }
    if matches!(kind, LinkKind::P2p) && l.endpoints.len() != 2 {
        return Err(Error::bad(
            at("endpoints"),
            "a point-to-point link has exactly two endpoints",
        ));
    }
    if l.endpoints.is_empty() {
        return Err(Error::bad(at("endpoints"), "no endpoints"));
    }
    if l.vlan.is_some() && !matches!(kind, LinkKind::Ovs(_)) {
        return Err(Error::bad(
            at("vlan"),
            "VLAN tags need an ovs link (a Linux bridge port takes no tag here)",
        ));
    }
    if let Some(v) = l.vlan {
        crate::request::parse_vlan(&v.to_string())?;
    }
    for (what, v) in [("ips", l.ips.len()), ("macs", l.macs.len())] {
        if v > l.endpoints.len() {
            return Err(Error::bad(at(what), "more entries than endpoints"));
        }
    }
    if let Some(m) = l.mtu
        && !(68..=65535).contains(&m)
    {
        return Err(Error::bad(at("mtu"), "MTU must be 68-65535"));
    }
    let impair =
        super::netem::Impair::parse(l.delay.as_deref(), l.loss.as_deref(), l.rate.as_deref())
            .map_err(|e| Error::bad(at("delay/loss/rate"), e))?;
    let mut ends = Vec::new();
    for (k, ep) in l.endpoints.iter().enumerate() {
        let (node, ifname) = ep
            .rsplit_once(':')
            .ok_or_else(|| Error::bad(ep, "an endpoint is NODE:IFNAME, e.g. r1:eth1"))?;
        if node != "host" && !lab.nodes.contains_key(node) {
            return Err(Error::bad(
                ep,
                format!("no node {node} in [nodes] (or use host:IFNAME for the host)"),
            ));
        }
        if node == "host" && !matches!(kind, LinkKind::P2p) {
            return Err(Error::bad(ep, "only a point-to-point link has a host end"));
        }
        check_ifname(ifname)?;
        let addrs = match l.ips.get(k).map(String::as_str) {
            None | Some("") => vec![],
            Some(s) => s
                .split(',')
                .map(|a| parse_cidr(a.trim()))
                .collect::<Result<Vec<_>>>()?,
        };
        let mac = match l.macs.get(k).map(String::as_str) {
            None | Some("") => None,
            Some(s) => match parse_mac_token(s)? {
                (m, None) => m,
                (_, Some(_)) => return Err(Error::bad(s, "put a VLAN in vlan = N, not on a MAC")),
            },
        };
        ends.push(End {
            node: node.to_string(),
            ifname: ifname.to_string(),
            addrs,
            mac,
        });
    }
    if !matches!(kind, LinkKind::Overlay(_)) {
        let hosts: std::collections::BTreeSet<Option<&str>> = ends
            .iter()
            .filter(|e| e.node != "host")
            .map(|e| lab.nodes.get(&e.node).and_then(|n| n.host.as_deref()))
            .collect();
        if hosts.len() > 1 {
            return Err(Error::bad(
                at("endpoints"),
                "joins nodes on different hosts: only an overlay link spans hosts",
            ));
        }
    }
    Ok(Unit {
        kind,
        ends,
        mtu: l.mtu,
        vlan: l.vlan,
        impair,
        index: i,
    })
}

/// A point-to-point link is one unit; a shared segment (bridge, OVS,
/// macvlan) is one unit per endpoint, so adding a member to a bridge
/// touches only that member.
fn split(u: Unit) -> Vec<Unit> {
    if matches!(u.kind, LinkKind::P2p) {
        return vec![u];
    }
    u.ends
        .iter()
        .map(|e| Unit {
            ends: vec![e.clone()],
            kind: u.kind.clone(),
            impair: u.impair.clone(),
            ..u.clone()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
name = "t1"
[nodes.a]
image = "bb:latest"
cmd = "/bin/sleep 3600"
[nodes.b]
container = "web1"
[nodes.c]
netns = "blue"
[[links]]
endpoints = ["a:eth1", "b:eth1"]
ips = ["10.0.0.1/30", "10.0.0.2/30"]
macs = ["U:a1"]
mtu = 1400
[[links]]
kind = "bridge"
bridge = "brlab"
endpoints = ["a:eth2", "b:eth2", "c:eth1"]
ips = ["10.1.0.1/24", "", "10.1.0.3/24"]
"#;

    #[test]
    fn a_good_file_parses_into_units() {
        let lab = parse_toml(GOOD, Path::new("/")).expect("parses");
        assert_eq!(lab.name, "t1");
        assert_eq!(lab.nodes.len(), 3);
        // One p2p unit, three bridge members.
        assert_eq!(lab.units.len(), 4);
        assert_eq!(lab.units[0].ends.len(), 2);
        assert!(lab.units[0].ends[0].mac.is_some());
        assert!(lab.units[2].ends[0].addrs.is_empty());
        // Ids are stable and distinct.
        let ids: std::collections::HashSet<String> = lab.units.iter().map(Unit::id).collect();
        assert_eq!(ids.len(), 4);
        assert_eq!(
            parse_toml(GOOD, Path::new("/")).expect("again").units[3].id(),
            lab.units[3].id()
        );
    }

    #[test]
    fn a_lab_across_hosts_is_cut_per_host() {
        let text = r#"
name = "x"
[nodes.a]
netns = "a"
host = "h0"
[nodes.b]
netns = "b"
host = "h1"
[nodes.c]
netns = "c"
host = "h1"
[[links]]
kind = "overlay"
network = "blue"
endpoints = ["a:eth1", "b:eth1"]
ips = ["10.9.0.1/24", "10.9.0.2/24"]
[[links]]
endpoints = ["b:eth2", "c:eth2"]
"#;
        let lab = parse_toml(text, Path::new("/")).expect("parses");
        assert_eq!(lab.units.len(), 3);
        let h0 = lab.clone().for_host(Some("h0"));
        assert_eq!(h0.nodes.keys().collect::<Vec<_>>(), ["a"]);
        assert_eq!(h0.units.len(), 1);
        assert_eq!(h0.elsewhere.len(), 2);
        let h1 = lab.clone().for_host(Some("h1"));
        assert_eq!(h1.units.len(), 2);
        assert!(lab.for_host(None).units.is_empty());
        let e = parse_toml(
            &text.replace(
                "endpoints = [\"b:eth2\", \"c:eth2\"]",
                "endpoints = [\"a:eth2\", \"c:eth2\"]",
            ),
            Path::new("/"),
        )
        .expect_err("p2p across hosts")
        .to_string();
        assert!(e.contains("only an overlay link spans hosts"), "{e}");
        let e = parse_toml(
            &text.replace("ips = [\"10.9.0.1/24\", \"10.9.0.2/24\"]\n", ""),
            Path::new("/"),
        )
        .expect_err("overlay without addresses")
        .to_string();
        assert!(e.contains("links[1].ips"), "{e}");
    }

    #[test]
    fn bad_files_name_the_token() {
        for (edit, token) in [
            (("\"t1\"", "\"t 1\""), "t 1"),
            (("10.0.0.2/30", "10.0.0.300/30"), "10.0.0.300/30"),
            (("\"b:eth1\"]", "\"zz:eth1\"]"), "zz:eth1"),
            (("kind = \"bridge\"", "kind = \"hub\""), "hub"),
            (("\"a:eth2\"", "\"a:eth1\""), "a:eth1"),
            (("mtu = 1400", "mtu = 12"), "mtu"),
        ] {
            let text = GOOD.replacen(edit.0, edit.1, 1);
            let e = parse_toml(&text, Path::new("/"))
                .expect_err(token)
                .to_string();
            assert!(e.contains(token), "{token}: {e}");
            assert_eq!(e.lines().count(), 1, "{e}");
        }
    }
}
