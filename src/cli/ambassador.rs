//! `pipework ambassador` flags; the proxy takes the typed
//! `ambassador::AmbassadorArgs` this turns them into.
use crate::ambassador::config::Balance;
use crate::ambassador::{Seq, duration, seq};
use clap::Args;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Args, Debug)]
pub struct AmbassadorArgs {
    /// Listen on ADDR (IP:PORT, tcp by default; udp:IP:PORT for UDP). The
    /// --to options that follow it name its backends.
    #[arg(long, value_name = "ADDR", value_parser = seq)]
    pub listen: Vec<Seq>,
    /// A backend HOST:PORT for the preceding --listen (names are resolved at
    /// connect time and re-resolved).
    #[arg(long, value_name = "HOST:PORT", value_parser = seq)]
    pub to: Vec<Seq>,
    /// TOML file with listeners and settings; re-read on SIGHUP.
    #[arg(long, value_name = "FILE.toml")]
    pub config: Option<PathBuf>,
    /// Backend choice: round-robin or least connections [default: rr].
    #[arg(long, value_parser = ["rr", "leastconn"])]
    pub balance: Option<String>,
    /// Give up on a backend connect after this long and try the next [default: 3s].
    #[arg(long, value_name = "DUR", value_parser = duration)]
    pub connect_timeout: Option<Duration>,
    /// Active TCP health check period, 0 to disable [default: 2s].
    #[arg(long, value_name = "DUR", value_parser = duration)]
    pub health_interval: Option<Duration>,
    /// Close TCP connections idle this long, 0 to disable [default: 1h].
    #[arg(long, value_name = "DUR", value_parser = duration)]
    pub idle_timeout: Option<Duration>,
    /// End UDP sessions idle this long [default: 60s].
    #[arg(long, value_name = "DUR", value_parser = duration)]
    pub udp_timeout: Option<Duration>,
    /// Refuse connections beyond this many [default: from `ulimit -n`].
    #[arg(long, value_name = "N")]
    pub max_conns: Option<usize>,
    /// On SIGTERM, wait this long for open connections to finish [default: 30s].
    #[arg(long, value_name = "DUR", value_parser = duration)]
    pub drain_timeout: Option<Duration>,
    /// Serve Prometheus metrics on ADDR (IP:PORT), path /metrics.
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<String>,
    /// Add listeners from Docker-link variables (NAME_PORT_<n>_TCP=tcp://ip:port).
    #[arg(long)]
    pub from_env: bool,
    /// Address the --from-env listeners bind to.
    #[arg(long, value_name = "IP", default_value = "0.0.0.0")]
    pub env_bind: IpAddr,
    /// Worker threads [default: one per CPU].
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// Bind the listeners inside this guest's network namespace.
    #[arg(long, value_name = "GUEST")]
    pub netns: Option<String>,
}

impl From<AmbassadorArgs> for crate::ambassador::AmbassadorArgs {
    fn from(a: AmbassadorArgs) -> Self {
        crate::ambassador::AmbassadorArgs {
            balance: a.balance.as_deref().map(|b| match b {
                "leastconn" => Balance::Leastconn,
                _ => Balance::Rr,
            }),
            listen: a.listen,
            to: a.to,
            config: a.config,
            connect_timeout: a.connect_timeout,
            health_interval: a.health_interval,
            idle_timeout: a.idle_timeout,
            udp_timeout: a.udp_timeout,
            max_conns: a.max_conns,
            drain_timeout: a.drain_timeout,
            metrics: a.metrics,
            from_env: a.from_env,
            env_bind: a.env_bind,
            threads: a.threads,
            netns: a.netns,
        }
    }
}
