//! The kernel side of ADD (and STATUS); DEL is in `detach.rs`, CHECK in
//! `check.rs`, GC in `gc.rs`. ADD and DEL go through the same drivers as
//! `pipework attach`/`detach` (crate::attach, crate::driver); this file
//! only translates the CNI config into an attach request and adds what CNI
//! asks for beyond it (IPAM routes, `isGateway`).
//!
//! The guest name recorded on our links (crate::record::Record `g`) is
//! the attachment's tag (`super::tag`), so DEL without a namespace and GC
//! find the attachment's host side by asking the kernel, with no state
//! files.
use super::env::Env;
use super::error::{CniError, CniResult, code};
use super::types::{AddResult, Interface, NetConf};
use crate::guest::Guest;
use crate::netlink::Net;
use crate::netns::NetNs;
use crate::record::Kind;
use crate::request::{Addressing, AttachRequest, HostMode, format_mac};
use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Bridge,
    Macvlan,
    Ipvlan,
    Phys,
    Ovs,
    Sriov,
    /// A pipework overlay network named like the CNI network (see
    /// crate::overlay); its agent's bridge, an address claimed in etcd.
    Overlay,
}

impl Mode {
    pub fn from_conf(conf: &NetConf) -> CniResult<Self> {
        // A sriov-cni config names no mode; its deviceID says what it is.
        let default = if conf.sriov.device_id.is_some() {
            "sriov"
        } else {
            "bridge"
        };
        Ok(match conf.mode.as_deref().unwrap_or(default) {
            "bridge" => Mode::Bridge,
            "macvlan" => Mode::Macvlan,
            "ipvlan" => Mode::Ipvlan,
            "phys" => Mode::Phys,
            "ovs" => Mode::Ovs,
            "sriov" => Mode::Sriov,
            "overlay" if cfg!(feature = "overlay") => Mode::Overlay,
            "overlay" => {
                return Err(CniError::new(
                    code::UNSUPPORTED_FIELD,
                    "mode: 'overlay': this pipework was built without the overlay",
                    "install a build with the default features (cargo feature `overlay`)",
                ));
            }
            other => {
                return Err(CniError::new(
                    code::UNSUPPORTED_FIELD,
                    format!("mode: '{other}' is not a pipework mode"),
                    "use one of bridge, macvlan, ipvlan, phys, ovs, sriov, overlay",
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
            Mode::Sriov => "sriov",
            Mode::Overlay => "overlay",
        }
    }

    /// Host-side links live in our namespace and are listed in the result
    /// (bridge/switch, then our port on it), as the reference bridge does.
    pub(super) fn has_host_port(self) -> bool {
        matches!(self, Mode::Bridge | Mode::Ovs | Mode::Overlay)
    }

    /// The driver kind (crate::record::Record `k`) this mode must end up with.
    pub(super) fn kind(self) -> &'static str {
        match self {
            // An overlay endpoint is a veth on the agent's Linux bridge.
            Mode::Overlay => "bridge",
            _ => self.name(),
        }
    }

    /// Is this mode's driver compiled in? Every mode names a record kind,
    /// and every kind has a driver: the type system checks it.
    fn require_driver(self) -> CniResult<()> {
        match Kind::from_name(self.kind()) {
            Some(_) => Ok(()),
            None => Err(CniError::new(
                code::UNSUPPORTED_FIELD,
                format!(
                    "mode: '{}' is not available in this build of pipework",
                    self.name()
                ),
                "use mode 'bridge'",
            )),
        }
    }
}

/// The host interface and driver selection for a mode.
pub(crate) fn host_and_mode(conf: &NetConf, mode: Mode) -> CniResult<(String, HostMode)> {
    let master = || {
        conf.master.clone().ok_or_else(|| {
            CniError::config(format!(
                "mode '{}' needs \"master\": the host interface to attach to",
                mode.name()
            ))
        })
    };
    Ok(match mode {
        Mode::Bridge => (
            conf.bridge.clone().unwrap_or_else(|| "cni0".into()),
            HostMode::Auto,
        ),
        Mode::Ovs => (
            conf.bridge.clone().ok_or_else(|| {
                CniError::config("mode 'ovs' needs \"bridge\": the Open vSwitch bridge")
            })?,
            HostMode::Auto,
        ),
        Mode::Macvlan => (
            master()?,
            HostMode::Macvlan(conf.macvlan_mode.clone().unwrap_or_else(|| "bridge".into())),
        ),
        Mode::Ipvlan => (
            master()?,
            HostMode::Ipvlan(conf.ipvlan_mode.clone().unwrap_or_else(|| "l2".into())),
        ),
        Mode::Phys => (master()?, HostMode::DirectPhys),
        Mode::Sriov => (sriov_host(conf)?, HostMode::Auto),
        Mode::Overlay => (overlay_bridge(&conf.name), HostMode::Auto),
    })
}

/// The VF a sriov config names, in the CLI's words: its PCI address, or
/// `vf:MASTER[:VF]`.
fn sriov_host(conf: &NetConf) -> CniResult<String> {
    let s = &conf.sriov;
    match (&s.device_id, &conf.master) {
        (Some(id), _) if crate::sriov::sysfs::is_pci_address(id) => Ok(id.clone()),
        (Some(id), _) => Err(CniError::config(format!(
            "deviceID: '{id}' is not a PCI address (dddd:bb:dd.f)"
        ))),
        (None, Some(m)) => Ok(match s.vf {
            Some(i) => format!("vf:{m}:{i}"),
            None => format!("vf:{m}"),
        }),
        (None, None) => Err(CniError::config(
            "mode 'sriov' needs \"deviceID\" (the VF's PCI address) or \"master\" (its PF) with an optional \"vf\"",
        )),
    }
}

/// sriov-cni's VF properties as the CLI's options.
fn sriov_options(conf: &NetConf) -> CniResult<crate::sriov::Options> {
    let s = &conf.sriov;
    crate::sriov::Options::parse(&crate::sriov::RawOptions {
        spoofchk: s.spoofchk.as_deref(),
        trust: s.trust.as_deref(),
        link_state: s.link_state.as_deref(),
        min_tx_rate: s.min_tx_rate,
        max_tx_rate: s.max_tx_rate,
        vlan_qos: s.vlan_qos,
        vlan_proto: s.vlan_proto.as_deref(),
    })
    .map_err(|e| CniError::config(e.to_string()))
}

/// A bound checked before anything is opened: even the smallest record
/// (one-letter names, no extras) spends about 90 of the alias's 255 bytes
/// on its keys, namespace inode, builder pid and signature, so a longer
/// tag never fits. A 64-hex container ID takes 43 bytes of it
/// (`super::tag`). Whether a tag fits is then measured on the record the
/// driver will write (`super::fits`, `Plumber::record_fits`).
const MAX_TAG: usize = 150;

pub(super) fn runtime() -> CniResult<tokio::runtime::Runtime> {
    crate::rt::current().map_err(|e| {
        CniError::new(
            code::INTERNAL,
            "cannot start the async runtime",
            e.to_string(),
        )
    })
}

pub(super) fn open_netns(path: &str) -> CniResult<NetNs> {
    NetNs::open(Path::new(path)).map_err(|e| {
        CniError::new(
            code::UNKNOWN_CONTAINER,
            format!("CNI_NETNS={path} is not an open network namespace"),
            e.to_string(),
        )
    })
}

pub(super) fn mismatch(msg: String) -> CniError {
    CniError::new(code::CHECK_MISMATCH, msg, "")
}

/// Checked before IPAM runs, so a doomed ADD leaves no lease behind.
pub struct Plumber {
    rt: tokio::runtime::Runtime,
    guest: Guest,
    req: AttachRequest,
    mode: Mode,
    /// Netlink handles opened for the checks, reused for the extras.
    host: Net,
    cont: Net,
    /// What `link` built.
    built: Option<crate::driver::HostSide>,
}

/// Everything that can fail without changing anything: mode and keys, MAC,
/// the namespace, and that `CNI_IFNAME` is free inside it.
pub fn preflight(env: &Env, conf: &NetConf, mode: Mode) -> CniResult<Plumber> {
    let (host, host_mode) = host_and_mode(conf, mode)?;
    mode.require_driver()?;
    // An overlay's bridge uses the bridge driver too, but routes and
    // isolates through netfilter and conntrack: never bypass them.
    if conf.tc_redirect && mode != Mode::Bridge {
        return Err(CniError::config(format!(
            "tcRedirect: only mode 'bridge' has it, not '{}'; remove the key",
            mode.name()
        )));
    }
    let mac = conf
        .wanted_mac(env.arg("MAC"))
        .map(|m| crate::request::parse_mac(&m).map_err(|e| CniError::config(format!("mac: {e}"))))
        .transpose()?;
    let tag = super::tag::encode(&conf.name, &env.container_id, &env.ifname);
    // The tag lives in the link's record, inside the kernel's 255-byte
    // alias, next to the driver's own fields.
    if tag.len() > MAX_TAG {
        return Err(CniError::config(format!(
            "network name '{}' with CNI_CONTAINERID ({}) and CNI_IFNAME '{}' is too long to record on the link ({} bytes, at most {MAX_TAG}); {}",
            conf.name,
            super::fits::recorded_id(&tag),
            env.ifname,
            tag.len(),
            super::fits::shorten(&tag, tag.len() - MAX_TAG),
        )));
    }
    let netns = open_netns(&env.netns)?;
    let rt = runtime()?;
    let guest = Guest {
        netns,
        name: tag,
        // For the drivers (OVS rows' container_id); the record leaves it
        // out (`record_no_id`).
        id: Some(env.container_id.clone()),
        pid: None,
    };
    let (host_net, cont_net) = rt.block_on(async {
        let cont = Net::new(Some(&guest.netns), false)?;
        let h = Net::new(None, false)?;
        if cont.link_by_name(&env.ifname).await?.is_some() {
            return Err(CniError::new(
                code::INTERFACE_EXISTS,
                format!("interface {} already exists in {}", env.ifname, env.netns),
                "pick another CNI_IFNAME, or DEL the previous attachment first",
            ));
        }
        // Overlay: the agent builds the bridge once this host claims an
        // address on the network (cni::overlay waits for it then).
        if mode == Mode::Bridge
            && let Some(l) = h.link_by_name(&host).await?
            && !l.is_bridge()
        {
            return Err(CniError::config(format!(
                "bridge: '{host}' exists and is a {} link, not a Linux bridge",
                l.kind.as_deref().unwrap_or("physical")
            )));
        }
        CniResult::Ok((h, cont))
    })?;
    // sriov-cni's "vlan": 0 means untagged.
    let vlan = match mode {
        Mode::Sriov => conf.vlan.filter(|v| *v != 0),
        _ => conf.vlan,
    };
    let sriov = match mode {
        Mode::Sriov => sriov_options(conf)?,
        _ => Default::default(),
    };
    let req = AttachRequest {
        host,
        guest: env.netns.clone(),
        ifname: env.ifname.clone(),
        host_ifname: None,
        addressing: Addressing::None,
        mac,
        vlan,
        sriov,
        mtu: conf.mtu,
        // The overlay's bridge is the agent's: never create a plain one.
        create: mode != Mode::Overlay,
        // The overlay's bridge routes (gateway, masquerade), and so does
        // one that `isGateway` gives an address (after the link is built,
        // too late for the driver to see it): keep conntrack. Else the
        // config's own `keepConntrack` decides.
        keep_conntrack: mode == Mode::Overlay || conf.is_gateway || conf.keep_conntrack,
        // Only mode bridge gets here with it (checked above).
        tc_redirect: conf.tc_redirect,
        mode: host_mode,
        json: false,
        dry_run: false,
        extras: Default::default(),
        // The tag holds the whole container ID: a short id would only
        // repeat 20 bytes of it (a dual-stack overlay record, or a bridge
        // one with a VLAN and a 32-byte network name, fits only without).
        record_no_id: true,
        ovs: crate::driver::ovs::OvsOptions {
            db: conf.socket_file.clone().filter(|_| mode == Mode::Ovs),
            ..Default::default()
        },
        ..Default::default()
    };
    let plumber = Plumber {
        rt,
        guest,
        req,
        mode,
        host: host_net,
        cont: cont_net,
        built: None,
    };
    // An overlay's record is measured with its addresses, once claimed.
    if mode != Mode::Overlay {
        plumber.record_fits(&[], None)?;
    }
    Ok(plumber)
}

/// The agent's bridge for an overlay network (`ov-NET`).
#[cfg(feature = "overlay")]
fn overlay_bridge(net: &str) -> String {
    crate::overlay::names::bridge(net)
}

/// Never asked: `Mode::Overlay` is refused at parse time without the overlay.
#[cfg(not(feature = "overlay"))]
fn overlay_bridge(net: &str) -> String {
    net.to_string()
}

impl Plumber {
    /// The overlay's additions before `link`: the MAC and MTU it derives,
    /// and the claimed address signed into the record (what DEL releases).
    #[cfg(feature = "overlay")]
    pub(super) fn overlay_link(&mut self, ips: &[std::net::IpAddr], mtu: u32) {
        self.req.mac = Some(crate::overlay::names::mac_of(ips));
        for ip in ips {
            match ip {
                std::net::IpAddr::V4(a) => self.req.record_extras.overlay_ip = Some(*a),
                std::net::IpAddr::V6(a) => self.req.record_extras.overlay_ip6 = Some(*a),
            }
        }
        self.req.mtu = Some(self.req.mtu.unwrap_or(mtu));
    }

    /// Whether this attachment's link record, as `link` will seal it
    /// (with an overlay's addresses `ips`, on what `network` describes),
    /// fits the kernel's 255-byte alias: checked before anything is built
    /// (the kernel refuses a longer alias only once the link exists), so
    /// the ADD fails in one line and an overlay caller gives the addresses
    /// back. The fields are those the driver will write (`super::fits`).
    pub(super) fn record_fits(
        &self,
        ips: &[std::net::IpAddr],
        network: Option<&str>,
    ) -> CniResult<()> {
        let ino = self.guest.netns.inode()?;
        let vf = (self.mode == Mode::Sriov)
            .then(|| super::fits::vf_of(&self.req.host))
            .flatten();
        let rec = super::fits::planned(&self.req, self.mode, &self.guest.name, ino, ips, vf);
        super::fits::check(&rec, self.mode, network)
    }

    #[cfg(feature = "overlay")]
    pub(super) fn runtime(&self) -> &tokio::runtime::Runtime {
        &self.rt
    }

    /// The host end built by `link`.
    #[cfg(feature = "overlay")]
    pub(super) fn host_ifname(&self) -> Option<String> {
        self.built.as_ref().and_then(|b| b.host_ifname.clone())
    }

    /// Build the link with the CLI's drivers. With `ip`, its addresses go
    /// into the attach request; without (delegated IPAM, which may need the
    /// link first, e.g. dhcp) the link comes up bare and `finish` adds them.
    pub fn link(&mut self, ip: Option<&AddResult>) -> CniResult<()> {
        if let Some(ip) = ip.filter(|ip| !ip.ips.is_empty()) {
            // Gateways become routes only where IPAM lists a route: CNI
            // semantics, unlike the CLI's `ip@gw` which sets a default.
            self.req.addressing = Addressing::Static {
                addrs: ip.ips.iter().map(|i| i.address).collect(),
                gateways: vec![],
            };
        }
        let (req, guest, mode) = (&self.req, &self.guest, self.mode);
        let report = self.rt.block_on(crate::attach::attach_to(req, guest))?;
        // The CLI picks a driver from what the host interface is; CNI asked
        // for one explicitly (e.g. "ovs" must not become a new Linux
        // bridge), so a different pick is undone and refused.
        if report.host.kind != mode.kind() {
            self.undo();
            return Err(CniError::config(format!(
                "mode '{}': '{}' is handled by the {} driver here; check \"mode\" and the interface name",
                mode.name(),
                req.host,
                report.host.kind
            )));
        }
        self.built = Some(report.host);
        Ok(())
    }

    /// After `link`: addresses (if `link` did not apply them), IPAM routes,
    /// `isGateway`, and the interface list, container's last. Undoes the
    /// link on failure.
    pub fn finish(&self, env: &Env, conf: &NetConf, ip: &AddResult) -> CniResult<Vec<Interface>> {
        let Some(hs) = &self.built else {
            return Err(CniError::new(code::INTERNAL, "finish before link", ""));
        };
        let applied = matches!(self.req.addressing, Addressing::Static { .. });
        let r = self.rt.block_on(async {
            if !applied {
                add_addresses(&self.cont, &self.guest, &env.ifname, ip).await?;
            }
            extras(&self.host, &self.cont, conf, self.mode, hs, ip, env).await
        });
        if r.is_err() {
            self.undo();
        }
        r
    }

    /// `pipework-dhcp` IPAM: a lease from our own client on the container
    /// link (which `link` created), kept alive by a lease keeper.
    pub fn dhcp_lease(&self, env: &Env) -> CniResult<AddResult> {
        let ns = &self.guest.netns;
        self.rt.block_on(async {
            let opts = crate::dhcp::DhcpOptions {
                hostname: None,
                ..Default::default()
            };
            let lease = crate::dhcp::acquire(ns, &env.ifname, &opts)
                .await
                .map_err(|e| CniError::new(code::IPAM, e.to_string(), ""))?;
            crate::dhcp::keeper::spawn(ns, &env.ifname, &lease, &opts)
                .await
                .map_err(|e| CniError::new(code::IPAM, e.to_string(), ""))?;
            super::ipam::lease_result(&lease)
        })
    }

    /// Remove what `link` built (and release a lease we took on it).
    pub fn undo(&self) {
        let _ = self.rt.block_on(crate::dhcp::keeper::release(
            &self.guest.netns,
            &self.req.ifname,
        ));
        let ino = self.guest.netns.inode().unwrap_or(0);
        let r = self.rt.block_on(super::undo::detach(
            &self.host,
            Some((&self.cont, ino)),
            &self.guest.name,
            None,
        ));
        if let Err(e) = r {
            eprintln!("pipework (cni): rollback after failed ADD: {e}");
        }
    }
}

/// Addresses from a delegated IPAM result, with the same netlink op and
/// neighbour announcement the CLI's addressing uses.
async fn add_addresses(cont: &Net, guest: &Guest, ifname: &str, ip: &AddResult) -> CniResult<()> {
    let link = cont
        .link_by_name(ifname)
        .await?
        .ok_or_else(|| CniError::new(code::KERNEL, format!("{ifname} vanished"), ""))?;
    let addrs: Vec<_> = ip.ips.iter().map(|i| i.address).collect();
    for a in &addrs {
        cont.add_addr(&link, *a).await?;
    }
    crate::address::announce_all(&guest.netns, &link, &addrs);
    Ok(())
}

async fn extras(
    host: &Net,
    cont: &Net,
    conf: &NetConf,
    mode: Mode,
    hs: &crate::driver::HostSide,
    ip: &AddResult,
    env: &Env,
) -> CniResult<Vec<Interface>> {
    let gl = cont
        .link_by_name(&env.ifname)
        .await?
        .ok_or_else(|| CniError::new(code::KERNEL, format!("{} vanished", env.ifname), ""))?;
    add_routes(cont, gl.index, ip).await?;
    let mut out = Vec::new();
    if mode.has_host_port() {
        let br = host.link_by_name(&hs.host).await?;
        if conf.is_gateway
            && let Some(br) = &br
        {
            for one in &ip.ips {
                let Some(gw) = one.gateway else { continue };
                let net = ipnetwork::IpNetwork::new(gw, one.address.prefix())
                    .map_err(|e| CniError::config(format!("gateway {gw}: {e}")))?;
                // Shared by every container on the bridge: already there is fine.
                match host.add_addr(br, net).await {
                    Err(e) if e.errno() != Some(libc::EEXIST) => return Err(e.into()),
                    _ => {}
                }
            }
        }
        let port = match &hs.host_ifname {
            Some(n) => host.link_by_name(n).await?,
            None => None,
        };
        for l in br.iter().chain(port.iter()) {
            out.push(Interface {
                name: l.name.clone(),
                mac: format_mac(&l.mac),
                mtu: Some(l.mtu),
                ..Default::default()
            });
        }
    }
    out.push(Interface {
        name: gl.name.clone(),
        mac: format_mac(&gl.mac),
        mtu: Some(gl.mtu),
        sandbox: env.netns.clone(),
        ..Default::default()
    });
    Ok(out)
}

/// IPAM routes. A route without `gw` goes via the gateway of the first
/// address of its family, as the reference plugins do; with neither it is
/// on-link.
async fn add_routes(cont: &Net, index: u32, ip: &AddResult) -> CniResult<()> {
    for r in &ip.routes {
        let gw = r.gw.or_else(|| {
            ip.ips
                .iter()
                .filter(|i| i.address.is_ipv4() == r.dst.is_ipv4())
                .find_map(|i| i.gateway)
        });
        let spec = crate::netlink::route::RouteSpec {
            dst: r.dst,
            gw,
            priority: r.priority,
            table: r.table,
        };
        cont.add_route(index, &spec).await.map_err(|e| match e {
            crate::Error::BadInput { .. } => CniError::config(format!("route {e}")),
            e => CniError::from(e),
        })?;
    }
    Ok(())
}

/// STATUS: can we service ADD? The bridge is created on demand; modes with
/// a parent need it present on the host.
pub fn status(conf: &NetConf, mode: Mode) -> CniResult<()> {
    let (host, _) = host_and_mode(conf, mode)?;
    mode.require_driver()
        .map_err(|e| CniError::new(code::NOT_AVAILABLE, e.msg, e.details))?;
    if mode == Mode::Bridge {
        return Ok(());
    }
    let present = runtime()?.block_on(async {
        let h = Net::new(None, false)?;
        CniResult::Ok(h.link_by_name(&host).await?.is_some())
    })?;
    if present {
        Ok(())
    } else {
        Err(CniError::new(
            code::NOT_AVAILABLE,
            format!(
                "host interface '{host}' for mode '{}' does not exist",
                mode.name()
            ),
            "",
        ))
    }
}
