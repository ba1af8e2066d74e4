//! Link details that `Link` does not keep (a VLAN's id, the MTU range) and
//! the kernel-filtered dump of one kind: asked for rarely, by one driver
//! each, so they are read on demand instead of decoded for every link.
use super::errors::nl_err;
use super::{Link, Net};
use crate::error::Result;
use futures::TryStreamExt;
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVlan, LinkAttribute, LinkInfo, LinkMessage,
};

impl Net {
    /// Link `index` as the kernel sent it; None when the dump is empty.
    /// Errors (ENODEV included) are named by `what`.
    async fn link_message(&self, index: u32, what: &str) -> Result<Option<LinkMessage>> {
        let mut s = self.handle.link().get().match_index(index).execute();
        s.try_next().await.map_err(|e| nl_err(what, e))
    }

    /// The 802.1Q id of link `index`, or None if it is not a VLAN.
    pub async fn vlan_id(&self, index: u32) -> Result<Option<u16>> {
        let Some(msg) = self.link_message(index, "reading VLAN details").await? else {
            return Ok(None);
        };
        for a in &msg.attributes {
            if let LinkAttribute::LinkInfo(infos) = a {
                for i in infos {
                    if let LinkInfo::Data(InfoData::Vlan(v)) = i {
                        for x in v {
                            if let InfoVlan::Id(id) = x {
                                return Ok(Some(*id));
                            }
                        }
                    }
                }
            }
        }
        Ok(None)
    }

    /// IFLA_MAX_MTU of a link, when the kernel reports it.
    pub async fn max_mtu(&self, link: &Link) -> Result<Option<u32>> {
        let Some(msg) = self
            .link_message(link.index, "reading the MTU range")
            .await?
        else {
            return Ok(None);
        };
        Ok(msg.attributes.iter().find_map(|a| match a {
            LinkAttribute::MaxMtu(m) if *m > 0 => Some(*m),
            _ => None,
        }))
    }

    /// Every macvlan link, the dump filtered in the kernel: asked at every
    /// macvlan attach, and a host may have thousands of veth ends.
    pub async fn macvlan_links(&self) -> Result<Vec<Link>> {
        let mut req = self.handle.link().get();
        req.message_mut()
            .attributes
            .push(LinkAttribute::LinkInfo(vec![LinkInfo::Kind(
                InfoKind::MacVlan,
            )]));
        let msgs: Vec<LinkMessage> = req
            .execute()
            .try_collect()
            .await
            .map_err(|e| nl_err("listing macvlan links", e))?;
        Ok(msgs.iter().map(Link::from_message).collect())
    }
}
