//! Queueing disciplines: a root qdisc of a given kind on a link (the lab's
//! netem impairments). The caller encodes the kind's options; this builds
//! and sends the RTM_NEWQDISC and reports the kernel's errno, so a missing
//! module (ENOENT, EOPNOTSUPP) can be told apart from a refused value.
use super::errors::nl_err;
use super::{Link, Net};
use crate::error::{Error, Result};
use futures::StreamExt;
use netlink_packet_core::{DefaultNla, NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REQUEST};
use netlink_packet_core::{NetlinkMessage, NetlinkPayload};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::tc::{TcAttribute, TcHandle, TcMessage};

const TCA_OPTIONS: u16 = 2;

impl Net {
    /// Add root qdisc `kind` (handle 1:) with raw `options` on `link`;
    /// fails if one is already there (NLM_F_EXCL: the link must be new).
    pub async fn add_root_qdisc(&self, link: &Link, kind: &str, options: Vec<u8>) -> Result<()> {
        if self.dry_run {
            println!("tc qdisc add dev {} root handle 1: {kind} …", link.name);
            return Ok(());
        }
        let mut m = TcMessage::with_index(link.index as i32);
        m.header.parent = TcHandle::ROOT;
        m.header.handle = TcHandle { major: 1, minor: 0 };
        m.attributes.push(TcAttribute::Kind(kind.into()));
        m.attributes
            .push(TcAttribute::Other(DefaultNla::new(TCA_OPTIONS, options)));
        let mut req = NetlinkMessage::from(RouteNetlinkMessage::NewQueueDiscipline(m));
        req.header.flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL;
        let what = format!("{kind} on {}", link.name);
        let mut resp = self
            .handle
            .clone()
            .request(req)
            .map_err(|e| nl_err(&what, e))?;
        while let Some(msg) = resp.next().await {
            if let NetlinkPayload::Error(e) = msg.payload
                && e.code.is_some()
            {
                let errno = e.raw_code().abs();
                return Err(Error::Netlink {
                    context: what,
                    errno,
                    message: "the kernel refused it".into(),
                });
            }
        }
        Ok(())
    }
}
