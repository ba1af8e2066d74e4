//! ipvlan (`--ipvlan l2|l3|l3s`): like macvlan, but every child shares the
//! parent's MAC address — for uplinks that allow one MAC per port (802.1X,
//! some clouds). The original had none.
use super::child::{attach_child, detach_child, validate_parent};
use super::{Ctx, Driver, HostSide};
use crate::error::{Error, Result};
use crate::netlink::child::{ChildKind, IpVlanMode, ipvlan_mode_name};
use crate::netlink::{Journal, Net};
use crate::record::Record;

pub struct Ipvlan {
    pub mode: IpVlanMode,
}

pub fn parse_mode(s: &str) -> Result<IpVlanMode> {
    match s {
        "l2" => Ok(IpVlanMode::L2),
        "l3" => Ok(IpVlanMode::L3),
        "l3s" => Ok(IpVlanMode::L3S),
        _ => Err(Error::bad(s, "ipvlan mode must be l2, l3 or l3s")),
    }
}

pub fn mode_name(m: IpVlanMode) -> &'static str {
    ipvlan_mode_name(m)
}

impl Driver for Ipvlan {
    async fn validate(&self, cx: &Ctx<'_>) -> Result<()> {
        if let Some(mac) = cx.req.mac {
            return Err(Error::bad(
                crate::request::format_mac(&mac),
                "ipvlan children share the parent's MAC address; drop the MAC, or use macvlan (no --ipvlan)",
            ));
        }
        validate_parent(cx, "ipvlan").await.map(|_| ())
    }

    async fn attach(&self, cx: &mut Ctx<'_>, j: &mut Journal) -> Result<HostSide> {
        let kind = ChildKind::Ipvlan(self.mode);
        let (parent, vlan_name, mtu) =
            attach_child(cx, j, kind, mode_name(self.mode), None).await?;
        let mut notes = vec![format!("ipvlan mode {}", mode_name(self.mode))];
        if let Some(v) = &vlan_name {
            notes.push(format!("on VLAN interface {v}"));
        }
        if self.mode != IpVlanMode::L2 {
            notes.push("l3 modes do not pass ARP or broadcast: give the gateway as a route, DHCP will not work".into());
        }
        Ok(HostSide {
            kind: "ipvlan",
            host: parent.name.clone(),
            host_ifname: vlan_name,
            mtu,
            notes,
        })
    }

    async fn detach(&self, host: &Net, cont: &Net, rec: &Record) -> Result<()> {
        detach_child(host, cont, rec).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes() {
        for w in ["l2", "l3", "l3s"] {
            assert_eq!(parse_mode(w).map(mode_name).ok(), Some(w));
        }
        assert!(
            parse_mode("l4")
                .unwrap_err()
                .to_string()
                .starts_with("l4: ipvlan mode")
        );
    }
}
