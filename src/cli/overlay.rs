//! `pipework overlay` flags; the overlay itself takes the typed
//! `overlay::OverlayCmd` this turns them into.
use crate::overlay::OverlayCmd;
use crate::overlay::agent::AgentArgs;
use crate::overlay::store::EtcdOpts;
use clap::{Args, Subcommand};

#[derive(Args, Debug)]
pub struct OverlayArgs {
    #[command(subcommand)]
    pub cmd: OverlayCli,
}

/// Where etcd is and how to reach it; flags named as etcdctl names them.
#[derive(Args, Debug, Clone)]
pub struct EtcdFlags {
    /// etcd endpoints, comma-separated (default $PIPEWORK_ETCD, then http://127.0.0.1:2379).
    #[arg(long = "etcd", env = "PIPEWORK_ETCD")]
    pub etcd: Option<String>,
    /// CA bundle to verify etcd's certificate (as etcdctl --cacert).
    #[arg(long, env = "PIPEWORK_ETCD_CACERT")]
    pub cacert: Option<std::path::PathBuf>,
    /// Client certificate for etcd (as etcdctl --cert).
    #[arg(long, env = "PIPEWORK_ETCD_CERT")]
    pub cert: Option<std::path::PathBuf>,
    /// Client key for etcd (as etcdctl --key).
    #[arg(long, env = "PIPEWORK_ETCD_KEY")]
    pub key: Option<std::path::PathBuf>,
    /// Seconds one etcd request may take before we give up.
    #[arg(long = "etcd-timeout", default_value_t = 3.0)]
    pub etcd_timeout: f64,
}

impl From<EtcdFlags> for EtcdOpts {
    fn from(f: EtcdFlags) -> EtcdOpts {
        EtcdOpts {
            etcd: f.etcd,
            cacert: f.cacert,
            cert: f.cert,
            key: f.key,
            etcd_timeout: f.etcd_timeout,
        }
    }
}

#[derive(Subcommand, Debug)]
pub enum OverlayCli {
    /// Define a network in etcd.
    Create {
        name: String,
        /// IPv4 subnet of the network, e.g. 10.40.0.0/16 (/30 or shorter).
        #[arg(long)]
        subnet: Option<String>,
        /// IPv6 subnet, e.g. fd40::/64 (/64 to /120): with --subnet the
        /// network is dual stack, alone IPv6 only.
        #[arg(long)]
        subnet6: Option<String>,
        /// VXLAN network identifier [default: the lowest free from 4096].
        #[arg(long)]
        vni: Option<u32>,
        /// Container MTU: auto (underlay MTU - 50 over IPv4, - 70 over IPv6) or a number.
        #[arg(long, default_value = "auto")]
        mtu: String,
        /// VXLAN UDP port.
        #[arg(long, default_value_t = 4789)]
        port: u16,
        /// How long a host that went silent keeps its addresses reserved
        /// (e.g. 24h, 90m, 7d; default 24h).
        #[arg(long)]
        grace: Option<String>,
        /// Anycast gateway address every host's bridge carries [default:
        /// the first address of --subnet].
        #[arg(long)]
        gateway: Option<String>,
        /// IPv6 anycast gateway every host's bridge carries [default: the
        /// first address of --subnet6].
        #[arg(long)]
        gateway6: Option<String>,
        /// Give containers no default route through the gateway(s).
        #[arg(long)]
        no_default_route: bool,
        /// Let containers of network NET reach this network's, on any host
        /// (repeatable; new connections one way, replies by conntrack, which
        /// needs br_netfilter across hosts; overlay networks are isolated
        /// from each other otherwise).
        #[arg(long = "allow-from", value_name = "NET")]
        allow_from: Vec<String>,
        /// Encrypt traffic between hosts: VXLAN runs inside a WireGuard
        /// mesh of the hosts (kernel WireGuard needed on each host; --mtu
        /// auto then also takes WireGuard's 60/80 bytes).
        #[arg(long)]
        encrypt: bool,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        etcd: EtcdFlags,
    },
    /// Remove a network (refused while endpoints exist).
    Delete {
        name: String,
        #[command(flatten)]
        etcd: EtcdFlags,
    },
    /// Run this host's agent (stays in the foreground).
    Agent {
        /// Interface or local address that carries VXLAN (required when ambiguous).
        #[arg(long, env = "PIPEWORK_OVERLAY_UNDERLAY")]
        underlay: Option<String>,
        /// This host's name in etcd [default: the hostname].
        #[arg(long, env = "PIPEWORK_OVERLAY_NAME")]
        name: Option<String>,
        /// Lease TTL in seconds: a dead host's endpoints vanish after this.
        #[arg(long, default_value_t = 10, env = "PIPEWORK_OVERLAY_TTL")]
        ttl: i64,
        /// Networks to build here even without a local container
        /// (comma-separated, or "all"); others are built on first use.
        #[arg(long, value_delimiter = ',', env = "PIPEWORK_OVERLAY_NETWORKS")]
        networks: Vec<String>,
        /// UDP port of this host's WireGuard device (encrypted networks).
        #[arg(long, default_value_t = 51820, env = "PIPEWORK_OVERLAY_WG_PORT")]
        wg_port: u16,
        #[command(flatten)]
        etcd: EtcdFlags,
    },
    /// Hosts, endpoints, MTUs and drift between etcd and this host's kernel.
    Status {
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        etcd: EtcdFlags,
    },
    /// Hosts: `host rm NAME` releases the addresses of a host gone for good.
    Host {
        #[command(subcommand)]
        cmd: HostCli,
    },
}

#[derive(Subcommand, Debug)]
pub enum HostCli {
    /// Release every address host NAME reserves (refused while it is live).
    Rm {
        name: String,
        #[command(flatten)]
        etcd: EtcdFlags,
    },
}

impl From<OverlayCli> for OverlayCmd {
    fn from(c: OverlayCli) -> OverlayCmd {
        match c {
            OverlayCli::Create {
                name,
                subnet,
                subnet6,
                vni,
                mtu,
                port,
                grace,
                gateway,
                gateway6,
                no_default_route,
                allow_from,
                encrypt,
                json,
                etcd,
            } => OverlayCmd::Create {
                name,
                subnet,
                subnet6,
                vni,
                mtu,
                port,
                grace,
                gateway,
                gateway6,
                no_default_route,
                allow_from,
                encrypt,
                json,
                etcd: etcd.into(),
            },
            OverlayCli::Delete { name, etcd } => OverlayCmd::Delete {
                name,
                etcd: etcd.into(),
            },
            OverlayCli::Agent {
                underlay,
                name,
                ttl,
                networks,
                wg_port,
                etcd,
            } => OverlayCmd::Agent(AgentArgs {
                underlay,
                name,
                ttl,
                etcd: etcd.into(),
                networks,
                wg_port,
            }),
            OverlayCli::Status { json, etcd } => OverlayCmd::Status {
                json,
                etcd: etcd.into(),
            },
            OverlayCli::Host {
                cmd: HostCli::Rm { name, etcd },
            } => OverlayCmd::HostRm {
                name,
                etcd: etcd.into(),
            },
        }
    }
}
