//! Links born from a parent (macvlan, ipvlan, IPoIB) or from nothing
//! (dummy), created directly inside the guest namespace with their final
//! name: the kernel takes the parent's index in *our* namespace and the
//! guest's namespace fd in the same request, so nothing ever appears on the
//! host under a temporary name.
//!
//! Shared by the child drivers (macvlan, ipvlan, IPoIB, dummy) and the
//! host shim: parent lookup (including `mac:`), the parent's checks and
//! its VLAN, message construction, the kernel's refusals turned into
//! advice, the early record, and detach.
use super::{Ctx, vlan};
use crate::error::{Error, Result};
use crate::lock::Lock;
pub use crate::netlink::child::{ChildKind, ChildSpec};
use crate::netlink::{Journal, Link, Net};
use crate::netns::NetNs;
use crate::record::{Ident, Kind, Record};
use crate::request::{AttachRequest, check_ifname, format_mac, parse_mac};

/// ARPHRD_INFINIBAND: the link type of an IPoIB parent.
pub const ARPHRD_INFINIBAND: u16 = 32;

/// Create `spec` inside `guest` under a temporary name, journal its
/// removal, and return it as the guest sees it. `parent_name` is only for
/// messages.
pub async fn create_in_guest(
    host: &Net,
    cont: &Net,
    guest: &NetNs,
    j: &mut Journal,
    spec: &ChildSpec,
    parent_name: &str,
) -> Result<Link> {
    // Born under a temporary name: the kernel ignores an alias on create,
    // and a link named `-i` with no record would block the re-run after a
    // SIGKILL. attach.rs renames and labels it in one request.
    let temp = crate::inventory::temp_name;
    host.add_child_in(cont, guest, j, spec, temp, parent_name, |e, sent| {
        explain(e, sent, parent_name)
    })
    .await
}

/// Turn the kernel's terse errno into what the user should do.
pub fn explain(err: Error, spec: &ChildSpec, parent: &str) -> Error {
    let kind = spec.kind.name();
    match err.errno() {
        // A parent's receive hook (rx_handler) has one owner: macvlan and
        // ipvlan cannot share a parent, and a bridge or bond port is taken.
        Some(libc::EBUSY) if spec.parent.is_some() => Error::other(format!(
            "{parent}: the kernel refused a {kind} child (EBUSY): {parent} already serves \
             another kind of child ({}), or is a bridge/bond port; a parent carries macvlan \
             or ipvlan interfaces, never both. Use the same kind as its other guests, or \
             another parent",
            if kind == "macvlan" {
                "ipvlan"
            } else {
                "macvlan"
            }
        )),
        Some(libc::EEXIST) => Error::bad(
            &spec.name,
            "already exists in the guest; pick another name with -i NAME",
        ),
        Some(libc::EOPNOTSUPP) | Some(libc::EAFNOSUPPORT) => Error::other(format!(
            "this kernel cannot create {kind} interfaces (module {} not built or loaded)",
            match kind {
                "ipoib" => "ib_ipoib",
                k => k,
            }
        )),
        Some(libc::EADDRNOTAVAIL) if spec.mac.is_some() => Error::bad(
            format_mac(&spec.mac.unwrap_or_default()),
            format!("the kernel refused this MAC for a {kind} interface"),
        ),
        Some(libc::EINVAL) if spec.mtu.is_some() => Error::bad(
            spec.mtu.unwrap_or_default(),
            format!("MTU refused: a {kind} child cannot exceed its parent {parent}'s MTU"),
        ),
        _ => err,
    }
}

/// The host interface a request names: an interface name, or `mac:ADDR`
/// (the classic way to find a NIC whatever it is called today).
pub async fn resolve_parent(host: &Net, req: &AttachRequest) -> Result<Link> {
    if let Some(mac_s) = req.host.strip_prefix("mac:") {
        let mac = parse_mac(mac_s).map_err(|_| {
            Error::bad(
                &req.host,
                "expected mac:XX:XX:XX:XX:XX:XX (the host NIC's MAC address)",
            )
        })?;
        return by_mac(host, &mac).await?.ok_or_else(|| {
            Error::bad(
                &req.host,
                "no host interface has this MAC address (see `ip -br link`)",
            )
        });
    }
    host.link_by_name(&req.host).await?.ok_or_else(|| {
        Error::bad(
            &req.host,
            "no such host interface (the parent must exist; see `ip -br link`)",
        )
    })
}

/// The link with this MAC. VLAN, macvlan and similar children copy their
/// parent's MAC, so prefer a link without a parent, then the lowest index.
pub async fn by_mac(host: &Net, mac: &[u8; 6]) -> Result<Option<Link>> {
    let mut hits: Vec<Link> = host
        .links()
        .await?
        .into_iter()
        .filter(|l| l.mac == mac)
        .collect();
    hits.sort_by_key(|l| (l.link.is_some() || is_virtual_child(l), l.index));
    Ok(hits.into_iter().next())
}

fn is_virtual_child(l: &Link) -> bool {
    matches!(
        l.kind.as_deref(),
        Some("vlan" | "macvlan" | "ipvlan" | "macvtap" | "ipvtap" | "bridge" | "bond")
    )
}

/// A child's MTU: the request's (at most the parent's), else the parent's.
pub fn child_mtu(req: &AttachRequest, parent: &Link) -> Result<u32> {
    match req.mtu {
        Some(m) if parent.mtu != 0 && m > parent.mtu => Err(Error::bad(
            m,
            format!(
                "larger than the parent {}'s MTU {}; raise the parent's first",
                parent.name, parent.mtu
            ),
        )),
        Some(m) => Ok(m),
        None => Ok(parent.mtu.max(68)),
    }
}

/// Checks shared by macvlan and ipvlan: a usable Ethernet parent, a valid
/// VLAN request, an MTU that fits.
pub async fn validate_parent(cx: &Ctx<'_>, kind: &str) -> Result<Link> {
    let req = cx.req;
    check_ifname(&req.ifname)?;
    let parent = resolve_parent(&cx.host, req).await?;
    if parent.is_bridge() {
        return Err(Error::bad(
            &req.host,
            format!(
                "is a Linux bridge: {kind} needs a NIC as parent; drop the {kind} option to plug the guest into the bridge with a veth pair"
            ),
        ));
    }
    if parent.link_type == ARPHRD_INFINIBAND {
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
    child_mtu(req, &parent)?;
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
    let nic = resolve_parent(&cx.host, req).await?;
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
            cx.record.x.vlan = Some(vid);
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
    kind: ChildKind,
    mode: &str,
    mac: Option<[u8; 6]>,
) -> Result<(Link, Option<String>, u32)> {
    let (parent, vlan_name, _lock) = attach_parent(cx, j).await?;
    let mtu = child_mtu(cx.req, &parent)?;
    cx.record.x.mode = Some(mode.into());
    let spec = ChildSpec {
        name: cx.req.ifname.clone(),
        kind,
        parent: Some(parent.index),
        mtu: Some(mtu),
        mac,
    };
    let link = create_in_guest(&cx.host, &cx.cont, &cx.guest.netns, j, &spec, &parent.name).await?;
    // Only a VLAN's cleanup needs to see this guest before attach.rs
    // writes the record; spare the round trip otherwise.
    if let Some(k) = Kind::from_name(spec.kind.name()) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ebusy_is_explained() {
        let spec = ChildSpec {
            name: "eth1".into(),
            kind: ChildKind::Macvlan(crate::netlink::child::MacVlanMode::Bridge),
            parent: Some(3),
            mtu: None,
            mac: None,
        };
        let e = Error::Netlink {
            context: "creating macvlan eth1".into(),
            errno: libc::EBUSY,
            message: "Device or resource busy".into(),
        };
        let s = explain(e, &spec, "eth0").to_string();
        assert!(
            s.contains("EBUSY") && s.contains("ipvlan") && s.contains("never both"),
            "{s}"
        );
    }
}
