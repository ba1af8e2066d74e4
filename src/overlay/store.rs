//! etcd: how we connect, the key layout, and the records stored there.
//!
//! Every call is bounded by a timeout: with etcd unreachable a command
//! fails within seconds, in one line, before it changes anything.
use super::etcd;
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;

/// Root of everything the overlay keeps in etcd.
pub const ROOT: &str = "/pipework/overlay/";

pub fn net_key(net: &str) -> String {
    format!("{ROOT}net/{net}")
}
pub fn vni_key(vni: u32) -> String {
    format!("{ROOT}vni/{vni}")
}
pub fn host_key(host: &str) -> String {
    format!("{ROOT}host/{host}")
}
pub fn ep_prefix(net: &str) -> String {
    format!("{ROOT}ep/{net}/")
}
pub fn ep_key(net: &str, ip: std::net::IpAddr) -> String {
    format!("{ROOT}ep/{net}/{ip}")
}
pub fn resv_prefix(net: &str) -> String {
    format!("{ROOT}resv/{net}/")
}
/// An address's reservation: who owns it, whether or not that host is
/// alive right now (see `Reservation`).
pub fn resv_key(net: &str, ip: std::net::IpAddr) -> String {
    format!("{ROOT}resv/{net}/{ip}")
}

pub fn mac_prefix(net: &str) -> String {
    format!("{ROOT}mac/{net}/")
}
/// An IPv6-only endpoint's MAC (see `MacHold`), e.g. "02:76:00:01:00:05".
pub fn mac_key(net: &str, mac: &str) -> String {
    format!("{ROOT}mac/{net}/{mac}")
}

/// How long a silent host's addresses stay reserved by default (as
/// flannel keeps a subnet lease): a day.
pub const DEFAULT_GRACE: u64 = 24 * 3600;

fn default_grace() -> u64 {
    DEFAULT_GRACE
}

/// A network as `overlay create` stored it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct NetSpec {
    pub name: String,
    /// The IPv4 subnet (None: an IPv6-only network; every network made
    /// before dual stack has one).
    #[serde(default, with = "cidr", skip_serializing_if = "Option::is_none")]
    pub subnet: Option<ipnetwork::Ipv4Network>,
    /// The IPv6 subnet (None: IPv4 only, as every network made before
    /// dual stack).
    #[serde(default, with = "cidr", skip_serializing_if = "Option::is_none")]
    pub subnet6: Option<ipnetwork::Ipv6Network>,
    pub vni: u32,
    /// The MTU containers get (resolved at create time when `auto`).
    pub mtu: u32,
    /// True when the MTU was derived from the underlay (`--mtu auto`).
    #[serde(default)]
    pub mtu_auto: bool,
    pub port: u16,
    /// Seconds a host that went silent keeps its addresses reserved.
    #[serde(default = "default_grace")]
    pub grace: u64,
    /// The anycast gateway every host's bridge carries (None: the first
    /// address of the subnet; networks made before it had one say so too).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<std::net::Ipv4Addr>,
    /// The IPv6 anycast gateway (None: the first address of `subnet6`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway6: Option<std::net::Ipv6Addr>,
    /// Containers get no default route through the gateway.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub no_default_route: bool,
    /// Networks whose containers may reach this one's (and be answered).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_from: Vec<String>,
    /// VXLAN between hosts runs inside WireGuard only (`--encrypt`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub encrypt: bool,
}

impl NetSpec {
    /// The network's IPv4 gateway address (None: no IPv4 subnet).
    pub fn gw(&self) -> Option<std::net::Ipv4Addr> {
        let s = self.subnet?;
        Some(
            self.gateway
                .unwrap_or_else(|| std::net::Ipv4Addr::from(u32::from(s.network()) + 1)),
        )
    }

    /// The network's IPv6 gateway address (None: no IPv6 subnet).
    pub fn gw6(&self) -> Option<std::net::Ipv6Addr> {
        let s = self.subnet6?;
        Some(
            self.gateway6
                .unwrap_or_else(|| std::net::Ipv6Addr::from(u128::from(s.network()) + 1)),
        )
    }

    /// Both gateways, IPv4 first.
    pub fn gateways(&self) -> Vec<std::net::IpAddr> {
        let v4 = self.gw().map(std::net::IpAddr::from);
        v4.into_iter()
            .chain(self.gw6().map(std::net::IpAddr::from))
            .collect()
    }

    /// The subnet of `ip`'s family, as a generic network.
    pub fn subnet_of(&self, ip: std::net::IpAddr) -> Option<ipnetwork::IpNetwork> {
        match ip {
            std::net::IpAddr::V4(_) => self.subnet.map(Into::into),
            std::net::IpAddr::V6(_) => self.subnet6.map(Into::into),
        }
    }

    /// The subnets as text ("10.40.0.0/16 fd40::/64").
    pub fn subnets(&self) -> String {
        let v4 = self.subnet.map(|s| s.to_string());
        let v6 = self.subnet6.map(|s| s.to_string());
        v4.into_iter().chain(v6).collect::<Vec<_>>().join(" ")
    }
}

/// Ownership of an address, apart from liveness: the endpoint key lives
/// under its host's short lease (peers drop a dead host's entries within
/// two TTLs), this one under the host's long "hold" lease (TTL: the
/// network's grace). A host cut off for longer than the TTL keeps its
/// addresses, `auto` never hands them out, and the healed host
/// republishes them. Removed with the endpoint on detach, by
/// `overlay host rm`, or when the hold lease lapses.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Reservation {
    pub host: String,
    pub container: String,
    #[serde(default)]
    pub since: u64,
}

/// An IPv6-only endpoint's MAC is the address's last 32 bits, so two
/// static addresses of a network can share one: the MAC is claimed in the
/// same transaction as the address (create-revision 0), lives and dies
/// with the address's reservation (same hold lease; deleted with it), and
/// names the address holding it. IPv4-derived MACs need no key: the
/// address is unique in the network, and their prefix differs.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MacHold {
    pub ip: std::net::IpAddr,
    pub host: String,
    pub container: String,
}

/// A host, written by its agent under the host's lease.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct HostInfo {
    pub name: String,
    pub underlay: std::net::IpAddr,
    pub underlay_if: String,
    pub underlay_mtu: u32,
    pub lease: i64,
    /// The host's WireGuard side, public half only; None on a host whose
    /// kernel has no WireGuard (and in records of older agents).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wg: Option<WgHost>,
}

/// What peers need to reach a host through WireGuard. The private key
/// stays in the host's state folder (overlay::crypt); never here.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct WgHost {
    /// Public key, base64.
    pub key: String,
    /// UDP port on the underlay address.
    pub port: u16,
    /// Tunnel address (see overlay::crypt::inner_of): encrypted networks'
    /// VXLAN runs between these.
    pub inner: std::net::Ipv6Addr,
}

/// A container's interface on a network, written under its host's lease.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Endpoint {
    /// One address: a dual-stack container has one endpoint per family,
    /// both with the same MAC (claimed in one transaction).
    pub ip: std::net::IpAddr,
    pub mac: String,
    pub host: String,
    pub container: String,
    pub ifname: String,
    /// Host end of the veth, once the attach has built it: lets the agent
    /// tell a live endpoint of its own from one whose container is gone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hi: Option<String>,
    /// Unix seconds when it was written.
    #[serde(default)]
    pub since: u64,
}

/// Where etcd is and how to reach it (etcdctl's --endpoints, --cacert,
/// --cert, --key), and how long one request may take.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct EtcdOpts {
    /// Endpoints, comma-separated (None: http://127.0.0.1:2379).
    pub etcd: Option<String>,
    pub cacert: Option<std::path::PathBuf>,
    pub cert: Option<std::path::PathBuf>,
    pub key: Option<std::path::PathBuf>,
    /// Seconds.
    #[serde(default = "default_timeout")]
    pub etcd_timeout: f64,
}

fn default_timeout() -> f64 {
    3.0
}

impl EtcdOpts {
    pub fn endpoints(&self) -> Vec<String> {
        self.etcd
            .as_deref()
            .unwrap_or("http://127.0.0.1:2379")
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect()
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_secs_f64(self.etcd_timeout.clamp(0.1, 60.0))
    }

    fn tls(&self) -> Result<Option<etcd::TlsFiles>> {
        if self.cacert.is_none() && self.cert.is_none() && self.key.is_none() {
            return Ok(None);
        }
        let read = |p: &std::path::Path| {
            std::fs::read(p).map_err(|e| Error::io(format!("reading {}", p.display()), e))
        };
        let mut tls = etcd::TlsFiles::default();
        if let Some(ca) = &self.cacert {
            tls.ca = Some(read(ca)?);
        }
        match (&self.cert, &self.key) {
            (Some(c), Some(k)) => tls.identity = Some((read(c)?, read(k)?)),
            (None, None) => {}
            _ => return Err(Error::bad("--cert/--key", "give both or neither")),
        }
        Ok(Some(tls))
    }
}

/// A client plus the bound every call gets.
#[derive(Clone)]
pub struct Store {
    client: Arc<etcd::Client>,
    pub timeout: Duration,
    pub endpoints: String,
}

impl Store {
    /// Connect, and prove etcd answers (one bounded read), so that "etcd
    /// unreachable" is reported here, before anything changes.
    pub async fn connect(opts: &EtcdOpts) -> Result<Store> {
        let eps = opts.endpoints();
        if eps.is_empty() {
            return Err(Error::bad(
                "--etcd",
                "no endpoints; give e.g. http://10.0.0.1:2379",
            ));
        }
        let timeout = opts.timeout();
        // Each request goes to the first member that accepts a connection:
        // a dead member of a healthy cluster costs one connect attempt,
        // which must stay well under a lease TTL.
        let probe = timeout.min(Duration::from_secs(1));
        let client = etcd::Client::new(&eps, opts.tls()?.as_ref(), probe)?;
        let endpoints = eps.join(",");
        let s = Store {
            client: Arc::new(client),
            timeout,
            endpoints,
        };
        let unreachable = |why: String| {
            Error::other(format!(
                "etcd unreachable at {} ({why}); check --etcd/PIPEWORK_ETCD; nothing changed",
                s.endpoints
            ))
        };
        // Any read through the cluster: a quorum-less cluster or a dead
        // endpoint list fails here.
        // A member just killed or an election in progress answers
        // "leader changed" or "unavailable" for a moment: retry those
        // within the bound, fail on anything else.
        // A member that accepts connections but never answers (its own
        // path to etcd cut, as a partitioned host's member is) gets a share
        // of the bound, then the next member is asked.
        let deadline = std::time::Instant::now() + timeout;
        let share = (timeout / s.client.members().max(1) as u32).max(Duration::from_millis(300));
        let ping = format!("{ROOT}ping");
        loop {
            let probe = tokio::time::timeout(share, s.client.range(&ping, false));
            let e = match probe.await {
                Ok(Ok(_)) => return Ok(s),
                Ok(Err(e)) => e,
                Err(_) => {
                    s.client.move_on();
                    Error::other(format!("no answer within {share:?}"))
                }
            };
            let again = transient(&e) || e.to_string().starts_with("no answer within");
            if !again || std::time::Instant::now() >= deadline {
                return Err(unreachable(gateway_hint(e.to_string(), opts)));
            }
            if transient(&e) {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }

    /// Run one etcd call under the bound.
    pub async fn call<T, F>(&self, what: &str, f: F) -> Result<T>
    where
        F: std::future::Future<Output = Result<T>>,
    {
        match tokio::time::timeout(self.timeout, f).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(Error::other(format!("etcd {what}: {e}"))),
            Err(_) => {
                // Ask another member next time.
                self.client.move_on();
                Err(Error::other(format!(
                    "etcd {what}: no answer from {} within {:?}",
                    self.endpoints, self.timeout
                )))
            }
        }
    }

    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        Ok(self.get_kv(key).await?.map(|(v, _)| v))
    }

    /// A key's value and its modification revision (for a transaction
    /// that writes only if nobody else did meanwhile).
    pub async fn get_kv(&self, key: &str) -> Result<Option<(Vec<u8>, i64)>> {
        let r = self
            .call(&format!("get {key}"), self.client.range(key, false))
            .await?;
        Ok(r.kvs
            .into_iter()
            .next()
            .map(|kv| (kv.value, kv.mod_revision)))
    }

    /// All keys under a prefix, with the revision they were read at.
    pub async fn list(&self, prefix: &str) -> Result<(Vec<(String, Vec<u8>)>, i64)> {
        let (kvs, rev) = self.list_rev(prefix).await?;
        Ok((kvs.into_iter().map(|(k, v, _)| (k, v)).collect(), rev))
    }

    /// All keys under a prefix with each key's modification revision (for
    /// a later delete that compares it), and the revision read at. Paged
    /// (`etcd::Client::range_each`); each page is bounded on its own.
    pub async fn list_rev(&self, prefix: &str) -> Result<(Vec<(String, Vec<u8>, i64)>, i64)> {
        let mut out = Vec::new();
        let rev = self
            .list_each(prefix, &mut |k, v, r| out.push((k, v, r)))
            .await?;
        Ok((out, rev))
    }

    /// Every key under a prefix handed to `each` (key, value, modification
    /// revision) page by page, at one revision, which is returned: a
    /// caller that keeps a decoded copy never also holds the raw answer.
    pub async fn list_each(
        &self,
        prefix: &str,
        each: &mut (dyn FnMut(String, Vec<u8>, i64) + Send),
    ) -> Result<i64> {
        self.client
            .range_each(prefix, self.timeout, &mut |page| {
                for kv in page {
                    each(
                        String::from_utf8_lossy(&kv.key).into_owned(),
                        kv.value,
                        kv.mod_revision,
                    );
                }
            })
            .await
            .map_err(|e| Error::other(format!("etcd list {prefix}: {e}")))
    }

    /// Whether member `shown` still answers (bounded by `within`).
    pub async fn probe(&self, shown: &str, within: Duration) -> Result<()> {
        match tokio::time::timeout(within, self.client.probe(shown)).await {
            Ok(r) => r,
            Err(_) => Err(Error::other(format!(
                "{shown}: no answer within {within:?}"
            ))),
        }
    }

    /// Prefer the next member from now on.
    pub fn move_on(&self) {
        self.client.move_on();
    }

    /// Bytes read from etcd by this client so far (benchmarks).
    pub fn bytes_read(&self) -> u64 {
        self.client.bytes_read()
    }

    /// Put under a lease (None: a key that lives until deleted).
    pub async fn put(&self, what: &str, key: &str, value: &[u8], lease: Option<i64>) -> Result<()> {
        self.call(what, self.client.put(key, value, lease)).await
    }

    /// A transaction; true when its comparisons held and its writes ran.
    pub async fn txn(&self, what: &str, t: etcd::Txn) -> Result<bool> {
        self.call(what, self.client.txn(t)).await
    }

    pub async fn lease_grant(&self, ttl: i64) -> Result<i64> {
        self.call("lease grant", self.client.lease_grant(ttl)).await
    }

    pub async fn lease_ttl(&self, id: i64) -> Result<i64> {
        self.call("lease ttl", self.client.lease_ttl(id)).await
    }

    /// Renew a lease once; the TTL it now has (0: it had lapsed).
    pub async fn lease_keepalive(&self, id: i64) -> Result<i64> {
        self.call("lease keepalive", self.client.lease_keepalive(id))
            .await
    }

    /// Watch everything under `prefix` from revision `start`, with etcd's
    /// progress notifications (an empty message carrying the revision when
    /// nothing changed for a while: the stream is alive, no re-list needed).
    pub async fn watch(&self, prefix: &str, start: i64) -> Result<etcd::Watch> {
        self.call("watch", self.client.watch(prefix, start)).await
    }
}

/// etcd's JSON gateway dials etcd itself with the server's certificate; a
/// cluster with --client-cert-auth then checks it as a client certificate,
/// and one made for serverAuth only resets that dial.
fn gateway_hint(why: String, opts: &EtcdOpts) -> String {
    if opts.cacert.is_some() && why.contains("client preface") {
        format!(
            "{why}; etcd's JSON gateway presents the server certificate as a client: with --client-cert-auth it needs extendedKeyUsage clientAuth as well as serverAuth"
        )
    } else {
        why
    }
}

/// An error that a retry a moment later may not see (leader election).
pub fn transient(e: &Error) -> bool {
    let t = e.to_string();
    t.contains("leader changed") || t.contains("no leader") || t.contains("currently unavailable")
}

/// Decode a stored JSON record; a value we cannot read names its key.
pub fn decode<T: serde::de::DeserializeOwned>(key: &str, v: &[u8]) -> Result<T> {
    serde_json::from_slice(v)
        .map_err(|e| Error::other(format!("etcd {key}: unreadable record: {e}")))
}

pub fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).unwrap_or_default()
}

pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A subnet as its text ("10.40.0.0/16", "fd40::/64"), as etcdctl users
/// read it.
mod cidr {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer, N: std::fmt::Display>(
        n: &Option<N>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match n {
            Some(n) => s.serialize_str(&n.to_string()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>, N>(d: D) -> Result<Option<N>, D::Error>
    where
        N: std::str::FromStr,
        N::Err: std::fmt::Display,
    {
        match Option::<String>::deserialize(d)? {
            Some(t) => t.parse().map(Some).map_err(serde::de::Error::custom),
            None => Ok(None),
        }
    }
}
