//! One attach, start to finish: resolve the guest, pick the driver, build,
//! address, record — all journaled, so any failure leaves the host as it was.
use crate::address;
use crate::driver::{self, Ctx, HostSide};
use crate::error::{Error, Result};
use crate::guest::{self, Guest};
use crate::netlink::{Journal, Net};
use crate::record::Record;
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
        k: String::new(),
        h: req.host.clone(),
        hi: None,
        g: guest.name.clone(),
        id: guest.id.as_ref().map(|_| guest.short_id()),
        ifname: req.ifname.clone(),
        x: Default::default(),
    };

    if req.dns_write && guest.pid.is_none() {
        return Err(Error::bad(
            "--dns-write",
            "needs a container or pid guest (resolv.conf lives in its root, /proc/PID/root)",
        ));
    }

    // Same name already in the container: a no-op if it is exactly what we
    // would build, otherwise a conflict — never a half-change.
    if let Some(existing) = cont.link_by_name(&req.ifname).await? {
        return same_or_conflict(req, guest, &cont, existing).await;
    }

    let drv = driver::select(req, &host).await?;
    let mut cx = Ctx {
        req,
        guest,
        host,
        cont,
        record,
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

async fn build(
    drv: &driver::AnyDriver,
    cx: &mut Ctx<'_>,
    j: &mut Journal,
) -> Result<(HostSide, crate::netlink::Link, address::Applied)> {
    let hs = drv.attach(cx, j).await?;
    cx.record.k = hs.kind.to_string();
    let link = match cx.cont.link_by_name(&cx.req.ifname).await? {
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
    cx.cont.set_alias_up(&link, &cx.record.encode()).await?;
    let applied = address::apply(cx.guest, cx.req, &cx.cont, &link, j).await?;
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
    let Some(rec) = link.alias.as_deref().and_then(Record::decode) else {
        return Err(conflict("not made by pipework"));
    };
    if rec.h != req.host {
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
        kind: match rec.k.as_str() {
            "bridge" => "bridge",
            _ => "other",
        },
        host: rec.h.clone(),
        host_ifname: rec.hi.clone(),
        mtu: link.mtu,
        notes: vec!["already attached; nothing changed".into()],
    };
    Ok(report(req, guest, &link.mac, &have, hs, true))
}
