//! Host-side drivers. Each file builds one kind of host side and reads top
//! to bottom as the kernel steps it performs.
//!
//! A driver's `attach` creates the container-side link (named
//! `req.ifname`, inside the guest namespace) and whatever it needs on the
//! host, journaling every create. Addressing, the record and bringing the
//! container link up are shared and done by `attach.rs` afterwards.
pub mod bridge;
pub mod bridge_vlan;
pub mod child;
pub mod dummy;
pub mod host_shim;
pub mod ipoib;
pub mod ipvlan;
pub mod macvlan;
pub mod marked;
pub mod ovs;
pub mod phys;
pub mod tc_redirect;
pub mod vf;
pub mod vlan;

use crate::error::{Error, Result};
use crate::guest::Guest;
use crate::netlink::{Journal, LinkChange, Net};
use crate::record::{Kind, Record};
use crate::request::{AttachRequest, HostMode};

/// Everything a driver may use while attaching.
pub struct Ctx<'a> {
    pub req: &'a AttachRequest,
    pub guest: &'a Guest,
    /// Host namespace.
    pub host: Net,
    /// Guest namespace.
    pub cont: Net,
    /// The record that will be written on the container link; drivers fill
    /// in `k`, `hi` and `x`.
    pub record: Record,
    /// The guest link the driver made, still under its temporary name
    /// (attach.rs names and labels it). None in a dry run.
    pub made: Option<crate::netlink::Link>,
}

impl<'a> Ctx<'a> {
    /// The change that moves host device `index` into the guest, down,
    /// under the `-i` name, carrying the record sealed for the guest: the
    /// kernel keeps the ifindex when it is free there (attach.rs seals it
    /// again with the final index either way). Phys and VF moves share it.
    pub fn move_into_guest(&self, index: u32) -> Result<LinkChange<'a>> {
        let in_guest = self.record.seal(crate::record::Ident {
            ns: self.record.n,
            index,
        })?;
        Ok(LinkChange {
            up: Some(false),
            netns: Some(&self.guest.netns),
            name: Some(self.req.ifname.clone()),
            alias: Some(in_guest),
            ..Default::default()
        })
    }
}

/// What the driver built on the host, for output.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct HostSide {
    pub kind: &'static str,
    /// The bridge / parent / switch the guest is plugged into.
    pub host: String,
    /// The host-side link we created, if any.
    pub host_ifname: Option<String>,
    pub mtu: u32,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

#[allow(async_fn_in_trait)]
pub trait Driver {
    /// Check the request against the host as it is; changes nothing.
    async fn validate(&self, cx: &Ctx<'_>) -> Result<()>;
    /// Build the host side and the guest's link; journal every create.
    async fn attach(&self, cx: &mut Ctx<'_>, j: &mut Journal) -> Result<HostSide>;
    /// Undo an attachment described by `rec`. Must be idempotent.
    async fn detach(&self, host: &Net, cont: &Net, rec: &Record) -> Result<()>;
}

/// Static dispatch over the drivers (async trait methods are not object-safe).
pub enum AnyDriver {
    Bridge(bridge::Bridge),
    Macvlan(macvlan::Macvlan),
    Ipvlan(ipvlan::Ipvlan),
    Phys(phys::Phys),
    Dummy(dummy::Dummy),
    Ipoib(ipoib::Ipoib),
    Ovs(Box<ovs::Ovs>),
    Vf(vf::Vf),
}

impl AnyDriver {
    pub async fn validate(&self, cx: &Ctx<'_>) -> Result<()> {
        match self {
            AnyDriver::Bridge(d) => d.validate(cx).await,
            AnyDriver::Macvlan(d) => d.validate(cx).await,
            AnyDriver::Ipvlan(d) => d.validate(cx).await,
            AnyDriver::Phys(d) => d.validate(cx).await,
            AnyDriver::Dummy(d) => d.validate(cx).await,
            AnyDriver::Ipoib(d) => d.validate(cx).await,
            AnyDriver::Ovs(d) => d.validate(cx).await,
            AnyDriver::Vf(d) => d.validate(cx).await,
        }
    }
    pub async fn attach(&self, cx: &mut Ctx<'_>, j: &mut Journal) -> Result<HostSide> {
        match self {
            AnyDriver::Bridge(d) => d.attach(cx, j).await,
            AnyDriver::Macvlan(d) => d.attach(cx, j).await,
            AnyDriver::Ipvlan(d) => d.attach(cx, j).await,
            AnyDriver::Phys(d) => d.attach(cx, j).await,
            AnyDriver::Dummy(d) => d.attach(cx, j).await,
            AnyDriver::Ipoib(d) => d.attach(cx, j).await,
            AnyDriver::Ovs(d) => d.attach(cx, j).await,
            AnyDriver::Vf(d) => d.attach(cx, j).await,
        }
    }
    pub async fn detach(&self, host: &Net, cont: &Net, rec: &Record) -> Result<()> {
        match self {
            AnyDriver::Bridge(d) => d.detach(host, cont, rec).await,
            AnyDriver::Macvlan(d) => d.detach(host, cont, rec).await,
            AnyDriver::Ipvlan(d) => d.detach(host, cont, rec).await,
            AnyDriver::Phys(d) => d.detach(host, cont, rec).await,
            AnyDriver::Dummy(d) => d.detach(host, cont, rec).await,
            AnyDriver::Ipoib(d) => d.detach(host, cont, rec).await,
            AnyDriver::Ovs(d) => d.detach(host, cont, rec).await,
            AnyDriver::Vf(d) => d.detach(host, cont, rec).await,
        }
    }

    /// The driver that built a recorded attachment; None for a kind no
    /// driver builds (a point-to-point end: `undo` serves it).
    pub fn for_record(rec: &Record) -> Option<Self> {
        Some(match rec.k {
            Kind::Bridge => AnyDriver::Bridge(bridge::Bridge::default()),
            // Detach does not depend on the mode.
            Kind::Macvlan => AnyDriver::Macvlan(macvlan::Macvlan {
                mode: crate::netlink::child::MacVlanMode::Bridge,
            }),
            Kind::Ipvlan => AnyDriver::Ipvlan(ipvlan::Ipvlan {
                mode: crate::netlink::child::IpVlanMode::L2,
            }),
            Kind::Phys => AnyDriver::Phys(phys::Phys),
            Kind::Dummy => AnyDriver::Dummy(dummy::Dummy),
            Kind::Ipoib => AnyDriver::Ipoib(ipoib::Ipoib),
            Kind::Ovs => AnyDriver::Ovs(Box::new(ovs::Ovs::for_detach())),
            Kind::P2p => return None,
            Kind::Sriov => AnyDriver::Vf(vf::Vf { target: None }),
        })
    }
}

/// Undo a recorded attachment, whatever its kind (idempotent): through
/// the driver that built it, or, for an end of a point-to-point link
/// (`pipework link` builds those; no driver does), by deleting that end
/// while it still carries its verified record; the kernel takes its peer.
/// Every verb and subsystem that takes something down comes here.
pub async fn undo(host: &Net, cont: &Net, rec: &Record) -> Result<()> {
    match AnyDriver::for_record(rec) {
        Some(d) => d.detach(host, cont, rec).await,
        None => crate::inventory::delete_if_ours(cont, rec).await,
    }
}

/// Pick the driver the classic way: look at what the host interface is.
pub async fn select(req: &AttachRequest, host: &Net) -> Result<AnyDriver> {
    // `vf:PF[:N]` or a PCI address: an SR-IOV VF. The VF-only flags
    // mean nothing to any other kind.
    if crate::sriov::is_vf_token(&req.host) {
        if req.mode != HostMode::Auto {
            return Err(Error::bad(
                &req.host,
                "a VF is always moved into the guest; drop --direct-phys/--macvlan-mode/--ipvlan",
            ));
        }
        let target = crate::sriov::parse_target(&req.host)?;
        return Ok(AnyDriver::Vf(vf::Vf {
            target: Some(target),
        }));
    }
    if let Some(flag) = req.sriov.first_flag() {
        return Err(Error::bad(
            flag,
            format!(
                "only applies to SR-IOV VFs (vf:PF, vf:PF:N or a PCI address), not {}",
                req.host
            ),
        ));
    }
    let d = select_kind(req, host).await?;
    if req.tc_redirect && !matches!(d, AnyDriver::Bridge(_)) {
        return Err(Error::bad(
            "--tc-redirect",
            format!(
                "only applies to a Linux bridge, and {} is not one",
                req.host
            ),
        ));
    }
    // A raw `@tag` that is not a VLAN id only means something to IPoIB
    // (a pkey); everywhere else it is a bad VLAN id.
    if !matches!(d, AnyDriver::Ipoib(_))
        && req.vlan.is_none()
        && let Some(t) = &req.extras.tag
    {
        crate::request::parse_vlan(t)?;
    }
    Ok(d)
}

async fn select_kind(req: &AttachRequest, host: &Net) -> Result<AnyDriver> {
    match &req.mode {
        HostMode::DirectPhys => return Ok(AnyDriver::Phys(phys::Phys)),
        HostMode::Macvlan(m) => {
            return Ok(AnyDriver::Macvlan(macvlan::Macvlan {
                mode: macvlan::parse_mode(m)?,
            }));
        }
        HostMode::Ipvlan(m) => {
            return Ok(AnyDriver::Ipvlan(ipvlan::Ipvlan {
                mode: ipvlan::parse_mode(m)?,
            }));
        }
        HostMode::Auto => {}
    }
    if req.host == "dummy" {
        return Ok(AnyDriver::Dummy(dummy::Dummy));
    }
    let found = if req.host.starts_with("mac:") {
        Some(child::resolve_parent(host, req).await?)
    } else {
        host.link_by_name(&req.host).await?
    };
    if let Some(d) = ovs::claim(req, found.as_ref()).await? {
        return Ok(AnyDriver::Ovs(Box::new(d)));
    }
    match found {
        Some(l) if l.is_bridge() => Ok(AnyDriver::Bridge(bridge::Bridge { existing: Some(l) })),
        Some(l) if l.kind.as_deref() == Some("openvswitch") || req.host.starts_with("ovs") => {
            Err(Error::NotSupported(format!("{}: Open vSwitch", req.host)))
        }
        Some(l) if l.link_type == child::ARPHRD_INFINIBAND => Ok(AnyDriver::Ipoib(ipoib::Ipoib)),
        // Any other existing interface: a macvlan child, as the original.
        Some(_) => Ok(AnyDriver::Macvlan(macvlan::Macvlan {
            mode: crate::netlink::child::MacVlanMode::Bridge,
        })),
        None if req.host.starts_with("ovs") => {
            Err(Error::NotSupported(format!("{}: Open vSwitch", req.host)))
        }
        None if req.host.starts_with("br") || req.create => {
            Ok(AnyDriver::Bridge(bridge::Bridge::default()))
        }
        None => Err(Error::bad(
            &req.host,
            "no such interface; pipework creates a bridge only when its name starts with 'br' (or pass --create)",
        )),
    }
}
