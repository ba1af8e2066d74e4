//! The agent's in-memory copy of everything under `store::ROOT`, decoded
//! once per key and indexed so that one watch event costs O(1): an
//! endpoint's entry is found by (network, address), a host's endpoints by
//! its name (a host's underlay change or death touches only those).
//!
//! `overlay status` reads the same model from one paged list.
use super::fdb::Desired;
use super::names;
use super::store::{self, Endpoint, HostInfo, NetSpec, Reservation};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr};

/// What one key's change touched.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Touched {
    /// A network was defined, changed or deleted.
    Net(String),
    /// A host registered, changed its underlay, or left.
    Host(String),
    /// One endpoint appeared, changed or left.
    Ep(String, Ipv4Addr),
    /// One reservation appeared or left.
    Resv(String, Ipv4Addr),
}

/// An endpoint and the revision it was last written at.
pub type EpAt = (Endpoint, i64);

#[derive(Default)]
pub struct Model {
    pub nets: BTreeMap<String, NetSpec>,
    pub hosts: HashMap<String, HostInfo>,
    /// network → address → endpoint.
    pub eps: HashMap<String, BTreeMap<Ipv4Addr, EpAt>>,
    /// network → address → reservation (and its revision).
    pub resv: HashMap<String, BTreeMap<Ipv4Addr, (Reservation, i64)>>,
    /// host → its endpoints (network, address).
    by_host: HashMap<String, HashSet<(String, Ipv4Addr)>>,
    /// host → its reservations (network, address).
    resv_by_host: HashMap<String, HashSet<(String, Ipv4Addr)>>,
}

/// Index `key` under `host` (or take it out).
fn index(
    ix: &mut HashMap<String, HashSet<(String, Ipv4Addr)>>,
    host: &str,
    key: (String, Ipv4Addr),
    add: bool,
) {
    if add {
        ix.entry(host.to_string()).or_default().insert(key);
    } else if let Some(s) = ix.get_mut(host) {
        s.remove(&key);
        if s.is_empty() {
            ix.remove(host);
        }
    }
}

/// A key under ROOT, split.
enum Key<'a> {
    Net(&'a str),
    Host(&'a str),
    Ep(&'a str, Ipv4Addr),
    Resv(&'a str, Ipv4Addr),
}

fn split(k: &str) -> Option<Key<'_>> {
    let rest = k.strip_prefix(store::ROOT)?;
    let mut it = rest.splitn(3, '/');
    match (it.next()?, it.next(), it.next()) {
        ("net", Some(n), None) => Some(Key::Net(n)),
        ("host", Some(n), None) => Some(Key::Host(n)),
        ("ep", Some(n), Some(ip)) => Some(Key::Ep(n, ip.parse().ok()?)),
        ("resv", Some(n), Some(ip)) => Some(Key::Resv(n, ip.parse().ok()?)),
        _ => None,
    }
}

impl Model {
    /// The model of one snapshot (a paged list at one revision).
    pub fn from_kvs(kvs: impl IntoIterator<Item = (String, Vec<u8>, i64)>) -> Model {
        let mut m = Model::default();
        for (k, v, rev) in kvs {
            m.apply(&k, Some(&v), rev);
        }
        m
    }

    /// Apply one key's new value (None: deleted). Unreadable records are
    /// treated as absent. Returns what changed, if the key is one of ours.
    pub fn apply(&mut self, key: &str, val: Option<&[u8]>, rev: i64) -> Option<Touched> {
        match split(key)? {
            Key::Net(n) => {
                match val.and_then(|v| store::decode::<NetSpec>(key, v).ok()) {
                    Some(s) => self.nets.insert(n.to_string(), s),
                    None => self.nets.remove(n),
                };
                Some(Touched::Net(n.to_string()))
            }
            Key::Host(n) => {
                match val.and_then(|v| store::decode::<HostInfo>(key, v).ok()) {
                    Some(s) => self.hosts.insert(n.to_string(), s),
                    None => self.hosts.remove(n),
                };
                Some(Touched::Host(n.to_string()))
            }
            Key::Ep(n, ip) => {
                let new = val.and_then(|v| store::decode::<Endpoint>(key, v).ok());
                let per = self.eps.entry(n.to_string()).or_default();
                if let Some((o, _)) = per.remove(&ip) {
                    index(&mut self.by_host, &o.host, (n.to_string(), ip), false);
                }
                if let Some(e) = new {
                    index(&mut self.by_host, &e.host, (n.to_string(), ip), true);
                    per.insert(ip, (e, rev));
                } else if per.is_empty() {
                    self.eps.remove(n);
                }
                Some(Touched::Ep(n.to_string(), ip))
            }
            Key::Resv(n, ip) => {
                let new = val.and_then(|v| store::decode::<Reservation>(key, v).ok());
                let per = self.resv.entry(n.to_string()).or_default();
                if let Some((o, _)) = per.remove(&ip) {
                    index(&mut self.resv_by_host, &o.host, (n.to_string(), ip), false);
                }
                match new {
                    Some(r) => {
                        index(&mut self.resv_by_host, &r.host, (n.to_string(), ip), true);
                        per.insert(ip, (r, rev));
                    }
                    None if per.is_empty() => {
                        self.resv.remove(n);
                    }
                    None => {}
                }
                Some(Touched::Resv(n.to_string(), ip))
            }
        }
    }

    pub fn ep(&self, net: &str, ip: Ipv4Addr) -> Option<&EpAt> {
        self.eps.get(net)?.get(&ip)
    }

    /// The endpoints of `host`, as (network, address).
    pub fn eps_of(&self, host: &str) -> Vec<(String, Ipv4Addr)> {
        self.by_host
            .get(host)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// The VTEP host `me` must send `ip` of `net` to: None for its own
    /// endpoints, absent ones, and ones whose host is not registered (its
    /// lease is taking them away).
    pub fn entry(&self, net: &str, ip: Ipv4Addr, me: &str) -> Option<IpAddr> {
        let (ep, _) = self.ep(net, ip)?;
        if ep.host == me {
            return None;
        }
        let h = self.hosts.get(&ep.host)?;
        if self.nets.get(net).is_some_and(|s| s.encrypt) {
            // Inside the tunnel only: a host without WireGuard gets none.
            return h.wg.as_ref().map(|w| IpAddr::V6(w.inner));
        }
        Some(h.underlay)
    }

    /// Everything host `me` must program for `net`.
    pub fn desired(&self, net: &str, me: &str) -> Desired {
        let mut d = Desired::new();
        for ip in self.eps.get(net).into_iter().flat_map(|m| m.keys()) {
            if let Some(vtep) = self.entry(net, *ip, me) {
                d.insert(names::mac_for(*ip), (vtep, *ip));
            }
        }
        d
    }

    /// Whether host `me` has an endpoint or a reservation on `net`: the
    /// networks whose device it builds. O(this host's own addresses).
    pub fn used_by(&self, net: &str, me: &str) -> bool {
        [&self.by_host, &self.resv_by_host]
            .iter()
            .any(|ix| ix.get(me).is_some_and(|s| s.iter().any(|(n, _)| n == net)))
    }

    /// The reservations of `host`, as (network, address, revision).
    pub fn resv_of(&self, host: &str) -> Vec<(String, Ipv4Addr, i64)> {
        self.resv_by_host
            .get(host)
            .into_iter()
            .flatten()
            .filter_map(|(n, ip)| {
                let (_, rev) = self.resv.get(n)?.get(ip)?;
                Some((n.clone(), *ip, *rev))
            })
            .collect()
    }

    /// Endpoints held by one host while another host reserves the address:
    /// one address on two containers. Never expected; shown when found.
    pub fn conflicts(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (net, m) in &self.eps {
            for (ip, (ep, _)) in m {
                if let Some((r, _)) = self.resv.get(net).and_then(|r| r.get(ip))
                    && r.host != ep.host
                {
                    out.push(format!(
                        "{net} {ip}: endpoint of host {} ({}) but reserved by host {} ({})",
                        ep.host,
                        crate::untrusted::display(&ep.container),
                        r.host,
                        crate::untrusted::display(&r.container)
                    ));
                }
            }
        }
        out.sort();
        out
    }

    pub fn ep_count(&self) -> usize {
        self.eps.values().map(BTreeMap::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(ip: &str, host: &str) -> Vec<u8> {
        format!(r#"{{"ip":"{ip}","mac":"","host":"{host}","container":"c","ifname":"eth1"}}"#)
            .into_bytes()
    }

    fn host(name: &str, ul: &str) -> Vec<u8> {
        format!(
            r#"{{"name":"{name}","underlay":"{ul}","underlay_if":"eth0","underlay_mtu":1500,"lease":1}}"#
        )
        .into_bytes()
    }

    #[test]
    fn one_event_changes_one_entry_and_hosts_index_their_endpoints() {
        let r = store::ROOT;
        let mut m = Model::from_kvs(vec![
            (format!("{r}host/a"), host("a", "10.0.0.1"), 1),
            (format!("{r}host/b"), host("b", "10.0.0.2"), 2),
            (format!("{r}ep/n/10.1.0.1"), ep("10.1.0.1", "a"), 3),
            (format!("{r}ep/n/10.1.0.2"), ep("10.1.0.2", "b"), 4),
        ]);
        let ip1: Ipv4Addr = "10.1.0.1".parse().unwrap();
        let ip2: Ipv4Addr = "10.1.0.2".parse().unwrap();
        assert_eq!(m.entry("n", ip1, "b"), Some("10.0.0.1".parse().unwrap()));
        assert_eq!(m.entry("n", ip1, "a"), None, "own endpoint");
        assert_eq!(m.desired("n", "a").len(), 1);
        // Host b moves: only its endpoint is touched.
        assert_eq!(
            m.apply(&format!("{r}host/b"), Some(&host("b", "10.0.0.9")), 5),
            Some(Touched::Host("b".into()))
        );
        assert_eq!(m.eps_of("b"), vec![("n".to_string(), ip2)]);
        assert_eq!(m.entry("n", ip2, "a"), Some("10.0.0.9".parse().unwrap()));
        // Host b leaves: its endpoint is no longer wanted anywhere.
        m.apply(&format!("{r}host/b"), None, 6);
        assert_eq!(m.entry("n", ip2, "a"), None);
        m.apply(&format!("{r}ep/n/10.1.0.2"), None, 7);
        assert!(m.eps_of("b").is_empty());
        assert!(m.used_by("n", "a") && !m.used_by("n", "b"));
        // A reservation held by another host than the endpoint's: a conflict.
        m.apply(
            &format!("{r}resv/n/10.1.0.1"),
            Some(br#"{"host":"b","container":"x","since":0}"#),
            8,
        );
        assert_eq!(m.conflicts().len(), 1);
        assert!(m.used_by("n", "b"));
        // Keys of another layout or unreadable records change nothing.
        assert_eq!(m.apply(&format!("{r}vni/5"), Some(b"n"), 9), None);
        m.apply(&format!("{r}ep/n/10.1.0.1"), Some(b"{"), 10);
        assert_eq!(m.ep_count(), 0);
    }
}
