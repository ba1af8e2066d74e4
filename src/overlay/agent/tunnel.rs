//! The agent's WireGuard side (see `crypt`): the device, made with the
//! first encrypted network built here and removed after the last; its
//! peers, one per registered host with WireGuard, following membership as
//! FDB entries do (one peer per host event, a full diff on resync and when
//! the kernel check finds the kernel differs).
use super::{Agent, log};
use crate::error::{Error, Result};
use crate::netlink::Journal;
use crate::netlink::wg::{self, PeerSpec};
use crate::overlay::crypt;
use crate::overlay::fdb::Underlay;
use crate::overlay::store::NetSpec;
use crate::record::MarkKind;
use std::collections::HashMap;
use std::net::IpAddr;

impl Agent {
    /// The underlay a network's VXLAN device rides on: the host's, or the
    /// tunnel for an encrypted network (None while there is none).
    pub(super) fn under(&self, s: &NetSpec) -> Option<Underlay> {
        if s.encrypt {
            self.tunnel.clone()
        } else {
            Some(self.u.clone())
        }
    }

    /// The WireGuard device, made (marked, keyed, addressed, up) when
    /// missing, and its key, port, address and MTU put right when not as
    /// they should be. A failure while making it takes it away again.
    pub(super) async fn ensure_tunnel(&mut self) -> Result<Underlay> {
        let Some((keys, port)) = &self.wg else {
            return Err(Error::other(format!(
                "this kernel has no WireGuard (module {})",
                wg::MODULE
            )));
        };
        let port = *port;
        let mtu = self.u.mtu.saturating_sub(crypt::wg_overhead(self.u.ip));
        let inner = crypt::inner_of(&keys.public_bytes());
        let addr = ipnetwork::IpNetwork::new(IpAddr::V6(inner), crypt::INNER_PREFIX.1)
            .map_err(|e| Error::other(e.to_string()))?;
        let link = match self.net.link_by_name(crypt::DEVICE).await? {
            Some(l) => {
                let ours = crate::inventory::mark_of(&l)
                    .is_some_and(|m| m.m == MarkKind::Overlay && m.of == wg::MARK_OF);
                let wireguard = l.kind.as_deref() == Some("wireguard");
                if wireguard && !ours && self.net.wg_blank(l.index) {
                    // An agent killed between making and marking it: an
                    // admin's device would have a key.
                    let alias = crate::inventory::mark_alias(&l, MarkKind::Overlay, wg::MARK_OF)?;
                    self.net.set_alias(&l, &alias).await?;
                } else if !ours || !wireguard {
                    return Err(Error::bad(
                        crypt::DEVICE,
                        "exists and was not made by the overlay agent; remove or rename it",
                    ));
                }
                l
            }
            None => {
                let mut j = Journal::new();
                let made = async {
                    let l = self
                        .net
                        .create_wireguard(&mut j, crypt::DEVICE, mtu)
                        .await?;
                    let alias = crate::inventory::mark_alias(&l, MarkKind::Overlay, wg::MARK_OF)?;
                    self.net.set_alias(&l, &alias).await?;
                    self.net.wg_set_key(l.index, keys.private(), port)?;
                    self.net.add_addr(&l, addr).await?;
                    self.net.set_up(&l).await?;
                    self.net
                        .link_by_name(crypt::DEVICE)
                        .await?
                        .ok_or_else(|| Error::other(format!("{} vanished", crypt::DEVICE)))
                }
                .await;
                match made {
                    Ok(l) => {
                        j.commit();
                        log(format_args!(
                            "{}: WireGuard device made (port {port}, tunnel address {inner})",
                            crypt::DEVICE
                        ));
                        l
                    }
                    Err(e) => {
                        j.rollback().await;
                        return Err(e);
                    }
                }
            }
        };
        let dev = self.net.wg_device(link.index)?;
        if dev.public_key.as_deref() != Some(keys.public.as_str()) || dev.listen_port != port {
            self.net.wg_set_key(link.index, keys.private(), port)?;
        }
        if !self
            .net
            .addrs(link.index)
            .await?
            .iter()
            .any(|a| a.net == addr)
        {
            self.net.add_addr(&link, addr).await?;
        }
        if link.mtu != mtu {
            let mut j = Journal::new();
            let r = self.net.set_mtu(&mut j, &link, mtu).await;
            j.commit();
            r?;
        }
        if !link.up {
            self.net.set_up(&link).await?;
        }
        let t = Underlay {
            ifname: crypt::DEVICE.to_string(),
            index: link.index,
            ip: IpAddr::V6(inner),
            mtu,
        };
        let fresh = self.tunnel.as_ref().map(|x| x.index) != Some(link.index);
        self.tunnel = Some(t.clone());
        if fresh {
            self.peers.clear();
            self.sync_peers().await;
        }
        Ok(t)
    }

    /// Every registered host but this one that can be a peer.
    fn want_peers(&self) -> HashMap<String, PeerSpec> {
        let all = || self.model.hosts.values();
        all()
            .filter(|h| h.name != self.sh.host)
            .filter_map(|h| Some((h.name.clone(), crypt::peer_of(h, all())?)))
            .collect()
    }

    /// All peers made equal to etcd: missing ones set, others' removed.
    pub(super) async fn sync_peers(&mut self) {
        let Some(t) = &self.tunnel else {
            return;
        };
        let want = self.want_peers();
        let have = match self.net.wg_device(t.index) {
            Ok(d) => d.peers,
            Err(e) => {
                log(format_args!(
                    "{}: {e}; retrying at the next check",
                    crypt::DEVICE
                ));
                return;
            }
        };
        let (set, remove) = crypt::peer_diff(want.values(), &have);
        if set.is_empty() && remove.is_empty() {
            self.peers = want;
            return;
        }
        match self.net.wg_set_peers(t.index, &set, &remove) {
            Ok(()) => {
                log(format_args!(
                    "{}: {} peer(s) set, {} removed",
                    crypt::DEVICE,
                    set.len(),
                    remove.len()
                ));
                self.peers = want;
            }
            Err(e) => {
                log(format_args!(
                    "{}: {e}; retrying at the next check",
                    crypt::DEVICE
                ));
                self.peers.clear();
            }
        }
    }

    /// One host's record changed: its peer set, changed or removed.
    pub(super) fn peer_changed(&mut self, host: &str) {
        let Some(t) = &self.tunnel else {
            return;
        };
        if host == self.sh.host {
            return;
        }
        let all = || self.model.hosts.values();
        let want = self
            .model
            .hosts
            .get(host)
            .and_then(|h| crypt::peer_of(h, all()));
        let have = self.peers.get(host).cloned();
        if want == have {
            return;
        }
        let remove: Vec<[u8; 32]> = have
            .iter()
            .filter(|o| want.as_ref().map(|w| w.key) != Some(o.key))
            .map(|o| o.key)
            .collect();
        let set: Vec<PeerSpec> = want.iter().cloned().collect();
        match self.net.wg_set_peers(t.index, &set, &remove) {
            Ok(()) => match want {
                Some(w) => {
                    log(format_args!(
                        "{}: peer {host} at {}",
                        crypt::DEVICE,
                        w.endpoint
                    ));
                    self.peers.insert(host.to_string(), w);
                }
                None => {
                    log(format_args!("{}: peer {host} removed", crypt::DEVICE));
                    self.peers.remove(host);
                }
            },
            Err(e) => {
                log(format_args!(
                    "{}: {host}: {e}; retrying at the next check",
                    crypt::DEVICE
                ));
                // The check compares with the kernel and puts it right.
                self.peers.clear();
            }
        }
    }

    /// Kernel check: the device still there and its peers as etcd says.
    pub(super) async fn check_peers(&mut self) {
        let Some(t) = self.tunnel.clone() else {
            return;
        };
        match self.net.link_by_name(crypt::DEVICE).await {
            Ok(Some(l)) if l.index == t.index => {}
            _ => {
                log(format_args!(
                    "{}: gone or replaced: making it again",
                    crypt::DEVICE
                ));
                self.tunnel = None;
                let enc: Vec<String> = self
                    .devs
                    .keys()
                    .filter(|n| self.model.nets.get(*n).is_some_and(|s| s.encrypt))
                    .cloned()
                    .collect();
                for n in enc {
                    self.sync_net(&n).await;
                }
                return;
            }
        }
        let want = self.want_peers();
        let drifted = match self.net.wg_device(t.index) {
            Ok(d) => {
                let (set, remove) = crypt::peer_diff(want.values(), &d.peers);
                !set.is_empty() || !remove.is_empty()
            }
            Err(_) => true,
        };
        if drifted {
            log(format_args!(
                "{}: peers differ from etcd: putting them right",
                crypt::DEVICE
            ));
            self.sync_peers().await;
        }
    }

    /// With no encrypted network built here, the device goes (ours only,
    /// and only once no VXLAN device rides on it).
    pub(super) async fn tunnel_tidy(&mut self) {
        let encrypted = self
            .devs
            .keys()
            .any(|n| self.model.nets.get(n).is_some_and(|s| s.encrypt));
        if encrypted {
            return;
        }
        let Ok(Some(l)) = self.net.link_by_name(crypt::DEVICE).await else {
            self.tunnel = None;
            return;
        };
        let ours = crate::inventory::mark_of(&l)
            .is_some_and(|m| m.m == MarkKind::Overlay && m.of == wg::MARK_OF);
        // Or half-made by a killed agent (no key, no peer), as gc sees it.
        let half_made = l.kind.as_deref() == Some("wireguard") && self.net.wg_blank(l.index);
        if !(ours || half_made) || !matches!(self.net.wg_in_use(l.index).await, Ok(false)) {
            return;
        }
        match self.net.delete_link(&l).await {
            Ok(()) => {
                log(format_args!(
                    "{}: no encrypted network here: removed",
                    crypt::DEVICE
                ));
                self.tunnel = None;
                self.peers.clear();
            }
            Err(e) => log(format_args!("{}: {e}", crypt::DEVICE)),
        }
    }
}
