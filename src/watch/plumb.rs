//! What `watch` does for one container: plumb it when it starts (the same
//! attach as the command line, so a restart gets exactly what the label
//! says) and release what outlives it when it dies.
//!
//! A dead container's namespace takes its veths with it; what stays is
//! what lives outside it: the DHCP keeper, OVS Port/Interface rows, and
//! the bridge's firewall rule once its last port is gone. Those are found
//! through the inventory (the records on the host ends name the
//! container) and removed with the code `detach` and `gc` use.
use super::Ctx;
use super::labels;
use crate::attach;
use crate::inventory::{self, host_ns};
use crate::netlink::Net;
use crate::record::{Kind, Seen};
use crate::untrusted::display;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// What we plumbed into a container, for its `die`: the namespace and the
/// (kind, host side) of each interface.
#[derive(Debug, Clone, Default)]
pub struct Plumbed {
    pub ns: u64,
    pub hosts: BTreeSet<(&'static str, String)>,
    /// Linux bridges whose VLAN filtering pipework turned on for these
    /// attachments: turned off again with the last VLAN port.
    pub filtering: BTreeSet<String>,
}

/// Plumb every labelled interface of a running container. `event_ns` is
/// the start event's own time (ns since the epoch), for the log line that
/// says how long after the start the interfaces were ready.
pub async fn start(
    cx: &Ctx,
    id: &str,
    name: &str,
    labels: &BTreeMap<String, String>,
    event_ns: Option<u128>,
) {
    lab_nodes(cx, id, name).await;
    let name = display(name);
    let reqs = match labels::requests(labels, id, &cx.allow) {
        Ok(r) => r,
        Err(lines) => {
            for l in lines {
                super::log(format_args!("{name}: {l}"));
            }
            return;
        }
    };
    if reqs.is_empty() {
        return;
    }
    let guest = match crate::guest::container(&cx.engine, id) {
        Ok(g) => g,
        // Stopped again before we got to it: its next start is another event.
        Err(e) => {
            super::log(format_args!("{name}: not plumbed: {e}"));
            return;
        }
    };
    let mut done = Plumbed {
        ns: guest.netns.inode().unwrap_or(0),
        ..Default::default()
    };
    let mut made = Vec::new();
    for req in &reqs {
        let lock = cx.host_lock(&req.host);
        let _shared = lock.read().await;
        match attach::attach_to(req, &guest).await {
            Ok(rep) => {
                if let Some(pid) = rep.dhcp.as_ref().and_then(|d| d.keeper_pid) {
                    reap(pid);
                }
                done.hosts.insert((rep.host.kind, rep.host.host.clone()));
                if (req.vlan.is_some() || !req.ovs.trunks.is_empty())
                    && rep.host.kind == Kind::Bridge.as_str()
                    && turned_on_by(rep.host.host_ifname.as_deref()).await
                {
                    done.filtering.insert(rep.host.host.clone());
                }
                if !rep.unchanged {
                    made.push(format!(
                        "{} on {} {}",
                        rep.interface,
                        rep.host.host,
                        rep.addresses.join(",")
                    ));
                }
            }
            Err(e) => super::log(format_args!("{name}: {}: not plumbed: {e}", req.ifname)),
        }
    }
    cx.plumbed
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(id.to_string(), done);
    if !made.is_empty() {
        let after = event_ns
            .and_then(|t| {
                let now = SystemTime::now()
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .ok()?
                    .as_nanos();
                Some(format!(
                    " ({:.1} ms after the start event)",
                    now.saturating_sub(t) as f64 / 1e6
                ))
            })
            .unwrap_or_default();
        super::log(format_args!("{name}: plumbed {}{after}", made.join("; ")));
    }
}

/// A container that is a node of a lab that is up gets that lab's links
/// back: `lab up` on the lab's remembered file rebuilds exactly what its
/// restart took away. The lab file is root's (its path comes from the
/// root-only lab state), so this acts on no container-written input
/// beyond the container's name, which the lab file itself chose.
async fn lab_nodes(cx: &Ctx, id: &str, name: &str) {
    let labs = crate::lab::hook::labs_of(name, id);
    if labs.is_empty() {
        return;
    }
    // The lab code finds containers through DOCKER_HOST; a watch following
    // another engine must not converge a lab against the wrong one.
    if crate::guest::engine::Engine::from_env().as_ref() != Some(&cx.engine) {
        super::log(format_args!(
            "{}: node of a lab, not re-plumbed: the lab's engine is $DOCKER_HOST, not {} (run watch with DOCKER_HOST set to the same socket)",
            display(name),
            cx.engine.sock().display()
        ));
        return;
    }
    // The lab's bridges are host sides like a label's: share their locks,
    // so a `die` releasing a bridge's firewall rule (which cannot tell our
    // own workers' ports apart) waits for this re-plumb.
    let mut bridges = BTreeSet::new();
    for (_, file, _) in &labs {
        if let Ok(lab) = crate::lab::load(&file.display().to_string()) {
            for u in &lab.units {
                match &u.kind {
                    crate::lab::model::LinkKind::Bridge(b)
                    | crate::lab::model::LinkKind::Ovs(b) => {
                        bridges.insert(b.clone());
                    }
                    _ => {}
                }
            }
        }
    }
    let locks: Vec<_> = bridges.iter().map(|b| cx.host_lock(b)).collect();
    let mut _shared = Vec::with_capacity(locks.len());
    for l in &locks {
        _shared.push(l.read().await);
    }
    match crate::lab::hook::replumb(name, id).await {
        Ok(reps) => {
            for r in reps {
                super::log(format_args!(
                    "{}: lab {} re-plumbed: {} link(s) added, {} removed",
                    display(name),
                    display(&r.lab),
                    r.added.len(),
                    r.removed.len()
                ));
            }
        }
        Err(e) => super::log(format_args!("{}: lab not re-plumbed: {e}", display(name))),
    }
}

/// Whether the record on this host end says pipework turned its bridge's
/// VLAN filtering on.
async fn turned_on_by(host_ifname: Option<&str>) -> bool {
    let (Some(hi), Ok(host)) = (host_ifname, Net::new(None, false)) else {
        return false;
    };
    match host.link_by_name(hi).await {
        Ok(Some(l)) => matches!(inventory::read(&l, host_ns()),
            Seen::Ours(r) if crate::driver::bridge_vlan::turned_on(&r)),
        _ => false,
    }
}

/// A DHCP keeper is our child: the command line exits and leaves it to
/// init, but `watch` stays, so it must collect the keeper's exit status
/// itself or every dead container would leave a zombie behind.
fn reap(pid: u32) {
    let _ = std::thread::Builder::new()
        .name("pw-reap".into())
        .spawn(move || {
            let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid as i32), None);
        });
}

/// How long the kernel may take to tear a dead namespace's veths down
/// (an announcer still sending in it keeps it alive for about a second).
const TEARDOWN: Duration = Duration::from_secs(30);

/// The host ends whose records name this container (and, when we know it,
/// its dead namespace): (kind, host side) of each and their namespaces.
type Ends = (
    BTreeSet<(&'static str, String)>,
    BTreeSet<u64>,
    usize,
    BTreeSet<String>,
);

async fn host_ends(host: &Net, short: &str, ns: u64) -> Ends {
    let mut out: Ends = Default::default();
    for l in &host.links().await.unwrap_or_default() {
        if let Seen::Ours(rec) = inventory::read(l, host_ns())
            && rec.id.as_deref() == Some(short)
            && (ns == 0 || rec.n == ns)
        {
            out.0.insert((rec.k.as_str(), rec.h.clone()));
            out.1.insert(rec.n);
            out.2 += 1;
            if crate::driver::bridge_vlan::turned_on(&rec) {
                out.3.insert(rec.h.clone());
            }
        }
    }
    out
}

/// Release what a dead container leaves outside its namespace. Returns
/// without waiting for the kernel to tear the namespace down, so the
/// container's next `start` is not held up: the firewall check, which must
/// not see the dead ports as still in use, runs once they are gone.
pub async fn die(cx: &Arc<Ctx>, id: &str, name: &str) {
    let name = display(name).into_owned();
    let known = cx
        .plumbed
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(id)
        .unwrap_or_default();
    let host = match Net::new(None, false) {
        Ok(h) => h,
        Err(e) => {
            super::log(format_args!("{name}: not released: {e}"));
            return;
        }
    };
    let short: String = id.chars().take(12).collect();
    let (mut hosts, mut inodes, left, mut filtering) = host_ends(&host, &short, known.ns).await;
    hosts.extend(known.hosts.iter().cloned());
    filtering.extend(known.filtering.iter().cloned());
    inodes.extend([known.ns].into_iter().filter(|n| *n != 0));
    let mut released = Vec::new();
    for (st, _) in crate::dhcp::keeper::list() {
        if inodes.contains(&st.ns_inode)
            && crate::dhcp::keeper::release_key(st.ns_inode, &st.ifname)
                .await
                .is_ok()
        {
            released.push(format!("DHCP keeper of {}", st.ifname));
        }
    }
    if hosts.iter().any(|(k, _)| *k == Kind::Ovs.as_str()) || known.ns == 0 {
        match crate::driver::ovs::detach_gone(id, None, false).await {
            Ok(rows) => released.extend(rows.into_iter().map(|p| format!("OVS port {}", p.name))),
            Err(e) => super::log(format_args!("{name}: OVS rows not released: {e}")),
        }
    }
    if !released.is_empty() {
        super::log(format_args!("{name}: released {}", released.join(", ")));
    }
    let bridges: Vec<String> = hosts
        .into_iter()
        .filter(|(k, _)| *k == Kind::Bridge.as_str())
        .map(|(_, b)| b)
        .collect();
    if bridges.is_empty() {
        return;
    }
    if left == 0 {
        release_rules(cx, &host, &name, &bridges, &filtering).await;
        return;
    }
    let (cx, ns, who) = (cx.clone(), known.ns, name.clone());
    let spawned = std::thread::Builder::new()
        .name("pw-release".into())
        .spawn(move || {
            let Ok(rt) = crate::rt::current() else {
                return;
            };
            rt.block_on(async {
                let Ok(host) = Net::new(None, false) else {
                    return;
                };
                let until = Instant::now() + TEARDOWN;
                while host_ends(&host, &short, ns).await.2 > 0 {
                    if Instant::now() >= until {
                        super::log(format_args!(
                            "{who}: host interfaces still there after {}s; `pipework gc` will finish",
                            TEARDOWN.as_secs()
                        ));
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                release_rules(&cx, &host, &who, &bridges, &filtering).await;
            });
        });
    if let Err(e) = spawned {
        super::log(format_args!("{name}: cannot start a release thread: {e}"));
    }
}

/// Drop the firewall rule of each bridge no port of ours is left on, and
/// the VLAN filtering we turned on where no VLAN port is left, while no
/// attach of ours to that bridge is under way.
async fn release_rules(
    cx: &Ctx,
    host: &Net,
    name: &str,
    bridges: &[String],
    filtering: &BTreeSet<String>,
) {
    for b in bridges {
        let lock = cx.host_lock(b);
        let _alone = lock.write().await;
        if let Err(e) = crate::firewall::release_bridge_if_unused(host, b).await {
            super::log(format_args!("{name}: firewall rule for {b}: {e}"));
        }
        if filtering.contains(b)
            && let Err(e) = crate::driver::bridge_vlan::release_filtering(host, b).await
        {
            super::log(format_args!("{name}: VLAN filtering on {b}: {e}"));
        }
    }
}
