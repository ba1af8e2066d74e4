//! `vf:PF`, `vf:PF:N` or a VF's PCI address: hand an SR-IOV virtual
//! function to the guest. No bridge and no software switch: the NIC's own
//! switch carries the traffic.
//!
//! The steps, each undone by the one journal entry `sriov::restore::restore`:
//! 1. under the PF's lock, pick a VF whose netdev is in the host and that
//!    no attachment holds, and write its state file (`sriov/state.rs`):
//!    how the netdev and the VF's properties look now; from here the VF is
//!    taken and a SIGKILL leaves something `gc` puts back;
//! 2. set the VF's properties through the PF (MAC, VLAN, spoofchk, trust,
//!    link state, rates), one request each so a refusal names its property;
//! 3. move the netdev into the guest under the `-i` name, carrying the
//!    signed record (attach.rs addresses it and commits the record).
//!
//! A VF whose guest died comes back to the host under whatever name the
//! guest gave it (or `devN`); `restore` finds it by its PCI address
//! (IFLA_PARENT_DEV_NAME, set by the kernel, never by a guest) and takes
//! everything else from the state file, not from the guest-writable link.
use super::{Ctx, Driver, HostSide};
use crate::error::{Error, Result};
use crate::lock::Lock;
use crate::netlink::{Journal, Link, LinkChange, Net};
use crate::record::{Kind, Record, Seen};
use crate::request::{check_ifname, format_mac};
use crate::sriov::props;
use crate::sriov::restore::{links_by_pci, reclaim_abandoned, restore, set_netdev_mac};
use crate::sriov::state::Held;
use crate::sriov::sysfs::Pf;
use crate::sriov::{LsInfo, Target};
use std::collections::HashMap;

pub struct Vf {
    /// None when built only to detach (the record names the VF).
    pub target: Option<Target>,
}

/// Who holds which VF of `pf` (PCI → guest), the host netdevs the host
/// itself uses (up or enslaved), and the host's PCI links; `pf.vfs`'
/// netdevs are refreshed from netlink, the namespace we actually run in.
async fn survey(
    host: &Net,
    pf: &mut Pf,
) -> Result<(HashMap<String, String>, Vec<String>, HashMap<String, Link>)> {
    let links = links_by_pci(host).await?;
    let mut held = HashMap::new();
    let mut busy = Vec::new();
    for v in &mut pf.vfs {
        v.netdev = links.get(&v.pci).map(|l| l.name.clone());
        match Held::load(&v.pci) {
            // Claimed by a pipework that died before moving it: attach
            // reclaims it under the lock (`reclaim_abandoned`).
            Ok(Some(h))
                if h.p.is_some_and(|p| !crate::inventory::alive(p))
                    && links.contains_key(&v.pci) => {}
            Ok(Some(h)) => {
                held.insert(v.pci.clone(), h.guest);
            }
            Ok(None) => {}
            // An unverifiable claim still keeps the VF off the free list.
            Err(_) => {
                held.insert(v.pci.clone(), "unknown (unverifiable state file)".into());
            }
        }
        if let Some(l) = links.get(&v.pci)
            && (l.up || l.controller.is_some())
        {
            busy.push(l.name.clone());
        }
    }
    Ok((held, busy, links))
}

/// The alias the netdev had before us (never one of our records).
fn previous_alias(dev: &Link) -> Option<String> {
    match crate::inventory::read(dev, crate::inventory::host_ns()) {
        Seen::Foreign => dev.alias.clone().filter(|a| !a.is_empty()),
        _ => None,
    }
}

impl Vf {
    fn target(&self) -> Result<&Target> {
        self.target
            .as_ref()
            .ok_or_else(|| Error::other("internal: VF driver without a target"))
    }
}

impl Driver for Vf {
    async fn validate(&self, cx: &Ctx<'_>) -> Result<()> {
        let req = cx.req;
        check_ifname(&req.ifname)?;
        req.sriov.want(req.mac, req.vlan)?;
        if let Some(l) = &req.host_ifname {
            return Err(Error::bad(l, "a VF has no host-side link to name; drop -l"));
        }
        // The PF and index; which VF is free is decided in attach(), under
        // the PF's lock and still before anything changes.
        crate::sriov::resolve(self.target()?, &req.host)?;
        Ok(())
    }

    async fn attach(&self, cx: &mut Ctx<'_>, j: &mut Journal) -> Result<HostSide> {
        let req = cx.req;
        let want = req.sriov.want(req.mac, req.vlan)?;
        let (mut pf, index) = crate::sriov::resolve(self.target()?, &req.host)?;
        let lock = if cx.host.dry_run {
            None
        } else {
            Some(Lock::take(&format!("sriov-{}", pf.pci))?)
        };
        if lock.is_some() {
            reclaim_abandoned(&cx.host, &pf).await?;
        }
        let (held_map, busy, links) = survey(&cx.host, &mut pf).await?;
        let vf = crate::sriov::pick(&pf, index, &held_map, &busy, &req.host)?.clone();
        let dev = links
            .get(&vf.pci)
            .cloned()
            .ok_or_else(|| Error::other(format!("VF {} of {} vanished", vf.index, pf.name)))?;
        let pf_link = match links.get(&pf.pci) {
            Some(l) => l.clone(),
            None => cx
                .host
                .link_by_name(&pf.name)
                .await?
                .ok_or_else(|| Error::bad(&req.host, format!("{} is gone", pf.name)))?,
        };
        let info = LsInfo {
            pf: pf_link.name.clone(),
            vf: vf.index,
            pci: vf.pci.clone(),
        };
        info.write(&mut cx.record);
        cx.record.k = Kind::Sriov;
        let notes = vec![format!(
            "VF {} ({}) of {} moved into the guest as {}",
            vf.index, vf.pci, pf_link.name, req.ifname
        )];
        let side = HostSide {
            kind: "sriov",
            host: pf_link.name.clone(),
            host_ifname: None,
            mtu: req.mtu.unwrap_or(dev.mtu),
            notes,
        };
        if cx.host.dry_run {
            show_dry(cx, &pf_link, &vf, &dev, &want);
            return Ok(side);
        }

        let now = props::read(&cx.host, pf_link.index, vf.index).await?;
        let mut held = Held {
            pci: vf.pci.clone(),
            pf_pci: pf.pci.clone(),
            pf: pf_link.name.clone(),
            vf: vf.index,
            name: dev.name.clone(),
            mtu: dev.mtu,
            mac: format_mac(&dev.mac),
            up: dev.up,
            alias: previous_alias(&dev),
            props: now.clone(),
            ns: cx.record.n,
            guest: cx.guest.name.clone(),
            ifname: req.ifname.clone(),
            p: Some(std::process::id()),
        };
        held.save()?;
        // Claimed: the next attach on this PF sees the state file.
        drop(lock);
        let (h, c, hd) = (cx.host.clone(), cx.cont.clone(), held.clone());
        j.record(format!("VF {} of {}", vf.index, pf_link.name), async move {
            restore(&h, Some(&c), &hd).await
        });

        // The netdev's own MAC first: before the PF holds an administrative
        // MAC, a VF driver may still set its own (igbvf asks the PF), and
        // then needs no reset. Refused here, set_netdev_mac resets it below.
        if let Some(mac) = req.mac
            && dev.mac != mac
        {
            let set = LinkChange {
                mac: Some(mac.to_vec()),
                ..Default::default()
            };
            let _ = cx.host.change(&dev, &set, "setting the VF's MAC").await;
        }
        props::apply(
            &cx.host,
            &pf_link.name,
            pf_link.index,
            vf.index,
            &want,
            &now,
        )
        .await?;
        // The netdev's own MTU and MAC, while it is still ours to set.
        if let Some(m) = req.mtu {
            let set = LinkChange {
                up: Some(false),
                mtu: Some(m),
                ..Default::default()
            };
            let what = format!("setting the MTU of {} to {m}", dev.name);
            cx.host.change(&dev, &set, what).await?;
        }
        if let Some(mac) = req.mac {
            let now = cx.host.link_by_index(dev.index).await?.map(|l| l.mac);
            set_netdev_mac(&cx.host, &dev, now.as_deref(), &mac).await?;
        }

        let into = cx.move_into_guest(dev.index)?;
        cx.host
            .change(&dev, &into, format!("moving {} into the guest", dev.name))
            .await?;
        let moved = cx
            .cont
            .link_by_name(&req.ifname)
            .await?
            .ok_or_else(|| Error::other(format!("{} did not arrive in the guest", dev.name)))?;
        cx.made = Some(moved);
        // From here the guest link's record (pending until attach.rs
        // commits) tells gc about this attachment.
        held.p = None;
        held.save()?;
        Ok(side)
    }

    async fn detach(&self, host: &Net, cont: &Net, rec: &Record) -> Result<()> {
        let info = LsInfo::from_record(rec).ok_or_else(|| {
            Error::other(format!(
                "{}: the record names no VF; move it back by hand (ip link set {} netns 1)",
                rec.ifname, rec.ifname
            ))
        })?;
        if host.dry_run {
            cont.show(format_args!(
                "link set {} netns 1   # VF {} of {} back to the host, renamed and restored from its state file",
                rec.ifname, info.vf, info.pf
            ));
            return Ok(());
        }
        match Held::load(&info.pci)? {
            // Held for this very attachment: put it back.
            Some(h) if h.ns == rec.n && h.ifname == rec.ifname => {
                restore(host, Some(cont), &h).await
            }
            // Already back (a previous detach), or since given to another.
            _ => Ok(()),
        }
    }
}

fn show_dry(cx: &Ctx<'_>, pf: &Link, vf: &crate::sriov::sysfs::Vf, dev: &Link, w: &props::Want) {
    let mut s = String::new();
    if let Some(m) = w.mac {
        s += &format!(" mac {}", format_mac(&m));
    }
    if let Some((vid, qos, ad)) = w.vlan {
        s += &format!(" vlan {vid} qos {qos}");
        if ad {
            s += " proto 802.1ad";
        }
    }
    if let Some(b) = w.spoof {
        s += &format!(" spoofchk {}", props::on_off(b));
    }
    if let Some(b) = w.trust {
        s += &format!(" trust {}", props::on_off(b));
    }
    if let Some(l) = w.link {
        s += &format!(" state {}", props::link_state_name(l));
    }
    if let Some(r) = w.min {
        s += &format!(" min_tx_rate {r}");
    }
    if let Some(r) = w.max {
        s += &format!(" max_tx_rate {r}");
    }
    if !s.is_empty() {
        cx.host
            .show(format_args!("link set {} vf {}{s}", pf.name, vf.index));
    }
    cx.host.show(format_args!(
        "link set {} netns {} name {}",
        dev.name,
        cx.guest.netns.path.display(),
        cx.req.ifname
    ));
}
