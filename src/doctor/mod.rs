//! `pipework doctor A B [--port N]`: why can't these two talk?
//!
//! It walks the path from A's interface (the one the kernel would route
//! B's address through) to the host and on to B, checks every hop from
//! the kernel's own state, then probes from inside A's namespace: one
//! ICMP echo and, with a port, one TCP connect. It changes nothing: every
//! read goes through `Net` (rtnetlink), the firewall module's readers,
//! `/proc/sys` and the signed records; the probes are sockets on
//! short-lived threads. The answer is a list of hops and the causes found
//! (`report`), each with its fix as a command where there is one.
mod bridge_vlan;
mod checks;
mod ends;
mod host;
#[cfg(feature = "overlay")]
mod overlay;
mod ovs;
mod probe;
mod report;
mod verdict;
mod walk;

pub use report::{Cause, Hop, KINDS, Report};

use crate::error::Result;
use crate::netns::NetNs;
use crate::untrusted::display;
use ends::{End, Side};
use std::net::IpAddr;
use std::time::Duration;

/// What the user asked, already parsed.
#[derive(Debug, Clone)]
pub struct Request {
    pub a: String,
    pub b: String,
    /// Also try a TCP connect to this port of B.
    pub port: Option<u16>,
}

/// How long each probe waits: a local pair answers in well under a
/// millisecond; an unresolved neighbour never does. Keeps a whole run
/// under 2 s.
pub(crate) const PROBE: Duration = Duration::from_millis(900);

pub async fn run(req: &Request) -> Result<Report> {
    let End::Ns(a) = ends::resolve(&req.a, "A").await? else {
        return Err(crate::Error::bad(&req.a, "A must be a guest or `host`"));
    };
    let b = ends::resolve(&req.b, "B").await?;
    let host = ends::load(NetNs::current()?, true, "host".into()).await?;
    let mut r = Report::default();
    diagnose(&mut r, &a, b, &host, req.port).await?;
    Ok(r.finish())
}

async fn diagnose(r: &mut Report, a: &Side, b: End, host: &Side, port: Option<u16>) -> Result<()> {
    // B's side: a namespace we can look into, or just an address (which,
    // when the host owns it, is the host).
    let (b, b_ip): (Option<Side>, Option<IpAddr>) = match b {
        End::Ns(s) => (Some(s), None),
        End::Ip(ip) if host.addrs.iter().any(|x| x.net.ip() == ip) => {
            let mut h = ends::load(NetNs::current()?, true, format!("B (host, {ip})")).await?;
            h.addrs.retain(|x| x.net.ip() == ip);
            (Some(h), Some(ip))
        }
        End::Ip(ip) => {
            r.hop(
                format!("B ({ip})"),
                true,
                "not an address of the host: B's side is checked from A only",
            );
            (None, Some(ip))
        }
    };
    if a.global_addrs().is_empty() {
        r.hop(&a.label, false, "no address on any interface but lo");
        r.cause(
            "no-address",
            &a.label,
            format!("{} has no address to talk from", a.label),
            None,
        );
        return Ok(());
    }
    let target = match (&b, b_ip) {
        (_, Some(ip)) => Some(ip),
        (None, None) => None,
        (Some(b), None) => {
            let addrs = b.global_addrs();
            if addrs.is_empty() {
                r.hop(&b.label, false, "no address on any interface but lo");
                r.cause(
                    "no-address",
                    &b.label,
                    format!("{} has no address A could reach", b.label),
                    None,
                );
                return Ok(());
            }
            if b.host {
                match host::host_target(r, a, b) {
                    Some(t) => Some(t),
                    None => return Ok(()),
                }
            } else {
                ends::pick_target(a, &addrs)
            }
        }
    };
    let Some(target) = target else {
        return Err(crate::Error::other("doctor: no address to reach B at"));
    };

    // A's way out.
    let hop = format!("{} route to {target}", a.label);
    let Some(route) = a.net.route_to(target).await? else {
        let mine: Vec<String> = a.global_addrs().iter().map(|x| x.net.to_string()).collect();
        let theirs: Vec<String> = b
            .as_ref()
            .map(|b| b.global_addrs().iter().map(|x| x.net.to_string()).collect())
            .unwrap_or_default();
        r.hop(&hop, false, "no route");
        let mut detail = format!("{} ({}) has no route to {target}", a.label, mine.join(" "));
        if !theirs.is_empty() {
            detail.push_str(&format!(
                "; B has {}: the two share no subnet and A has no gateway",
                theirs.join(" ")
            ));
        }
        r.cause("no-route", &hop, detail, None);
        return Ok(());
    };
    if route.local {
        r.hop(&hop, true, format!("{target} is A's own address"));
        return Ok(());
    }
    let Some(a_if) = route.oif.and_then(|i| a.link(i)).cloned() else {
        r.hop(&hop, false, "the route names no interface");
        r.cause("no-route", &hop, "the route to B names no interface", None);
        return Ok(());
    };
    let via = route
        .gateway
        .map(|g| format!(" via {g}"))
        .unwrap_or_default();
    r.hop(&hop, true, format!("dev {}{via}", display(&a_if.name)));
    let a_src = route
        .src
        .or_else(|| a.addrs_of(a_if.index).first().map(|x| x.net.ip()));
    if a.host
        && let Some(b) = &b
        && !host::host_reaches(r, host, b, target, &a_if)
    {
        return Ok(());
    }

    // Both ends, as far as the host.
    let a_end = walk::end(r, a, host, b.as_ref(), &a_if).await;
    let b_end = match &b {
        Some(b) => {
            let idx = b
                .addrs
                .iter()
                .find(|x| x.net.ip() == target)
                .map(|x| x.index);
            match idx.and_then(|i| b.link(i)).cloned() {
                Some(l) => Some(walk::end(r, b, host, Some(a), &l).await),
                None => None,
            }
        }
        None => None,
    };

    // Across the path.
    checks::mtu(r, (a, &a_end), b.as_ref().zip(b_end.as_ref()));
    if let (Some(ba), Some(Some(bb))) = (&a_end.bridge, b_end.as_ref().map(|e| &e.bridge))
        && ba.index == bb.index
    {
        checks::forward(r, &ba.name);
        if let Some(be) = &b_end {
            bridge_vlan::check(r, host, ba, &a_end, be).await;
        }
    }
    if let Some(be) = &b_end {
        ovs::check(r, &a_end, be);
    }
    #[cfg(feature = "overlay")]
    if let Some(br) = &a_end.bridge
        && let Some(net) = crate::overlay::names::net_of_bridge(&br.name)
    {
        overlay::check(r, host, net, target).await;
    }
    let mut asymmetric = None;
    if let (Some(b), Some(be), Some(src)) = (&b, &b_end, a_src) {
        if checks::route_back(r, b, &be.iface, src).await {
            asymmetric = Some((b, be, src));
        }
        if b.host {
            checks::macvlan_host(r, host, &a_end, src).await;
        }
        if a.host {
            checks::macvlan_host(r, host, be, target).await;
        }
    }

    // Probes, from inside A.
    let nh = route.gateway.unwrap_or(target);
    let seen = probe::run(&a.ns, target, port, PROBE)?;
    let neigh = a.net.neighbour_state(a_if.index, nh).await?;
    // A way back by another interface is a cause only once the probes
    // show the replies do not arrive (asymmetric routing can be fine).
    if let Some((b, be, src)) = asymmetric
        && seen.echo.is_none()
        && seen.tcp != Some(probe::Tcp::Open)
        && r.causes.is_empty()
    {
        let name = display(&be.iface.name);
        r.cause(
            "no-route",
            format!("{} route to {src}", b.label),
            format!(
                "{} sends its replies to {src} out of another interface than {name}, where A's packets arrive; they do not come back",
                b.label
            ),
            Some(format!(
                "{} route replace {src} dev {}",
                b.ip_cmd(),
                crate::untrusted::shell_word(&be.iface.name)
            )),
        );
    }
    verdict::probes(r, a, &a_if, target, nh, port, &seen, neigh);
    Ok(())
}
