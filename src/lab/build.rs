//! Building one unit of a lab (a point-to-point link, or one member of a
//! shared segment) through the existing `link` and `attach` paths, with
//! the lab's name and the unit's id signed into its records, and the undo
//! step `up` rolls back with.
use super::apply::dup;
use super::model::{Lab, LinkKind, Unit};
use super::{netem, plan};
use crate::error::{Error, Result};
use crate::guest::Guest;
use crate::inventory;
use crate::link::{self, EndSpec, LinkRequest};
use crate::netlink::{Journal, Net};
use crate::netns::NetNs;
use crate::request::{Addressing, AttachRequest, HostMode};
use std::collections::BTreeMap;

/// After an attach for unit `u` at `node:ifname`: refuse an attachment
/// that was already there (made outside this lab, with no lab record on
/// it: not ours to take over, nor to remove on `down`), else journal the
/// unit's removal through `ns`, the handle taken before the attach.
fn own_unit(
    j: &mut Journal,
    lab: &Lab,
    u: &Unit,
    node: &str,
    ifname: &str,
    ns: NetNs,
    unchanged: bool,
) -> Result<()> {
    if unchanged {
        return Err(Error::bad(
            format!("{node}:{ifname}"),
            "already attached outside this lab; detach it first or use another interface name",
        ));
    }
    let (labn, id) = (lab.name.clone(), u.id());
    j.record(format!("{node} {ifname}"), async move {
        remove_unit_in(&ns, &labn, &id).await
    });
    Ok(())
}

/// Build one unit, journaling how to take it away again.
pub(super) async fn add(
    lab: &Lab,
    u: &Unit,
    guests: &BTreeMap<String, Guest>,
    host: &Net,
    j: &mut Journal,
) -> Result<()> {
    let extras = plan::extras(&lab.name, u);
    let end_ns = |node: &str| -> Result<NetNs> {
        match guests.get(node) {
            Some(g) => dup(&g.netns),
            None => NetNs::current(),
        }
    };
    match &u.kind {
        LinkKind::P2p => {
            let (ea, eb) = (&u.ends[0], &u.ends[1]);
            let spec = |e: &super::model::End| EndSpec {
                guest: e.node.clone(),
                ifname: e.ifname.clone(),
                addrs: e.addrs.clone(),
                mac: e.mac,
            };
            let req = LinkRequest {
                a: spec(ea),
                b: spec(eb),
                mtu: u.mtu,
                extras,
                veth_queues: Default::default(),
            };
            let a = end_of(guests, &ea.node)?;
            let b = end_of(guests, &eb.node)?;
            link::build(&req, &a, &b, j).await?;
        }
        LinkKind::Overlay(net) => {
            let e = &u.ends[0];
            let node = lab
                .nodes
                .get(&e.node)
                .ok_or_else(|| Error::bad(&e.node, "not a node"))?;
            let g = guests
                .get(&e.node)
                .ok_or_else(|| Error::bad(&e.node, "not a node"))?;
            let mut a = crate::classic::ClassicArgs::new(net, &node.guest_spec(&lab.name));
            a.ip = e.addrs.first().map(|x| x.to_string());
            a.ifname = Some(e.ifname.clone());
            a.mtu = u.mtu;
            // The undo step's handle first: once the attach succeeded,
            // nothing may fail before the step is recorded.
            let ns = dup(&g.netns)?;
            let r = overlay_attach(&a, extras).await?.ok_or_else(|| {
                Error::bad(net, "no such overlay network (see pipework overlay status)")
            })?;
            own_unit(j, lab, u, &e.node, &e.ifname, ns, r.unchanged)?;
        }
        kind => {
            let e = &u.ends[0];
            let g = guests
                .get(&e.node)
                .ok_or_else(|| Error::bad(&e.node, "not a node"))?;
            let mut req = AttachRequest {
                host: kind.host().unwrap_or_default().to_string(),
                guest: g.name.clone(),
                ifname: e.ifname.clone(),
                addressing: if e.addrs.is_empty() {
                    Addressing::None
                } else {
                    Addressing::Static {
                        addrs: e.addrs.clone(),
                        gateways: vec![],
                    }
                },
                mac: e.mac,
                vlan: u.vlan,
                mtu: u.mtu,
                create: matches!(kind, LinkKind::Bridge(_)),
                host_ifname: (!matches!(kind, LinkKind::Macvlan { .. }))
                    .then(|| plan::host_ifname(&lab.name, u)),
                record_extras: extras,
                ..Default::default()
            };
            if let LinkKind::Macvlan { mode, .. } = kind {
                req.mode = HostMode::Macvlan(mode.clone());
            }
            fits(&req, g, kind)?;
            // The undo step's handle first: once the attach succeeded,
            // nothing may fail before the step is recorded.
            let ns = dup(&g.netns)?;
            let r = crate::attach::attach_to(&req, g).await?;
            own_unit(j, lab, u, &e.node, &e.ifname, ns, r.unchanged)?;
        }
    }
    if !u.impair.is_none() {
        for e in &u.ends {
            let ns = end_ns(&e.node)?;
            let net = if guests.contains_key(&e.node) {
                Net::new(Some(&ns), false)?
            } else {
                host.clone()
            };
            let l = net
                .link_by_name(&e.ifname)
                .await?
                .ok_or_else(|| Error::other(format!("{} vanished", e.ifname)))?;
            netem::apply(&net, &l, &u.impair).await?;
        }
    }
    Ok(())
}

/// Refuse, before building, a record that would not fit in the link's
/// alias (255 bytes): long container, lab or interface names add up.
fn fits(req: &AttachRequest, g: &Guest, kind: &LinkKind) -> Result<()> {
    let mut x = req.record_extras.clone();
    match kind {
        LinkKind::Ovs(_) => {
            x.ovs_port = Some(req.host_ifname.clone().unwrap_or_default());
        }
        LinkKind::Macvlan { mode, .. } => {
            x.mode = Some(mode.clone());
        }
        _ => {}
    }
    use crate::record::Kind;
    let r = crate::record::Record {
        k: match kind {
            LinkKind::Macvlan { .. } => Kind::Macvlan,
            LinkKind::Ovs(_) => Kind::Ovs,
            _ => Kind::Bridge,
        },
        h: req.host.clone(),
        hi: req.host_ifname.clone(),
        g: g.name.clone(),
        id: g.id.as_ref().map(|_| g.short_id()),
        ifname: req.ifname.clone(),
        n: u64::MAX,
        x,
        ..Default::default()
    };
    if r.sealed_len() > 255 {
        return Err(Error::bad(
            &g.name,
            "names too long for the link's record (255 bytes): use a shorter container, lab or interface name",
        ));
    }
    Ok(())
}

#[cfg(feature = "overlay")]
async fn overlay_attach(
    a: &crate::classic::ClassicArgs,
    extras: crate::record::Extras,
) -> Result<Option<crate::attach::Report>> {
    crate::overlay::attach::try_attach_with(a, extras).await
}

#[cfg(not(feature = "overlay"))]
async fn overlay_attach(
    a: &crate::classic::ClassicArgs,
    _: crate::record::Extras,
) -> Result<Option<crate::attach::Report>> {
    Err(Error::bad(
        &a.host,
        "this pipework was built without the overlay (cargo feature overlay)",
    ))
}

fn end_of(guests: &BTreeMap<String, Guest>, node: &str) -> Result<link::End> {
    if node == "host" {
        return link::resolve("host");
    }
    let g = guests
        .get(node)
        .ok_or_else(|| Error::bad(node, "not a node"))?;
    Ok(link::End {
        netns: dup(&g.netns)?,
        ino: g.netns.inode()?,
        label: g.name.clone(),
        id: g.id.as_ref().map(|_| g.short_id()),
        host: false,
    })
}

/// Undo of an attach unit: detach whatever records of it `ns` holds.
async fn remove_unit_in(ns: &NetNs, lab: &str, id: &str) -> Result<()> {
    let host = Net::new(None, false)?;
    let net = Net::new(Some(ns), false)?;
    let scan = inventory::scan(&net, ns.inode()?, "").await?;
    for f in scan.attachments() {
        if plan::lab_of(&f.rec) == Some(lab) && plan::unit_of(&f.rec) == Some(id) {
            // As `detach` does: an overlay endpoint leaves etcd first.
            if f.rec.x.overlay_ip.is_some() || f.rec.x.overlay_ip6.is_some() {
                for before in crate::hooks::get()?.before_detach {
                    before(&f.rec, false).await?;
                }
            }
            crate::driver::undo(&host, &net, &f.rec).await?;
        }
    }
    Ok(())
}
