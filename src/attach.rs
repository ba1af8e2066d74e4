//! One attach, start to finish: resolve the guest, pick the driver, build,
//! address, record — all journaled, so any failure leaves the host as it was.
use crate::address;
use crate::driver::{self, Ctx, HostSide};
use crate::error::{Error, Result};
use crate::guest::{self, Guest};
use crate::inventory;
use crate::netlink::{Journal, Net};
use crate::record::{Ident, Kind, Record, Seen};
use crate::request::{AttachRequest, format_mac};
use ipnetwork::IpNetwork;
use serde::Serialize;

#[derive(Debug, Serialize)]
pub struct Report {
    pub guest: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container_id: Option<String>,
    pub interface: String,
    pub mac: String,
    pub addresses: Vec<String>,
    pub gateways: Vec<String>,
    pub host: HostSide,
    /// DNS servers from a DHCP lease (written to resolv.conf only with --dns-write).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dns: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dhcp: Option<DhcpReport>,
    /// True when an identical attachment already existed (no-op re-run).
    pub unchanged: bool,
}

#[derive(Debug, Serialize)]
pub struct DhcpReport {
    pub server: String,
    pub lease_seconds: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keeper_pid: Option<u32>,
}

pub async fn run(req: &AttachRequest) -> Result<Report> {
    let guest = guest::resolve(&req.guest)?;
    attach_to(req, &guest).await
}

/// Attach to an already resolved guest (the demo and CNI use this too).
pub async fn attach_to(req: &AttachRequest, guest: &Guest) -> Result<Report> {
    let host = Net::new(None, req.dry_run)?;
    let cont = Net::new(Some(&guest.netns), req.dry_run)?;

    let record = Record {
        h: req.host.clone(),
        g: guest.name.clone(),
        id: guest
            .id
            .as_ref()
            .filter(|_| !req.record_no_id)
            .map(|_| guest.short_id()),
        ifname: req.ifname.clone(),
        n: guest.netns.inode()?,
        // Until the commit at the very end, the record names the pipework
        // building it: a SIGKILL leaves it recognisably unfinished.
        p: Some(std::process::id()),
        x: req.record_extras.clone(),
        ..Default::default()
    };

    if req.dns_write && guest.pid.is_none() {
        return Err(Error::bad(
            "--dns-write",
            "needs a container or pid guest (resolv.conf lives in its root, /proc/PID/root)",
        ));
    }

    // One look at the guest's links: the interface we are asked for, and
    // what a killed run may have left there.
    let links = cont.links().await?;
    if !req.dry_run {
        clear_abandoned(&cont, &links).await?;
    }
    // Say what we will not believe in this guest (a rollback never acts on
    // it either: the journal holds only what this run created).
    let forged: Vec<inventory::Ignored> = links
        .iter()
        .filter(|l| Record::claims(l.alias.as_deref()))
        .filter_map(|l| match inventory::read(l, record.n) {
            Seen::Forged(why) => Some(inventory::Ignored {
                ns: guest.name.clone(),
                link: l.name.clone(),
                why,
            }),
            _ => None,
        })
        .collect();
    inventory::warn_ignored(&forged);
    if let Some(existing) = links.into_iter().find(|l| l.name == req.ifname) {
        match inventory::read(&existing, record.n) {
            // A killed run's unfinished attachment: replace it, unless its
            // builder finished it (dropped `p`) and exited since our dump.
            Seen::Ours(rec)
                if rec.p.is_some_and(|p| !inventory::alive(p))
                    && !inventory::unchanged(&cont, &existing).await? =>
            {
                // Judge what is there now, as a re-run would.
                let now = cont.link_by_name(&req.ifname).await?;
                match now.map(|l| (inventory::read(&l, record.n), l)) {
                    Some((Seen::Ours(r), _)) if r.p.is_some() => {
                        return Err(Error::bad(
                            &req.ifname,
                            "another pipework is replacing this unfinished attachment; run the same command again",
                        ));
                    }
                    Some((seen, l)) => {
                        return same_or_conflict(req, guest, &cont, l, seen).await;
                    }
                    // Gone: `gc` (or another run) rolled the unfinished
                    // attachment back meanwhile, as we were about to. The
                    // name is free: build, as a re-run would (the soak
                    // test met this with gc in a loop beside attaches).
                    None => {}
                }
            }
            Seen::Ours(rec) if rec.p.is_some_and(|p| !inventory::alive(p)) => {
                eprintln!(
                    "pipework: replacing the unfinished attachment of {} left by pipework pid {}",
                    req.ifname,
                    rec.p.unwrap_or_default()
                );
                driver::undo(&host, &cont, &rec).await?;
            }
            Seen::Ours(rec) if rec.p.is_some() => {
                return Err(Error::bad(
                    &req.ifname,
                    format!(
                        "is being attached right now by pipework pid {}; wait for it",
                        rec.p.unwrap_or_default()
                    ),
                ));
            }
            seen => return same_or_conflict(req, guest, &cont, existing, seen).await,
        }
    }

    let drv = driver::select(req, &host).await?;
    let mut cx = Ctx {
        req,
        guest,
        host,
        cont,
        record,
        made: None,
    };
    drv.validate(&cx).await?;

    let mut j = Journal::new();
    match build(&drv, &mut cx, &mut j).await {
        Ok((hs, link, applied)) => {
            j.commit();
            if !req.dry_run {
                address::announce_all(&guest.netns, &link, &applied.addrs);
            }
            let mut r = report(req, guest, &link.mac, &applied.addrs, hs, false);
            if let Some(lease) = &applied.lease {
                r.gateways = lease.router.iter().map(|g| g.to_string()).collect();
                r.dns = lease.dns.iter().map(|d| d.to_string()).collect();
                r.dhcp = Some(DhcpReport {
                    server: lease.server_id.to_string(),
                    lease_seconds: lease.lease_time,
                    mtu: lease.mtu,
                    keeper_pid: applied.keeper,
                });
            }
            Ok(r)
        }
        Err(e) => {
            j.rollback().await;
            Err(e)
        }
    }
}

/// Delete the guest links under temporary names whose pipework died
/// before naming them (their peer or parent is on the host, so they are
/// ours; a veth takes its host end with it).
async fn clear_abandoned(cont: &Net, links: &[crate::netlink::Link]) -> Result<()> {
    let mut host = None;
    for l in links {
        if inventory::temp_owner(&l.name).is_none() {
            continue;
        }
        if host.is_none() {
            host = Some(crate::netns::NetNs::current()?);
        }
        let Some(h) = &host else { continue };
        // Re-read after the builder was found dead: one that renamed its
        // link and exited since our dump finished its attachment.
        if inventory::abandoned_guest_temp(cont, l, h).await?.is_some()
            && inventory::unchanged(cont, l).await?
        {
            cont.delete_link(l).await?;
        }
    }
    Ok(())
}

async fn build(
    drv: &driver::AnyDriver,
    cx: &mut Ctx<'_>,
    j: &mut Journal,
) -> Result<(HostSide, crate::netlink::Link, address::Applied)> {
    let hs = drv.attach(cx, j).await?;
    if let Some(k) = Kind::from_name(hs.kind) {
        cx.record.k = k;
    }
    let mut link = match cx.made.take() {
        Some(l) => l,
        None if cx.req.dry_run => crate::netlink::Link {
            name: cx.req.ifname.clone(),
            ..Default::default()
        },
        None => {
            return Err(Error::other(format!(
                "{} did not appear in the guest",
                cx.req.ifname
            )));
        }
    };
    // Named, labelled (still unfinished) and up in one request.
    let id = Ident {
        ns: cx.record.n,
        index: link.index,
    };
    let alias = cx.record.alias_for(id, cx.req.dry_run)?;
    cx.cont
        .rename_alias_up(&link, &cx.req.ifname, &alias)
        .await?;
    link.name = cx.req.ifname.clone();
    let applied = address::apply(cx.guest, cx.req, &cx.cont, &link, j).await?;
    // The commit point: the record without the builder's pid.
    cx.record.p = None;
    let alias = cx.record.alias_for(id, cx.req.dry_run)?;
    cx.cont.set_alias(&link, &alias).await?;
    Ok((hs, link, applied))
}

fn report(
    req: &AttachRequest,
    guest: &Guest,
    mac: &[u8],
    addrs: &[IpNetwork],
    host: HostSide,
    unchanged: bool,
) -> Report {
    let gateways = match &req.addressing {
        crate::request::Addressing::Static { gateways, .. } => {
            gateways.iter().map(|g| g.to_string()).collect()
        }
        _ => vec![],
    };
    Report {
        guest: guest.name.clone(),
        container_id: guest.id.clone(),
        interface: req.ifname.clone(),
        mac: format_mac(mac),
        addresses: addrs.iter().map(|a| a.to_string()).collect(),
        gateways,
        host,
        dns: vec![],
        dhcp: None,
        unchanged,
    }
}

async fn same_or_conflict(
    req: &AttachRequest,
    guest: &Guest,
    cont: &Net,
    link: crate::netlink::Link,
    seen: Seen,
) -> Result<Report> {
    let conflict = |why: &str| {
        Error::bad(
            &req.ifname,
            format!(
                "{} already has an interface {} ({why}); pick another with -i NAME or run `pipework detach {} -i {}`",
                guest.name, req.ifname, req.guest, req.ifname
            ),
        )
    };
    let rec = match seen {
        Seen::Ours(rec) => rec,
        Seen::Foreign => return Err(conflict("not made by pipework")),
        Seen::Forged(why) => {
            return Err(conflict(&format!(
                "its alias claims to be a pipework record, but {why}"
            )));
        }
    };
    // `mac:` picks a parent by its MAC: the record names it as given, but
    // a NIC moved in (phys) no longer answers to it on the host.
    if rec.h != req.host && !(rec.k == Kind::Phys && req.host.starts_with("mac:")) {
        return Err(conflict(&format!("attached to {}", rec.h)));
    }
    if let Some(mac) = req.mac
        && link.mac != mac
    {
        return Err(conflict("with another MAC address"));
    }
    let have: Vec<IpNetwork> = cont
        .addrs(link.index)
        .await?
        .into_iter()
        .map(|a| a.net)
        .collect();
    if let crate::request::Addressing::Static { addrs, .. } = &req.addressing
        && !addrs.iter().all(|a| have.contains(a))
    {
        return Err(conflict("with other addresses"));
    }
    let hs = HostSide {
        kind: rec.k.as_str(),
        host: rec.h.clone(),
        host_ifname: rec.hi.clone(),
        mtu: link.mtu,
        notes: vec!["already attached; nothing changed".into()],
    };
    Ok(report(req, guest, &link.mac, &have, hs, true))
}
