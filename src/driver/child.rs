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
use crate::netlink::{Journal, Link, Net};
use crate::netns::NetNs;
use crate::record::{Ident, Kind, Record};
use crate::request::{AttachRequest, check_ifname, format_mac, parse_mac};
use netlink_packet_route::link::{
    InfoData, InfoIpVlan, InfoIpoib, InfoKind, InfoMacVlan, LinkMessage,
};
use rtnetlink::{LinkMessageBuilder, LinkUnspec};
use std::os::fd::{AsRawFd, RawFd};

/// ARPHRD_INFINIBAND: the link type of an IPoIB parent.
pub const ARPHRD_INFINIBAND: u16 = 32;

/// What to create.
#[derive(Debug, Clone)]
pub struct ChildSpec {
    /// Final name inside the guest.
    pub name: String,
    pub kind: InfoKind,
    pub info: Option<InfoData>,
    /// Parent index in the host namespace (None for dummy).
    pub parent: Option<u32>,
    pub mtu: Option<u32>,
    pub mac: Option<[u8; 6]>,
}

impl ChildSpec {
    /// The RTM_NEWLINK message; `target_ns` moves the new link into that
    /// namespace at birth (IFLA_NET_NS_FD).
    pub fn message(&self, target_ns: Option<RawFd>) -> LinkMessage {
        let mut b = LinkMessageBuilder::<LinkUnspec>::new_with_info_kind(self.kind.clone())
            .name(self.name.clone());
        if let Some(p) = self.parent {
            b = b.link(p);
        }
        if let Some(m) = self.mtu {
            b = b.mtu(m);
        }
        if let Some(mac) = self.mac {
            b = b.address(mac.to_vec());
        }
        if let Some(fd) = target_ns {
            b = b.setns_by_fd(fd);
        }
        if let Some(info) = &self.info {
            b = b.set_info_data(info.clone());
        }
        b.build()
    }

    /// The iproute2 spelling, for --dry-run.
    fn describe(&self, parent: &str, ns: &NetNs) -> String {
        let mut s = String::from("link add");
        if self.parent.is_some() {
            s.push_str(&format!(" link {parent}"));
        }
        s.push_str(&format!(" name {}", self.name));
        if let Some(m) = self.mtu {
            s.push_str(&format!(" mtu {m}"));
        }
        if let Some(mac) = self.mac {
            s.push_str(&format!(" address {}", format_mac(&mac)));
        }
        s.push_str(&format!(" netns {} type {}", ns.path.display(), self.kind));
        match &self.info {
            Some(InfoData::MacVlan(v)) => {
                for i in v {
                    if let InfoMacVlan::Mode(m) = i {
                        s.push_str(&format!(" mode {}", super::macvlan::mode_name(*m)));
                    }
                }
            }
            Some(InfoData::IpVlan(v)) => {
                for i in v {
                    if let InfoIpVlan::Mode(m) = i {
                        s.push_str(&format!(" mode {}", super::ipvlan::mode_name(*m)));
                    }
                }
            }
            Some(InfoData::Ipoib(v)) => {
                for i in v {
                    if let InfoIpoib::Pkey(p) = i {
                        s.push_str(&format!(" pkey 0x{p:04x}"));
                    }
                }
            }
            _ => {}
        }
        s
    }
}

/// Create `spec` inside `guest`, journal its removal, and return it as the
/// guest sees it. `parent_name` is only for messages.
pub async fn create_in_guest(
    host: &Net,
    cont: &Net,
    guest: &NetNs,
    j: &mut Journal,
    spec: &ChildSpec,
    parent_name: &str,
) -> Result<Link> {
    if host.dry_run {
        host.show(format_args!("{}", spec.describe(parent_name, guest)));
        return Ok(Link {
            name: spec.name.clone(),
            mtu: spec.mtu.unwrap_or(1500),
            ..Default::default()
        });
    }
    // Born under a temporary name: the kernel ignores an alias on create,
    // and a link named `-i` with no record would block the re-run after a
    // SIGKILL. attach.rs renames and labels it in one request.
    let mut spec = spec.clone();
    spec.name = crate::inventory::temp_name();
    let spec = &spec;
    let msg = spec.message(Some(guest.fd().as_raw_fd()));
    if let Err(e) = host.handle.link().add(msg).execute().await {
        return Err(explain(
            Error::netlink(format!("creating {} {}", spec.kind, spec.name), e),
            spec,
            parent_name,
        ));
    }
    let link = cont.link_by_name(&spec.name).await?.ok_or_else(|| {
        Error::other(format!(
            "{} vanished after creation in the guest",
            spec.name
        ))
    })?;
    cont.journal_delete(j, format!("{} {}", spec.kind, spec.name), link.index);
    Ok(link)
}

/// Turn the kernel's terse errno into what the user should do.
pub fn explain(err: Error, spec: &ChildSpec, parent: &str) -> Error {
    let kind = spec.kind.to_string();
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
            match kind.as_str() {
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
    kind: &'static str,
    mode: &str,
    info: (InfoKind, InfoData),
    mac: Option<[u8; 6]>,
) -> Result<(Link, Option<String>, u32)> {
    let (parent, vlan_name, _lock) = attach_parent(cx, j).await?;
    let mtu = child_mtu(cx.req, &parent)?;
    cx.record.x.mode = Some(mode.into());
    let spec = ChildSpec {
        name: cx.req.ifname.clone(),
        kind: info.0,
        info: Some(info.1),
        parent: Some(parent.index),
        mtu: Some(mtu),
        mac,
    };
    let link = create_in_guest(&cx.host, &cx.cont, &cx.guest.netns, j, &spec, &parent.name).await?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_route::link::{LinkAttribute, LinkInfo, MacVlanMode};

    #[test]
    fn message_carries_parent_name_mtu_mac_and_namespace() {
        let spec = ChildSpec {
            name: "eth1".into(),
            kind: InfoKind::MacVlan,
            info: Some(InfoData::MacVlan(vec![InfoMacVlan::Mode(
                MacVlanMode::Bridge,
            )])),
            parent: Some(7),
            mtu: Some(1400),
            mac: Some([2, 0, 0, 0, 0, 1]),
        };
        let m = spec.message(Some(42));
        let a = &m.attributes;
        assert!(a.contains(&LinkAttribute::IfName("eth1".into())));
        assert!(a.contains(&LinkAttribute::Link(7)));
        assert!(a.contains(&LinkAttribute::Mtu(1400)));
        assert!(a.contains(&LinkAttribute::Address(vec![2, 0, 0, 0, 0, 1])));
        assert!(a.contains(&LinkAttribute::NetNsFd(42)));
        let info = a.iter().find_map(|x| match x {
            LinkAttribute::LinkInfo(i) => Some(i.clone()),
            _ => None,
        });
        let info = info.unwrap_or_default();
        assert!(info.contains(&LinkInfo::Kind(InfoKind::MacVlan)));
        assert!(
            info.contains(&LinkInfo::Data(InfoData::MacVlan(vec![InfoMacVlan::Mode(
                MacVlanMode::Bridge
            )])))
        );
    }

    #[test]
    fn ebusy_is_explained() {
        let spec = ChildSpec {
            name: "eth1".into(),
            kind: InfoKind::MacVlan,
            info: None,
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
