//! `pipework overlay agent`: the one resident process per host.
//!
//! It registers the host under an etcd lease (liveness), reserves its
//! addresses under hold leases (ownership; see `lease`), and keeps the
//! kernel (bridge + VXLAN device per network this host uses, FDB and
//! neighbour entries per remote endpoint) equal to what etcd says.
//!
//! Incremental: etcd is read in full (paged, at one revision) at start and
//! after a lost watch only; from then on one watch from that revision
//! feeds an in-memory model (`model`), and each event changes the one or
//! two kernel entries it concerns: O(1) per change, whatever the cluster's
//! size. The full etcd-versus-kernel diff runs at start, on a resync, and
//! when the periodic kernel-side check finds an entry that is not as the
//! model says (an admin's `bridge fdb del`). Whatever happens to etcd, the
//! data plane keeps what it has: the agent never flushes.
use super::crypt;
use super::etcd::EventType;
use super::fdb::{self, Underlay};
use super::lease::{self, Shared};
use super::model::{Model, Touched};
use super::names;
use super::state;
use super::store::{self, Endpoint, EtcdOpts, HostInfo, Store};
use crate::error::{Error, Result};
use crate::netlink::{Link, Net};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

mod peers;
mod tunnel;

/// `pipework overlay agent`'s settings.
#[derive(Debug)]
pub struct AgentArgs {
    /// Interface or local address that carries VXLAN (required when ambiguous).
    pub underlay: Option<String>,
    /// This host's name in etcd [default: the hostname].
    pub name: Option<String>,
    /// Lease TTL in seconds: a dead host's endpoints vanish after this.
    pub ttl: i64,
    pub etcd: EtcdOpts,
    /// Networks whose devices are built even without a local endpoint
    /// ("all": every network). Others are built on a host's first endpoint.
    pub networks: Vec<String>,
    /// UDP port of this host's WireGuard device (encrypted networks).
    pub wg_port: u16,
}

/// How often the kernel is compared with the model (local reads only) and
/// this host's gone containers' addresses are released: 30 s, or
/// `PIPEWORK_OVERLAY_CHECK` seconds.
fn kernel_check_every() -> Duration {
    let s = std::env::var("PIPEWORK_OVERLAY_CHECK")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(30);
    Duration::from_secs(s.clamp(1, 3600))
}
/// A watch silent for this long (no event, no progress notification,
/// which etcd sends every 10 minutes by default) is opened again from the
/// last revision seen: no full read.
const WATCH_SILENCE: Duration = Duration::from_secs(11 * 60);

/// One network's devices on this host and the entries written to them.
struct Dev {
    vx: Link,
    /// MAC → (VTEP, addresses) as last written: what the kernel should
    /// have.
    have: fdb::Desired,
    /// Address → its MAC in `have` (one watch event names one address).
    mac_of: HashMap<IpAddr, [u8; 6]>,
}

impl Dev {
    fn new(vx: Link, have: fdb::Desired) -> Dev {
        let mac_of = have
            .iter()
            .flat_map(|(m, (_, ips))| ips.iter().map(move |ip| (*ip, *m)))
            .collect();
        Dev { vx, have, mac_of }
    }
}

struct Agent {
    sh: Arc<Shared>,
    u: Underlay,
    net: Net,
    st: Store,
    build_all: bool,
    build: HashSet<String>,
    model: Model,
    /// The revision the model is at.
    rev: i64,
    devs: HashMap<String, Dev>,
    /// Networks whose entries a failed write left unsure: diffed in full
    /// at the next kernel check.
    unsure: BTreeSet<String>,
    /// Warnings logged once each: "NET" (MTU), "NET gateway".
    warned: HashSet<String>,
    /// Conflicts already logged (each once).
    conflicts: HashSet<String>,
    /// `PIPEWORK_OVERLAY_STATS`: a file rewritten after each watch message
    /// with the bytes read from etcd and the events applied (benchmarks).
    stats: Option<std::path::PathBuf>,
    events: u64,
    /// The VXLAN guard as last written: ports of the networks built here,
    /// underlay addresses of the registered hosts, encrypted networks'
    /// (VNI, port) (None: not written).
    guarded: Option<(BTreeSet<u16>, BTreeSet<IpAddr>, Sealed)>,
    /// The egress table as last written (None: not written).
    routed: Option<Vec<crate::firewall::Routed>>,
    /// Networks built here with no container of theirs, only to route
    /// to or from an `--allow-from` peer used here (`Model::peer_used`):
    /// their devices go again with that last need.
    routes: BTreeSet<String>,
    /// This host's WireGuard keys and port; None when the kernel has no
    /// WireGuard (encrypted networks are then not built here).
    wg: Option<(crypt::Keys, u16)>,
    /// The WireGuard device while an encrypted network is built here, as
    /// the underlay of those networks' VXLAN devices.
    tunnel: Option<Underlay>,
    /// Peers as last written: host → peer.
    peers: HashMap<String, crate::netlink::wg::PeerSpec>,
}

fn log(msg: impl std::fmt::Display) {
    eprintln!("pipework overlay agent: {msg}");
}

/// Turn a forwarding sysctl on (never off: others may rely on it).
fn forwarding_on(f: &str, name: &str) {
    if std::fs::read_to_string(f).is_ok_and(|v| v.trim() != "1") {
        match std::fs::write(f, "1") {
            Ok(()) => log(format_args!(
                "{name} turned on (egress through the gateway)"
            )),
            Err(e) => log(format_args!("turning {name} on: {e}")),
        }
    }
}

/// Encrypted networks' (VNI, VXLAN port): taken from the tunnel only.
type Sealed = BTreeSet<(u32, u16)>;

pub async fn run(a: AgentArgs) -> Result<()> {
    if !(2..=3600).contains(&a.ttl) {
        return Err(Error::bad(a.ttl, "--ttl takes 2-3600 seconds"));
    }
    let host = match &a.name {
        Some(n) => n.clone(),
        None => std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|s| s.trim().to_string())
            .unwrap_or_default(),
    };
    if host.is_empty() || host.len() > 64 || host.contains('/') {
        return Err(Error::bad(
            &host,
            "host name must be 1-64 characters without '/'; pass --name",
        ));
    }
    for n in a.networks.iter().filter(|n| *n != "all") {
        names::check_name(n)?;
    }
    if a.wg_port == 0 {
        return Err(Error::bad(0, "--wg-port must be 1-65535"));
    }
    let u = super::underlay::resolve(a.underlay.as_deref()).await?;
    let net = Net::new(None, false)?;
    let wg = if crate::netlink::wg::available() {
        Some((crypt::load_or_create()?, a.wg_port))
    } else {
        None
    };
    // etcd may be away (a restart during a partition): wait for it, the
    // data plane untouched meanwhile, instead of exiting.
    let mut wait = Duration::from_millis(200);
    let (st, lease, reused) = loop {
        let got = async {
            let st = Store::connect(&a.etcd).await?;
            let (lease, reused) = acquire_lease(&st, &host, a.ttl).await?;
            Ok::<_, Error>((st, lease, reused))
        }
        .await;
        match got {
            Ok(v) => break v,
            Err(e @ Error::BadInput { .. }) => return Err(e),
            Err(e) => {
                log(format_args!("{e}; trying again, data plane untouched"));
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(5));
            }
        }
    };
    let sh = Arc::new(Shared {
        host: host.clone(),
        etcd: a.etcd.clone(),
        ttl: a.ttl,
        lease: lease.into(),
        // A new lease (the previous agent's lapsed: it died more than a
        // TTL ago) took this host's endpoints with it: publish them again
        // from the kernel before anything else, as after a renewal.
        renewed: (!reused).into(),
        hold: Default::default(),
        reached_again: 0.into(),
    });
    if let Some(prev) = state::load().filter(|p| p.host == host) {
        sh.adopt_holds(&st, &prev.hold).await;
    }
    // The state first: once the host shows up in etcd, an attach on this
    // host may run, and it reads the leases from here.
    sh.save()?;
    let mut ag = Agent {
        sh: sh.clone(),
        u,
        net,
        st,
        build_all: a.networks.iter().any(|n| n == "all"),
        build: a.networks.iter().cloned().collect(),
        model: Model::default(),
        rev: 0,
        devs: HashMap::new(),
        unsure: BTreeSet::new(),
        warned: HashSet::new(),
        conflicts: HashSet::new(),
        stats: std::env::var_os("PIPEWORK_OVERLAY_STATS").map(Into::into),
        events: 0,
        guarded: None,
        routed: None,
        routes: BTreeSet::new(),
        wg,
        tunnel: None,
        peers: HashMap::new(),
    };
    ag.register().await?;
    log(format_args!(
        "host {} underlay {} {} mtu {}, lease {lease:x} ttl {}s",
        host, ag.u.ifname, ag.u.ip, ag.u.mtu, a.ttl
    ));
    match &ag.wg {
        Some((k, port)) => log(format_args!(
            "WireGuard: public key {} port {port} tunnel address {}",
            k.public,
            crypt::inner_of(&k.public_bytes())
        )),
        None => log(format_args!(
            "this kernel has no WireGuard (module {}): encrypted networks are not built here",
            crate::netlink::wg::MODULE
        )),
    }
    tokio::spawn(lease::keepalive(sh));
    ag.main_loop().await
}

/// Reuse the lease of this host's previous agent while it is still alive:
/// a restart then never lets the endpoints lapse. Otherwise grant one.
/// Says whether the lease was reused.
async fn acquire_lease(st: &Store, host: &str, ttl: i64) -> Result<(i64, bool)> {
    if let Some(prev) = state::load()
        && prev.host == host
        && st.lease_ttl(prev.lease).await? > 0
    {
        return Ok((prev.lease, true));
    }
    if let Some(v) = st.get(&store::host_key(host)).await? {
        let other: HostInfo = store::decode(&store::host_key(host), &v)?;
        return Err(Error::bad(
            host,
            format!(
                "host name is held by another live agent (underlay {}); pass --name, or wait {ttl}s if that agent died",
                other.underlay
            ),
        ));
    }
    Ok((st.lease_grant(ttl).await?, false))
}

/// The overlay addresses of this host's attachments (read once per pass);
/// `None` when some namespace could not be scanned (logged once): then no
/// one can say an address is unheld.
async fn local_ips(cache: &mut Option<Option<Vec<IpAddr>>>) -> Option<&[IpAddr]> {
    if cache.is_none() {
        *cache = Some(
            match crate::inventory::attachments_everywhere_complete().await {
                Ok(found) => Some(
                    found
                        .into_iter()
                        .flat_map(|f| super::attach::ovip_of(&f.rec))
                        .collect(),
                ),
                Err(e) => {
                    log(format_args!("sweep: releasing nothing this pass: {e}"));
                    None
                }
            },
        );
    }
    cache.as_ref().and_then(|c| c.as_deref())
}

impl Agent {
    fn me(&self) -> &str {
        &self.sh.host
    }

    async fn register(&self) -> Result<()> {
        let info = HostInfo {
            name: self.sh.host.clone(),
            underlay: self.u.ip,
            underlay_if: self.u.ifname.clone(),
            underlay_mtu: self.u.mtu,
            lease: self.sh.lease.load(Ordering::SeqCst),
            wg: self.wg.as_ref().map(|(k, port)| crypt::record(k, *port)),
        };
        self.st
            .put(
                "registering host",
                &store::host_key(&self.sh.host),
                &store::encode(&info),
                Some(info.lease),
            )
            .await
    }

    /// List once, then watch. A lost watch revision (compaction, cancel)
    /// lists again; a broken stream only watches again from the last
    /// revision seen. The kernel is left as is meanwhile.
    async fn main_loop(&mut self) -> Result<()> {
        let mut backoff = Duration::from_millis(200);
        let mut need_list = true;
        loop {
            match self.watch_pass(&mut need_list).await {
                Ok(()) => backoff = Duration::from_millis(200),
                Err(e) => {
                    log(format_args!("{e}; keeping the data plane as is"));
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    // Reconnect to whichever members answer now.
                    if let Ok(st) = Store::connect(&self.sh.etcd).await {
                        self.st = st;
                    }
                }
            }
        }
    }

    /// Register and publish again after a replaced lease; the flag is
    /// cleared only once that worked (else the next tick retries).
    async fn republish_if_renewed(&mut self) -> Result<()> {
        if !self.sh.renewed.load(Ordering::SeqCst) {
            return Ok(());
        }
        self.sh.renewed.store(false, Ordering::SeqCst);
        let done = async {
            self.register().await?;
            self.republish().await
        }
        .await;
        if let Err(e) = done {
            self.sh.renewed.store(true, Ordering::SeqCst);
            return Err(e);
        }
        Ok(())
    }

    async fn full_read(&mut self) -> Result<()> {
        let t0 = Instant::now();
        // The old copy goes first (no event is applied until a read
        // succeeds): a resync never holds two copies of the cluster.
        self.model = Model::default();
        let mut model = Model::default();
        let rev = self
            .st
            .list_each(store::ROOT, &mut |k, v, r| {
                model.apply(&k, Some(&v), r);
            })
            .await?;
        self.model = model;
        self.rev = rev;
        self.sh
            .ensure_holds(&self.st, self.model.nets.values().map(|n| n.grace))
            .await?;
        if !self.model.hosts.contains_key(self.me()) {
            // Our registration lapsed (or was deleted): put it back.
            self.register().await?;
        }
        self.full_reconcile().await;
        self.guard(true).await;
        let entries: usize = self.devs.values().map(|d| d.mac_of.len()).sum();
        log(format_args!(
            "synced at revision {rev}: {} networks, {} hosts, {} endpoints; {} networks here, {entries} entries programmed in {} ms",
            self.model.nets.len(),
            self.model.hosts.len(),
            self.model.ep_count(),
            self.devs.len(),
            t0.elapsed().as_millis()
        ));
        Ok(())
    }

    async fn watch_pass(&mut self, need_list: &mut bool) -> Result<()> {
        self.republish_if_renewed().await?;
        if *need_list {
            self.full_read().await?;
            *need_list = false;
            self.sweep().await;
        }
        let reached = self.sh.reached_again.load(Ordering::SeqCst);
        let mut w = self.st.watch(store::ROOT, self.rev + 1).await?;
        let every = kernel_check_every();
        let mut check = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        let mut last_msg = Instant::now();
        // Is the watch's member still answering? Every half TTL: a stream
        // through a member that stopped answering is left after two
        // misses, within about two TTLs.
        let every_probe = Duration::from_millis((self.sh.ttl.max(2) as u64) * 500);
        let mut probe =
            tokio::time::interval_at(tokio::time::Instant::now() + every_probe, every_probe);
        let mut misses = 0;
        loop {
            let msg = tokio::select! {
                m = w.message() => m,
                _ = probe.tick() => {
                    let p = self.st.probe(&w.member, every_probe).await;
                    misses = if p.is_ok() { 0 } else { misses + 1 };
                    if misses >= 2 {
                        self.st.move_on();
                        return Err(Error::other(format!(
                            "watch: member {} does not answer; watching through another",
                            w.member
                        )));
                    }
                    continue;
                }
                _ = check.tick() => {
                    self.kernel_check().await;
                    self.sweep().await;
                    continue;
                }
                () = tokio::time::sleep(Duration::from_secs(1)) => {
                    self.republish_if_renewed().await?;
                    if last_msg.elapsed() > WATCH_SILENCE
                        || self.sh.reached_again.load(Ordering::SeqCst) != reached
                    {
                        // Watch again from where we are: cheap (a
                        // compacted revision then lists in full).
                        return Ok(());
                    }
                    continue;
                }
            };
            last_msg = Instant::now();
            let resp = match msg {
                Ok(Some(r)) => r,
                Ok(None) => return Err(Error::other("watch closed")),
                Err(e) => return Err(Error::other(format!("watch: {e}"))),
            };
            if resp.compact_revision > 0 || resp.canceled {
                *need_list = true;
                return Err(Error::other(format!(
                    "watch lost its revision (compacted at {}, canceled {}): full resync",
                    resp.compact_revision, resp.canceled
                )));
            }
            let mut touched = Vec::with_capacity(resp.events.len());
            for ev in &resp.events {
                let key = String::from_utf8_lossy(&ev.kv.key);
                let val = match ev.kind {
                    EventType::Put => Some(&ev.kv.value[..]),
                    EventType::Delete => None,
                };
                if let Some(t) = self.model.apply(&key, val, ev.kv.mod_revision) {
                    touched.push(t);
                }
                self.rev = self.rev.max(ev.kv.mod_revision);
            }
            // A progress notification (no events, not the first message:
            // etcd sends them only once the watch caught up): nothing
            // changed up to its revision. Otherwise the header says
            // nothing about which events were delivered yet.
            if resp.events.is_empty() && !resp.created {
                self.rev = self.rev.max(resp.revision);
            }
            self.events += resp.events.len() as u64;
            if !touched.is_empty() {
                self.apply(touched).await;
            }
            if let Some(p) = &self.stats {
                let _ = std::fs::write(
                    p,
                    format!(
                        "etcd_bytes_read {}\nevents {}\nrevision {}\n",
                        self.st.bytes_read(),
                        self.events,
                        self.rev
                    ),
                );
            }
        }
    }

    /// The kernel writes for one watch message, together: the entries it
    /// touched, or a whole network when its definition changed.
    async fn apply(&mut self, touched: Vec<Touched>) {
        let mut nets = BTreeSet::new();
        let mut entries = Vec::new();
        // Networks whose endpoints, reservations or definition changed:
        // their `--allow-from` peers may be needed here, or no longer.
        let mut touched_nets = BTreeSet::new();
        let mut defs_changed = false;
        for t in touched {
            match &t {
                Touched::Net(n) | Touched::Ep(n, _) | Touched::Resv(n, _) => {
                    defs_changed |= matches!(t, Touched::Net(_));
                    touched_nets.insert(n.clone());
                }
                Touched::Host(_) => {}
            }
            match t {
                Touched::Net(n) => {
                    nets.insert(n);
                }
                Touched::Host(h) => {
                    if h == self.me() && !self.model.hosts.contains_key(&h) {
                        // Deleted under us (an operator, a lapse the
                        // keepalive has not seen yet): put it back.
                        if let Err(e) = self.register().await {
                            log(format_args!("registering again: {e}"));
                        }
                    }
                    self.peer_changed(&h);
                    entries.extend(self.model.eps_of(&h));
                }
                Touched::Ep(n, ip) => {
                    // This host's first endpoint on a network builds it;
                    // one on the gateway's address (come or gone) moves
                    // the gateway off the bridge or back on.
                    let first = !self.devs.contains_key(&n)
                        && self
                            .model
                            .ep(&n, ip)
                            .is_some_and(|(e, _)| e.host == self.sh.host);
                    if first
                        || self
                            .model
                            .nets
                            .get(&n)
                            .is_some_and(|s| s.gateways().contains(&ip))
                    {
                        nets.insert(n.clone());
                    }
                    entries.push((n, ip));
                }
                Touched::Resv(n, ip) => {
                    let mine = self
                        .model
                        .resv
                        .get(&n)
                        .and_then(|m| m.get(&ip))
                        .is_some_and(|(r, _)| r.host == self.sh.host);
                    if mine && !self.devs.contains_key(&n) {
                        nets.insert(n);
                    }
                }
            }
        }
        self.peer_changes(&mut nets, &touched_nets, defs_changed);
        let graces: Vec<u64> = nets
            .iter()
            .filter_map(|n| self.model.nets.get(n).map(|s| s.grace))
            .collect();
        if let Err(e) = self.sh.ensure_holds(&self.st, graces).await {
            log(format_args!("taking a hold lease: {e}"));
        }
        for n in &nets {
            self.sync_net(n).await;
        }
        for (n, ip) in entries {
            if !nets.contains(&n) {
                self.apply_entry(&n, ip).await;
            }
        }
        self.tunnel_tidy().await;
        self.guard(false).await;
    }

    /// Egress through the anycast gateway: masquerade and isolation for
    /// the networks built here (firewall::route_egress), made with the
    /// first, removed with the last. Forwarding must be on for the
    /// gateway to route at all: turned on (never off: others may rely on
    /// it, as with Docker).
    fn egress(&mut self, check: bool) {
        let want: Vec<crate::firewall::Routed> = self
            .devs
            .keys()
            .filter_map(|n| self.model.nets.get(n))
            .map(names::routed)
            .collect();
        // Changed, or (at a check) missing, or left over with nothing here.
        let changed = self.routed.as_ref() != Some(&want);
        let drifted = check && crate::firewall::egress_routed() == want.is_empty();
        if !changed && !drifted {
            // A dropping FORWARD (dockerd started, or our accepts flushed)
            // is seen at the check: one `iptables -S`, one `ip6tables -S`.
            if check {
                self.accept_routed(&want, false);
            }
            return;
        }
        if !want.is_empty() {
            forwarding_on("/proc/sys/net/ipv4/ip_forward", "net.ipv4.ip_forward");
        }
        // IPv6 forwarding only once a network has IPv6: turning it on
        // makes the host ignore Router Advertisements on interfaces whose
        // accept_ra is 1 (as Docker's IPv6 networks do too).
        if want.iter().any(|r| r.subnet6.is_some()) {
            forwarding_on(
                "/proc/sys/net/ipv6/conf/all/forwarding",
                "net.ipv6.conf.all.forwarding",
            );
        }
        // Our accepts after the table (its isolation drop in place first),
        // removed before it.
        if want.is_empty() {
            self.accept_routed(&want, changed);
        }
        match crate::firewall::route_egress(&want) {
            Ok(()) => self.routed = Some(want.clone()),
            Err(e) => {
                log(format_args!("egress: {e}; retrying at the next check"));
                self.routed = None;
            }
        }
        if !want.is_empty() {
            self.accept_routed(&want, changed);
        }
    }

    /// A host whose iptables FORWARD drops (dockerd's DOCKER-USER): the
    /// routed networks' accepts there (firewall::accept_routed). A
    /// failure is logged and tried again at the next check.
    fn accept_routed(&mut self, want: &[crate::firewall::Routed], force: bool) {
        match crate::firewall::accept_routed(want, force) {
            Ok(lines) => lines.iter().for_each(log),
            Err(e) => {
                log(format_args!("{e}; retrying at the next check"));
                self.routed = None;
            }
        }
    }

    /// VXLAN only from members: the guard (firewall::guard_vxlan) made
    /// equal to the model. A host that joins or dies changes one set
    /// element; the first network built here makes the table, the last
    /// one gone removes it. `check` also looks at the kernel (someone may
    /// have flushed the ruleset). A killed agent leaves the table as it
    /// was: the port stays closed to strangers, and the next agent (or
    /// `gc` once no VXLAN device is left) takes it from there.
    async fn guard(&mut self, check: bool) {
        self.vxlan_guard(check).await;
        // The guard first: its `contain` chain is what keeps masqueraded
        // containers off the overlay hosts' underlay addresses
        // (firewall/guard.rs), so it is in before egress first opens.
        self.egress(check);
    }

    async fn vxlan_guard(&mut self, check: bool) {
        let ports: BTreeSet<u16> = self
            .devs
            .keys()
            .filter_map(|n| self.model.nets.get(n))
            .map(|s| s.port)
            .collect();
        if ports.is_empty() {
            if (self.guarded.take().is_some() || check)
                && matches!(crate::firewall::unguard_vxlan(), Ok(true))
            {
                log("no network here: VXLAN guard removed");
            }
            return;
        }
        let mut members: BTreeSet<IpAddr> = self.model.hosts.values().map(|h| h.underlay).collect();
        members.insert(self.u.ip);
        // Encrypted networks: VXLAN from peers' tunnel addresses (which
        // WireGuard vouches for), their VNIs from the tunnel only, and
        // WireGuard's own port from members only. Each VNI is matched on
        // its network's VXLAN port alone: on WireGuard's port the same
        // bytes are a random session index, which must never be dropped.
        let sealed: Sealed = self
            .devs
            .keys()
            .filter_map(|n| self.model.nets.get(n))
            .filter(|s| s.encrypt)
            .map(|s| (s.vni, s.port))
            .collect();
        let mut ports = ports;
        if let (Some(_), Some((_, p))) = (&self.tunnel, &self.wg) {
            ports.insert(*p);
            members.extend(
                self.model
                    .hosts
                    .values()
                    .filter_map(|h| h.wg.as_ref())
                    .map(|w| IpAddr::V6(w.inner)),
            );
        }
        let r = match &self.guarded {
            Some((p, m, s))
                if *p == ports && *s == sealed && (!check || crate::firewall::vxlan_guarded()) =>
            {
                if *m == members {
                    return;
                }
                let add = members.difference(m).copied().collect();
                let del = m.difference(&members).copied().collect();
                crate::firewall::guard_vxlan_update(&add, &del)
            }
            _ => crate::firewall::guard_vxlan(
                &ports,
                &members,
                &sealed,
                crypt::DEVICE,
                names::BRIDGE_PREFIX,
            )
            .inspect(|_| {
                log(format_args!(
                    "VXLAN guard: UDP {ports:?} accepted from {} registered hosts only",
                    members.len()
                ))
            }),
        };
        match r {
            Ok(()) => self.guarded = Some((ports, members, sealed)),
            Err(e) => {
                log(format_args!("VXLAN guard: {e}; retrying at the next check"));
                self.guarded = None;
            }
        }
    }

    /// Make one address's kernel entries (its MAC's FDB entry, its
    /// neighbour entry) as the model wants them: written, replaced,
    /// removed, or left alone. The FDB entry is per MAC: it goes only with
    /// the last address using it (a dual-stack endpoint has two).
    async fn apply_entry(&mut self, net: &str, ip: IpAddr) {
        let want = self.model.entry(net, ip, &self.sh.host);
        let Some(dev) = self.devs.get_mut(net) else {
            return;
        };
        let cur = dev.mac_of.get(&ip).copied();
        let vtep_of = |dev: &Dev, mac: &[u8; 6]| dev.have.get(mac).map(|(v, _)| *v);
        if let Some((v, mac)) = want
            && cur == Some(mac)
            && vtep_of(dev, &mac) == Some(v)
        {
            return;
        }
        let r = async {
            // The address's old entries (gone, or another MAC now).
            if let Some(old) = cur
                && want.map(|w| w.1) != Some(old)
            {
                dev.mac_of.remove(&ip);
                let mut last = None;
                if let Some((v, ips)) = dev.have.get_mut(&old) {
                    ips.remove(&ip);
                    if ips.is_empty() {
                        last = Some(*v);
                    }
                }
                self.net.neigh_del(&dev.vx, ip, &old).await?;
                if let Some(v) = last {
                    dev.have.remove(&old);
                    self.net.fdb_del(&dev.vx, &old, v).await?;
                }
            }
            if let Some((v, mac)) = want {
                if vtep_of(dev, &mac) != Some(v) {
                    self.net.fdb_replace(&dev.vx, &mac, v).await?;
                }
                let e = dev
                    .have
                    .entry(mac)
                    .or_insert_with(|| (v, Default::default()));
                e.0 = v;
                e.1.insert(ip);
                dev.mac_of.insert(ip, mac);
                self.net.neigh_replace(&dev.vx, ip, &mac).await?;
            }
            Ok::<_, Error>(())
        }
        .await;
        if let Err(e) = r {
            log(format_args!("{net}: {ip}: {e}; retrying at the next check"));
            self.unsure.insert(net.to_string());
        }
    }

    /// Whether this host builds `net`'s devices.
    async fn wanted_here(&self, net: &str) -> bool {
        self.build_all
            || self.build.contains(net)
            || self.model.used_by(net, self.me())
            || self.model.peer_used(net, self.me())
            // Built before (a restarted agent): keep it in sync.
            || matches!(self.net.link_by_name(&names::bridge(net)).await, Ok(Some(_)))
    }

    /// One network in full: its devices checked (made, or re-made when
    /// they differ), every entry diffed against the kernel.
    async fn sync_net(&mut self, name: &str) {
        let Some(spec) = self.model.nets.get(name).cloned() else {
            // Deleted: its devices go once unused.
            self.routes.remove(name);
            self.devs.remove(name);
            let _ = fdb::remove_if_unused(&self.net, name).await;
            return;
        };
        if !self.route_need(name).await {
            return;
        }
        if !self.wanted_here(name).await {
            self.devs.remove(name);
            return;
        }
        let u = if spec.encrypt {
            match self.ensure_tunnel().await {
                Ok(t) => t,
                Err(e) => {
                    if self.warned.insert(format!("{name} tunnel")) {
                        log(format_args!("{name}: encrypted: {e}; not built here"));
                    }
                    self.devs.remove(name);
                    return;
                }
            }
        } else {
            self.u.clone()
        };
        let carry = u.mtu.saturating_sub(super::network::overhead(u.ip));
        if carry < spec.mtu && self.warned.insert(name.to_string()) {
            log(format_args!(
                "{name}: underlay {} MTU {} carries at most {carry} over VXLAN, the network uses {}: large packets will be dropped (see overlay status)",
                u.ifname, u.mtu, spec.mtu
            ));
        }
        let done = async {
            let gw_taken = spec
                .gw()
                .is_some_and(|gw| self.model.ep(name, gw.into()).is_some());
            if gw_taken && self.warned.insert(format!("{name} gateway")) {
                log(format_args!(
                    "{name}: endpoint {} holds the gateway address: no gateway on {} until it goes",
                    spec.gw().map(|g| g.to_string()).unwrap_or_default(),
                    names::bridge(name)
                ));
            }
            let vx = fdb::ensure(&self.net, &spec, &u, !gw_taken).await?;
            let want = self.model.desired(name, &self.sh.host);
            let r = fdb::apply(&self.net, &vx, &want).await;
            self.devs.insert(name.to_string(), Dev::new(vx, want));
            r.map(|_| ())
        }
        .await;
        // Not part of the entries: a failure is logged, tried again at
        // the next kernel check.
        if let Err(e) = self.track_bridged(name).await {
            log(format_args!("{name}: {e}"));
        }
        match done {
            Ok(()) => {
                self.unsure.remove(name);
            }
            Err(e) => {
                log(format_args!("{name}: {e}"));
                self.unsure.insert(name.to_string());
            }
        }
    }

    async fn full_reconcile(&mut self) {
        self.devs.clear();
        let names: Vec<String> = self.model.nets.keys().cloned().collect();
        for n in &names {
            self.sync_net(n).await;
        }
        // Networks deleted from etcd: their devices go once unused.
        if let Ok(links) = self.net.links().await {
            for l in links {
                if let Some(n) = names::net_of_bridge(&l.name)
                    && !self.model.nets.contains_key(n)
                {
                    let _ = fdb::remove_if_unused(&self.net, n).await;
                }
            }
        }
        // Peers as etcd has them now (a resync may follow a long gap).
        self.sync_peers().await;
        self.tunnel_tidy().await;
    }

    /// Local reads only: each network's device and entries against the
    /// model; what differs is put right in full, with a log line. Also
    /// reports conflicts (an address on two hosts) once each.
    async fn kernel_check(&mut self) {
        let nets: Vec<String> = self.devs.keys().cloned().collect();
        for n in nets {
            let redo = self.unsure.contains(&n)
                || {
                    let dev = &self.devs[&n];
                    let spec = self.model.nets.get(&n);
                    let same_dev = match spec.and_then(|s| Some((s, self.under(s)?))) {
                        Some((s, u)) => fdb::device_matches(&self.net, s, &u, &dev.vx)
                            .await
                            .unwrap_or(false),
                        None => false,
                    };
                    if !same_dev {
                        true
                    } else {
                        match self.net.vxlan_entries(dev.vx.index).await {
                            Ok(have) => {
                                let d = fdb::drift(&dev.have, &have);
                                if !d.missing.is_empty() || !d.stale.is_empty() {
                                    log(format_args!(
                                        "{n}: kernel differs from etcd ({} missing, {} stale): putting it right",
                                        d.missing.len(),
                                        d.stale.len()
                                    ));
                                    true
                                } else {
                                    false
                                }
                            }
                            Err(_) => true,
                        }
                    }
                };
            if redo {
                self.sync_net(&n).await;
            }
        }
        // Networks this host began to use while a build failed.
        let pending: BTreeSet<String> = self
            .model
            .nets
            .keys()
            .filter(|n| {
                !self.devs.contains_key(*n)
                    && (self.model.used_by(n, &self.sh.host)
                        || self.model.peer_used(n, &self.sh.host))
            })
            .chain(self.routes.iter().filter(|n| !self.devs.contains_key(*n)))
            .cloned()
            .chain(self.unneeded())
            .collect();
        for n in pending {
            self.sync_net(&n).await;
        }
        // An admin's `nf_call_iptables 0` put right (peers/track_bridged).
        let joined: Vec<String> = self.devs.keys().cloned().collect();
        for n in joined {
            if let Err(e) = self.track_bridged(&n).await {
                log(format_args!("{n}: {e}"));
            }
        }
        self.check_peers().await;
        self.tunnel_tidy().await;
        self.guard(true).await;
        for c in self.model.conflicts() {
            if self.conflicts.insert(c.clone()) {
                log(format_args!("conflict: {c}"));
            }
        }
    }

    /// Endpoints of ours whose container is gone (its host link vanished,
    /// or an attach died before building it), and reservations of ours
    /// whose endpoint is gone with no local container holding the address
    /// (a CNI DEL while etcd was away): give the addresses back.
    async fn sweep(&self) {
        if self.sh.renewed.load(Ordering::SeqCst) {
            // Not before this host's endpoints are published again.
            return;
        }
        // Attachments on this host's overlay bridges, read only if needed.
        let mut local = None;
        for (net, ip) in self.model.eps_of(self.me()) {
            let Some((ep, rev)) = self.model.ep(&net, ip).cloned() else {
                continue;
            };
            let gone = match &ep.hi {
                Some(hi) => matches!(self.net.link_by_name(hi).await, Ok(None)),
                None if store::now().saturating_sub(ep.since) > 60 => {
                    super::sweep::unlinked_ep_gone(local_ips(&mut local).await, ep.ip)
                }
                None => false,
            };
            if gone
                && matches!(
                    super::alloc::release(&self.st, &net, ip, self.me(), Some(rev)).await,
                    Ok(true)
                )
            {
                log(format_args!(
                    "{net}: releasing {} ({} is gone)",
                    ep.ip,
                    crate::untrusted::display(&ep.container)
                ));
            }
        }
        // MAC keys of ours whose address is held no more (a release by an
        // agent that predates them): no claim holds them, give them back.
        for (net, mk, ip, rev) in self.model.orphan_macs(self.me()) {
            if matches!(
                super::alloc::release_mac(&self.st, &net, &mk, ip, rev).await,
                Ok(true)
            ) {
                log(format_args!(
                    "{net}: releasing {ip}'s MAC key (address released)"
                ));
            }
        }
        let resv = self.model.resv_of(self.me());
        let has_ep = |net: &str, ip| self.model.ep(net, ip).is_some();
        if resv.iter().all(|(net, ip, _)| has_ep(net, *ip)) {
            return;
        }
        let orphans = super::sweep::orphan_resvs(resv, has_ep, local_ips(&mut local).await);
        for (net, ip, rev) in orphans {
            if matches!(
                super::alloc::release_resv(&self.st, &net, ip, rev).await,
                Ok(true)
            ) {
                log(format_args!(
                    "{net}: releasing {ip} (reserved, no container holds it)"
                ));
            }
        }
    }

    /// After a new lease: write this host's endpoints again, from the
    /// kernel (the containers are still attached; only etcd forgot them),
    /// with their reservations.
    async fn republish(&self) -> Result<()> {
        let lease = self.sh.lease.load(Ordering::SeqCst);
        let mut failed = Vec::new();
        // An incomplete scan fails the pass (retried): skipping the hidden
        // endpoints would clear `renewed` and let the sweep release them.
        for f in crate::inventory::attachments_everywhere_complete().await? {
            let Some(net) = names::net_of_bridge(&f.rec.h) else {
                continue;
            };
            // The signed record's addresses, never the guest-set MAC's.
            let ips = super::attach::ovip_of(&f.rec);
            if ips.is_empty() {
                continue;
            }
            let grace = match super::network::get(&self.st, net).await {
                Ok(Some(s)) => s.grace,
                // The network is gone: nothing to publish.
                Ok(None) => continue,
                Err(e) => {
                    failed.push(format!("{net} {ips:?}: {e}"));
                    continue;
                }
            };
            self.sh.ensure_holds(&self.st, [grace]).await?;
            let Some(hold) = self.sh.hold_for(grace) else {
                continue;
            };
            // The MAC a claim writes (derived from the addresses), never
            // one read from the guest's side of the link.
            let mac = crate::request::format_mac(&names::mac_of(&ips));
            for ip in ips {
                let ep = Endpoint {
                    ip,
                    mac: mac.clone(),
                    host: self.sh.host.clone(),
                    container: f.rec.g.clone(),
                    ifname: f.rec.ifname.clone(),
                    hi: f.rec.hi.clone(),
                    since: store::now(),
                };
                match super::alloc::update(&self.st, net, &ep, lease, hold).await {
                    Ok(super::alloc::Updated::Written) => {}
                    // Retrying cannot fix that: say it loudly and go on.
                    Ok(super::alloc::Updated::HeldBy(other)) => {
                        log(format_args!(
                            "conflict: {net} {ip} is in use elsewhere now: held in etcd by host {other}, not this one"
                        ));
                    }
                    Err(e) => failed.push(format!("{net} {ip}: {e}")),
                }
            }
        }
        if failed.is_empty() {
            Ok(())
        } else {
            Err(Error::other(format!(
                "re-publishing {} endpoint(s): {}",
                failed.len(),
                failed.join("; ")
            )))
        }
    }
}
