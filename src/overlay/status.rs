//! `overlay status [--json]`: networks, hosts, endpoints, this host's drift
//! between etcd and the kernel, hosts whose underlay cannot carry a
//! network's MTU, addresses reserved by silent hosts, and conflicts.
//! etcd is read in pages (5,000 keys each) at one revision.
use super::model::Model;
use super::store::{self, EtcdOpts, Store};
use super::{fdb, names, network};
use crate::error::Result;
use serde::Serialize;

#[derive(Debug, Serialize)]
pub struct Status {
    pub networks: Vec<store::NetSpec>,
    pub hosts: Vec<store::HostInfo>,
    pub endpoints: Vec<EndpointRow>,
    /// This host's kernel against etcd, per network (empty when in sync).
    pub drift: Vec<NetDrift>,
    /// Hosts whose underlay MTU cannot carry a network's MTU, and
    /// conflicts (an address held by one host, reserved by another).
    pub problems: Vec<String>,
    /// Addresses kept for hosts that are not registered now (cut off or
    /// gone): back to them when they return, free after the grace or
    /// `overlay host rm`.
    pub reserved: Vec<ReservedRow>,
    /// This host's WireGuard device as the kernel has it (public keys and
    /// endpoints only), while an encrypted network is built here.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wireguard: Option<WgRow>,
}

#[derive(Debug, Serialize)]
pub struct WgRow {
    pub device: String,
    #[serde(flatten)]
    pub dev: crate::netlink::wg::WgDevice,
}

#[derive(Debug, Serialize)]
pub struct ReservedRow {
    pub network: String,
    pub ip: std::net::IpAddr,
    #[serde(flatten)]
    pub resv: store::Reservation,
}

#[derive(Debug, Serialize)]
pub struct EndpointRow {
    pub network: String,
    #[serde(flatten)]
    pub ep: store::Endpoint,
}

#[derive(Debug, Serialize)]
pub struct NetDrift {
    pub network: String,
    pub host: String,
    #[serde(flatten)]
    pub drift: fdb::Drift,
}

pub async fn run(opts: &EtcdOpts) -> Result<Status> {
    let opts = match (&opts.etcd, super::state::load()) {
        (None, Some(a)) => a.etcd,
        _ => opts.clone(),
    };
    let st = Store::connect(&opts).await?;
    let mut view = Model::default();
    st.list_each(store::ROOT, &mut |k, v, r| {
        view.apply(&k, Some(&v), r);
    })
    .await?;
    let mut problems = view.conflicts();
    let mut hs: Vec<_> = view.hosts.values().collect();
    hs.sort_by(|a, b| a.name.cmp(&b.name));
    for h in hs {
        let carry = h.underlay_mtu.saturating_sub(network::overhead(h.underlay));
        let sealed = h
            .underlay_mtu
            .saturating_sub(super::crypt::overhead(h.underlay));
        let carries = |n: &store::NetSpec| if n.encrypt { sealed } else { carry };
        for n in view.nets.values().filter(|n| n.mtu > carries(n)) {
            let carry = carries(n);
            problems.push(format!(
                "host {}: underlay {} MTU {} carries {carry} over VXLAN, network {} needs {}",
                h.name, h.underlay_if, h.underlay_mtu, n.name, n.mtu
            ));
        }
        if h.wg.is_none() {
            for n in view.nets.values().filter(|n| n.encrypt) {
                problems.push(format!(
                    "host {}: no WireGuard, so encrypted network {} is not built there",
                    h.name, n.name
                ));
            }
        }
    }
    let mut drift = Vec::new();
    let mut wireguard = None;
    if let Some(agent) = super::state::load() {
        let host = crate::netlink::Net::new(None, false)?;
        // Read only what is WireGuard, and what cannot be read is one
        // problem line: the rest of the status still stands.
        if let Some(l) = host.link_by_name(super::crypt::DEVICE).await? {
            if l.kind.as_deref() != Some("wireguard") {
                problems.push(format!(
                    "{}: not a WireGuard device (kind {}): not the overlay agent's; encrypted networks are not built here until it is removed or renamed",
                    l.name,
                    l.kind.as_deref().unwrap_or("unknown")
                ));
            } else {
                match host.wg_device(l.index) {
                    Ok(dev) => {
                        wireguard = Some(WgRow {
                            device: l.name.clone(),
                            dev,
                        })
                    }
                    Err(e) => problems.push(format!("{}: cannot read it: {e}", l.name)),
                }
            }
        }
        for n in view.nets.values() {
            let want = view.desired(&n.name, &agent.host);
            let d = match host.link_by_name(&names::vxlan(&n.name)).await? {
                Some(vx) => fdb::drift(&want, &host.vxlan_entries(vx.index).await?),
                // Built only where used (or routed for an --allow-from
                // peer used here): nothing is missing elsewhere.
                None if !view.used_by(&n.name, &agent.host)
                    && !view.peer_used(&n.name, &agent.host) =>
                {
                    continue;
                }
                None => fdb::Drift {
                    missing: vec![format!(
                        "device {} (is the agent running?)",
                        names::vxlan(&n.name)
                    )],
                    stale: vec![],
                },
            };
            if !d.missing.is_empty() || !d.stale.is_empty() {
                drift.push(NetDrift {
                    network: n.name.clone(),
                    host: agent.host.clone(),
                    drift: d,
                });
            }
        }
    }
    let mut reserved = Vec::new();
    for (network, m) in &view.resv {
        for (ip, (r, _)) in m {
            if !view.hosts.contains_key(&r.host) {
                reserved.push(ReservedRow {
                    network: network.clone(),
                    ip: *ip,
                    resv: r.clone(),
                });
            }
        }
    }
    reserved.sort_by(|a, b| (&a.network, a.ip).cmp(&(&b.network, b.ip)));
    let mut hosts: Vec<_> = view.hosts.into_values().collect();
    hosts.sort_by(|a, b| a.name.cmp(&b.name));
    let mut endpoints: Vec<EndpointRow> = view
        .eps
        .into_iter()
        .flat_map(|(network, m)| {
            m.into_values().map(move |(ep, _)| EndpointRow {
                network: network.clone(),
                ep,
            })
        })
        .collect();
    endpoints.sort_by(|a, b| (&a.network, a.ep.ip).cmp(&(&b.network, b.ep.ip)));
    Ok(Status {
        networks: view.nets.into_values().collect(),
        hosts,
        endpoints,
        drift,
        problems,
        reserved,
        wireguard,
    })
}

pub fn print(s: &Status, json: bool) {
    if json {
        println!("{}", serde_json::to_string_pretty(s).unwrap_or_default());
        return;
    }
    println!("NETWORK       SUBNET              VNI       MTU   PORT  SUBNET6");
    for n in &s.networks {
        let mtu = if n.mtu_auto {
            format!("{}a", n.mtu)
        } else {
            n.mtu.to_string()
        };
        let v4 = n.subnet.map(|s| s.to_string());
        let v6 = n.subnet6.map(|s| s.to_string());
        println!(
            "{:<13} {:<19} {:<9} {:<5} {:<5} {}",
            n.name,
            v4.as_deref().unwrap_or("-"),
            n.vni,
            mtu,
            n.port,
            v6.as_deref().unwrap_or("-")
        );
    }
    println!("\nHOST          UNDERLAY                 IFACE     MTU");
    for h in &s.hosts {
        println!(
            "{:<13} {:<24} {:<9} {}",
            h.name,
            h.underlay.to_string(),
            h.underlay_if,
            h.underlay_mtu
        );
    }
    println!(
        "\nNETWORK       ADDRESS                   MAC                HOST          CONTAINER"
    );
    for e in &s.endpoints {
        println!(
            "{:<13} {:<25} {:<18} {:<13} {}",
            e.network,
            e.ep.ip.to_string(),
            e.ep.mac,
            e.ep.host,
            crate::untrusted::display(&e.ep.container)
        );
    }
    for d in &s.drift {
        for m in &d.drift.missing {
            println!("drift: {} on {}: missing {m}", d.network, d.host);
        }
        for m in &d.drift.stale {
            println!("drift: {} on {}: stale {m}", d.network, d.host);
        }
    }
    for r in &s.reserved {
        println!(
            "reserved: {} {} for host {} (not registered now; {})",
            r.network,
            r.ip,
            r.resv.host,
            crate::untrusted::display(&r.resv.container)
        );
    }
    if let Some(w) = &s.wireguard {
        println!(
            "\nwireguard {}: port {} public key {}",
            w.device,
            w.dev.listen_port,
            w.dev.public_key.as_deref().unwrap_or("-")
        );
        for p in &w.dev.peers {
            let at = p
                .endpoint
                .map(|e| e.to_string())
                .unwrap_or_else(|| "-".into());
            println!(
                "  peer {} at {at} allowed {}",
                p.public_key,
                p.allowed_ips.join(",")
            );
        }
    }
    for p in &s.problems {
        println!("problem: {p}");
    }
}
