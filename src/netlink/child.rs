//! Links born from a parent (macvlan, ipvlan, IPoIB) or from nothing
//! (dummy), created directly inside a guest namespace: the kernel takes the
//! parent's index in *our* namespace and the guest's namespace fd in the
//! same request, so nothing ever appears on the host. Drivers say what
//! they want (`ChildSpec`); only this file turns it into RTM_NEWLINK (or,
//! in a dry run, into the iproute2 command).
use super::errors::nl_err;
use super::ops::mac_str;
use super::{Journal, Link, Net};
use crate::error::{Error, Result};
use crate::netns::NetNs;
use netlink_packet_route::link::{
    InfoData, InfoIpVlan, InfoIpoib, InfoKind, InfoMacVlan, LinkMessage,
};
pub use netlink_packet_route::link::{IpVlanMode, MacVlanMode};
use rtnetlink::{LinkMessageBuilder, LinkUnspec};
use std::os::fd::{AsRawFd, RawFd};

/// The kind of child and its kind-specific settings.
#[derive(Debug, Clone, PartialEq)]
pub enum ChildKind {
    Macvlan(MacVlanMode),
    Ipvlan(IpVlanMode),
    /// The partition key, when not the default partition.
    Ipoib(Option<u16>),
    Dummy,
}

impl ChildKind {
    /// The kernel's name for the kind (`IFLA_INFO_KIND`).
    pub fn name(&self) -> &'static str {
        match self {
            ChildKind::Macvlan(_) => "macvlan",
            ChildKind::Ipvlan(_) => "ipvlan",
            ChildKind::Ipoib(_) => "ipoib",
            ChildKind::Dummy => "dummy",
        }
    }

    fn info(&self) -> (InfoKind, Option<InfoData>) {
        match self {
            ChildKind::Macvlan(m) => (
                InfoKind::MacVlan,
                Some(InfoData::MacVlan(vec![InfoMacVlan::Mode(*m)])),
            ),
            ChildKind::Ipvlan(m) => (
                InfoKind::IpVlan,
                Some(InfoData::IpVlan(vec![InfoIpVlan::Mode(*m)])),
            ),
            ChildKind::Ipoib(p) => (
                InfoKind::Ipoib,
                p.map(|p| InfoData::Ipoib(vec![InfoIpoib::Pkey(p)])),
            ),
            ChildKind::Dummy => (InfoKind::Dummy, None),
        }
    }
}

impl std::fmt::Display for ChildKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// iproute2's word for a macvlan mode.
pub fn macvlan_mode_name(m: MacVlanMode) -> &'static str {
    match m {
        MacVlanMode::Private => "private",
        MacVlanMode::Vepa => "vepa",
        MacVlanMode::Passthrough => "passthru",
        MacVlanMode::Source => "source",
        _ => "bridge",
    }
}

/// iproute2's word for an ipvlan mode.
pub fn ipvlan_mode_name(m: IpVlanMode) -> &'static str {
    match m {
        IpVlanMode::L3 => "l3",
        IpVlanMode::L3S => "l3s",
        _ => "l2",
    }
}

/// What to create.
#[derive(Debug, Clone)]
pub struct ChildSpec {
    /// Final name inside the guest.
    pub name: String,
    pub kind: ChildKind,
    /// Parent index in the host namespace (None for dummy).
    pub parent: Option<u32>,
    pub mtu: Option<u32>,
    pub mac: Option<[u8; 6]>,
}

impl ChildSpec {
    /// The RTM_NEWLINK message; `target_ns` moves the new link into that
    /// namespace at birth (IFLA_NET_NS_FD).
    fn message(&self, target_ns: Option<RawFd>) -> LinkMessage {
        let (kind, info) = self.kind.info();
        let mut b =
            LinkMessageBuilder::<LinkUnspec>::new_with_info_kind(kind).name(self.name.clone());
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
        if let Some(info) = info {
            b = b.set_info_data(info);
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
            s.push_str(&format!(" address {}", mac_str(&mac)));
        }
        s.push_str(&format!(" netns {} type {}", ns.path.display(), self.kind));
        match &self.kind {
            ChildKind::Macvlan(m) => s.push_str(&format!(" mode {}", macvlan_mode_name(*m))),
            ChildKind::Ipvlan(m) => s.push_str(&format!(" mode {}", ipvlan_mode_name(*m))),
            ChildKind::Ipoib(Some(p)) => s.push_str(&format!(" pkey 0x{p:04x}")),
            _ => {}
        }
        s
    }
}

impl Net {
    /// Add-link-and-fetch: create `spec` inside `guest` (`inside` is that
    /// namespace's `Net`) under the name `temp()` gives, journal its removal, and
    /// return it as the guest sees it. The kernel's refusal goes through
    /// `refused` (with the spec as sent) so the caller can turn its errno
    /// into advice. A dry run prints the command with the final name.
    /// `parent_name` is only for messages.
    #[allow(clippy::too_many_arguments)]
    pub async fn add_child_in(
        &self,
        inside: &Net,
        guest: &NetNs,
        j: &mut Journal,
        spec: &ChildSpec,
        temp: impl FnOnce() -> String,
        parent_name: &str,
        refused: impl FnOnce(Error, &ChildSpec) -> Error,
    ) -> Result<Link> {
        if self.dry_run {
            self.show(format_args!("{}", spec.describe(parent_name, guest)));
            return Ok(Link {
                name: spec.name.clone(),
                mtu: spec.mtu.unwrap_or(1500),
                ..Default::default()
            });
        }
        let spec = ChildSpec {
            name: temp(),
            ..spec.clone()
        };
        let msg = spec.message(Some(guest.fd().as_raw_fd()));
        if let Err(e) = self.handle.link().add(msg).execute().await {
            let err = nl_err(format!("creating {} {}", spec.kind, spec.name), e);
            return Err(refused(err, &spec));
        }
        let link = inside.link_by_name(&spec.name).await?.ok_or_else(|| {
            Error::other(format!(
                "{} vanished after creation in the guest",
                spec.name
            ))
        })?;
        inside.journal_delete(j, format!("{} {}", spec.kind, spec.name), link.index);
        Ok(link)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_route::link::{LinkAttribute, LinkInfo};

    fn info_of(m: &LinkMessage) -> Vec<LinkInfo> {
        m.attributes
            .iter()
            .find_map(|x| match x {
                LinkAttribute::LinkInfo(i) => Some(i.clone()),
                _ => None,
            })
            .unwrap_or_default()
    }

    #[test]
    fn message_carries_parent_name_mtu_mac_and_namespace() {
        let spec = ChildSpec {
            name: "eth1".into(),
            kind: ChildKind::Macvlan(MacVlanMode::Bridge),
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
        let info = info_of(&m);
        assert!(info.contains(&LinkInfo::Kind(InfoKind::MacVlan)));
        assert!(
            info.contains(&LinkInfo::Data(InfoData::MacVlan(vec![InfoMacVlan::Mode(
                MacVlanMode::Bridge
            )])))
        );
    }

    #[test]
    fn ipoib_message_has_kind_parent_pkey_and_no_mac() {
        let spec = ChildSpec {
            name: "ib0".into(),
            kind: ChildKind::Ipoib(Some(0x8001)),
            parent: Some(5),
            mtu: None,
            mac: None,
        };
        let m = spec.message(Some(9));
        let a = &m.attributes;
        assert!(a.contains(&LinkAttribute::IfName("ib0".into())));
        assert!(a.contains(&LinkAttribute::Link(5)));
        assert!(a.contains(&LinkAttribute::NetNsFd(9)));
        assert!(!a.iter().any(|x| matches!(x, LinkAttribute::Address(_))));
        let info = info_of(&m);
        assert!(info.contains(&LinkInfo::Kind(InfoKind::Ipoib)));
        assert!(
            info.contains(&LinkInfo::Data(InfoData::Ipoib(vec![InfoIpoib::Pkey(
                0x8001
            )])))
        );
        // Serialises to a buffer the kernel would parse (attribute lengths consistent).
        use netlink_packet_core::Emitable;
        let mut buf = vec![0u8; m.buffer_len()];
        m.emit(&mut buf);
        assert!(buf.windows(2).any(|w| w == 0x8001u16.to_ne_bytes()));
    }

    #[test]
    fn kind_names_match_the_kernel() {
        for k in [
            ChildKind::Macvlan(MacVlanMode::Bridge),
            ChildKind::Ipvlan(IpVlanMode::L2),
            ChildKind::Ipoib(None),
            ChildKind::Dummy,
        ] {
            assert_eq!(k.name(), k.info().0.to_string());
        }
    }
}
