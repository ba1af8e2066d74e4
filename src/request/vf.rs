//! SR-IOV VF properties of a request (`--spoofchk`, `--trust`, …): parsed
//! and checked here, with the rest of the request, before anything is
//! touched; `sriov` applies them.
use crate::error::{Error, Result};

/// VF properties from the command line (`--spoofchk`, `--trust`, …);
/// the MAC and VLAN id come from the classic `[mac][@vlan]` token.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Options {
    pub spoof: Option<bool>,
    pub trust: Option<bool>,
    pub link: Option<u32>,
    pub min: Option<u32>,
    pub max: Option<u32>,
    pub qos: Option<u8>,
    /// `--vlan-proto 802.1ad`.
    pub ad: bool,
}

fn on_off(flag: &str, v: &str) -> Result<bool> {
    match v {
        "on" => Ok(true),
        "off" => Ok(false),
        _ => Err(Error::bad(v, format!("{flag} takes on or off"))),
    }
}

/// The raw flag values, as the command line or a CNI config gives them.
#[derive(Debug, Default)]
pub struct RawOptions<'a> {
    pub spoofchk: Option<&'a str>,
    pub trust: Option<&'a str>,
    pub link_state: Option<&'a str>,
    pub min_tx_rate: Option<u32>,
    pub max_tx_rate: Option<u32>,
    pub vlan_qos: Option<u8>,
    pub vlan_proto: Option<&'a str>,
}

impl Options {
    pub fn parse(r: &RawOptions) -> Result<Options> {
        let link = r
            .link_state
            .map(|v| match v {
                "auto" => Ok(0),
                "enable" => Ok(1),
                "disable" => Ok(2),
                _ => Err(Error::bad(v, "--link-state takes auto, enable or disable")),
            })
            .transpose()?;
        if let Some(q) = r.vlan_qos
            && q > 7
        {
            return Err(Error::bad(q, "--vlan-qos takes a priority 0-7"));
        }
        let ad = match r.vlan_proto {
            None | Some("802.1Q") | Some("802.1q") => false,
            Some("802.1ad") | Some("802.1AD") => true,
            Some(v) => return Err(Error::bad(v, "--vlan-proto takes 802.1Q or 802.1ad")),
        };
        if let (Some(min), Some(max)) = (r.min_tx_rate, r.max_tx_rate)
            && max != 0
            && min > max
        {
            return Err(Error::bad(
                min,
                format!("--min-tx-rate is above --max-tx-rate {max}"),
            ));
        }
        Ok(Options {
            spoof: r.spoofchk.map(|v| on_off("--spoofchk", v)).transpose()?,
            trust: r.trust.map(|v| on_off("--trust", v)).transpose()?,
            link,
            min: r.min_tx_rate,
            max: r.max_tx_rate,
            qos: r.vlan_qos,
            ad,
        })
    }

    /// The first VF-only flag given, to name it when the host is no VF.
    pub fn first_flag(&self) -> Option<&'static str> {
        [
            (self.spoof.is_some(), "--spoofchk"),
            (self.trust.is_some(), "--trust"),
            (self.link.is_some(), "--link-state"),
            (self.min.is_some(), "--min-tx-rate"),
            (self.max.is_some(), "--max-tx-rate"),
            (self.qos.is_some(), "--vlan-qos"),
            (self.ad, "--vlan-proto"),
        ]
        .into_iter()
        .find_map(|(on, f)| on.then_some(f))
    }
}
