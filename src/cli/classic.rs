//! The classic command line: `pipework <hostif> [-i cif] [-l lif] [-a 4|6]
//! <guest> <ip>[/len][@gw] [mac][@vlan]` is rewritten into the `attach`
//! subcommand (same flags); its words are checked by `crate::classic`.
use super::args::AttachArgs;
use crate::classic::{ClassicArgs, SUBCOMMANDS};
use crate::error::Result;
use crate::request::AttachRequest;

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

impl AttachArgs {
    /// clap's values as the plain words the classic grammar checks.
    pub fn classic(&self) -> ClassicArgs {
        ClassicArgs {
            host: self.host.clone(),
            guest: self.guest.clone(),
            ip: self.ip.clone(),
            mac: self.mac.clone(),
            ifname: self.ifname.clone(),
            host_ifname: self.host_ifname.clone(),
            family: self.family.clone(),
            ips: self.ips.clone(),
            mtu: self.mtu,
            create: self.create,
            direct_phys: self.direct_phys,
            macvlan_mode: self.macvlan_mode.clone(),
            ipvlan: self.ipvlan.clone(),
            dhcp_timeout: self.dhcp_timeout,
            dns_write: self.dns_write,
            no_default_route: self.no_default_route,
            json: self.json,
            dry_run: self.dry_run,
            ovsdb: self.ovsdb.clone(),
            trunk: self.trunk.clone(),
            ofport: self.ofport.clone(),
            ovs_internal: self.ovs_internal,
            spoofchk: self.spoofchk.clone(),
            trust: self.trust.clone(),
            link_state: self.link_state.clone(),
            min_tx_rate: self.min_tx_rate,
            max_tx_rate: self.max_tx_rate,
            vlan_qos: self.vlan_qos,
            vlan_proto: self.vlan_proto.clone(),
            keep_conntrack: self.keep_conntrack,
            tc_redirect: self.tc_redirect,
            // Tuning for the data path, by environment only (the flags
            // stay those of the original pipework).
            veth_queues: std::env::var("PIPEWORK_VETH_QUEUES").ok(),
        }
    }
}

/// The command line's attach as a checked request.
pub fn to_request(a: &AttachArgs) -> Result<AttachRequest> {
    crate::classic::to_request(&a.classic())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Cmd};
    use crate::error::Error;
    use crate::request::Addressing;
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
