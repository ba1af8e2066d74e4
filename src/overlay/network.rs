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
}

/// Check everything that does not need etcd.
fn parse(a: &CreateArgs<'_>) -> Result<(ipnetwork::Ipv4Network, Option<u32>)> {
    check_name(a.name)?;
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
    if let Some(v) = a.vni
        && !(1..=16_777_215).contains(&v)
    {
        return Err(Error::bad(v, "--vni must be 1-16777215"));
    }
    if a.port == 0 {
        return Err(Error::bad(0, "--port must be 1-65535"));
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
