//! Bridge VLAN filtering between two ports of one Linux bridge: a guest
//! sends untagged frames, so they enter in the port's PVID, and leave by
//! the other port only if that port is a member of the VLAN, untagged
//! (the other guest reads untagged frames too). Read-only.
use super::ends::Side;
use super::report::Report;
use super::walk::HostEnd;
use crate::netlink::Link;
use crate::netlink::bridge_vlan::PortVlan;
use crate::untrusted::display;

/// The VLAN a guest's untagged frames get on `port`.
fn pvid(v: &[PortVlan]) -> Option<u16> {
    v.iter().find(|x| x.pvid).map(|x| x.vid)
}

/// Whether frames of VLAN `vid` leave by a port with VLANs `v` untagged.
fn delivers(v: &[PortVlan], vid: u16) -> bool {
    v.iter().any(|x| x.vid == vid && x.untagged)
}

fn text(v: &[PortVlan]) -> String {
    if v.is_empty() {
        return "no VLAN".into();
    }
    v.iter()
        .map(|x| {
            format!(
                "{}{}{}",
                x.vid,
                if x.pvid { " pvid" } else { "" },
                if x.untagged { " untagged" } else { "" }
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The cause, when there is one: (what was seen, the fix).
pub fn verdict(a: &[PortVlan], b: &[PortVlan], b_port: &str) -> Option<(String, Option<String>)> {
    let seen = format!("A's port: {}; B's port: {}", text(a), text(b));
    let (pa, pb) = (pvid(a), pvid(b));
    let ok = match (pa, pb) {
        (Some(x), Some(y)) => delivers(b, x) && delivers(a, y),
        _ => false,
    };
    if ok {
        return None;
    }
    let fix = pa.map(|x| format!("bridge vlan add dev {b_port} vid {x} pvid untagged"));
    Some((seen, fix))
}

pub async fn check(r: &mut Report, host: &Side, bridge: &Link, a: &HostEnd, b: &HostEnd) {
    let Ok(Some(bv)) = host.net.bridge_vlan(bridge).await else {
        return;
    };
    let hop = format!("bridge {} vlan", display(&bridge.name));
    if !bv.filtering {
        r.hop(&hop, true, "VLAN filtering off");
        return;
    }
    let (Some(pa), Some(pb)) = (&a.peer, &b.peer) else {
        return;
    };
    let (Ok(va), Ok(vb)) = (host.net.port_vlans(pa).await, host.net.port_vlans(pb).await) else {
        r.hop(
            &hop,
            false,
            "VLAN filtering on; the ports' VLANs cannot be read",
        );
        return;
    };
    // The name goes into a command line: quoted for the shell (which
    // also keeps it one word), not escaped for the terminal.
    let pbn = crate::untrusted::shell_word(&pb.name).into_owned();
    match verdict(&va, &vb, &pbn) {
        None => r.hop(
            &hop,
            true,
            format!(
                "filtering on; A's port: {}; B's port: {}",
                text(&va),
                text(&vb)
            ),
        ),
        Some((seen, fix)) => {
            r.hop(&hop, false, format!("filtering on; {seen}"));
            r.cause(
                "vlan-mismatch",
                &hop,
                format!("{seen}: the bridge never carries a frame between the two guests"),
                fix,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn access(vid: u16) -> Vec<PortVlan> {
        vec![PortVlan {
            vid,
            pvid: true,
            untagged: true,
        }]
    }

    #[test]
    fn same_access_vlan_passes_and_different_ones_do_not() {
        assert!(verdict(&access(10), &access(10), "p").is_none());
        let (seen, fix) = verdict(&access(10), &access(20), "pb").unwrap();
        assert!(seen.contains("10 pvid untagged") && seen.contains("20 pvid untagged"));
        assert_eq!(
            fix.as_deref(),
            Some("bridge vlan add dev pb vid 10 pvid untagged")
        );
        // A port without a PVID drops untagged frames coming in.
        assert!(verdict(&[], &access(1), "p").is_some());
        // Tagged egress: the guest would get tagged frames it ignores.
        let tagged = vec![PortVlan {
            vid: 10,
            pvid: true,
            untagged: false,
        }];
        assert!(verdict(&access(10), &tagged, "p").is_some());
    }
}
