//! Links born from a parent (macvlan, ipvlan, IPoIB) or from nothing
//! (dummy), created directly inside the guest namespace with their final
//! name: the kernel takes the parent's index in *our* namespace and the
//! guest's namespace fd in the same request, so nothing ever appears on the
//! host under a temporary name.
//!
//! Shared by the phys-family drivers: parent lookup (including `mac:`),
//! message construction, the kernel's refusals turned into advice, and
//! rollback.
use crate::error::{Error, Result};
use crate::netlink::{Journal, Link, Net};
use crate::netns::NetNs;
use crate::request::{AttachRequest, format_mac, parse_mac};
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
    journal_delete(cont, j, format!("{} {}", spec.kind, spec.name), link.index);
    Ok(link)
}

/// Record the deletion of link `index` in `net` (idempotent: ENODEV is fine).
pub fn journal_delete(net: &Net, j: &mut Journal, what: String, index: u32) {
    let h = net.handle.clone();
    j.record(what.clone(), async move {
        match h.link().del(index).execute().await {
            Ok(()) => Ok(()),
            Err(e) => {
                let err = Error::netlink(format!("deleting {what}"), e);
                if err.errno() == Some(libc::ENODEV) {
                    Ok(())
                } else {
                    Err(err)
                }
            }
        }
    });
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
