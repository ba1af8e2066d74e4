//! `--direct-phys`: move the host interface itself (a NIC, an SR-IOV VF, or
//! its `NIC.VID` VLAN) into the guest, renamed to `-i`.
//!
//! Users lost NICs this way with the original (pipework#242): moving a
//! device to another namespace flushes its addresses, and nothing remembered
//! its name. We write the original name, MTU, MAC, up state and addresses
//! into the record on the device itself (its alias travels with it), so
//! `detach` — or a rollback — returns it exactly as it was. The kernel stays
//! the source of truth: no state file to lose.
use super::child;
use super::{Ctx, Driver, HostSide, vlan};
use crate::error::{Error, Result};
use crate::inventory::{self, host_ns};
use crate::netlink::{Journal, Link, LinkChange, Net};
use crate::netns::NetNs;
use crate::record::{Ident, Kind, Record, Seen};
use crate::request::{check_ifname, format_mac, parse_mac};
use ipnetwork::IpNetwork;
use serde::{Deserialize, Serialize};

pub struct Phys;

/// How the device looked on the host (short keys: the alias holds 255 bytes).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Original {
    /// Name on the host.
    pub n: String,
    /// MTU.
    pub m: u32,
    /// MAC, only when we changed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    /// Administratively up.
    pub up: bool,
    /// Addresses (the kernel flushes them on a namespace move).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub a: Vec<String>,
    /// Its alias before ours replaced it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub al: Option<String>,
    /// A VLAN sub-interface we created for this guest: delete, don't return.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub vc: bool,
}

impl Original {
    pub fn from_record(rec: &Record) -> Option<Original> {
        serde_json::from_value(rec.x.phys_original.clone()?).ok()
    }
}

/// Fit the record into the 255-byte alias: drop the old alias first, then
/// trailing addresses. Returns what had to be dropped, for a note.
pub fn fit(record: &mut Record, orig: &mut Original) -> Vec<String> {
    let mut dropped = Vec::new();
    loop {
        record.x.phys_original = serde_json::to_value(&*orig).ok();
        if record.sealed_len() <= 255 {
            return dropped;
        }
        if orig.al.take().is_some() {
            dropped.push("its previous alias".to_string());
        } else if let Some(a) = orig.a.pop() {
            dropped.push(a);
        } else {
            return dropped;
        }
    }
}

/// Refuse to move the interface that carries the host's default route: the
/// host would lose its uplink (and whoever is logged in over it).
async fn check_not_uplink(host: &Net, dev: &Link, token: &str) -> Result<()> {
    for v6 in [false, true] {
        if host
            .default_routes(v6)
            .await?
            .iter()
            .any(|r| r.oif() == Some(dev.index))
        {
            return Err(Error::bad(
                token,
                format!(
                    "{} carries the host's default route; moving it into a container would cut the host off. Use macvlan (drop --direct-phys) or move the route first",
                    dev.name
                ),
            ));
        }
    }
    Ok(())
}

/// Move `guest_index` (in `cont`) back to the host as `orig`, restoring MTU,
/// MAC, alias, addresses and state. A VLAN we created is deleted instead.
///
/// The move carries `rec` (with our pid) sealed for the host, so a SIGKILL
/// before the restore finishes leaves a device that `gc` recognises and
/// finishes restoring.
pub async fn return_to_host(
    host: &Net,
    cont: &Net,
    guest_index: u32,
    rec: &Record,
    orig: &Original,
) -> Result<()> {
    let here = NetNs::current()?;
    let dev = cont
        .link_by_index(guest_index)
        .await?
        .ok_or_else(|| Error::other(format!("{} is no longer in the guest", orig.n)))?;
    if orig.vc {
        return cont.delete_link(&dev).await;
    }
    if cont.dry_run {
        cont.show(format_args!(
            "link set {} netns <host> name {}",
            dev.name, orig.n
        ));
        return Ok(());
    }
    let mut moving = rec.clone();
    moving.p = Some(std::process::id());
    // The kernel keeps the ifindex across a move when it is free there.
    let alias = moving.seal(Ident {
        ns: host_ns(),
        index: guest_index,
    })?;
    let back = LinkChange {
        up: Some(false),
        netns: Some(&here),
        name: Some(orig.n.clone()),
        alias: Some(alias),
        ..Default::default()
    };
    let what = format!("returning {} to the host as {}", dev.name, orig.n);
    if let Err(err) = cont.change(&dev, &back, what).await {
        return Err(if err.errno() == Some(libc::EEXIST) {
            Error::other(format!(
                "cannot return {} to the host: the host now has another interface named {}; rename that one and run detach again (the NIC stays safe in the guest meanwhile)",
                dev.name, orig.n
            ))
        } else {
            err
        });
    }
    let back = host
        .link_by_name(&orig.n)
        .await?
        .ok_or_else(|| Error::other(format!("{} did not reappear on the host", orig.n)))?;
    restore_on_host(host, &back, orig).await
}

/// The host half of a return: MTU, MAC, alias, state, addresses. Also
/// what `gc` runs on a device whose return a SIGKILL interrupted, and what
/// a rollback runs before the device ever left. Idempotent.
pub async fn restore_on_host(host: &Net, back: &Link, orig: &Original) -> Result<()> {
    let set = LinkChange {
        mtu: Some(orig.m),
        mac: orig
            .mac
            .as_deref()
            .and_then(|m| parse_mac(m).ok())
            .map(|m| m.to_vec()),
        ..Default::default()
    };
    host.change(back, &set, format!("restoring {}'s MTU and MAC", orig.n))
        .await?;
    if orig.up {
        host.set_up(back).await?;
    }
    for a in &orig.a {
        if let Ok(net) = a.parse::<IpNetwork>() {
            match host.add_addr(back, net).await {
                Err(e) if e.errno() != Some(libc::EEXIST) => return Err(e),
                _ => {}
            }
        }
    }
    // Last: the record goes only once everything it describes is back,
    // so a SIGKILL anywhere above leaves it for gc to finish from.
    host.set_alias(back, orig.al.as_deref().unwrap_or_default())
        .await
}

/// The alias the device had before us: from our own record when a killed
/// run left one on it (it holds the original), else the alias itself.
fn previous_alias(dev: &Link) -> Option<String> {
    match inventory::read(dev, host_ns()) {
        Seen::Ours(r) => Original::from_record(&r).and_then(|o| o.al),
        Seen::Forged(_) => None,
        Seen::Foreign => dev
            .alias
            .clone()
            .filter(|a| !a.is_empty() && !crate::record::Mark::claims(a)),
    }
}

impl Driver for Phys {
    async fn validate(&self, cx: &Ctx<'_>) -> Result<()> {
        let req = cx.req;
        check_ifname(&req.ifname)?;
        let nic = child::resolve_parent(&cx.host, req).await?;
        if nic.is_bridge() || nic.kind.as_deref() == Some("openvswitch") {
            return Err(Error::bad(
                &req.host,
                "is a bridge: --direct-phys moves a NIC into the guest; drop --direct-phys to plug into the bridge",
            ));
        }
        if nic.index == 1 || nic.name == "lo" {
            return Err(Error::bad(
                &req.host,
                "the loopback interface cannot be moved",
            ));
        }
        if crate::inventory::mark_of(&nic).is_some_and(|m| m.m == crate::record::MarkKind::Shim) {
            return Err(Error::bad(&req.host, "is a pipework host shim, not a NIC"));
        }
        match vlan::requested_vid(req.vlan, req.extras.tag.as_deref())? {
            Some(vid) => vlan::check(&cx.host, &nic, vid).await?,
            None => check_not_uplink(&cx.host, &nic, &req.host).await?,
        }
        if let Some(m) = req.mtu
            && let Some(max) = max_mtu(&cx.host, &nic).await?
            && m > max
        {
            return Err(Error::bad(
                m,
                format!("{} supports an MTU of at most {max}", nic.name),
            ));
        }
        Ok(())
    }

    async fn attach(&self, cx: &mut Ctx<'_>, j: &mut Journal) -> Result<HostSide> {
        let req = cx.req;
        let nic = child::resolve_parent(&cx.host, req).await?;
        let (dev, vlan_created) = match vlan::requested_vid(req.vlan, req.extras.tag.as_deref())? {
            None => (nic, false),
            Some(vid) => {
                vlan::ensure_up(&cx.host, j, &nic).await?;
                let _lock = match cx.host.dry_run {
                    true => None,
                    false => Some(crate::lock::Lock::take(&format!(
                        "vlan-{}",
                        vlan::vlan_ifname(&nic.name, vid)?
                    ))?),
                };
                vlan::ensure(&cx.host, j, &nic, vid).await?
            }
        };
        let addrs = if cx.host.dry_run && dev.index == 0 {
            vec![]
        } else {
            cx.host.addrs(dev.index).await?
        };
        let mut orig = Original {
            n: dev.name.clone(),
            m: dev.mtu,
            mac: req.mac.map(|_| format_mac(&dev.mac)),
            up: dev.up,
            a: addrs
                .iter()
                .filter(|a| !is_link_local(&a.net))
                .map(|a| a.net.to_string())
                .collect(),
            al: previous_alias(&dev),
            vc: vlan_created,
        };
        // The device's own name rather than a `mac:` spec: shorter (the
        // alias holds 255 bytes), and what `ls` should show as host side.
        if req.host.starts_with("mac:") {
            cx.record.h = dev.name.clone();
        }
        let mut notes = vec![format!(
            "moved {} into the guest as {}",
            dev.name, req.ifname
        )];
        for d in fit(&mut cx.record, &mut orig) {
            notes.push(format!(
                "record too long for the alias: {d} will not be restored"
            ));
        }

        cx.record.k = Kind::Phys;
        // One request: leave the host and take the new name in the guest,
        // so the name can never clash with a host interface mid-way.
        if cx.host.dry_run {
            cx.host.show(format_args!(
                "link set {} netns {} name {}",
                dev.name,
                cx.guest.netns.path.display(),
                req.ifname
            ));
        } else {
            // First the record, on the host: from here a SIGKILL leaves a
            // device that says how it looked (gc puts the alias back).
            let on_host = cx.record.seal(Ident {
                ns: host_ns(),
                index: dev.index,
            })?;
            cx.host.set_alias(&dev, &on_host).await?;
            let (h, d, o) = (cx.host.clone(), dev.clone(), orig.clone());
            j.record(format!("{}'s alias", dev.name), async move {
                match h.link_by_index(d.index).await? {
                    Some(l) if l.name == o.n => restore_on_host(&h, &l, &o).await,
                    _ => Ok(()),
                }
            });
            let into = cx.move_into_guest(dev.index)?;
            cx.host
                .change(&dev, &into, format!("moving {} into the guest", dev.name))
                .await
                .map_err(|err| {
                    if err.errno() == Some(libc::EINVAL) {
                        Error::other(format!(
                            "{}: the kernel refused to move it (EINVAL): this kind of device ({}) is bound to its namespace",
                            dev.name,
                            dev.kind.as_deref().unwrap_or("physical")
                        ))
                    } else {
                        err
                    }
                })?;
            let moved =
                cx.cont.link_by_name(&req.ifname).await?.ok_or_else(|| {
                    Error::other(format!("{} did not arrive in the guest", dev.name))
                })?;
            let (h, c, r, o, idx) = (
                cx.host.clone(),
                cx.cont.clone(),
                cx.record.clone(),
                orig.clone(),
                moved.index,
            );
            j.record(format!("{} back to the host", dev.name), async move {
                return_to_host(&h, &c, idx, &r, &o).await
            });
            cx.made = Some(moved.clone());
            if req.mtu.is_some() || req.mac.is_some() {
                let set = LinkChange {
                    mtu: req.mtu,
                    mac: req.mac.map(|m| m.to_vec()),
                    ..Default::default()
                };
                cx.cont
                    .change(&moved, &set, format!("setting MTU/MAC on {}", req.ifname))
                    .await?;
            }
        }
        if let Some(m) = req.mac.filter(|_| cx.host.dry_run) {
            cx.cont.show(format_args!(
                "link set {} address {}",
                req.ifname,
                format_mac(&m)
            ));
        }
        Ok(HostSide {
            kind: "phys",
            host: dev.name.clone(),
            host_ifname: None,
            mtu: req.mtu.unwrap_or(dev.mtu),
            notes,
        })
    }

    async fn detach(&self, host: &Net, cont: &Net, rec: &Record) -> Result<()> {
        let orig = Original::from_record(rec).ok_or_else(|| {
            Error::other(format!(
                "{}: the record has no original name; move it back by hand (ip link set {} netns 1)",
                rec.ifname, rec.ifname
            ))
        })?;
        match cont.link_by_name(&rec.ifname).await? {
            Some(l) => return_to_host(host, cont, l.index, rec, &orig).await,
            // Already back (a previous detach): nothing to do.
            None => Ok(()),
        }
    }
}

fn is_link_local(n: &IpNetwork) -> bool {
    match n {
        IpNetwork::V6(v6) => v6.ip().segments()[0] & 0xffc0 == 0xfe80,
        IpNetwork::V4(v4) => v4.ip().is_link_local(),
    }
}

/// IFLA_MAX_MTU of a link, when the kernel reports it.
async fn max_mtu(host: &Net, link: &Link) -> Result<Option<u32>> {
    host.max_mtu(link).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec() -> Record {
        Record {
            k: Kind::Phys,
            h: "eth1".into(),
            hi: None,
            g: "web1".into(),
            id: Some("0123456789ab".into()),
            ifname: "eth1".into(),
            n: 4026531840,
            p: Some(4194304),
            ..Default::default()
        }
    }

    #[test]
    fn original_round_trips_through_the_record() {
        let mut r = rec();
        let mut o = Original {
            n: "enp3s0f1".into(),
            m: 9000,
            mac: None,
            up: true,
            a: vec!["192.0.2.7/24".into(), "2001:db8::7/64".into()],
            al: Some("uplink to rack 4".into()),
            vc: false,
        };
        assert!(fit(&mut r, &mut o).is_empty());
        let back = serde_json::from_str::<Record>(&r.encode()["pipework ".len()..])
            .ok()
            .and_then(|r| Original::from_record(&r));
        assert_eq!(back, Some(o));
    }

    #[test]
    fn oversized_records_shed_alias_then_addresses() {
        let mut r = rec();
        let mut o = Original {
            n: "enp3s0f1".into(),
            m: 1500,
            up: true,
            a: (0..20)
                .map(|i| format!("2001:db8:aaaa:bbbb::{i}/64"))
                .collect(),
            al: Some("x".repeat(40)),
            ..Default::default()
        };
        let dropped = fit(&mut r, &mut o);
        assert!(r.sealed_len() <= 255);
        assert_eq!(dropped[0], "its previous alias");
        assert!(dropped.len() > 1);
        assert!(!o.a.is_empty());
    }
}
