//! `pipework dummy $CID 192.168.21.101/24`: a dummy interface in the guest
//! (the classic keyword). No host side at all; useful for a stable service
//! address or for software that wants a second interface.
use super::child::{self, ChildKind, ChildSpec};
use super::{Ctx, Driver, HostSide};
use crate::error::{Error, Result};
use crate::netlink::{Journal, Net};
use crate::record::Record;
use crate::request::check_ifname;

pub struct Dummy;

impl Driver for Dummy {
    async fn validate(&self, cx: &Ctx<'_>) -> Result<()> {
        check_ifname(&cx.req.ifname)?;
        if cx.req.vlan.is_some() || cx.req.extras.tag.is_some() {
            let t = cx
                .req
                .vlan
                .map(|v| v.to_string())
                .or(cx.req.extras.tag.clone())
                .unwrap_or_default();
            return Err(Error::bad(
                format!("@{t}"),
                "a dummy interface has no uplink to tag; drop the @VLAN",
            ));
        }
        Ok(())
    }

    async fn attach(&self, cx: &mut Ctx<'_>, j: &mut Journal) -> Result<HostSide> {
        let req = cx.req;
        let spec = ChildSpec {
            name: req.ifname.clone(),
            kind: ChildKind::Dummy,
            parent: None,
            mtu: req.mtu,
            mac: req.mac,
        };
        let link =
            child::create_in_guest(&cx.host, &cx.cont, &cx.guest.netns, j, &spec, "dummy").await?;
        let mtu = link.mtu;
        cx.made = (!cx.host.dry_run).then_some(link);
        Ok(HostSide {
            kind: "dummy",
            host: "dummy".into(),
            host_ifname: None,
            mtu,
            notes: vec![],
        })
    }

    async fn detach(&self, _host: &Net, cont: &Net, rec: &Record) -> Result<()> {
        if let Some(l) = cont.link_by_name(&rec.ifname).await? {
            cont.delete_link(&l).await?;
        }
        Ok(())
    }
}
