//! Flags, defined once. The classic positional form is rewritten into
//! `attach` (see classic.rs), so both share these definitions.
use clap::{Args, Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "pipework",
    version,
    about = "Plumb containers into host networks: bridges, veth, addresses, routes",
    long_about = "Plumb containers into host networks.\n\nClassic form (drop-in for the pipework shell script):\n  pipework <hostif> [-i cif] [-l lif] [-a 4|6] <guest> <ip>[/len][@gw] [mac][@vlan]\n\n<guest> is a Docker/Podman container name or id, a pid, pid:N, netns:NAME,\nor a namespace path (/proc/PID/ns/net, /var/run/netns/NAME).",
    after_help = "Examples:\n  pipework br1 web1 192.168.4.25/20@192.168.4.1\n  pipework br1 -i eth2 -l hostapp1 $CID 10.0.0.5/24\n  pipework br1 $CID 10.0.0.2/24 U:myhost.example.com\n  pipework detach web1 -i eth1\n  pipework ls --json"
)]
pub struct Cli {
    #[command(subcommand)]
    pub cmd: Cmd,
}

// Parsed once per process; boxing the big variant would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Attach a guest to a host interface (the classic form without the word `attach`).
    Attach(AttachArgs),
    /// Remove what attach built (idempotent).
    Detach(DetachArgs),
    /// List attachments on this host.
    Ls(LsArgs),
    /// Remove what killed runs and vanished guests left behind (only ours).
    Gc(GcArgs),
    /// Build and tear down a throwaway two-namespace bridge network.
    Demo,
    /// Inside a container: wait until an interface exists and is up.
    Wait(WaitArgs),
    /// Run `ip route …` inside the guest's namespace.
    Route(PassArgs),
    /// Run `ip rule …` inside the guest's namespace.
    Rule(PassArgs),
    /// Run `tc …` inside the guest's namespace.
    Tc(PassArgs),
    /// Reach macvlan guests from the host through a host-side macvlan.
    HostShim(PassArgs),
    /// Forward TCP/UDP to backends, zero-copy (splice), optionally listening inside a guest.
    Ambassador(super::ambassador::AmbassadorArgs),
    /// Connect two guests with a point-to-point veth pair (no bridge).
    Link(super::link::LinkArgs),
    /// Declarative labs: up, down, status, graph.
    Lab(super::lab::LabArgs),
    /// Cross-host VXLAN networks kept in etcd: create, delete, agent, status.
    #[cfg(feature = "overlay")]
    Overlay(super::overlay::OverlayArgs),
    /// Why can't A and B talk? Walk the path, name the cause and the fix.
    Doctor(super::doctor::DoctorArgs),
    /// Follow Docker events: plumb containers from their pipework.IFNAME labels on every start.
    Watch(WatchFlags),
    /// Print the man page (roff) to stdout.
    Man,
    /// Print shell completions to stdout.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(Args, Debug, Clone)]
pub struct AttachArgs {
    /// Host interface: a Linux bridge (created if the name starts with br), an OVS bridge, a NIC, or `dummy`.
    pub host: String,
    /// Guest: container name or id, pid, pid:N, netns:NAME, or a namespace path.
    pub guest: String,
    /// ip/len[@gateway], 0/0 for none, or dhcp[:once|:OPTS], udhcpc, dhclient, dhcpcd.
    pub ip: Option<String>,
    /// MAC address (or U:string for a stable derived one), optionally @VLAN.
    pub mac: Option<String>,
    /// Interface name inside the guest [default: eth1; ib0 on InfiniBand].
    #[arg(short = 'i', long = "ifname")]
    pub ifname: Option<String>,
    /// Host-side interface name (default: v<if>pl<pid> or a stable hash).
    #[arg(short = 'l', long = "host-ifname")]
    pub host_ifname: Option<String>,
    /// Address family of the address argument (4 or 6).
    #[arg(short = 'a', long = "family")]
    pub family: Option<String>,
    /// Extra address (ip/len[@gw]); repeatable. On an overlay network:
    /// the other family's address (`10.40.0.5/16 --ip fd40::5/64`).
    #[arg(long = "ip")]
    pub ips: Vec<String>,
    /// MTU of the new links (default: the bridge's or parent's).
    #[arg(long)]
    pub mtu: Option<u32>,
    /// Create the bridge even if its name does not start with br.
    #[arg(long)]
    pub create: bool,
    /// Move the host interface itself into the guest.
    #[arg(long = "direct-phys")]
    pub direct_phys: bool,
    /// macvlan mode: bridge, private, vepa or passthru.
    #[arg(long = "macvlan-mode")]
    pub macvlan_mode: Option<String>,
    /// Use ipvlan in this mode (l2, l3, l3s) instead of macvlan.
    #[arg(long = "ipvlan")]
    pub ipvlan: Option<String>,
    /// DHCP: give up after this many seconds without a lease.
    #[arg(long = "dhcp-timeout", default_value_t = crate::classic::DEFAULT_DHCP_TIMEOUT)]
    pub dhcp_timeout: f64,
    /// DHCP: write the lease's DNS servers to the guest's /etc/resolv.conf.
    #[arg(long = "dns-write")]
    pub dns_write: bool,
    /// Overlay networks: no default route through the network's gateway.
    #[arg(long = "no-default-route")]
    pub no_default_route: bool,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
    /// Print equivalent iproute2 commands; change nothing.
    #[arg(long = "dry-run")]
    pub dry_run: bool,
    /// OVSDB socket (unix:/path or /path; default $PIPEWORK_OVSDB, then /var/run/openvswitch/db.sock).
    #[arg(long)]
    pub ovsdb: Option<String>,
    /// VLANs the port trunks, e.g. 10,20-30 (OVS or Linux bridge port).
    #[arg(long)]
    pub trunk: Option<String>,
    /// OVS: request this OpenFlow port number.
    #[arg(long)]
    pub ofport: Option<String>,
    /// OVS: move an OVS internal interface into the guest instead of a veth.
    #[arg(long = "ovs-internal")]
    pub ovs_internal: bool,
    /// SR-IOV VF: MAC spoof checking, on or off.
    #[arg(long)]
    pub spoofchk: Option<String>,
    /// SR-IOV VF: trusted (may change its MAC, go promiscuous), on or off.
    #[arg(long)]
    pub trust: Option<String>,
    /// SR-IOV VF: link state auto, enable or disable.
    #[arg(long = "link-state")]
    pub link_state: Option<String>,
    /// SR-IOV VF: minimum transmit rate in Mbit/s (0: none).
    #[arg(long = "min-tx-rate")]
    pub min_tx_rate: Option<u32>,
    /// SR-IOV VF: maximum transmit rate in Mbit/s (0: no limit).
    #[arg(long = "max-tx-rate")]
    pub max_tx_rate: Option<u32>,
    /// SR-IOV VF: VLAN priority 0-7 for the @VID tag.
    #[arg(long = "vlan-qos")]
    pub vlan_qos: Option<u8>,
    /// SR-IOV VF: VLAN protocol of the @VID tag, 802.1Q or 802.1ad.
    #[arg(long = "vlan-proto")]
    pub vlan_proto: Option<String>,
    /// Bridge: keep conntrack for frames within the bridge (no raw-table notrack rules, IPv4 or IPv6).
    #[arg(long = "keep-conntrack")]
    pub keep_conntrack: bool,
    /// Bridge: unicast frames to other --tc-redirect guests of the bridge skip the bridge and netfilter (tc redirect).
    #[arg(long = "tc-redirect")]
    pub tc_redirect: bool,
}

#[derive(Args, Debug)]
pub struct DetachArgs {
    pub guest: String,
    #[arg(short = 'i', long = "ifname")]
    pub ifname: Option<String>,
    #[arg(long)]
    pub json: bool,
    #[arg(long = "dry-run")]
    pub dry_run: bool,
}

#[derive(Args, Debug)]
pub struct LsArgs {
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct GcArgs {
    /// Say what would be removed; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct WaitArgs {
    #[arg(short = 'i', long = "ifname", default_value = "eth1")]
    pub ifname: String,
    #[arg(long)]
    pub timeout: Option<f64>,
}

#[derive(Args, Debug)]
pub struct PassArgs {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<String>,
}

#[derive(Args, Debug, Clone)]
pub struct WatchFlags {
    /// Host sides a label may name (shell pattern, repeatable) [default: br*].
    #[arg(long = "allow", value_name = "PATTERN")]
    pub allow: Vec<String>,
    /// Engine socket, unix:///path [default: $DOCKER_HOST, then /var/run/docker.sock].
    #[arg(long = "docker-host", value_name = "URL")]
    pub docker_host: Option<String>,
}

impl From<WatchFlags> for crate::watch::WatchArgs {
    fn from(w: WatchFlags) -> Self {
        crate::watch::WatchArgs {
            allow: w.allow,
            docker_host: w.docker_host,
        }
    }
}
