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
    pub subnet: &'a str,
    pub vni: Option<u32>,
    pub mtu: &'a str,
    pub port: u16,
    /// `--grace`: None for the default (a day).
    pub grace: Option<&'a str>,
    /// `--gateway`: None for the first address of the subnet.
    pub gateway: Option<&'a str>,
    pub no_default_route: bool,
    /// `--allow-from`: networks whose containers may reach this one's.
    pub allow_from: &'a [String],
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

/// Check everything that does not need etcd.
fn parse(a: &CreateArgs<'_>) -> Result<(ipnetwork::Ipv4Network, Option<u32>)> {
    check_name(a.name)?;
    for n in a.allow_from {
        check_name(n)?;
    }
    let subnet: ipnetwork::Ipv4Network = a
        .subnet
        .parse()
        .map_err(|_| Error::bad(a.subnet, "--subnet takes an IPv4 CIDR such as 10.40.0.0/16"))?;
    if subnet.prefix() > 30 || subnet.network() != subnet.ip() {
        return Err(Error::bad(
            a.subnet,
            format!(
                "--subnet must be a network address with a prefix of /30 or shorter (did you mean {}/{}?)",
                subnet.network(),
                subnet.prefix()
            ),
        ));
    }
    if let Some(g) = a.gateway {
        parse_gateway(g, subnet)?;
    }
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
            Some(n)
        }
    };
    Ok((subnet, mtu))
}

pub async fn create(opts: &store::EtcdOpts, a: &CreateArgs<'_>) -> Result<NetSpec> {
    let (subnet, mtu) = parse(a)?;
    let st = Store::connect(opts).await?;
    let nets = list(&st).await?;
    if let Some(n) = nets.iter().find(|n| n.name == a.name) {
        return Err(Error::bad(
            a.name,
            format!(
                "network exists (subnet {}, VNI {}); `pipework overlay delete {}` first",
                n.subnet, n.vni, a.name
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
    if let Some(n) = nets.iter().find(|n| n.subnet.overlaps(subnet)) {
        return Err(Error::bad(
            a.subnet,
            format!(
                "overlaps network {} ({}); pick a disjoint subnet",
                n.name, n.subnet
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
    let (mtu, mtu_auto) = match mtu {
        Some(m) => (m, false),
        None => (auto_mtu(&st).await?, true),
    };
    let spec = NetSpec {
        name: a.name.to_string(),
        subnet,
        vni,
        mtu,
        mtu_auto,
        port: a.port,
        grace: match a.grace {
            Some(g) => parse_grace(g)?,
            None => store::DEFAULT_GRACE,
        },
        gateway: match a.gateway {
            Some(g) => Some(parse_gateway(g, subnet)?),
            None => None,
        },
        no_default_route: a.no_default_route,
        allow_from: a.allow_from.to_vec(),
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
async fn auto_mtu(st: &Store) -> Result<u32> {
    let hosts = hosts(st).await?;
    Ok(hosts
        .iter()
        .map(|h| h.underlay_mtu.saturating_sub(overhead(h.underlay)))
        .min()
        .unwrap_or(1450)
        .max(576))
}

pub async fn delete(opts: &store::EtcdOpts, name: &str) -> Result<()> {
    check_name(name)?;
    let st = Store::connect(opts).await?;
    let Some(v) = st.get(&store::net_key(name)).await? else {
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
    // Only if still endpoint-free at commit: an attach racing us loses.
    let txn = Txn::new()
        .when(vec![
            Compare::create_revision(&store::ep_prefix(name), CompareOp::Equal, 0).with_prefix(),
        ])
        .and_then(vec![
            TxnOp::delete(&store::net_key(name)),
            TxnOp::delete(&store::vni_key(spec.vni)),
            // Addresses still reserved by hosts that are cut off or gone:
            // the network they were on is no more.
            TxnOp::delete_prefix(&store::resv_prefix(name)),
        ]);
    if !st.txn("delete network", txn).await? {
        return Err(Error::bad(
            name,
            "an endpoint was attached meanwhile; detach it first",
        ));
    }
    Ok(())
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
    let mut n = 0;
    for (k, v, rev) in kvs.into_iter().chain(eps) {
        // Both records name their host in the same field.
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
        let txn = Txn::new()
            .when(vec![Compare::mod_revision(&k, CompareOp::Equal, rev)])
            .and_then(vec![TxnOp::delete(&k)]);
        if st.txn("releasing a host's address", txn).await? && k.contains("/resv/") {
            n += 1;
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
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
}
