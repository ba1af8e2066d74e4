//! Open vSwitch: `pipework ovsbr0 $CID 10.0.0.2/24 @10`.
//!
//! A veth whose host end becomes a port of the OVS bridge (or, with
//! `--ovs-internal`, an OVS internal interface moved into the guest). All
//! switch configuration goes through our own OVSDB client; after every
//! change we wait for ovs-vswitchd to apply it before the guest link is
//! used, and every row we write is journaled so a failure leaves no stale
//! Port/Interface behind (pipework#143).
use super::{Ctx, Driver, HostSide};
use crate::error::{Error, Result};
use crate::inventory::{self, host_ns, temp_name};
use crate::netlink::{Journal, Link, LinkChange, Net};
use crate::ovsdb::{self, Connection, datapath, ops};
use crate::record::{Ident, Kind, Record};
use crate::request::{AttachRequest, check_ifname};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use tokio::sync::Mutex;

/// Print a dry-run line. A closed stdout (`| head`) is not worth a panic.
macro_rules! show {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

pub use crate::request::OvsOptions;

pub struct Ovs {
    socket: PathBuf,
    /// Open for attach (validate and attach share it); detach works from
    /// the record alone.
    conn: Option<Mutex<Connection>>,
    /// The bridge as `claim` found it (None: to be created).
    bridge: Option<ops::Bridge>,
}

/// Decide whether the classic rule hands `req.host` to this driver: an
/// existing OVS bridge (asked through OVSDB, never ovs-vsctl), or a missing
/// name starting with `ovs`. `link` is the host link of that name, if any.
pub async fn claim(req: &AttachRequest, link: Option<&Link>) -> Result<Option<Ovs>> {
    let socket = ovsdb::socket_path(req.ovs.db.as_deref())?;
    if let Some(l) = link
        && l.is_bridge()
    {
        // A Linux bridge keeps the Linux bridge driver (which takes
        // --trunk too); OVS-only options cannot be honoured there, so
        // refuse rather than ignore them.
        if ovs_only(req) {
            return Err(Error::bad(
                &req.host,
                format!(
                    "is a Linux bridge, not an OVS bridge; drop {} to use the Linux bridge driver, or name an OVS bridge",
                    req.ovs.flags()
                ),
            ));
        }
        return Ok(None);
    }
    let wants_ovs = req.host.starts_with("ovs")
        || ovs_only(req)
        || link.is_some_and(|l| l.kind.as_deref() == Some("openvswitch"));
    // Only talk to OVSDB when there is a socket or the user clearly meant
    // OVS: plain Linux-bridge/macvlan attaches must not depend on it.
    if !socket.exists() && !wants_ovs {
        return Ok(None);
    }
    let mut conn = match Connection::connect(&socket).await {
        Ok(c) => c,
        Err(e) if wants_ovs => return Err(e),
        Err(_) => return Ok(None),
    };
    let bridge = match ops::find_bridge(&mut conn, &req.host).await {
        Ok(b) => b,
        Err(e) if wants_ovs => return Err(e),
        // A broken OVS must not break Linux-bridge attaches.
        Err(_) => return Ok(None),
    };
    let is_ovs_bridge = bridge.is_some();
    // `--create` alone means a Linux bridge; with OVS-only options it
    // means an OVS one.
    let creatable =
        link.is_none() && (req.host.starts_with("ovs") || (req.create && ovs_only(req)));
    if is_ovs_bridge || creatable {
        return Ok(Some(Ovs {
            socket,
            conn: Some(Mutex::new(conn)),
            bridge,
        }));
    }
    if let Some(l) = link
        && (l.kind.as_deref() == Some("openvswitch") || req.host.starts_with("ovs"))
    {
        // E.g. the `ovs-system` datapath device or an OVS port's device.
        return Err(Error::bad(
            &req.host,
            format!(
                "exists but is not an OVS bridge (OVSDB at {} has no bridge of that name); name an OVS bridge",
                socket.display()
            ),
        ));
    }
    // A Linux bridge the classic rule will create takes --trunk.
    let new_linux_bridge = link.is_none() && (req.host.starts_with("br") || req.create);
    if ovs_only(req) || (req.ovs.any() && !new_linux_bridge) {
        return Err(Error::bad(
            &req.host,
            format!(
                "is not an OVS bridge (OVSDB at {} has no such bridge); {} needs one",
                socket.display(),
                req.ovs.flags()
            ),
        ));
    }
    Ok(None)
}

/// Options only OVS can honour (`--trunk` is honoured by Linux bridges too).
fn ovs_only(req: &AttachRequest) -> bool {
    req.ovs.ofport.is_some() || req.ovs.internal
}

/// Journal step: remove an OVS port over a fresh connection (undo futures
/// must own everything they use).
fn journal_port(j: &mut Journal, socket: &Path, port: &str) {
    let socket = socket.to_path_buf();
    let port = port.to_owned();
    j.record(format!("OVS port {port}"), async move {
        let mut c = Connection::connect(&socket).await?;
        ops::delete_port(&mut c, &port).await.map(|_| ())
    });
}

fn journal_bridge(j: &mut Journal, socket: &Path, bridge: &str) {
    let socket = socket.to_path_buf();
    let bridge = bridge.to_owned();
    j.record(format!("OVS bridge {bridge}"), async move {
        let mut c = Connection::connect(&socket).await?;
        // A concurrent pipework may have joined the bridge we created;
        // keep it then (only its own internal port means it is unused).
        match ops::find_bridge(&mut c, &bridge).await? {
            Some(b) if b.ports.len() <= 1 => ops::delete_bridge(&mut c, &bridge).await.map(|_| ()),
            _ => Ok(()),
        }
    });
}

/// The external_ids we write on the Interface: what the original recorded
/// (container id, name, interface, pid; pipework#212), in the keys
/// ovs-docker uses where one exists, plus our marker for `ls`/`detach`.
fn external_ids(cx: &Ctx<'_>, mode: &str) -> BTreeMap<String, String> {
    let mut ids = BTreeMap::new();
    if let Some(id) = &cx.guest.id {
        ids.insert("container_id".into(), id.clone());
    }
    ids.insert("container_iface".into(), cx.req.ifname.clone());
    ids.insert("pipework.container_name".into(), cx.guest.name.clone());
    if let Some(pid) = cx.guest.pid {
        ids.insert("pipework.pid".into(), pid.to_string());
    }
    if let Ok(ino) = cx.guest.netns.inode() {
        ids.insert("pipework.netns".into(), ino.to_string());
    }
    ids.insert(ops::MODE_KEY.into(), mode.into());
    ids
}

impl Ovs {
    /// A driver for `detach`, which reconnects from what the record says.
    pub fn for_detach() -> Self {
        Ovs {
            socket: PathBuf::from(ovsdb::DEFAULT_SOCKET),
            conn: None,
            bridge: None,
        }
    }

    async fn conn(&self) -> Result<tokio::sync::MutexGuard<'_, Connection>> {
        match &self.conn {
            Some(c) => Ok(c.lock().await),
            None => Err(Error::other(
                "internal error: OVS driver used without a connection",
            )),
        }
    }

    fn is_default_socket(&self) -> bool {
        self.socket == Path::new(ovsdb::DEFAULT_SOCKET)
    }

    /// Find the bridge, or create it (classic rule) with the best datapath
    /// this kernel has. Returns the datapath type and notes.
    async fn ensure_bridge(
        &self,
        cx: &Ctx<'_>,
        j: &mut Journal,
        notes: &mut Vec<String>,
    ) -> Result<String> {
        let name = &cx.req.host;
        if let Some(br) = self.bridge.clone() {
            // A port joining an existing bridge follows its datapath: we
            // only add rows, vswitchd opens the port in that datapath.
            let dp = if br.datapath_type.is_empty() {
                datapath::SYSTEM.to_owned()
            } else {
                br.datapath_type
            };
            return Ok(dp);
        }
        let dp = datapath::for_new_bridge();
        let mut conn = self.conn().await?;
        match ops::create_bridge(&mut conn, name, dp).await {
            Ok(_) => {
                journal_bridge(j, &self.socket, name);
                notes.push(format!("created OVS bridge {name} (datapath {dp})"));
                if dp == datapath::NETDEV {
                    eprintln!(
                        "pipework: the kernel has no openvswitch module; created {name} with the userspace (netdev) datapath"
                    );
                }
                Ok(dp.to_owned())
            }
            // Another pipework created it between our lookup and insert.
            Err(Error::BadInput { .. }) => Ok(ops::find_bridge(&mut conn, name)
                .await?
                .map(|b| b.datapath_type)
                .unwrap_or_else(|| dp.to_owned())),
            Err(e) => Err(e),
        }
    }

    async fn add_port(&self, j: &mut Journal, spec: &ops::PortSpec) -> Result<ops::AddedPort> {
        let mut conn = self.conn().await?;
        let added = ops::add_port(&mut conn, spec).await?;
        journal_port(j, &self.socket, &spec.name);
        Ok(added)
    }

    fn port_spec(&self, cx: &Ctx<'_>, name: &str, mode: &str) -> ops::PortSpec {
        ops::PortSpec {
            name: name.to_owned(),
            bridge: cx.req.host.clone(),
            tag: cx.req.vlan,
            trunks: cx.req.ovs.trunks.clone(),
            ofport_request: cx.req.ovs.ofport,
            external_ids: external_ids(cx, mode),
            internal: cx.req.ovs.internal,
        }
    }

    fn dry_run(&self, cx: &Ctx<'_>, name: &str) -> Result<HostSide> {
        let req = cx.req;
        let mut line = format!(
            "ovs-vsctl --db=unix:{} --may-exist add-br {}{} -- add-port {} {name}",
            self.socket.display(),
            req.host,
            match &self.bridge {
                Some(_) => String::new(),
                None => format!(
                    " -- set Bridge {} datapath_type={}",
                    req.host,
                    datapath::for_new_bridge()
                ),
            },
            req.host
        );
        if let Some(t) = req.vlan {
            line.push_str(&format!(" tag={t}"));
        }
        if !req.ovs.trunks.is_empty() {
            let t: Vec<String> = req.ovs.trunks.iter().map(u16::to_string).collect();
            line.push_str(&format!(" trunks={}", t.join(",")));
        }
        if req.ovs.internal {
            line.push_str(&format!(" -- set Interface {name} type=internal"));
        }
        if let Some(n) = req.ovs.ofport {
            line.push_str(&format!(" -- set Interface {name} ofport_request={n}"));
        }
        show!("{line}");
        if req.ovs.internal {
            show!("ip link set {name} netns {}", cx.guest.netns.path.display());
        } else {
            show!(
                "ip link add {name} type veth peer name {} netns {}",
                req.ifname,
                cx.guest.netns.path.display()
            );
            show!("ip link set {name} up");
        }
        Ok(HostSide {
            kind: "ovs",
            host: req.host.clone(),
            host_ifname: Some(name.to_owned()),
            mtu: req.mtu.unwrap_or(1500),
            notes: vec![],
        })
    }

    /// Move the internal interface vswitchd created into the guest. It
    /// keeps its name: ovs-vswitchd finds internal devices by name, and on
    /// the kernel datapath it deletes and re-creates (on the host) one it
    /// cannot find at its next reconfiguration, destroying the guest's link.
    async fn move_internal(&self, cx: &Ctx<'_>, dev: &Link, mtu: Option<u32>) -> Result<()> {
        let into = LinkChange {
            netns: Some(&cx.guest.netns),
            mtu,
            ..Default::default()
        };
        let what = format!(
            "moving OVS internal port {} into {}",
            dev.name, cx.guest.name
        );
        cx.host.change(dev, &into, what).await?;
        if let Some(mac) = cx.req.mac {
            let moved = cx.cont.link_by_name(&cx.req.ifname).await?.ok_or_else(|| {
                Error::other(format!("{} did not appear in the guest", cx.req.ifname))
            })?;
            let set = LinkChange {
                mac: Some(mac.to_vec()),
                ..Default::default()
            };
            cx.cont
                .change(&moved, &set, format!("setting MAC of {}", cx.req.ifname))
                .await?;
        }
        Ok(())
    }
}

/// The OVS port's name: the host end of the veth, or for an internal port
/// the guest's interface name itself (see `move_internal`).
fn port_name(cx: &Ctx<'_>) -> String {
    if cx.req.ovs.internal {
        cx.req.ifname.clone()
    } else {
        super::bridge::host_ifname(cx)
    }
}

impl Driver for Ovs {
    async fn validate(&self, cx: &Ctx<'_>) -> Result<()> {
        ops::check_name(&cx.req.host)?;
        let internal = cx.req.ovs.internal;
        if internal && let Some(l) = &cx.req.host_ifname {
            return Err(Error::bad(
                l,
                "-l has no meaning with --ovs-internal: the OVS port is the guest's interface and keeps its -i name",
            ));
        }
        let name = port_name(cx);
        // Which flag picks this name, for the messages below.
        let pick = if internal {
            "OVS internal ports keep their name inside the guest and OVS names are host-wide: pick another with -i NAME"
        } else {
            "pick another with -l NAME"
        };
        check_ifname(&name)?;
        ops::check_name(&name)?;
        if cx.host.link_by_name(&name).await?.is_some() {
            return Err(Error::bad(
                &name,
                format!("host interface already exists; {pick}"),
            ));
        }
        let mut conn = self.conn().await?;
        if let Some(p) = ops::find_port(&mut conn, &name).await? {
            // Our own row for this very guest and interface, left by a run
            // killed before it committed (the guest has no such interface,
            // or attach.rs would not have got here): replace it.
            let ids = &p.external_ids;
            let ours = ids.contains_key(ops::MODE_KEY)
                && ids.get("container_iface") == Some(&cx.req.ifname)
                && ids.get("pipework.netns") == Some(&cx.record.n.to_string());
            if ours {
                if !cx.host.dry_run {
                    eprintln!("pipework: replacing OVS port {name} left by an unfinished attach");
                    ops::delete_port(&mut conn, &name).await?;
                }
                return Ok(());
            }
            let whose = match p.bridge {
                Some(b) => format!("on bridge {b}"),
                None => "in OVSDB".to_owned(),
            };
            return Err(Error::bad(
                &name,
                format!(
                    "an OVS port with this name already exists {whose} (stale? remove it with `ovs-vsctl del-port {name}`); {pick}"
                ),
            ));
        }
        Ok(())
    }

    async fn attach(&self, cx: &mut Ctx<'_>, j: &mut Journal) -> Result<HostSide> {
        let name = port_name(cx);
        if cx.host.dry_run {
            return self.dry_run(cx, &name);
        }
        cx.record.k = Kind::Ovs;
        let mut notes = Vec::new();
        let dp = self.ensure_bridge(cx, j, &mut notes).await?;
        let bridge_mtu = cx
            .host
            .link_by_name(&cx.req.host)
            .await?
            .map(|l| l.mtu)
            .filter(|m| *m >= 68);
        let mtu = cx.req.mtu.or(bridge_mtu).unwrap_or(1500);

        // Keep what the caller signed in already (a lab's name and link id).
        let mut x = std::mem::take(&mut cx.record.x);
        x.ovs_port = Some(name.clone());
        if !self.is_default_socket() {
            x.ovsdb = Some(self.socket.display().to_string());
        }

        if cx.req.ovs.internal {
            // vswitchd creates the device when it applies the row; only
            // then can we move it.
            let spec = self.port_spec(cx, &name, "internal");
            self.add_port(j, &spec).await?;
            let dev = cx.host.link_by_name(&name).await?.ok_or_else(|| {
                Error::other(format!(
                    "ovs-vswitchd applied port {name} but created no device for it"
                ))
            })?;
            x.mode = Some("internal".into());
            cx.record.x = x;
            self.move_internal(cx, &dev, Some(mtu)).await?;
            cx.made = cx.cont.link_by_name(&cx.req.ifname).await?;
            notes.push(format!("OVS internal port {name} moved into the guest"));
        } else {
            cx.record.hi = Some(name.clone());
            cx.record.x = x;
            // Both ends born under temporary names (see inventory.rs); the
            // host end takes its OVS name and record before the port row
            // exists, since vswitchd finds the device by that name.
            let guest_tmp = temp_name();
            let veth = cx
                .host
                .create_veth(
                    j,
                    &temp_name(),
                    &guest_tmp,
                    &cx.guest.netns,
                    cx.req.mac.as_ref().map(|m| &m[..]),
                    mtu,
                    None,
                    cx.req.veth_queues.get(),
                )
                .await?;
            let mut host_rec = cx.record.clone();
            host_rec.p = None;
            let alias = host_rec.seal(Ident {
                ns: host_ns(),
                index: veth.index,
            })?;
            cx.host.rename_alias_up(&veth, &name, &alias).await?;
            // Waits until vswitchd has the port, so the guest link is only
            // used (addressed, brought up) once the switch forwards for it.
            let spec = self.port_spec(cx, &name, "veth");
            self.add_port(j, &spec).await?;
            cx.made = cx.cont.link_by_name(&guest_tmp).await?;
        }
        if dp == datapath::NETDEV && notes.is_empty() {
            notes.push(format!(
                "{} uses the userspace (netdev) datapath",
                cx.req.host
            ));
        }
        Ok(HostSide {
            kind: "ovs",
            host: cx.req.host.clone(),
            host_ifname: Some(name),
            mtu,
            notes,
        })
    }

    async fn detach(&self, host: &Net, cont: &Net, rec: &Record) -> Result<()> {
        detach_record(host, cont, rec).await
    }
}

/// Undo an OVS attachment from its record: the port row first (so vswitchd
/// stops using the device), then the veth. Idempotent.
pub async fn detach_record(host: &Net, cont: &Net, rec: &Record) -> Result<()> {
    let port = rec.x.ovs_port.clone().or_else(|| rec.hi.clone());
    let socket = match rec.x.ovsdb.as_deref() {
        Some(db) => ovsdb::socket_path(Some(db))?,
        None => ovsdb::socket_path(None)?,
    };
    if host.dry_run {
        if let Some(port) = &port {
            show!(
                "ovs-vsctl --db=unix:{} --if-exists del-port {port}",
                socket.display()
            );
        }
        return delete_leftover(host, cont, rec).await;
    }
    // Remove the rows first, then delete the veth while vswitchd applies
    // the removal: the two waits overlap instead of adding up.
    let mut conn = None;
    let mut next_cfg = None;
    let mut ovs_err = None;
    if let Some(port) = &port {
        match Connection::connect(&socket).await {
            Ok(mut c) => match ops::remove_port(&mut c, port).await {
                Ok(n) => {
                    next_cfg = n;
                    conn = Some(c);
                }
                Err(e) => ovs_err = Some(e),
            },
            Err(e) => ovs_err = Some(e),
        }
    }
    let applied = async {
        match (conn.as_mut(), next_cfg) {
            (Some(c), Some(n)) => c.wait_applied(n, ovsdb::connection::APPLY_TIMEOUT).await,
            _ => Ok(()),
        }
    };
    let internal = rec.x.mode.as_deref() == Some("internal");
    let (applied, deleted) = if internal {
        // vswitchd owns an internal device and removes it itself; only
        // clean up after it if it could not.
        let applied = applied.await;
        (applied, delete_leftover(host, cont, rec).await)
    } else {
        tokio::join!(applied, delete_leftover(host, cont, rec))
    };
    // The veth is gone even when OVSDB could not be reached; report the
    // OVS failure so the user knows a row may remain.
    deleted?;
    if let Some(e) = ovs_err {
        return Err(e);
    }
    applied
}

/// `detach` for a guest that no longer exists: its veth died with it, but
/// the OVS Port/Interface rows stay behind and vswitchd keeps complaining
/// about them (pipework#143). Remove the rows we recorded for that guest.
/// No OVSDB socket means there is nothing to clean.
pub async fn detach_gone(
    spec: &str,
    ifname: Option<&str>,
    dry_run: bool,
) -> Result<Vec<ops::PortRecord>> {
    let socket = ovsdb::socket_path(None)?;
    if !socket.exists() {
        return Ok(vec![]);
    }
    // The guest is gone either way; an unreachable OVSDB only means we
    // cannot look for its rows, which is worth a warning, not a failure.
    let mut conn = match Connection::connect(&socket).await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("pipework: warning: not checking for stale OVS ports: {e}");
            return Ok(vec![]);
        }
    };
    let mut out = Vec::new();
    for p in ops::list_ports(&mut conn).await? {
        let ids = &p.external_ids;
        // The guest could not be resolved, so nothing live answers to
        // this spec. Its host veth may linger for a moment (the kernel
        // tears dead namespaces down asynchronously) but dies with it.
        if !guest_matches(spec, ids)
            || ifname.is_some_and(|i| ids.get("container_iface").map(String::as_str) != Some(i))
        {
            continue;
        }
        if dry_run {
            show!(
                "ovs-vsctl --db=unix:{} --if-exists del-port {}",
                socket.display(),
                p.name
            );
        } else {
            ops::delete_port(&mut conn, &p.name).await?;
        }
        out.push(p);
    }
    Ok(out)
}

/// Our ports (pipework external_ids) whose device is gone: the guest died
/// without a detach, or a killed attach left the row behind. `ls` lists
/// them as `ovs-stale`, `gc` removes them.
pub async fn stale_ports() -> Vec<ops::PortRecord> {
    all_ports().await.into_iter().filter(is_stale).collect()
}

/// Every port of the default OVSDB (none when there is no OVSDB): what
/// `ls` shows ports' VLANs from, and picks the stale ones of.
pub async fn all_ports() -> Vec<ops::PortRecord> {
    let Ok(socket) = ovsdb::socket_path(None) else {
        return vec![];
    };
    if !socket.exists() {
        return vec![];
    }
    let Ok(mut conn) = Connection::connect(&socket).await else {
        return vec![];
    };
    ops::list_ports(&mut conn).await.unwrap_or_default()
}

/// A port whose guest is gone.
pub fn is_stale(p: &ops::PortRecord) -> bool {
    // A veth's host end dies with its guest; vswitchd only notices
    // (sets `error`) at its next reconfiguration.
    let veth = p.external_ids.get(ops::MODE_KEY).map(String::as_str) == Some("veth");
    p.error.is_some()
        || p.ofport == Some(-1)
        || (veth && !Path::new("/sys/class/net").join(&p.name).exists())
}

/// `gc`: remove the rows of stale ports. Returns (port, bridge) of each
/// one removed, and (port, bridge, error) of each that could not be: one
/// stuck row does not keep the others. Each is removed by the uuid it was
/// read with: a port an attach re-created under the same name since is a
/// new row, and stays.
pub async fn collect_stale(dry_run: bool) -> (Vec<(String, String)>, Vec<(String, String, Error)>) {
    let stale = stale_ports().await;
    let (mut out, mut stuck) = (Vec::new(), Vec::new());
    if stale.is_empty() {
        return (out, stuck);
    }
    let conn = if dry_run {
        None
    } else {
        match ovsdb::socket_path(None) {
            Ok(socket) => Some(Connection::connect(&socket).await),
            Err(e) => Some(Err(e)),
        }
    };
    let mut conn = match conn {
        None => None,
        Some(Ok(c)) => Some(c),
        Some(Err(e)) => {
            let why = e.to_string();
            for p in stale {
                stuck.push((p.name, p.bridge.unwrap_or_default(), Error::other(&why)));
            }
            return (out, stuck);
        }
    };
    for p in stale {
        let bridge = p.bridge.unwrap_or_default();
        if let Some(c) = conn.as_mut()
            && let Err(e) = ops::delete_port_row(c, &p.uuid).await
        {
            stuck.push((p.name, bridge, e));
            continue;
        }
        out.push((p.name, bridge));
    }
    (out, stuck)
}

/// Whether a guest spec (as given to detach) names the guest these
/// external_ids describe: container name, id prefix, pid or netns name.
fn guest_matches(spec: &str, ids: &BTreeMap<String, String>) -> bool {
    let name = ids.get("pipework.container_name").map(String::as_str);
    let pid = ids.get("pipework.pid").map(String::as_str);
    let id = ids.get("container_id").map(String::as_str);
    let bare = spec
        .strip_prefix("netns:")
        .or_else(|| spec.strip_prefix("pid:"))
        .unwrap_or(spec);
    name == Some(bare)
        || pid == Some(bare)
        || id.is_some_and(|id| spec.len() >= 4 && id.starts_with(spec))
        || spec
            .strip_prefix("/var/run/netns/")
            .or_else(|| spec.strip_prefix("/run/netns/"))
            .is_some_and(|n| name == Some(n))
}

/// The veth (or an internal device vswitchd could not remove because it is
/// down): delete whatever is left, guest end first.
async fn delete_leftover(host: &Net, cont: &Net, rec: &Record) -> Result<()> {
    if let Some(l) = cont.link_by_name(&rec.ifname).await? {
        cont.delete_link(&l).await?;
    } else if let Some(l) = inventory::host_end(host, rec).await? {
        host.delete_link(&l).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gone_guests_match_by_name_id_pid_or_netns() {
        let mut ids = BTreeMap::new();
        ids.insert("pipework.container_name".to_string(), "web1".to_string());
        ids.insert("pipework.pid".to_string(), "4242".to_string());
        ids.insert("container_id".to_string(), "0123456789abcdef".to_string());
        for spec in [
            "web1",
            "netns:web1",
            "/run/netns/web1",
            "4242",
            "pid:4242",
            "01234567",
        ] {
            assert!(guest_matches(spec, &ids), "{spec}");
        }
        for spec in ["web2", "012", "pid:1", "netns:web"] {
            assert!(!guest_matches(spec, &ids), "{spec}");
        }
    }

    #[test]
    fn options_parse_and_name_bad_tokens() {
        let o = OvsOptions::parse(None, Some("10,20-22"), Some("7"), false).unwrap();
        assert_eq!(o.trunks, vec![10, 20, 21, 22]);
        assert_eq!(o.ofport, Some(7));
        assert!(o.any());
        assert!(!OvsOptions::default().any());
        let e = OvsOptions::parse(None, Some("10,5000"), None, false).unwrap_err();
        assert!(e.to_string().starts_with("10,5000:"), "{e}");
        let e = OvsOptions::parse(None, None, Some("0"), false).unwrap_err();
        assert!(e.to_string().starts_with("0:"), "{e}");
        let e = OvsOptions::parse(Some("tcp:1.2.3.4:6640"), None, None, false).unwrap_err();
        assert!(e.to_string().contains("unix:"), "{e}");
    }
}
