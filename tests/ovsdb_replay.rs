//! The OVSDB client against replies recorded from a real ovsdb-server
//! (tests/fixtures/ovsdb/, captured from Open vSwitch 3.1 on Debian 12).
//!
//! A tiny replay server on a socketpair answers each request with the
//! recorded bytes, rewriting only the JSON-RPC id (and monitor id) to match
//! the request, and dribbles them out in small chunks so the streaming
//! decoder is exercised across arbitrary boundaries.
use pipework::ovsdb::connection::{Framer, check_transact};
use pipework::ovsdb::{Connection, ops};
use serde_json::{Value, json};
use std::path::Path;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

fn fixture(name: &str) -> Vec<Value> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/ovsdb")
        .join(name);
    let bytes = std::fs::read(&path).expect("fixture");
    serde_json::Deserializer::from_slice(&bytes)
        .into_iter::<Value>()
        .map(|v| v.expect("fixture is JSON"))
        .collect()
}

/// What the replay server does for one incoming request.
struct Step {
    method: &'static str,
    /// Sent before the reply (server-initiated requests/notifications).
    before: Vec<Value>,
    /// Recorded file holding the reply (plus any notifications in it).
    reply: &'static str,
    /// Sent after the reply.
    after: Vec<Value>,
}

fn step(method: &'static str, reply: &'static str) -> Step {
    Step {
        method,
        before: vec![],
        reply,
        after: vec![],
    }
}

/// Runs the script; returns every message the client sent that was not a
/// request (i.e. its answers to our echo requests).
async fn replay(mut sock: UnixStream, script: Vec<Step>) -> Vec<Value> {
    let mut framer = Framer::default();
    let mut answers = Vec::new();
    let mut monitor_id = Value::Null;
    let mut buf = [0u8; 4096];
    for st in script {
        // Read until the next request arrives.
        let req = loop {
            if let Some(v) = framer.next_value().unwrap() {
                if v.get("method").is_some() {
                    break v;
                }
                answers.push(v);
                continue;
            }
            let n = sock.read(&mut buf).await.unwrap();
            assert!(n > 0, "client hung up before sending {}", st.method);
            framer.push(&buf[..n]);
        };
        assert_eq!(req["method"], st.method, "request {req}");
        if st.method == "monitor" {
            monitor_id = req["params"][1].clone();
        }
        let mut out = st.before;
        for mut v in fixture(st.reply) {
            if v.get("method").is_some() {
                // Notification recorded on a monitor: point it at the client's.
                if v["method"] == "update" {
                    v["params"][0] = monitor_id.clone();
                }
            } else {
                v["id"] = req["id"].clone();
            }
            out.push(v);
        }
        for mut v in st.after {
            if v["method"] == "update" {
                v["params"][0] = monitor_id.clone();
            }
            out.push(v);
        }
        let mut bytes = Vec::new();
        for v in out {
            bytes.extend(serde_json::to_vec(&v).unwrap());
        }
        for chunk in bytes.chunks(7) {
            sock.write_all(chunk).await.unwrap();
            tokio::task::yield_now().await;
        }
    }
    // Drain whatever the client still sends (late echo answers).
    sock.shutdown().await.ok();
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(
        std::time::Duration::from_millis(200),
        sock.read_to_end(&mut rest),
    )
    .await;
    framer.push(&rest);
    while let Ok(Some(v)) = framer.next_value() {
        answers.push(v);
    }
    answers
}

fn pair(script: Vec<Step>) -> (Connection<UnixStream>, tokio::task::JoinHandle<Vec<Value>>) {
    let (a, b) = UnixStream::pair().unwrap();
    let server = tokio::spawn(replay(b, script));
    (Connection::new(a, Path::new("replay")), server)
}

#[tokio::test]
async fn call_returns_result_and_answers_echo_first() {
    let echo = fixture("echo_request.json").remove(0);
    let (mut conn, server) = pair(vec![Step {
        method: "list_dbs",
        before: vec![echo],
        reply: "list_dbs.json",
        after: vec![],
    }]);
    let dbs = conn.call("list_dbs", json!([])).await.unwrap();
    assert_eq!(dbs, json!(["Open_vSwitch", "_Server"]));
    drop(conn);
    let answers = server.await.unwrap();
    assert_eq!(answers.len(), 1, "one echo answer: {answers:?}");
    assert_eq!(answers[0]["id"], "echo");
    assert_eq!(answers[0]["result"], json!([]));
    assert!(answers[0]["error"].is_null());
}

#[tokio::test]
async fn transact_results_are_per_operation() {
    let (mut conn, _server) = pair(vec![step("transact", "insert_bridge.json")]);
    let ops: Vec<Value> = (0..6)
        .map(|_| json!({"op": "comment", "comment": "x"}))
        .collect();
    let res = conn.transact(ops).await.unwrap();
    assert_eq!(res.len(), 6);
    assert_eq!(res[5]["rows"][0]["next_cfg"], 1);
}

#[test]
fn commit_error_appended_after_operations_is_reported() {
    let reply = fixture("insert_duplicate.json").remove(0);
    let ops = vec![json!({"op": "insert"}), json!({"op": "mutate"})];
    let err = check_transact(&ops, reply["result"].clone()).unwrap_err();
    assert_eq!(err.index, None);
    assert_eq!(err.error, "constraint violation");
    assert!(err.details.contains("index on column \"name\""));
    assert!(
        err.to_string()
            .starts_with("OVSDB refused the transaction: constraint violation")
    );
}

#[test]
fn operation_error_names_the_operation() {
    let reply = fixture("bad_column.json").remove(0);
    let ops = vec![json!({"op": "select"})];
    let err = check_transact(&ops, reply["result"].clone()).unwrap_err();
    assert_eq!(err.index, Some(0));
    assert_eq!(err.error, "unknown column");
    assert_eq!(
        err.to_string(),
        "OVSDB refused operation 0 (select): unknown column: No column nosuch in table Bridge."
    );
}

#[test]
fn short_result_array_is_an_error() {
    let ops = vec![json!({"op": "select"}), json!({"op": "select"})];
    assert!(check_transact(&ops, json!([{"rows": []}])).is_err());
    assert!(check_transact(&ops, json!({"not": "array"})).is_err());
}

#[tokio::test]
async fn find_bridge_reads_datapath_type() {
    let (mut conn, _server) = pair(vec![
        step("transact", "select_bridge.json"),
        step("transact", "select_missing.json"),
    ]);
    let br = ops::find_bridge(&mut conn, "pwo-rec0")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(br.name, "pwo-rec0");
    assert_eq!(br.datapath_type, "netdev");
    assert_eq!(br.uuid, "2e1f4b6c-3870-4bf5-b6ed-20d14db583fc");
    assert_eq!(
        br.ports,
        vec!["fe93a1b8-aa1e-42ba-9633-225ce30fa39c".to_string()]
    );
    assert!(
        ops::find_bridge(&mut conn, "pwo-nonexist")
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn wait_applied_follows_cur_cfg_through_updates_and_echoes() {
    // Recorded: monitor reply says cur_cfg 0, then three back-to-back
    // update notifications move it to 1 and 2. An echo request arrives in
    // the middle and must be answered while we wait.
    let echo = fixture("echo_request.json").remove(0);
    let mut updates = fixture("update_cfg.json");
    updates.insert(1, echo);
    let (mut conn, server) = pair(vec![Step {
        method: "monitor",
        before: vec![],
        reply: "monitor_cfg.json",
        after: updates,
    }]);
    conn.wait_applied(2, std::time::Duration::from_secs(5))
        .await
        .unwrap();
    drop(conn);
    let answers = server.await.unwrap();
    assert_eq!(answers.len(), 1);
    assert_eq!(answers[0]["id"], "echo");
}

#[tokio::test]
async fn wait_applied_times_out_when_vswitchd_lags() {
    // The server answers the monitor and then stays silent (but connected).
    let (a, mut b) = UnixStream::pair().unwrap();
    let server = tokio::spawn(async move {
        let mut buf = [0u8; 4096];
        let n = b.read(&mut buf).await.unwrap();
        let req: Value = serde_json::from_slice(&buf[..n]).unwrap();
        let mut reply = fixture("monitor_cfg.json").remove(0);
        reply["id"] = req["id"].clone();
        b.write_all(&serde_json::to_vec(&reply).unwrap())
            .await
            .unwrap();
        tokio::time::sleep(std::time::Duration::from_secs(5)).await;
    });
    let mut conn = Connection::new(a, Path::new("replay"));
    let err = conn
        .wait_applied(5, std::time::Duration::from_millis(300))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("ovs-vswitchd did not apply"),
        "{err}"
    );
    server.abort();
}

#[tokio::test]
async fn server_hangup_while_waiting_is_reported_as_such() {
    let (mut conn, _server) = pair(vec![step("monitor", "monitor_cfg.json")]);
    let err = conn
        .wait_applied(5, std::time::Duration::from_secs(5))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("closed the connection"), "{err}");
}

#[tokio::test]
async fn notification_before_reply_is_skipped() {
    // Recorded on a connection with an active monitor: an update arrives
    // ahead of the transact reply.
    let (mut conn, _server) = pair(vec![step("transact", "delete_bridge.json")]);
    let res = conn
        .transact(vec![json!({"op": "mutate"}), json!({"op": "mutate"})])
        .await
        .unwrap();
    assert_eq!(res, vec![json!({"count": 1}), json!({"count": 1})]);
}

#[tokio::test]
async fn missing_socket_names_it_and_says_how_to_start_ovs() {
    let err = Connection::connect(Path::new("/nonexistent/pwo/db.sock"))
        .await
        .err()
        .unwrap();
    let msg = err.to_string();
    assert!(msg.contains("/nonexistent/pwo/db.sock"), "{msg}");
    assert!(msg.contains("start Open vSwitch"), "{msg}");
    assert!(!msg.contains('\n'));
}

#[tokio::test]
async fn monitor_is_pipelined_behind_a_change_and_the_wait_uses_it() {
    // A transaction that bumps next_cfg sends the cur_cfg monitor in the
    // same round trip; the replay server insists on exactly that order.
    let (mut conn, server) = pair(vec![
        step("transact", "insert_bridge.json"),
        Step {
            method: "monitor",
            before: vec![],
            reply: "monitor_cfg.json",
            after: fixture("update_cfg.json"),
        },
    ]);
    let mut ops: Vec<Value> = (0..4)
        .map(|_| json!({"op": "comment", "comment": "x"}))
        .collect();
    ops.push(json!({"op": "mutate", "table": "Open_vSwitch", "where": [],
                    "mutations": [["next_cfg", "+=", 1]]}));
    ops.push(
        json!({"op": "select", "table": "Open_vSwitch", "where": [], "columns": ["next_cfg"]}),
    );
    let res = conn.transact(ops).await.unwrap();
    let next = res[5]["rows"][0]["next_cfg"].as_i64().unwrap();
    assert_eq!(next, 1);
    conn.wait_applied(next, std::time::Duration::from_secs(5))
        .await
        .unwrap();
    // A second wait on the same connection reuses the monitor: no new
    // request is sent (the script has none left) and cur_cfg 2 is known.
    conn.wait_applied(2, std::time::Duration::from_secs(5))
        .await
        .unwrap();
    drop(conn);
    assert!(server.await.unwrap().is_empty());
}
