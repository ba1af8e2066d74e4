//! VLANs on a Linux bridge port (`pipework br1 $CID 10.0.0.2/24 @10`,
//! `--trunk 10,20-30`), through the bridge's own VLAN filtering.
//!
//! - Access port (`@VID`): the port's PVID, egress untagged; the guest
//!   sees plain frames.
//! - Trunk (`--trunk LIST`): those VLANs tagged on the port; with `@VID`
//!   too, VID is the port's native (untagged) VLAN, as on OVS.
//! - The port leaves the bridge's default VLAN (normally 1), so it only
//!   hears its own VLANs. The bridge device itself is put in no VLAN: the
//!   port entries are sent without BRIDGE_FLAGS_SELF, so the host's own
//!   address on the bridge (if any) stays where it was.
//!
//! Turning filtering on for a bridge that already has ports: every port
//! joined with the bridge's default PVID as its untagged VLAN (the kernel
//! adds it at join time whether filtering is on or not), and the bridge
//! device is in that VLAN too, so untagged traffic among the existing
//! ports and the host goes on as before. What stops is *tagged* traffic
//! the bridge used to pass blindly between such ports; a bridge whose
//! default PVID is 0 (ports join with no VLAN) is refused, because turning
//! filtering on would cut its ports off.
//!
//! Records: `x.vlan` (access VID), `x.trunk` ("10,20-30") and `x.bvf`
//! (pipework turned filtering on for this bridge; later VLAN attachments
//! inherit it). Detach or rollback turns filtering off again only when
//! pipework turned it on and no VLAN port of ours is left on the bridge.
//! The port's VLAN entries die with the veth.
use super::Ctx;
use crate::error::{Error, Result};
use crate::inventory::{self, host_ns};
use crate::netlink::bridge_vlan::BridgeVlan;
use crate::netlink::{Journal, Link, Net};
use crate::own::{self, Area};
use crate::record::{Record, Seen};

/// What the request asks of the port.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    pub access: Option<u16>,
    pub trunks: Vec<u16>,
}

impl Plan {
    pub fn of(cx: &Ctx<'_>) -> Option<Plan> {
        let p = Plan {
            access: cx.req.vlan,
            trunks: cx.req.ovs.trunks.clone(),
        };
        (p.access.is_some() || !p.trunks.is_empty()).then_some(p)
    }
}

impl Plan {
    /// The words of the request that ask for VLANs, to name in errors.
    fn token(&self) -> String {
        match (self.access, self.trunks.is_empty()) {
            (Some(v), true) => format!("@{v}"),
            (Some(v), false) => format!("@{v} --trunk {}", compact(&self.trunks)),
            (None, _) => format!("--trunk {}", compact(&self.trunks)),
        }
    }
}

/// The one line for a kernel without bridge VLAN filtering.
pub fn kernel_refuses(bridge: &str, plan: &Plan) -> Error {
    Error::bad(
        format!("{bridge} {}", plan.token()),
        "this kernel cannot filter VLANs on a Linux bridge (built without CONFIG_BRIDGE_VLAN_FILTERING: vlan_filtering is refused); use an Open vSwitch bridge or a kernel with bridge VLAN filtering (nothing was changed)",
    )
}

/// Read-only check for an existing bridge, before anything is built.
pub async fn validate(host: &Net, bridge: &Link, plan: &Plan) -> Result<()> {
    match host.bridge_vlan(bridge).await? {
        None => Err(kernel_refuses(&bridge.name, plan)),
        Some(s) if !s.filtering && s.default_pvid == 0 => Err(Error::bad(
            &bridge.name,
            "has default_pvid 0: turning VLAN filtering on would cut its ports off; set default_pvid, or turn vlan_filtering on yourself",
        )),
        Some(_) => Ok(()),
    }
}

/// Before the port exists: the bridge filters VLANs (turned on here if it
/// did not, journaled). Returns the bridge's VLAN settings.
pub async fn prepare(
    cx: &mut Ctx<'_>,
    bridge: &Link,
    plan: &Plan,
    j: &mut Journal,
) -> Result<BridgeVlan> {
    if let Some(v) = plan.access {
        cx.record.x.vlan = Some(v);
    }
    if !plan.trunks.is_empty() {
        cx.record.x.trunk = Some(compact(&plan.trunks));
    }
    if cx.host.dry_run && bridge.index == 0 {
        // The bridge is only planned: show what would be done to it.
        cx.host.set_vlan_filtering(bridge, true).await?;
        return Ok(BridgeVlan {
            filtering: true,
            default_pvid: 1,
        });
    }
    validate(&cx.host, bridge, plan).await?;
    let _lock = lock(&bridge.name, cx.host.dry_run)?;
    let Some(state) = cx.host.bridge_vlan(bridge).await? else {
        return Err(kernel_refuses(&bridge.name, plan));
    };
    if state.filtering {
        if marked(&bridge.name) || ours_with_filtering(&cx.host, bridge).await? {
            cx.record.x.bridge_vlan_filtering = Some(true);
        }
        return Ok(state);
    }
    // The marker goes first: a SIGKILL between turning filtering on and
    // the commit of a record saying so must still leave a trace that
    // pipework turned it on, for `gc` (and the next VLAN port) to honour.
    if !cx.host.dry_run {
        mark(&bridge.name)?;
    }
    cx.host
        .set_vlan_filtering(bridge, true)
        .await
        .map_err(|e| {
            if !cx.host.dry_run {
                unmark(&bridge.name);
            }
            match e.errno() {
                Some(libc::EOPNOTSUPP) => kernel_refuses(&bridge.name, plan),
                _ => e,
            }
        })?;
    cx.record.x.bridge_vlan_filtering = Some(true);
    if !cx.host.dry_run {
        let (h, b) = (cx.host.clone(), bridge.name.clone());
        j.record(format!("vlan_filtering on {b}"), async move {
            release_filtering(&h, &b).await.map(|_| ())
        });
    }
    Ok(BridgeVlan {
        filtering: true,
        ..state
    })
}

/// The new port (still down, under its temporary name): leave the
/// default VLAN, join the asked ones.
pub async fn configure_port(host: &Net, port: &Link, plan: &Plan, state: BridgeVlan) -> Result<()> {
    let d = state.default_pvid;
    if d != 0 && plan.access != Some(d) && !plan.trunks.contains(&d) {
        host.port_vlan_del(port, d).await?;
    }
    for (lo, hi) in ranges(&plan.trunks) {
        // The native VLAN is set below, with its own flags.
        for (a, b) in split_out(lo, hi, plan.access) {
            host.port_vlan_add(port, a, b, false, false).await?;
        }
    }
    if let Some(v) = plan.access {
        host.port_vlan_add(port, v, v, true, true).await?;
    }
    Ok(())
}

/// After a detach: turn filtering off if pipework turned it on and no VLAN
/// port of ours is left.
pub async fn release(host: &Net, rec: &Record) -> Result<()> {
    if !turned_on(rec) {
        return Ok(());
    }
    release_filtering(host, &rec.h).await.map(|_| ())
}

/// The note that pipework turned filtering on for a bridge of this host
/// namespace (bridge names repeat across namespaces): a signed file in
/// own's run area, named `<netns inode>-<bridge>`.
const MARKS: &str = "bridge-vlan";

fn marker(bridge: &str) -> Option<String> {
    crate::request::check_ifname(bridge).ok()?;
    Some(format!("{}-{bridge}", host_ns()))
}

fn mark(bridge: &str) -> Result<()> {
    match marker(bridge) {
        Some(name) => own::write(Area::Run, MARKS, &name, &true),
        None => Ok(()),
    }
}

fn unmark(bridge: &str) {
    if let Some(name) = marker(bridge) {
        let _ = own::remove(Area::Run, MARKS, &name);
    }
}

fn marked(bridge: &str) -> bool {
    marker(bridge)
        .is_some_and(|name| matches!(own::read::<bool>(Area::Run, MARKS, &name), Ok(Some(true))))
}

/// Bridges of this host namespace whose filtering pipework turned on.
pub fn marked_bridges() -> Vec<String> {
    let pre = format!("{}-", host_ns());
    own::names(Area::Run, MARKS)
        .into_iter()
        .filter_map(|n| n.strip_prefix(&pre).map(String::from))
        .filter(|b| crate::request::check_ifname(b).is_ok())
        .collect()
}

/// Turn filtering off on `bridge` unless a VLAN port of ours (or one being
/// built) is left; for callers that know pipework turned it on. Says
/// whether filtering is now off (or the bridge gone).
pub async fn release_filtering(host: &Net, bridge: &str) -> Result<bool> {
    // A record's `h` is only a name: never let it reach a lock path unchecked.
    if host.dry_run || crate::request::check_ifname(bridge).is_err() {
        return Ok(false);
    }
    let _lock = lock(bridge, false)?;
    let links = host.links().await?;
    let Some(br) = links.iter().find(|l| l.name == bridge && l.is_bridge()) else {
        unmark(bridge);
        return Ok(true);
    };
    let busy =
        links
            .iter()
            .filter(|l| l.controller == Some(br.index))
            .any(|l| match inventory::read(l, host_ns()) {
                Seen::Ours(r) => is_vlan(&r),
                // A live pipework still building a port here (our own too:
                // `watch` builds several at once; a rollback has deleted its
                // own port before it gets here).
                _ => inventory::temp_owner(&l.name).is_some_and(inventory::alive),
            });
    if busy {
        return Ok(false);
    }
    if let Some(s) = host.bridge_vlan(br).await?
        && s.filtering
    {
        host.set_vlan_filtering(br, false).await?;
    }
    unmark(bridge);
    Ok(true)
}

/// Whether this record's attachment turned (or inherited turning) the
/// bridge's filtering on.
pub fn turned_on(r: &Record) -> bool {
    r.x.bridge_vlan_filtering == Some(true)
}

fn is_vlan(r: &Record) -> bool {
    r.x.vlan.is_some() || r.x.trunk.is_some()
}

/// Whether a VLAN port of ours on this bridge says pipework turned its
/// filtering on (a later attachment inherits the duty to turn it off).
async fn ours_with_filtering(host: &Net, bridge: &Link) -> Result<bool> {
    Ok(host
        .links()
        .await?
        .iter()
        .filter(|l| l.controller == Some(bridge.index))
        .any(|l| match inventory::read(l, host_ns()) {
            Seen::Ours(r) => turned_on(&r),
            _ => false,
        }))
}

fn lock(bridge: &str, dry_run: bool) -> Result<Option<crate::lock::Lock>> {
    if dry_run {
        return Ok(None);
    }
    crate::lock::Lock::take(&format!("bridge-vlan-{bridge}")).map(Some)
}

/// Sorted VIDs as contiguous (first, last) ranges.
fn ranges(vids: &[u16]) -> Vec<(u16, u16)> {
    let mut out: Vec<(u16, u16)> = Vec::new();
    for &v in vids {
        match out.last_mut() {
            Some((_, hi)) if *hi + 1 == v => *hi = v,
            _ => out.push((v, v)),
        }
    }
    out
}

/// A range without `hole` (the native VLAN), as up to two ranges.
fn split_out(lo: u16, hi: u16, hole: Option<u16>) -> Vec<(u16, u16)> {
    match hole {
        Some(h) if (lo..=hi).contains(&h) => {
            let mut v = Vec::new();
            if h > lo {
                v.push((lo, h - 1));
            }
            if h < hi {
                v.push((h + 1, hi));
            }
            v
        }
        _ => vec![(lo, hi)],
    }
}

/// "10,20-30", the form `--trunk` takes.
fn compact(vids: &[u16]) -> String {
    ranges(vids)
        .into_iter()
        .map(|(a, b)| {
            if a == b {
                a.to_string()
            } else {
                format!("{a}-{b}")
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trunk_lists_become_ranges_without_the_native_vlan() {
        assert_eq!(
            ranges(&[10, 20, 21, 22, 30]),
            vec![(10, 10), (20, 22), (30, 30)]
        );
        assert_eq!(compact(&[10, 20, 21, 22]), "10,20-22");
        assert_eq!(split_out(20, 22, Some(21)), vec![(20, 20), (22, 22)]);
        assert_eq!(split_out(20, 22, Some(20)), vec![(21, 22)]);
        assert_eq!(split_out(10, 10, Some(10)), vec![]);
        assert_eq!(split_out(20, 22, None), vec![(20, 22)]);
    }
}
