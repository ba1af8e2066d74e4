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

impl Net {
    /// Create the pair `a`–`b`, both with `mtu` and `q` queues each
    /// (`request::VethQueues`). Not journaled and not
    /// fetched: the caller finds each end in its namespace and journals
    /// the one whose deletion undoes all.
    pub async fn add_veth_pair(
        &self,
        a: &VethEnd<'_>,
        b: &VethEnd<'_>,
        mtu: u32,
        q: u32,
    ) -> Result<()> {
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
