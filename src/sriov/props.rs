//! A VF's administrative properties: what we found (kept in a state file
//! and the guest link's record), what the user asked for, and how each is
//! applied and put back, one property per request (`Net::set_vf`), so a
//! refusal names the property the NIC rejects.
use crate::error::{Error, Result};
use crate::netlink::Net;
use crate::netlink::vf::{VfProp, VfReport};
use crate::request::{format_mac, parse_mac};
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
    Ok(Props::from(host.vf_report(pf_index, vf).await?))
}

impl From<VfReport> for Props {
    fn from(r: VfReport) -> Props {
        Props {
            mac: format_mac(&r.mac),
            vlan: r.vlan,
            qos: r.qos,
            ad: r.ad,
            spoof: r.spoof,
            trust: r.trust,
            link: r.link,
            min: r.min,
            max: r.max,
        }
    }
}

/// One property, one request. `what` names it as the user wrote it.
async fn set(host: &Net, pf: &str, pf_index: u32, vf: u32, p: VfProp, what: &str) -> Result<()> {
    host.set_vf(pf_index, vf, p)
        .await
        .map_err(|err| match err.errno() {
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
        })
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
        set(host, pf, pf_index, vf, VfProp::Mac(mac), &what).await?;
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
        let p = VfProp::Vlan { vid, qos, ad };
        set(host, pf, pf_index, vf, p, &what).await?;
    }
    if let Some(b) = want.spoof {
        let what = format!("--spoofchk {}", on_off(b));
        set(host, pf, pf_index, vf, VfProp::Spoof(b), &what).await?;
    }
    if let Some(b) = want.trust {
        let what = format!("--trust {}", on_off(b));
        set(host, pf, pf_index, vf, VfProp::Trust(b), &what).await?;
    }
    if let Some(l) = want.link {
        let what = format!("--link-state {}", link_state_name(l));
        set(host, pf, pf_index, vf, VfProp::LinkState(l), &what).await?;
    }
    if want.min.is_some() || want.max.is_some() {
        let min = want.min.unwrap_or(now.min);
        let max = want.max.unwrap_or(now.max);
        let what = match (want.min, want.max) {
            (Some(a), Some(b)) => format!("--min-tx-rate {a} --max-tx-rate {b}"),
            (Some(a), None) => format!("--min-tx-rate {a}"),
            _ => format!("--max-tx-rate {max}"),
        };
        set(host, pf, pf_index, vf, VfProp::Rate { min, max }, &what).await?;
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
        let p = VfProp::Rate {
            min: orig.min,
            max: orig.max,
        };
        note(set(host, pf, pf_index, vf, p, "its original tx rates").await);
    }
    if now.link != orig.link {
        let p = VfProp::LinkState(orig.link);
        note(set(host, pf, pf_index, vf, p, "its original link state").await);
    }
    if now.trust != orig.trust {
        let p = VfProp::Trust(orig.trust);
        note(set(host, pf, pf_index, vf, p, "its original trust").await);
    }
    if now.spoof != orig.spoof {
        let p = VfProp::Spoof(orig.spoof);
        note(set(host, pf, pf_index, vf, p, "its original spoofchk").await);
    }
    if (now.vlan, now.qos, now.ad) != (orig.vlan, orig.qos, orig.ad) {
        let p = VfProp::Vlan {
            vid: orig.vlan,
            qos: orig.qos,
            ad: orig.ad && orig.vlan != 0,
        };
        note(set(host, pf, pf_index, vf, p, "its original VLAN").await);
    }
    if !mac_as_found(&now.mac, &orig.mac, own) {
        // All zeros clears an administrative MAC (igb, ixgbe, i40e, mlx5).
        let mac = parse_mac(&orig.mac).unwrap_or([0; 6]);
        note(set(host, pf, pf_index, vf, VfProp::Mac(mac), "its original MAC").await);
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
    fn props_keep_the_report_and_round_trip() {
        let p = Props::from(VfReport {
            mac: [2, 0, 0, 0, 0, 9],
            vlan: 10,
            qos: 2,
            ad: true,
            spoof: true,
            trust: false,
            link: 2,
            min: 0,
            max: 100,
        });
        assert_eq!(p.mac, "02:00:00:00:00:09");
        assert_eq!((p.vlan, p.qos, p.ad, p.link, p.max), (10, 2, true, 2, 100));
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
