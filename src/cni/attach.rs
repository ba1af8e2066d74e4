//! The kernel side of the CNI verbs: build, remove, verify and collect
//! attachments.
//!
//! Every attachment's host-side link carries an alias
//! `pipework-cni NETWORK/CONTAINERID/IFNAME`, so DEL without a namespace and
//! GC find what belongs to whom by asking the kernel, with no state files.
use super::env::Env;
use super::error::{CniError, CniResult, code};
use super::types::{AddResult, Attachment, Interface, NetConf};
use crate::netlink::Journal;
use crate::netns::NetNs;
use futures::TryStreamExt;
use ipnetwork::IpNetwork;
use md5::{Digest, Md5};
use netlink_packet_route::link::{InfoData, InfoVeth, LinkAttribute, LinkInfo, LinkMessage};
use netlink_packet_route::route::{RouteAddress, RouteAttribute};
use rtnetlink::{
    Handle, LinkBridge, LinkMessageBuilder, LinkUnspec, LinkVeth, RouteMessageBuilder,
};
use std::net::IpAddr;
use std::os::fd::AsRawFd;
use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Bridge,
    Macvlan,
    Ipvlan,
    Phys,
    Ovs,
}

impl Mode {
    pub fn from_conf(conf: &NetConf) -> CniResult<Self> {
        Ok(match conf.mode.as_deref().unwrap_or("bridge") {
            "bridge" => Mode::Bridge,
            "macvlan" => Mode::Macvlan,
            "ipvlan" => Mode::Ipvlan,
            "phys" => Mode::Phys,
            "ovs" => Mode::Ovs,
            other => {
                return Err(CniError::new(
                    code::UNSUPPORTED_FIELD,
                    format!("mode: '{other}' is not a pipework mode"),
                    "use one of bridge, macvlan, ipvlan, phys, ovs",
                ));
            }
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Mode::Bridge => "bridge",
            Mode::Macvlan => "macvlan",
            Mode::Ipvlan => "ipvlan",
            Mode::Phys => "phys",
            Mode::Ovs => "ovs",
        }
    }

    /// Modes whose driver is not in this build yet fail clearly, with the
    /// spec's "unsupported field" code naming the key and value.
    fn require_available(self) -> CniResult<()> {
        match self {
            Mode::Bridge => Ok(()),
            other => Err(CniError::new(
                code::UNSUPPORTED_FIELD,
                format!(
                    "mode: '{}' is not available in this build of pipework",
                    other.name()
                ),
                "use mode 'bridge'",
            )),
        }
    }
}

const TAG_PREFIX: &str = "pipework-cni ";

fn tag(net: &str, cid: &str, ifname: &str) -> String {
    format!("{TAG_PREFIX}{net}/{cid}/{ifname}")
}

/// (network, containerID, ifname) from a host link's alias.
fn parse_tag(alias: &str) -> Option<(&str, &str, &str)> {
    let mut it = alias.strip_prefix(TAG_PREFIX)?.splitn(3, '/');
    Some((it.next()?, it.next()?, it.next()?))
}

/// Host veth name: stable for an attachment so a retried DEL finds it even
/// if setting the alias never happened.
fn host_veth_name(net: &str, cid: &str, ifname: &str) -> String {
    let mut h = Md5::new();
    h.update(format!("{net}/{cid}/{ifname}").as_bytes());
    let d = h.finalize();
    format!("veth{:02x}{:02x}{:02x}{:02x}", d[0], d[1], d[2], d[3])
}

fn bridge_name(conf: &NetConf) -> &str {
    conf.bridge.as_deref().unwrap_or("cni0")
}

fn runtime() -> CniResult<tokio::runtime::Runtime> {
    // One thread is plenty for a handful of netlink round trips, and it
    // starts far faster than the multi-threaded runtime.
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            CniError::new(
                code::INTERNAL,
                "cannot start the async runtime",
                e.to_string(),
            )
        })
}

fn open_netns(path: &str) -> CniResult<NetNs> {
    NetNs::open(Path::new(path)).map_err(|e| {
        CniError::new(
            code::UNKNOWN_CONTAINER,
            format!("CNI_NETNS={path} is not an open network namespace"),
            e.to_string(),
        )
    })
}

fn nl(ctx: &str, e: rtnetlink::Error) -> CniError {
    crate::Error::netlink(ctx, e).into()
}

fn errno_of(e: &rtnetlink::Error) -> i32 {
    match e {
        rtnetlink::Error::NetlinkError(m) => m.raw_code().abs(),
        _ => 0,
    }
}

pub fn parse_mac(s: &str) -> CniResult<[u8; 6]> {
    let bad = || {
        CniError::config(format!(
            "mac: '{s}' is not a MAC address, expected six hex pairs like 02:42:ac:11:00:02"
        ))
    };
    let mut mac = [0u8; 6];
    let parts: Vec<&str> = s.split(':').collect();
    if parts.len() != 6 {
        return Err(bad());
    }
    for (i, p) in parts.iter().enumerate() {
        if p.len() != 2 {
            return Err(bad());
        }
        mac[i] = u8::from_str_radix(p, 16).map_err(|_| bad())?;
    }
    if mac[0] & 1 == 1 {
        return Err(CniError::config(format!(
            "mac: '{s}' is a multicast address; use a unicast one such as 02:…"
        )));
    }
    Ok(mac)
}

fn fmt_mac(b: &[u8]) -> String {
    b.iter()
        .map(|x| format!("{x:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// A link as far as we care: index, name, MAC, MTU, alias, controller, kind.
#[derive(Debug, Clone, Default)]
struct L {
    index: u32,
    name: String,
    mac: String,
    mtu: Option<u32>,
    alias: String,
    controller: Option<u32>,
    kind: Option<String>,
}

impl From<LinkMessage> for L {
    fn from(m: LinkMessage) -> Self {
        let mut l = L {
            index: m.header.index,
            ..Default::default()
        };
        for a in m.attributes {
            match a {
                LinkAttribute::IfName(n) => l.name = n,
                LinkAttribute::Address(a) => l.mac = fmt_mac(&a),
                LinkAttribute::Mtu(m) => l.mtu = Some(m),
                LinkAttribute::IfAlias(a) => l.alias = a,
                LinkAttribute::Controller(c) => l.controller = Some(c),
                LinkAttribute::LinkInfo(infos) => {
                    for i in infos {
                        if let LinkInfo::Kind(k) = i {
                            l.kind = Some(k.to_string());
                        }
                    }
                }
                _ => {}
            }
        }
        l
    }
}

async fn link(h: &Handle, name: &str) -> CniResult<Option<L>> {
    let mut s = h.link().get().match_name(name.to_string()).execute();
    match s.try_next().await {
        Ok(m) => Ok(m.map(L::from)),
        Err(e) if errno_of(&e) == libc::ENODEV => Ok(None),
        Err(e) => Err(nl(&format!("looking up {name}"), e)),
    }
}

async fn links(h: &Handle) -> CniResult<Vec<L>> {
    h.link()
        .get()
        .execute()
        .map_ok(L::from)
        .try_collect()
        .await
        .map_err(|e| nl("listing links", e))
}

async fn delete(h: &Handle, index: u32) -> CniResult<()> {
    match h.link().del(index).execute().await {
        Err(e) if errno_of(&e) != libc::ENODEV => Err(nl("deleting link", e)),
        _ => Ok(()),
    }
}

/// State kept between the checks done before IPAM and the ADD itself.
pub struct Plumber {
    rt: tokio::runtime::Runtime,
    ns: NetNs,
    mode: Mode,
    mac: Option<[u8; 6]>,
}

/// Everything that can fail without changing anything: mode, MAC, the
/// namespace, and that `CNI_IFNAME` is free inside it.
pub fn preflight(env: &Env, conf: &NetConf, mode: Mode) -> CniResult<Plumber> {
    mode.require_available()?;
    let mac = conf
        .wanted_mac(env.arg("MAC"))
        .map(|m| parse_mac(&m))
        .transpose()?;
    let ns = open_netns(&env.netns)?;
    let rt = runtime()?;
    let exists = rt.block_on(async {
        let g = crate::netlink::connect(Some(&ns))?;
        link(&g, &env.ifname).await.map(|l| l.is_some())
    })?;
    if exists {
        return Err(CniError::new(
            code::INTERFACE_EXISTS,
            format!("interface {} already exists in {}", env.ifname, env.netns),
            "pick another CNI_IFNAME, or DEL the previous attachment first",
        ));
    }
    Ok(Plumber { rt, ns, mode, mac })
}

impl Plumber {
    /// Build the attachment; on failure everything created is removed.
    /// Returns the interfaces for the result, the container's one last.
    pub fn add(self, env: &Env, conf: &NetConf, ip: &AddResult) -> CniResult<Vec<Interface>> {
        debug_assert_eq!(self.mode, Mode::Bridge);
        self.rt.block_on(async {
            let mut j = Journal::new();
            match add_bridge(env, conf, ip, &self.ns, self.mac, &mut j).await {
                Ok(v) => {
                    j.commit();
                    Ok(v)
                }
                Err(e) => {
                    j.rollback().await;
                    Err(e)
                }
            }
        })
    }
}

async fn add_bridge(
    env: &Env,
    conf: &NetConf,
    ip: &AddResult,
    ns: &NetNs,
    mac: Option<[u8; 6]>,
    j: &mut Journal,
) -> CniResult<Vec<Interface>> {
    let host = crate::netlink::connect(None)?;
    let guest = crate::netlink::connect(Some(ns))?;
    let brname = bridge_name(conf);
    let br = match link(&host, brname).await? {
        Some(b) if b.kind.as_deref() != Some("bridge") => {
            return Err(CniError::config(format!(
                "bridge: '{brname}' exists and is a {} link, not a Linux bridge",
                b.kind.as_deref().unwrap_or("non-bridge")
            )));
        }
        Some(b) => {
            host.link()
                .set(LinkUnspec::new_with_index(b.index).up().build())
                .execute()
                .await
                .map_err(|e| nl(&format!("bringing {brname} up"), e))?;
            b
        }
        None => {
            let mut b = LinkBridge::new(brname).up();
            if let Some(m) = conf.mtu {
                b = b.mtu(m);
            }
            host.link()
                .add(b.build())
                .execute()
                .await
                .map_err(|e| nl(&format!("creating bridge {brname}"), e))?;
            let b = link(&host, brname).await?.ok_or_else(|| {
                CniError::new(code::KERNEL, format!("bridge {brname} vanished"), "")
            })?;
            let (h, idx) = (host.clone(), b.index);
            j.record(format!("bridge {brname}"), async move {
                delete(&h, idx)
                    .await
                    .map_err(|e| crate::Error::other(e.msg))
            });
            b
        }
    };
    if conf.is_gateway {
        for one in ip.ips.iter() {
            if let Some(gw) = one.gateway {
                match host
                    .address()
                    .add(br.index, gw, one.address.prefix())
                    .execute()
                    .await
                {
                    Err(e) if errno_of(&e) != libc::EEXIST => {
                        return Err(nl(&format!("adding gateway {gw} to {brname}"), e));
                    }
                    _ => {}
                }
            }
        }
    }

    let hname = host_veth_name(&conf.name, &env.container_id, &env.ifname);
    let mut peer = LinkMessageBuilder::<LinkUnspec>::new()
        .name(env.ifname.clone())
        .setns_by_fd(ns.fd().as_raw_fd())
        .up();
    let mut hmsg = LinkVeth::new(&hname, &env.ifname).up();
    if let Some(m) = conf.mtu {
        peer = peer.mtu(m);
        hmsg = hmsg.mtu(m);
    }
    if let Some(m) = mac {
        peer = peer.address(m.to_vec());
    }
    let hmsg = hmsg.set_info_data(InfoData::Veth(InfoVeth::Peer(peer.build())));
    match host.link().add(hmsg.build()).execute().await {
        Ok(()) => {}
        Err(e) if errno_of(&e) == libc::EEXIST => {
            return Err(CniError::new(
                code::INTERFACE_EXISTS,
                format!(
                    "host interface {hname} for {}/{} already exists",
                    env.container_id, env.ifname
                ),
                "a previous ADD was not followed by DEL; run DEL for this container first",
            ));
        }
        Err(e) => return Err(nl(&format!("creating veth {hname}"), e)),
    }
    let hl = link(&host, &hname)
        .await?
        .ok_or_else(|| CniError::new(code::KERNEL, format!("veth {hname} vanished"), ""))?;
    {
        let (h, idx) = (host.clone(), hl.index);
        j.record(format!("veth {hname}"), async move {
            delete(&h, idx)
                .await
                .map_err(|e| crate::Error::other(e.msg))
        });
    }
    host.link()
        .set(
            LinkUnspec::new_with_index(hl.index)
                .controller(br.index)
                .alias(tag(&conf.name, &env.container_id, &env.ifname))
                .build(),
        )
        .execute()
        .await
        .map_err(|e| nl(&format!("plugging {hname} into {brname}"), e))?;

    let gl = link(&guest, &env.ifname).await?.ok_or_else(|| {
        CniError::new(
            code::KERNEL,
            format!("{} did not appear in {}", env.ifname, env.netns),
            "",
        )
    })?;
    configure_guest(&guest, gl.index, ip).await?;

    let iface = |l: &L, sandbox: &str| Interface {
        name: l.name.clone(),
        mac: l.mac.clone(),
        mtu: l.mtu,
        sandbox: sandbox.to_string(),
        ..Default::default()
    };
    Ok(vec![iface(&br, ""), iface(&hl, ""), iface(&gl, &env.netns)])
}

/// Addresses, then routes (a gatewayed route needs the on-link prefix the
/// address brings). A route without `gw` goes via the gateway of the first
/// address of its family, as the reference plugins do.
async fn configure_guest(g: &Handle, index: u32, ip: &AddResult) -> CniResult<()> {
    for one in &ip.ips {
        g.address()
            .add(index, one.address.ip(), one.address.prefix())
            .execute()
            .await
            .map_err(|e| nl(&format!("adding address {}", one.address), e))?;
    }
    for r in &ip.routes {
        let gw = r.gw.or_else(|| {
            ip.ips
                .iter()
                .filter(|i| i.address.is_ipv4() == r.dst.is_ipv4())
                .find_map(|i| i.gateway)
        });
        let mut b = RouteMessageBuilder::<IpAddr>::new()
            .destination_prefix(r.dst.network(), r.dst.prefix())
            .map_err(|e| CniError::config(format!("route {}: {e}", r.dst)))?
            .output_interface(index);
        if let Some(gw) = gw {
            b = b
                .gateway(gw)
                .map_err(|e| CniError::config(format!("route {} via {gw}: {e}", r.dst)))?;
        }
        if let Some(p) = r.priority {
            b = b.priority(p);
        }
        if let Some(t) = r.table {
            b = b.table_id(t);
        }
        g.route()
            .add(b.build())
            .execute()
            .await
            .map_err(|e| nl(&format!("adding route {}", r.dst), e))?;
    }
    Ok(())
}

/// DEL: remove the container's interface if the namespace is still there,
/// then any host-side link tagged for this attachment. Missing is fine.
pub fn del(env: &Env, conf: &NetConf, mode: Mode) -> CniResult<()> {
    if mode.require_available().is_err() {
        // Nothing of ours can exist for a mode this build cannot create.
        return Ok(());
    }
    let rt = runtime()?;
    rt.block_on(async {
        // A namespace that is already gone took the interface with it.
        if !env.netns.is_empty()
            && let Ok(ns) = NetNs::open(Path::new(&env.netns))
        {
            let g = crate::netlink::connect(Some(&ns))?;
            if let Some(l) = link(&g, &env.ifname).await? {
                delete(&g, l.index).await?;
            }
        }
        let host = crate::netlink::connect(None)?;
        let want = tag(&conf.name, &env.container_id, &env.ifname);
        let hname = host_veth_name(&conf.name, &env.container_id, &env.ifname);
        for l in links(&host).await? {
            if l.alias == want || (l.name == hname && l.alias.is_empty()) {
                delete(&host, l.index).await?;
            }
        }
        Ok(())
    })
}

fn mismatch(msg: String) -> CniError {
    CniError::new(code::CHECK_MISMATCH, msg, "")
}

/// CHECK: what prevResult says we built must still be there.
pub fn check(env: &Env, conf: &NetConf, mode: Mode, prev: &AddResult) -> CniResult<()> {
    mode.require_available()?;
    let ns = open_netns(&env.netns)?;
    let idx = prev
        .interface_index(&env.ifname, &env.netns)
        .ok_or_else(|| {
            mismatch(format!(
                "prevResult lists no interface {} in {}",
                env.ifname, env.netns
            ))
        })?;
    let want = &prev.interfaces[idx];
    runtime()?.block_on(async {
        let g = crate::netlink::connect(Some(&ns))?;
        let l = link(&g, &env.ifname).await?.ok_or_else(|| {
            mismatch(format!(
                "interface {} is missing from {}",
                env.ifname, env.netns
            ))
        })?;
        if !want.mac.is_empty() && !want.mac.eq_ignore_ascii_case(&l.mac) {
            return Err(mismatch(format!(
                "{} has MAC {}, prevResult says {}",
                env.ifname, l.mac, want.mac
            )));
        }
        let have: Vec<IpNetwork> = g
            .address()
            .get()
            .set_link_index_filter(l.index)
            .execute()
            .try_filter_map(|m| async move {
                let a = m.attributes.iter().find_map(|a| match a {
                    netlink_packet_route::address::AddressAttribute::Address(ip) => Some(*ip),
                    _ => None,
                });
                Ok(a.and_then(|ip| IpNetwork::new(ip, m.header.prefix_len).ok()))
            })
            .try_collect()
            .await
            .map_err(|e| nl("listing addresses", e))?;
        for one in prev.ips.iter().filter(|i| i.interface == Some(idx)) {
            if !have.contains(&one.address) {
                return Err(mismatch(format!(
                    "{} lacks address {}",
                    env.ifname, one.address
                )));
            }
        }
        let routes: Vec<(IpAddr, u8)> = g
            .route()
            .get(RouteMessageBuilder::<IpAddr>::new().build())
            .execute()
            .map_ok(|m| {
                let dst = m.attributes.iter().find_map(|a| match a {
                    RouteAttribute::Destination(RouteAddress::Inet(v4)) => Some(IpAddr::V4(*v4)),
                    RouteAttribute::Destination(RouteAddress::Inet6(v6)) => Some(IpAddr::V6(*v6)),
                    _ => None,
                });
                let fam_any =
                    if m.header.address_family == netlink_packet_route::AddressFamily::Inet6 {
                        IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED)
                    } else {
                        IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)
                    };
                (dst.unwrap_or(fam_any), m.header.destination_prefix_length)
            })
            .try_collect()
            .await
            .map_err(|e| nl("listing routes", e))?;
        for r in &prev.routes {
            if !routes.contains(&(r.dst.network(), r.dst.prefix())) {
                return Err(mismatch(format!(
                    "route to {} is missing in {}",
                    r.dst, env.netns
                )));
            }
        }
        // Host side: the bridge and our tagged port on it.
        let host = crate::netlink::connect(None)?;
        let brname = bridge_name(conf);
        let br = link(&host, brname)
            .await?
            .ok_or_else(|| mismatch(format!("bridge {brname} is missing")))?;
        let want_tag = tag(&conf.name, &env.container_id, &env.ifname);
        let port = links(&host)
            .await?
            .into_iter()
            .find(|l| l.alias == want_tag);
        match port {
            Some(p) if p.controller == Some(br.index) => Ok(()),
            Some(p) => Err(mismatch(format!(
                "{} is no longer a port of {brname}",
                p.name
            ))),
            None => Err(mismatch(format!(
                "the host side of {}/{} is missing",
                env.container_id, env.ifname
            ))),
        }
    })
}

/// STATUS: can we service ADD? For the bridge mode, always (the bridge is
/// created on demand); modes with a parent need it to exist.
pub fn status(conf: &NetConf, mode: Mode) -> CniResult<()> {
    mode.require_available()
        .map_err(|e| CniError::new(code::NOT_AVAILABLE, e.msg, e.details))?;
    let _ = conf;
    Ok(())
}

/// GC: delete our host-side links for this network whose attachment is
/// not in `cni.dev/valid-attachments`.
pub fn gc(conf: &NetConf, mode: Mode, valid: &[Attachment]) -> CniResult<()> {
    if mode.require_available().is_err() {
        return Ok(());
    }
    runtime()?.block_on(async {
        let host = crate::netlink::connect(None)?;
        let mut first_err = None;
        for l in links(&host).await? {
            let Some((net, cid, ifname)) = parse_tag(&l.alias) else {
                continue;
            };
            let keep = net != conf.name
                || valid
                    .iter()
                    .any(|a| a.container_id == cid && a.ifname == ifname);
            if !keep {
                eprintln!("pipework (cni): GC: removing {} ({cid}/{ifname})", l.name);
                if let Err(e) = delete(&host, l.index).await {
                    first_err.get_or_insert(e);
                }
            }
        }
        first_err.map_or(Ok(()), Err)
    })
}
