//! SR-IOV VF properties, read and set through the PF with RTM_GETLINK /
//! RTM_SETLINK and the IFLA_VF_* attributes (what `ip link set PF vf N …`
//! sends).
//!
//! One property per request: the kernel applies a VF list in a fixed order
//! and stops at the first refusal without saying which one it was, and
//! users need to know which property their NIC rejects.
use super::Net;
use super::errors::nl_err;
use crate::error::{Error, Result};
use futures::TryStreamExt;
use netlink_packet_route::AddressFamily;
use netlink_packet_route::link::{
    LinkAttribute, LinkExtentMask, LinkVfInfo, VfInfo, VfInfoLinkState, VfInfoMac, VfInfoRate,
    VfInfoSpoofCheck, VfInfoTrust, VfInfoVlan, VfLinkState, VfVlan, VfVlanInfo, VlanProtocol,
};
use rtnetlink::LinkUnspec;

/// A VF's properties as its PF reports them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VfReport {
    /// Administrative MAC; all zeros when none is set.
    pub mac: [u8; 6],
    pub vlan: u16,
    pub qos: u8,
    /// 802.1ad (QinQ) rather than 802.1Q.
    pub ad: bool,
    pub spoof: bool,
    pub trust: bool,
    /// 0 auto, 1 enable, 2 disable (IFLA_VF_LINK_STATE_*).
    pub link: u32,
    /// Mbit/s; 0 is no limit.
    pub min: u32,
    pub max: u32,
}

/// One VF property to set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VfProp {
    /// All zeros clears an administrative MAC (igb, ixgbe, i40e, mlx5).
    Mac([u8; 6]),
    Vlan {
        vid: u16,
        qos: u8,
        ad: bool,
    },
    Spoof(bool),
    Trust(bool),
    LinkState(u32),
    Rate {
        min: u32,
        max: u32,
    },
}

fn info(vf: u32, p: VfProp) -> VfInfo {
    match p {
        VfProp::Mac(m) => VfInfo::Mac(VfInfoMac::new(vf, &m)),
        VfProp::Vlan { vid, qos, ad: true } => VfInfo::VlanList(vec![VfVlan::Info(
            VfVlanInfo::new(vf, u32::from(vid), u32::from(qos), VlanProtocol::Ieee8021Ad),
        )]),
        // The plain attribute: every driver with VF VLANs understands it.
        VfProp::Vlan {
            vid,
            qos,
            ad: false,
        } => VfInfo::Vlan(VfInfoVlan::new(vf, u32::from(vid), u32::from(qos))),
        VfProp::Spoof(b) => VfInfo::SpoofCheck(VfInfoSpoofCheck::new(vf, b)),
        VfProp::Trust(b) => VfInfo::Trust(VfInfoTrust::new(vf, b)),
        VfProp::LinkState(l) => VfInfo::LinkState(VfInfoLinkState::new(vf, VfLinkState::from(l))),
        VfProp::Rate { min, max } => VfInfo::Rate(VfInfoRate::new(vf, min, max)),
    }
}

fn from_attrs(attrs: &[VfInfo]) -> VfReport {
    let mut p = VfReport::default();
    for a in attrs {
        match a {
            VfInfo::Mac(m) => {
                if let Ok(mac) = <[u8; 6]>::try_from(&m.mac[..6]) {
                    p.mac = mac;
                }
            }
            VfInfo::Vlan(v) => {
                p.vlan = v.vlan_id as u16;
                p.qos = v.qos as u8;
            }
            VfInfo::VlanList(l) => {
                if let Some(VfVlan::Info(i)) = l.first() {
                    p.vlan = i.vlan_id as u16;
                    p.qos = i.qos as u8;
                    p.ad = i.protocol == VlanProtocol::Ieee8021Ad;
                }
            }
            VfInfo::SpoofCheck(s) => p.spoof = s.enabled,
            VfInfo::Trust(t) => p.trust = t.enabled,
            VfInfo::LinkState(l) => p.link = u32::from(l.state),
            VfInfo::Rate(r) => {
                p.min = r.min_tx_rate;
                p.max = r.max_tx_rate;
            }
            _ => {}
        }
    }
    p
}

impl Net {
    /// VF `vf`'s properties, as PF `pf_index` reports them.
    pub async fn vf_report(&self, pf_index: u32, vf: u32) -> Result<VfReport> {
        // The VF list is only in the answer when asked for (RTEXT_FILTER_VF).
        let msg = self
            .handle
            .link()
            .get()
            .match_index(pf_index)
            .set_filter_mask(AddressFamily::Unspec, vec![LinkExtentMask::Vf])
            .execute()
            .try_next()
            .await
            .map_err(|e| nl_err("reading the VFs of the PF", e))?
            .ok_or_else(|| Error::other(format!("PF #{pf_index} is gone")))?;
        let list = msg.attributes.iter().find_map(|a| match a {
            LinkAttribute::VfInfoList(l) => Some(l),
            _ => None,
        });
        let info = list
            .into_iter()
            .flatten()
            .find(|LinkVfInfo(attrs)| {
                attrs
                    .iter()
                    .any(|a| matches!(a, VfInfo::Mac(m) if m.vf_id == vf))
            })
            .ok_or_else(|| Error::other(format!("the PF does not report VF {vf}")))?;
        Ok(from_attrs(&info.0))
    }

    /// Set one property of VF `vf` through PF `pf_index`. A refusal keeps
    /// the kernel's errno (`Error::errno`), for the caller to name.
    pub async fn set_vf(&self, pf_index: u32, vf: u32, p: VfProp) -> Result<()> {
        let mut msg = LinkUnspec::new_with_index(pf_index).build();
        msg.attributes
            .push(LinkAttribute::VfInfoList(vec![LinkVfInfo(vec![info(
                vf, p,
            )])]));
        self.handle
            .link()
            .set(msg)
            .execute()
            .await
            .map_err(|e| nl_err(format!("VF {vf}"), e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reported_attributes_become_a_report() {
        let attrs = vec![
            info(3, VfProp::Mac([2, 0, 0, 0, 0, 9])),
            info(
                3,
                VfProp::Vlan {
                    vid: 10,
                    qos: 2,
                    ad: false,
                },
            ),
            info(
                3,
                VfProp::Vlan {
                    vid: 10,
                    qos: 2,
                    ad: true,
                },
            ),
            info(3, VfProp::Spoof(true)),
            info(3, VfProp::Trust(false)),
            info(3, VfProp::LinkState(2)),
            info(3, VfProp::Rate { min: 0, max: 100 }),
        ];
        assert_eq!(
            from_attrs(&attrs),
            VfReport {
                mac: [2, 0, 0, 0, 0, 9],
                vlan: 10,
                qos: 2,
                ad: true,
                spoof: true,
                trust: false,
                link: 2,
                min: 0,
                max: 100,
            }
        );
    }
}
