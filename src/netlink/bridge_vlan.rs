//! 802.1Q on a Linux bridge: VLAN filtering on the bridge
//! (`IFLA_BR_VLAN_FILTERING`, an RTM_NEWLINK change of the bridge's link
//! info) and the VLANs of one port (an AF_BRIDGE RTM_SETLINK/RTM_DELLINK
//! carrying `IFLA_AF_SPEC`/`IFLA_BRIDGE_VLAN_INFO`), the same requests
//! `ip link set BR type bridge vlan_filtering 1` and `bridge vlan add` send.
use super::errors::nl_err;
use super::{Link, Net};
use crate::error::Result;
use futures::StreamExt;
use netlink_packet_core::{NLM_F_ACK, NLM_F_REQUEST, NetlinkMessage, NetlinkPayload};
use netlink_packet_route::link::{
    AfSpecBridge, BridgeVlanInfo, BridgeVlanInfoFlags, InfoBridge, InfoData, InfoKind,
    LinkAttribute, LinkInfo, LinkMessage,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

/// A bridge's VLAN settings, as the kernel reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BridgeVlan {
    pub filtering: bool,
    /// The PVID a port gets when it joins (0: none).
    pub default_pvid: u16,
}

impl Net {
    /// VLAN settings of `bridge`; `None` when this kernel has no bridge
    /// VLAN filtering at all (built without CONFIG_BRIDGE_VLAN_FILTERING:
    /// it then reports neither a default PVID nor a VLAN protocol, and
    /// refuses `vlan_filtering 1` with EOPNOTSUPP). Read-only.
    pub async fn bridge_vlan(&self, bridge: &Link) -> Result<Option<BridgeVlan>> {
        let mut msgs = self.handle.link().get().match_index(bridge.index).execute();
        let mut filtering = false;
        let mut pvid = None;
        while let Some(m) = msgs.next().await {
            let m = m.map_err(|e| nl_err(format!("looking at {}", bridge.name), e))?;
            for a in &m.attributes {
                let LinkAttribute::LinkInfo(infos) = a else {
                    continue;
                };
                for i in infos {
                    let LinkInfo::Data(InfoData::Bridge(opts)) = i else {
                        continue;
                    };
                    for o in opts {
                        match o {
                            InfoBridge::VlanFiltering(f) => filtering = *f,
                            InfoBridge::VlanDefaultPvid(p) => pvid = Some(*p),
                            _ => {}
                        }
                    }
                }
            }
        }
        Ok(pvid.map(|default_pvid| BridgeVlan {
            filtering,
            default_pvid,
        }))
    }

    /// Turn VLAN filtering on or off on a bridge.
    pub async fn set_vlan_filtering(&self, bridge: &Link, on: bool) -> Result<()> {
        if self.dry_run {
            self.show(format_args!(
                "link set {} type bridge vlan_filtering {}",
                bridge.name,
                u8::from(on)
            ));
            return Ok(());
        }
        let mut msg = LinkMessage::default();
        msg.header.index = bridge.index;
        msg.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Bridge),
            LinkInfo::Data(InfoData::Bridge(vec![InfoBridge::VlanFiltering(on)])),
        ]));
        // A change of link info is an RTM_NEWLINK on the existing device,
        // without NLM_F_CREATE/NLM_F_EXCL.
        self.ack(RouteNetlinkMessage::NewLink(msg))
            .await
            .map_err(|e| {
                nl_err(
                    format!("setting vlan_filtering {} on {}", u8::from(on), bridge.name),
                    e,
                )
            })
    }

    /// Hand the bridge's own IPv4 and IPv6 frames to the netfilter hooks
    /// (`ip link set BR type bridge nf_call_iptables 1 nf_call_ip6tables
    /// 1`): the per-bridge form of `net.bridge.bridge-nf-call-ip{,6}tables`,
    /// effective while br_netfilter is loaded whatever those sysctls say.
    /// Both families at once: a dual-stack network needs its IPv6 replies
    /// tracked just as its IPv4 ones, and the setting costs nothing on a
    /// bridge that carries no IPv6.
    pub async fn set_nf_call_iptables(&self, bridge: &Link) -> Result<()> {
        if self.dry_run {
            self.show(format_args!(
                "link set {} type bridge nf_call_iptables 1 nf_call_ip6tables 1",
                bridge.name
            ));
            return Ok(());
        }
        let mut msg = LinkMessage::default();
        msg.header.index = bridge.index;
        msg.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Bridge),
            LinkInfo::Data(InfoData::Bridge(vec![
                InfoBridge::NfCallIpTables(true),
                InfoBridge::NfCallIp6Tables(true),
            ])),
        ]));
        self.ack(RouteNetlinkMessage::NewLink(msg))
            .await
            .map_err(|e| nl_err(format!("setting nf_call_iptables on {}", bridge.name), e))
    }

    /// Add (or change) VLANs `lo..=hi` on a bridge port, in one request
    /// (a range is two entries flagged begin and end). `pvid` makes the
    /// VLAN the one untagged frames coming in belong to (only for a single
    /// VLAN), `untagged` strips the tag going out.
    pub async fn port_vlan_add(
        &self,
        port: &Link,
        lo: u16,
        hi: u16,
        pvid: bool,
        untagged: bool,
    ) -> Result<()> {
        let mut flags = BridgeVlanInfoFlags::empty();
        let mut words = String::new();
        if pvid && lo == hi {
            flags |= BridgeVlanInfoFlags::Pvid;
            words.push_str(" pvid");
        }
        if untagged {
            flags |= BridgeVlanInfoFlags::Untagged;
            words.push_str(" untagged");
        }
        let vids = if lo == hi {
            lo.to_string()
        } else {
            format!("{lo}-{hi}")
        };
        if self.dry_run {
            println!("bridge vlan add dev {} vid {vids}{words}", port.name);
            return Ok(());
        }
        let entries = if lo == hi {
            vec![BridgeVlanInfo { flags, vid: lo }]
        } else {
            vec![
                BridgeVlanInfo {
                    flags: flags | BridgeVlanInfoFlags::RangeBegin,
                    vid: lo,
                },
                BridgeVlanInfo {
                    flags: flags | BridgeVlanInfoFlags::RangeEnd,
                    vid: hi,
                },
            ]
        };
        self.ack(RouteNetlinkMessage::SetLink(port_msg(port, entries)))
            .await
            .map_err(|e| nl_err(format!("adding VLAN {vids} to {}", port.name), e))
    }

    /// Remove one VLAN from a bridge port (absent already is fine).
    pub async fn port_vlan_del(&self, port: &Link, vid: u16) -> Result<()> {
        if self.dry_run {
            println!("bridge vlan del dev {} vid {vid}", port.name);
            return Ok(());
        }
        let msg = port_msg(
            port,
            vec![BridgeVlanInfo {
                flags: BridgeVlanInfoFlags::empty(),
                vid,
            }],
        );
        match self.ack(RouteNetlinkMessage::DelLink(msg)).await {
            Ok(()) => Ok(()),
            Err(e) => {
                let err = nl_err(format!("removing VLAN {vid} from {}", port.name), e);
                if err.errno() == Some(libc::ENOENT) {
                    Ok(())
                } else {
                    Err(err)
                }
            }
        }
    }

    /// Send one request and wait for the kernel's acknowledgement.
    async fn ack(&self, msg: RouteNetlinkMessage) -> std::result::Result<(), rtnetlink::Error> {
        let mut req = NetlinkMessage::from(msg);
        req.header.flags = NLM_F_REQUEST | NLM_F_ACK;
        let mut handle = self.handle.clone();
        let mut replies = handle.request(req)?;
        while let Some(m) = replies.next().await {
            if let NetlinkPayload::Error(e) = m.payload {
                if e.code.is_some() {
                    return Err(rtnetlink::Error::NetlinkError(e));
                }
                return Ok(());
            }
        }
        Ok(())
    }
}

/// An AF_BRIDGE link message for `port` carrying VLAN entries (no
/// `BRIDGE_FLAGS_SELF`: the bridge the port belongs to applies them to the
/// port only, never to the bridge device itself).
fn port_msg(port: &Link, entries: Vec<BridgeVlanInfo>) -> LinkMessage {
    let mut msg = LinkMessage::default();
    msg.header.interface_family = AddressFamily::Bridge;
    msg.header.index = port.index;
    msg.attributes.push(LinkAttribute::AfSpecBridge(
        entries.into_iter().map(AfSpecBridge::VlanInfo).collect(),
    ));
    msg
}

/// One VLAN of a bridge port, as `bridge vlan show` lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortVlan {
    pub vid: u16,
    /// Untagged frames coming in get this VLAN.
    pub pvid: bool,
    /// Frames of this VLAN leave untagged.
    pub untagged: bool,
}

impl Net {
    /// The VLANs of bridge port `port` (what `bridge vlan show dev PORT`
    /// lists): an AF_BRIDGE link dump asking for VLAN info. Empty when
    /// the port has none or the bridge does not filter. Read-only.
    pub async fn port_vlans(&self, port: &Link) -> Result<Vec<PortVlan>> {
        use netlink_packet_route::link::LinkExtentMask;
        let mut msgs = self
            .handle
            .link()
            .get()
            .set_filter_mask(AddressFamily::Bridge, vec![LinkExtentMask::Brvlan])
            .execute();
        let mut out = Vec::new();
        while let Some(m) = msgs.next().await {
            let m = m.map_err(|e| nl_err(format!("listing the VLANs of {}", port.name), e))?;
            if m.header.index != port.index {
                continue;
            }
            for a in &m.attributes {
                let LinkAttribute::AfSpecBridge(specs) = a else {
                    continue;
                };
                for s in specs {
                    if let AfSpecBridge::VlanInfo(v) = s {
                        out.push(PortVlan {
                            vid: v.vid,
                            pvid: v.flags.contains(BridgeVlanInfoFlags::Pvid),
                            untagged: v.flags.contains(BridgeVlanInfoFlags::Untagged),
                        });
                    }
                }
            }
        }
        Ok(out)
    }
}
