//! What the probes' results mean: their hops, and a cause when they
//! failed where no check along the path found why (an unanswered ARP is
//! `neigh-failed`; a refused connect to a host that answers pings is
//! `port-closed`; anything else is `unexplained`, never a guess).
use super::PROBE;
use super::ends::Side;
use super::probe;
use super::report::Report;
use crate::untrusted::display;
use std::net::IpAddr;

/// The probes' hops, and a cause when they failed where no check found
/// why.
#[allow(clippy::too_many_arguments)]
pub fn probes(
    r: &mut Report,
    a: &Side,
    a_if: &crate::netlink::Link,
    target: IpAddr,
    nh: IpAddr,
    port: Option<u16>,
    seen: &probe::Seen,
    neigh: Option<&'static str>,
) {
    let explained = !r.causes.is_empty();
    let echo_hop = format!("ping {target} from A");
    match (seen.echo, &seen.echo_error) {
        (Some(rtt), _) => r.hop(
            &echo_hop,
            true,
            format!("reply in {:.1} ms", rtt.as_secs_f64() * 1e3),
        ),
        (None, Some(e)) => r.hop(&echo_hop, false, format!("could not send: {e}")),
        (None, None) => r.hop(
            &echo_hop,
            false,
            format!("no reply in {} ms", PROBE.as_millis()),
        ),
    }
    let n_hop = format!("{} neighbour {nh}", a.label);
    let state = neigh.unwrap_or("none");
    let resolved = matches!(
        state,
        "reachable" | "stale" | "delay" | "probe" | "permanent" | "noarp"
    );
    r.hop(
        &n_hop,
        resolved,
        format!("{state} on {}", display(&a_if.name)),
    );
    let tcp_open = seen.tcp == Some(probe::Tcp::Open);
    if let (Some(p), Some(t)) = (port, &seen.tcp) {
        let hop = format!("tcp {target}:{p} from A");
        let (ok, what) = match t {
            probe::Tcp::Open => (true, "connected".to_string()),
            probe::Tcp::Refused => (false, "refused: nothing listens there".to_string()),
            probe::Tcp::TimedOut => (false, format!("no answer in {} ms", PROBE.as_millis())),
            probe::Tcp::Failed(e) => (false, e.clone()),
        };
        r.hop(&hop, ok, what.clone());
        // Reached but refused: the host answered, the port is closed.
        if !ok && !explained && (seen.echo.is_some() || *t == probe::Tcp::Refused) {
            r.cause(
                "port-closed",
                &hop,
                format!("{target} answers but port {p} is closed ({what})"),
                None,
            );
            return;
        }
    }
    if seen.echo.is_some() || tcp_open || explained {
        return;
    }
    if !resolved {
        let proto = if nh.is_ipv4() { "ARP" } else { "ND" };
        r.cause(
            "neigh-failed",
            &n_hop,
            format!(
                "no {proto} answer for {nh} on {} {} (entry {state}): nothing on the segment owns {nh}, or it does not answer",
                a.label,
                display(&a_if.name)
            ),
            None,
        );
    } else {
        r.cause(
            "unexplained",
            &echo_hop,
            format!(
                "{nh} is resolved ({state}) but no echo reply came back, and no check found why"
            ),
            None,
        );
    }
}
