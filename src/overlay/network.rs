//! `overlay create` and `overlay delete`: the network's definition in etcd.
use super::etcd::{Compare, CompareOp, Txn, TxnOp};
use super::names::check_name;
use super::store::{self, HostInfo, NetSpec, Store};
use crate::error::{Error, Result};

/// VXLAN overhead on the underlay: outer Ethernet is not counted by the
/// MTU, so IPv4 (20) + UDP (8) + VXLAN (8) + inner Ethernet (14) = 50;
/// IPv6 adds 20 more.
pub fn overhead(underlay: std::net::IpAddr) -> u32 {
    if underlay.is_ipv4() { 50 } else { 70 }
}

pub struct CreateArgs<'a> {
    pub name: &'a str,
    /// `--subnet` (IPv4); None with `--subnet6` alone: IPv6 only.
    pub subnet: Option<&'a str>,
    /// `--subnet6`: the network is dual stack (or IPv6 only).
    pub subnet6: Option<&'a str>,
    pub vni: Option<u32>,
    pub mtu: &'a str,
    pub port: u16,
    /// `--grace`: None for the default (a day).
    pub grace: Option<&'a str>,
    /// `--gateway`: None for the first address of the subnet.
    pub gateway: Option<&'a str>,
    /// `--gateway6`: None for the first address of `--subnet6`.
    pub gateway6: Option<&'a str>,
    pub no_default_route: bool,
    /// `--allow-from`: networks whose containers may reach this one's.
    pub allow_from: &'a [String],
    /// `--encrypt`: VXLAN between hosts only inside WireGuard.
    pub encrypt: bool,
}

/// A duration as `--grace` takes it: seconds, or a number with s, m, h or
/// d; a minute to a year.
pub fn parse_grace(t: &str) -> Result<u64> {
    let bad = || {
        Error::bad(
            t,
            "--grace takes a duration such as 24h, 90m, 7d or 3600 (seconds), 60s-365d",
        )
    };
    let (num, mul) = match t.char_indices().last() {
        Some((i, 's')) => (&t[..i], 1),
        Some((i, 'm')) => (&t[..i], 60),
        Some((i, 'h')) => (&t[..i], 3600),
        Some((i, 'd')) => (&t[..i], 86400),
        _ => (t, 1),
    };
    let n: u64 = num.parse().map_err(|_| bad())?;
    let secs = n.checked_mul(mul).ok_or_else(bad)?;
    if !(60..=365 * 86400).contains(&secs) {
        return Err(bad());
    }
    Ok(secs)
}

/// `--gateway`: an address inside the subnet that a container could hold.
fn parse_gateway(g: &str, subnet: ipnetwork::Ipv4Network) -> Result<std::net::Ipv4Addr> {
    let ip: std::net::Ipv4Addr = g.parse().map_err(|_| {
        Error::bad(
            g,
            format!("--gateway takes an IPv4 address inside {subnet}"),
        )
    })?;
    if !subnet.contains(ip) || ip == subnet.network() || ip == subnet.broadcast() {
        return Err(Error::bad(
            g,
            format!(
                "--gateway must be a host address inside {subnet}; leave it out for {}",
                std::net::Ipv4Addr::from(u32::from(subnet.network()) + 1)
            ),
        ));
    }
    Ok(ip)
}

/// `--gateway6`: an address inside subnet6 that a container could hold.
fn parse_gateway6(g: &str, subnet: ipnetwork::Ipv6Network) -> Result<std::net::Ipv6Addr> {
    let ip: std::net::Ipv6Addr = g.parse().map_err(|_| {
        Error::bad(
            g,
            format!("--gateway6 takes an IPv6 address inside {subnet}"),
        )
    })?;
    if !subnet.contains(ip) || ip == subnet.network() || ip == subnet.broadcast() {
        return Err(Error::bad(
            g,
            format!(
                "--gateway6 must be a host address inside {subnet}; leave it out for {}",
                std::net::Ipv6Addr::from(u128::from(subnet.network()) + 1)
            ),
        ));
    }
    Ok(ip)
}

/// `--subnet6`: a network address, /64 to /120. /64 at most so that an
/// endpoint's address is its interface identifier's 64 bits or fewer;
/// /120 at least so that a network has room for a few hundred containers.
fn parse_subnet6(t: &str) -> Result<ipnetwork::Ipv6Network> {
    let s: ipnetwork::Ipv6Network = t
        .parse()
        .map_err(|_| Error::bad(t, "--subnet6 takes an IPv6 CIDR such as fd40::/64"))?;
    if !(64..=120).contains(&s.prefix()) || s.network() != s.ip() {
        return Err(Error::bad(
            t,
            format!(
                "--subnet6 must be a network address with a prefix of /64 to /120 (did you mean {}/{}?)",
                s.network(),
                s.prefix().clamp(64, 120)
            ),
        ));
    }
    Ok(s)
}

/// The checked subnets and gateways.
struct Parsed {
    subnet: Option<ipnetwork::Ipv4Network>,
    subnet6: Option<ipnetwork::Ipv6Network>,
    gateway: Option<std::net::Ipv4Addr>,
    gateway6: Option<std::net::Ipv6Addr>,
    mtu: Option<u32>,
}

/// Check everything that does not need etcd.
fn parse(a: &CreateArgs<'_>) -> Result<Parsed> {
    check_name(a.name)?;
    for n in a.allow_from {
        check_name(n)?;
    }
    if a.subnet.is_none() && a.subnet6.is_none() {
        return Err(Error::bad(
            a.name,
            "give --subnet CIDR (IPv4), --subnet6 CIDR (IPv6), or both",
        ));
    }
    let subnet = match a.subnet {
        Some(t) => Some(parse_subnet(t)?),
        None => None,
    };
    let subnet6 = match a.subnet6 {
        Some(t) => Some(parse_subnet6(t)?),
        None => None,
    };
    let gateway = match (a.gateway, subnet) {
        (Some(g), Some(s)) => Some(parse_gateway(g, s)?),
        (Some(g), None) => {
            return Err(Error::bad(
                g,
                "--gateway is the IPv4 gateway and needs --subnet; for an IPv6-only network use --gateway6",
            ));
        }
        (None, _) => None,
    };
    let gateway6 = match (a.gateway6, subnet6) {
        (Some(g), Some(s)) => Some(parse_gateway6(g, s)?),
        (Some(g), None) => {
            return Err(Error::bad(g, "--gateway6 needs --subnet6"));
        }
        (None, _) => None,
    };
    if let Some(v) = a.vni
        && !(1..=16_777_215).contains(&v)
    {
        return Err(Error::bad(v, "--vni must be 1-16777215"));
    }
    if a.port == 0 {
        return Err(Error::bad(0, "--port must be 1-65535"));
    }
    if let Some(g) = a.grace {
        parse_grace(g)?;
    }
    let mtu = match a.mtu {
        "auto" => None,
        m => {
            let n: u32 = m
                .parse()
                .map_err(|_| Error::bad(m, "--mtu takes auto or a number 576-9000"))?;
            if !(576..=9000).contains(&n) {
                return Err(Error::bad(m, "--mtu takes auto or a number 576-9000"));
            }
            // IPv6 needs 1280 on every link.
            if subnet6.is_some() && n < 1280 {
                return Err(Error::bad(
                    m,
                    "--mtu must be 1280 or more on a network with --subnet6 (IPv6's minimum)",
                ));
            }
            Some(n)
        }
    };
    Ok(Parsed {
        subnet,
        subnet6,
        gateway,
        gateway6,
        mtu,
    })
}

/// `--subnet`: an IPv4 network address, /30 or shorter.
fn parse_subnet(t: &str) -> Result<ipnetwork::Ipv4Network> {
    let subnet: ipnetwork::Ipv4Network = t
        .parse()
        .map_err(|_| Error::bad(t, "--subnet takes an IPv4 CIDR such as 10.40.0.0/16"))?;
    if subnet.prefix() > 30 || subnet.network() != subnet.ip() {
        return Err(Error::bad(
            t,
            format!(
                "--subnet must be a network address with a prefix of /30 or shorter (did you mean {}/{}?)",
                subnet.network(),
                subnet.prefix()
            ),
        ));
    }
    Ok(subnet)
}

pub async fn create(opts: &store::EtcdOpts, a: &CreateArgs<'_>) -> Result<NetSpec> {
    let p = parse(a)?;
    if a.encrypt && !crate::netlink::wg::available() {
        // Refused here, where the network would first be used: nothing
        // is written to etcd.
        return Err(Error::bad(
            "--encrypt",
            format!(
                "needs WireGuard in this host's kernel (module {m}), which it lacks: `modprobe {m}` or run this on a host with it; nothing created",
                m = crate::netlink::wg::MODULE
            ),
        ));
    }
    let st = Store::connect(opts).await?;
    let nets = list(&st).await?;
    if let Some(n) = nets.iter().find(|n| n.name == a.name) {
        return Err(Error::bad(
            a.name,
            format!(
                "network exists (subnet {}, VNI {}); `pipework overlay delete {}` first",
                n.subnets(),
                n.vni,
                a.name
            ),
        ));
    }
    for f in a.allow_from {
        if f == a.name || !nets.iter().any(|n| n.name == *f) {
            return Err(Error::bad(
                f,
                "--allow-from names another existing overlay network (see `pipework overlay status`)",
            ));
        }
    }
    if let Some(s) = p.subnet
        && let Some((n, o)) = nets
            .iter()
            .find_map(|n| n.subnet.filter(|o| o.overlaps(s)).map(|o| (n, o)))
    {
        return Err(Error::bad(
            s,
            format!(
                "--subnet overlaps network {} ({o}); pick a disjoint subnet",
                n.name
            ),
        ));
    }
    if let Some(s) = p.subnet6
        && let Some((n, o)) = nets
            .iter()
            .find_map(|n| n.subnet6.filter(|o| o.overlaps(s)).map(|o| (n, o)))
    {
        return Err(Error::bad(
            s,
            format!(
                "--subnet6 overlaps network {} ({o}); pick a disjoint subnet",
                n.name
            ),
        ));
    }
    let vni = match a.vni {
        Some(v) => {
            if let Some(n) = nets.iter().find(|n| n.vni == v) {
                return Err(Error::bad(
                    v,
                    format!(
                        "VNI is used by network {}; pick another --vni or leave it out",
                        n.name
                    ),
                ));
            }
            v
        }
        None => (4096..16_777_215)
            .find(|v| !nets.iter().any(|n| n.vni == *v))
            .unwrap_or(4096),
    };
    let (mtu, mtu_auto) = match p.mtu {
        Some(m) => (m, false),
        None => (
            auto_mtu(&hosts(&st).await?, a.encrypt, p.subnet6.is_some())?,
            true,
        ),
    };
    let spec = NetSpec {
        name: a.name.to_string(),
        subnet: p.subnet,
        subnet6: p.subnet6,
        vni,
        mtu,
        mtu_auto,
        port: a.port,
        grace: match a.grace {
            Some(g) => parse_grace(g)?,
            None => store::DEFAULT_GRACE,
        },
        gateway: p.gateway,
        gateway6: p.gateway6,
        no_default_route: a.no_default_route,
        allow_from: a.allow_from.to_vec(),
        encrypt: a.encrypt,
    };
    // One transaction: the name and the VNI are claimed together or not at
    // all, so two concurrent creates cannot both get a VNI.
    let nk = store::net_key(a.name);
    let vk = store::vni_key(vni);
    let txn = Txn::new()
        .when(vec![
            Compare::create_revision(&nk, CompareOp::Equal, 0),
            Compare::create_revision(&vk, CompareOp::Equal, 0),
        ])
        .and_then(vec![
            TxnOp::put(&nk, &store::encode(&spec), None),
            TxnOp::put(&vk, a.name.as_bytes(), None),
        ]);
    if !st.txn("create network", txn).await? {
        return Err(Error::bad(
            a.name,
            format!("network {} or VNI {vni} was taken meanwhile; retry", a.name),
        ));
    }
    Ok(spec)
}

/// `auto`: the largest MTU every registered host's underlay can carry;
/// 1450 (a 1500 underlay over IPv4) when no host has registered yet.
/// Encrypted: WireGuard's and VXLAN's overheads both (1370 by default).
/// With IPv6 (`v6`), under 1280 is refused: the kernel turns IPv6 off on a
/// link below it, and every attach would fail after its claim.
fn auto_mtu(hosts: &[HostInfo], encrypt: bool, v6: bool) -> Result<u32> {
    let (cost, dflt): (fn(std::net::IpAddr) -> u32, u32) = if encrypt {
        (super::crypt::overhead, 1370)
    } else {
        (overhead, 1450)
    };
    let Some((mtu, h)) = hosts
        .iter()
        .map(|h| (h.underlay_mtu.saturating_sub(cost(h.underlay)), h))
        .min_by_key(|(m, _)| *m)
    else {
        return Ok(dflt);
    };
    if v6 && mtu < 1280 {
        return Err(Error::bad(
            "--mtu",
            format!(
                "auto gives {mtu} (host {}'s underlay MTU {} less {} bytes of tunnel overhead), under the 1280 IPv6 needs for --subnet6; raise that underlay's MTU to {} or more, or create the network without --subnet6; nothing created",
                h.name,
                h.underlay_mtu,
                cost(h.underlay),
                1280 + cost(h.underlay)
            ),
        ));
    }
    Ok(mtu.max(576))
}

pub async fn delete(opts: &store::EtcdOpts, name: &str) -> Result<()> {
    check_name(name)?;
    let st = Store::connect(opts).await?;
    let Some((v, rev)) = st.get_kv(&store::net_key(name)).await? else {
        return Err(Error::bad(
            name,
            "no such network (see `pipework overlay status`)",
        ));
    };
    let spec: NetSpec = store::decode(&store::net_key(name), &v)?;
    let (eps, _) = st.list(&store::ep_prefix(name)).await?;
    if !eps.is_empty() {
        return Err(Error::bad(
            name,
            format!(
                "{} endpoint(s) still attached; detach them first",
                eps.len()
            ),
        ));
    }
    let vni = st.get_kv(&store::vni_key(spec.vni)).await?;
    if !st
        .txn("delete network", delete_txn(name, &spec, rev, vni.as_ref()))
        .await?
    {
        return Err(Error::bad(
            name,
            "the network changed meanwhile (an endpoint attached, or it was re-created); check `pipework overlay status` and retry",
        ));
    }
    Ok(())
}

/// Delete network `name` as read at `rev` (`spec`), with the VNI key as
/// read (`vni`: value, mod revision). Applies only if, at commit, the
/// network is still that one, no endpoint is attached (an attach racing us
/// loses) and the VNI key is as read; the VNI key goes only if it names
/// this network (a VNI taken by another network stays its own).
fn delete_txn(name: &str, spec: &NetSpec, rev: i64, vni: Option<&(Vec<u8>, i64)>) -> Txn {
    let vk = store::vni_key(spec.vni);
    let mut when = vec![
        Compare::mod_revision(&store::net_key(name), CompareOp::Equal, rev),
        Compare::create_revision(&store::ep_prefix(name), CompareOp::Equal, 0).with_prefix(),
    ];
    let mut ops = vec![
        TxnOp::delete(&store::net_key(name)),
        // Addresses still reserved by hosts that are cut off or gone:
        // the network they were on is no more.
        TxnOp::delete_prefix(&store::resv_prefix(name)),
        // And their IPv6-only MACs, which live as long as reservations.
        TxnOp::delete_prefix(&store::mac_prefix(name)),
    ];
    match vni {
        Some((v, vrev)) => {
            when.push(Compare::mod_revision(&vk, CompareOp::Equal, *vrev));
            if v.as_slice() == name.as_bytes() {
                ops.push(TxnOp::delete(&vk));
            }
        }
        None => when.push(Compare::create_revision(&vk, CompareOp::Equal, 0)),
    }
    Txn::new().when(when).and_then(ops)
}

pub async fn list(st: &Store) -> Result<Vec<NetSpec>> {
    let (kvs, _) = st.list(&format!("{}net/", store::ROOT)).await?;
    kvs.iter().map(|(k, v)| store::decode(k, v)).collect()
}

pub async fn hosts(st: &Store) -> Result<Vec<HostInfo>> {
    let (kvs, _) = st.list(&format!("{}host/", store::ROOT)).await?;
    kvs.iter().map(|(k, v)| store::decode(k, v)).collect()
}

pub async fn get(st: &Store, name: &str) -> Result<Option<NetSpec>> {
    match st.get(&store::net_key(name)).await? {
        Some(v) => Ok(Some(store::decode(&store::net_key(name), &v)?)),
        None => Ok(None),
    }
}

/// `overlay host rm NAME`: release the addresses a host that is gone for
/// good still reserves (and any endpoint of it left). Refused while the
/// host is registered: its agent runs and would publish them again.
pub async fn host_rm(opts: &store::EtcdOpts, name: &str) -> Result<usize> {
    if name.is_empty() || name.len() > 64 || name.contains('/') {
        return Err(Error::bad(
            name,
            "host name must be 1-64 characters without '/'",
        ));
    }
    let st = Store::connect(opts).await?;
    if st.get(&store::host_key(name)).await?.is_some() {
        return Err(Error::bad(
            name,
            "host is live (its agent is registered); stop its agent first, or detach its containers",
        ));
    }
    let (kvs, _) = st.list_rev(&format!("{}resv/", store::ROOT)).await?;
    let (eps, _) = st.list_rev(&format!("{}ep/", store::ROOT)).await?;
    let (macs, _) = st.list_rev(&format!("{}mac/", store::ROOT)).await?;
    let mut n = 0;
    for (k, v, rev) in kvs.into_iter().chain(eps).chain(macs) {
        // The three records name their host in the same field.
        #[derive(serde::Deserialize)]
        struct Held {
            host: String,
        }
        let Ok(h) = store::decode::<Held>(&k, &v) else {
            continue;
        };
        if h.host != name {
            continue;
        }
        if st
            .txn("releasing a host's address", host_rm_txn(name, &k, rev))
            .await?
        {
            if k.contains("/resv/") {
                n += 1;
            }
        } else if st.get(&store::host_key(name)).await?.is_some() {
            // Its agent came back between the check and here: what it
            // holds is its own again.
            return Err(Error::bad(
                name,
                format!(
                    "host registered again while being removed ({n} address(es) released before); stop its agent first"
                ),
            ));
        }
    }
    Ok(n)
}

/// Delete `key` (an endpoint or reservation of `host`, read at `rev`) only
/// if it is unchanged and the host is still not registered at commit: the
/// one check before the loop would let a host that re-registers meanwhile
/// lose its addresses.
fn host_rm_txn(host: &str, key: &str, rev: i64) -> Txn {
    Txn::new()
        .when(vec![
            Compare::mod_revision(key, CompareOp::Equal, rev),
            Compare::create_revision(&store::host_key(host), CompareOp::Equal, 0),
        ])
        .and_then(vec![TxnOp::delete(key)])
}

#[cfg(test)]
mod tests {
    use super::store;
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD as B64;
    use serde_json::Value;

    /// (target, key, result, revision) of each compare.
    fn compares(t: &super::Txn) -> Vec<(String, String, String, String)> {
        let s = |v: &Value, f: &str| v[f].as_str().unwrap_or_default().to_string();
        t.parts()
            .0
            .iter()
            .map(|c| {
                let key = B64.decode(s(c, "key")).unwrap_or_default();
                let rev = if s(c, "target") == "CREATE" {
                    s(c, "create_revision")
                } else {
                    s(c, "mod_revision")
                };
                (
                    s(c, "target"),
                    String::from_utf8_lossy(&key).into_owned(),
                    s(c, "result"),
                    rev,
                )
            })
            .collect()
    }

    fn deleted(t: &super::Txn) -> Vec<String> {
        t.parts()
            .1
            .iter()
            .filter_map(|o| o["request_delete_range"]["key"].as_str())
            .map(|k| String::from_utf8_lossy(&B64.decode(k).unwrap_or_default()).into_owned())
            .collect()
    }

    fn spec() -> store::NetSpec {
        serde_json::from_value(serde_json::json!({
            "name": "pwvblue", "subnet": "10.40.0.0/16", "vni": 42, "mtu": 1450, "port": 4789
        }))
        .expect("spec")
    }

    fn has(c: &[(String, String, String, String)], t: &str, k: &str, rev: i64) -> bool {
        c.iter()
            .any(|x| x.0 == t && x.1 == k && x.2 == "EQUAL" && x.3 == rev.to_string())
    }

    #[test]
    fn host_rm_deletes_only_while_the_host_is_absent() {
        let key = store::resv_key("pwvblue", "10.40.0.9".parse().unwrap());
        let t = super::host_rm_txn("pwvh2", &key, 77);
        let c = compares(&t);
        assert_eq!(c.len(), 2, "{c:?}");
        assert!(has(&c, "MOD", &key, 77), "{c:?}");
        assert!(has(&c, "CREATE", &store::host_key("pwvh2"), 0), "{c:?}");
        assert_eq!(deleted(&t), vec![key]);
    }

    #[test]
    fn network_delete_checks_the_spec_it_read_and_the_vni() {
        let (nk, vk) = (store::net_key("pwvblue"), store::vni_key(42));
        let ours = (b"pwvblue".to_vec(), 31);
        let t = super::delete_txn("pwvblue", &spec(), 30, Some(&ours));
        let c = compares(&t);
        assert!(has(&c, "MOD", &nk, 30), "{c:?}");
        assert!(has(&c, "MOD", &vk, 31), "{c:?}");
        assert!(has(&c, "CREATE", &store::ep_prefix("pwvblue"), 0), "{c:?}");
        let d = deleted(&t);
        assert!(d.contains(&nk) && d.contains(&vk), "{d:?}");
        assert!(d.contains(&store::mac_prefix("pwvblue")), "{d:?}");
        // A VNI key naming another network is compared, never deleted.
        let theirs = (b"pwvred".to_vec(), 40);
        let t = super::delete_txn("pwvblue", &spec(), 30, Some(&theirs));
        assert!(has(&compares(&t), "MOD", &vk, 40));
        assert!(!deleted(&t).contains(&vk));
        // No VNI key: it must still be absent at commit.
        let t = super::delete_txn("pwvblue", &spec(), 30, None);
        assert!(has(&compares(&t), "CREATE", &vk, 0));
        assert!(!deleted(&t).contains(&vk));
    }

    #[test]
    fn grace_takes_units_and_bounds() {
        use super::parse_grace;
        assert_eq!(parse_grace("24h").unwrap(), 86400);
        assert_eq!(parse_grace("90m").unwrap(), 5400);
        assert_eq!(parse_grace("3600").unwrap(), 3600);
        assert_eq!(parse_grace("7d").unwrap(), 604800);
        for bad in ["", "h", "10s", "1x", "-5m", "400d", "99999999999999999999d"] {
            assert!(parse_grace(bad).is_err(), "{bad}");
        }
    }

    fn args<'a>(subnet: Option<&'a str>, subnet6: Option<&'a str>) -> super::CreateArgs<'a> {
        super::CreateArgs {
            name: "pwvdual",
            subnet,
            subnet6,
            vni: None,
            mtu: "auto",
            port: 4789,
            grace: None,
            gateway: None,
            gateway6: None,
            no_default_route: false,
            allow_from: &[],
            encrypt: false,
        }
    }

    #[test]
    fn subnets_of_either_family_or_both() {
        let p = super::parse(&args(Some("10.40.0.0/16"), Some("fd40::/64"))).unwrap();
        assert!(p.subnet.is_some() && p.subnet6.is_some());
        let p = super::parse(&args(None, Some("fd40::/64"))).unwrap();
        assert!(p.subnet.is_none() && p.subnet6.is_some());
        assert!(super::parse(&args(None, None)).is_err());
        for bad in ["fd40::1/64", "fd40::/121", "fd40::/48", "10.0.0.0/8", "x"] {
            assert!(super::parse(&args(None, Some(bad))).is_err(), "{bad}");
        }
        let mut a = args(None, Some("fd40::/64"));
        a.gateway6 = Some("fd41::1");
        assert!(super::parse(&a).is_err());
        a.gateway6 = Some("fd40::9");
        assert_eq!(
            super::parse(&a).unwrap().gateway6,
            Some("fd40::9".parse().unwrap())
        );
        // --gateway is the IPv4 one: no IPv4 subnet, no --gateway.
        a.gateway = Some("10.40.0.1");
        assert!(super::parse(&a).is_err());
    }

    fn host(mtu: u32, underlay: &str) -> store::HostInfo {
        store::HostInfo {
            name: format!("pwvh{mtu}"),
            underlay: underlay.parse().expect("ip"),
            underlay_if: "eth0".into(),
            underlay_mtu: mtu,
            lease: 1,
            wg: None,
        }
    }

    #[test]
    fn auto_mtu_refuses_under_1280_with_ipv6() {
        use super::auto_mtu;
        // No host yet: the defaults.
        assert_eq!(auto_mtu(&[], false, true).unwrap(), 1450);
        assert_eq!(auto_mtu(&[], true, true).unwrap(), 1370);
        let hs = [host(1500, "10.0.0.1"), host(1400, "10.0.0.2")];
        assert_eq!(auto_mtu(&hs, false, true).unwrap(), 1350);
        // A 1400 underlay encrypted: 1270, fine for IPv4 only...
        let enc = 1400 - crate::overlay::crypt::overhead("10.0.0.2".parse().unwrap());
        assert!(enc < 1280, "{enc}");
        assert_eq!(auto_mtu(&hs, true, false).unwrap(), enc);
        // ...refused with IPv6, naming the value, the host and the fix.
        let e = auto_mtu(&hs, true, true).unwrap_err().to_string();
        assert!(e.starts_with("--mtu"), "{e}");
        for w in [&enc.to_string()[..], "pwvh1400", "--subnet6", "1280"] {
            assert!(e.contains(w), "{w}: {e}");
        }
        assert_eq!(e.lines().count(), 1, "{e}");
        // Exactly 1280 is enough; the 576 floor stays for IPv4 only.
        assert_eq!(
            auto_mtu(&[host(1330, "10.0.0.3")], false, true).unwrap(),
            1280
        );
        assert!(auto_mtu(&[host(1329, "10.0.0.3")], false, true).is_err());
        assert_eq!(
            auto_mtu(&[host(600, "10.0.0.3")], false, false).unwrap(),
            576
        );
    }

    #[test]
    fn auto_mtu_counts_an_ipv6_underlay() {
        assert_eq!(1500 - super::overhead("10.0.0.1".parse().unwrap()), 1450);
        assert_eq!(1500 - super::overhead("fd00::1".parse().unwrap()), 1430);
    }

    #[test]
    fn records_made_before_dual_stack_still_decode() {
        let s = spec();
        assert_eq!(s.subnet, Some("10.40.0.0/16".parse().unwrap()));
        assert_eq!(s.subnet6, None);
        assert_eq!(s.gw6(), None);
        assert_eq!(s.gw(), Some("10.40.0.1".parse().unwrap()));
        // And a new IPv4-only record reads the same to them.
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["subnet"], "10.40.0.0/16");
        assert!(v.get("subnet6").is_none());
        let v6: store::NetSpec = serde_json::from_value(serde_json::json!({
            "name": "pwv6", "subnet6": "fd40::/64", "vni": 43, "mtu": 1430, "port": 4789
        }))
        .unwrap();
        assert_eq!(v6.subnet, None);
        assert_eq!(v6.gw6(), Some("fd40::1".parse().unwrap()));
        assert_eq!(v6.gateways().len(), 1);
    }
}
