//! A VF's administrative properties, read and set through its PF with
//! RTM_GETLINK/RTM_SETLINK and the IFLA_VF_* attributes (what `ip link set
//! PF vf N …` sends).
//!
//! Each property goes in its own request: the kernel applies a VF list in a
//! fixed order and stops at the first refusal without saying which one it
//! was, and users need to know which property their NIC rejects.
use crate::error::{Error, Result};
use crate::netlink::Net;
use crate::request::{format_mac, parse_mac};
use futures::TryStreamExt;
use netlink_packet_route::AddressFamily;
use netlink_packet_route::link::{
    LinkAttribute, LinkExtentMask, LinkVfInfo, VfInfo, VfInfoLinkState, VfInfoMac, VfInfoRate,
    VfInfoSpoofCheck, VfInfoTrust, VfInfoVlan, VfLinkState, VfVlan, VfVlanInfo, VlanProtocol,
};
use rtnetlink::LinkUnspec;
use serde::{Deserialize, Serialize};

/// How a VF is configured (short keys: it lives in a state file and the
/// record of the guest link).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Props {
    /// Administrative MAC; all zeros when none is set.
    pub mac: String,
    #[serde(default)]
    pub vlan: u16,
    #[serde(default)]
    pub qos: u8,
    /// 802.1ad (QinQ) rather than 802.1Q.
    #[serde(default)]
    pub ad: bool,
    #[serde(default)]
    pub spoof: bool,
    #[serde(default)]
    pub trust: bool,
    /// 0 auto, 1 enable, 2 disable (IFLA_VF_LINK_STATE_*).
    #[serde(default)]
    pub link: u32,
    /// Mbit/s; 0 is no limit.
    #[serde(default)]
    pub min: u32,
    #[serde(default)]
    pub max: u32,
}

/// What the user asked to set; None leaves a property as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Want {
    pub mac: Option<[u8; 6]>,
    /// VLAN id, QoS (priority 0-7) and 802.1ad.
    pub vlan: Option<(u16, u8, bool)>,
    pub spoof: Option<bool>,
    pub trust: Option<bool>,
    pub link: Option<u32>,
    pub min: Option<u32>,
    pub max: Option<u32>,
}

impl Want {
    pub fn is_empty(&self) -> bool {
        *self == Want::default()
    }
}

pub fn link_state_name(v: u32) -> &'static str {
    match v {
        0 => "auto",
        1 => "enable",
        2 => "disable",
        _ => "unknown",
    }
}

pub fn on_off(b: bool) -> &'static str {
    if b { "on" } else { "off" }
}

/// The symbolic name of the errnos NICs answer VF requests with.
pub fn errno_name(e: i32) -> &'static str {
    match e {
        libc::EINVAL => "EINVAL",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        libc::EPROTONOSUPPORT => "EPROTONOSUPPORT",
        libc::EPERM => "EPERM",
        libc::EBUSY => "EBUSY",
        libc::ERANGE => "ERANGE",
        libc::EAGAIN => "EAGAIN",
        libc::ENODEV => "ENODEV",
        libc::EIO => "EIO",
        _ => "errno",
    }
}

/// The VF's current properties as the PF reports them.
pub async fn read(host: &Net, pf_index: u32, vf: u32) -> Result<Props> {
    // The VF list is only in the answer when asked for (RTEXT_FILTER_VF).
    let msg = host
        .handle
        .link()
        .get()
        .match_index(pf_index)
        .set_filter_mask(AddressFamily::Unspec, vec![LinkExtentMask::Vf])
        .execute()
        .try_next()
        .await
        .map_err(|e| Error::netlink("reading the VFs of the PF", e))?
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

fn from_attrs(attrs: &[VfInfo]) -> Props {
    let mut p = Props::default();
    for a in attrs {
        match a {
            VfInfo::Mac(m) => p.mac = format_mac(&m.mac[..6]),
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

/// One property, one request. `what` names it as the user wrote it.
async fn set(host: &Net, pf: &str, pf_index: u32, vf: u32, info: VfInfo, what: &str) -> Result<()> {
    let mut msg = LinkUnspec::new_with_index(pf_index).build();
    msg.attributes
        .push(LinkAttribute::VfInfoList(vec![LinkVfInfo(vec![info])]));
    host.handle.link().set(msg).execute().await.map_err(|e| {
        let err = Error::netlink("", e);
        match err.errno() {
            Some(n) => Error::other(format!(
                "{pf} refused {what} for VF {vf}: {} ({}, errno {n})",
                std::io::Error::from_raw_os_error(n)
                    .to_string()
                    .split(" (os error")
                    .next()
                    .unwrap_or_default(),
                errno_name(n)
            )),
            None => Error::other(format!("{pf}: setting {what} for VF {vf}: {err}")),
        }
    })
}

fn vlan_info(vf: u32, vid: u16, qos: u8, ad: bool) -> VfInfo {
    if ad {
        VfInfo::VlanList(vec![VfVlan::Info(VfVlanInfo::new(
            vf,
            u32::from(vid),
            u32::from(qos),
            VlanProtocol::Ieee8021Ad,
        ))])
    } else {
        // The plain attribute: every driver with VF VLANs understands it.
        VfInfo::Vlan(VfInfoVlan::new(vf, u32::from(vid), u32::from(qos)))
    }
}

/// Apply what the user asked for, property by property; the first refusal
/// stops (the caller's journal restores the ones already set). `now` is
/// the VF's current state, for the half of a rate pair left unspecified.
pub async fn apply(
    host: &Net,
    pf: &str,
    pf_index: u32,
    vf: u32,
    want: &Want,
    now: &Props,
) -> Result<()> {
    if let Some(mac) = want.mac {
        let what = format!("MAC {}", format_mac(&mac));
        set(
            host,
            pf,
            pf_index,
            vf,
            VfInfo::Mac(VfInfoMac::new(vf, &mac)),
            &what,
        )
        .await?;
    }
    if let Some((vid, qos, ad)) = want.vlan {
        let what = format!(
            "VLAN {vid}{}{}",
            if qos > 0 {
                format!(" qos {qos}")
            } else {
                String::new()
            },
            if ad { " proto 802.1ad" } else { "" }
        );
        set(host, pf, pf_index, vf, vlan_info(vf, vid, qos, ad), &what).await?;
    }
    if let Some(b) = want.spoof {
        let what = format!("--spoofchk {}", on_off(b));
        let info = VfInfo::SpoofCheck(VfInfoSpoofCheck::new(vf, b));
        set(host, pf, pf_index, vf, info, &what).await?;
    }
    if let Some(b) = want.trust {
        let what = format!("--trust {}", on_off(b));
        set(
            host,
            pf,
            pf_index,
            vf,
            VfInfo::Trust(VfInfoTrust::new(vf, b)),
            &what,
        )
        .await?;
    }
    if let Some(l) = want.link {
        let what = format!("--link-state {}", link_state_name(l));
        let info = VfInfo::LinkState(VfInfoLinkState::new(vf, VfLinkState::from(l)));
        set(host, pf, pf_index, vf, info, &what).await?;
    }
    if want.min.is_some() || want.max.is_some() {
        let min = want.min.unwrap_or(now.min);
        let max = want.max.unwrap_or(now.max);
        let what = match (want.min, want.max) {
            (Some(a), Some(b)) => format!("--min-tx-rate {a} --max-tx-rate {b}"),
            (Some(a), None) => format!("--min-tx-rate {a}"),
            _ => format!("--max-tx-rate {max}"),
        };
        let info = VfInfo::Rate(VfInfoRate::new(vf, min, max));
        set(host, pf, pf_index, vf, info, &what).await?;
    }
    Ok(())
}

/// Whether the MAC the PF reports is back to how we found it. With no
/// administrative MAC set, a PF may report the MAC the VF driver registered
/// itself (`own`, the netdev's MAC): that is the untouched state too, and
/// "restoring" all zeros over it would clear the VF's unicast filter.
pub fn mac_as_found(now: &str, orig: &str, own: &str) -> bool {
    now == orig || (parse_mac(orig).is_err() && now == own)
}

/// Put back every property that differs from `orig` (and only those: a
/// property the NIC cannot set was never changed, so it is never retried).
/// `own` is the VF netdev's original MAC. Idempotent. Every property is
/// attempted; the first error is returned.
pub async fn restore(
    host: &Net,
    pf: &str,
    pf_index: u32,
    vf: u32,
    orig: &Props,
    own: &str,
) -> Result<()> {
    let now = read(host, pf_index, vf).await?;
    let mut first: Option<Error> = None;
    let mut note = |r: Result<()>| {
        if let Err(e) = r
            && first.is_none()
        {
            first = Some(e);
        }
    };
    // Rates first: a max rate can depend on the link, the others cannot.
    if (now.min, now.max) != (orig.min, orig.max) {
        let info = VfInfo::Rate(VfInfoRate::new(vf, orig.min, orig.max));
        note(set(host, pf, pf_index, vf, info, "its original tx rates").await);
    }
    if now.link != orig.link {
        let info = VfInfo::LinkState(VfInfoLinkState::new(vf, VfLinkState::from(orig.link)));
        note(set(host, pf, pf_index, vf, info, "its original link state").await);
    }
    if now.trust != orig.trust {
        let info = VfInfo::Trust(VfInfoTrust::new(vf, orig.trust));
        note(set(host, pf, pf_index, vf, info, "its original trust").await);
    }
    if now.spoof != orig.spoof {
        let info = VfInfo::SpoofCheck(VfInfoSpoofCheck::new(vf, orig.spoof));
        note(set(host, pf, pf_index, vf, info, "its original spoofchk").await);
    }
    if (now.vlan, now.qos, now.ad) != (orig.vlan, orig.qos, orig.ad) {
        let info = vlan_info(vf, orig.vlan, orig.qos, orig.ad && orig.vlan != 0);
        note(set(host, pf, pf_index, vf, info, "its original VLAN").await);
    }
    if !mac_as_found(&now.mac, &orig.mac, own) {
        // All zeros clears an administrative MAC (igb, ixgbe, i40e, mlx5).
        let mac = parse_mac(&orig.mac).unwrap_or([0; 6]);
        let info = VfInfo::Mac(VfInfoMac::new(vf, &mac));
        note(set(host, pf, pf_index, vf, info, "its original MAC").await);
    }
    match first {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reported_attributes_become_props() {
        let attrs = vec![
            VfInfo::Mac(VfInfoMac::new(3, &[2, 0, 0, 0, 0, 9])),
            VfInfo::Vlan(VfInfoVlan::new(3, 10, 2)),
            VfInfo::VlanList(vec![VfVlan::Info(VfVlanInfo::new(
                3,
                10,
                2,
                VlanProtocol::Ieee8021Ad,
            ))]),
            VfInfo::SpoofCheck(VfInfoSpoofCheck::new(3, true)),
            VfInfo::Trust(VfInfoTrust::new(3, false)),
            VfInfo::LinkState(VfInfoLinkState::new(3, VfLinkState::Disable)),
            VfInfo::Rate(VfInfoRate::new(3, 0, 100)),
        ];
        let p = from_attrs(&attrs);
        assert_eq!(
            p,
            Props {
                mac: "02:00:00:00:00:09".into(),
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
        let back: Props = serde_json::from_str(&serde_json::to_string(&p).unwrap()).unwrap();
        assert_eq!(back, p);
    }

    #[test]
    fn a_vf_showing_its_own_mac_is_as_found() {
        let (zero, own) = ("00:00:00:00:00:00", "02:b2:b9:2b:02:57");
        assert!(mac_as_found(own, zero, own));
        assert!(mac_as_found(zero, zero, own));
        assert!(!mac_as_found("02:5a:00:00:00:01", zero, own));
        // An administrative MAC the admin had set must come back exactly.
        assert!(!mac_as_found(own, "02:11:22:33:44:55", own));
    }

    #[test]
    fn errnos_are_named() {
        assert_eq!(errno_name(libc::EOPNOTSUPP), "EOPNOTSUPP");
        assert_eq!(errno_name(libc::EINVAL), "EINVAL");
    }
}
