//! The multi-host overlay: VXLAN networks whose definitions, hosts and
//! endpoints live in etcd (never a home-made consensus).
//!
//! - `store`: etcd connection (bounded calls), key layout, records.
//! - `network`: `overlay create` / `overlay delete`.
//! - `alloc`: cluster-wide address claims (one transaction each);
//!   `want`: what an attach asks for (auto, or one address per family).
//! - `attach`: the classic `pipework NET $CID IP|auto` and detach's hook.
//! - `agent`: the per-host resident process; `model`: its copy of etcd,
//!   `lease`: its liveness and hold leases; `fdb`: its kernel side.
//! - `underlay`, `names`, `state`, `status`.
pub mod agent;
pub mod alloc;
pub mod attach;
pub mod crypt;
pub mod endpoint;
pub mod etcd;
pub mod fdb;
pub mod gc;
pub mod lease;
pub mod model;
pub mod names;
pub mod network;
pub mod state;
pub mod status;
pub mod store;
pub mod sweep;
pub mod underlay;
pub mod want;

use crate::error::Result;

/// What `pipework overlay …` asks for (the CLI's flags, typed).
#[derive(Debug)]
pub enum OverlayCmd {
    /// Define a network in etcd.
    Create {
        name: String,
        /// IPv4 subnet (None: IPv6 only).
        subnet: Option<String>,
        /// IPv6 subnet (None: IPv4 only).
        subnet6: Option<String>,
        vni: Option<u32>,
        /// `auto` or a number.
        mtu: String,
        port: u16,
        /// How long a silent host keeps its addresses ("24h", "90m", "3600").
        grace: Option<String>,
        /// The anycast gateway (default: the subnet's first address).
        gateway: Option<String>,
        /// The IPv6 anycast gateway (default: subnet6's first address).
        gateway6: Option<String>,
        no_default_route: bool,
        allow_from: Vec<String>,
        /// VXLAN between hosts only inside WireGuard.
        encrypt: bool,
        json: bool,
        etcd: store::EtcdOpts,
    },
    /// Remove a network (refused while endpoints exist).
    Delete { name: String, etcd: store::EtcdOpts },
    /// Run this host's agent (stays in the foreground).
    Agent(agent::AgentArgs),
    /// Hosts, endpoints, MTUs and drift.
    Status { json: bool, etcd: store::EtcdOpts },
    /// Release a host's addresses (a host that is gone for good).
    HostRm { name: String, etcd: store::EtcdOpts },
}

pub async fn run(cmd: OverlayCmd) -> Result<i32> {
    match cmd {
        OverlayCmd::Create {
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
        } => {
            let spec = network::create(
                &etcd,
                &network::CreateArgs {
                    name: &name,
                    subnet: subnet.as_deref(),
                    subnet6: subnet6.as_deref(),
                    vni,
                    mtu: &mtu,
                    port,
                    grace: grace.as_deref(),
                    gateway: gateway.as_deref(),
                    gateway6: gateway6.as_deref(),
                    no_default_route,
                    allow_from: &allow_from,
                    encrypt,
                },
            )
            .await?;
            if json {
                println!("{}", serde_json::to_string(&spec).unwrap_or_default());
            } else {
                let gws: Vec<String> = spec.gateways().iter().map(|g| g.to_string()).collect();
                println!(
                    "created overlay {} {} vni {} mtu {} port {} gateway {}{}",
                    spec.name,
                    spec.subnets(),
                    spec.vni,
                    spec.mtu,
                    spec.port,
                    gws.join(" "),
                    if spec.encrypt {
                        " encrypted (WireGuard)"
                    } else {
                        ""
                    }
                );
            }
            Ok(0)
        }
        OverlayCmd::Delete { name, etcd } => {
            network::delete(&etcd, &name).await?;
            println!("deleted overlay {name}");
            Ok(0)
        }
        OverlayCmd::Agent(args) => agent::run(args).await.map(|()| 0),
        OverlayCmd::Status { json, etcd } => {
            let s = status::run(&etcd).await?;
            status::print(&s, json);
            Ok(0)
        }
        OverlayCmd::HostRm { name, etcd } => {
            let n = network::host_rm(&etcd, &name).await?;
            println!("released {n} address(es) of host {name}");
            Ok(0)
        }
    }
}
