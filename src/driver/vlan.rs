//! `[mac]@VID` on a physical parent: the 802.1Q sub-interface `parent.VID`.
//!
//! Like the original we create it when absent and reuse it when it is a
//! VLAN with that id; unlike the original we say so clearly when a device of
//! that name is something else, and we remove a sub-interface we created
//! once its last guest is detached (it is labelled, so we never delete one
//! an administrator made).
use crate::error::{Error, Result};
use crate::netlink::{Journal, Link, LinkChange, Net};
use crate::record::MarkKind;
use crate::request::{IFNAMSIZ_MAX, parse_vlan};

/// Whether `l` is a VLAN sub-interface pipework created: it carries our
/// signed mark (not a `Record`: those label guest links, and `ls` lists
/// them). An alias anyone else wrote, even one that looks like ours, is not.
pub fn created_by_us(l: &Link) -> bool {
    l.kind.as_deref() == Some("vlan")
        && crate::inventory::mark_of(l).is_some_and(|m| m.m == MarkKind::Vlan)
}

/// `parent.VID`, checked against the kernel's 15-character limit.
pub fn vlan_ifname(parent: &str, vid: u16) -> Result<String> {
    let name = format!("{parent}.{vid}");
    if name.len() > IFNAMSIZ_MAX {
        return Err(Error::bad(
            format!("@{vid}"),
            format!(
                "the VLAN interface name {name} would exceed {IFNAMSIZ_MAX} characters; \
                 create it yourself under a shorter name (ip link add link {parent} name NAME type vlan id {vid}) \
                 and give NAME as the host interface"
            ),
        ));
    }
    Ok(name)
}

/// The VLAN a request asks for: `req.vlan`, or the raw tag (which is then
/// not a valid id: report it as one).
pub fn requested_vid(vlan: Option<u16>, tag: Option<&str>) -> Result<Option<u16>> {
    match (vlan, tag) {
        (Some(v), _) => Ok(Some(v)),
        (None, Some(t)) => parse_vlan(t).map(Some),
        (None, None) => Ok(None),
    }
}

/// The 802.1Q id of link `index`, or None if it is not a VLAN.
pub async fn vlan_id_of(net: &Net, index: u32) -> Result<Option<u16>> {
    net.vlan_id(index).await
}

/// Check (without changing anything) that `parent.VID` is absent or a
/// reusable VLAN with that id on that parent.
pub async fn check(host: &Net, parent: &Link, vid: u16) -> Result<()> {
    let name = vlan_ifname(&parent.name, vid)?;
    if let Some(existing) = host.link_by_name(&name).await? {
        reusable(host, &existing, parent, vid).await?;
    }
    Ok(())
}

async fn reusable(host: &Net, existing: &Link, parent: &Link, vid: u16) -> Result<()> {
    let what = existing.kind.as_deref().unwrap_or("physical");
    if existing.kind.as_deref() != Some("vlan") {
        return Err(Error::bad(
            &existing.name,
            format!(
                "exists but is a {what} device, not VLAN {vid} on {}; rename or remove it",
                parent.name
            ),
        ));
    }
    let id = vlan_id_of(host, existing.index).await?;
    if id != Some(vid) || existing.link != Some(parent.index) {
        return Err(Error::bad(
            &existing.name,
            format!(
                "exists but is VLAN {} on another parent, not VLAN {vid} on {}; rename or remove it",
                id.map(|i| i.to_string()).unwrap_or_else(|| "?".into()),
                parent.name
            ),
        ));
    }
    Ok(())
}

/// Make sure `parent.VID` exists and is up; returns it and whether we
/// created it (creation is journaled). The caller holds the lock
/// `vlan-parent.VID` (the one `release_if_unused` takes): the VLAN is born
/// under a temporary name, and a second pipework must not take the kernel's
/// "VLAN id in use" for a VLAN it could reuse by name.
pub async fn ensure(host: &Net, j: &mut Journal, parent: &Link, vid: u16) -> Result<(Link, bool)> {
    let name = vlan_ifname(&parent.name, vid)?;
    if let Some(existing) = host.link_by_name(&name).await? {
        reusable(host, &existing, parent, vid).await?;
        if !existing.up {
            host.set_up(&existing).await?;
        }
        return Ok((existing, false));
    }
    let made = super::marked::create(
        host,
        &name,
        "vlan",
        (MarkKind::Vlan, ""),
        |tmp| async move {
            Ok(host.add_vlan(&tmp, parent, vid).await?.unwrap_or_else(|| {
                // A dry run: what the VLAN would look like.
                Link {
                    name: tmp,
                    mtu: parent.mtu,
                    kind: Some("vlan".into()),
                    ..Default::default()
                }
            }))
        },
    )
    .await;
    let vlan = match made {
        Ok(Some(v)) => v,
        // The name was taken after our look (not by a pipework: we hold
        // the lock): reuse it if it fits.
        Ok(None) => {
            let l = host
                .link_by_name(&name)
                .await?
                .ok_or_else(|| Error::other(format!("{name} vanished")))?;
            reusable(host, &l, parent, vid).await?;
            return Ok((l, false));
        }
        Err(err) => {
            return Err(match err.errno() {
                Some(libc::EEXIST) => Error::bad(
                    &name,
                    format!(
                        "VLAN {vid} already exists on {} under another name; use that device as the host interface or remove it",
                        parent.name
                    ),
                ),
                Some(libc::EOPNOTSUPP) => Error::other(format!(
                    "@{vid}: this kernel has no 802.1Q support (module 8021q not built or loaded)"
                )),
                _ => err,
            });
        }
    };
    if host.dry_run {
        return Ok((vlan, true));
    }
    // Undo through the same check as detach: another guest may have put a
    // child on this VLAN while our attach was still running, and deleting
    // the VLAN would make the kernel destroy that child too.
    let (h, n) = (host.clone(), name.clone());
    j.record(format!("VLAN {name}"), async move {
        release_if_unused(&h, &n).await
    });
    Ok((vlan, true))
}

/// Bring a parent up if it is down (the original always did), journaling
/// the way back down.
pub async fn ensure_up(host: &Net, j: &mut Journal, link: &Link) -> Result<()> {
    if link.up {
        return Ok(());
    }
    host.set_up(link).await?;
    if !host.dry_run {
        let (h, l) = (host.clone(), link.clone());
        j.record(format!("{} up", link.name), async move {
            let down = LinkChange {
                up: Some(false),
                ..Default::default()
            };
            h.change(&l, &down, "setting the parent back down").await
        });
    }
    Ok(())
}

/// After a detach: remove VLAN `name` if pipework created it and no
/// attachment still uses it (any namespace: its children live in guests).
pub async fn release_if_unused(host: &Net, name: &str) -> Result<()> {
    let _lock = crate::lock::Lock::take(&format!("vlan-{name}"))?;
    let Some(l) = host.link_by_name(name).await? else {
        return Ok(());
    };
    if !created_by_us(&l) {
        return Ok(());
    }
    // A namespace we could not scan may hold a child of this VLAN (which
    // the kernel would destroy with it): keep the VLAN and say why.
    let users = crate::inventory::attachments_everywhere_complete()
        .await
        .map_err(|e| {
            Error::other(format!(
                "kept VLAN {name}: {e}; `pipework gc` removes it later"
            ))
        })?;
    if users.iter().any(|f| f.rec.hi.as_deref() == Some(name)) {
        return Ok(());
    }
    host.delete_link(&l).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_ids() {
        assert_eq!(vlan_ifname("eth0", 10).ok().as_deref(), Some("eth0.10"));
        let e = vlan_ifname("enp0s31f6abc", 4094).unwrap_err().to_string();
        assert!(
            e.starts_with("@4094: ") && e.contains("15 characters"),
            "{e}"
        );
        assert_eq!(requested_vid(Some(5), None).ok(), Some(Some(5)));
        assert_eq!(requested_vid(None, None).ok(), Some(None));
        let e = requested_vid(None, Some("4095")).unwrap_err().to_string();
        assert!(e.starts_with("4095: VLAN id must be 1-4094"), "{e}");
        assert!(requested_vid(None, Some("0")).is_err());
    }
}
