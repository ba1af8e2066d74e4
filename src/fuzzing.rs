//! Fuzz harnesses, one per target in `fuzz/fuzz_targets/`.
//!
//! They live in the library, not in the fuzz crate, so that
//! `tests/fuzz_seeds.rs` pushes every seed through exactly the code the
//! fuzzer runs, on stable Rust and without cargo-fuzz. Each harness takes
//! raw bytes, must never panic on them (a panic is a bug in the code under
//! test, or an invariant below that does not hold), and returns a short
//! verdict: `Ok(what it parsed to)` or `Err(the error it reported)`, which
//! the seed test checks against the seed's name (`ok-*` / `err-*`).
//!
//! Nothing here touches the kernel, runs a program or writes a file. The
//! only I/O is the classic grammar's read of `/sys/class/net/HOST/type` to
//! pick the default interface name (see `driver::ipoib::default_ifname`).
use crate::cli::{Cli, Cmd};
use crate::cni::env::{Command, Env};
use crate::cni::error::{CniError, code};
use crate::cni::types::{AddResult, SUPPORTED_VERSIONS};
use crate::ovsdb::connection::{Framer, check_transact};
use crate::ovsdb::{Connection, ops, value};
use crate::request::{Addressing, AttachRequest, HostMode, check_ifname};
use serde_json::{Value, json};
use std::cell::RefCell;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

/// The verdict of one input.
pub type Verdict = std::result::Result<String, String>;

// ---------------------------------------------------------------------------
// dhcp_reply

/// DHCP reply handling: the bytes as an Ethernet frame, as an IPv4 packet
/// and as a bare DHCP payload, through frame parsing, option sanitizing,
/// decoding, classification and lease interpretation.
pub fn dhcp_reply(data: &[u8]) -> Verdict {
    use crate::dhcp::socket::{parse_frame, parse_ipv4};
    let mut seen = Vec::new();
    if let Some(u) = parse_frame(data) {
        assert!(u.payload.len() <= data.len());
        seen.extend(dhcp_payload(u.payload));
    }
    if let Some(u) = parse_ipv4(data) {
        assert!(u.payload.len() <= data.len());
        seen.extend(dhcp_payload(u.payload));
    }
    seen.extend(dhcp_payload(data));
    match seen.first() {
        Some(kind) => Ok(kind.to_string()),
        None => Err("ignored".into()),
    }
}

fn dhcp_payload(payload: &[u8]) -> Option<&'static str> {
    use crate::dhcp::client::{Reply, classify};
    // Take xid and chaddr from the input itself so the fuzzer gets past
    // the "is this for us" checks and into option handling.
    let xid = payload
        .get(4..8)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        .unwrap_or(0);
    let mut mac = [0u8; 6];
    if let Some(m) = payload.get(28..34) {
        mac.copy_from_slice(m);
    }
    let reply = classify(payload, xid, &mac);
    // Any other xid must never be accepted.
    assert!(classify(payload, xid.wrapping_add(1), &mac).is_none());
    match reply? {
        Reply::Ack(lease) => {
            assert!(lease.prefix <= 32);
            assert!(lease.t1 <= lease.t2 && lease.t2 <= lease.lease_time);
            let _ = lease.effective_routes();
            assert!(!format!("{lease:?}").is_empty());
            Some("ack")
        }
        Reply::Offer { .. } => Some("offer"),
        Reply::Nak { .. } => Some("nak"),
    }
}

// ---------------------------------------------------------------------------
// cli_argv

/// Bytes to argv: split on NUL when there is one (so arguments may hold
/// spaces, as `dhcp:OPTS` does), else on whitespace (so seeds read like
/// command lines); lossy UTF-8, since the binary reads its arguments with
/// `std::env::args`, which only ever yields valid strings.
pub fn argv_from_bytes(data: &[u8]) -> Vec<String> {
    let words: Vec<&[u8]> = if data.contains(&0) {
        data.split(|b| *b == 0).collect()
    } else {
        data.split(u8::is_ascii_whitespace)
            .filter(|w| !w.is_empty())
            .collect()
    };
    std::iter::once("pipework".to_string())
        .chain(
            words
                .iter()
                .map(|w| String::from_utf8_lossy(w).into_owned()),
        )
        .collect()
}

/// The command line: classic rewrite, clap, then the checks `main` runs
/// before touching anything (`to_request` for attach, the timeout and
/// interface name for wait).
pub fn cli_argv(data: &[u8]) -> Verdict {
    let cli: Cli = match crate::cli::parse_args(argv_from_bytes(data)) {
        Ok(c) => c,
        // Help and version: printed, exit status 0.
        Err(e) if !e.use_stderr() => return Ok("help".into()),
        Err(e) => {
            // `main` prints the first line of clap's rendering.
            let text = e.render().to_string();
            let first = text.lines().next().unwrap_or_default();
            assert!(!first.is_empty(), "clap error without text");
            return Err(first.trim_start_matches("error: ").to_string());
        }
    };
    match cli.cmd {
        Cmd::Attach(a) => {
            let req = crate::cli::to_request(&a).map_err(|e| e.to_string())?;
            check_request(&req);
            Ok(format!("attach {:?}", req.addressing))
        }
        Cmd::Wait(w) => {
            // As `cli::run` does before waiting.
            if let Some(t) = w.timeout {
                crate::wait::parse_timeout(&t.to_string()).map_err(|e| e.to_string())?;
            }
            check_ifname(&w.ifname).map_err(|e| e.to_string())?;
            Ok("wait".into())
        }
        other => Ok(format!("{other:?}")
            .split(['(', ' ', '{'])
            .next()
            .unwrap_or_default()
            .to_lowercase()),
    }
}

/// What every accepted attach request must satisfy before drivers see it.
fn check_request(r: &AttachRequest) {
    assert!(check_ifname(&r.ifname).is_ok(), "{:?}", r.ifname);
    if let Some(l) = &r.host_ifname {
        assert!(check_ifname(l).is_ok(), "{l:?}");
    }
    if let Some(m) = r.mtu {
        assert!((68..=65535).contains(&m));
    }
    if let Some(v) = r.vlan {
        assert!((1..=4094).contains(&v));
    }
    if let Some(mac) = r.mac {
        assert_eq!(mac[0] & 1, 0, "multicast MAC accepted");
        assert_ne!(mac, [0; 6]);
    }
    assert!(r.dhcp_timeout > std::time::Duration::ZERO);
    assert!(r.dhcp_timeout <= std::time::Duration::from_secs(3600));
    if let Addressing::Static { addrs, gateways } = &r.addressing {
        assert!(!addrs.is_empty());
        for (i, g) in gateways.iter().enumerate() {
            // One gateway per family, of a family we have an address in,
            // and never one of our own addresses.
            assert!(gateways[..i].iter().all(|o| o.is_ipv4() != g.is_ipv4()));
            assert!(addrs.iter().any(|a| a.is_ipv4() == g.is_ipv4()));
            assert!(addrs.iter().all(|a| a.ip() != *g));
        }
        for a in addrs {
            assert!(!a.ip().is_unspecified() && !a.ip().is_multicast() && !a.ip().is_loopback());
        }
    }
    match &r.mode {
        HostMode::Macvlan(m) => assert!(["bridge", "private", "vepa", "passthru"].contains(&&**m)),
        HostMode::Ipvlan(m) => assert!(["l2", "l3", "l3s"].contains(&&**m)),
        HostMode::Auto | HostMode::DirectPhys => {}
    }
}

// ---------------------------------------------------------------------------
// cni_config

/// The CNI network configuration on stdin. The bytes up to the first NUL
/// are stdin; what follows, if anything, is `CNI_ARGS` (so the fuzzer also
/// reaches `IP=`, `GATEWAY=` and `MAC=`). Runs what every verb does before
/// the kernel: decode, version gate, validation, mode, MAC, IPAM selection,
/// the in-process static IPAM result in every result version, prevResult,
/// and the VERSION verb itself.
pub fn cni_config(data: &[u8]) -> Verdict {
    let (stdin, cni_args) = match data.iter().position(|b| *b == 0) {
        Some(i) => (
            &data[..i],
            String::from_utf8_lossy(&data[i + 1..]).into_owned(),
        ),
        None => (data, "IgnoreUnknown=1".to_string()),
    };
    let lookup = |command: &'static str| {
        let args = cni_args.clone();
        move |k: &str| match k {
            "CNI_COMMAND" => Some(command.to_string()),
            "CNI_CONTAINERID" => Some("fuzz0".to_string()),
            "CNI_NETNS" => Some("/var/run/netns/pipework-fuzz".to_string()),
            "CNI_IFNAME" => Some("eth0".to_string()),
            "CNI_ARGS" => Some(args.clone()),
            // Empty: a delegated IPAM is then "not found" without any
            // file system lookup.
            _ => None,
        }
    };
    // VERSION never touches the kernel: run the real verb.
    match Env::from_lookup(lookup("VERSION")) {
        Ok(env) => match crate::cni::verbs::dispatch(&env, stdin) {
            Ok(out) => {
                let v: Value = serde_json::from_str(out.as_deref().unwrap_or_default())
                    .unwrap_or_else(|e| panic!("VERSION wrote bad JSON: {e}"));
                assert!(v["supportedVersions"].is_array());
            }
            Err(e) => check_cni_error(&e),
        },
        Err(e) => check_cni_error(&e),
    }
    let env = Env::from_lookup(lookup("ADD")).map_err(cni_err)?;
    // The version gate differs per verb; only ADD's outcome is the verdict.
    for command in [Command::Del, Command::Check, Command::Status, Command::Gc] {
        let other = Env {
            command,
            ..env.clone()
        };
        if let Err(e) = crate::cni::verbs::checked_conf(&other, stdin) {
            check_cni_error(&e);
        }
    }
    let (conf, mode) = crate::cni::verbs::checked_conf(&env, stdin).map_err(cni_err)?;
    assert!(SUPPORTED_VERSIONS.contains(&conf.cni_version.as_str()));
    crate::cni::attach::host_and_mode(&conf, mode).map_err(cni_err)?;
    if let Some(m) = conf.wanted_mac(env.arg("MAC")) {
        crate::request::parse_mac(&m).map_err(|e| format!("mac: {e}"))?;
    }
    if let Some(prev) = conf.prev_result.as_ref().filter(|v| !v.is_null()) {
        let prev = AddResult::from_value(prev).map_err(cni_err)?;
        result_round_trip(&prev);
    }
    use crate::cni::ipam::Ipam;
    let ipam = match Ipam::from_conf(&conf, &env) {
        Ok(i) => i,
        // A delegated plugin not on (our empty) CNI_PATH: the config
        // itself was fine.
        Err(e) if e.code == code::NOT_AVAILABLE => {
            return Ok(format!("{} delegated ipam", mode.name()));
        }
        Err(e) => return Err(cni_err(e)),
    };
    if ipam.is_delegated() {
        return Ok(format!("{} delegated ipam", mode.name()));
    }
    let result = ipam.add(&conf, &env, stdin).map_err(cni_err)?;
    result_round_trip(&result);
    Ok(format!("{} {} ips", mode.name(), result.ips.len()))
}

fn cni_err(e: CniError) -> String {
    check_cni_error(&e);
    e.to_string()
}

/// Every error must become a well-formed CNI error object.
fn check_cni_error(e: &CniError) {
    for v in SUPPORTED_VERSIONS {
        let j: Value = serde_json::from_str(&e.to_json(v))
            .unwrap_or_else(|err| panic!("error JSON does not parse: {err}"));
        assert_eq!(j["code"], e.code);
    }
}

/// A result written in any version reads back with the same addresses.
fn result_round_trip(r: &AddResult) {
    for v in SUPPORTED_VERSIONS {
        let text = r.to_json(v);
        let back = serde_json::from_str(&text)
            .map_err(|e| CniError::new(code::DECODING_FAILURE, "", e.to_string()))
            .and_then(|j| AddResult::from_value(&j))
            .unwrap_or_else(|e| panic!("{v} result does not read back: {e}: {text}"));
        assert_eq!(back.ips, r.ips, "{v}");
        assert_eq!(back.dns, r.dns, "{v}");
        assert_eq!(back.routes.len(), r.routes.len(), "{v}");
    }
}

// ---------------------------------------------------------------------------
// ovsdb_reply

/// What the client does against the fuzzed server, picked by the low three
/// bits of the first byte (the seeds use '0'..'7').
const OVSDB_SCENARIOS: [&str; 8] = [
    "find_bridge",
    "list_ports",
    "find_port",
    "create_bridge",
    "add_port",
    "delete_bridge",
    "delete_port",
    "call+wait",
];

/// OVSDB JSON-RPC replies. The first byte picks a scenario (low 3 bits) and
/// how the rest is cut into reads (high 5 bits seed the chunk sizes); the
/// rest is everything the server sends, back to back. Checks that framing
/// does not depend on where reads end, runs the reply helpers on every
/// decoded message, then drives a real `Connection` through one of the
/// typed operations with the bytes as the server's side of the socket.
pub fn ovsdb_reply(data: &[u8]) -> Verdict {
    let Some((&ctl, stream)) = data.split_first() else {
        return Err("empty".into());
    };
    let chunks = chunk_sizes(ctl, stream.len());
    let whole = frame_all(stream, &[stream.len()]);
    let cut = frame_all(stream, &chunks);
    // Reads that end mid-value must not change what is decoded.
    assert_eq!(whole, cut, "framing depends on read boundaries");
    if let Ok(msgs) = &whole {
        for m in msgs {
            inspect_message(m);
        }
    }
    let scenario = usize::from(ctl & 7);
    let written = Rc::new(RefCell::new(Vec::new()));
    let server = FakeServer {
        data: stream.to_vec(),
        pos: 0,
        chunks,
        next_chunk: 0,
        written: written.clone(),
    };
    let outcome = RUNTIME.with(|rt| rt.block_on(run_scenario(scenario, server)));
    // Everything the client wrote (requests, echo answers) must be a
    // stream of JSON-RPC objects the server could parse.
    let mut f = Framer::default();
    f.push(&written.borrow());
    while let Some(v) = f
        .next_value()
        .unwrap_or_else(|e| panic!("client wrote bad JSON: {e}"))
    {
        assert!(v.get("id").is_some(), "client message without id: {v}");
    }
    outcome
        .map(|s| format!("{}: {s}", OVSDB_SCENARIOS[scenario]))
        .map_err(|e| format!("{}: {e}", OVSDB_SCENARIOS[scenario]))
}

thread_local! {
    /// One runtime per thread: building one per input would dominate the
    /// fuzzer's time. Time is enabled because `Connection` reads under a
    /// deadline (the fake server never makes it wait).
    static RUNTIME: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap_or_else(|e| panic!("cannot start a tokio runtime for the harness: {e}"));
}

/// Read sizes from a small xorshift generator, so one input byte gives the
/// fuzzer many different cut patterns (1 byte at a time up to 249).
fn chunk_sizes(ctl: u8, len: usize) -> Vec<usize> {
    let max = 1 + usize::from(ctl >> 3) * 8;
    let mut x = u32::from(ctl) | 0x9e37_0000;
    let mut out = Vec::new();
    let mut total = 0;
    while total < len {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        let n = 1 + (x as usize) % max;
        out.push(n);
        total += n;
    }
    out
}

/// Push `stream` into a framer in reads of `chunks` sizes, taking values
/// out after each read as `Connection::recv` does. A decoding error ends
/// the stream (the connection is dropped); the values before it count.
fn frame_all(stream: &[u8], chunks: &[usize]) -> Result<Vec<Value>, Vec<Value>> {
    let mut f = Framer::default();
    let mut out = Vec::new();
    let mut pos = 0;
    for &n in chunks {
        let end = (pos + n).min(stream.len());
        f.push(&stream[pos..end]);
        pos = end;
        loop {
            match f.next_value() {
                Ok(Some(v)) => out.push(v),
                Ok(None) => break,
                Err(_) => return Err(out),
            }
        }
    }
    Ok(out)
}

/// The pure reply helpers on one decoded message: transaction results
/// against operation lists of every length the client sends, and the
/// value-notation readers on whatever rows it holds.
fn inspect_message(m: &Value) {
    let Some(result) = m.get("result") else {
        return;
    };
    for n in 1..=6 {
        let ops: Vec<Value> = (0..n).map(|i| json!({"op": format!("op{i}")})).collect();
        match check_transact(&ops, result.clone()) {
            Ok(res) => assert_eq!(res.len(), n),
            Err(e) => {
                if let Some(i) = e.index {
                    assert!(i < n);
                }
                assert!(!e.to_string().is_empty());
            }
        }
    }
    let results = result.as_array().map(Vec::as_slice).unwrap_or_default();
    for r in results {
        for row in r
            .get("rows")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            for col in row.as_object().into_iter().flat_map(|o| o.values()) {
                let items = value::set_items(col);
                let _ = value::uuids(col);
                assert!(value::ints(col).len() <= items.len());
                let _ = (value::opt_int(col), value::opt_str(col));
                let _ = value::uuid_of(col);
                let _ = value::string_map(col);
            }
        }
    }
    if let [b, p, i, ..] = results {
        // At most one record per port row, whatever the other tables say.
        let port_rows = p.get("rows").and_then(Value::as_array).map_or(0, Vec::len);
        assert!(ops::join_ports(b, p, i).len() <= port_rows);
    }
}

async fn run_scenario(scenario: usize, server: FakeServer) -> crate::Result<String> {
    let mut conn = Connection::new(server, std::path::Path::new("fuzz"));
    let c = &mut conn;
    Ok(match scenario {
        0 => format!("{:?}", ops::find_bridge(c, "br0").await?.map(|b| b.name)),
        1 => format!("{} ports", ops::list_ports(c).await?.len()),
        2 => format!("{:?}", ops::find_port(c, "p0").await?.map(|p| p.name)),
        3 => ops::create_bridge(c, "br0", "system").await?.uuid,
        4 => {
            let spec = ops::PortSpec {
                name: "p0".into(),
                bridge: "br0".into(),
                tag: Some(10),
                trunks: vec![],
                ofport_request: Some(7),
                external_ids: [(ops::MODE_KEY.to_string(), "veth".to_string())].into(),
                internal: false,
            };
            let p = ops::add_port(c, &spec).await?;
            format!("ofport {}", p.ofport)
        }
        5 => format!("{}", ops::delete_bridge(c, "br0").await?),
        6 => format!("{}", ops::delete_port(c, "p0").await?),
        _ => {
            let dbs = c.call("list_dbs", json!([])).await?;
            c.wait_applied(2, std::time::Duration::from_secs(5)).await?;
            dbs.to_string()
        }
    })
}

/// The server side of the socket: hands out the fuzzed bytes in reads of
/// the chosen sizes, then end of file; keeps what the client writes.
struct FakeServer {
    data: Vec<u8>,
    pos: usize,
    chunks: Vec<usize>,
    next_chunk: usize,
    written: Rc<RefCell<Vec<u8>>>,
}

impl tokio::io::AsyncRead for FakeServer {
    fn poll_read(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let want = this
            .chunks
            .get(this.next_chunk)
            .copied()
            .unwrap_or(usize::MAX);
        this.next_chunk += 1;
        let n = want.min(buf.remaining()).min(this.data.len() - this.pos);
        buf.put_slice(&this.data[this.pos..this.pos + n]);
        this.pos += n;
        Poll::Ready(Ok(()))
    }
}

impl tokio::io::AsyncWrite for FakeServer {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.written.borrow_mut().extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
