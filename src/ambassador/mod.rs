//! `pipework ambassador`: a zero-copy TCP/UDP forwarder.
//!
//! The ambassador pattern: a container reaches a service through a local
//! forwarder instead of hard-coded addresses. Listeners can live inside a
//! guest's namespace (`--netns`) while the process and its backend
//! connections stay on the host, so no extra container is needed.
//!
//! Layout: `config` (what to do) → `listener`/`udp` (sockets and accept
//! loops) → `splice` + `pipe` (the data path) → `backend` + `health`
//! (choosing where to go); `metrics`, `log` and `env` on the side.
pub mod backend;
pub mod config;
pub mod env;
pub mod health;
pub mod listener;
pub mod log;
pub mod metrics;
pub mod pipe;
pub mod splice;
pub mod state;
pub mod udp;

use crate::error::{Error, Result};
use crate::netns::NetNs;
use backend::BackendSet;
use config::{Balance, ListenerSpec, Overrides, Settings};
use listener::Bound;
use state::{ListenerState, Shared};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// A flag value tagged with its position on the command line, so `--to`
/// options can be attached to the `--listen` before them (clap keeps the
/// values of each flag apart and would lose that pairing).
#[derive(Clone, Debug)]
pub struct Seq {
    pub n: usize,
    pub val: String,
}

static SEQ: AtomicUsize = AtomicUsize::new(0);

pub fn seq(s: &str) -> std::result::Result<Seq, String> {
    Ok(Seq {
        n: SEQ.fetch_add(1, Ordering::Relaxed),
        val: s.to_string(),
    })
}

pub fn duration(s: &str) -> std::result::Result<Duration, String> {
    config::parse_duration(s)
}

/// `pipework ambassador`'s settings, as the CLI typed them.
#[derive(Debug)]
pub struct AmbassadorArgs {
    /// Listen on ADDR (IP:PORT, tcp by default; udp:IP:PORT for UDP). The
    /// --to options that follow it name its backends.
    pub listen: Vec<Seq>,
    /// A backend HOST:PORT for the preceding --listen (names are resolved at
    /// connect time and re-resolved).
    pub to: Vec<Seq>,
    /// TOML file with listeners and settings; re-read on SIGHUP.
    pub config: Option<PathBuf>,
    /// Backend choice: round-robin or least connections [default: rr].
    pub balance: Option<Balance>,
    /// Give up on a backend connect after this long and try the next [default: 3s].
    pub connect_timeout: Option<Duration>,
    /// Active TCP health check period, 0 to disable [default: 2s].
    pub health_interval: Option<Duration>,
    /// Close TCP connections idle this long, 0 to disable [default: 1h].
    pub idle_timeout: Option<Duration>,
    /// End UDP sessions idle this long [default: 60s].
    pub udp_timeout: Option<Duration>,
    /// Refuse connections beyond this many [default: from `ulimit -n`].
    pub max_conns: Option<usize>,
    /// On SIGTERM, wait this long for open connections to finish [default: 30s].
    pub drain_timeout: Option<Duration>,
    /// Serve Prometheus metrics on ADDR (IP:PORT), path /metrics.
    pub metrics: Option<String>,
    /// Add listeners from Docker-link variables (NAME_PORT_<n>_TCP=tcp://ip:port).
    pub from_env: bool,
    /// Address the --from-env listeners bind to.
    /// Address the --from-env listeners bind to (the CLI's default: 0.0.0.0).
    pub env_bind: IpAddr,
    /// Worker threads [default: one per CPU].
    pub threads: Option<usize>,
    /// Bind the listeners inside this guest's network namespace.
    pub netns: Option<String>,
}

/// Everything a reload needs to rebuild the configuration.
struct Ctx {
    shared: Arc<Shared>,
    registry: metrics::Registry,
    fixed: Vec<ListenerSpec>,
    cli: Overrides,
    file: Option<PathBuf>,
    ns: Option<NetNs>,
    default_max: usize,
}

pub fn run(args: AmbassadorArgs) -> Result<()> {
    let fixed = cli_listeners(&args)?;
    let env_specs = if args.from_env {
        env::listeners(std::env::vars(), args.env_bind)?
    } else {
        Vec::new()
    };
    let cli = Overrides {
        balance: args.balance,
        connect_timeout: args.connect_timeout.map(config::DurationStr),
        health_interval: args.health_interval.map(config::DurationStr),
        idle_timeout: args.idle_timeout.map(config::DurationStr),
        udp_timeout: args.udp_timeout.map(config::DurationStr),
        max_conns: args.max_conns,
        drain_timeout: args.drain_timeout.map(config::DurationStr),
    };
    let metrics_addr = match &args.metrics {
        Some(m) => {
            let l = config::parse_listen(m).map_err(|e| Error::bad("--metrics", e))?;
            if l.proto != config::Proto::Tcp {
                return Err(Error::bad(m, "metrics are served over TCP (HTTP)"));
            }
            Some(l.addr)
        }
        None => None,
    };
    let ns = args.netns.as_deref().map(open_guest).transpose()?;
    let default_max = raise_fd_limit();
    let mut fixed = fixed;
    fixed.extend(env_specs);
    let ctx = Ctx {
        shared: Arc::new(Shared::new(defaults(default_max))),
        registry: Arc::default(),
        fixed,
        cli,
        file: args.config.clone(),
        ns,
        default_max,
    };
    let (settings, specs) = ctx.desired()?;
    if specs.is_empty() {
        return Err(Error::bad(
            "ambassador",
            "nothing to forward: give --listen ADDR --to HOST:PORT, --config FILE or --from-env",
        ));
    }
    ctx.shared.set_settings(settings);
    // Bind everything before starting anything: a bad address fails the
    // whole start with nothing listening.
    let mut bound = Vec::new();
    for s in &specs {
        bound.push((s.clone(), listener::bind(s.listen, ctx.ns.as_ref())?));
    }
    let metrics_sock = match metrics_addr {
        Some(a) => Some(
            std::net::TcpListener::bind(a)
                .and_then(|l| l.set_nonblocking(true).map(|_| l))
                .map_err(|e| Error::io(format!("cannot serve metrics on {a}"), e))?,
        ),
        None => None,
    };

    let rt = crate::rt::multi(args.threads)?;
    let res = rt.block_on(async {
        for (spec, b) in bound {
            ctx.start(&spec, b)?;
        }
        ctx.check_names().await;
        if let Some(m) = metrics_sock {
            let l = tokio::net::TcpListener::from_std(m)
                .map_err(|e| Error::io("metrics listener", e))?;
            log::info("metrics", &[("addr", &display_local(&l))]);
            tokio::spawn(metrics::serve(l, ctx.registry.clone(), ctx.shared.clone()));
        }
        tokio::spawn(async {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                pipe::POOL.trim();
            }
        });
        ctx.signals().await
    });
    rt.shutdown_timeout(Duration::from_secs(1));
    res
}

fn display_local(l: &tokio::net::TcpListener) -> String {
    l.local_addr().map(|a| a.to_string()).unwrap_or_default()
}

fn defaults(max_conns: usize) -> Settings {
    Settings {
        balance: Balance::Rr,
        connect_timeout: Duration::from_secs(3),
        health_interval: Duration::from_secs(2),
        idle_timeout: Duration::from_secs(3600),
        udp_timeout: Duration::from_secs(60),
        max_conns,
        drain_timeout: Duration::from_secs(30),
    }
}

/// Pair each `--to` with the `--listen` before it on the command line.
fn cli_listeners(a: &AmbassadorArgs) -> Result<Vec<ListenerSpec>> {
    let mut all: Vec<(usize, bool, &str)> = a
        .listen
        .iter()
        .map(|s| (s.n, true, s.val.as_str()))
        .chain(a.to.iter().map(|s| (s.n, false, s.val.as_str())))
        .collect();
    all.sort_by_key(|x| x.0);
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    for (_, is_listen, v) in all {
        if is_listen {
            out.push((v.to_string(), Vec::new()));
        } else {
            match out.last_mut() {
                Some(l) => l.1.push(v.to_string()),
                None => {
                    return Err(Error::bad(
                        format!("--to {v}"),
                        "comes before any --listen; write --listen ADDR --to HOST:PORT",
                    ));
                }
            }
        }
    }
    out.iter()
        .map(|(l, to)| config::spec(l, to, None))
        .collect()
}

/// Same guest forms as attach: container name or id, pid, netns:NAME, path.
fn open_guest(spec: &str) -> Result<NetNs> {
    let g = crate::guest::resolve(spec)?;
    log::info(
        "guest",
        &[
            ("spec", &spec),
            ("name", &g.name),
            ("netns", &g.netns.path.display()),
        ],
    );
    Ok(g.netns)
}

/// Lift the soft fd limit to the hard one, and derive the default
/// max-conns: two fds per connection plus headroom for pipes and listeners.
fn raise_fd_limit() -> usize {
    let mut lim = libc::rlimit {
        rlim_cur: 1024,
        rlim_max: 1024,
    };
    // SAFETY: getrlimit/setrlimit only read/write the struct we pass.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        if lim.rlim_cur < lim.rlim_max {
            let want = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &want) == 0 {
                lim.rlim_cur = lim.rlim_max;
            }
        }
    }
    let soft = usize::try_from(lim.rlim_cur)
        .unwrap_or(usize::MAX / 4)
        .min(1 << 24);
    (soft.saturating_sub(256) / 2).max(1)
}

impl Ctx {
    /// Settings and listeners as the sources say right now.
    fn desired(&self) -> Result<(Settings, Vec<ListenerSpec>)> {
        let mut s = defaults(self.default_max);
        let mut lists = vec![self.fixed.clone()];
        if let Some(f) = &self.file {
            let (o, specs) = config::read_file(f)?;
            o.apply(&mut s);
            lists.push(specs);
        }
        self.cli.apply(&mut s);
        Ok((s, config::merge(lists)?))
    }

    fn start(&self, spec: &ListenerSpec, b: Bound) -> Result<()> {
        let settings = self.shared.settings();
        let set = BackendSet::new(
            &spec.backends,
            spec.balance.unwrap_or(settings.balance),
            None,
        );
        let st = Arc::new(ListenerState::new(spec.listen, set));
        let local = match b {
            Bound::Tcp(l) => {
                let l = tokio::net::TcpListener::from_std(l)
                    .map_err(|e| Error::io(format!("listener {}", spec.listen), e))?;
                let local = display_local(&l);
                tokio::spawn(listener::serve_tcp(l, st.clone(), self.shared.clone()));
                tokio::spawn(health::run(
                    Arc::downgrade(&st),
                    Arc::downgrade(&self.shared),
                ));
                local
            }
            Bound::Udp(u) => {
                let u = tokio::net::UdpSocket::from_std(u)
                    .map_err(|e| Error::io(format!("listener {}", spec.listen), e))?;
                let local = u.local_addr().map(|a| a.to_string()).unwrap_or_default();
                tokio::spawn(udp::serve_udp(u, st.clone(), self.shared.clone()));
                local
            }
        };
        log::info(
            "listening",
            &[
                ("listen", &st.label),
                ("addr", &local),
                ("to", &spec.backends.join(",")),
            ],
        );
        if let Ok(mut r) = self.registry.lock() {
            r.push(st);
        }
        Ok(())
    }

    /// Unknown backend names are not fatal (DNS may come later, a linked
    /// container may not exist yet): warn, mark down, and let the checker retry.
    async fn check_names(&self) {
        let listeners: Vec<_> = self.registry.lock().map(|r| r.clone()).unwrap_or_default();
        for l in listeners {
            for b in &l.backends().backends {
                let r = tokio::time::timeout(Duration::from_secs(2), b.resolve()).await;
                let err = match r {
                    Ok(Ok(_)) => continue,
                    Ok(Err(e)) => e.to_string(),
                    Err(_) => "resolver timed out".to_string(),
                };
                b.up.store(false, Ordering::Relaxed);
                log::warn(
                    "backend host does not resolve; will keep retrying",
                    &[("listen", &l.label), ("backend", &b.name), ("err", &err)],
                );
            }
        }
        log::info("ready", &[("pid", &std::process::id())]);
    }

    /// SIGHUP: re-read the file and converge. New sockets are bound before
    /// anything changes, so a failed reload leaves the old setup intact.
    /// Established connections are separate tasks and are never touched.
    fn reload(&self) -> Result<()> {
        let (settings, specs) = self.desired()?;
        let current: Vec<Arc<ListenerState>> =
            self.registry.lock().map(|r| r.clone()).unwrap_or_default();
        let mut fresh = Vec::new();
        for s in &specs {
            if !current.iter().any(|l| l.listen == s.listen) {
                fresh.push((s.clone(), listener::bind(s.listen, self.ns.as_ref())?));
            }
        }
        self.shared.set_settings(settings.clone());
        for l in &current {
            match specs.iter().find(|s| s.listen == l.listen) {
                Some(s) => {
                    let old = l.backends();
                    let balance = s.balance.unwrap_or(settings.balance);
                    l.set_backends(BackendSet::new(&s.backends, balance, Some(&old)));
                }
                None => l.shut(),
            }
        }
        if let Ok(mut r) = self.registry.lock() {
            r.retain(|l| !l.stopped.load(Ordering::Relaxed));
        }
        for (s, b) in fresh {
            self.start(&s, b)?;
        }
        Ok(())
    }

    async fn signals(&self) -> Result<()> {
        use tokio::signal::unix::{SignalKind, signal};
        let sig = |k| signal(k).map_err(|e| Error::io("cannot install signal handler", e));
        let mut hup = sig(SignalKind::hangup())?;
        let mut term = sig(SignalKind::terminate())?;
        let mut int = sig(SignalKind::interrupt())?;
        loop {
            tokio::select! {
                _ = hup.recv() => match (&self.file, self.reload()) {
                    (None, _) => log::info("SIGHUP without --config: nothing to reload", &[]),
                    (Some(f), Ok(())) => log::info("reloaded", &[("config", &f.display())]),
                    (Some(_), Err(e)) => {
                        log::warn("reload failed, keeping the running configuration", &[("err", &e)])
                    }
                },
                _ = term.recv() => break,
                _ = int.recv() => break,
            }
        }
        self.drain().await;
        Ok(())
    }

    /// Stop accepting everywhere, then wait for open connections to finish,
    /// up to the drain deadline.
    async fn drain(&self) {
        let listeners: Vec<_> = self.registry.lock().map(|r| r.clone()).unwrap_or_default();
        for l in &listeners {
            l.shut();
        }
        let s = self.shared.settings();
        let deadline = tokio::time::Instant::now() + s.drain_timeout;
        let open = || self.shared.active.load(Ordering::Relaxed);
        log::info(
            "draining",
            &[
                ("open", &open()),
                ("deadline", &format!("{:?}", s.drain_timeout)),
            ],
        );
        loop {
            let n = self.shared.idle.notified();
            if open() == 0 {
                log::info("drained", &[]);
                return;
            }
            tokio::select! {
                _ = n => {}
                _ = tokio::time::sleep_until(deadline) => {
                    log::warn("drain deadline passed, closing", &[("open", &open())]);
                    return;
                }
            }
        }
    }
}
