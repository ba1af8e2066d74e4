//! `pipework NET $CID IP/LEN|auto [--ip IP6/LEN]`: the classic form with an
//! overlay network's name as host side. `auto` claims one address of each
//! family the network has; static addresses are one per family (the
//! second as `--ip`, as the classic form takes extra addresses). The
//! addresses are claimed in etcd first (under this host's lease, in one
//! transaction), then the ordinary bridge driver plugs the container into
//! the agent's bridge for NET; a failed attach gives them back.
use super::alloc::{self, Want};
use super::endpoint::Claim;
use super::names;
use super::state::{self, AgentState};
use super::store::{self, Endpoint, Store};
use crate::classic::{ClassicArgs, to_request};
use crate::error::{Error, Result};
use std::net::IpAddr;

/// The overlay addresses a verified record claims (none if it is not an
/// overlay one), IPv4 first. They are signed with the rest of the record
/// (`Extras::overlay_ip`, `overlay_ip6`), so detach, CNI DEL and the
/// agent's republish act on the addresses pipework claimed, never on one a
/// guest suggests by changing its interface's MAC.
pub fn ovip_of(rec: &crate::record::Record) -> Vec<IpAddr> {
    if names::net_of_bridge(&rec.h).is_none() {
        return Vec::new();
    }
    let v4 = rec.x.overlay_ip.map(IpAddr::V4);
    v4.into_iter()
        .chain(rec.x.overlay_ip6.map(IpAddr::V6))
        .collect()
}

/// Sign the claimed addresses into the record.
fn sign_ips(x: &mut crate::record::Extras, ips: &[IpAddr]) {
    for ip in ips {
        match ip {
            IpAddr::V4(a) => x.overlay_ip = Some(*a),
            IpAddr::V6(a) => x.overlay_ip6 = Some(*a),
        }
    }
}

/// The attach's address tokens: the first as the classic IP argument,
/// the others as `--ip`, each `ip/len[@gw]`.
fn set_addrs(args: &mut ClassicArgs, ips: &[IpAddr], net: &store::NetSpec, no_route: bool) {
    let mut toks = ips.iter().map(|ip| with_gw(*ip, net, no_route));
    args.ip = toks.next();
    args.ips = toks.collect();
}

/// Cheap, synchronous: is `a.host` an overlay network here? Only when an
/// agent runs on this host and no interface of that name exists (a real
/// interface always keeps its classic meaning).
pub fn claims(a: &ClassicArgs) -> bool {
    names::check_name(&a.host).is_ok()
        && !std::path::Path::new("/sys/class/net")
            .join(&a.host)
            .exists()
        && state::exists()
}

/// The overlay attach, or None when NET is not an overlay network (the
/// caller then goes the classic way, e.g. a new `br5`).
pub async fn try_attach(a: &ClassicArgs) -> Result<Option<crate::attach::Report>> {
    try_attach_with(a, Default::default()).await
}

/// `try_attach` with extra fields signed into the record (a lab's name and
/// link id), so whoever made the endpoint finds it by its record.
pub async fn try_attach_with(
    a: &ClassicArgs,
    extras: crate::record::Extras,
) -> Result<Option<crate::attach::Report>> {
    let net_name = a.host.clone();
    let agent = state::require(&net_name)?;
    let classic_ok = a.host.starts_with("br") || a.create;
    let st = match Store::connect(&agent.etcd).await {
        Ok(s) => s,
        Err(_) if classic_ok => return Ok(None),
        Err(e) => return Err(e),
    };
    let Some(net) = super::network::get(&st, &net_name).await? else {
        if classic_ok {
            return Ok(None);
        }
        return Err(Error::bad(
            &net_name,
            "no such interface or overlay network (see `pipework overlay status`)",
        ));
    };
    // Input first, etcd and the kernel after.
    let tok = a.ip.clone().ok_or_else(|| {
        Error::bad(
            &a.guest,
            "missing address after the guest: give ip/len or auto",
        )
    })?;
    let mut toks: Vec<&str> = vec![tok.as_str()];
    toks.extend(a.ips.iter().map(String::as_str));
    let want = alloc::parse(&toks, &net)?;
    if a.mac.is_some() || a.dry_run {
        return Err(Error::bad(
            &net_name,
            "an overlay endpoint takes its addresses (or auto) and derives its MAC; drop the MAC and --dry-run",
        ));
    }
    let mut args = a.clone();
    args.no_default_route = false;
    args.host = names::bridge(&net_name);
    args.mtu = Some(a.mtu.unwrap_or(net.mtu));
    let probe: Vec<IpAddr> = match &want {
        Want::Given(ips) => ips.clone(),
        Want::Auto => {
            let v4 = net.subnet.map(|_| IpAddr::V4(alloc::first_host(&net)));
            let v6 = net.subnet6.map(|_| IpAddr::V6(alloc::first_host6(&net)));
            v4.into_iter().chain(v6).collect()
        }
    };
    set_addrs(&mut args, &probe, &net, a.no_default_route);
    to_request(&args)?;
    let guest = crate::guest::resolve(&a.guest)?;
    // Already attached (a re-run): no new claim; the classic path reports
    // "unchanged" or names the conflict.
    let ifname = args.ifname.clone().unwrap_or_else(|| "eth1".into());
    let cont = crate::netlink::Net::new(Some(&guest.netns), false)?;
    // The addresses come from our signed record on that link, never from
    // its MAC (the guest can change that).
    if let Some(l) = cont.link_by_name(&ifname).await? {
        let have = match crate::inventory::read(&l, guest.netns.inode()?) {
            crate::record::Seen::Ours(r) => ovip_of(&r),
            _ => Vec::new(),
        };
        let ips = match (&want, have.is_empty()) {
            (Want::Given(ips), _) => ips.clone(),
            (Want::Auto, false) => have,
            (Want::Auto, true) => probe,
        };
        set_addrs(&mut args, &ips, &net, a.no_default_route);
        args.mac = Some(crate::request::format_mac(&names::mac_of(&ips)));
        let mut req = to_request(&args)?;
        // An overlay bridge routes (anycast gateway, masquerade, replies by
        // conntrack state): its frames must stay tracked.
        req.keep_conntrack = true;
        req.record_extras = extras.clone();
        sign_ips(&mut req.record_extras, &ips);
        wait_for_bridge(&net_name).await?;
        return crate::attach::attach_to(&req, &guest).await.map(Some);
    }

    let claim = Claim::take(&st, &agent, &net, &want, &guest.name, &ifname).await?;
    set_addrs(&mut args, &claim.ips(), &net, a.no_default_route);
    args.mac = Some(claim.mac().to_string());
    let result = async {
        // The agent builds a network's devices on a host once the host
        // has an endpoint on it: this claim.
        wait_for_bridge(&net_name).await?;
        let mut req = to_request(&args)?;
        req.keep_conntrack = true;
        req.record_extras = extras.clone();
        sign_ips(&mut req.record_extras, &claim.ips());
        crate::attach::attach_to(&req, &guest).await
    }
    .await;
    match result {
        Ok(rep) => {
            claim.commit(rep.host.host_ifname.clone(), "pipework").await;
            Ok(Some(rep))
        }
        Err(e) => {
            claim.release("pipework").await;
            Err(e)
        }
    }
}

/// `ip/len@gw`: the default route (of `ip`'s family) through the anycast
/// gateway every host's bridge carries, unless the network was made
/// without one or the attach says `--no-default-route`.
fn with_gw(ip: IpAddr, net: &store::NetSpec, no_route: bool) -> String {
    let len = net.subnet_of(ip).map(|s| s.prefix()).unwrap_or(0);
    let gw = match ip {
        IpAddr::V4(_) => net.gw().map(IpAddr::V4),
        IpAddr::V6(_) => net.gw6().map(IpAddr::V6),
    };
    match gw {
        Some(gw) if !(net.no_default_route || no_route) => format!("{ip}/{len}@{gw}"),
        _ => format!("{ip}/{len}"),
    }
}

/// The agent creates the bridge moments after this host claims its first
/// address on the network (or at once, for `--networks`).
pub async fn wait_for_bridge(net: &str) -> Result<()> {
    let path = std::path::Path::new("/sys/class/net").join(names::bridge(net));
    // Up to 10 s: the agent may be moving its watch off a member that
    // stopped answering (two lease TTLs at most).
    for _ in 0..100 {
        if path.exists() {
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    Err(Error::bad(
        net,
        format!(
            "the overlay agent has not created {} yet; is it running and connected to etcd?",
            names::bridge(net)
        ),
    ))
}

/// Before a detach removes an overlay endpoint's link: remove the endpoint
/// from etcd, so every peer drops its entries. If etcd cannot be reached
/// the detach fails, having changed nothing.
pub async fn before_detach(rec: &crate::record::Record, dry_run: bool) -> Result<()> {
    let Some(net) = names::net_of_bridge(&rec.h) else {
        return Ok(());
    };
    let ips = ovip_of(rec);
    if ips.is_empty() {
        return Ok(());
    }
    let Some(agent) = state::load() else {
        eprintln!(
            "pipework: warning: no overlay agent on this host; {ips:?} stay in etcd until this host's lease expires"
        );
        return Ok(());
    };
    if dry_run {
        return Ok(());
    }
    for ip in ips {
        release(&agent, net, ip, rec.hi.as_deref()).await?;
    }
    Ok(())
}

/// `before_detach` as the detach hook (`crate::hooks`).
pub fn before_detach_hook(
    rec: &crate::record::Record,
    dry_run: bool,
) -> futures::future::BoxFuture<'_, Result<()>> {
    Box::pin(before_detach(rec, dry_run))
}

async fn release(agent: &AgentState, net: &str, ip: IpAddr, host_link: Option<&str>) -> Result<()> {
    let st = Store::connect(&agent.etcd).await?;
    let key = store::ep_key(net, ip);
    let ep_rev = match st.get_kv(&key).await? {
        Some((v, rev)) => {
            let ep: Endpoint = store::decode(&key, &v)?;
            // Never remove one of ours that another attachment holds now
            // (another host's is never removed by `alloc::release`).
            let same_link = match (ep.hi.as_deref(), host_link) {
                (Some(a), Some(b)) => a == b,
                _ => true,
            };
            if !same_link {
                return Ok(());
            }
            Some(rev)
        }
        None => None,
    };
    // The endpoint as checked (its revision) and this host's reservation;
    // with the endpoint already gone (its lease lapsed), the reservation.
    super::alloc::release(&st, net, ip, &agent.host, ep_rev).await?;
    Ok(())
}
