//! macvlan: the classic default for a host interface that is not a bridge
//! (`pipework eth1 $CID 192.168.1.2/24`). The guest gets a macvlan child of
//! the NIC (or of its `NIC.VID` VLAN), born inside the guest with its final
//! name and the parent's MTU. Mode `bridge` by default, as the original;
//! `--macvlan-mode private|vepa|passthru` for the others (pipework#239).
use super::child::{attach_child, detach_child, validate_parent};
use super::{Ctx, Driver, HostSide};
use crate::error::{Error, Result};
use crate::netlink::child::{ChildKind, MacVlanMode, macvlan_mode_name};
use crate::netlink::{Journal, Net};
use crate::record::Record;

pub struct Macvlan {
    pub mode: MacVlanMode,
}

/// `--macvlan-mode` word to the kernel's mode.
pub fn parse_mode(s: &str) -> Result<MacVlanMode> {
    match s {
        "bridge" => Ok(MacVlanMode::Bridge),
        "private" => Ok(MacVlanMode::Private),
        "vepa" => Ok(MacVlanMode::Vepa),
        "passthru" | "passthrough" => Ok(MacVlanMode::Passthrough),
        _ => Err(Error::bad(
            s,
            "macvlan mode must be bridge, private, vepa or passthru",
        )),
    }
}

pub fn mode_name(m: MacVlanMode) -> &'static str {
    macvlan_mode_name(m)
}

impl Driver for Macvlan {
    async fn validate(&self, cx: &Ctx<'_>) -> Result<()> {
        validate_parent(cx, "macvlan").await.map(|_| ())
    }

    async fn attach(&self, cx: &mut Ctx<'_>, j: &mut Journal) -> Result<HostSide> {
        let kind = ChildKind::Macvlan(self.mode);
        let (parent, vlan_name, mtu) =
            attach_child(cx, j, kind, mode_name(self.mode), cx.req.mac).await?;
        let mut notes = Vec::new();
        if let Some(v) = &vlan_name {
            notes.push(format!("on VLAN interface {v}"));
        }
        if let Some(n) = super::host_shim::route_new_guest(cx, j, &parent).await? {
            notes.push(n);
        }
        Ok(HostSide {
            kind: "macvlan",
            host: parent.name.clone(),
            host_ifname: vlan_name,
            mtu,
            notes,
        })
    }

    async fn detach(&self, host: &Net, cont: &Net, rec: &Record) -> Result<()> {
        super::host_shim::unroute_guest(host, cont, rec).await?;
        detach_child(host, cont, rec).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes() {
        for (w, m) in [
            ("bridge", MacVlanMode::Bridge),
            ("private", MacVlanMode::Private),
            ("vepa", MacVlanMode::Vepa),
            ("passthru", MacVlanMode::Passthrough),
        ] {
            assert_eq!(parse_mode(w).ok(), Some(m));
            assert_eq!(mode_name(m), w);
        }
        let e = parse_mode("source").unwrap_err().to_string();
        assert!(e.starts_with("source: macvlan mode must be"), "{e}");
    }
}
