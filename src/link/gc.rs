//! `gc` for point-to-point links (a hook, `crate::hooks`): an end in the
//! host namespace (`host:NAME`) whose builder died before the commit, and
//! veth ends a dead `pipework link` created and never named. Ends in a
//! guest's namespace are rolled back by gc's own pass, like any other
//! unfinished attachment. Each is re-read just before it is deleted
//! (`inventory::unchanged`): a builder that finished and exited between
//! the scan and the liveness check has renamed or relabelled it by then.
use crate::hooks::{GcCtx, GcItem, GcOut, Stuck};
use crate::inventory::{self, host_ns};
use crate::netlink::{Link, Net};
use crate::record::Kind;
use futures::future::BoxFuture;

pub fn pass<'a>(cx: &'a GcCtx<'a>) -> BoxFuture<'a, GcOut> {
    Box::pin(run(cx))
}

async fn run(cx: &GcCtx<'_>) -> GcOut {
    let mut out = GcOut::default();
    if let Some((_, _, scan)) = cx.all.iter().find(|(ns, _, _)| ns.ino == host_ns()) {
        for f in scan.attachments().filter(|f| f.rec.k == Kind::P2p) {
            let Some(pid) = f.abandoned_by() else {
                continue;
            };
            let item = GcItem {
                kind: "attachment",
                name: f.link.name.clone(),
                place: "host".into(),
                action: "rolled back",
                reason: format!("unfinished: pipework pid {pid} died while linking it"),
            };
            let r = async {
                if !inventory::unchanged(cx.host, &f.link).await? {
                    return Ok(false);
                }
                if !cx.dry_run {
                    inventory::delete_if_ours(cx.host, &f.rec).await?;
                }
                Ok(true)
            };
            settle(&mut out, item, r.await);
        }
    }
    for (i, l, pid) in inventory::abandoned_p2p_temps(cx.all).await {
        let (ns, net, _) = &cx.all[i];
        let item = GcItem {
            kind: "link",
            name: l.name.clone(),
            place: ns.label.clone(),
            action: "removed",
            reason: format!(
                "unfinished point-to-point link: pipework pid {pid} died before naming it"
            ),
        };
        let r = remove_if_unchanged(net, &l, cx.dry_run).await;
        settle(&mut out, item, r);
    }
    out
}

async fn remove_if_unchanged(net: &Net, l: &Link, dry_run: bool) -> crate::Result<bool> {
    if !inventory::unchanged(net, l).await? {
        return Ok(false);
    }
    if !dry_run {
        net.delete_link(l).await?;
    }
    Ok(true)
}

/// Done (true), left alone (false) or stuck.
fn settle(out: &mut GcOut, item: GcItem, r: crate::Result<bool>) {
    match r {
        Ok(true) => out.items.push(item),
        Ok(false) => {}
        Err(e) => out.stuck.push(Stuck {
            kind: item.kind,
            name: item.name,
            place: item.place,
            error: e.to_string(),
        }),
    }
}
