//! `gc` for the overlay agent's WireGuard device (a hook, `crate::hooks`):
//! marked as the agent's, or blank under its name (an agent killed between
//! making and marking it), with no encrypted network's VXLAN device riding
//! on it any more: an agent killed after its last encrypted network went,
//! or one killed while making the device.
//!
//! Never while this host's agent (its signed state, `state`) is alive: it
//! makes and keys the device *before* it builds the VXLAN device on it, so
//! a gc in between would take the tunnel from under a network being built.
//! A live agent removes the device itself after its last encrypted network.
//! Here, not in gc's own passes, because only the overlay knows its agent.
use super::state;
use crate::error::Error;
use crate::hooks::{GcCtx, GcItem, GcOut, Stuck};
use crate::netlink::wg;
use crate::record::MarkKind;
use futures::future::BoxFuture;

pub fn pass<'a>(cx: &'a GcCtx<'a>) -> BoxFuture<'a, GcOut> {
    Box::pin(run(cx))
}

/// The pid of this namespace's overlay agent while it runs.
fn live_agent() -> Option<u32> {
    state::load()
        .map(|s| s.pid)
        .filter(|p| crate::inventory::alive(*p))
}

async fn run(cx: &GcCtx<'_>) -> GcOut {
    let mut out = GcOut::default();
    if live_agent().is_some() {
        return out;
    }
    let host = cx.host;
    let Ok(links) = host.links().await else {
        return out;
    };
    for l in links
        .iter()
        .filter(|l| l.kind.as_deref() == Some("wireguard"))
    {
        let ours = crate::inventory::mark_of(l)
            .is_some_and(|m| m.m == MarkKind::Overlay && m.of == wg::MARK_OF);
        // Unmarked: only the agent's name with no key and no peer (killed
        // between making and marking it); an admin's device has a key.
        let half_made = l.name == wg::DEVICE && host.wg_blank(l.index);
        if !ours && !half_made {
            continue;
        }
        let r = async {
            if host.wg_in_use(l.index).await? {
                return Ok(false);
            }
            if !cx.dry_run {
                host.delete_link(l).await?;
            }
            Ok::<_, Error>(true)
        }
        .await;
        match r {
            Ok(true) => out.items.push(GcItem {
                kind: "wireguard",
                name: l.name.clone(),
                place: "host".into(),
                action: "removed",
                reason: "the overlay's WireGuard device, no encrypted network uses it, and no overlay agent runs here".into(),
            }),
            Ok(false) => {}
            Err(e) => out.stuck.push(Stuck {
                kind: "wireguard",
                name: l.name.clone(),
                place: "host".into(),
                error: e.to_string(),
            }),
        }
    }
    out
}
