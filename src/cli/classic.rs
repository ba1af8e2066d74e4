//! The classic grammar: `pipework <hostif> [-i cif] [-l lif] [-a 4|6]
//! <guest> <ip>[/len][@gw] [mac][@vlan]`. We turn it into the `attach`
//! subcommand (same flags) and then into a validated `AttachRequest`.
use super::args::AttachArgs;
use crate::error::{Error, Result};
use crate::request::{
    Addressing, AttachRequest, Extras, HostMode, check_ifname, parse_ip_token, parse_mac_token,
};

const SUBCOMMANDS: &[&str] = &[
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
    "help",
];

/// Is `word` a subcommand (so it cannot be a classic host interface)?
pub fn is_subcommand(word: &str) -> bool {
    SUBCOMMANDS.contains(&word)
}

/// Insert `attach` when the first word is not a subcommand, and map the
/// classic `--wait` flag to the `wait` subcommand.
pub fn rewrite(mut argv: Vec<String>) -> Vec<String> {
    let Some(first) = argv.get(1).cloned() else {
        return argv;
    };
    if first == "--wait" {
        argv[1] = "wait".into();
        return argv;
    }
    let is_meta = matches!(first.as_str(), "-h" | "--help" | "-V" | "--version");
    if !is_meta && !SUBCOMMANDS.contains(&first.as_str()) {
        argv.insert(1, "attach".into());
    }
    argv
}

pub fn to_request(a: &AttachArgs) -> Result<AttachRequest> {
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
        record_extras: Default::default(),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Cmd};
    use clap::Parser;

    fn parse(line: &str) -> Result<AttachRequest> {
        let argv: Vec<String> = std::iter::once("pipework")
            .chain(line.split_whitespace())
            .map(String::from)
            .collect();
        let cli = Cli::try_parse_from(rewrite(argv)).map_err(|e| Error::other(e.to_string()))?;
        match cli.cmd {
            Cmd::Attach(a) => to_request(&a),
            other => Err(Error::other(format!("not attach: {other:?}"))),
        }
    }

    #[test]
    fn classic_forms_parse() -> Result<()> {
        let r = parse("br1 -i eth2 -l hostapp1 abc123 10.0.0.5/24")?;
        assert_eq!(
            (r.host.as_str(), r.ifname.as_str(), r.host_ifname.as_deref()),
            ("br1", "eth2", Some("hostapp1"))
        );
        let r = parse("br1 web1 192.168.4.25/20@192.168.4.1")?;
        assert!(
            matches!(r.addressing, Addressing::Static { ref gateways, .. } if gateways.len() == 1)
        );
        assert_eq!(parse("br1 c 0/0")?.addressing, Addressing::None);
        let r = parse("br1 -a 6 c 2001:db8::5/64@2001:db8::1")?;
        assert!(matches!(r.addressing, Addressing::Static { ref addrs, .. } if addrs[0].is_ipv6()));
        assert_eq!(
            parse("br1 c 10.0.0.2/24 26:2e:71:98:60:8f")?.mac,
            Some([0x26, 0x2e, 0x71, 0x98, 0x60, 0x8f])
        );
        assert_eq!(
            parse("br1 c 10.0.0.2/24 U:myhost.example.com")?.mac,
            Some(crate::request::mac_from_seed("myhost.example.com"))
        );
        let r = parse("attach br1 c 10.0.0.2/24 --ip 10.0.1.2/24 --ip 2001:db8::2/64")?;
        assert!(matches!(r.addressing, Addressing::Static { ref addrs, .. } if addrs.len() == 3));
        Ok(())
    }

    #[test]
    fn classic_errors_name_the_token() {
        let e = parse("br1 -a 6 c 10.0.0.2/24")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.starts_with("10.0.0.2/24"), "{e}");
        let e = parse("br1 c")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("missing address"), "{e}");
        assert!(parse("br1 c dhcp --ip 10.0.0.2/24").is_err());
    }

    #[test]
    fn vf_forms_parse() -> Result<()> {
        let r = parse("vf:eth1 c 10.0.0.2/24 02:00:00:00:00:07@10 --vlan-qos 3 --trust on")?;
        assert_eq!((r.host.as_str(), r.vlan), ("vf:eth1", Some(10)));
        assert_eq!((r.sriov.trust, r.sriov.qos), (Some(true), Some(3)));
        assert_eq!(parse("vf:eth1:3 c 0/0")?.host, "vf:eth1:3");
        assert_eq!(parse("0000:01:10.6 c dhcp")?.host, "0000:01:10.6");
        let e = parse("vf:eth1 c 0/0 --spoofchk maybe")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.starts_with("maybe: --spoofchk takes on or off"), "{e}");
        Ok(())
    }

    #[test]
    fn wait_flag_becomes_subcommand() {
        let argv = rewrite(vec![
            "pipework".into(),
            "--wait".into(),
            "-i".into(),
            "eth1".into(),
        ]);
        assert_eq!(argv[1], "wait");
        let argv = rewrite(vec!["pipework".into(), "ls".into()]);
        assert_eq!(argv[1], "ls");
    }
}
