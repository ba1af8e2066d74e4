//! The typed attach request: everything the classic positional grammar and
//! the `attach` subcommand can say, validated before anything is touched.
pub mod dhcp_form;
pub mod vf;

use crate::error::{Error, Result};
use ipnetwork::IpNetwork;
use md5::{Digest, Md5};
use std::net::IpAddr;

/// Linux's IFNAMSIZ minus the terminating NUL.
pub const IFNAMSIZ_MAX: usize = 15;

#[derive(Debug, Clone, PartialEq, Default)]
pub enum Addressing {
    /// Static addresses, and at most one gateway per family.
    Static {
        addrs: Vec<IpNetwork>,
        gateways: Vec<IpAddr>,
    },
    /// `0/0`: bring the link up with no address.
    #[default]
    None,
    /// `dhcp`, `dhcp:once`, `dhcp:OPTS`, or a classic external client name.
    Dhcp(DhcpForm),
}

#[derive(Debug, Clone, PartialEq)]
pub enum DhcpForm {
    /// Our own client; `keep` = run a lease keeper (the default).
    Native { keep: bool },
    /// `udhcpc`, `udhcpc-f`, `dhclient`, `dhclient-f`, `dhcpcd`, `dhcp:OPTS`:
    /// the token as given, interpreted by `dhcp_form::parse`.
    External { method: String },
}

/// How the host side is built. `Auto` is the classic rule: a Linux bridge
/// (or a missing name starting with `br`) → bridge + veth; an OVS bridge →
/// OVS port; `dummy` → dummy; any other existing interface → macvlan.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum HostMode {
    #[default]
    Auto,
    DirectPhys,
    Macvlan(String),
    Ipvlan(String),
}

#[derive(Debug, Clone)]
pub struct AttachRequest {
    pub host: String,
    pub guest: String,
    pub ifname: String,
    pub host_ifname: Option<String>,
    pub addressing: Addressing,
    pub mac: Option<[u8; 6]>,
    pub vlan: Option<u16>,
    pub mtu: Option<u32>,
    pub create: bool,
    pub mode: HostMode,
    pub json: bool,
    pub dry_run: bool,
    /// Classic-grammar details some drivers need in raw form.
    pub extras: Extras,
    /// OVS-only options (`--trunk`, `--ofport`, `--ovs-internal`, `--ovsdb`).
    pub ovs: OvsOptions,
    /// DHCP: give up after this long (`--dhcp-timeout`, default 10 s).
    pub dhcp_timeout: std::time::Duration,
    /// DHCP: write the lease's DNS servers to the guest's resolv.conf.
    pub dns_write: bool,
    /// Extra fields signed into the record (a lab's name and link id).
    pub record_extras: crate::record::Extras,
    /// Leave the container's short id out of the record: CNI's guest name
    /// holds the whole ID already, and the 255-byte alias has no room to
    /// repeat it. The guest keeps its id for the drivers (OVS rows).
    pub record_no_id: bool,
    /// SR-IOV VF properties (`--spoofchk`, `--trust`, …).
    pub sriov: vf::Options,
    /// Bridge: keep conntrack for the bridge's own frames
    /// (`--keep-conntrack`; see firewall/notrack.rs).
    pub keep_conntrack: bool,
    /// Bridge: tc redirect rules to the bridge's other opted-in ports
    /// (`--tc-redirect`; see driver/tc_redirect.rs).
    pub tc_redirect: bool,
    /// Bridge and OVS: queues on each end of the veth.
    pub veth_queues: VethQueues,
}

/// Queues for each end of a veth (IFLA_NUM_TX_QUEUES/IFLA_NUM_RX_QUEUES).
/// One, the kernel's default, unless `PIPEWORK_VETH_QUEUES` (read by the
/// cli) asks for a number (1-64) or `cpus` (one per online CPU, at most
/// 64). Why not more by default: a veth has no qdisc and transmits
/// without a lock, so extra queues only matter when the receiving end
/// runs NAPI (GRO or XDP turned on); measured on the bridge path
/// (scripts/bench-datapath.sh, README "Which kind for speed") they gave
/// no gain, one stream a little less, and each queue costs sysfs entries
/// at every attach.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VethQueues(u32);

impl Default for VethQueues {
    fn default() -> Self {
        VethQueues(1)
    }
}

impl VethQueues {
    pub fn get(self) -> u32 {
        self.0
    }

    /// The variable's value (None: unset).
    pub fn parse(v: Option<&str>) -> Result<VethQueues> {
        match v.map(str::trim) {
            None | Some("") => Ok(VethQueues::default()),
            Some("cpus") => {
                // SAFETY: sysconf takes no pointers.
                let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
                Ok(VethQueues(n.clamp(1, 64) as u32))
            }
            Some(n) => n
                .parse::<u32>()
                .ok()
                .filter(|n| (1..=64).contains(n))
                .map(VethQueues)
                .ok_or_else(|| {
                    Error::bad(
                        format!("PIPEWORK_VETH_QUEUES={n}"),
                        "give a number of queues 1-64, or `cpus`",
                    )
                }),
        }
    }
}

impl Default for AttachRequest {
    /// The classic defaults; callers fill in host, guest and addressing.
    fn default() -> Self {
        AttachRequest {
            host: String::new(),
            guest: String::new(),
            ifname: "eth1".into(),
            host_ifname: None,
            addressing: Addressing::None,
            mac: None,
            vlan: None,
            mtu: None,
            create: false,
            mode: HostMode::Auto,
            json: false,
            dry_run: false,
            ovs: Default::default(),
            dhcp_timeout: std::time::Duration::from_secs(10),
            dns_write: false,
            extras: Default::default(),
            record_extras: Default::default(),
            record_no_id: false,
            sriov: Default::default(),
            keep_conntrack: false,
            tc_redirect: false,
            veth_queues: VethQueues::default(),
        }
    }
}

/// Details of the classic grammar whose meaning depends on the host
/// interface, which only the driver knows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Extras {
    /// The text after `@` in the mac token when it is not a VLAN id 1-4094.
    /// On an InfiniBand parent it is the partition key (hex, as in the
    /// original's `pkey 0x$PKEY`); any other driver rejects it as a VLAN id.
    pub tag: Option<String>,
}

pub fn check_ifname(name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(Error::bad("''", "empty interface name"));
    }
    if name.len() > IFNAMSIZ_MAX {
        return Err(Error::bad(
            name,
            format!(
                "interface name is {} characters; Linux allows at most {IFNAMSIZ_MAX}",
                name.len()
            ),
        ));
    }
    if name == "."
        || name == ".."
        || name
            .bytes()
            .any(|b| b == b'/' || b == b':' || b.is_ascii_whitespace() || b.is_ascii_control())
    {
        return Err(Error::bad(
            name,
            "invalid interface name (no '/', ':', spaces, '.' or '..')",
        ));
    }
    Ok(())
}

/// Parse one `ip[/len]` token. Without a prefix we refuse and suggest one,
/// because guessing /32 silently breaks the on-link route.
pub fn parse_cidr(tok: &str) -> Result<IpNetwork> {
    let (ip_s, len_s) = match tok.split_once('/') {
        Some((a, b)) => (a, Some(b)),
        None => (tok, None),
    };
    let ip: IpAddr = ip_s.parse().map_err(|_| {
        Error::bad(
            tok,
            "not an IP address: expected e.g. 10.0.0.2/24 or 2001:db8::5/64",
        )
    })?;
    let Some(len_s) = len_s else {
        let hint = if ip.is_ipv4() { 24 } else { 64 };
        return Err(Error::bad(
            tok,
            format!("missing prefix length. Maybe you meant {ip}/{hint}?"),
        ));
    };
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let len: u8 = len_s
        .parse()
        .ok()
        .filter(|l| *l <= max)
        .ok_or_else(|| Error::bad(tok, format!("prefix length must be 0..{max}")))?;
    check_host_ip(tok, ip)?;
    IpNetwork::new(ip, len).map_err(|e| Error::bad(tok, e))
}

fn check_host_ip(tok: &str, ip: IpAddr) -> Result<()> {
    if ip.is_unspecified() || ip.is_multicast() || ip.is_loopback() {
        return Err(Error::bad(
            tok,
            "cannot assign an unspecified, loopback or multicast address to an interface",
        ));
    }
    if let IpAddr::V4(v4) = ip
        && v4.is_broadcast()
    {
        return Err(Error::bad(tok, "cannot assign the broadcast address"));
    }
    Ok(())
}

/// The classic address token: `ip/len[@gw]`, `0/0`, or a DHCP form.
pub fn parse_ip_token(tok: &str) -> Result<Addressing> {
    match tok {
        "0/0" | "0.0.0.0/0" | "::/0" => return Ok(Addressing::None),
        "dhcp" => return Ok(Addressing::Dhcp(DhcpForm::Native { keep: true })),
        "dhcp:once" => return Ok(Addressing::Dhcp(DhcpForm::Native { keep: false })),
        _ => {}
    }
    if dhcp_form::parse(tok).is_some() {
        return Ok(Addressing::Dhcp(DhcpForm::External { method: tok.into() }));
    }
    let (cidr, gw) = match tok.split_once('@') {
        Some((c, g)) => (c, Some(g)),
        None => (tok, None),
    };
    let net = parse_cidr(cidr)?;
    let gateways = match gw {
        None => vec![],
        Some(g) => vec![parse_gateway(g, &net)?],
    };
    Ok(Addressing::Static {
        addrs: vec![net],
        gateways,
    })
}

pub fn parse_gateway(g: &str, net: &IpNetwork) -> Result<IpAddr> {
    let gw: IpAddr = g
        .parse()
        .map_err(|_| Error::bad(g, "gateway is not an IP address (form: ip/len@gateway)"))?;
    if gw.is_ipv4() != net.is_ipv4() {
        return Err(Error::bad(
            g,
            format!("gateway family does not match address {net}"),
        ));
    }
    if gw.is_unspecified() || gw.is_multicast() || gw.is_loopback() {
        return Err(Error::bad(
            g,
            "gateway cannot be unspecified, loopback or multicast",
        ));
    }
    if gw == net.ip() {
        return Err(Error::bad(g, "gateway is the container's own address"));
    }
    Ok(gw)
}

/// The classic `[mac][@vlan]` token. `U:string` derives the MAC exactly as
/// the shell script did: md5 of the string plus newline, 02: + 5 bytes.
pub fn parse_mac_token(tok: &str) -> Result<(Option<[u8; 6]>, Option<u16>)> {
    // `U:` strings may contain '@' themselves only before the last '@' that
    // is followed by digits: split on the last '@'.
    let (mac_s, vlan_s) = match tok.rsplit_once('@') {
        Some((m, v)) if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) => (m, Some(v)),
        Some((_, v)) => {
            return Err(Error::bad(
                v,
                "VLAN id must be a number 1-4094 (form: mac@vlan)",
            ));
        }
        None => (tok, None),
    };
    let vlan = vlan_s.map(parse_vlan).transpose()?;
    let mac = if mac_s.is_empty() {
        None
    } else if let Some(seed) = mac_s.strip_prefix("U:") {
        Some(mac_from_seed(seed))
    } else {
        Some(parse_mac(mac_s)?)
    };
    Ok((mac, vlan))
}

pub fn parse_vlan(v: &str) -> Result<u16> {
    v.parse::<u16>()
        .ok()
        .filter(|id| (1..=4094).contains(id))
        .ok_or_else(|| Error::bad(v, "VLAN id must be 1-4094"))
}

pub fn mac_from_seed(seed: &str) -> [u8; 6] {
    let mut h = Md5::new();
    h.update(seed.as_bytes());
    h.update(b"\n");
    let d = h.finalize();
    [0x02, d[0], d[1], d[2], d[3], d[4]]
}

pub fn parse_mac(s: &str) -> Result<[u8; 6]> {
    let parts: Vec<&str> = s.split(':').collect();
    let bad = || {
        Error::bad(
            s,
            "not a MAC address: expected six hex pairs like 26:2e:71:98:60:8f",
        )
    };
    if parts.len() != 6 {
        return Err(bad());
    }
    let mut mac = [0u8; 6];
    for (i, p) in parts.iter().enumerate() {
        if p.is_empty() || p.len() > 2 {
            return Err(bad());
        }
        mac[i] = u8::from_str_radix(p, 16).map_err(|_| bad())?;
    }
    if mac[0] & 1 == 1 {
        return Err(Error::bad(
            s,
            "is a multicast MAC (lowest bit of the first byte set); use e.g. 02:… for a local unicast one",
        ));
    }
    if mac == [0; 6] {
        return Err(Error::bad(s, "the all-zero MAC cannot be assigned"));
    }
    Ok(mac)
}

pub fn format_mac(mac: &[u8]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// OVS-only options from the command line.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OvsOptions {
    /// `--ovsdb`: socket as given (`unix:/path` or a path).
    pub db: Option<String>,
    /// `--trunk 10,20-30`.
    pub trunks: Vec<u16>,
    /// `--ofport N`.
    pub ofport: Option<u16>,
    /// `--ovs-internal`: an OVS internal interface instead of a veth.
    pub internal: bool,
}

impl OvsOptions {
    /// Parse the raw flag values; every error names the bad token.
    pub fn parse(
        db: Option<&str>,
        trunk: Option<&str>,
        ofport: Option<&str>,
        internal: bool,
    ) -> Result<Self> {
        let trunks = trunk
            .map(crate::ovsdb::ops::parse_trunks)
            .transpose()?
            .unwrap_or_default();
        let ofport = ofport
            .map(|s| {
                let n: i64 = s
                    .parse()
                    .map_err(|_| Error::bad(s, "--ofport takes a number 1-65279"))?;
                crate::ovsdb::ops::check_ofport(n, s)
            })
            .transpose()?;
        if let Some(db) = db {
            crate::ovsdb::socket_path(Some(db))?;
        }
        Ok(OvsOptions {
            db: db.map(str::to_owned),
            trunks,
            ofport,
            internal,
        })
    }

    /// Whether any option only OVS can honour was given.
    pub fn any(&self) -> bool {
        !self.trunks.is_empty() || self.ofport.is_some() || self.internal
    }

    pub fn flags(&self) -> &'static str {
        if self.internal {
            "--ovs-internal"
        } else if self.ofport.is_some() {
            "--ofport"
        } else {
            "--trunk"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn u_mac_matches_the_shell_script() {
        // printf 'myhost.example.com\n' | md5sum → 4a2f0b4d5f…; the script
        // keeps 02: plus the first five bytes.
        let m = mac_from_seed("myhost.example.com");
        assert_eq!(m[0], 0x02);
        let mut h = Md5::new();
        h.update(b"myhost.example.com\n");
        let d = h.finalize();
        assert_eq!(&m[1..], &d[..5]);
    }

    #[test]
    fn ip_tokens() {
        assert_eq!(parse_ip_token("0/0").ok(), Some(Addressing::None));
        match parse_ip_token("192.168.4.25/20@192.168.4.1") {
            Ok(Addressing::Static { addrs, gateways }) => {
                assert_eq!(addrs[0].to_string(), "192.168.4.25/20");
                assert_eq!(gateways[0].to_string(), "192.168.4.1");
            }
            other => panic!("{other:?}"),
        }
        let e = parse_ip_token("10.0.0.2").unwrap_err().to_string();
        assert!(e.contains("Maybe you meant 10.0.0.2/24?"), "{e}");
        assert!(parse_ip_token("10.0.0.300/24").is_err());
        assert!(parse_ip_token("10.0.0.2/33").is_err());
        assert!(parse_ip_token("10.0.0.2/24@2001:db8::1").is_err());
        assert!(matches!(
            parse_ip_token("dhcp:once"),
            Ok(Addressing::Dhcp(DhcpForm::Native { keep: false }))
        ));
        assert!(matches!(
            parse_ip_token("udhcpc-f"),
            Ok(Addressing::Dhcp(DhcpForm::External { .. }))
        ));
    }

    #[test]
    fn mac_tokens() {
        assert_eq!(
            parse_mac_token("26:2e:71:98:60:8f").ok(),
            Some((Some([0x26, 0x2e, 0x71, 0x98, 0x60, 0x8f]), None))
        );
        assert_eq!(parse_mac_token("@10").ok(), Some((None, Some(10))));
        assert!(parse_mac_token("01:00:5e:00:00:01").is_err());
        assert!(parse_mac_token("@4095").is_err());
        assert!(parse_mac_token("@0").is_err());
        let (m, v) = parse_mac_token("U:a@b@7").unwrap_or((None, None));
        assert_eq!(m, Some(mac_from_seed("a@b")));
        assert_eq!(v, Some(7));
    }

    #[test]
    fn ifnames() {
        assert!(check_ifname("eth1").is_ok());
        assert!(check_ifname("abcdefghijklmnop").is_err());
        assert!(check_ifname("a/b").is_err());
        assert!(check_ifname("").is_err());
    }
}

#[cfg(test)]
#[test]
fn veth_queue_counts() {
    let q = |v| VethQueues::parse(v).map(VethQueues::get).ok();
    assert_eq!(q(None), Some(1));
    assert_eq!(q(Some("")), Some(1));
    assert_eq!(q(Some("4")), Some(4));
    assert_eq!(q(Some("64")), Some(64));
    for bad in ["0", "65", "x", "-1"] {
        let e = VethQueues::parse(Some(bad)).expect_err(bad).to_string();
        assert!(e.contains(&format!("PIPEWORK_VETH_QUEUES={bad}")), "{e}");
    }
    assert!(q(Some("cpus")).is_some_and(|n| n >= 1));
}
