//! One JSON-RPC session with `ovsdb-server` (RFC 7047).
//!
//! Replies are JSON values written back to back with no newline or length
//! prefix, so we frame them with serde_json's streaming decoder over a byte
//! buffer. While waiting for our reply the server may send its own requests
//! (`echo` keep-alives, which must be answered or it drops us) and `update`
//! notifications for monitors we set up; both are handled here so callers
//! only ever see replies to their own calls.
use crate::error::{Error, Result};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::time::Instant;

/// How long one reply may take. The server answers in microseconds; a stall
/// this long means it is wedged, and a CLI should not hang forever.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

/// How long ovs-vswitchd may take to apply a change (it reconfigures every
/// bridge, so give it room on a busy host).
pub const APPLY_TIMEOUT: Duration = Duration::from_secs(20);

/// Monitor id for the `cur_cfg` watch; one per connection.
const CFG_MONITOR: &str = "pipework-cur-cfg";

/// Splits a byte stream into JSON values.
#[derive(Default)]
pub struct Framer {
    buf: Vec<u8>,
}

impl Framer {
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete value, or `None` if the buffer holds only part of
    /// one. A syntax error is fatal: we cannot find the next frame boundary.
    pub fn next_value(&mut self) -> Result<Option<Value>> {
        let mut stream = serde_json::Deserializer::from_slice(&self.buf).into_iter::<Value>();
        match stream.next() {
            None => {
                // Only whitespace left.
                self.buf.clear();
                Ok(None)
            }
            Some(Ok(v)) => {
                let used = stream.byte_offset();
                // A bare number or literal is complete only once something
                // follows it: "12" at the end of the buffer may be "123" cut
                // by a read. Wait for more, so framing never depends on read
                // boundaries (found by the ovsdb_reply fuzz target). OVSDB
                // messages are objects; only a broken peer sends these.
                let delimited = matches!(v, Value::Object(_) | Value::Array(_) | Value::String(_));
                if used == self.buf.len() && !delimited {
                    return Ok(None);
                }
                self.buf.drain(..used);
                Ok(Some(v))
            }
            Some(Err(e)) if e.is_eof() => Ok(None),
            Some(Err(e)) => Err(Error::other(format!("OVSDB sent malformed JSON: {e}"))),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.buf.iter().all(u8::is_ascii_whitespace)
    }
}

/// One operation of a `transact` failed; RFC 7047 §4.1.3 reports errors per
/// operation inside an otherwise successful reply.
#[derive(Debug, Clone, PartialEq)]
pub struct OpError {
    /// Index of the failed operation; `None` when the commit itself failed
    /// (the server then appends one extra element after the operations).
    pub index: Option<usize>,
    /// The op name we sent (`insert`, `mutate`, ...), for the message.
    pub op: String,
    pub error: String,
    pub details: String,
}

impl std::fmt::Display for OpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.index {
            Some(i) => write!(
                f,
                "OVSDB refused operation {i} ({}): {}",
                self.op, self.error
            )?,
            None => write!(f, "OVSDB refused the transaction: {}", self.error)?,
        }
        if !self.details.is_empty() {
            write!(
                f,
                ": {}",
                self.details
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ")
            )?;
        }
        Ok(())
    }
}

/// Check a `transact` result against the operations we sent and return one
/// result object per operation.
pub fn check_transact(ops: &[Value], result: Value) -> std::result::Result<Vec<Value>, OpError> {
    let Value::Array(results) = result else {
        return Err(OpError {
            index: None,
            op: String::new(),
            error: "malformed reply".into(),
            details: format!("expected an array of results, got {result}"),
        });
    };
    for (i, r) in results.iter().enumerate() {
        let Some(err) = r.get("error").filter(|e| !e.is_null()) else {
            continue;
        };
        let within = i < ops.len();
        return Err(OpError {
            index: within.then_some(i),
            op: ops
                .get(i)
                .and_then(|o| o.get("op"))
                .and_then(Value::as_str)
                .unwrap_or("commit")
                .to_owned(),
            error: err.as_str().unwrap_or("error").to_owned(),
            details: r
                .get("details")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
        });
    }
    if results.len() < ops.len() {
        return Err(OpError {
            index: None,
            op: String::new(),
            error: "malformed reply".into(),
            details: format!("{} results for {} operations", results.len(), ops.len()),
        });
    }
    let mut results = results;
    results.truncate(ops.len());
    Ok(results)
}

pub struct Connection<S = UnixStream> {
    stream: S,
    framer: Framer,
    next_id: u64,
    /// For messages: which socket this is.
    socket: PathBuf,
    /// Latest `cur_cfg` seen through our monitor, once it is set up.
    cur_cfg: Option<i64>,
    /// Id of a `monitor` request sent but not yet answered: we pipeline it
    /// behind the first transaction that bumps `next_cfg`, saving a round
    /// trip before the wait.
    monitor_pending: Option<u64>,
    /// Replies that arrived while we waited for another one.
    stash: HashMap<u64, Value>,
}

impl Connection<UnixStream> {
    /// Connect to the server's unix socket. A missing or dead socket is the
    /// common failure (OVS not installed or not started), so say how to
    /// start it.
    pub async fn connect(path: &Path) -> Result<Self> {
        match UnixStream::connect(path).await {
            Ok(s) => Ok(Self::new(s, path)),
            Err(e) => Err(Error::other(format!(
                "cannot reach OVSDB at {}: {} (start Open vSwitch, e.g. `systemctl start openvswitch-switch`, or point --ovsdb / {} at its db.sock)",
                path.display(),
                short_io(&e),
                super::SOCKET_ENV,
            ))),
        }
    }
}

fn short_io(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such socket".into(),
        std::io::ErrorKind::ConnectionRefused => "connection refused (stale socket)".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied (run as root)".into(),
        _ => e.to_string(),
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Connection<S> {
    /// Wrap an already-connected stream (tests use a socketpair).
    pub fn new(stream: S, socket: &Path) -> Self {
        Connection {
            stream,
            framer: Framer::default(),
            next_id: 0,
            socket: socket.to_path_buf(),
            cur_cfg: None,
            monitor_pending: None,
            stash: HashMap::new(),
        }
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    async fn send(&mut self, msg: &Value) -> Result<()> {
        let bytes = serde_json::to_vec(msg).map_err(|e| Error::other(format!("OVSDB: {e}")))?;
        self.stream
            .write_all(&bytes)
            .await
            .map_err(|e| Error::io(format!("OVSDB {}", self.socket.display()), e))
    }

    /// Next message from the server, whatever it is.
    async fn recv(&mut self, deadline: Instant) -> Result<Value> {
        loop {
            if let Some(v) = self.framer.next_value()? {
                return Ok(v);
            }
            let mut chunk = [0u8; 16384];
            let n = tokio::time::timeout_at(deadline, self.stream.read(&mut chunk))
                .await
                .map_err(|_| {
                    Error::other(format!(
                        "OVSDB {} did not answer in time",
                        self.socket.display()
                    ))
                })?
                .map_err(|e| Error::io(format!("OVSDB {}", self.socket.display()), e))?;
            if n == 0 {
                return Err(Error::other(format!(
                    "OVSDB {} closed the connection",
                    self.socket.display()
                )));
            }
            self.framer.push(&chunk[..n]);
        }
    }

    /// Deal with a message that is not the reply we wait for. Returns
    /// whether it was a server request/notification (handled here).
    async fn handle_unsolicited(&mut self, msg: &Value) -> Result<bool> {
        let Some(method) = msg.get("method").and_then(Value::as_str) else {
            return Ok(false);
        };
        match method {
            // Keep-alive: the server closes connections that ignore it.
            "echo" => {
                let reply = json!({
                    "id": msg.get("id").cloned().unwrap_or(Value::Null),
                    "result": msg.get("params").cloned().unwrap_or(json!([])),
                    "error": null,
                });
                self.send(&reply).await?;
            }
            "update" => self.note_update(msg.get("params").unwrap_or(&Value::Null)),
            // Lock notifications and anything newer: not ours to act on.
            _ => {}
        }
        Ok(true)
    }

    /// Track `cur_cfg` from our monitor's update notifications.
    fn note_update(&mut self, params: &Value) {
        if params.get(0).and_then(Value::as_str) != Some(CFG_MONITOR) {
            return;
        }
        if let Some(cfg) = params.get(1).and_then(cur_cfg_in) {
            self.cur_cfg = Some(cfg);
        }
    }

    /// One JSON-RPC call: send, then read until our reply arrives.
    pub async fn call(&mut self, method: &str, params: Value) -> Result<Value> {
        let id = self.request(method, params).await?;
        self.reply(id, method).await
    }

    /// Send a request without waiting for its reply.
    async fn request(&mut self, method: &str, params: Value) -> Result<u64> {
        let id = self.next_id;
        self.next_id += 1;
        self.send(&json!({"method": method, "params": params, "id": id}))
            .await?;
        Ok(id)
    }

    /// Read until the reply to request `id` arrives; replies to other
    /// outstanding requests are kept for their own `reply` call.
    async fn reply(&mut self, id: u64, method: &str) -> Result<Value> {
        let deadline = Instant::now() + REPLY_TIMEOUT;
        let msg = loop {
            if let Some(m) = self.stash.remove(&id) {
                break m;
            }
            let msg = self.recv(deadline).await?;
            if self.handle_unsolicited(&msg).await? {
                continue;
            }
            match msg.get("id").and_then(Value::as_u64) {
                Some(got) if got == id => break msg,
                Some(other) if other < self.next_id => {
                    self.stash.insert(other, msg);
                }
                // Not an id we ever sent: nothing waits for it.
                _ => {}
            }
        };
        if let Some(err) = msg.get("error").filter(|e| !e.is_null()) {
            return Err(Error::other(format!("OVSDB {method} failed: {err}")));
        }
        Ok(msg.get("result").cloned().unwrap_or(Value::Null))
    }

    fn monitor_params() -> Value {
        json!([super::DATABASE, CFG_MONITOR, {"Open_vSwitch": {"columns": ["cur_cfg"]}}])
    }

    /// Run operations atomically on the Open_vSwitch database and check each
    /// operation's result. Returns one result object per operation.
    pub async fn transact(&mut self, ops: Vec<Value>) -> Result<Vec<Value>> {
        self.transact_detailed(ops)
            .await?
            .map_err(|e| Error::other(e.to_string()))
    }

    /// Like `transact`, but hands per-operation failures back unconverted so
    /// callers can turn, say, a duplicate name into a bad-input error.
    pub async fn transact_detailed(
        &mut self,
        ops: Vec<Value>,
    ) -> Result<std::result::Result<Vec<Value>, OpError>> {
        let mut params = vec![json!(super::DATABASE)];
        params.extend(ops.iter().cloned());
        let id = self.request("transact", Value::Array(params)).await?;
        // A change we will wait for: set up the cur_cfg monitor in the
        // same round trip.
        if bumps_next_cfg(&ops) && self.cur_cfg.is_none() && self.monitor_pending.is_none() {
            self.monitor_pending = Some(self.request("monitor", Self::monitor_params()).await?);
        }
        let result = self.reply(id, "transact").await?;
        Ok(check_transact(&ops, result))
    }

    /// Wait until ovs-vswitchd has applied configuration `next_cfg` (the
    /// value our transaction bumped `Open_vSwitch.next_cfg` to). vswitchd
    /// copies `next_cfg` to `cur_cfg` once the datapath matches the
    /// database, so before that an interface may not be attached yet.
    pub async fn wait_applied(&mut self, next_cfg: i64, timeout: Duration) -> Result<()> {
        let initial = match self.monitor_pending.take() {
            Some(id) => Some(self.reply(id, "monitor").await?),
            None if self.cur_cfg.is_none() => {
                Some(self.call("monitor", Self::monitor_params()).await?)
            }
            None => None,
        };
        if let Some(initial) = initial {
            // Updates handled while the reply sat in the stash are newer.
            let initial = cur_cfg_in(&initial).unwrap_or(0);
            self.cur_cfg = Some(self.cur_cfg.map_or(initial, |c| c.max(initial)));
        }
        let deadline = Instant::now() + timeout;
        while self.cur_cfg.unwrap_or(0) < next_cfg {
            let msg = match self.recv(deadline).await {
                Ok(msg) => msg,
                Err(_) if Instant::now() >= deadline => {
                    return Err(Error::other(format!(
                        "ovs-vswitchd did not apply the change within {} s (is ovs-vswitchd running?)",
                        timeout.as_secs_f32()
                    )));
                }
                Err(e) => return Err(e),
            };
            self.handle_unsolicited(&msg).await?;
        }
        Ok(())
    }
}

/// Whether a transaction increments `Open_vSwitch.next_cfg`.
fn bumps_next_cfg(ops: &[Value]) -> bool {
    ops.iter().any(|op| {
        op.get("table").and_then(Value::as_str) == Some("Open_vSwitch")
            && op
                .get("mutations")
                .and_then(Value::as_array)
                .is_some_and(|m| {
                    m.iter()
                        .any(|m| m.get(0).and_then(Value::as_str) == Some("next_cfg"))
                })
    })
}

/// `cur_cfg` out of a monitor table-updates object (initial reply or
/// `update` notification): `{"Open_vSwitch": {uuid: {"new": {...}}}}`.
fn cur_cfg_in(updates: &Value) -> Option<i64> {
    updates
        .get("Open_vSwitch")?
        .as_object()?
        .values()
        .find_map(|row| row.get("new")?.get("cur_cfg")?.as_i64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framer_splits_back_to_back_values_at_any_boundary() {
        let input = br#"{"id":1,"result":[]} {"id":null,"method":"update","params":["m",{}]}{"id":2,"result":{"a":"}{"}}"#;
        for cut in 0..input.len() {
            let mut f = Framer::default();
            let mut got = Vec::new();
            f.push(&input[..cut]);
            while let Some(v) = f.next_value().unwrap() {
                got.push(v);
            }
            f.push(&input[cut..]);
            while let Some(v) = f.next_value().unwrap() {
                got.push(v);
            }
            assert_eq!(got.len(), 3, "cut at {cut}");
            assert_eq!(got[2]["result"]["a"], "}{");
            assert!(f.is_empty());
        }
    }

    #[test]
    fn framer_waits_for_the_end_of_a_bare_number() {
        let mut f = Framer::default();
        f.push(b"12");
        assert!(f.next_value().unwrap().is_none());
        f.push(b"3 ");
        assert_eq!(f.next_value().unwrap(), Some(json!(123)));
    }

    #[test]
    fn framer_rejects_garbage() {
        let mut f = Framer::default();
        f.push(b"{\"id\":1}]");
        assert!(f.next_value().unwrap().is_some());
        assert!(f.next_value().is_err());
    }

    #[test]
    fn cur_cfg_from_monitor_shapes() {
        let v = json!({"Open_vSwitch": {"u": {"new": {"cur_cfg": 3}, "old": {"cur_cfg": 2}}}});
        assert_eq!(cur_cfg_in(&v), Some(3));
        assert_eq!(cur_cfg_in(&json!({})), None);
    }
}
