//! The multi-host overlay: VXLAN networks whose definitions, hosts and
//! endpoints live in etcd (never a home-made consensus).
//!
//! - `store`: etcd connection (bounded calls), key layout, records.
//! - `network`: `overlay create` / `overlay delete`.
//! - `alloc`: cluster-wide address claims (one transaction each).
//! - `attach`: the classic `pipework NET $CID IP|auto` and detach's hook.
//! - `agent`: the per-host resident process; `fdb`: its kernel side.
//! - `underlay`, `names`, `state`, `status`.
pub mod agent;
pub mod alloc;
pub mod attach;
pub mod etcd;
pub mod fdb;
pub mod names;
pub mod network;
pub mod state;
pub mod status;
pub mod store;
pub mod underlay;

use crate::error::Result;
use clap::{Args, Subcommand};

#[derive(Args, Debug)]
pub struct OverlayArgs {
    #[command(subcommand)]
    pub cmd: OverlayCmd,
}

#[derive(Subcommand, Debug)]
pub enum OverlayCmd {
    /// Define a network in etcd.
    Create {
        name: String,
        /// IPv4 subnet of the network, e.g. 10.40.0.0/16.
        #[arg(long)]
        subnet: String,
        /// VXLAN network identifier [default: the lowest free from 4096].
        #[arg(long)]
        vni: Option<u32>,
        /// Container MTU: auto (underlay MTU - 50 over IPv4, - 70 over IPv6) or a number.
        #[arg(long, default_value = "auto")]
        mtu: String,
        /// VXLAN UDP port.
        #[arg(long, default_value_t = 4789)]
        port: u16,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        etcd: store::EtcdOpts,
    },
    /// Remove a network (refused while endpoints exist).
    Delete {
        name: String,
        #[command(flatten)]
        etcd: store::EtcdOpts,
    },
    /// Run this host's agent (stays in the foreground).
    Agent(agent::AgentArgs),
    /// Hosts, endpoints, MTUs and drift between etcd and this host's kernel.
    Status {
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        etcd: store::EtcdOpts,
    },
}

pub async fn run(a: OverlayArgs) -> Result<i32> {
    match a.cmd {
        OverlayCmd::Create {
            name,
            subnet,
            vni,
            mtu,
            port,
            json,
            etcd,
        } => {
            let spec = network::create(
                &etcd,
                &network::CreateArgs {
                    name: &name,
                    subnet: &subnet,
                    vni,
                    mtu: &mtu,
                    port,
                },
            )
            .await?;
            if json {
                println!("{}", serde_json::to_string(&spec).unwrap_or_default());
            } else {
                println!(
                    "created overlay {} {} vni {} mtu {} port {}",
                    spec.name, spec.subnet, spec.vni, spec.mtu, spec.port
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
    }
}
