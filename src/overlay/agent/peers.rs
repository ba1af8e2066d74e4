//! Cross-host `--allow-from`: the devices and the bridge setting a host
//! needs to route between two overlay networks, one of whose containers
//! live on other hosts.
//!
//! Design (EVPN's asymmetric IRB): every host routes at its own anycast
//! gateway and bridges into the destination network. A container of A on
//! h1 sending to one of B on h2 is routed by h1 (ov-A → ov-B, where the
//! egress table's isolation decides: B must allow A) and bridged by h2
//! (vx-B → the container). Its reply is routed by h2 (ov-B → ov-A) and
//! bridged by h1. So:
//!
//! - a host with a container of A builds B's devices when B allows A
//!   (to reach B's subnet), and a host with a container of B builds A's
//!   (to route B's replies back): `Model::peer_used`. No one else does:
//!   a network joined to nothing used here is never built for it.
//! - Each host's conntrack sees only one direction of a flow routed, the
//!   other bridged. A reply routed at h2 is accepted by the egress
//!   table's `ct state established,related` only if h2's conntrack saw
//!   the request, which h2 only bridged; a new connection from B to A is
//!   `ct state new` there and meets the isolation drop. The two are told
//!   apart by conntrack alone, so the request must be tracked where it is
//!   bridged: the bridges of networks with an `--allow-from` peer hand
//!   their IPv4 and IPv6 frames to netfilter (`nf_call_iptables`,
//!   `nf_call_ip6tables`, br_netfilter),
//!   whatever the host's `bridge-nf-call-iptables`. No stateless guess
//!   (TCP flags, ICMP types) is made: without br_netfilter the replies are
//!   dropped (fail closed) and the agent says so once.
//!   (A plain pipework bridge may skip conntrack, firewall/notrack.rs;
//!   overlay bridges never do.)
//! - The devices of a network joined by `--allow-from` go with their last
//!   need here (its own last endpoint or reservation, or the last one of
//!   a peer it routes for), or with the network's deletion; only devices
//!   the agent made (their mark) and with no container on the bridge.
//!   A killed agent leaves them; the next one, at its first sync, finds
//!   them unneeded and removes them the same way. (A network joined to
//!   nothing keeps its devices until its deletion, as before.)
use super::{Agent, log};
use crate::error::Result;
use std::collections::BTreeSet;

impl Agent {
    /// Whether this host needs `net` for a local reason: a container or
    /// reservation here, or the operator's `--networks`.
    fn local_need(&self, net: &str) -> bool {
        self.build_all || self.build.contains(net) || self.model.used_by(net, self.me())
    }

    /// Record or drop `net` as a route-only network. Returns false when
    /// its devices were just removed (nothing else to do for it).
    pub(super) async fn route_need(&mut self, net: &str) -> bool {
        if self.local_need(net) {
            self.routes.remove(net);
            return true;
        }
        if self.model.peer_used(net, self.me()) {
            self.routes.insert(net.to_string());
            return true;
        }
        // Unneeded. A network joined to nothing keeps its devices until
        // its deletion, as always; one joined by --allow-from loses them
        // now, whoever built them (this agent for a peer, or a killed one:
        // nothing else tells the two apart), unless a container is still
        // on the bridge.
        if !self.routes.contains(net) && self.model.peers(net).is_empty() {
            return true;
        }
        match super::fdb::remove_if_unused(&self.net, net).await {
            Ok(true) => {
                self.routes.remove(net);
                if self.devs.remove(net).is_some() {
                    log(format_args!(
                        "{net}: not used here, no network here routes to or from it: devices removed"
                    ));
                }
                false
            }
            // A container on it whose endpoint etcd does not show (yet):
            // kept in sync as before.
            Ok(false) => {
                self.routes.remove(net);
                true
            }
            // Kept in `routes`: the next kernel check tries again.
            Err(e) => {
                log(format_args!("{net}: removing its devices: {e}"));
                self.routes.insert(net.to_string());
                self.devs.remove(net);
                false
            }
        }
    }

    /// The peers of the networks in `touched` (and after `defs_changed`,
    /// a network's definition, every network) whose need here changed: added to `nets`
    /// to be built or removed.
    pub(super) fn peer_changes(
        &self,
        nets: &mut BTreeSet<String>,
        touched: &BTreeSet<String>,
        defs_changed: bool,
    ) {
        // The touched networks themselves too: one whose last endpoint
        // here left may be unneeded now.
        let mut candidates: BTreeSet<String> = touched
            .iter()
            .flat_map(|n| self.model.peers(n))
            .chain(touched.iter().cloned())
            .collect();
        if defs_changed {
            // A definition came, changed or went (rare): look at all.
            candidates.extend(self.model.nets.keys().cloned());
            candidates.extend(self.routes.iter().cloned());
        }
        for n in candidates {
            let need = self.local_need(&n) || self.model.peer_used(&n, self.me());
            let have = self.devs.contains_key(&n);
            let goes = self.routes.contains(&n) || (have && !self.model.peers(&n).is_empty());
            if (need && !have) || (!need && goes) {
                nets.insert(n);
            }
        }
    }

    /// A network with an `--allow-from` peer: its bridge (one the agent
    /// made) hands bridged IPv4 frames to conntrack (see the module).
    pub(super) async fn track_bridged(&mut self, net: &str) -> Result<()> {
        if self.model.peers(net).is_empty() {
            return Ok(());
        }
        let br = super::names::bridge(net);
        let Some(b) = self.net.link_by_name(&br).await? else {
            return Ok(());
        };
        if !super::fdb::ours(&b, net) {
            return Ok(());
        }
        if !std::path::Path::new("/proc/sys/net/bridge").exists()
            && self.warned.insert("br_netfilter".into())
        {
            log(format_args!(
                "{net}: br_netfilter is not loaded: replies between --allow-from networks across hosts are dropped until it is (modprobe br_netfilter)"
            ));
        }
        self.net.set_nf_call_iptables(&b).await
    }

    /// Networks joined by `--allow-from` whose devices are here but no
    /// longer needed: for the kernel check (a detach removes its link
    /// after its endpoint, so the event may find the container still on
    /// the bridge).
    pub(super) fn unneeded(&self) -> Vec<String> {
        self.devs
            .keys()
            .filter(|n| {
                !self.local_need(n)
                    && !self.model.peer_used(n, self.me())
                    && !self.model.peers(n).is_empty()
            })
            .cloned()
            .collect()
    }
}
