//! `--tc-redirect`: unicast frames between two opted-in guests of one
//! Linux bridge skip the bridge and bridge-nf. On each opted-in port (the
//! host end of a guest's veth), an ingress u32 filter per other opted-in
//! port matches that guest's MAC and redirects to its host end
//! (netlink/tc_redirect.rs builds them). On a Docker host every bridged
//! frame walks netfilter (bridge-nf-call-iptables=1): skipping it gave
//! 1.34x new connections/s (README, "Which kind for speed").
//!
//! Who gets rules: only ports whose host-side record (signed, on a host
//! link a guest cannot write) says `tcr`, with the MAC pipework set on
//! the guest's end. A guest is untrusted: if it changes its MAC later,
//! frames for the new MAC just miss the rules and go through the bridge
//! as before, and frames for the recorded MAC still reach the port that
//! MAC was given to; nothing a guest writes names a rule's target.
//!
//! When it is refused (one line, nothing changed): the redirect skips
//! what the bridge would have done to the frame, so not where that
//! matters: VLANs (the bridge filters or the attachment has one; a
//! redirected frame would cross VLANs), isolated ports (isolation would be
//! bypassed), and firewall rules other than ours for the bridge (an
//! iptables rule naming it in any table, a native nftables rule comparing
//! iifname/oifname to it, any bridge-family nftables/ebtables-nft rule):
//! they would no longer see the frames; rules that cannot be read refuse
//! too (firewall::bypass_unsafe).
//!
//! Lifetime: a rule must not outlive its target (a MAC reused by a later
//! guest would be sent into the wrong veth, or into nothing). Rules on the
//! new port die with it; rules on other ports pointing at it are journaled
//! on attach, removed by detach before its veth goes, and `sweep` (attach,
//! detach, gc; under the bridge's `tcr-` lock) removes every rule of ours
//! whose target is not an opted-in port of the same bridge with the MAC
//! the rule matches.
use super::Ctx;
use crate::error::{Error, Result};
use crate::inventory::{self, host_ns};
use crate::netlink::tc_redirect::Redirect;
use crate::netlink::{Journal, Link, Net};
use crate::record::Kind;

/// The MAC a record's `tcr` holds (12 hex digits).
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    if s.len() != 12 {
        return None;
    }
    let mut m = [0u8; 6];
    for (i, b) in m.iter_mut().enumerate() {
        *b = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(m)
}

pub fn mac_hex(m: &[u8; 6]) -> String {
    m.iter().map(|b| format!("{b:02x}")).collect()
}

/// The guest's MAC for an opted-in attachment: the one asked for, else a
/// fresh locally administered one (pipework must set it: the rules of
/// other ports match what the record says, never what the guest chose).
pub fn mac(cx: &Ctx<'_>) -> [u8; 6] {
    cx.req.mac.unwrap_or_else(|| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        crate::request::mac_from_seed(&format!(
            "pipework-tcr:{}:{}:{}:{now}",
            cx.guest.netns.inode().unwrap_or(0),
            cx.req.ifname,
            std::process::id()
        ))
    })
}

/// An opted-in port: its host end and recorded MAC.
struct Port {
    link: Link,
    mac: [u8; 6],
}

/// Every opted-in port on the host (from verified host-side records).
async fn ports(host: &Net) -> Result<Vec<Port>> {
    let scan = inventory::scan(host, host_ns(), "host").await?;
    Ok(scan
        .ours
        .into_iter()
        .filter(|f| f.rec.k == Kind::Bridge && f.rec.hi.as_deref() == Some(&f.link.name))
        .filter_map(|f| {
            let mac = parse_mac(f.rec.x.tc_redirect.as_deref()?)?;
            Some(Port { link: f.link, mac })
        })
        .collect())
}

fn refuse(why: impl std::fmt::Display) -> Error {
    Error::bad(
        "--tc-redirect",
        format!("{why}; attach without --tc-redirect (frames then go through the bridge)"),
    )
}

/// Before anything is built: refuse where the bypass would change what
/// the bridge does (module comment).
pub async fn validate(cx: &Ctx<'_>, bridge: Option<&Link>) -> Result<()> {
    if super::bridge_vlan::Plan::of(cx).is_some() {
        return Err(refuse("the attachment has a VLAN"));
    }
    let name = &cx.req.host;
    if let Some(b) = bridge {
        if cx.host.bridge_vlan(b).await?.is_some_and(|v| v.filtering) {
            return Err(refuse(format!("bridge {name} filters VLANs")));
        }
        for p in ports(&cx.host).await? {
            if p.link.controller != Some(b.index) {
                continue;
            }
            if cx.host.port_isolated(p.link.index).await? {
                return Err(refuse(format!(
                    "port {} of {name} is isolated",
                    p.link.name
                )));
            }
            if cx.req.mac == Some(p.mac) {
                return Err(refuse(format!(
                    "MAC {} is already port {}'s",
                    mac_hex(&p.mac),
                    p.link.name
                )));
            }
        }
    }
    if let Some(why) = crate::firewall::bypass_unsafe(name) {
        return Err(refuse(why));
    }
    Ok(())
}

/// The new port `port` (named, recorded, up) with MAC `mac` gets a rule
/// to every other opted-in port of `bridge`, and each of those a rule
/// back. The latter are journaled: a failed attach leaves none (the new
/// port's own go with its veth).
pub async fn install(
    host: &Net,
    bridge: &Link,
    port: &Link,
    mac: [u8; 6],
    j: &mut Journal,
) -> Result<usize> {
    // Two attaches to one bridge each see the other's port once it has
    // its record: serialised, neither misses the other.
    let _lock = lock(host, &bridge.name)?;
    // One snapshot of the ports serves the sweep and the peers: both run
    // under the lock, so no port can gain or lose its record in between.
    let all = ports(host).await?;
    // A guest that died without a detach left rules on the other ports
    // for its MAC that now point at nothing; they match before any rule
    // added below, so a guest given that MAC again would be blackholed.
    sweep_ports(host, &all, Some(bridge.index), None, host.dry_run).await?;
    host.ensure_ingress_qdisc(port).await?;
    let peers = all
        .iter()
        .filter(|p| p.link.controller == Some(bridge.index) && p.link.index != port.index);
    let mut n = 0;
    for p in peers {
        n += 1;
        if host.port_isolated(p.link.index).await? {
            return Err(refuse(format!(
                "port {} of {} is isolated",
                p.link.name, bridge.name
            )));
        }
        host.add_redirect(port, p.mac, &p.link).await?;
        // Each opted-in port got its qdisc at its own attach; one made
        // here (someone removed it) goes again if this attach fails.
        if host.ensure_ingress_qdisc(&p.link).await? {
            let (h, peer) = (host.clone(), p.link.index);
            j.record(format!("ingress qdisc on {}", p.link.name), async move {
                h.del_ingress_qdisc(peer).await
            });
        }
        // Journal first: an add that fails half-way is undone all the same.
        let (h, peer, target) = (host.clone(), p.link.index, port.index);
        j.record(
            format!("tc redirect {} -> {}", p.link.name, port.name),
            async move { remove_targeting(&h, peer, target).await },
        );
        host.add_redirect(&p.link, mac, port).await?;
    }
    Ok(n)
}

/// Remove the rules on `port` that redirect to `target`.
async fn remove_targeting(host: &Net, port: u32, target: u32) -> Result<()> {
    for r in host.redirects(port).await? {
        if r.dev == target || r.target == target {
            host.del_redirect(&r).await?;
        }
    }
    Ok(())
}

/// The lock serialising rule changes on the ports of bridge `name`
/// (install, detach, gc): a sweep from a snapshot of the ports taken
/// before a new port's record must not remove that port's fresh rules.
/// None in a dry run (it changes nothing).
pub fn lock(host: &Net, name: &str) -> Result<Option<crate::lock::Lock>> {
    if host.dry_run {
        return Ok(None);
    }
    crate::lock::Lock::take(&format!("tcr-{name}")).map(Some)
}

/// On the opted-in ports of `bridge`, remove every rule of ours whose
/// target is not (or, for `gone`, no longer) an opted-in port of the same
/// bridge with the MAC the rule matches. The caller holds `lock`. Returns
/// what was (or in a dry run would be) removed.
pub async fn sweep(
    host: &Net,
    bridge: &Link,
    gone: Option<u32>,
    dry_run: bool,
) -> Result<Vec<Redirect>> {
    let ports = ports(host).await?;
    sweep_ports(host, &ports, Some(bridge.index), gone, dry_run).await
}

/// `sweep` on every bridge with an opted-in port, each under its lock,
/// then on opted-in ports no longer on a bridge (none of their rules is
/// valid, and no install adds any there): for gc.
pub async fn sweep_all(host: &Net, dry_run: bool) -> Result<Vec<Redirect>> {
    let mut bridges: Vec<u32> = ports(host)
        .await?
        .iter()
        .filter_map(|p| p.link.controller)
        .collect();
    bridges.sort_unstable();
    bridges.dedup();
    let mut out = Vec::new();
    for b in bridges {
        let Some(br) = host.link_by_index(b).await? else {
            continue;
        };
        let _lock = if dry_run { None } else { lock(host, &br.name)? };
        out.extend(sweep(host, &br, None, dry_run).await?);
    }
    let ports = ports(host).await?;
    out.extend(sweep_ports(host, &ports, None, None, dry_run).await?);
    Ok(out)
}

/// The sweep on the opted-in ports (of the snapshot `ports`, taken under
/// the bridge's lock) whose controller is `bridge` (None: ports on no
/// bridge).
async fn sweep_ports(
    host: &Net,
    ports: &[Port],
    bridge: Option<u32>,
    gone: Option<u32>,
    dry_run: bool,
) -> Result<Vec<Redirect>> {
    let mut out = Vec::new();
    for src in ports.iter().filter(|p| p.link.controller == bridge) {
        for r in host.redirects(src.link.index).await? {
            let valid = r.dev != 0
                && r.dev == r.target
                && Some(r.dev) != gone
                && ports.iter().any(|t| {
                    t.link.index == r.dev
                        && t.mac == r.mac
                        && t.link.controller.is_some()
                        && t.link.controller == src.link.controller
                });
            if valid {
                continue;
            }
            if !dry_run {
                host.del_redirect(&r).await?;
            }
            out.push(r);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_macs_round_trip_and_bad_ones_are_none() {
        let m = [0x02, 0xab, 0, 1, 0xfe, 0x10];
        assert_eq!(parse_mac(&mac_hex(&m)), Some(m));
        assert_eq!(parse_mac("02ab0001fe1"), None);
        assert_eq!(parse_mac("02ab0001fe1g"), None);
        assert_eq!(parse_mac("é2ab0001fe1"), None);
    }
}
