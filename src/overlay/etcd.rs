//! A small etcd v3 client over etcd's JSON gateway (`/v3/...`, served by
//! every etcd since 3.4 on its client port).
//!
//! Why not the gRPC crate: its build script needs `protoc`, which a fresh
//! machine does not have, and the gRPC stack (tonic, prost, h2, tower) made
//! the static binary 3 MB larger and the cold build minutes longer. The
//! overlay needs eight calls (range, put, delete, txn, lease grant /
//! time-to-live / keepalive, watch); each is one HTTP/1.1 POST of a JSON
//! body, over TCP or TLS (rustls, ring: no C toolchain beyond cc).
//!
//! One connection per request: a request can then go to any live member
//! (a dead one is skipped at connect time), and nothing here keeps state
//! that a member's restart could leave stale. On loopback or a LAN that
//! costs a TCP handshake (tens of microseconds), next to etcd's own fsync.
//!
//! The JSON mapping is protobuf's: bytes are base64, 64-bit integers are
//! strings, and fields holding their default value are left out.
use crate::error::{Error, Result};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// Keys per page when reading a prefix. etcd 3.4 walks the whole rest of
/// the range for every page (it collects every revision, then applies the
/// limit), so a read of n keys costs about n²/(2·PAGE): at 205k keys,
/// pages of 1,000 took 18 s through the gateway, pages of 5,000 10 s
/// (scripts/bench-overlay-scale.sh). 5,000 of our records are ~1.5 MB of
/// JSON, well under gRPC's 4 MB default for any other client.
const PAGE: usize = 5000;

/// One member's address, parsed from `http(s)://host:port`.
#[derive(Debug, Clone)]
struct Member {
    host: String,
    port: u16,
    tls: bool,
    shown: String,
}

fn parse_member(url: &str) -> Result<Member> {
    let (tls, rest) = match url.split_once("://") {
        Some(("http", r)) => (false, r),
        Some(("https", r)) => (true, r),
        Some((s, _)) => {
            return Err(Error::bad(
                url,
                format!("scheme {s}:// is not etcd's; use http:// or https://"),
            ));
        }
        None => (false, url),
    };
    let hostport = rest.split('/').next().unwrap_or(rest);
    // [v6]:port, host:port, or a bare host (etcd's port, 2379).
    let (host, port) = if let Some(r) = hostport.strip_prefix('[') {
        let (h, p) = r
            .split_once(']')
            .ok_or_else(|| Error::bad(url, "unclosed [ in an IPv6 address"))?;
        (h.to_string(), p.strip_prefix(':').unwrap_or(""))
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), p),
            None => (hostport.to_string(), ""),
        }
    };
    let port = if port.is_empty() {
        2379
    } else {
        port.parse()
            .map_err(|_| Error::bad(url, "the port is not a number"))?
    };
    if host.is_empty() {
        return Err(Error::bad(url, "no host; give e.g. http://10.0.0.1:2379"));
    }
    Ok(Member {
        host,
        port,
        tls,
        shown: url.to_string(),
    })
}

/// PEM files as etcdctl takes them (`--cacert`, `--cert`, `--key`).
#[derive(Debug, Clone, Default)]
pub struct TlsFiles {
    pub ca: Option<Vec<u8>>,
    pub identity: Option<(Vec<u8>, Vec<u8>)>,
}

fn tls_config(f: &TlsFiles) -> Result<Arc<rustls::ClientConfig>> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let bad =
        |what: &str, e: &dyn std::fmt::Display| Error::other(format!("etcd TLS: {what}: {e}"));
    let mut roots = rustls::RootCertStore::empty();
    // Without --cacert, the system's bundle (as etcdctl does).
    let system;
    let ca: &[u8] = match &f.ca {
        Some(c) => c,
        None => {
            system = std::fs::read("/etc/ssl/certs/ca-certificates.crt").unwrap_or_default();
            &system
        }
    };
    for c in CertificateDer::pem_slice_iter(ca) {
        let c = c.map_err(|e| bad("reading the CA bundle", &e))?;
        roots.add(c).map_err(|e| bad("a CA certificate", &e))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let b = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad("protocol versions", &e))?
        .with_root_certificates(roots);
    let cfg = match &f.identity {
        Some((cert, key)) => {
            let chain = CertificateDer::pem_slice_iter(cert)
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|e| bad("reading --cert", &e))?;
            let key = PrivateKeyDer::from_pem_slice(key).map_err(|e| bad("reading --key", &e))?;
            b.with_client_auth_cert(chain, key)
                .map_err(|e| bad("--cert/--key", &e))?
        }
        None => b.with_no_client_auth(),
    };
    Ok(Arc::new(cfg))
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// The cluster: its members, how to reach them, and which answered last.
pub struct Client {
    members: Vec<Member>,
    tls: Option<Arc<rustls::ClientConfig>>,
    connect_timeout: Duration,
    /// The member that answered last: tried first next time.
    last: AtomicUsize,
    /// Body bytes read from etcd (unary answers and watch streams), for
    /// the benchmark's "bytes read per change".
    read: Arc<AtomicU64>,
}

impl Client {
    pub fn new(urls: &[String], tls: Option<&TlsFiles>, connect_timeout: Duration) -> Result<Self> {
        let members = urls
            .iter()
            .map(|u| parse_member(u))
            .collect::<Result<Vec<_>>>()?;
        let needs_tls = members.iter().any(|m| m.tls);
        let tls = match tls {
            Some(f) => Some(tls_config(f)?),
            None if needs_tls => Some(tls_config(&TlsFiles::default())?),
            None => None,
        };
        // Start at a member picked by pid and clock: a thousand agents do
        // not all lean on the first member listed, and a member that is
        // cut off is not the first choice of every reconnect.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos() as usize)
            .unwrap_or(0);
        let start = (std::process::id() as usize ^ nanos) % members.len().max(1);
        Ok(Client {
            members,
            tls,
            connect_timeout,
            last: AtomicUsize::new(start),
            read: Arc::new(AtomicU64::new(0)),
        })
    }

    /// A connection to the first member that accepts one, starting with
    /// the one that answered last.
    async fn connect(&self) -> Result<(Box<dyn Io>, &Member)> {
        let n = self.members.len();
        let first = self.last.load(Ordering::Relaxed);
        let mut why = Vec::new();
        for i in 0..n {
            let at = (first + i) % n;
            let m = &self.members[at];
            match self.connect_one(m).await {
                Ok(s) => {
                    self.last.store(at, Ordering::Relaxed);
                    return Ok((s, m));
                }
                Err(e) => why.push(format!("{}: {e}", m.shown)),
            }
        }
        Err(Error::other(format!(
            "no member accepts connections ({})",
            why.join("; ")
        )))
    }

    async fn connect_one(&self, m: &Member) -> std::result::Result<Box<dyn Io>, String> {
        let addr = (m.host.as_str(), m.port);
        let tcp = match tokio::time::timeout(self.connect_timeout, TcpStream::connect(addr)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return Err(e.to_string()),
            Err(_) => return Err(format!("no answer in {:?}", self.connect_timeout)),
        };
        let _ = tcp.set_nodelay(true);
        if !m.tls {
            return Ok(Box::new(tcp));
        }
        let Some(cfg) = &self.tls else {
            return Err("https:// needs TLS settings".into());
        };
        let name = rustls::pki_types::ServerName::try_from(m.host.clone())
            .map_err(|e| format!("server name {}: {e}", m.host))?;
        let conn = tokio_rustls::TlsConnector::from(cfg.clone());
        match tokio::time::timeout(self.connect_timeout, conn.connect(name, tcp)).await {
            Ok(Ok(s)) => Ok(Box::new(s)),
            Ok(Err(e)) => Err(format!("TLS handshake: {e}")),
            Err(_) => Err(format!(
                "TLS handshake: no answer in {:?}",
                self.connect_timeout
            )),
        }
    }

    pub fn bytes_read(&self) -> u64 {
        self.read.load(Ordering::Relaxed)
    }

    /// Send one POST and return the response head and body reader.
    /// `extra` is more header lines ("Name: value\r\n" each).
    async fn post(&self, path: &str, body: &Value, extra: &str) -> Result<Body> {
        let (io, m) = self.connect().await?;
        self.send(io, m, path, body, extra).await
    }

    async fn send(
        &self,
        mut io: Box<dyn Io>,
        m: &Member,
        path: &str,
        body: &Value,
        extra: &str,
    ) -> Result<Body> {
        let body = body.to_string();
        let req = format!(
            "POST {path} HTTP/1.1\r\nHost: {}:{}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{extra}Connection: close\r\n\r\n{body}",
            m.host,
            m.port,
            body.len()
        );
        let io_err = |e: std::io::Error| Error::other(format!("{}: {e}", m.shown));
        io.write_all(req.as_bytes()).await.map_err(io_err)?;
        io.flush().await.map_err(io_err)?;
        let mut b = Body::read_head(io, m.shown.clone()).await?;
        self.read
            .fetch_add(b.pending.len() as u64, Ordering::Relaxed);
        b.count = Some(self.read.clone());
        Ok(b)
    }

    /// Whether member `shown` (a watch's) still answers a read: a watch
    /// stream through a member whose own path to the cluster was cut stays
    /// silent without an error, and this is how the agent notices. A
    /// serializable read of one absent key: no quorum round, a few bytes.
    pub async fn probe(&self, shown: &str) -> Result<()> {
        let m = self
            .members
            .iter()
            .find(|m| m.shown == shown)
            .ok_or_else(|| Error::other(format!("{shown}: not a member")))?;
        let io = self.connect_one(m).await.map_err(Error::other)?;
        let req = json!({ "key": B64.encode("/pipework/overlay/ping"), "serializable": true });
        let mut b = self.send(io, m, "/v3/kv/range", &req, "").await?;
        while b.next_data().await?.is_some() {}
        if b.status != 200 {
            return Err(Error::other(format!("{shown}: HTTP {}", b.status)));
        }
        Ok(())
    }

    /// How many members the client knows.
    pub fn members(&self) -> usize {
        self.members.len()
    }

    /// The member that answered last failed us: prefer the next one, so a
    /// member cut off from its cluster ("no leader", timeouts) is not asked
    /// again and again while the others could answer.
    pub fn move_on(&self) {
        if self.members.len() > 1 {
            self.last.fetch_add(1, Ordering::Relaxed);
            let n = self.last.load(Ordering::Relaxed) % self.members.len();
            self.last.store(n, Ordering::Relaxed);
        }
    }

    /// One unary call: a JSON request, a JSON answer (or etcd's error).
    async fn unary(&self, path: &str, body: Value) -> Result<Value> {
        let r = self.unary_once(path, body).await;
        if r.is_err() {
            self.move_on();
        }
        r
    }

    async fn unary_once(&self, path: &str, body: Value) -> Result<Value> {
        let mut b = self.post(path, &body, "").await?;
        let mut all = Vec::new();
        while let Some(chunk) = b.next_data().await? {
            all.extend_from_slice(&chunk);
        }
        let v: Value = serde_json::from_slice(&all).map_err(|e| {
            Error::other(format!(
                "{}: unreadable answer to {path} (HTTP {}: {}): {e}",
                b.shown,
                b.status,
                String::from_utf8_lossy(&all[..all.len().min(200)]).trim()
            ))
        })?;
        if b.status != 200 || v.get("error").is_some() {
            return Err(gateway_error(&v, b.status));
        }
        Ok(v)
    }

    /// One key, or every key under a prefix. A prefix is read in pages of
    /// `PAGE` keys, all at the revision of the first page: one snapshot,
    /// without one answer of many megabytes (20,000 endpoints are ~5 MB).
    pub async fn range(&self, key: &str, prefix: bool) -> Result<Range> {
        let mut kvs = Vec::new();
        let revision = self
            .range_paged(key, prefix, None, &mut |page| kvs.extend(page))
            .await?;
        Ok(Range { kvs, revision })
    }

    /// Every key under `prefix`, each page bounded by `per_page` on its own
    /// (a large cluster's list takes as many bounds as it has pages) and
    /// handed to `each` as it arrives, so the caller never holds the whole
    /// answer next to what it makes of it. Returns the revision read at.
    pub async fn range_each(
        &self,
        prefix: &str,
        per_page: Duration,
        each: &mut (dyn FnMut(Vec<Kv>) + Send),
    ) -> Result<i64> {
        self.range_paged(prefix, true, Some(per_page), each).await
    }

    async fn range_paged(
        &self,
        key: &str,
        prefix: bool,
        bound: Option<Duration>,
        each: &mut (dyn FnMut(Vec<Kv>) + Send),
    ) -> Result<i64> {
        let mut revision = 0;
        let end = prefix.then(|| B64.encode(prefix_end(key.as_bytes())));
        let mut from = key.as_bytes().to_vec();
        loop {
            let mut req = json!({ "key": B64.encode(&from) });
            if let Some(e) = &end {
                req["range_end"] = json!(e);
                req["limit"] = json!(PAGE.to_string());
            }
            if revision > 0 {
                req["revision"] = json!(revision.to_string());
            }
            let v = match bound {
                Some(b) => tokio::time::timeout(b, self.unary("/v3/kv/range", req))
                    .await
                    .map_err(|_| Error::other(format!("no answer within {b:?}")))??,
                None => self.unary("/v3/kv/range", req).await?,
            };
            if revision == 0 {
                revision = header_revision(&v);
            }
            let kvs: Vec<Kv> = v
                .get("kvs")
                .and_then(Value::as_array)
                .map(|a| a.iter().map(Kv::from_json).collect::<Result<_>>())
                .transpose()?
                .unwrap_or_default();
            let more = end.is_some() && v.get("more").and_then(Value::as_bool).unwrap_or(false);
            drop(v);
            let next = kvs.last().map(|kv| {
                // The smallest key after the last one read.
                let mut k = kv.key.clone();
                k.push(0);
                k
            });
            each(kvs);
            match next {
                Some(n) if more => from = n,
                _ => return Ok(revision),
            }
        }
    }

    pub async fn put(&self, key: &str, value: &[u8], lease: Option<i64>) -> Result<()> {
        self.unary("/v3/kv/put", put_json(key, value, lease))
            .await
            .map(|_| ())
    }

    /// A transaction; says whether its comparisons held.
    pub async fn txn(&self, t: Txn) -> Result<bool> {
        let v = self
            .unary(
                "/v3/kv/txn",
                json!({ "compare": t.compare, "success": t.success, "failure": t.failure }),
            )
            .await?;
        Ok(v.get("succeeded").and_then(Value::as_bool).unwrap_or(false))
    }

    pub async fn lease_grant(&self, ttl: i64) -> Result<i64> {
        let v = self
            .unary("/v3/lease/grant", json!({ "TTL": ttl.to_string() }))
            .await?;
        num(&v, "ID").ok_or_else(|| Error::other("etcd lease grant: no ID in the answer"))
    }

    /// Seconds left on a lease; -1 (or 0) when it is gone.
    pub async fn lease_ttl(&self, id: i64) -> Result<i64> {
        let v = self
            .unary("/v3/lease/timetolive", json!({ "ID": id.to_string() }))
            .await?;
        Ok(num(&v, "TTL").unwrap_or(-1))
    }

    /// One keepalive; the TTL the lease now has (0 when it lapsed).
    pub async fn lease_keepalive(&self, id: i64) -> Result<i64> {
        let v = self
            .unary("/v3/lease/keepalive", json!({ "ID": id.to_string() }))
            .await?;
        // The gateway wraps a stream's messages in {"result": ...}.
        let r = v.get("result").unwrap_or(&v);
        Ok(num(r, "TTL").unwrap_or(0))
    }

    /// Watch every key under `prefix` from revision `start`.
    pub async fn watch(&self, prefix: &str, start: i64) -> Result<Watch> {
        let req = json!({ "create_request": {
            "key": B64.encode(prefix),
            "range_end": B64.encode(prefix_end(prefix.as_bytes())),
            "start_revision": start.to_string(),
            // etcd sends an empty message with its revision when nothing
            // under the prefix changed for a while (10 min by default):
            // proof the stream is alive without re-reading anything.
            "progress_notify": true,
        }});
        // Require a leader (etcd's "hasleader" metadata, which the gateway
        // takes from Grpc-Metadata-* headers): a member cut off from its
        // cluster cancels the watch instead of keeping it silent, and the
        // agent resyncs through another member.
        let body = match self
            .post("/v3/watch", &req, "Grpc-Metadata-Hasleader: true\r\n")
            .await
        {
            Ok(b) => b,
            Err(e) => {
                self.move_on();
                return Err(e);
            }
        };
        if body.status != 200 {
            let mut body = body;
            let mut all = Vec::new();
            while let Some(c) = body.next_data().await? {
                all.extend_from_slice(&c);
            }
            let v: Value = serde_json::from_slice(&all).unwrap_or(Value::Null);
            return Err(gateway_error(&v, body.status));
        }
        Ok(Watch {
            member: body.shown.clone(),
            body,
            buf: Vec::new(),
        })
    }
}

/// etcd's error as it words it ("etcdserver: leader changed"), so callers
/// can tell a retryable election from a real refusal.
fn gateway_error(v: &Value, status: u16) -> Error {
    // grpc-gateway writes {"error": "...", "message": "...", "code": N};
    // a stream's error comes as {"error": {"message": ...}}.
    let text = |v: &Value| v.get("message").and_then(Value::as_str).map(String::from);
    let msg = text(v)
        .or_else(|| v.get("error").and_then(text))
        .or_else(|| v.get("error").and_then(Value::as_str).map(String::from))
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| format!("HTTP {status}"));
    Error::other(msg)
}

/// The first key after every key starting with `p` (etcd's range_end).
fn prefix_end(p: &[u8]) -> Vec<u8> {
    let mut e = p.to_vec();
    while let Some(last) = e.pop() {
        if last < 0xff {
            e.push(last + 1);
            return e;
        }
    }
    vec![0]
}

fn put_json(key: &str, value: &[u8], lease: Option<i64>) -> Value {
    let mut p = json!({ "key": B64.encode(key), "value": B64.encode(value) });
    if let Some(l) = lease {
        p["lease"] = json!(l.to_string());
    }
    p
}

/// A 64-bit field: protobuf's JSON writes them as strings.
fn num(v: &Value, field: &str) -> Option<i64> {
    match v.get(field)? {
        Value::String(s) => s.parse().ok(),
        Value::Number(n) => n.as_i64(),
        _ => None,
    }
}

fn header_revision(v: &Value) -> i64 {
    v.get("header")
        .and_then(|h| num(h, "revision"))
        .unwrap_or(0)
}

fn bytes(v: &Value, field: &str) -> Result<Vec<u8>> {
    match v.get(field).and_then(Value::as_str) {
        Some(s) => B64
            .decode(s)
            .map_err(|e| Error::other(format!("etcd: bad base64 in {field}: {e}"))),
        None => Ok(Vec::new()),
    }
}

/// A key and its value, as etcd returns them.
#[derive(Debug, Clone)]
pub struct Kv {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    pub mod_revision: i64,
}

impl Kv {
    fn from_json(v: &Value) -> Result<Kv> {
        Ok(Kv {
            key: bytes(v, "key")?,
            value: bytes(v, "value")?,
            mod_revision: num(v, "mod_revision").unwrap_or(0),
        })
    }
}

pub struct Range {
    pub kvs: Vec<Kv>,
    /// The store's revision when it was read.
    pub revision: i64,
}

#[derive(Debug, Clone, Copy)]
pub enum CompareOp {
    Equal,
    Greater,
}

/// What a transaction checks before it writes.
pub struct Compare(Value);

impl Compare {
    fn rev(key: &str, target: &str, op: CompareOp, rev: i64) -> Compare {
        let result = match op {
            CompareOp::Equal => "EQUAL",
            CompareOp::Greater => "GREATER",
        };
        let field = match target {
            "CREATE" => "create_revision",
            _ => "mod_revision",
        };
        Compare(json!({
            "key": B64.encode(key),
            "target": target,
            "result": result,
            field: rev.to_string(),
        }))
    }
    pub fn create_revision(key: &str, op: CompareOp, rev: i64) -> Compare {
        Self::rev(key, "CREATE", op, rev)
    }
    pub fn mod_revision(key: &str, op: CompareOp, rev: i64) -> Compare {
        Self::rev(key, "MOD", op, rev)
    }
    /// Compare every key under the key as a prefix (an empty range
    /// compares as one absent key: create_revision 0).
    pub fn with_prefix(mut self) -> Compare {
        let key = bytes(&self.0, "key").unwrap_or_default();
        self.0["range_end"] = json!(B64.encode(prefix_end(&key)));
        self
    }
}

/// One operation of a transaction's branch.
pub struct TxnOp(Value);

impl TxnOp {
    pub fn put(key: &str, value: &[u8], lease: Option<i64>) -> TxnOp {
        TxnOp(json!({ "request_put": put_json(key, value, lease) }))
    }
    pub fn get(key: &str) -> TxnOp {
        TxnOp(json!({ "request_range": { "key": B64.encode(key) } }))
    }
    pub fn delete(key: &str) -> TxnOp {
        TxnOp(json!({ "request_delete_range": { "key": B64.encode(key) } }))
    }
    /// Delete every key under `prefix`.
    pub fn delete_prefix(prefix: &str) -> TxnOp {
        TxnOp(json!({ "request_delete_range": {
            "key": B64.encode(prefix),
            "range_end": B64.encode(prefix_end(prefix.as_bytes())),
        } }))
    }
}

#[derive(Default)]
pub struct Txn {
    compare: Vec<Value>,
    success: Vec<Value>,
    failure: Vec<Value>,
}

impl Txn {
    pub fn new() -> Txn {
        Txn::default()
    }
    pub fn when(mut self, c: Vec<Compare>) -> Txn {
        self.compare = c.into_iter().map(|c| c.0).collect();
        self
    }
    pub fn and_then(mut self, ops: Vec<TxnOp>) -> Txn {
        self.success = ops.into_iter().map(|o| o.0).collect();
        self
    }
    pub fn or_else(mut self, ops: Vec<TxnOp>) -> Txn {
        self.failure = ops.into_iter().map(|o| o.0).collect();
        self
    }
    /// The compares and the success branch, for tests of what is built.
    #[cfg(test)]
    pub fn parts(&self) -> (&[Value], &[Value]) {
        (&self.compare, &self.success)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Put,
    Delete,
}

#[derive(Debug)]
pub struct Event {
    pub kind: EventType,
    pub kv: Kv,
}

/// One message of a watch stream.
#[derive(Debug, Default)]
pub struct WatchMsg {
    pub events: Vec<Event>,
    /// Non-zero: the start revision was compacted away.
    pub compact_revision: i64,
    /// The store's revision when the message was sent (a progress
    /// notification carries only this).
    pub revision: i64,
    /// The watch's first message (its header revision says nothing about
    /// which events were delivered).
    pub created: bool,
    pub canceled: bool,
}

/// A running watch: messages as the gateway streams them.
pub struct Watch {
    body: Body,
    buf: Vec<u8>,
    /// The member it streams from.
    pub member: String,
}

impl Watch {
    /// The next message; None when the server closed the stream.
    pub async fn message(&mut self) -> Result<Option<WatchMsg>> {
        loop {
            // The gateway writes one JSON object per message; take the
            // first complete one off the buffer.
            let mut it = serde_json::Deserializer::from_slice(&self.buf).into_iter::<Value>();
            match it.next() {
                Some(Ok(v)) => {
                    let used = it.byte_offset();
                    self.buf.drain(..used);
                    return parse_watch(&v).map(Some);
                }
                Some(Err(e)) if !e.is_eof() => {
                    return Err(Error::other(format!("etcd watch: unreadable message: {e}")));
                }
                _ => {}
            }
            match self.body.next_data().await? {
                Some(c) => self.buf.extend_from_slice(&c),
                None => return Ok(None),
            }
        }
    }
}

fn parse_watch(v: &Value) -> Result<WatchMsg> {
    if v.get("error").is_some() {
        return Err(gateway_error(v, 200));
    }
    let r = v.get("result").unwrap_or(v);
    let mut m = WatchMsg {
        compact_revision: num(r, "compact_revision").unwrap_or(0),
        revision: header_revision(r),
        created: r.get("created").and_then(Value::as_bool).unwrap_or(false),
        canceled: r.get("canceled").and_then(Value::as_bool).unwrap_or(false),
        events: Vec::new(),
    };
    for e in r
        .get("events")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let kind = match e.get("type").and_then(Value::as_str) {
            Some("DELETE") => EventType::Delete,
            _ => EventType::Put,
        };
        let kv = Kv::from_json(e.get("kv").unwrap_or(&Value::Null))?;
        m.events.push(Event { kind, kv });
    }
    Ok(m)
}

/// An HTTP/1.1 response body being read: by length, chunked, or to EOF.
struct Body {
    io: Box<dyn Io>,
    status: u16,
    shown: String,
    /// Bytes read past what has been handed out.
    pending: Vec<u8>,
    mode: Framing,
    /// Where to add the bytes read.
    count: Option<Arc<AtomicU64>>,
}

enum Framing {
    Length(usize),
    Chunked,
    ToEof,
    Done,
}

impl Body {
    async fn read_head(mut io: Box<dyn Io>, shown: String) -> Result<Body> {
        let mut buf = Vec::with_capacity(4096);
        let end = loop {
            if let Some(i) = find(&buf, b"\r\n\r\n") {
                break i;
            }
            if buf.len() > 64 * 1024 {
                return Err(Error::other(format!("{shown}: HTTP head too long")));
            }
            let mut tmp = [0u8; 4096];
            let n = io
                .read(&mut tmp)
                .await
                .map_err(|e| Error::other(format!("{shown}: {e}")))?;
            if n == 0 {
                return Err(Error::other(format!("{shown}: closed before answering")));
            }
            buf.extend_from_slice(&tmp[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        let pending = buf[end + 4..].to_vec();
        let mut lines = head.split("\r\n");
        let status = lines
            .next()
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| Error::other(format!("{shown}: not an HTTP answer")))?;
        let mut mode = Framing::ToEof;
        for l in lines {
            let Some((k, v)) = l.split_once(':') else {
                continue;
            };
            let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
            if k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked") {
                mode = Framing::Chunked;
            } else if k == "content-length"
                && !matches!(mode, Framing::Chunked)
                && let Ok(n) = v.parse()
            {
                mode = Framing::Length(n);
            }
        }
        Ok(Body {
            io,
            status,
            shown,
            pending,
            mode,
            count: None,
        })
    }

    async fn fill(&mut self) -> Result<bool> {
        let mut tmp = [0u8; 16 * 1024];
        let n = self
            .io
            .read(&mut tmp)
            .await
            .map_err(|e| Error::other(format!("{}: {e}", self.shown)))?;
        self.pending.extend_from_slice(&tmp[..n]);
        if let Some(c) = &self.count {
            c.fetch_add(n as u64, Ordering::Relaxed);
        }
        Ok(n > 0)
    }

    /// The next piece of the body; None at its end.
    async fn next_data(&mut self) -> Result<Option<Vec<u8>>> {
        loop {
            match self.mode {
                Framing::Done => return Ok(None),
                Framing::Length(0) => {
                    self.mode = Framing::Done;
                    return Ok(None);
                }
                Framing::Length(left) => {
                    if self.pending.is_empty() && !self.fill().await? {
                        return Err(Error::other(format!("{}: answer cut short", self.shown)));
                    }
                    let take = left.min(self.pending.len());
                    let out: Vec<u8> = self.pending.drain(..take).collect();
                    self.mode = Framing::Length(left - take);
                    return Ok(Some(out));
                }
                Framing::ToEof => {
                    if !self.pending.is_empty() {
                        return Ok(Some(std::mem::take(&mut self.pending)));
                    }
                    if !self.fill().await? {
                        self.mode = Framing::Done;
                    }
                }
                Framing::Chunked => {
                    // size line, data, CRLF
                    let Some(eol) = find(&self.pending, b"\r\n") else {
                        if !self.fill().await? {
                            return Err(Error::other(format!("{}: stream cut short", self.shown)));
                        }
                        continue;
                    };
                    let line = String::from_utf8_lossy(&self.pending[..eol]).into_owned();
                    let size =
                        usize::from_str_radix(line.split(';').next().unwrap_or("").trim(), 16)
                            .map_err(|_| Error::other(format!("{}: bad chunk size", self.shown)))?;
                    if size == 0 {
                        self.mode = Framing::Done;
                        return Ok(None);
                    }
                    while self.pending.len() < eol + 2 + size + 2 {
                        if !self.fill().await? {
                            return Err(Error::other(format!("{}: stream cut short", self.shown)));
                        }
                    }
                    let out = self.pending[eol + 2..eol + 2 + size].to_vec();
                    self.pending.drain(..eol + 2 + size + 2);
                    return Ok(Some(out));
                }
            }
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_is_the_next_key() {
        assert_eq!(prefix_end(b"/a/"), b"/a0".to_vec());
        assert_eq!(prefix_end(b"a\xff"), b"b".to_vec());
        assert_eq!(prefix_end(b"\xff"), vec![0]);
    }

    #[test]
    fn members_parse_as_etcdctl_takes_them() {
        let m = parse_member("https://[fd00::1]:2380").unwrap();
        assert_eq!((m.host.as_str(), m.port, m.tls), ("fd00::1", 2380, true));
        let m = parse_member("10.0.0.1").unwrap();
        assert_eq!((m.host.as_str(), m.port, m.tls), ("10.0.0.1", 2379, false));
        assert!(parse_member("unix://x").is_err());
        assert!(parse_member("http://h:port").is_err());
    }

    #[test]
    fn watch_messages_decode_puts_deletes_and_compaction() {
        let v: Value = serde_json::from_str(
            r#"{"result":{"header":{"revision":"9"},"events":[
                {"kv":{"key":"L2E=","value":"eA==","mod_revision":"9"}},
                {"type":"DELETE","kv":{"key":"L2I="}}]}}"#,
        )
        .unwrap();
        let m = parse_watch(&v).unwrap();
        assert_eq!(m.events.len(), 2);
        assert_eq!(m.events[0].kind, EventType::Put);
        assert_eq!(m.events[0].kv.key, b"/a");
        assert_eq!(m.events[0].kv.value, b"x");
        assert_eq!(m.events[1].kind, EventType::Delete);
        let v: Value =
            serde_json::from_str(r#"{"result":{"compact_revision":"5","canceled":true}}"#).unwrap();
        let m = parse_watch(&v).unwrap();
        assert_eq!((m.compact_revision, m.canceled), (5, true));
    }
}
