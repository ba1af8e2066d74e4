//! macvlan: the classic default for a host interface that is not a bridge
//! (`pipework eth1 $CID 192.168.1.2/24`). The guest gets a macvlan child of
//! the NIC (or of its `NIC.VID` VLAN), born inside the guest with its final
//! name and the parent's MTU. Mode `bridge` by default, as the original;
//! `--macvlan-mode private|vepa|passthru` for the others (pipework#239).
use super::child::{self, ChildSpec};
use super::{Ctx, Driver, HostSide, vlan};
use crate::error::{Error, Result};
use crate::lock::Lock;
use crate::netlink::{Journal, Link, Net};
use crate::record::{Ident, Kind, Record};
use crate::request::check_ifname;
use netlink_packet_route::link::{InfoData, InfoKind, InfoMacVlan, MacVlanMode};

pub struct Macvlan {
    pub mode: MacVlanMode,
}

/// `--macvlan-mode` word to the kernel's mode.
pub fn parse_mode(s: &str) -> Result<MacVlanMode> {
    match s {
        "bridge" => Ok(MacVlanMode::Bridge),
        "private" => Ok(MacVlanMode::Private),
        "vepa" => Ok(MacVlanMode::Vepa),
        "passthru" | "passthrough" => Ok(MacVlanMode::Passthrough),
        _ => Err(Error::bad(
            s,
            "macvlan mode must be bridge, private, vepa or passthru",
        )),
    }
}

pub fn mode_name(m: MacVlanMode) -> &'static str {
    match m {
        MacVlanMode::Private => "private",
        MacVlanMode::Vepa => "vepa",
        MacVlanMode::Passthrough => "passthru",
        MacVlanMode::Source => "source",
        _ => "bridge",
    }
}

/// Checks shared by macvlan and ipvlan: a usable Ethernet parent, a valid
/// VLAN request, an MTU that fits.
pub async fn validate_parent(cx: &Ctx<'_>, kind: &str) -> Result<Link> {
    let req = cx.req;
    check_ifname(&req.ifname)?;
    let parent = child::resolve_parent(&cx.host, req).await?;
    if parent.is_bridge() {
        return Err(Error::bad(
            &req.host,
            format!(
                "is a Linux bridge: {kind} needs a NIC as parent; drop the {kind} option to plug the guest into the bridge with a veth pair"
            ),
        ));
    }
    if parent.link_type == child::ARPHRD_INFINIBAND {
        return Err(Error::bad(
            &req.host,
            format!(
                "is an InfiniBand interface: {kind} needs Ethernet; drop the option to get an IPoIB child"
            ),
        ));
    }
    if parent.index == 1 || parent.name == "lo" {
        return Err(Error::bad(
            &req.host,
            "the loopback interface cannot be a parent",
        ));
    }
    let vid = vlan::requested_vid(req.vlan, req.extras.tag.as_deref())?;
    if let Some(v) = vid {
        vlan::check(&cx.host, &parent, v).await?;
    }
    child::child_mtu(req, &parent)?;
    Ok(parent)
}

/// Build the parent the child hangs off: the NIC, or `NIC.VID`, up.
/// Returns it, the VLAN name to record when there is one, and the lock
/// that keeps a concurrent detach from removing that VLAN under us (hold
/// it until the guest link carries its record).
pub async fn attach_parent(
    cx: &mut Ctx<'_>,
    j: &mut Journal,
) -> Result<(Link, Option<String>, Option<Lock>)> {
    let req = cx.req;
    let nic = child::resolve_parent(&cx.host, req).await?;
    vlan::ensure_up(&cx.host, j, &nic).await?;
    match vlan::requested_vid(req.vlan, req.extras.tag.as_deref())? {
        None => Ok((nic, None, None)),
        Some(vid) => {
            let name = vlan::vlan_ifname(&nic.name, vid)?;
            let lock = if cx.host.dry_run {
                None
            } else {
                Some(Lock::take(&format!("vlan-{name}"))?)
            };
            let (v, _created) = vlan::ensure(&cx.host, j, &nic, vid).await?;
            cx.record.hi = Some(v.name.clone());
            cx.record
                .x
                .insert("vlan".into(), serde_json::Value::from(vid));
            Ok((v, Some(name), lock))
        }
    }
}

/// The child macvlan and ipvlan both build: the parent (or its VLAN), the
/// MTU, the child born in the guest, and the early record a concurrent VLAN
/// cleanup must see (the VLAN lock is held until then). Returns the parent,
/// the VLAN name when there is one, and the MTU.
pub async fn attach_child(
    cx: &mut Ctx<'_>,
    j: &mut Journal,
    kind: &'static str,
    mode: &str,
    info: (InfoKind, InfoData),
    mac: Option<[u8; 6]>,
) -> Result<(Link, Option<String>, u32)> {
    let (parent, vlan_name, _lock) = attach_parent(cx, j).await?;
    let mtu = child::child_mtu(cx.req, &parent)?;
    cx.record.x.insert("mode".into(), mode.into());
    let spec = ChildSpec {
        name: cx.req.ifname.clone(),
        kind: info.0,
        info: Some(info.1),
        parent: Some(parent.index),
        mtu: Some(mtu),
        mac,
    };
    let link =
        child::create_in_guest(&cx.host, &cx.cont, &cx.guest.netns, j, &spec, &parent.name).await?;
    // Only a VLAN's cleanup needs to see this guest before attach.rs
    // writes the record; spare the round trip otherwise.
    if let Some(k) = Kind::from_name(kind) {
        cx.record.k = k;
    }
    if !cx.host.dry_run && vlan_name.is_some() {
        early_record(cx, &link).await?;
    }
    cx.made = (!cx.host.dry_run).then_some(link);
    Ok((parent, vlan_name, mtu))
}

/// Write the (pending) record on the new guest link at once (attach.rs
/// writes it again): a concurrent detach deciding whether our VLAN is
/// still in use must already see this guest.
pub async fn early_record(cx: &Ctx<'_>, link: &Link) -> Result<()> {
    let id = Ident {
        ns: cx.record.n,
        index: link.index,
    };
    cx.cont.set_alias(link, &cx.record.seal(id)?).await
}

/// Detach for every child kind: delete the guest link, then the VLAN we
/// created if nobody else uses it.
pub async fn detach_child(host: &Net, cont: &Net, rec: &Record) -> Result<()> {
    if let Some(l) = cont.link_by_name(&rec.ifname).await? {
        cont.delete_link(&l).await?;
    }
    if let Some(v) = &rec.hi
        && !host.dry_run
    {
        vlan::release_if_unused(host, v).await?;
    }
    Ok(())
}

impl Driver for Macvlan {
    async fn validate(&self, cx: &Ctx<'_>) -> Result<()> {
        validate_parent(cx, "macvlan").await.map(|_| ())
    }

    async fn attach(&self, cx: &mut Ctx<'_>, j: &mut Journal) -> Result<HostSide> {
        let info = (
            InfoKind::MacVlan,
            InfoData::MacVlan(vec![InfoMacVlan::Mode(self.mode)]),
        );
        let (parent, vlan_name, mtu) =
            attach_child(cx, j, "macvlan", mode_name(self.mode), info, cx.req.mac).await?;
        let mut notes = Vec::new();
        if let Some(v) = &vlan_name {
            notes.push(format!("on VLAN interface {v}"));
        }
        if let Some(n) = super::host_shim::route_new_guest(cx, j, &parent).await? {
            notes.push(n);
        }
        Ok(HostSide {
            kind: "macvlan",
            host: parent.name.clone(),
            host_ifname: vlan_name,
            mtu,
            notes,
        })
    }

    async fn detach(&self, host: &Net, cont: &Net, rec: &Record) -> Result<()> {
        super::host_shim::unroute_guest(host, cont, rec).await?;
        detach_child(host, cont, rec).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes() {
        for (w, m) in [
            ("bridge", MacVlanMode::Bridge),
            ("private", MacVlanMode::Private),
            ("vepa", MacVlanMode::Vepa),
            ("passthru", MacVlanMode::Passthrough),
        ] {
            assert_eq!(parse_mode(w).ok(), Some(m));
            assert_eq!(mode_name(m), w);
        }
        let e = parse_mode("source").unwrap_err().to_string();
        assert!(e.starts_with("source: macvlan mode must be"), "{e}");
    }
}
