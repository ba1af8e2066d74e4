//! SR-IOV virtual functions: find them (sysfs), claim one (a lock per PF
//! and a state file per VF), configure it through its PF (IFLA_VF_*), and
//! put everything back afterwards. The driver that moves the VF's netdev
//! into a guest is `driver/vf.rs`; `gc.rs` here returns VFs whose guest
//! is gone.
//!
//! How a VF is named on the command line, in the classic grammar's style:
//! `vf:PF` takes a free VF of PF, `vf:PF:N` takes VF N, and a PCI address
//! (`0000:01:10.0`, as sriov-cni's `deviceID`) names a VF directly.
pub mod gc;
pub mod props;
pub mod restore;
pub mod state;
pub mod sysfs;

use crate::error::{Error, Result};
use std::collections::HashMap;
use sysfs::{Pf, Vf};

/// Where sysfs is; only unit tests use another root.
pub const SYSFS: &str = "/sys";

/// A VF as the user named it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `vf:PF` (any free VF) or `vf:PF:N`.
    Pf { pf: String, index: Option<u32> },
    /// A VF's PCI address.
    Pci(String),
}

/// Whether a host token names a VF at all (then `parse_target` decides
/// whether it does so correctly).
pub fn is_vf_token(host: &str) -> bool {
    host.starts_with("vf:") || sysfs::is_pci_address(host)
}

pub fn parse_target(host: &str) -> Result<Target> {
    if sysfs::is_pci_address(host) {
        return Ok(Target::Pci(host.to_string()));
    }
    let Some(rest) = host.strip_prefix("vf:") else {
        return Err(Error::bad(
            host,
            "not a VF: use vf:PF, vf:PF:INDEX or a PCI address like 0000:01:10.0",
        ));
    };
    let (pf, index) = match rest.split_once(':') {
        None => (rest, None),
        Some((pf, i)) => {
            let n = i.parse::<u32>().map_err(|_| {
                Error::bad(
                    host,
                    "the VF index after the PF must be a number: vf:PF:INDEX",
                )
            })?;
            (pf, Some(n))
        }
    };
    crate::request::check_ifname(pf).map_err(|_| {
        Error::bad(
            host,
            "the PF must be an interface name: vf:PF or vf:PF:INDEX",
        )
    })?;
    Ok(Target::Pf {
        pf: pf.to_string(),
        index,
    })
}

pub use crate::request::vf::{Options, RawOptions};

impl Options {
    /// What to set on the VF, with the MAC and VLAN id of the request.
    pub fn want(&self, mac: Option<[u8; 6]>, vlan: Option<u16>) -> Result<props::Want> {
        if vlan.is_none() && (self.qos.is_some() || self.ad) {
            return Err(Error::bad(
                if self.ad {
                    "--vlan-proto"
                } else {
                    "--vlan-qos"
                },
                "needs a VLAN id: add @VID to the MAC argument (e.g. @10)",
            ));
        }
        Ok(props::Want {
            mac,
            vlan: vlan.map(|v| (v, self.qos.unwrap_or(0), self.ad)),
            spoof: self.spoof,
            trust: self.trust,
            link: self.link,
            min: self.min,
            max: self.max,
        })
    }
}

/// The PF and (if named) the VF index a target resolves to.
pub fn resolve(target: &Target, token: &str) -> Result<(Pf, Option<u32>)> {
    let root = std::path::Path::new(SYSFS);
    let (pf, index) = match target {
        Target::Pf { pf, index } => (sysfs::pf_by_netdev(root, pf), *index),
        Target::Pci(pci) => match sysfs::vf_by_pci(root, pci) {
            Ok((pf, i)) => (Ok(pf), Some(i)),
            Err(e) => (Err(e), None),
        },
    };
    let pf = pf.map_err(|e| Error::bad(token, e))?;
    if pf.num == 0 {
        return Err(Error::bad(
            token,
            format!(
                "SR-IOV is disabled on {} (0 of {} VFs enabled); enable some first: echo N > /sys/class/net/{}/device/sriov_numvfs",
                pf.name, pf.total, pf.name
            ),
        ));
    }
    if let Some(i) = index
        && i >= pf.num
    {
        return Err(Error::bad(
            token,
            format!(
                "VF index {i} is out of range: {} has {} VFs enabled (0-{}), {} at most",
                pf.name,
                pf.num,
                pf.num - 1,
                pf.total
            ),
        ));
    }
    Ok((pf, index))
}

/// Pick the VF to use. `held` maps the PCI address of every VF that an
/// attachment holds to its guest; `busy` lists the host netdevs that the
/// host itself uses (up, or enslaved). An explicitly named VF only needs
/// to be in the host and unheld; an automatic pick also skips busy ones.
pub fn pick<'a>(
    pf: &'a Pf,
    index: Option<u32>,
    held: &HashMap<String, String>,
    busy: &[String],
    token: &str,
) -> Result<&'a Vf> {
    if let Some(i) = index {
        let vf = pf
            .vf(i)
            .ok_or_else(|| Error::bad(token, format!("{} reports no VF {i}", pf.name)))?;
        if let Some(g) = held.get(&vf.pci) {
            return Err(Error::bad(
                token,
                format!(
                    "VF {i} of {} ({}) is in use by pipework (guest {g}); detach it first or name another VF",
                    pf.name, vf.pci
                ),
            ));
        }
        if vf.netdev.is_none() {
            return Err(Error::bad(
                token,
                format!(
                    "VF {i} of {} ({}) has no netdev in the host namespace (in another namespace, or bound to a non-network driver such as vfio-pci)",
                    pf.name, vf.pci
                ),
            ));
        }
        return Ok(vf);
    }
    let free = pf.vfs.iter().find(|v| {
        !held.contains_key(&v.pci)
            && v.netdev
                .as_ref()
                .is_some_and(|n| !busy.iter().any(|b| b == n))
    });
    if let Some(vf) = free {
        return Ok(vf);
    }
    let mut ours: Vec<&str> = Vec::new();
    let mut up: Vec<&str> = Vec::new();
    let mut away: Vec<String> = Vec::new();
    for v in &pf.vfs {
        if let Some(g) = held.get(&v.pci) {
            ours.push(g);
        } else if let Some(n) = &v.netdev {
            up.push(n);
        } else {
            away.push(format!("VF {}", v.index));
        }
    }
    let mut parts = Vec::new();
    if !ours.is_empty() {
        parts.push(format!("{} by pipework ({})", ours.len(), ours.join(", ")));
    }
    if !up.is_empty() {
        parts.push(format!("{} up on the host ({})", up.len(), up.join(", ")));
    }
    if !away.is_empty() {
        parts.push(format!(
            "{} without a host netdev ({})",
            away.len(),
            away.join(", ")
        ));
    }
    Err(Error::bad(
        token,
        format!(
            "no free VF on {}: {} of {} in use: {}",
            pf.name,
            pf.vfs.len(),
            pf.num,
            parts.join("; ")
        ),
    ))
}

/// The VF part of an SR-IOV record (`Record::x`), also what `ls` shows.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LsInfo {
    pub pf: String,
    pub vf: u32,
    pub pci: String,
}

impl LsInfo {
    pub fn from_record(rec: &crate::record::Record) -> Option<LsInfo> {
        Some(LsInfo {
            pf: rec.x.vf_pf.clone()?,
            vf: rec.x.vf_index?,
            pci: rec.x.vf_pci.clone().filter(|p| sysfs::is_pci_address(p))?,
        })
    }

    pub fn write(&self, rec: &mut crate::record::Record) {
        rec.x.vf_pf = Some(self.pf.clone());
        rec.x.vf_index = Some(self.vf);
        rec.x.vf_pci = Some(self.pci.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pf() -> Pf {
        Pf {
            name: "eth0".into(),
            pci: "0000:01:00.0".into(),
            total: 7,
            num: 3,
            vfs: (0..3)
                .map(|i| Vf {
                    index: i,
                    pci: format!("0000:01:10.{}", i * 2),
                    netdev: (i != 2).then(|| format!("eth{}", i + 1)),
                })
                .collect(),
        }
    }

    #[test]
    fn targets() {
        assert_eq!(
            parse_target("vf:eth1").ok(),
            Some(Target::Pf {
                pf: "eth1".into(),
                index: None
            })
        );
        assert_eq!(
            parse_target("vf:eth1:3").ok(),
            Some(Target::Pf {
                pf: "eth1".into(),
                index: Some(3)
            })
        );
        assert_eq!(
            parse_target("0000:01:10.0").ok(),
            Some(Target::Pci("0000:01:10.0".into()))
        );
        for bad in ["vf:", "vf:eth1:x", "vf:eth1:-1", "vf:a/b", "eth1"] {
            assert!(parse_target(bad).is_err(), "{bad}");
        }
        assert!(is_vf_token("vf:eth1") && is_vf_token("0000:01:10.0") && !is_vf_token("eth1"));
    }

    #[test]
    fn the_first_free_vf_is_picked_and_a_full_pf_says_by_whom() {
        let pf = pf();
        let mut held = HashMap::new();
        assert_eq!(
            pick(&pf, None, &held, &[], "vf:eth0").map(|v| v.index).ok(),
            Some(0)
        );
        held.insert("0000:01:10.0".to_string(), "web1".to_string());
        assert_eq!(
            pick(&pf, None, &held, &[], "vf:eth0").map(|v| v.index).ok(),
            Some(1)
        );
        let e = pick(&pf, None, &held, &["eth2".into()], "vf:eth0")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            e.starts_with("vf:eth0: no free VF on eth0: 3 of 3 in use"),
            "{e}"
        );
        assert!(e.contains("1 by pipework (web1)"), "{e}");
        assert!(e.contains("1 up on the host (eth2)"), "{e}");
        assert!(e.contains("1 without a host netdev (VF 2)"), "{e}");
        assert!(!e.contains('\n'));
    }

    #[test]
    fn a_named_vf_must_be_in_the_host_and_unheld() {
        let pf = pf();
        let mut held = HashMap::new();
        // Busy (up) is fine when the user names the VF.
        assert!(pick(&pf, Some(1), &held, &["eth2".into()], "vf:eth0:1").is_ok());
        let e = pick(&pf, Some(2), &held, &[], "vf:eth0:2")
            .err()
            .map(|e| e.to_string());
        assert!(
            e.unwrap_or_default()
                .contains("no netdev in the host namespace")
        );
        held.insert("0000:01:10.2".to_string(), "db".to_string());
        let e = pick(&pf, Some(1), &held, &[], "vf:eth0:1")
            .err()
            .map(|e| e.to_string());
        assert!(
            e.unwrap_or_default()
                .contains("in use by pipework (guest db)")
        );
    }

    #[test]
    fn options() {
        let o = Options::parse(&RawOptions {
            spoofchk: Some("off"),
            trust: Some("on"),
            link_state: Some("disable"),
            max_tx_rate: Some(100),
            vlan_qos: Some(3),
            vlan_proto: Some("802.1ad"),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(
            (o.spoof, o.trust, o.link, o.max, o.qos, o.ad),
            (Some(false), Some(true), Some(2), Some(100), Some(3), true)
        );
        assert_eq!(o.first_flag(), Some("--spoofchk"));
        assert!(o.want(None, None).is_err());
        assert_eq!(o.want(None, Some(10)).unwrap().vlan, Some((10, 3, true)));
        for bad in [
            RawOptions {
                trust: Some("yes"),
                ..Default::default()
            },
            RawOptions {
                link_state: Some("up"),
                ..Default::default()
            },
            RawOptions {
                vlan_qos: Some(8),
                ..Default::default()
            },
            RawOptions {
                vlan_proto: Some("qinq"),
                ..Default::default()
            },
            RawOptions {
                min_tx_rate: Some(200),
                max_tx_rate: Some(100),
                ..Default::default()
            },
        ] {
            assert!(Options::parse(&bad).is_err(), "{bad:?}");
        }
        assert_eq!(Options::default().first_flag(), None);
    }
}
