//! IPoIB: a host interface of ARPHRD type 32 (InfiniBand) gets an IPoIB
//! child — the InfiniBand counterpart of a macvlan — optionally in the
//! partition given as `@PKEY` (hex, as the original's `pkey 0x$PKEY`).
//! The guest name defaults to ib0 (the original: "the IPoIB kernel module is
//! fussy"), and a MAC address is refused: an IPoIB hardware address is 20
//! bytes derived from the port's GID and queue pair, not something to set.
//!
//! Not tested on hardware: this machine has no InfiniBand device and the
//! kernel has no IB emulation usable here (rdma_rxe gives RoCE, type 1). The
//! message construction and every refusal are unit-tested.
use super::child::{self, ARPHRD_INFINIBAND, ChildKind, ChildSpec, detach_child};
use super::{Ctx, Driver, HostSide};
use crate::error::{Error, Result};
use crate::netlink::{Journal, Link, Net};
use crate::record::Record;
use crate::request::{AttachRequest, check_ifname, format_mac};

pub struct Ipoib;

/// The classic default guest name for host interface `host`: ib0 when it
/// is InfiniBand, else eth1. Read from sysfs like the original, because the
/// command line is parsed before any netlink connection exists.
pub fn default_ifname(host: &str) -> &'static str {
    let name = match host.strip_prefix("mac:") {
        Some(mac) => sysfs_by_mac(mac),
        None => Some(host.to_string()),
    };
    let is_ib = name
        .and_then(|n| std::fs::read_to_string(format!("/sys/class/net/{n}/type")).ok())
        .is_some_and(|t| t.trim() == ARPHRD_INFINIBAND.to_string());
    if is_ib { "ib0" } else { "eth1" }
}

fn sysfs_by_mac(mac: &str) -> Option<String> {
    let want = mac.to_ascii_lowercase();
    std::fs::read_dir("/sys/class/net")
        .ok()?
        .flatten()
        .find_map(|e| {
            let a = std::fs::read_to_string(e.path().join("address")).ok()?;
            (a.trim() == want).then(|| e.file_name().to_string_lossy().into_owned())
        })
}

/// `@PKEY` → the 16-bit partition key. The kernel sets the full-membership
/// bit itself and refuses 0 and 0x8000 (both mean "no partition").
pub fn parse_pkey(tag: &str) -> Result<u16> {
    let hex = tag.trim_start_matches("0x");
    let v = u16::from_str_radix(hex, 16).map_err(|_| {
        Error::bad(
            tag,
            "IPoIB partition key must be hex 0001-ffff (e.g. @8001), as in the original",
        )
    })?;
    if v & 0x7fff == 0 {
        return Err(Error::bad(
            tag,
            "partition key 0 / 0x8000 is the default partition; drop the @PKEY",
        ));
    }
    Ok(v)
}

/// The pkey a request asks for. A numeric `@VID` that passed as a VLAN id
/// is re-read as hex (`@8001` means pkey 0x8001 on InfiniBand).
pub fn requested_pkey(req: &AttachRequest) -> Result<Option<u16>> {
    match (&req.extras.tag, req.vlan) {
        (Some(t), _) => parse_pkey(t).map(Some),
        (None, Some(v)) => parse_pkey(&v.to_string()).map(Some),
        (None, None) => Ok(None),
    }
}

/// Everything the driver refuses before touching anything.
pub fn check_request(req: &AttachRequest, parent: &Link) -> Result<()> {
    if parent.link_type != ARPHRD_INFINIBAND {
        return Err(Error::bad(
            &req.host,
            format!(
                "is not an InfiniBand interface (link type {}, IPoIB needs 32)",
                parent.link_type
            ),
        ));
    }
    if let Some(mac) = req.mac {
        return Err(Error::bad(
            format_mac(&mac),
            "MAC addresses cannot be set on IPoIB interfaces (the hardware address comes from the port GID); drop it",
        ));
    }
    check_ifname(&req.ifname)?;
    requested_pkey(req)?;
    child::child_mtu(req, parent)?;
    Ok(())
}

/// The child to create: an IPoIB child of `parent`, in the requested
/// partition (IFLA_IPOIB_PKEY) when there is one.
pub fn spec(req: &AttachRequest, parent: &Link) -> Result<ChildSpec> {
    Ok(ChildSpec {
        name: req.ifname.clone(),
        kind: ChildKind::Ipoib(requested_pkey(req)?),
        parent: Some(parent.index),
        mtu: req.mtu,
        mac: None,
    })
}

impl Driver for Ipoib {
    async fn validate(&self, cx: &Ctx<'_>) -> Result<()> {
        let parent = child::resolve_parent(&cx.host, cx.req).await?;
        check_request(cx.req, &parent)
    }

    async fn attach(&self, cx: &mut Ctx<'_>, j: &mut Journal) -> Result<HostSide> {
        let parent = child::resolve_parent(&cx.host, cx.req).await?;
        super::vlan::ensure_up(&cx.host, j, &parent).await?;
        let spec = spec(cx.req, &parent)?;
        if let Some(p) = requested_pkey(cx.req)? {
            cx.record.x.pkey = Some(format!("{p:04x}"));
        }
        let link =
            child::create_in_guest(&cx.host, &cx.cont, &cx.guest.netns, j, &spec, &parent.name)
                .await?;
        let mtu = link.mtu;
        cx.made = (!cx.host.dry_run).then_some(link);
        Ok(HostSide {
            kind: "ipoib",
            host: parent.name.clone(),
            host_ifname: None,
            mtu,
            notes: vec![],
        })
    }

    async fn detach(&self, host: &Net, cont: &Net, rec: &Record) -> Result<()> {
        detach_child(host, cont, rec).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::Extras;

    fn req(tag: Option<&str>, mac: Option<[u8; 6]>, ifname: Option<&str>) -> AttachRequest {
        AttachRequest {
            host: "ib0".into(),
            guest: "c".into(),
            ifname: ifname.unwrap_or("ib0").into(),
            mac,
            extras: Extras {
                tag: tag.map(String::from),
            },
            ..Default::default()
        }
    }

    fn ib_parent() -> Link {
        Link {
            index: 5,
            name: "ib0".into(),
            mtu: 2044,
            link_type: ARPHRD_INFINIBAND,
            ..Default::default()
        }
    }

    #[test]
    fn spec_has_kind_parent_pkey_and_default_name() -> Result<()> {
        // The message itself is tested in netlink/child.rs.
        let s = spec(&req(Some("8001"), None, None), &ib_parent())?;
        assert_eq!(s.name, "ib0");
        assert_eq!(s.parent, Some(5));
        assert_eq!(s.mac, None);
        assert_eq!(s.kind, ChildKind::Ipoib(Some(0x8001)));
        Ok(())
    }

    #[test]
    fn without_pkey_no_ipoib_data_and_the_given_name() -> Result<()> {
        let s = spec(&req(None, None, Some("eth1")), &ib_parent())?;
        assert_eq!(s.name, "eth1");
        assert_eq!(s.kind, ChildKind::Ipoib(None));
        Ok(())
    }

    #[test]
    fn default_name_is_eth1_off_infiniband() {
        assert_eq!(default_ifname("lo"), "eth1");
        assert_eq!(default_ifname("pwp-no-such-if"), "eth1");
    }

    #[test]
    fn refusals() {
        let p = ib_parent();
        let e = check_request(&req(None, Some([2, 0, 0, 0, 0, 1]), None), &p)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("02:00:00:00:00:01: MAC addresses cannot be set on IPoIB"),
            "{e}"
        );
        for bad in ["zz", "0", "8000", "12345"] {
            let e = check_request(&req(Some(bad), None, None), &p)
                .unwrap_err()
                .to_string();
            assert!(e.starts_with(&format!("{bad}: ")), "{e}");
        }
        let eth = Link {
            link_type: 1,
            ..ib_parent()
        };
        let e = check_request(&req(None, None, None), &eth)
            .unwrap_err()
            .to_string();
        assert!(e.contains("not an InfiniBand interface"), "{e}");
        assert_eq!(parse_pkey("0x7fff").ok(), Some(0x7fff));
        assert_eq!(parse_pkey("ffff").ok(), Some(0xffff));
    }
}
