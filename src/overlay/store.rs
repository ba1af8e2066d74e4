//! etcd: how we connect, the key layout, and the records stored there.
//!
//! Every call is bounded by a timeout: with etcd unreachable a command
//! fails within seconds, in one line, before it changes anything.
use crate::error::{Error, Result};
use etcd_client::{Client, ConnectOptions, GetOptions};
use serde::{Deserialize, Serialize};
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

/// A network as `overlay create` stored it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct NetSpec {
    pub name: String,
    #[serde(with = "cidr")]
    pub subnet: ipnetwork::Ipv4Network,
    pub vni: u32,
    /// The MTU containers get (resolved at create time when `auto`).
    pub mtu: u32,
    /// True when the MTU was derived from the underlay (`--mtu auto`).
    #[serde(default)]
    pub mtu_auto: bool,
    pub port: u16,
}

/// A host, written by its agent under the host's lease.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct HostInfo {
    pub name: String,
    pub underlay: std::net::IpAddr,
    pub underlay_if: String,
    pub underlay_mtu: u32,
    pub lease: i64,
}

/// A container's interface on a network, written under its host's lease.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Endpoint {
    pub ip: std::net::Ipv4Addr,
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

/// Where etcd is and how to reach it; flags named as etcdctl names them.
#[derive(Debug, Clone, Default, Serialize, Deserialize, clap::Args)]
pub struct EtcdOpts {
    /// etcd endpoints, comma-separated (default $PIPEWORK_ETCD, then http://127.0.0.1:2379).
    #[arg(long = "etcd", env = "PIPEWORK_ETCD")]
    pub etcd: Option<String>,
    /// CA bundle to verify etcd's certificate (as etcdctl --cacert).
    #[arg(long)]
    pub cacert: Option<std::path::PathBuf>,
    /// Client certificate for etcd (as etcdctl --cert).
    #[arg(long)]
    pub cert: Option<std::path::PathBuf>,
    /// Client key for etcd (as etcdctl --key).
    #[arg(long)]
    pub key: Option<std::path::PathBuf>,
    /// Seconds one etcd request may take before we give up.
    #[arg(long = "etcd-timeout", default_value_t = 3.0)]
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

    fn tls(&self) -> Result<Option<etcd_client::TlsOptions>> {
        if self.cacert.is_none() && self.cert.is_none() && self.key.is_none() {
            return Ok(None);
        }
        let read = |p: &std::path::Path| {
            std::fs::read(p).map_err(|e| Error::io(format!("reading {}", p.display()), e))
        };
        let mut tls = etcd_client::TlsOptions::new();
        if let Some(ca) = &self.cacert {
            tls = tls.ca_certificate(etcd_client::Certificate::from_pem(read(ca)?));
        }
        match (&self.cert, &self.key) {
            (Some(c), Some(k)) => {
                tls = tls.identity(etcd_client::Identity::from_pem(read(c)?, read(k)?));
            }
            (None, None) => {}
            _ => return Err(Error::bad("--cert/--key", "give both or neither")),
        }
        Ok(Some(tls))
    }
}

/// A connected client plus the bound every call gets.
#[derive(Clone)]
pub struct Store {
    pub client: Client,
    pub timeout: Duration,
    pub endpoints: String,
}

impl Store {
    /// Connect, and prove etcd answers (one bounded status call), so that
    /// "etcd unreachable" is reported here, before anything changes.
    pub async fn connect(opts: &EtcdOpts) -> Result<Store> {
        let eps = opts.endpoints();
        if eps.is_empty() {
            return Err(Error::bad(
                "--etcd",
                "no endpoints; give e.g. http://10.0.0.1:2379",
            ));
        }
        let timeout = opts.timeout();
        let mut co = ConnectOptions::new()
            .with_connect_timeout(timeout)
            .with_keep_alive(Duration::from_secs(2), timeout);
        if let Some(tls) = opts.tls()? {
            co = co.with_tls(tls);
        }
        let endpoints = eps.join(",");
        let shown = endpoints.clone();
        // The client balances requests over every endpoint, and one that
        // refuses connections fails the requests sent its way: keep only
        // the members that accept a connection now (a dead member of a
        // healthy cluster must not fail an attach).
        // A TCP connect to a live member takes a round trip; a dead host
        // takes the whole bound, which must stay well under a lease TTL.
        let probe = timeout.min(Duration::from_secs(1));
        let probes = eps.iter().map(|e| async move {
            let hostport = e
                .split("://")
                .last()
                .unwrap_or(e)
                .split('/')
                .next()
                .unwrap_or(e)
                .to_string();
            let up = matches!(
                tokio::time::timeout(probe, tokio::net::TcpStream::connect(hostport)).await,
                Ok(Ok(_))
            );
            (e.clone(), up)
        });
        let live: Vec<String> = futures::future::join_all(probes)
            .await
            .into_iter()
            .filter_map(|(e, up)| up.then_some(e))
            .collect();
        if live.is_empty() {
            return Err(Error::other(format!(
                "etcd unreachable at {endpoints} (no member accepts connections); check --etcd/PIPEWORK_ETCD; nothing changed"
            )));
        }
        let eps = live;
        let unreachable = move |why: String| {
            Error::other(format!(
                "etcd unreachable at {shown} ({why}); check --etcd/PIPEWORK_ETCD; nothing changed"
            ))
        };
        let client = match tokio::time::timeout(timeout, Client::connect(&eps, Some(co))).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => return Err(unreachable(e.to_string())),
            Err(_) => return Err(unreachable(format!("no answer in {timeout:?}"))),
        };
        let s = Store {
            client,
            timeout,
            endpoints,
        };
        // Any read through the cluster: a quorum-less cluster or a dead
        // endpoint list fails here.
        // A member just killed or an election in progress answers
        // "leader changed" or "unavailable" for a moment: retry those
        // within the bound, fail on anything else.
        let deadline = std::time::Instant::now() + timeout;
        loop {
            match s.get(&format!("{ROOT}ping")).await {
                Ok(_) => return Ok(s),
                Err(e) if transient(&e) && std::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => return Err(unreachable(e.to_string())),
            }
        }
    }

    /// Run one etcd call under the bound.
    pub async fn call<T, F>(&self, what: &str, f: F) -> Result<T>
    where
        F: std::future::Future<Output = std::result::Result<T, etcd_client::Error>>,
    {
        match tokio::time::timeout(self.timeout, f).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(Error::other(format!("etcd {what}: {e}"))),
            Err(_) => Err(Error::other(format!(
                "etcd {what}: no answer from {} within {:?}",
                self.endpoints, self.timeout
            ))),
        }
    }

    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let mut c = self.client.clone();
        let r = self.call(&format!("get {key}"), c.get(key, None)).await?;
        Ok(r.kvs().first().map(|kv| kv.value().to_vec()))
    }

    /// A key's value and its modification revision (for a transaction
    /// that writes only if nobody else did meanwhile).
    pub async fn get_kv(&self, key: &str) -> Result<Option<(Vec<u8>, i64)>> {
        let mut c = self.client.clone();
        let r = self.call(&format!("get {key}"), c.get(key, None)).await?;
        Ok(r.kvs()
            .first()
            .map(|kv| (kv.value().to_vec(), kv.mod_revision())))
    }

    /// All keys under a prefix, with the revision they were read at.
    pub async fn list(&self, prefix: &str) -> Result<(Vec<(String, Vec<u8>)>, i64)> {
        let mut c = self.client.clone();
        let r = self
            .call(
                &format!("list {prefix}"),
                c.get(prefix, Some(GetOptions::new().with_prefix())),
            )
            .await?;
        let rev = r.header().map(|h| h.revision()).unwrap_or(0);
        Ok((
            r.kvs()
                .iter()
                .map(|kv| {
                    (
                        String::from_utf8_lossy(kv.key()).into_owned(),
                        kv.value().to_vec(),
                    )
                })
                .collect(),
            rev,
        ))
    }

    pub async fn delete(&self, key: &str) -> Result<()> {
        let mut c = self.client.clone();
        self.call(&format!("delete {key}"), c.delete(key, None))
            .await
            .map(|_| ())
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

/// A subnet as its text ("10.40.0.0/16"), as etcdctl users read it.
mod cidr {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(n: &ipnetwork::Ipv4Network, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&n.to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<ipnetwork::Ipv4Network, D::Error> {
        let t = String::deserialize(d)?;
        t.parse().map_err(serde::de::Error::custom)
    }
}
