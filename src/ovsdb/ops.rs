//! Typed operations on the Open_vSwitch database: the handful of things
//! pipework does to a switch, each one transaction plus, for changes, a wait
//! until ovs-vswitchd has applied it.
use super::connection::{APPLY_TIMEOUT, Connection, OpError};
use super::value::{self, map, named_uuid, set, uuid};
use crate::error::{Error, Result};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use tokio::io::{AsyncRead, AsyncWrite};

/// External-id key that marks an interface as ours; `ls` and `detach` look
/// for it. Its value says how the port was made (`veth` or `internal`).
pub const MODE_KEY: &str = "pipework.mode";

#[derive(Debug, Clone, PartialEq)]
pub struct Bridge {
    pub uuid: String,
    pub name: String,
    /// `system`, `netdev`, or empty (which vswitchd treats as `system`).
    pub datapath_type: String,
    pub ports: Vec<String>,
}

/// What to attach.
#[derive(Debug, Clone, Default)]
pub struct PortSpec {
    /// Port and interface name (they are the same, as `ovs-vsctl add-port`
    /// makes them).
    pub name: String,
    pub bridge: String,
    /// Access VLAN.
    pub tag: Option<u16>,
    /// Trunked VLANs.
    pub trunks: Vec<u16>,
    pub ofport_request: Option<u16>,
    /// Recorded on the Interface row (where ovs-docker and OVN look too).
    pub external_ids: BTreeMap<String, String>,
    /// An OVS internal interface instead of an existing netdev.
    pub internal: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AddedPort {
    pub port_uuid: String,
    pub interface_uuid: String,
    pub ofport: i64,
}

/// A port as `ls` shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct PortRecord {
    /// The Port row's uuid: what `delete_port_row` removes, so a port
    /// re-created under the same name since it was read is left alone.
    pub uuid: String,
    pub name: String,
    pub bridge: Option<String>,
    pub tag: Option<i64>,
    pub trunks: Vec<i64>,
    pub ofport: Option<i64>,
    pub ofport_request: Option<i64>,
    pub interface_type: String,
    pub error: Option<String>,
    pub external_ids: BTreeMap<String, String>,
}

/// Names vswitchd turns into kernel/tap devices must fit IFNAMSIZ and be
/// valid device names; OVSDB itself accepts anything, so without this check
/// the row is written and only the Interface `error` column complains later.
pub fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 15
        && name != "."
        && name != ".."
        && !name.contains('/')
        && !name.contains(':')
        && !name.chars().any(|c| c.is_whitespace() || c.is_control());
    if ok {
        Ok(())
    } else {
        Err(Error::bad(
            name,
            "not a valid OVS port/bridge name (1-15 characters, no '/', ':' or whitespace)",
        ))
    }
}

/// VLAN ids usable as an access tag or trunk: 0 is "priority only" and 4095
/// is reserved, so OVS's schema range 0-4095 is narrowed to what carries
/// traffic.
pub fn check_vlan(vid: i64, token: &str) -> Result<u16> {
    if (1..=4094).contains(&vid) {
        Ok(vid as u16)
    } else {
        Err(Error::bad(token, "VLAN id out of range (use 1-4094)"))
    }
}

/// Parse a trunk list like `10,20-30`.
pub fn parse_trunks(spec: &str) -> Result<Vec<u16>> {
    let mut out = Vec::new();
    for part in spec.split(',') {
        let part = part.trim();
        let bad = || Error::bad(spec, "trunk list must look like 10,20-30 (VLAN ids 1-4094)");
        let (lo, hi) = match part.split_once('-') {
            Some((a, b)) => (a.trim(), b.trim()),
            None => (part, part),
        };
        let lo: i64 = lo.parse().map_err(|_| bad())?;
        let hi: i64 = hi.parse().map_err(|_| bad())?;
        let lo = check_vlan(lo, spec)?;
        let hi = check_vlan(hi, spec)?;
        if lo > hi {
            return Err(bad());
        }
        out.extend(lo..=hi);
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// OpenFlow port numbers OVS lets us request.
pub fn check_ofport(n: i64, token: &str) -> Result<u16> {
    if (1..=65279).contains(&n) {
        Ok(n as u16)
    } else {
        Err(Error::bad(
            token,
            "OpenFlow port number out of range (use 1-65279)",
        ))
    }
}

/// The ops that bump `next_cfg` and read back its new value: appended to
/// every change so we can wait for vswitchd to catch up.
fn bump_cfg() -> [Value; 2] {
    [
        json!({"op": "mutate", "table": "Open_vSwitch", "where": [],
               "mutations": [["next_cfg", "+=", 1]]}),
        json!({"op": "select", "table": "Open_vSwitch", "where": [],
               "columns": ["next_cfg"]}),
    ]
}

fn next_cfg_from(result: Option<&Value>) -> Result<i64> {
    result
        .and_then(|r| r.get("rows"))
        .and_then(|rows| rows.get(0))
        .and_then(|row| row.get("next_cfg"))
        .and_then(Value::as_i64)
        .ok_or_else(|| Error::other("OVSDB has no Open_vSwitch row (run `ovs-vsctl init` once)"))
}

fn rows(result: &Value) -> &[Value] {
    result
        .get("rows")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
}

fn count(result: &Value) -> i64 {
    result.get("count").and_then(Value::as_i64).unwrap_or(0)
}

fn str_col(row: &Value, col: &str) -> String {
    row.get(col)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

fn bridge_from_row(row: &Value) -> Option<Bridge> {
    Some(Bridge {
        uuid: value::uuid_of(row.get("_uuid")?)?,
        name: str_col(row, "name"),
        datapath_type: str_col(row, "datapath_type"),
        ports: row.get("ports").map(value::uuids).unwrap_or_default(),
    })
}

/// A name clash in OVSDB comes back as a constraint violation on the name
/// index; report it as bad input naming the clashing name.
fn name_clash(e: OpError, name: &str, what: &str) -> Error {
    if e.error == "constraint violation" && e.details.contains("index") {
        Error::bad(name, format!("an OVS {what} with this name already exists"))
    } else {
        Error::other(e)
    }
}

pub async fn find_bridge<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut Connection<S>,
    name: &str,
) -> Result<Option<Bridge>> {
    let res = conn
        .transact(vec![json!({
            "op": "select", "table": "Bridge", "where": [["name", "==", name]],
            "columns": ["_uuid", "name", "datapath_type", "ports"]
        })])
        .await?;
    Ok(rows(&res[0]).first().and_then(bridge_from_row))
}

/// The datapath type of an existing bridge (`None` if no such bridge).
pub async fn bridge_datapath_type<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut Connection<S>,
    name: &str,
) -> Result<Option<String>> {
    Ok(find_bridge(conn, name).await?.map(|b| b.datapath_type))
}

/// Create a bridge the way `ovs-vsctl add-br` does (with its own internal
/// port of the same name) and wait until vswitchd has built it.
pub async fn create_bridge<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut Connection<S>,
    name: &str,
    datapath_type: &str,
) -> Result<Bridge> {
    check_name(name)?;
    let mut ops = vec![
        json!({"op": "insert", "table": "Interface", "uuid-name": "iface",
               "row": {"name": name, "type": "internal"}}),
        json!({"op": "insert", "table": "Port", "uuid-name": "port",
               "row": {"name": name, "interfaces": named_uuid("iface")}}),
        json!({"op": "insert", "table": "Bridge", "uuid-name": "br",
               "row": {"name": name, "ports": named_uuid("port"),
                       "datapath_type": datapath_type}}),
        json!({"op": "mutate", "table": "Open_vSwitch", "where": [],
               "mutations": [["bridges", "insert", set([named_uuid("br")])]]}),
    ];
    ops.extend(bump_cfg());
    let res = conn
        .transact_detailed(ops)
        .await?
        .map_err(|e| name_clash(e, name, "bridge or port"))?;
    let bridge_uuid = res[2]
        .get("uuid")
        .and_then(value::uuid_of)
        .ok_or_else(|| Error::other("OVSDB insert returned no uuid"))?;
    let port_uuid = res[1]
        .get("uuid")
        .and_then(value::uuid_of)
        .unwrap_or_default();
    let next = next_cfg_from(res.last())?;
    if let Err(e) = conn.wait_applied(next, APPLY_TIMEOUT).await {
        // Do not leave a bridge vswitchd never built.
        let _ = delete_bridge(conn, name).await;
        return Err(e);
    }
    Ok(Bridge {
        uuid: bridge_uuid,
        name: name.to_owned(),
        datapath_type: datapath_type.to_owned(),
        ports: vec![port_uuid],
    })
}

/// Remove a bridge and (by OVSDB garbage collection) its ports and
/// interfaces. Returns whether it existed.
pub async fn delete_bridge<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut Connection<S>,
    name: &str,
) -> Result<bool> {
    let Some(br) = find_bridge(conn, name).await? else {
        return Ok(false);
    };
    let mut ops = vec![json!({"op": "mutate", "table": "Open_vSwitch", "where": [],
        "mutations": [["bridges", "delete", set([uuid(&br.uuid)])]]})];
    ops.extend(bump_cfg());
    let res = conn.transact(ops).await?;
    conn.wait_applied(next_cfg_from(res.last())?, APPLY_TIMEOUT)
        .await?;
    Ok(true)
}

/// Add a port to a bridge and wait until vswitchd has attached it. If
/// vswitchd rejects the interface (its `error` column is set or it got no
/// OpenFlow port), the rows are removed again before returning the error,
/// so a failure here never leaves a stale port (pipework#143).
pub async fn add_port<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut Connection<S>,
    spec: &PortSpec,
) -> Result<AddedPort> {
    check_name(&spec.name)?;
    let mut iface = json!({"name": spec.name, "external_ids": map(&spec.external_ids)});
    if spec.internal {
        iface["type"] = json!("internal");
    }
    if let Some(n) = spec.ofport_request {
        iface["ofport_request"] = json!(n);
    }
    let mut port = json!({"name": spec.name, "interfaces": named_uuid("iface"),
                          "external_ids": map(&spec.external_ids)});
    if let Some(tag) = spec.tag {
        port["tag"] = json!(tag);
    }
    if !spec.trunks.is_empty() {
        port["trunks"] = set(spec.trunks.iter().map(|t| json!(t)));
    }
    let mut ops = vec![
        json!({"op": "insert", "table": "Interface", "uuid-name": "iface", "row": iface}),
        json!({"op": "insert", "table": "Port", "uuid-name": "port", "row": port}),
        json!({"op": "mutate", "table": "Bridge", "where": [["name", "==", spec.bridge]],
               "mutations": [["ports", "insert", set([named_uuid("port")])]]}),
    ];
    ops.extend(bump_cfg());
    let res = conn
        .transact_detailed(ops)
        .await?
        .map_err(|e| name_clash(e, &spec.name, "port or interface"))?;
    if count(&res[2]) != 1 {
        // The mutate matched no bridge, so the inserted rows were orphans
        // and the server already garbage-collected them.
        return Err(Error::NotFound(format!(
            "OVS bridge {} does not exist",
            spec.bridge
        )));
    }
    let port_uuid = res[1]
        .get("uuid")
        .and_then(value::uuid_of)
        .unwrap_or_default();
    let interface_uuid = res[0]
        .get("uuid")
        .and_then(value::uuid_of)
        .unwrap_or_default();
    let applied = async {
        conn.wait_applied(next_cfg_from(res.last())?, APPLY_TIMEOUT)
            .await?;
        let st = conn
            .transact(vec![json!({"op": "select", "table": "Interface",
                "where": [["_uuid", "==", uuid(&interface_uuid)]],
                "columns": ["ofport", "error"]})])
            .await?;
        let row = rows(&st[0]).first().cloned().unwrap_or(Value::Null);
        let error = row.get("error").and_then(value::opt_str);
        let ofport = row.get("ofport").and_then(value::opt_int).unwrap_or(-1);
        match error {
            Some(err) => Err(Error::other(format!(
                "ovs-vswitchd could not add {} to {}: {err}",
                spec.name, spec.bridge
            ))),
            None if ofport < 0 => Err(Error::other(format!(
                "ovs-vswitchd could not add {} to {}: no OpenFlow port assigned{}",
                spec.name,
                spec.bridge,
                if spec.ofport_request.is_some() {
                    " (is the requested --ofport taken?)"
                } else {
                    ""
                }
            ))),
            // vswitchd silently picks another number when the requested
            // one is taken; the user asked for that number, so refuse.
            None if spec.ofport_request.is_some_and(|n| i64::from(n) != ofport) => Err(Error::bad(
                spec.ofport_request.unwrap_or_default(),
                format!("OpenFlow port is already taken on bridge {}", spec.bridge),
            )),
            None => Ok(ofport),
        }
    }
    .await;
    match applied {
        Ok(ofport) => Ok(AddedPort {
            port_uuid,
            interface_uuid,
            ofport,
        }),
        Err(e) => {
            if let Err(undo) = delete_port(conn, &spec.name).await {
                eprintln!(
                    "pipework: rollback: could not remove OVS port {}: {undo}",
                    spec.name
                );
            }
            Err(e)
        }
    }
}

/// Remove a port (and its interfaces) from whichever bridge holds it, and
/// wait until vswitchd has let go of it. Returns whether it existed.
pub async fn delete_port<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut Connection<S>,
    name: &str,
) -> Result<bool> {
    match remove_port(conn, name).await? {
        Some(next_cfg) => {
            conn.wait_applied(next_cfg, APPLY_TIMEOUT).await?;
            Ok(true)
        }
        None => Ok(false),
    }
}

/// Remove a port's rows without waiting for vswitchd; returns the
/// `next_cfg` to wait for (`None` if there was no such port). Lets detach
/// delete the veth while vswitchd reconfigures instead of after.
pub async fn remove_port<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut Connection<S>,
    name: &str,
) -> Result<Option<i64>> {
    let res = conn
        .transact(vec![json!({"op": "select", "table": "Port",
            "where": [["name", "==", name]], "columns": ["_uuid"]})])
        .await?;
    let Some(port_uuid) = rows(&res[0])
        .first()
        .and_then(|r| r.get("_uuid"))
        .and_then(value::uuid_of)
    else {
        return Ok(None);
    };
    remove_port_row(conn, &port_uuid).await.map(Some)
}

/// `delete_port` of the Port row with this uuid, as read earlier: gone
/// already, or replaced by a new row of the same name, it is a no-op.
pub async fn delete_port_row<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut Connection<S>,
    port_uuid: &str,
) -> Result<()> {
    let next_cfg = remove_port_row(conn, port_uuid).await?;
    conn.wait_applied(next_cfg, APPLY_TIMEOUT).await
}

async fn remove_port_row<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut Connection<S>,
    port_uuid: &str,
) -> Result<i64> {
    let mut ops = vec![json!({"op": "mutate", "table": "Bridge",
        "where": [["ports", "includes", uuid(port_uuid)]],
        "mutations": [["ports", "delete", set([uuid(port_uuid)])]]})];
    ops.extend(bump_cfg());
    let res = conn.transact(ops).await?;
    next_cfg_from(res.last())
}

/// Ports with their bridge and interface state: every port, or just the
/// one named (then only its own rows are read, so a host with thousands
/// of ports costs no more than one with two).
async fn all_ports<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut Connection<S>,
    name: Option<&str>,
) -> Result<Vec<PortRecord>> {
    let port_cols = json!(["_uuid", "name", "tag", "trunks", "interfaces"]);
    let iface_cols = json!([
        "_uuid",
        "type",
        "ofport",
        "ofport_request",
        "error",
        "external_ids"
    ]);
    let Some(name) = name else {
        let res = conn
            .transact(vec![
                json!({"op": "select", "table": "Bridge", "where": [], "columns": ["name", "ports"]}),
                json!({"op": "select", "table": "Port", "where": [], "columns": port_cols}),
                json!({"op": "select", "table": "Interface", "where": [], "columns": iface_cols}),
            ])
            .await?;
        return Ok(join_ports(&res[0], &res[1], &res[2]));
    };
    let res = conn
        .transact(vec![json!({"op": "select", "table": "Port",
            "where": [["name", "==", name]], "columns": port_cols})])
        .await?;
    let ports = res[0].clone();
    let Some(port) = rows(&ports).first() else {
        return Ok(vec![]);
    };
    let port_uuid = port
        .get("_uuid")
        .and_then(value::uuid_of)
        .unwrap_or_default();
    let ifaces: Vec<Value> = port
        .get("interfaces")
        .map(value::uuids)
        .unwrap_or_default()
        .iter()
        .map(|u| json!(["_uuid", "==", uuid(u)]))
        .take(1)
        .collect();
    // No interface (never made by us or ovs-vsctl): match nothing, not all.
    let ifaces = if ifaces.is_empty() {
        vec![json!([
            "_uuid",
            "==",
            uuid("00000000-0000-0000-0000-000000000000")
        ])]
    } else {
        ifaces
    };
    let res = conn
        .transact(vec![
            json!({"op": "select", "table": "Bridge",
                   "where": [["ports", "includes", uuid(&port_uuid)]], "columns": ["name", "ports"]}),
            json!({"op": "select", "table": "Interface", "where": ifaces, "columns": iface_cols}),
        ])
        .await?;
    Ok(join_ports(&res[0], &ports, &res[1]))
}

/// Join the three tables' select results into port records. Split out so it
/// can be tested on recorded replies.
pub fn join_ports(bridges: &Value, ports: &Value, ifaces: &Value) -> Vec<PortRecord> {
    let mut bridge_of: HashMap<String, String> = HashMap::new();
    for b in rows(bridges) {
        for p in b.get("ports").map(value::uuids).unwrap_or_default() {
            bridge_of.insert(p, str_col(b, "name"));
        }
    }
    let iface_by_uuid: HashMap<String, &Value> = rows(ifaces)
        .iter()
        .filter_map(|r| Some((value::uuid_of(r.get("_uuid")?)?, r)))
        .collect();
    let mut out = Vec::new();
    for p in rows(ports) {
        let Some(puuid) = p.get("_uuid").and_then(value::uuid_of) else {
            continue;
        };
        let iface = p
            .get("interfaces")
            .map(value::uuids)
            .unwrap_or_default()
            .first()
            .and_then(|u| iface_by_uuid.get(u).copied());
        let col = |c: &str| iface.and_then(|i| i.get(c)).cloned().unwrap_or(Value::Null);
        out.push(PortRecord {
            uuid: puuid.clone(),
            name: str_col(p, "name"),
            bridge: bridge_of.get(&puuid).cloned(),
            tag: p.get("tag").and_then(value::opt_int),
            trunks: p.get("trunks").map(value::ints).unwrap_or_default(),
            ofport: value::opt_int(&col("ofport")),
            ofport_request: value::opt_int(&col("ofport_request")),
            interface_type: col("type").as_str().unwrap_or_default().to_owned(),
            error: value::opt_str(&col("error")),
            external_ids: value::string_map(&col("external_ids")),
        });
    }
    out.sort_by(|a, b| (&a.bridge, &a.name).cmp(&(&b.bridge, &b.name)));
    out
}

/// One port by name, whether or not it is ours.
pub async fn find_port<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut Connection<S>,
    name: &str,
) -> Result<Option<PortRecord>> {
    Ok(all_ports(conn, Some(name)).await?.into_iter().next())
}

/// Ports pipework attached (their interface carries our marker).
pub async fn list_ports<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut Connection<S>,
) -> Result<Vec<PortRecord>> {
    Ok(all_ports(conn, None)
        .await?
        .into_iter()
        .filter(|p| p.external_ids.contains_key(MODE_KEY))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trunk_lists() {
        assert_eq!(parse_trunks("10,20-22").unwrap(), vec![10, 20, 21, 22]);
        assert_eq!(parse_trunks("5,5,3").unwrap(), vec![3, 5]);
        assert!(parse_trunks("0").is_err());
        assert!(parse_trunks("4095").is_err());
        assert!(parse_trunks("30-20").is_err());
        assert!(parse_trunks("a").is_err());
        assert!(parse_trunks("10,").is_err());
    }

    #[test]
    fn names() {
        assert!(check_name("ovsbr0").is_ok());
        assert!(check_name("0123456789abcdef").is_err());
        assert!(check_name("a/b").is_err());
        assert!(check_name("a b").is_err());
        assert!(check_name("").is_err());
    }

    #[test]
    fn vlan_and_ofport_ranges() {
        assert!(check_vlan(0, "@0").is_err());
        assert_eq!(check_vlan(4094, "@4094").unwrap(), 4094);
        assert!(check_vlan(4095, "@4095").is_err());
        assert!(check_ofport(0, "0").is_err());
        assert!(check_ofport(65280, "65280").is_err());
        assert_eq!(check_ofport(7, "7").unwrap(), 7);
    }
}
