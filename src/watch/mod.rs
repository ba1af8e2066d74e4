//! `pipework watch`: a resident process that follows the Docker Engine's
//! event stream and plumbs containers from their labels
//! (`pipework.IFNAME="HOSTIF IP [MAC][@VLAN]"`), again on every restart,
//! and releases what outlives them when they die.
//!
//! Order matters for not missing anything: subscribe to the events first,
//! then list the running containers and plumb those that lack their
//! interfaces (attach is idempotent: an interface that is already there
//! with our record is left alone). Whatever starts after the subscription
//! is in the stream; whatever started before is in the list. When the
//! engine goes away (dockerd restart) we reconnect with backoff and do the
//! same again.
//!
//! The stream, the list and the inspects come from `guest::engine`, the
//! one file that speaks the Engine API; it reads the stream with blocking
//! I/O on this loop's own thread, which has nothing else to wait for.
mod labels;
mod plumb;
mod workers;

use crate::error::{Error, Result};
use crate::guest::engine::{self, Engine};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// `pipework watch`'s settings.
#[derive(Debug, Clone)]
pub struct WatchArgs {
    /// Host sides a label may name (shell patterns); empty: `br*`.
    pub allow: Vec<String>,
    /// Engine socket URL; None: $DOCKER_HOST, then /var/run/docker.sock.
    pub docker_host: Option<String>,
}

/// What every worker shares.
pub struct Ctx {
    pub engine: Engine,
    pub allow: labels::Allow,
    /// Container id → what we plumbed into it (for its `die`).
    pub plumbed: Mutex<HashMap<String, plumb::Plumbed>>,
    /// Per host side: attaches share it, a `die` releasing that bridge's
    /// firewall rule takes it alone. Within one process the "is a live
    /// pipework still building a port here?" check cannot tell our own
    /// workers apart (they share our pid), so it must not race them.
    pub hosts: Mutex<HashMap<String, Arc<tokio::sync::RwLock<()>>>>,
}

impl Ctx {
    pub fn host_lock(&self, host: &str) -> Arc<tokio::sync::RwLock<()>> {
        self.hosts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(host.to_string())
            .or_default()
            .clone()
    }
}

/// One line on stderr (journald timestamps it under systemd).
pub fn log(args: std::fmt::Arguments<'_>) {
    eprintln!("pipework watch: {args}");
}

const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Runs until killed; returns only on bad arguments.
pub fn run(args: WatchArgs) -> Result<()> {
    let engine = Engine::from_flag(args.docker_host.as_deref())?;
    let allow = if args.allow.is_empty() {
        vec!["br*".to_string()]
    } else {
        args.allow
    };
    if let Some(p) = allow.iter().find(|p| p.is_empty()) {
        return Err(Error::bad(
            format!("'{p}'"),
            "--allow takes a non-empty pattern",
        ));
    }
    crate::address::announce::set_long_lived();
    let cx = Arc::new(Ctx {
        engine,
        allow: labels::Allow(allow),
        plumbed: Mutex::default(),
        hosts: Mutex::default(),
    });
    log(format_args!(
        "following {} (host sides allowed: {})",
        cx.engine.sock().display(),
        cx.allow.0.join(",")
    ));
    let pool = workers::Pool::new(cx.clone());
    let mut backoff = BACKOFF_MIN;
    let mut down_since_logged = false;
    loop {
        let mut events = match cx.engine.events() {
            Ok(e) => e,
            Err(e) => {
                if !down_since_logged {
                    log(format_args!("{e}; retrying"));
                    down_since_logged = true;
                }
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(BACKOFF_MAX);
                continue;
            }
        };
        if down_since_logged {
            log(format_args!("engine is back; resyncing"));
        }
        down_since_logged = false;
        backoff = BACKOFF_MIN;
        if let Err(e) = resync(&cx, &pool) {
            log(format_args!("resync: {e}"));
            continue;
        }
        loop {
            match events.next_event() {
                Ok(ev) => dispatch(&pool, ev),
                Err(e) => {
                    log(format_args!("{e}; reconnecting"));
                    down_since_logged = true;
                    break;
                }
            }
        }
    }
}

/// Plumb the running containers that carry our labels.
fn resync(cx: &Ctx, pool: &workers::Pool) -> Result<()> {
    for c in cx.engine.running()? {
        let labels = c.labels.clone().unwrap_or_default();
        if wanted(&labels, &c.name(), &c.id) {
            pool.submit(
                &c.id,
                workers::Job::Start {
                    name: c.name(),
                    labels,
                    event_ns: None,
                },
            );
        }
    }
    Ok(())
}

/// Whether a container is ours to plumb: it carries our labels, or it is
/// a node of a lab that is up (whose links its restart took away).
fn wanted(labels: &BTreeMap<String, String>, name: &str, id: &str) -> bool {
    labels::has_ours(labels) || !crate::lab::hook::labs_of(name, id).is_empty()
}

fn dispatch(pool: &workers::Pool, ev: engine::Event) {
    if ev.kind != "container" {
        return;
    }
    let id = ev.actor.id.clone();
    let mut attrs = ev.actor.attributes;
    let name = attrs.remove("name").unwrap_or_else(|| id.clone());
    let ours = labels::has_ours(&attrs);
    if !ours && (ev.action != "start" || crate::lab::hook::labs_of(&name, &id).is_empty()) {
        return;
    }
    match ev.action.as_str() {
        "start" => pool.submit(
            &id,
            workers::Job::Start {
                name,
                // Only our labels: the other attributes (image, exitCode…)
                // are the engine's, not the container's.
                labels: attrs
                    .into_iter()
                    .filter(|(k, _)| k.starts_with(labels::PREFIX))
                    .collect(),
                event_ns: ev.time_nano.map(u128::from),
            },
        ),
        "die" => pool.submit(&id, workers::Job::Die { name }),
        _ => {}
    }
}
