//! A veth pair whose two ends are born in two namespaces at once (either
//! may be ours), for `pipework link`: moving a link between namespaces
//! later costs the kernel a grace period, more than the rest of the build.
use super::Net;
use super::errors::nl_err;
use crate::error::Result;
use crate::netns::NetNs;
use netlink_packet_route::link::{InfoData, InfoKind, InfoVeth, LinkAttribute};
use rtnetlink::{LinkMessageBuilder, LinkUnspec};
use std::os::fd::AsRawFd;

/// One end: its (temporary) name, where it is born (None: this `Net`'s
/// namespace), its MAC if one is asked for.
pub struct VethEnd<'a> {
    pub name: &'a str,
    pub ns: Option<&'a NetNs>,
    pub mac: Option<[u8; 6]>,
}

/// Queues for each end of a veth. One, the kernel's default, unless
/// `PIPEWORK_VETH_QUEUES` asks for a number (1-64) or `cpus` (one per
/// online CPU, at most 64). Why not more by default: a veth has no qdisc
/// and transmits without a lock, so extra queues only matter when the
/// receiving end runs NAPI (GRO or XDP turned on); measured on the bridge
/// path (scripts/bench-datapath.sh, README "Which kind for speed") they
/// gave no gain, one stream a little less, and each queue costs sysfs
/// entries at every attach. (IFLA_NUM_TX_QUEUES / IFLA_NUM_RX_QUEUES.)
pub fn veth_queues() -> u32 {
    static Q: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *Q.get_or_init(|| queues_from(std::env::var("PIPEWORK_VETH_QUEUES").ok().as_deref()))
}

fn queues_from(v: Option<&str>) -> u32 {
    match v.map(str::trim) {
        Some("cpus") => {
            // SAFETY: sysconf takes no pointers.
            let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
            n.clamp(1, 64) as u32
        }
        Some(n) => n
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=64).contains(n))
            .unwrap_or(1),
        None => 1,
    }
}

#[cfg(test)]
#[test]
fn veth_queue_counts() {
    assert_eq!(queues_from(None), 1);
    assert_eq!(queues_from(Some("4")), 4);
    assert_eq!(queues_from(Some("0")), 1);
    assert_eq!(queues_from(Some("65")), 1);
    assert_eq!(queues_from(Some("x")), 1);
    assert!(queues_from(Some("cpus")) >= 1);
}

impl Net {
    /// Create the pair `a`–`b`, both with `mtu`. Not journaled and not
    /// fetched: the caller finds each end in its namespace and journals
    /// the one whose deletion undoes all.
    pub async fn add_veth_pair(&self, a: &VethEnd<'_>, b: &VethEnd<'_>, mtu: u32) -> Result<()> {
        let q = veth_queues();
        let mut peer = LinkUnspec::new_with_name(b.name)
            .mtu(mtu)
            .append_extra_attribute(LinkAttribute::NumTxQueues(q))
            .append_extra_attribute(LinkAttribute::NumRxQueues(q));
        if let Some(ns) = b.ns {
            peer = peer.setns_by_fd(ns.fd().as_raw_fd());
        }
        if let Some(m) = b.mac {
            peer = peer.address(m.to_vec());
        }
        let mut msg = LinkMessageBuilder::<LinkUnspec>::new_with_info_kind(InfoKind::Veth)
            .name(a.name.to_string())
            .mtu(mtu)
            .append_extra_attribute(LinkAttribute::NumTxQueues(q))
            .append_extra_attribute(LinkAttribute::NumRxQueues(q));
        if let Some(m) = a.mac {
            msg = msg.address(m.to_vec());
        }
        if let Some(ns) = a.ns {
            msg = msg.setns_by_fd(ns.fd().as_raw_fd());
        }
        let msg = msg
            .set_info_data(InfoData::Veth(InfoVeth::Peer(peer.build())))
            .build();
        self.handle
            .link()
            .add(msg)
            .execute()
            .await
            .map_err(|e| nl_err(format!("creating veth {}", a.name), e))
    }
}
