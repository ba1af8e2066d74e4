//! `pipework link A:eth1 B:eth2`: a veth pair whose two ends are born
//! straight into two guests (or one on the host, `host:NAME`), no bridge
//! in between. Each end carries its own signed record (kind `p2p`) naming
//! its peer, so `ls`, `detach` and `gc` find it from either side; deleting
//! one end deletes the pair.
mod build;
mod end;
pub mod gc;

pub use build::build;
pub use end::{End, parse_end, resolve};

use crate::error::{Error, Result};
use crate::netlink::Journal;
use crate::record::Record;
use ipnetwork::IpNetwork;
use serde::Serialize;

/// One end as asked for.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EndSpec {
    /// The guest as the classic argument names it, or `host`.
    pub guest: String,
    pub ifname: String,
    pub addrs: Vec<IpNetwork>,
    pub mac: Option<[u8; 6]>,
}

/// A whole `pipework link` request.
#[derive(Debug, Clone, Default)]
pub struct LinkRequest {
    pub a: EndSpec,
    pub b: EndSpec,
    pub mtu: Option<u32>,
    /// Extra record fields (a lab's name and link id), signed with the rest.
    pub extras: crate::record::Extras,
    /// Queues on each end (`PIPEWORK_VETH_QUEUES`).
    pub veth_queues: crate::request::VethQueues,
}

#[derive(Debug, Serialize)]
pub struct EndReport {
    pub guest: String,
    pub interface: String,
    pub mac: String,
    pub addresses: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub a: EndReport,
    pub b: EndReport,
    pub mtu: u32,
    /// True when the same link already existed (no-op re-run).
    pub unchanged: bool,
}

/// Resolve both ends and build the pair; any failure rolls back.
pub async fn run(req: &LinkRequest) -> Result<Report> {
    let a = resolve(&req.a.guest)?;
    let b = resolve(&req.b.guest)?;
    let mut j = Journal::new();
    match build(req, &a, &b, &mut j).await {
        Ok(r) => {
            j.commit();
            Ok(r)
        }
        Err(e) => {
            j.rollback().await;
            Err(e)
        }
    }
}

/// `link --dry-run`: every check `run` makes, nothing changed; the steps
/// it would take, with their iproute2 equivalents (empty: already linked).
pub async fn dry_run(req: &LinkRequest) -> Result<Vec<String>> {
    let a = resolve(&req.a.guest)?;
    let b = resolve(&req.b.guest)?;
    let pre = build::preflight(req, &a, &b).await?;
    if pre.same.is_some() {
        return Ok(vec![]);
    }
    Ok(p2p_steps(req, &a.label, &b.label))
}

/// The iproute2 commands a point-to-point link amounts to (`<x>` stands
/// for guest x's network namespace).
pub fn p2p_steps(req: &LinkRequest, la: &str, lb: &str) -> Vec<String> {
    let ns = |s: &EndSpec, l: &str| {
        if s.guest == "host" {
            String::new()
        } else {
            format!(" netns <{l}>")
        }
    };
    let ipn = |s: &EndSpec, l: &str| {
        if s.guest == "host" {
            "ip".to_string()
        } else {
            format!("ip -n <{l}>")
        }
    };
    let mut v = vec![format!(
        "ip link add {}{} mtu {} type veth peer name {}{}",
        req.a.ifname,
        ns(&req.a, la),
        req.mtu.unwrap_or(1500),
        req.b.ifname,
        ns(&req.b, lb)
    )];
    for (s, l) in [(&req.a, la), (&req.b, lb)] {
        if let Some(m) = s.mac {
            v.push(format!(
                "{} link set {} address {}",
                ipn(s, l),
                s.ifname,
                crate::request::format_mac(&m)
            ));
        }
        for a in &s.addrs {
            v.push(format!("{} addr add {a} dev {}", ipn(s, l), s.ifname));
        }
        v.push(format!("{} link set {} up", ipn(s, l), s.ifname));
    }
    v
}

/// Parse `--ip-a` / `--ip-b`.
pub fn parse_addr(flag: &str, s: &str) -> Result<IpNetwork> {
    crate::request::parse_cidr(s).map_err(|e| Error::bad(flag, e))
}

/// The peer namespace inode a p2p record names.
pub fn peer_ns(rec: &Record) -> Option<u64> {
    rec.x.peer_ns
}
