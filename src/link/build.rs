//! The kernel steps of a point-to-point link, in the order that keeps every
//! instant recognisable after a SIGKILL (see inventory.rs):
//! 1. the pair is born in one request with end A inside A and end B inside
//!    B, both under temporary names of this pid: `gc` removes such a pair
//!    once the pid is dead (`inventory::abandoned_p2p_temps`);
//! 2. B's end takes its final name and a pending record (`p` = our pid),
//!    then A's end;
//! 3. addresses; then both records are rewritten without `p` (the commit).
//!
//! From step 2 on, the pending records are what `gc` finds and rolls back.
//! Both ends are born where they live: moving a link between namespaces
//! costs the kernel a grace period (about 10 ms), more than the rest.
use super::{End, EndReport, EndSpec, LinkRequest, Report, peer_ns};
use crate::error::{Error, Result};
use crate::inventory::{self, temp_name};
use crate::netlink::pair::VethEnd;
use crate::netlink::{Journal, Link, Net};
use crate::record::{Ident, Kind, Record, Seen};
use crate::request::{check_ifname, format_mac};

/// What `build` checks before it changes anything, and what it found.
pub(super) struct Pre {
    host: Net,
    na: Net,
    nb: Net,
    rec_a: Record,
    rec_b: Record,
    mtu: u32,
    /// Both ends already there as this very link.
    pub same: Option<(Link, Link)>,
}

/// Every check of `build`, reading only: names, MTU, record size, and
/// whether the ends exist already (same link: `same`; other: refused).
pub(super) async fn preflight(req: &LinkRequest, a: &End, b: &End) -> Result<Pre> {
    check_ifname(&req.a.ifname)?;
    check_ifname(&req.b.ifname)?;
    if a.ino == b.ino && req.a.ifname == req.b.ifname {
        return Err(Error::bad(
            &req.b.ifname,
            "both ends would have the same name in the same namespace",
        ));
    }
    let mtu = req.mtu.unwrap_or(1500);
    if !(68..=65535).contains(&mtu) {
        return Err(Error::bad(mtu, "MTU must be 68-65535"));
    }
    let host = Net::new(None, false)?;
    let na = if a.host {
        host.clone()
    } else {
        Net::new(Some(&a.netns), false)?
    };
    let nb = if b.host {
        host.clone()
    } else {
        Net::new(Some(&b.netns), false)?
    };
    let rec_a = record(req, &req.a, a, &req.b, b);
    let rec_b = record(req, &req.b, b, &req.a, a);
    for r in [&rec_a, &rec_b] {
        if r.sealed_len() > 255 {
            return Err(Error::bad(
                &r.g,
                "names too long for the link's record (255 bytes); use shorter guest or interface names",
            ));
        }
    }
    // Already there? Same link: nothing to do. Anything else: refuse.
    let ea = existing(&na, &req.a, a, &rec_a).await?;
    let eb = existing(&nb, &req.b, b, &rec_b).await?;
    if let (Some(la), Some(lb)) = (ea.clone(), eb.clone()) {
        return Ok(Pre {
            host,
            na,
            nb,
            rec_a,
            rec_b,
            mtu,
            same: Some((la, lb)),
        });
    }
    if ea.is_some() || eb.is_some() {
        let (s, e) = if ea.is_some() {
            (&req.a, a)
        } else {
            (&req.b, b)
        };
        return Err(Error::bad(
            &s.ifname,
            format!(
                "{} already has {} as one end of another link; detach it first",
                e.label, s.ifname
            ),
        ));
    }

    Ok(Pre {
        host,
        na,
        nb,
        rec_a,
        rec_b,
        mtu,
        same: None,
    })
}

/// Build the link between resolved ends `a` and `b`, journaling into `j`.
pub async fn build(req: &LinkRequest, a: &End, b: &End, j: &mut Journal) -> Result<Report> {
    let Pre {
        host,
        na,
        nb,
        rec_a,
        rec_b,
        mtu,
        same,
    } = preflight(req, a, b).await?;
    if let Some((la, lb)) = &same {
        return Ok(report(req, la, lb, mtu, true));
    }
    // 1. Born: A's end in A, B's end in B, both temporary.
    let (tmp_a, tmp_b) = (temp_name(), temp_name());
    let end_a = VethEnd {
        name: &tmp_a,
        ns: (!a.host).then_some(&a.netns),
        mac: req.a.mac,
    };
    let end_b = VethEnd {
        name: &tmp_b,
        ns: (!b.host).then_some(&b.netns),
        mac: req.b.mac,
    };
    host.add_veth_pair(&end_a, &end_b, mtu, req.veth_queues.get())
        .await
        .map_err(|e| explain(e, req))?;
    // B's end stays in B from birth to the end: deleting it undoes all.
    let lb = nb
        .link_by_name(&tmp_b)
        .await?
        .ok_or_else(|| Error::other(format!("veth end {tmp_b} vanished after creation")))?;
    nb.journal_delete(j, format!("veth {}", req.b.ifname), lb.index);

    // 2. B's end: final name, pending record, up; then A's.
    let lb = label(&nb, b, lb, &req.b.ifname, &rec_b).await?;

    let la = na
        .link_by_name(&tmp_a)
        .await?
        .ok_or_else(|| Error::other(format!("veth end {tmp_a} vanished in {}", a.label)))?;
    let la = label(&na, a, la, &req.a.ifname, &rec_a).await?;

    // 3. Addresses, then the commit on both ends.
    for (net, l, s) in [(&na, &la, &req.a), (&nb, &lb, &req.b)] {
        for addr in &s.addrs {
            net.add_addr(l, *addr).await?;
        }
    }
    for (net, end, l, rec) in [(&na, a, &la, &rec_a), (&nb, b, &lb, &rec_b)] {
        let mut r = rec.clone();
        r.p = None;
        let alias = r.seal(Ident {
            ns: end.ino,
            index: l.index,
        })?;
        net.set_alias(l, &alias).await?;
    }
    Ok(report(req, &la, &lb, mtu, false))
}

fn record(req: &LinkRequest, me: &EndSpec, end: &End, peer: &EndSpec, pe: &End) -> Record {
    let mut x = req.extras.clone();
    x.peer_ns = Some(pe.ino);
    Record {
        k: Kind::P2p,
        h: format!("{}:{}", pe.label, peer.ifname),
        g: end.label.clone(),
        id: end.id.clone(),
        ifname: me.ifname.clone(),
        n: end.ino,
        p: Some(std::process::id()),
        x,
        ..Default::default()
    }
}

/// Name, label (pending) and bring up one end; returns it as renamed.
async fn label(net: &Net, end: &End, l: Link, name: &str, rec: &Record) -> Result<Link> {
    let alias = rec.seal(Ident {
        ns: end.ino,
        index: l.index,
    })?;
    net.rename_alias_up(&l, name, &alias)
        .await
        .map_err(|e| match e.errno() {
            Some(libc::EEXIST) => Error::bad(
                name,
                format!("{} already has an interface by that name", end.label),
            ),
            _ => e,
        })?;
    let mut l = l;
    l.name = name.to_string();
    Ok(l)
}

/// The end's interface if it already exists: Some when it is this very
/// link (our committed p2p record for the same peer, lab fields and all),
/// an error when it is anything else.
async fn existing(net: &Net, s: &EndSpec, end: &End, want: &Record) -> Result<Option<Link>> {
    let Some(l) = net.link_by_name(&s.ifname).await? else {
        return Ok(None);
    };
    if let Seen::Ours(r) = inventory::read(&l, end.ino)
        && r.k == Kind::P2p
        && r.p.is_none()
        && r.h == want.h
        && peer_ns(&r) == peer_ns(want)
        && r.x == want.x
    {
        return Ok(Some(l));
    }
    Err(Error::bad(
        &s.ifname,
        format!(
            "{} already has an interface {} (not this link); pick another name or detach it",
            end.label, s.ifname
        ),
    ))
}

fn explain(e: Error, req: &LinkRequest) -> Error {
    match e.errno() {
        Some(libc::EADDRNOTAVAIL) => Error::bad(
            req.a
                .mac
                .or(req.b.mac)
                .map(|m| format_mac(&m))
                .unwrap_or_default(),
            "the kernel refused this MAC",
        ),
        _ => e,
    }
}

fn report(req: &LinkRequest, la: &Link, lb: &Link, mtu: u32, unchanged: bool) -> Report {
    let end = |s: &EndSpec, l: &Link| EndReport {
        guest: s.guest.clone(),
        interface: s.ifname.clone(),
        mac: format_mac(&l.mac),
        addresses: s.addrs.iter().map(|a| a.to_string()).collect(),
    };
    Report {
        a: end(&req.a, la),
        b: end(&req.b, lb),
        mtu,
        unchanged,
    }
}
