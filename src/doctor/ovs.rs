//! The Open vSwitch hop: a veth's host end that no Linux bridge holds may
//! be an OVS port (with the userspace datapath the kernel shows no
//! controller at all). OVSDB says which bridge, and the port's VLAN: an
//! access tag, or the trunks it carries. Read only (one `select`).
use super::report::Report;
use super::walk::HostEnd;
use crate::ovsdb::ops::PortRecord;
use crate::untrusted::display;

/// The OVS port named `name`, when an OVSDB socket is there and has it.
/// No socket or an unreachable server is "not OVS" (noted by the caller),
/// never an error: most hosts have no OVS.
pub async fn port(name: &str) -> Result<Option<PortRecord>, String> {
    let Ok(sock) = crate::ovsdb::socket_path(None) else {
        return Ok(None);
    };
    if !sock.exists() {
        return Ok(None);
    }
    let mut c = crate::ovsdb::Connection::connect(&sock)
        .await
        .map_err(|e| e.to_string())?;
    crate::ovsdb::ops::find_port(&mut c, name)
        .await
        .map_err(|e| e.to_string())
}

/// How a port's VLAN reads: "tag 10", "trunks 10,20" or "all VLANs".
pub fn vlan_text(p: &PortRecord) -> String {
    match (p.tag, p.trunks.is_empty()) {
        (Some(t), _) => format!("access tag {t}"),
        (None, false) => format!(
            "trunks {}",
            p.trunks
                .iter()
                .map(i64::to_string)
                .collect::<Vec<_>>()
                .join(",")
        ),
        (None, true) => "untagged, all VLANs".into(),
    }
}

/// The VLAN each port puts its guest's frames in: its access tag; a
/// trunk port's guest sends untagged frames, which OVS puts in VLAN 0.
fn vlan_of(p: &PortRecord) -> i64 {
    p.tag.unwrap_or(0)
}

/// Whether a frame in VLAN `v` may leave by port `p`.
fn carries(p: &PortRecord, v: i64) -> bool {
    match p.tag {
        Some(t) => t == v,
        None => p.trunks.is_empty() || p.trunks.contains(&v) || v == 0,
    }
}

/// Two ends on OVS: same bridge, and a VLAN both ports carry.
pub fn check(r: &mut Report, a: &HostEnd, b: &HostEnd) {
    let (Some(pa), Some(pb)) = (&a.ovs, &b.ovs) else {
        return;
    };
    let hop = format!(
        "ovs {} ports {} / {}",
        display(pa.bridge.as_deref().unwrap_or("?")),
        display(&pa.name),
        display(&pb.name)
    );
    if pa.bridge != pb.bridge {
        r.hop(
            &hop,
            true,
            format!(
                "on different OVS bridges ({} and {}): the path leaves OVS",
                display(pa.bridge.as_deref().unwrap_or("?")),
                display(pb.bridge.as_deref().unwrap_or("?"))
            ),
        );
        return;
    }
    let (va, vb) = (vlan_of(pa), vlan_of(pb));
    let ok = carries(pb, va) && carries(pa, vb);
    let seen = format!("A's {}, B's {}", vlan_text(pa), vlan_text(pb));
    r.hop(&hop, ok, seen.clone());
    if !ok {
        // Retagging B's port to A's VLAN is the one-command fix when
        // both are access ports.
        let fix = match (pa.tag, pb.tag) {
            (Some(t), Some(_)) => Some(format!(
                "ovs-vsctl set Port {} tag={t}",
                crate::untrusted::shell_word(&pb.name)
            )),
            _ => None,
        };
        r.cause(
            "vlan-mismatch",
            &hop,
            format!("{seen}: OVS never forwards a frame between them"),
            fix,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(tag: Option<i64>, trunks: &[i64]) -> PortRecord {
        PortRecord {
            uuid: String::new(),
            name: "p".into(),
            bridge: Some("br".into()),
            tag,
            trunks: trunks.to_vec(),
            ofport: None,
            ofport_request: None,
            interface_type: String::new(),
            error: None,
            external_ids: Default::default(),
        }
    }

    #[test]
    fn tags_and_trunks() {
        let e = |x: PortRecord| HostEnd {
            ovs: Some(x),
            ..Default::default()
        };
        let run = |a, b| {
            let mut r = Report::default();
            check(&mut r, &e(a), &e(b));
            r.has("vlan-mismatch")
        };
        assert!(run(p(Some(10), &[]), p(Some(20), &[])));
        assert!(!run(p(Some(10), &[]), p(Some(10), &[])));
        assert!(!run(p(None, &[]), p(None, &[])));
        // An access port and a trunk without its VLAN.
        assert!(run(p(Some(10), &[]), p(None, &[20, 30])));
    }
}
