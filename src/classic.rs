//! The classic grammar, below the CLI: `HOSTIF GUEST IP[/len][@gw]
//! [mac][@vlan]` plus the attach flags, as plain values, checked and turned
//! into one `AttachRequest`.
//!
//! Why here and not in `cli`: the command line is one of three sources of
//! these words. `watch` reads them from container labels and the overlay
//! builds them for its claimed address; both must get the very same checks
//! and error messages without going through clap or an argv.
use crate::error::{Error, Result};
use crate::request::{
    Addressing, AttachRequest, Extras, HostMode, check_ifname, parse_ip_token, parse_mac_token,
};

/// The first words that name a subcommand, so they can never be a classic
/// host interface (nor an overlay network's name).
pub const SUBCOMMANDS: &[&str] = &[
    "attach",
    "detach",
    "ls",
    "gc",
    "demo",
    "wait",
    "route",
    "rule",
    "tc",
    "host-shim",
    "man",
    "completions",
    "ambassador",
    "link",
    "lab",
    "overlay",
    "watch",
    "doctor",
    "help",
];

/// Is `word` a subcommand (so it cannot be a classic host interface)?
pub fn is_subcommand(word: &str) -> bool {
    SUBCOMMANDS.contains(&word)
}

/// An attach as its words and flags, before any check. The CLI fills it
/// from clap; labels and the overlay fill it directly.
#[derive(Debug, Clone)]
pub struct ClassicArgs {
    pub host: String,
    pub guest: String,
    pub ip: Option<String>,
    pub mac: Option<String>,
    pub ifname: Option<String>,
    pub host_ifname: Option<String>,
    pub family: Option<String>,
    pub ips: Vec<String>,
    pub mtu: Option<u32>,
    pub create: bool,
    pub direct_phys: bool,
    pub macvlan_mode: Option<String>,
    pub ipvlan: Option<String>,
    pub dhcp_timeout: f64,
    pub dns_write: bool,
    /// Overlay: no default route through the network's gateway.
    pub no_default_route: bool,
    pub json: bool,
    pub dry_run: bool,
    pub ovsdb: Option<String>,
    pub trunk: Option<String>,
    pub ofport: Option<String>,
    pub ovs_internal: bool,
    pub spoofchk: Option<String>,
    pub trust: Option<String>,
    pub link_state: Option<String>,
    pub min_tx_rate: Option<u32>,
    pub max_tx_rate: Option<u32>,
    pub vlan_qos: Option<u8>,
    pub vlan_proto: Option<String>,
    /// Bridge: no raw-table notrack rule (`--keep-conntrack`).
    pub keep_conntrack: bool,
    /// Bridge: tc redirect to other opted-in ports (`--tc-redirect`).
    pub tc_redirect: bool,
    /// Bridge and OVS: `PIPEWORK_VETH_QUEUES`, unparsed (None: unset).
    pub veth_queues: Option<String>,
}

/// The defaults of the command line (`--dhcp-timeout 10`, no flags).
pub const DEFAULT_DHCP_TIMEOUT: f64 = 10.0;

impl ClassicArgs {
    pub fn new(host: &str, guest: &str) -> ClassicArgs {
        ClassicArgs {
            host: host.into(),
            guest: guest.into(),
            ip: None,
            mac: None,
            ifname: None,
            host_ifname: None,
            family: None,
            ips: Vec::new(),
            mtu: None,
            create: false,
            direct_phys: false,
            macvlan_mode: None,
            ipvlan: None,
            dhcp_timeout: DEFAULT_DHCP_TIMEOUT,
            dns_write: false,
            no_default_route: false,
            json: false,
            dry_run: false,
            ovsdb: None,
            trunk: None,
            ofport: None,
            ovs_internal: false,
            spoofchk: None,
            trust: None,
            link_state: None,
            min_tx_rate: None,
            max_tx_rate: None,
            vlan_qos: None,
            vlan_proto: None,
            keep_conntrack: false,
            tc_redirect: false,
            veth_queues: None,
        }
    }
}

/// The words and flags, checked and turned into one typed request.
pub fn to_request(a: &ClassicArgs) -> Result<AttachRequest> {
    if a.no_default_route {
        // The overlay path takes it off once used; anywhere else the
        // route is the one `ip/len@gw` asks for.
        return Err(Error::bad(
            "--no-default-route",
            "is for overlay networks; elsewhere leave out @gw",
        ));
    }
    // The classic default is eth1; on an InfiniBand parent it is ib0
    // ("the IPoIB kernel module is fussy").
    let ifname = a
        .ifname
        .clone()
        .unwrap_or_else(|| crate::driver::ipoib::default_ifname(&a.host).into());
    check_ifname(&ifname)?;
    if let Some(l) = &a.host_ifname {
        check_ifname(l)?;
    }
    if a.host != "dummy" && !a.host.starts_with("mac:") && !crate::sriov::is_vf_token(&a.host) {
        check_ifname(&a.host)?;
    }
    let family = match a.family.as_deref() {
        None => None,
        Some("4") => Some(4),
        Some("6") => Some(6),
        Some(other) => return Err(Error::bad(other, "-a takes 4 or 6")),
    };

    let mut tokens: Vec<&str> = a.ip.iter().map(String::as_str).collect();
    tokens.extend(a.ips.iter().map(String::as_str));
    if tokens.is_empty() {
        return Err(Error::bad(
            &a.guest,
            "missing address after the guest: give ip/len[@gw], 0/0 (none) or dhcp",
        ));
    }
    let addressing = merge_addressing(&tokens, family)?;

    let (mac, vlan, tag) = match &a.mac {
        Some(m) => split_mac_token(m)?,
        None => (None, None, None),
    };
    if !(a.dhcp_timeout > 0.0 && a.dhcp_timeout <= 3600.0) {
        return Err(Error::bad(
            a.dhcp_timeout,
            "--dhcp-timeout takes seconds, 0 < S <= 3600",
        ));
    }
    if let Some(m) = a.mtu
        && !(68..=65535).contains(&m)
    {
        return Err(Error::bad(m, "MTU must be 68-65535"));
    }
    let mode = match (a.direct_phys, &a.macvlan_mode, &a.ipvlan) {
        (true, None, None) => HostMode::DirectPhys,
        (false, Some(m), None) => {
            if !["bridge", "private", "vepa", "passthru"].contains(&m.as_str()) {
                return Err(Error::bad(
                    m,
                    "macvlan mode must be bridge, private, vepa or passthru",
                ));
            }
            HostMode::Macvlan(m.clone())
        }
        (false, None, Some(m)) => {
            if !["l2", "l3", "l3s"].contains(&m.as_str()) {
                return Err(Error::bad(m, "ipvlan mode must be l2, l3 or l3s"));
            }
            HostMode::Ipvlan(m.clone())
        }
        (false, None, None) => HostMode::Auto,
        _ => {
            return Err(Error::bad(
                "--direct-phys/--macvlan-mode/--ipvlan",
                "pick only one of these",
            ));
        }
    };
    Ok(AttachRequest {
        host: a.host.clone(),
        guest: a.guest.clone(),
        ifname,
        host_ifname: a.host_ifname.clone(),
        addressing,
        mac,
        vlan,
        mtu: a.mtu,
        create: a.create,
        mode,
        json: a.json,
        dry_run: a.dry_run,
        extras: Extras { tag },
        ovs: crate::driver::ovs::OvsOptions::parse(
            a.ovsdb.as_deref(),
            a.trunk.as_deref(),
            a.ofport.as_deref(),
            a.ovs_internal,
        )?,
        dhcp_timeout: std::time::Duration::from_secs_f64(a.dhcp_timeout),
        dns_write: a.dns_write,
        keep_conntrack: a.keep_conntrack,
        tc_redirect: a.tc_redirect,
        veth_queues: crate::request::VethQueues::parse(a.veth_queues.as_deref())?,
        record_extras: Default::default(),
        record_no_id: false,
        sriov: crate::sriov::Options::parse(&crate::sriov::RawOptions {
            spoofchk: a.spoofchk.as_deref(),
            trust: a.trust.as_deref(),
            link_state: a.link_state.as_deref(),
            min_tx_rate: a.min_tx_rate,
            max_tx_rate: a.max_tx_rate,
            vlan_qos: a.vlan_qos,
            vlan_proto: a.vlan_proto.as_deref(),
        })?,
    })
}

/// `[mac][@tag]`: a tag that is a VLAN id goes to `vlan`; a hex word that
/// is not (an IPoIB pkey such as 8001 or 7fff) is kept raw for the driver,
/// which knows whether the parent is InfiniBand.
type MacToken = (Option<[u8; 6]>, Option<u16>, Option<String>);
fn split_mac_token(tok: &str) -> Result<MacToken> {
    if let Some((m, t)) = tok.rsplit_once('@')
        && crate::request::parse_vlan(t).is_err()
        && !t.is_empty()
        && t.len() <= 6
        && t.trim_start_matches("0x")
            .bytes()
            .all(|b| b.is_ascii_hexdigit())
    {
        let (mac, _) = if m.is_empty() {
            (None, None)
        } else {
            parse_mac_token(m)?
        };
        return Ok((mac, None, Some(t.to_string())));
    }
    let (mac, vlan) = parse_mac_token(tok)?;
    Ok((mac, vlan, None))
}

/// Several address tokens (positional plus repeated --ip) become one
/// addressing plan; DHCP and 0/0 must stand alone.
fn merge_addressing(tokens: &[&str], family: Option<u8>) -> Result<Addressing> {
    let mut addrs = Vec::new();
    let mut gateways: Vec<std::net::IpAddr> = Vec::new();
    for tok in tokens {
        match parse_ip_token(tok)? {
            Addressing::Static {
                addrs: a,
                gateways: g,
            } => {
                for net in &a {
                    if let Some(f) = family
                        && (f == 4) != net.is_ipv4()
                    {
                        return Err(Error::bad(
                            tok,
                            format!("address family does not match -a {f}"),
                        ));
                    }
                }
                for gw in g {
                    if gateways.iter().any(|x| x.is_ipv4() == gw.is_ipv4()) {
                        return Err(Error::bad(tok, "only one gateway per address family"));
                    }
                    gateways.push(gw);
                }
                addrs.extend(a);
            }
            other if tokens.len() == 1 => return Ok(other),
            _ => {
                return Err(Error::bad(
                    tok,
                    "0/0 and DHCP forms cannot be combined with other addresses",
                ));
            }
        }
    }
    // A gateway that is one of our own addresses is refused by the kernel
    // only after the other routes exist: catch it here, before any change.
    if let Some(gw) = gateways
        .iter()
        .find(|g| addrs.iter().any(|a| a.ip() == **g))
    {
        return Err(Error::bad(
            gw,
            "gateway is one of the container's own addresses",
        ));
    }
    Ok(Addressing::Static { addrs, gateways })
}
