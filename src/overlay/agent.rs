//! `pipework overlay agent`: the one resident process per host.
//!
//! It registers the host under an etcd lease, keeps the lease alive, and
//! keeps the kernel (bridge + VXLAN device per network, FDB and neighbour
//! entries per remote endpoint) equal to what etcd says. Whatever happens
//! to etcd, the data plane keeps what it has: the agent only ever changes
//! entries that etcd proves wrong, and never flushes.
use super::etcd::EventType;
use super::fdb::{self, Desired, Underlay};
use super::names;
use super::state::{self, AgentState};
use super::store::{self, Endpoint, EtcdOpts, HostInfo, NetSpec, Store};
use crate::error::{Error, Result};
use crate::netlink::Net;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

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
}

/// Everything under ROOT, as last read or watched.
type Cache = BTreeMap<String, Vec<u8>>;

struct Agent {
    host: String,
    u: Underlay,
    ttl: i64,
    net: Net,
    st: Store,
    lease: Arc<AtomicI64>,
    /// Set by the keepalive task when the lease lapsed and a new one was
    /// granted: the main loop re-publishes this host's endpoints.
    renewed: Arc<AtomicBool>,
    warned_mtu: std::collections::HashSet<String>,
    opts: EtcdOpts,
}

fn log(msg: impl std::fmt::Display) {
    eprintln!("pipework overlay agent: {msg}");
}

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
    let u = super::underlay::resolve(a.underlay.as_deref()).await?;
    let st = Store::connect(&a.etcd).await?;
    let net = Net::new(None, false)?;
    let (lease, reused) = acquire_lease(&st, &host, a.ttl).await?;
    let mut ag = Agent {
        host,
        u,
        ttl: a.ttl,
        net,
        st,
        lease: Arc::new(AtomicI64::new(lease)),
        // A new lease (the previous agent's lapsed: it died more than a
        // TTL ago) took this host's endpoints with it: publish them again
        // from the kernel before anything else, as after a renewal.
        renewed: Arc::new(AtomicBool::new(!reused)),
        warned_mtu: Default::default(),
        opts: a.etcd.clone(),
    };
    // The state first: once the host shows up in etcd, an attach on this
    // host may run, and it reads the lease from here.
    state::save(&AgentState {
        host: ag.host.clone(),
        lease,
        pid: std::process::id(),
        etcd: a.etcd.clone(),
    })?;
    ag.register().await?;
    log(format_args!(
        "host {} underlay {} {} mtu {}, lease {lease:x} ttl {}s",
        ag.host, ag.u.ifname, ag.u.ip, ag.u.mtu, ag.ttl
    ));
    tokio::spawn(keepalive(
        ag.lease.clone(),
        ag.renewed.clone(),
        ag.ttl,
        a.etcd.clone(),
        ag.host.clone(),
    ));
    ag.main_loop().await
}

/// Reuse the lease of this host's previous agent while it is still alive:
/// a restart then never lets the endpoints lapse. Otherwise grant one.
/// Says whether the lease was reused.
async fn acquire_lease(st: &Store, host: &str, ttl: i64) -> Result<(i64, bool)> {
    if let Some(prev) = state::load()
        && prev.host == host
        && let Ok(ttl) = st.lease_ttl(prev.lease).await
        && ttl > 0
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
    Ok((grant(st, ttl).await?, false))
}

async fn grant(st: &Store, ttl: i64) -> Result<i64> {
    st.lease_grant(ttl).await
}

/// Keep the lease alive every TTL/3. If it lapsed (etcd was away longer
/// than the TTL), grant a new one and tell the main loop.
async fn keepalive(
    lease: Arc<AtomicI64>,
    renewed: Arc<AtomicBool>,
    ttl: i64,
    etcd: EtcdOpts,
    host: String,
) {
    let period = Duration::from_millis((ttl as u64 * 1000 / 3).max(300));
    let mut store: Option<Store> = None;
    let mut wait = period;
    loop {
        tokio::time::sleep(wait).await;
        // After a failure, try again soon: the lease is running out.
        wait = Duration::from_millis(200);
        let id = lease.load(Ordering::SeqCst);
        if store.is_none() {
            store = Store::connect(&etcd).await.ok();
        }
        let Some(st) = store.clone() else { continue };
        let ok = st.lease_keepalive(id).await;
        match ok {
            Ok(t) if t > 0 => wait = period,
            Ok(_) => {
                log(format_args!("lease {id:x} expired; registering again"));
                if let Ok(n) = grant(&st, ttl).await {
                    lease.store(n, Ordering::SeqCst);
                    let _ = state::save(&AgentState {
                        host: host.clone(),
                        lease: n,
                        pid: std::process::id(),
                        etcd: etcd.clone(),
                    });
                    renewed.store(true, Ordering::SeqCst);
                }
            }
            Err(e) => {
                log(format_args!("keepalive: {e}"));
                store = None;
            }
        }
    }
}

impl Agent {
    async fn register(&self) -> Result<()> {
        let info = HostInfo {
            name: self.host.clone(),
            underlay: self.u.ip,
            underlay_if: self.u.ifname.clone(),
            underlay_mtu: self.u.mtu,
            lease: self.lease.load(Ordering::SeqCst),
        };
        self.st
            .put(
                "registering host",
                &store::host_key(&self.host),
                &store::encode(&info),
                Some(info.lease),
            )
            .await
    }

    /// Full read, reconcile, then watch from the read's revision. Any
    /// watch failure (compaction, outage, cancel) starts over with a full
    /// read: the kernel is left as is meanwhile.
    async fn main_loop(&mut self) -> Result<()> {
        let mut backoff = Duration::from_millis(200);
        loop {
            match self.sync_and_watch().await {
                Ok(()) => backoff = Duration::from_millis(200),
                Err(e) => {
                    log(format_args!("{e}; keeping the data plane as is, resyncing"));
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    // Reconnect to whichever members answer now.
                    if let Ok(st) = Store::connect(&self.opts).await {
                        self.st = st;
                    }
                }
            }
        }
    }

    async fn sync_and_watch(&mut self) -> Result<()> {
        if self.renewed.swap(false, Ordering::SeqCst) {
            let done = async {
                self.register().await?;
                self.republish().await
            }
            .await;
            if let Err(e) = done {
                // Not done: the next pass (after the resync backoff) tries
                // again, instead of the flag being lost with the error.
                self.renewed.store(true, Ordering::SeqCst);
                return Err(e);
            }
        }
        let (kvs, rev) = self.st.list(store::ROOT).await?;
        let mut cache: Cache = kvs.into_iter().collect();
        if !cache.contains_key(&store::host_key(&self.host)) {
            // Our registration lapsed (or was deleted): put it back.
            self.register().await?;
        }
        self.reconcile(&cache).await;
        let mut w = self.st.watch(store::ROOT, rev + 1).await?;
        // A periodic full pass also catches kernel-side drift (an admin's
        // `bridge fdb del`) and a lapsed lease.
        let resync = tokio::time::sleep(Duration::from_secs(30));
        tokio::pin!(resync);
        loop {
            let msg = tokio::select! {
                m = w.message() => m,
                () = &mut resync => return Ok(()),
                () = tokio::time::sleep(Duration::from_secs(1)) => {
                    if self.renewed.load(Ordering::SeqCst) { return Ok(()); }
                    continue;
                }
            };
            let resp = match msg {
                Ok(Some(r)) => r,
                Ok(None) => return Err(Error::other("watch closed")),
                Err(e) => return Err(Error::other(format!("watch: {e}"))),
            };
            if resp.compact_revision > 0 || resp.canceled {
                return Err(Error::other(format!(
                    "watch lost its revision (compacted at {}): full resync",
                    resp.compact_revision
                )));
            }
            if resp.events.is_empty() {
                continue;
            }
            for ev in resp.events {
                let key = String::from_utf8_lossy(&ev.kv.key).into_owned();
                match ev.kind {
                    EventType::Put => {
                        cache.insert(key, ev.kv.value);
                    }
                    EventType::Delete => {
                        cache.remove(&key);
                    }
                }
            }
            self.reconcile(&cache).await;
        }
    }

    /// Make the kernel match the cache; errors are logged, never fatal:
    /// one broken network must not stop the others.
    async fn reconcile(&mut self, cache: &Cache) {
        let view = View::parse(cache);
        for net in view.nets.values() {
            if let Err(e) = self.reconcile_net(net, &view).await {
                log(format_args!("{}: {e}", net.name));
            }
        }
        // Networks deleted from etcd: their devices go once unused.
        if let Ok(links) = self.net.links().await {
            for l in links {
                if let Some(n) = names::net_of_bridge(&l.name)
                    && !view.nets.contains_key(n)
                {
                    let _ = fdb::remove_if_unused(&self.net, n).await;
                }
            }
        }
        self.sweep(&view).await;
    }

    async fn reconcile_net(&mut self, net: &NetSpec, view: &View) -> Result<()> {
        let carry = self
            .u
            .mtu
            .saturating_sub(super::network::overhead(self.u.ip));
        if carry < net.mtu && self.warned_mtu.insert(net.name.clone()) {
            log(format_args!(
                "{}: underlay {} MTU {} carries at most {carry} over VXLAN, the network uses {}: large packets will be dropped (see overlay status)",
                net.name, self.u.ifname, self.u.mtu, net.mtu
            ));
        }
        let vx = fdb::ensure(&self.net, net, &self.u).await?;
        let want = view.desired(&net.name, &self.host);
        fdb::apply(&self.net, &vx, &want).await?;
        Ok(())
    }

    /// Endpoints of ours whose container is gone (its host link vanished,
    /// or an attach died before building it): give their addresses back.
    async fn sweep(&self, view: &View) {
        // Attachments on this host's overlay bridges, read only if needed:
        // an endpoint without its host link recorded is an attach killed
        // between its etcd claim and its last etcd write, finished or not.
        let mut local: Option<Vec<std::net::Ipv4Addr>> = None;
        for ((net, _), ep) in &view.eps {
            if ep.host != self.host {
                continue;
            }
            let gone = match &ep.hi {
                Some(hi) => matches!(self.net.link_by_name(hi).await, Ok(None)),
                None if store::now().saturating_sub(ep.since) > 60 => {
                    if local.is_none() {
                        local = Some(
                            crate::inventory::attachments_everywhere()
                                .await
                                .into_iter()
                                .filter_map(|f| super::attach::ovip_of(&f.rec))
                                .collect(),
                        );
                    }
                    !local.as_ref().is_some_and(|l| l.contains(&ep.ip))
                }
                None => false,
            };
            if gone && self.release_if_same(net, ep).await {
                log(format_args!(
                    "{net}: releasing {} ({} is gone)",
                    ep.ip, ep.container
                ));
            }
        }
    }

    /// Delete endpoint `ep` only if etcd still holds it as the view saw
    /// it, in one transaction on the revision read: the view is a
    /// snapshot, and an attach that finished (recorded its host link) or
    /// a new claim of the address since must not be released on its
    /// account. True when it was deleted.
    async fn release_if_same(&self, net: &str, ep: &Endpoint) -> bool {
        use super::etcd::{Compare, CompareOp, Txn, TxnOp};
        let key = store::ep_key(net, ep.ip.into());
        let Ok(Some((v, rev))) = self.st.get_kv(&key).await else {
            return false;
        };
        if store::decode::<Endpoint>(&key, &v).ok().as_ref() != Some(ep) {
            return false;
        }
        let txn = Txn::new()
            .when(vec![Compare::mod_revision(&key, CompareOp::Equal, rev)])
            .and_then(vec![TxnOp::delete(&key)]);
        matches!(
            self.st.txn("releasing a gone endpoint", txn).await,
            Ok(true)
        )
    }

    /// After a new lease: write this host's endpoints again, from the
    /// kernel (the containers are still attached; only etcd forgot them).
    async fn republish(&self) -> Result<()> {
        let lease = self.lease.load(Ordering::SeqCst);
        let mut failed = Vec::new();
        for f in crate::inventory::attachments_everywhere().await {
            let Some(net) = names::net_of_bridge(&f.rec.h) else {
                continue;
            };
            // The signed record's address, never the guest-set MAC's.
            let Some(ip) = super::attach::ovip_of(&f.rec) else {
                continue;
            };
            let ep = Endpoint {
                ip,
                mac: crate::request::format_mac(&f.link.mac),
                host: self.host.clone(),
                container: f.rec.g.clone(),
                ifname: f.rec.ifname.clone(),
                hi: f.rec.hi.clone(),
                since: store::now(),
            };
            match super::alloc::update(&self.st, net, &ep, lease).await {
                Ok(super::alloc::Updated::Written) => {}
                // Retrying cannot fix that: say it loudly and go on.
                Ok(super::alloc::Updated::HeldBy(other)) => {
                    log(format_args!(
                        "{net}: {ip} is in use elsewhere now: held in etcd by host {other}, not this one"
                    ));
                }
                Err(e) => failed.push(format!("{net} {ip}: {e}")),
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

/// The cache, decoded. Unreadable records are skipped (and named).
pub struct View {
    pub nets: BTreeMap<String, NetSpec>,
    pub hosts: BTreeMap<String, HostInfo>,
    /// (network, ip) → endpoint.
    pub eps: BTreeMap<(String, std::net::Ipv4Addr), Endpoint>,
}

impl View {
    pub fn parse(cache: &Cache) -> View {
        let mut v = View {
            nets: BTreeMap::new(),
            hosts: BTreeMap::new(),
            eps: BTreeMap::new(),
        };
        for (k, val) in cache {
            let Some(rest) = k.strip_prefix(store::ROOT) else {
                continue;
            };
            let parts: Vec<&str> = rest.split('/').collect();
            match parts.as_slice() {
                ["net", n] => {
                    if let Ok(s) = store::decode::<NetSpec>(k, val) {
                        v.nets.insert((*n).to_string(), s);
                    }
                }
                ["host", n] => {
                    if let Ok(s) = store::decode::<HostInfo>(k, val) {
                        v.hosts.insert((*n).to_string(), s);
                    }
                }
                ["ep", n, _] => {
                    if let Ok(s) = store::decode::<Endpoint>(k, val) {
                        v.eps.insert(((*n).to_string(), s.ip), s);
                    }
                }
                _ => {}
            }
        }
        v
    }

    /// What host `me` must program for `net`: every endpoint of another
    /// live host. An endpoint whose host is not registered is skipped (its
    /// lease is about to take it away anyway).
    pub fn desired(&self, net: &str, me: &str) -> Desired {
        let mut d = Desired::new();
        for ((n, ip), ep) in &self.eps {
            if n != net || ep.host == me {
                continue;
            }
            let Some(h) = self.hosts.get(&ep.host) else {
                continue;
            };
            d.insert(names::mac_for(*ip), (h.underlay, *ip));
        }
        d
    }
}
