//! `vf:PF`, `vf:PF:N` or a VF's PCI address: hand an SR-IOV virtual
//! function to the guest. No bridge and no software switch: the NIC's own
//! switch carries the traffic.
//!
//! The steps, each undone by the one journal entry `restore`:
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
use crate::netlink::{Journal, Link, Net};
use crate::netns::NetNs;
use crate::record::{Ident, Kind, Record, Seen};
use crate::request::{check_ifname, format_mac, parse_mac};
use crate::sriov::props;
use crate::sriov::state::Held;
use crate::sriov::sysfs::Pf;
use crate::sriov::{LsInfo, Target};
use futures::TryStreamExt;
use netlink_packet_route::link::{LinkAttribute, LinkMessage};
use rtnetlink::LinkUnspec;
use std::collections::HashMap;
use std::os::fd::AsRawFd;

pub struct Vf {
    /// None when built only to detach (the record names the VF).
    pub target: Option<Target>,
}

/// Every link of `net` that sits on a PCI function, by PCI address.
pub async fn links_by_pci(net: &Net) -> Result<HashMap<String, Link>> {
    let msgs: Vec<LinkMessage> = net
        .handle
        .link()
        .get()
        .execute()
        .try_collect()
        .await
        .map_err(|e| Error::netlink("listing links", e))?;
    let mut out = HashMap::new();
    for m in &msgs {
        let bus = m.attributes.iter().find_map(|a| match a {
            LinkAttribute::ParentDevBusName(b) => Some(b.as_str()),
            _ => None,
        });
        let dev = m.attributes.iter().find_map(|a| match a {
            LinkAttribute::ParentDevName(d) => Some(d.clone()),
            _ => None,
        });
        if let (Some("pci"), Some(d)) = (bus, dev) {
            out.entry(d).or_insert_with(|| Link::from_message(m));
        }
    }
    Ok(out)
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

/// Under the PF's lock: a VF claimed by a pipework that died before it
/// moved the VF (its netdev is still on the host) is put back and freed,
/// as `gc` would, so a re-run does not find the PF full of dead claims.
async fn reclaim_abandoned(host: &Net, pf: &Pf) -> Result<()> {
    let dead: Vec<Held> = pf
        .vfs
        .iter()
        .filter_map(|v| Held::load(&v.pci).ok().flatten())
        .filter(|h| h.p.is_some_and(|p| !crate::inventory::alive(p)))
        .collect();
    if dead.is_empty() {
        return Ok(());
    }
    let on_host = links_by_pci(host).await?;
    for h in dead {
        if on_host.contains_key(&h.pci) {
            eprintln!(
                "pipework: putting back VF {} of {}, left unfinished by pipework pid {}",
                h.vf,
                h.pf,
                h.p.unwrap_or_default()
            );
            restore(host, None, &h).await?;
        }
    }
    Ok(())
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
            t: String::new(),
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
            let set = LinkUnspec::new_with_index(dev.index).address(mac.to_vec());
            let _ = cx.host.handle.link().set(set.build()).execute().await;
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
            let set = LinkUnspec::new_with_index(dev.index).down().mtu(m);
            cx.host
                .handle
                .link()
                .set(set.build())
                .execute()
                .await
                .map_err(|e| {
                    Error::netlink(format!("setting the MTU of {} to {m}", dev.name), e)
                })?;
        }
        if let Some(mac) = req.mac {
            let now = cx.host.link_by_index(dev.index).await?.map(|l| l.mac);
            set_netdev_mac(&cx.host, &dev, now.as_deref(), &mac).await?;
        }

        // The record travels with the move, sealed for the guest; the
        // kernel keeps the ifindex when it is free there (attach.rs seals
        // it again with the final index either way).
        let in_guest = cx.record.seal(Ident {
            ns: cx.record.n,
            index: dev.index,
        })?;
        let msg = LinkUnspec::new_with_index(dev.index)
            .down()
            .setns_by_fd(cx.guest.netns.fd().as_raw_fd())
            .name(req.ifname.clone())
            .alias(in_guest)
            .build();
        cx.host
            .handle
            .link()
            .set(msg)
            .execute()
            .await
            .map_err(|e| Error::netlink(format!("moving {} into the guest", dev.name), e))?;
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

/// Give the VF netdev `mac`. Some VF drivers (igbvf) may not set their own
/// MAC once the PF has set an administrative one, and take the PF's only
/// when they reset: on a refusal, an up/down cycle resets the VF, and the
/// MAC is checked again.
/// `now` is its MAC as last read.
async fn set_netdev_mac(host: &Net, dev: &Link, now: Option<&[u8]>, mac: &[u8; 6]) -> Result<()> {
    let current = |l: Option<Link>| l.map(|l| l.mac).unwrap_or_default();
    if now == Some(mac.as_slice()) {
        return Ok(());
    }
    let set = LinkUnspec::new_with_index(dev.index).address(mac.to_vec());
    let Err(e) = host.handle.link().set(set.build()).execute().await else {
        return Ok(());
    };
    let refused = Error::netlink(
        format!("setting the MAC of {} to {}", dev.name, format_mac(mac)),
        e,
    );
    for up in [true, false] {
        let msg = LinkUnspec::new_with_index(dev.index);
        let msg = if up { msg.up() } else { msg.down() };
        host.handle
            .link()
            .set(msg.build())
            .execute()
            .await
            .map_err(|e| Error::netlink(format!("resetting {}", dev.name), e))?;
    }
    if current(host.link_by_index(dev.index).await?) == mac {
        Ok(())
    } else {
        Err(refused)
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

/// Put VF `held` back exactly as it was, wherever it is now: in the guest
/// (`guest`, when its namespace still exists), or already on the host
/// (a rollback before the move, or a guest that died). Idempotent; the
/// state file goes last, so an interrupted restore is finished by the
/// next detach or `gc`.
pub async fn restore(host: &Net, guest: Option<&Net>, held: &Held) -> Result<()> {
    let mut here = links_by_pci(host).await?;
    if !here.contains_key(&held.pci)
        && let Some(g) = guest
        && let Some(l) = links_by_pci(g).await?.remove(&held.pci)
    {
        let me = NetNs::current()?;
        let msg = LinkUnspec::new_with_index(l.index)
            .down()
            .setns_by_fd(me.fd().as_raw_fd())
            .name(held.name.clone())
            .build();
        if let Err(e) = g.handle.link().set(msg).execute().await {
            let err = Error::netlink(
                format!("returning VF {} to the host as {}", held.vf, held.name),
                e,
            );
            return Err(if err.errno() == Some(libc::EEXIST) {
                Error::other(format!(
                    "cannot return VF {} of {} to the host: the host now has another interface named {}; rename that one and run detach again (the VF stays in the guest meanwhile)",
                    held.vf, held.pf, held.name
                ))
            } else {
                err
            });
        }
        // Named by us a moment ago: one lookup rather than another dump.
        if let Some(l) = host.link_by_name(&held.name).await? {
            here.insert(held.pci.clone(), l);
        }
    }
    let Some(back) = here.get(&held.pci).cloned() else {
        // Not on the host, not in the guest. If the PF no longer has the
        // VF (SR-IOV turned off since), there is nothing left to restore.
        let root = std::path::Path::new(crate::sriov::SYSFS);
        let gone = crate::sriov::sysfs::pf_by_pci(root, &held.pf_pci, &held.pf)
            .map(|pf| pf.vfs.iter().all(|v| v.pci != held.pci))
            .unwrap_or(true);
        if gone {
            return held.remove();
        }
        return Err(Error::other(format!(
            "VF {} of {} ({}) is neither on the host nor in its guest; not restoring it yet",
            held.vf, held.pf, held.pci
        )));
    };
    let pf = here
        .get(&held.pf_pci)
        .cloned()
        .ok_or_else(|| Error::other(format!("the PF {} ({}) is gone", held.pf, held.pf_pci)))?;

    // Properties first: an administrative MAC must be cleared before the
    // netdev may take its own MAC back.
    let props_result =
        props::restore(host, &pf.name, pf.index, held.vf, &held.props, &held.mac).await;

    // The netdev: name (it must be down to be renamed), MTU, MAC, alias.
    let mut set = LinkUnspec::new_with_index(back.index)
        .down()
        .mtu(held.mtu)
        .alias(held.alias.clone().unwrap_or_default());
    if back.name != held.name {
        set = set.name(held.name.clone());
    }
    host.handle
        .link()
        .set(set.build())
        .execute()
        .await
        .map_err(|e| Error::netlink(format!("restoring the name and MTU of {}", held.name), e))?;
    if let Ok(mac) = parse_mac(&held.mac) {
        set_netdev_mac(host, &back, Some(&back.mac), &mac).await?;
    }
    if held.up {
        host.handle
            .link()
            .set(LinkUnspec::new_with_index(back.index).up().build())
            .execute()
            .await
            .map_err(|e| Error::netlink(format!("bringing {} up", held.name), e))?;
    }
    props_result?;
    held.remove()
}

/// CNI DEL after the guest's namespace was destroyed: the kernel already
/// handed the VFs held for `guest` back to the host; put them back as they
/// were. VFs still being attached, or still in some namespace, are left.
pub async fn release_returned(host: &Net, guest: &str) -> Result<()> {
    let pcis = crate::sriov::state::held();
    if pcis.is_empty() {
        return Ok(());
    }
    let here = links_by_pci(host).await?;
    for pci in pcis {
        let Ok(Some(h)) = Held::load(&pci) else {
            continue;
        };
        if h.guest == guest && here.contains_key(&pci) && !h.p.is_some_and(crate::inventory::alive)
        {
            restore(host, None, &h).await?;
        }
    }
    Ok(())
}
