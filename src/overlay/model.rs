//! The agent's in-memory copy of everything under `store::ROOT`, decoded
//! once per key and indexed so that one watch event costs O(1): an
//! endpoint's entry is found by (network, address), a host's endpoints by
//! its name (a host's underlay change or death touches only those).
//!
//! `overlay status` reads the same model from one paged list.
use super::fdb::Desired;
use super::names;
use super::store::{self, Endpoint, HostInfo, MacHold, NetSpec, Reservation};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;

/// What one key's change touched.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Touched {
    /// A network was defined, changed or deleted.
    Net(String),
    /// A host registered, changed its underlay, or left.
    Host(String),
    /// One endpoint appeared, changed or left.
    Ep(String, IpAddr),
    /// One reservation appeared or left.
    Resv(String, IpAddr),
}

/// An endpoint and the revision it was last written at.
pub type EpAt = (Endpoint, i64);

#[derive(Default)]
pub struct Model {
    pub nets: BTreeMap<String, NetSpec>,
    pub hosts: HashMap<String, HostInfo>,
    /// network → address → endpoint.
    pub eps: HashMap<String, BTreeMap<IpAddr, EpAt>>,
    /// network → address → reservation (and its revision).
    pub resv: HashMap<String, BTreeMap<IpAddr, (Reservation, i64)>>,
    /// host → its endpoints (network, address).
    by_host: HashMap<String, HashSet<(String, IpAddr)>>,
    /// host → its reservations (network, address).
    resv_by_host: HashMap<String, HashSet<(String, IpAddr)>>,
    /// network → IPv6-only MAC → its holder (and revision): read only by
    /// the sweep, which drops one whose address is no longer held.
    pub macs: HashMap<String, BTreeMap<String, (MacHold, i64)>>,
}

/// An endpoint's MAC as its claim wrote it (both families' endpoints of
/// one container carry the same); derived from the address if unreadable.
pub fn mac_of(ep: &Endpoint) -> [u8; 6] {
    crate::request::parse_mac(&ep.mac).unwrap_or_else(|_| names::mac_of(&[ep.ip]))
}

/// Index `key` under `host` (or take it out).
fn index(
    ix: &mut HashMap<String, HashSet<(String, IpAddr)>>,
    host: &str,
    key: (String, IpAddr),
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
    Ep(&'a str, IpAddr),
    Resv(&'a str, IpAddr),
    Mac(&'a str, &'a str),
}

fn split(k: &str) -> Option<Key<'_>> {
    let rest = k.strip_prefix(store::ROOT)?;
    let mut it = rest.splitn(3, '/');
    match (it.next()?, it.next(), it.next()) {
        ("net", Some(n), None) => Some(Key::Net(n)),
        ("host", Some(n), None) => Some(Key::Host(n)),
        ("ep", Some(n), Some(ip)) => Some(Key::Ep(n, ip.parse().ok()?)),
        ("resv", Some(n), Some(ip)) => Some(Key::Resv(n, ip.parse().ok()?)),
        ("mac", Some(n), Some(mac)) => Some(Key::Mac(n, mac)),
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
            // Kept for the sweep; nothing the agent programs depends on it.
            Key::Mac(n, mac) => {
                let new = val.and_then(|v| store::decode::<MacHold>(key, v).ok());
                let per = self.macs.entry(n.to_string()).or_default();
                match new {
                    Some(h) => {
                        per.insert(mac.to_string(), (h, rev));
                    }
                    None => {
                        per.remove(mac);
                        if per.is_empty() {
                            self.macs.remove(n);
                        }
                    }
                }
                None
            }
        }
    }

    /// MAC keys of `host` whose address has neither endpoint nor
    /// reservation (left by a release that predates MAC keys): (network,
    /// key, address, revision), to give back.
    pub fn orphan_macs(&self, host: &str) -> Vec<(String, String, IpAddr, i64)> {
        let held = |n: &str, ip: &IpAddr| {
            self.ep(n, *ip).is_some() || self.resv.get(n).is_some_and(|r| r.contains_key(ip))
        };
        self.macs
            .iter()
            .flat_map(|(n, per)| per.iter().map(move |(m, v)| (n, m, v)))
            .filter(|(n, _, (h, _))| h.host == host && !held(n, &h.ip))
            .map(|(n, m, (h, rev))| (n.clone(), store::mac_key(n, m), h.ip, *rev))
            .collect()
    }

    pub fn ep(&self, net: &str, ip: IpAddr) -> Option<&EpAt> {
        self.eps.get(net)?.get(&ip)
    }

    /// The endpoints of `host`, as (network, address).
    pub fn eps_of(&self, host: &str) -> Vec<(String, IpAddr)> {
        self.by_host
            .get(host)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// The VTEP host `me` must send `ip` of `net` to, and the endpoint's
    /// MAC: None for its own endpoints, absent ones, and ones whose host is
    /// not registered (its lease is taking them away).
    pub fn entry(&self, net: &str, ip: IpAddr, me: &str) -> Option<(IpAddr, [u8; 6])> {
        let (ep, _) = self.ep(net, ip)?;
        if ep.host == me {
            return None;
        }
        let h = self.hosts.get(&ep.host)?;
        let vtep = if self.nets.get(net).is_some_and(|s| s.encrypt) {
            // Inside the tunnel only: a host without WireGuard gets none.
            IpAddr::V6(h.wg.as_ref()?.inner)
        } else {
            h.underlay
        };
        Some((vtep, mac_of(ep)))
    }

    /// Everything host `me` must program for `net`: one FDB entry per MAC
    /// (a dual-stack endpoint's two addresses share it), one neighbour
    /// entry per address.
    pub fn desired(&self, net: &str, me: &str) -> Desired {
        let mut d = Desired::new();
        for ip in self.eps.get(net).into_iter().flat_map(|m| m.keys()) {
            if let Some((vtep, mac)) = self.entry(net, *ip, me) {
                let e = d.entry(mac).or_insert_with(|| (vtep, Default::default()));
                e.0 = vtep;
                e.1.insert(*ip);
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

    /// The networks joined to `net` by an `--allow-from`, either way: the
    /// ones it may route to (they allow it) and the ones it routes replies
    /// back to (it allows them). Network definitions are few: a scan.
    pub fn peers(&self, net: &str) -> Vec<String> {
        let Some(spec) = self.nets.get(net) else {
            return Vec::new();
        };
        self.nets
            .iter()
            .filter(|(n, s)| {
                *n != net
                    && (spec.allow_from.iter().any(|f| f == *n)
                        || s.allow_from.iter().any(|f| f == net))
            })
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// Whether host `me` must route into or out of `net` although no
    /// container of `net` is here: a network it uses is a peer of `net`
    /// (see `peers`). Each host routes at its own anycast gateway, so the
    /// sender's host needs the destination's subnet (A→B) and the
    /// receiver's host the sender's (B's replies to A).
    pub fn peer_used(&self, net: &str, me: &str) -> bool {
        self.peers(net).iter().any(|p| self.used_by(p, me))
    }

    /// The reservations of `host`, as (network, address, revision).
    pub fn resv_of(&self, host: &str) -> Vec<(String, IpAddr, i64)> {
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
        let ip1: IpAddr = "10.1.0.1".parse().unwrap();
        let ip2: IpAddr = "10.1.0.2".parse().unwrap();
        assert_eq!(
            m.entry("n", ip1, "b").map(|e| e.0),
            Some("10.0.0.1".parse().unwrap())
        );
        assert_eq!(m.entry("n", ip1, "a"), None, "own endpoint");
        assert_eq!(m.desired("n", "a").len(), 1);
        // Host b moves: only its endpoint is touched.
        assert_eq!(
            m.apply(&format!("{r}host/b"), Some(&host("b", "10.0.0.9")), 5),
            Some(Touched::Host("b".into()))
        );
        assert_eq!(m.eps_of("b"), vec![("n".to_string(), ip2)]);
        assert_eq!(
            m.entry("n", ip2, "a").map(|e| e.0),
            Some("10.0.0.9".parse().unwrap())
        );
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
        // An IPv6-only MAC: tracked for the sweep, touching nothing;
        // orphaned once its address has neither endpoint nor reservation.
        let mk = store::mac_key("n", "02:76:00:00:00:05");
        let hold = br#"{"ip":"fd40::1:0:0:5","host":"b","container":"x"}"#;
        assert_eq!(m.apply(&mk, Some(hold), 9), None);
        let v6: IpAddr = "fd40::1:0:0:5".parse().unwrap();
        assert_eq!(
            m.orphan_macs("b"),
            vec![("n".to_string(), mk.clone(), v6, 9)]
        );
        assert!(m.orphan_macs("a").is_empty());
        m.apply(
            &format!("{r}resv/n/fd40::1:0:0:5"),
            Some(br#"{"host":"b","container":"x","since":0}"#),
            10,
        );
        assert!(m.orphan_macs("b").is_empty());
        m.apply(&mk, None, 11);
        assert!(m.macs.is_empty());
        // Keys of another layout or unreadable records change nothing.
        assert_eq!(m.apply(&format!("{r}vni/5"), Some(b"n"), 9), None);
        m.apply(&format!("{r}ep/n/10.1.0.1"), Some(b"{"), 10);
        assert_eq!(m.ep_count(), 0);
    }

    fn net(name: &str, subnet: &str, allow: &[&str]) -> Vec<u8> {
        let allow: Vec<String> = allow.iter().map(|a| format!("\"{a}\"")).collect();
        format!(
            r#"{{"name":"{name}","subnet":"{subnet}","vni":1,"mtu":1450,"mtu_auto":false,"port":4789,"grace":60,"gateway":null,"no_default_route":false,"allow_from":[{}]}}"#,
            allow.join(",")
        )
        .into_bytes()
    }

    #[test]
    fn peers_are_joined_by_allow_from_either_way_and_needed_where_used() {
        let r = store::ROOT;
        let m = Model::from_kvs(vec![
            (format!("{r}net/a"), net("a", "10.1.0.0/24", &[]), 1),
            (format!("{r}net/b"), net("b", "10.2.0.0/24", &["a"]), 2),
            (format!("{r}net/c"), net("c", "10.3.0.0/24", &[]), 3),
            (format!("{r}ep/a/10.1.0.5"), ep("10.1.0.5", "h1"), 4),
            (format!("{r}ep/b/10.2.0.5"), ep("10.2.0.5", "h2"), 5),
            (format!("{r}ep/c/10.3.0.5"), ep("10.3.0.5", "h3"), 6),
        ]);
        assert_eq!(m.peers("a"), vec!["b".to_string()]);
        assert_eq!(m.peers("b"), vec!["a".to_string()]);
        assert!(m.peers("c").is_empty() && m.peers("nosuch").is_empty());
        // h1 (a's sender) needs b; h2 (b's) needs a for its replies.
        assert!(m.peer_used("b", "h1") && m.peer_used("a", "h2"));
        // c is joined to nothing: needed nowhere but where it is used.
        assert!(!m.peer_used("c", "h1") && !m.peer_used("a", "h3"));
        assert!(!m.peer_used("b", "h3") && !m.peer_used("a", "h1"));
    }

    #[test]
    fn a_dual_stack_endpoint_is_one_fdb_entry_and_two_neighbours() {
        let r = store::ROOT;
        let dual = |ip: &str| {
            format!(
                r#"{{"ip":"{ip}","mac":"02:77:0a:01:00:02","host":"b","container":"c","ifname":"eth1"}}"#
            )
            .into_bytes()
        };
        let m = Model::from_kvs(vec![
            (format!("{r}host/b"), host("b", "fd00::2"), 1),
            (format!("{r}ep/n/10.1.0.2"), dual("10.1.0.2"), 2),
            (format!("{r}ep/n/fd40::5"), dual("fd40::5"), 3),
        ]);
        let d = m.desired("n", "a");
        assert_eq!(d.len(), 1, "{d:?}");
        let (vtep, ips) = &d[&[0x02, 0x77, 10, 1, 0, 2]];
        assert_eq!(*vtep, "fd00::2".parse::<IpAddr>().unwrap());
        assert_eq!(ips.len(), 2);
        let v6: IpAddr = "fd40::5".parse().unwrap();
        assert_eq!(m.eps_of("b").len(), 2);
        assert_eq!(
            m.entry("n", v6, "a").map(|e| e.1),
            Some([2, 0x77, 10, 1, 0, 2])
        );
    }

    /// What the agent programs and doctor expects for an encrypted
    /// network: the peer's tunnel address, never its underlay (that
    /// would send the network's frames in clear); a peer without
    /// WireGuard gets no entry at all.
    #[test]
    fn an_encrypted_network_points_at_the_peers_tunnel_address() {
        let r = store::ROOT;
        let spec = String::from_utf8(net("s", "10.1.0.0/24", &[]))
            .expect("utf8")
            .replace(r#""allow_from":[]"#, r#""allow_from":[],"encrypt":true"#)
            .into_bytes();
        let wg = br#"{"name":"b","underlay":"10.0.0.2","underlay_if":"eth0","underlay_mtu":1500,"lease":1,"wg":{"key":"k","port":51820,"inner":"fd70:6970:7767::b"}}"#;
        let mut m = Model::from_kvs(vec![
            (format!("{r}net/s"), spec, 1),
            (format!("{r}host/b"), wg.to_vec(), 2),
            (format!("{r}host/c"), host("c", "10.0.0.3"), 3),
            (format!("{r}ep/s/10.1.0.2"), ep("10.1.0.2", "b"), 4),
            (format!("{r}ep/s/10.1.0.3"), ep("10.1.0.3", "c"), 5),
        ]);
        let ip2: IpAddr = "10.1.0.2".parse().expect("ip");
        let ip3: IpAddr = "10.1.0.3".parse().expect("ip");
        let tunnel: IpAddr = "fd70:6970:7767::b".parse().expect("ip");
        assert_eq!(m.entry("s", ip2, "a").map(|e| e.0), Some(tunnel));
        assert_eq!(m.entry("s", ip3, "a"), None, "c has no WireGuard");
        // The same hosts on a clear network: their underlays.
        m.apply(&format!("{r}net/s"), Some(&net("s", "10.1.0.0/24", &[])), 6);
        assert_eq!(
            m.entry("s", ip2, "a").map(|e| e.0),
            Some("10.0.0.2".parse().expect("ip"))
        );
    }
}
