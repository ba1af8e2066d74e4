//! Putting a VF back exactly as it was, wherever it is now (in its guest,
//! already on the host after a rollback, or returned by the kernel when the
//! guest's namespace died), from its state file. Used by detach, by the
//! attach journal's rollback, by `gc` and by CNI DEL.
//!
//! The VF is found by its PCI address (IFLA_PARENT_DEV_NAME, set by the
//! kernel, never by a guest), never by a name the guest could have chosen.
use super::props;
use super::state::Held;
use super::sysfs::Pf;
use crate::error::{Error, Result};
use crate::netlink::LinkChange;
use crate::netlink::{Link, Net};
use crate::netns::NetNs;
use crate::request::{format_mac, parse_mac};
use std::collections::HashMap;

/// Every link of `net` that sits on a PCI function, by PCI address.
pub async fn links_by_pci(net: &Net) -> Result<HashMap<String, Link>> {
    let mut out = HashMap::new();
    for l in net.links().await? {
        if let Some(pci) = l.pci.clone() {
            out.entry(pci).or_insert(l);
        }
    }
    Ok(out)
}

/// Under the PF's lock: a VF claimed by a pipework that died before it
/// moved the VF (its netdev is still on the host) is put back and freed,
/// as `gc` would, so a re-run does not find the PF full of dead claims.
pub async fn reclaim_abandoned(host: &Net, pf: &Pf) -> Result<()> {
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

/// Give the VF netdev `mac`. Some VF drivers (igbvf) may not set their own
/// MAC once the PF has set an administrative one, and take the PF's only
/// when they reset: on a refusal, an up/down cycle resets the VF, and the
/// MAC is checked again.
/// `now` is its MAC as last read.
pub async fn set_netdev_mac(
    host: &Net,
    dev: &Link,
    now: Option<&[u8]>,
    mac: &[u8; 6],
) -> Result<()> {
    let current = |l: Option<Link>| l.map(|l| l.mac).unwrap_or_default();
    if now == Some(mac.as_slice()) {
        return Ok(());
    }
    let set = LinkChange {
        mac: Some(mac.to_vec()),
        ..Default::default()
    };
    let what = format!("setting the MAC of {} to {}", dev.name, format_mac(mac));
    let Err(refused) = host.change(dev, &set, what).await else {
        return Ok(());
    };
    for up in [true, false] {
        let cycle = LinkChange {
            up: Some(up),
            ..Default::default()
        };
        host.change(dev, &cycle, format!("resetting {}", dev.name))
            .await?;
    }
    if current(host.link_by_index(dev.index).await?) == mac {
        Ok(())
    } else {
        Err(refused)
    }
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
        let back = LinkChange {
            up: Some(false),
            netns: Some(&me),
            name: Some(held.name.clone()),
            ..Default::default()
        };
        let what = format!("returning VF {} to the host as {}", held.vf, held.name);
        if let Err(err) = g.change(&l, &back, what).await {
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
    let set = LinkChange {
        up: Some(false),
        mtu: Some(held.mtu),
        alias: Some(held.alias.clone().unwrap_or_default()),
        name: (back.name != held.name).then(|| held.name.clone()),
        ..Default::default()
    };
    let what = format!("restoring the name and MTU of {}", held.name);
    host.change(&back, &set, what).await?;
    if let Ok(mac) = parse_mac(&held.mac) {
        set_netdev_mac(host, &back, Some(&back.mac), &mac).await?;
    }
    if held.up {
        host.set_up(&back).await?;
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
