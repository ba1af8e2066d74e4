//! What a lab is once read: nodes and units. A unit is what one signed
//! record set stands for: a point-to-point link (two ends), or one member
//! of a shared segment (bridge, OVS, macvlan). Its id is a hash of
//! everything the kernel state depends on, so an edited unit is a removed
//! one plus an added one, and `up` compares ids, never files.
use super::netem::Impair;
use ipnetwork::IpNetwork;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Default)]
pub struct Lab {
    pub name: String,
    pub nodes: BTreeMap<String, Node>,
    pub units: Vec<Unit>,
    /// Keys of the file pipework does not act on, as dotted paths with the
    /// reason (`topology.nodes.r1.startup-config (not supported)`): named
    /// at `up`, refused under `--strict`.
    pub ignored: Vec<String>,
    /// Whether it came from a containerlab file (whose nodes containerlab
    /// starts privileged; ours are not, and `up` says so).
    pub clab: bool,
    /// Ids of the units `--host` left to other hosts: never added here,
    /// and their records (seen when hosts share a machine) never removed.
    pub elsewhere: std::collections::HashSet<String>,
    /// The `--host` this part was cut for (`for_host`).
    pub host: Option<String>,
}

impl Lab {
    /// The part of the lab host `host` builds (`lab up FILE --host H`):
    /// the nodes placed on it (`host = "H"`; without --host, the nodes
    /// placed nowhere), and the units all of whose ends are among them.
    pub fn for_host(mut self, host: Option<&str>) -> Lab {
        self.nodes.retain(|_, n| n.host.as_deref() == host);
        let (mine, theirs): (Vec<Unit>, Vec<Unit>) =
            std::mem::take(&mut self.units).into_iter().partition(|u| {
                u.ends
                    .iter()
                    .all(|e| e.node == "host" || self.nodes.contains_key(&e.node))
            });
        self.elsewhere = theirs.iter().map(Unit::id).collect();
        self.host = host.map(String::from);
        self.units = mine;
        self
    }
}

#[derive(Debug, Clone)]
pub struct Node {
    pub name: String,
    pub kind: NodeKind,
    /// The host that runs it (`host = "h2"`), for labs across hosts.
    pub host: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum NodeKind {
    /// An existing container (name or id); never started or stopped by us.
    Container(String),
    /// A container the lab starts from this image (no network) and removes.
    Image(Box<ImageNode>),
    /// An existing named network namespace.
    Netns(String),
}

impl Node {
    /// The classic guest argument for this node.
    pub fn guest_spec(&self, lab: &str) -> String {
        match &self.kind {
            NodeKind::Container(c) => c.clone(),
            NodeKind::Image(_) => container_name(lab, &self.name),
            NodeKind::Netns(n) => format!("netns:{n}"),
        }
    }
}

/// How an image node's container is made, and what runs in it once its
/// links are up.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ImageNode {
    pub image: String,
    pub cmd: Vec<String>,
    pub entrypoint: Option<Vec<String>>,
    /// `KEY=VALUE`, sorted by key.
    pub env: Vec<String>,
    pub labels: BTreeMap<String, String>,
    /// `/abs/host/path:/container/path[:opts]`, the host side resolved
    /// against the lab file's folder and checked to exist.
    pub binds: Vec<String>,
    pub user: Option<String>,
    pub privileged: bool,
    /// Capabilities added (default NET_ADMIN and NET_RAW: enough for
    /// `ip addr`/`ip route` in `exec`, less than privileged).
    pub cap_add: Vec<String>,
    /// Commands run in the container, in order, after its links are up;
    /// each an argv (split like a shell would, never run by one).
    pub exec: Vec<Vec<String>>,
}

/// The capabilities an image node gets when its file names none.
pub const DEFAULT_CAPS: [&str; 2] = ["NET_ADMIN", "NET_RAW"];

/// The name of the container the lab starts for an image node.
pub fn container_name(lab: &str, node: &str) -> String {
    format!("{lab}-{node}")
}

#[derive(Debug, Clone, PartialEq)]
pub enum LinkKind {
    P2p,
    Bridge(String),
    Ovs(String),
    Macvlan {
        parent: String,
        mode: String,
    },
    /// A pipework overlay network (the agent's bridge on each host).
    Overlay(String),
}

impl LinkKind {
    pub fn name(&self) -> &'static str {
        match self {
            LinkKind::P2p => "p2p",
            LinkKind::Bridge(_) => "bridge",
            LinkKind::Ovs(_) => "ovs",
            LinkKind::Macvlan { .. } => "macvlan",
            LinkKind::Overlay(_) => "overlay",
        }
    }
    /// The host object a shared segment hangs on.
    pub fn host(&self) -> Option<&str> {
        match self {
            LinkKind::P2p => None,
            LinkKind::Bridge(h) | LinkKind::Ovs(h) | LinkKind::Overlay(h) => Some(h),
            LinkKind::Macvlan { parent, .. } => Some(parent),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct End {
    /// Node name, or `host` (point-to-point only).
    pub node: String,
    pub ifname: String,
    pub addrs: Vec<IpNetwork>,
    pub mac: Option<[u8; 6]>,
}

#[derive(Debug, Clone)]
pub struct Unit {
    pub kind: LinkKind,
    pub ends: Vec<End>,
    pub mtu: Option<u32>,
    pub vlan: Option<u16>,
    pub impair: Impair,
    /// Position of its `[[links]]` entry (for messages).
    pub index: usize,
}

impl Unit {
    /// 8 hex digits of SHA-256 over the unit's kernel-relevant fields.
    pub fn id(&self) -> String {
        let mut h = Sha256::new();
        h.update(format!(
            "{:?}|{:?}|{:?}|{:?}",
            self.kind, self.mtu, self.vlan, self.impair
        ));
        for e in &self.ends {
            h.update(format!(
                "|{}:{}:{:?}:{:?}",
                e.node, e.ifname, e.addrs, e.mac
            ));
        }
        h.finalize()[..4]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// `a:eth1 -- b:eth1` or `a:eth2 -> br0`, for people.
    pub fn describe(&self) -> String {
        let ends: Vec<String> = self
            .ends
            .iter()
            .map(|e| format!("{}:{}", e.node, e.ifname))
            .collect();
        match self.kind.host() {
            None => ends.join(" -- "),
            Some(h) => format!("{} -> {} {h}", ends.join(", "), self.kind.name()),
        }
    }
}
