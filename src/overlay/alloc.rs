//! Addresses, cluster-wide. An endpoint's key is its address, created in
//! one etcd transaction only if absent: two hosts can never both hold one
//! address, whatever the concurrency. The key lives under the host's short
//! lease (liveness: a dead host's entries leave its peers); the address's
//! reservation, written in the same transaction, under the host's long
//! hold lease (ownership: a host cut off for a while gets its addresses
//! back, nobody else is given them meanwhile).
use super::etcd::{Compare, CompareOp, Txn, TxnOp};
use super::store::{self, Endpoint, MacHold, NetSpec, Reservation, Store};
use crate::error::{Error, Result};
use std::net::{IpAddr, Ipv6Addr};

use super::want::free_of;
pub use super::want::{Want, first_host, first_host6, parse};

fn resv_of(ep: &Endpoint) -> Vec<u8> {
    store::encode(&Reservation {
        host: ep.host.clone(),
        container: ep.container.clone(),
        since: ep.since,
    })
}

/// The comparison that says "the reservation of `key` is absent, or is
/// this host's as read": None when another host holds it.
async fn resv_is_ours(st: &Store, key: &str, host: &str) -> Result<Result<Compare, String>> {
    Ok(match st.get_kv(key).await? {
        Some((v, rev)) => {
            let r: Reservation = store::decode(key, &v)?;
            if r.host == host {
                Ok(Compare::mod_revision(key, CompareOp::Equal, rev))
            } else {
                Err(r.host)
            }
        }
        None => Ok(Compare::create_revision(key, CompareOp::Equal, 0)),
    })
}

/// The MAC key a claim of `ips` must take with them: an IPv6-only
/// endpoint's (its MAC is the address's last 32 bits, which another
/// address can repeat). An IPv4-derived MAC is unique with its address.
fn mac_claim(net: &str, ips: &[IpAddr], mac: &str) -> Option<(String, IpAddr)> {
    match ips {
        [ip @ IpAddr::V6(_)] => Some((store::mac_key(net, mac), *ip)),
        _ => None,
    }
}

/// The MAC key of a single address `ip` when it holds one (an IPv6-only
/// endpoint's, whose `mac` is derived from `ip`).
fn mac_key_of(net: &str, ip: IpAddr, mac: &str) -> Option<String> {
    match ip {
        IpAddr::V6(v6) if crate::request::format_mac(&super::names::mac_for6(v6)) == mac => {
            Some(store::mac_key(net, mac))
        }
        _ => None,
    }
}

/// MAC key `key` as stored, with its revision.
async fn mac_held(st: &Store, key: &str) -> Result<Option<(MacHold, i64)>> {
    match st.get_kv(key).await? {
        Some((v, rev)) => Ok(Some((store::decode(key, &v)?, rev))),
        None => Ok(None),
    }
}

/// The comparison that says "MAC key `key` is absent, or `ip`'s of
/// `host` as read"; the holder otherwise.
async fn mac_is_ours(
    st: &Store,
    key: &str,
    ip: IpAddr,
    host: &str,
) -> Result<Result<Compare, MacHold>> {
    Ok(match mac_held(st, key).await? {
        Some((h, rev)) if h.ip == ip && h.host == host => {
            Ok(Compare::mod_revision(key, CompareOp::Equal, rev))
        }
        Some((h, _)) => Err(h),
        None => Ok(Compare::create_revision(key, CompareOp::Equal, 0)),
    })
}

fn mac_taken(ip: IpAddr, mac: &str, holder: &MacHold) -> Error {
    if holder.ip == ip {
        return Error::bad(
            ip,
            format!(
                "in use by {} on host {}; pick another or auto",
                holder.container, holder.host
            ),
        );
    }
    Error::bad(
        ip,
        format!(
            "its MAC {mac} (from the address's last 32 bits) is {}'s already; pick an address with other last 32 bits, or auto",
            holder.ip
        ),
    )
}

/// Claim the addresses `want` asks for, one endpoint each (`ep` is the
/// template: its `ip` and `mac` are filled in): the endpoints under
/// `lease`, their reservations under `hold`, all in one transaction, so a
/// dual-stack claim gets both addresses or neither.
pub async fn claim(
    st: &Store,
    net: &NetSpec,
    want: &Want,
    ep: Endpoint,
    lease: i64,
    hold: i64,
) -> Result<Vec<Endpoint>> {
    let mut seed = u64::from(std::process::id()) ^ store::now().rotate_left(17);
    // Claims whose transaction ended in an ambiguous error (an election,
    // a timeout): etcd may have applied it. Checked before anything else,
    // so a claim that did happen is this one's result, neither refused as
    // "in use" nor leaked next to a second address.
    let mut unsure: Vec<Vec<String>> = Vec::new();
    for attempt in 0..200u32 {
        if let Some(mine) = applied_after_all(st, &mut unsure, &ep).await {
            return Ok(mine);
        }
        let ips: Vec<IpAddr> = match want {
            Want::Given(ips) => {
                if let [IpAddr::V6(v6)] = ips[..] {
                    refuse_taken_mac(st, net, v6).await?;
                }
                ips.clone()
            }
            Want::Auto => {
                // Endpoints and reservations both: an address whose host
                // is cut off (its endpoint lapsed) is still taken.
                let mut used = std::collections::HashSet::new();
                let mut macs = std::collections::HashSet::new();
                let (held, _) = st.list(&store::mac_prefix(&net.name)).await?;
                macs.extend(
                    held.iter()
                        .filter_map(|(k, _)| k.rsplit('/').next().map(String::from)),
                );
                for p in [store::ep_prefix(&net.name), store::resv_prefix(&net.name)] {
                    let (kvs, _) = st.list(&p).await?;
                    for (k, v) in &kvs {
                        used.extend(k.rsplit('/').next().map(String::from));
                        if let Ok(e) = serde_json::from_slice::<Endpoint>(v) {
                            macs.insert(e.mac);
                        }
                    }
                }
                // Concurrent claimers would all race for the first free
                // address: after a lost race, pick among the first few free
                // ones at random, so n racers settle in about log n rounds.
                let spread = (attempt as usize + 1).min(64);
                let mut ips = Vec::new();
                for (v6, has) in [(false, net.subnet.is_some()), (true, net.subnet6.is_some())] {
                    if !has {
                        continue;
                    }
                    let free = free_of(net, v6, &used, &macs, spread);
                    if free.is_empty() {
                        return Err(Error::bad(
                            &net.name,
                            format!("no free address left in {}", net.subnets()),
                        ));
                    }
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    ips.push(free[(seed % free.len() as u64) as usize]);
                }
                ips
            }
        };
        let mac = crate::request::format_mac(&super::names::mac_of(&ips));
        let eps: Vec<Endpoint> = ips
            .iter()
            .map(|ip| Endpoint {
                ip: *ip,
                mac: mac.clone(),
                ..ep.clone()
            })
            .collect();
        let mut when = Vec::new();
        let mut ops = Vec::new();
        for e in &eps {
            let key = store::ep_key(&net.name, e.ip);
            let rkey = store::resv_key(&net.name, e.ip);
            // A given address this host itself reserves (its endpoint
            // lapsed while it was cut off) may be taken again; anyone
            // else's may not.
            let resv_cmp = match want {
                Want::Given(_) => match resv_is_ours(st, &rkey, &e.host).await? {
                    Ok(c) => c,
                    Err(other) => {
                        return Err(Error::bad(
                            e.ip,
                            format!(
                                "reserved by host {other}, which is cut off or gone; pick another or auto, or release its addresses with `pipework overlay host rm {other}`"
                            ),
                        ));
                    }
                },
                Want::Auto => Compare::create_revision(&rkey, CompareOp::Equal, 0),
            };
            when.push(Compare::create_revision(&key, CompareOp::Equal, 0));
            when.push(resv_cmp);
            ops.push(TxnOp::put(&key, &store::encode(e), Some(lease)));
            ops.push(TxnOp::put(&rkey, &resv_of(e), Some(hold)));
        }
        // An IPv6-only endpoint's MAC, claimed with its address.
        if let Some((mk, ip)) = mac_claim(&net.name, &ips, &mac) {
            match mac_is_ours(st, &mk, ip, &ep.host).await? {
                Ok(c) => when.push(c),
                Err(holder) => match want {
                    Want::Given(_) => return Err(mac_taken(ip, &mac, &holder)),
                    // Claimed since the list: pick again.
                    Want::Auto => continue,
                },
            }
            let hold_rec = MacHold {
                ip,
                host: ep.host.clone(),
                container: ep.container.clone(),
            };
            ops.push(TxnOp::put(&mk, &store::encode(&hold_rec), Some(hold)));
        }
        // The network must still exist (a concurrent delete wins).
        when.push(Compare::create_revision(
            &store::net_key(&net.name),
            CompareOp::Greater,
            0,
        ));
        let keys: Vec<String> = eps.iter().map(|e| store::ep_key(&net.name, e.ip)).collect();
        let txn = Txn::new().when(when).and_then(ops);
        let succeeded = match st.txn("claiming an address", txn).await {
            Ok(r) => r,
            // An election: the claim may or may not have happened (checked
            // at the top of the next round); try again.
            Err(e) if store::transient(&e) && attempt < 20 => {
                unsure.push(keys);
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
            Err(e) => {
                if store::transient(&e) {
                    unsure.push(keys);
                }
                if let Some(mine) = applied_after_all(st, &mut unsure, &ep).await {
                    return Ok(mine);
                }
                return Err(lease_hint(e));
            }
        };
        if succeeded {
            return Ok(eps);
        }
        // Refused: perhaps by our own earlier, ambiguous attempt.
        if let Some(mine) = applied_after_all(st, &mut unsure, &ep).await {
            return Ok(mine);
        }
        if let Want::Given(ips) = want {
            let mut reserved_meanwhile = false;
            for ip in ips {
                let key = store::ep_key(&net.name, *ip);
                let rkey = store::resv_key(&net.name, *ip);
                match st.get(&key).await? {
                    Some(v) => {
                        let other: Endpoint = store::decode(&key, &v)?;
                        return Err(Error::bad(
                            ip,
                            format!(
                                "in use by {} on host {}; pick another or auto",
                                other.container, other.host
                            ),
                        ));
                    }
                    None => reserved_meanwhile |= st.get(&rkey).await?.is_some(),
                }
            }
            // Reserved meanwhile, or the MAC claimed meanwhile: the next
            // round names the holder.
            if reserved_meanwhile || st.get(&store::net_key(&net.name)).await?.is_some() {
                continue;
            }
            return Err(Error::bad(&net.name, "the network was deleted meanwhile"));
        }
    }
    Err(Error::other(format!(
        "{}: could not claim an address after 200 tries (too much contention)",
        net.name
    )))
}

/// An IPv6-only endpoint's MAC comes from its address's low 32 bits: a
/// static address whose low bits repeat another endpoint's would share
/// its MAC on the network's one L2 segment. Claims hold the MAC key
/// (`mac_claim`), atomically; this read covers endpoints written before
/// MAC keys existed, until their agent's next update writes theirs.
async fn refuse_taken_mac(st: &Store, net: &NetSpec, ip: Ipv6Addr) -> Result<()> {
    let mac = crate::request::format_mac(&super::names::mac_for6(ip));
    let (kvs, _) = st.list(&store::ep_prefix(&net.name)).await?;
    for (k, v) in kvs {
        let Ok(e) = store::decode::<Endpoint>(&k, &v) else {
            continue;
        };
        if e.mac == mac && e.ip != IpAddr::V6(ip) {
            return Err(Error::bad(
                ip,
                format!(
                    "its MAC {mac} (from the address's last 32 bits) is {}'s already; pick an address with other last 32 bits, or auto",
                    e.ip
                ),
            ));
        }
    }
    Ok(())
}

/// The endpoint `held` is the one `ep` wrote: same host, container,
/// interface and write time (the address may differ: an `auto` retry picks
/// again).
fn same_claim(held: &Endpoint, ep: &Endpoint) -> bool {
    held.host == ep.host
        && held.container == ep.container
        && held.ifname == ep.ifname
        && held.since == ep.since
}

/// Of the claims an ambiguous error left `unsure` (the keys each wrote
/// together), the first whose keys hold our own claim (read back). Claims
/// found absent or someone else's are dropped; claims that cannot be read
/// now stay for the next look.
async fn applied_after_all(
    st: &Store,
    unsure: &mut Vec<Vec<String>>,
    ep: &Endpoint,
) -> Option<Vec<Endpoint>> {
    let mut keep = Vec::new();
    let mut found = None;
    for keys in unsure.drain(..) {
        if found.is_some() {
            keep.push(keys);
            continue;
        }
        let mut mine = Vec::new();
        let mut unreadable = false;
        for key in &keys {
            match st.get(key).await {
                Ok(Some(v)) => match store::decode::<Endpoint>(key, &v) {
                    Ok(held) if same_claim(&held, ep) => mine.push(held),
                    _ => {}
                },
                Ok(None) => {}
                Err(_) => unreadable = true,
            }
        }
        // One transaction wrote them all: all ours, or none.
        if !mine.is_empty() && mine.len() == keys.len() {
            found = Some(mine);
        } else if unreadable {
            keep.push(keys);
        }
    }
    *unsure = keep;
    found
}

/// What `update` did.
#[derive(Debug, PartialEq, Eq)]
pub enum Updated {
    Written,
    /// Another host holds the address (handed out while this host's lease
    /// had lapsed): nothing was written, and retrying cannot change that.
    HeldBy(String),
}

/// Update an endpoint we hold (same key, same lease), and its
/// reservation (under `hold`).
///
/// Only ever our own endpoint: the key and its reservation must be absent
/// or held by this host, checked and written in one transaction. Another
/// host's address is never overwritten, whatever this host's kernel says
/// it holds.
pub async fn update(
    st: &Store,
    net: &str,
    ep: &Endpoint,
    lease: i64,
    hold: i64,
) -> Result<Updated> {
    let key = store::ep_key(net, ep.ip);
    let rkey = store::resv_key(net, ep.ip);
    let rcmp = match resv_is_ours(st, &rkey, &ep.host).await? {
        Ok(c) => c,
        Err(other) => return Ok(Updated::HeldBy(other)),
    };
    let cmp = match st.get_kv(&key).await? {
        Some((v, rev)) => {
            let cur: Endpoint = store::decode(&key, &v)?;
            if cur.host != ep.host {
                return Ok(Updated::HeldBy(cur.host));
            }
            Compare::mod_revision(&key, CompareOp::Equal, rev)
        }
        None => Compare::create_revision(&key, CompareOp::Equal, 0),
    };
    let mut when = vec![cmp, rcmp];
    let mut ops = vec![
        TxnOp::put(&key, &store::encode(ep), Some(lease)),
        TxnOp::put(&rkey, &resv_of(ep), Some(hold)),
    ];
    // The MAC key lives under the reservation's hold lease too; an
    // endpoint written before MAC keys existed gets its key here. One
    // another address already holds (a clash from before) is never taken.
    if let Some(mk) = mac_key_of(net, ep.ip, &ep.mac)
        && let Ok(c) = mac_is_ours(st, &mk, ep.ip, &ep.host).await?
    {
        when.push(c);
        let h = MacHold {
            ip: ep.ip,
            host: ep.host.clone(),
            container: ep.container.clone(),
        };
        ops.push(TxnOp::put(&mk, &store::encode(&h), Some(hold)));
    }
    let txn = Txn::new().when(when).and_then(ops);
    let succeeded = st
        .txn("updating the endpoint", txn)
        .await
        .map_err(lease_hint)?;
    if !succeeded {
        return Err(Error::other(format!(
            "{} changed in etcd meanwhile; the agent's next pass retries",
            ep.ip
        )));
    }
    Ok(Updated::Written)
}

/// Give back address `ip` of `net` held by `host`: its endpoint (only if
/// still written at `ep_rev`, when given) and its reservation, each only
/// if `host`'s, in one transaction on the revisions read. A new claim of
/// the address since is never deleted. True when something was deleted.
pub async fn release(
    st: &Store,
    net: &str,
    ip: IpAddr,
    host: &str,
    ep_rev: Option<i64>,
) -> Result<bool> {
    let key = store::ep_key(net, ip);
    let rkey = store::resv_key(net, ip);
    let mut when = Vec::new();
    let mut ops = Vec::new();
    if let Some((v, rev)) = st.get_kv(&key).await? {
        let ep: Endpoint = store::decode(&key, &v)?;
        if ep.host != host || ep_rev.is_some_and(|r| r != rev) {
            return Ok(false);
        }
        when.push(Compare::mod_revision(&key, CompareOp::Equal, rev));
        ops.push(TxnOp::delete(&key));
    } else if ep_rev.is_some() {
        return Ok(false);
    }
    if let Some((v, rev)) = st.get_kv(&rkey).await?
        && store::decode::<Reservation>(&rkey, &v)?.host == host
    {
        when.push(Compare::mod_revision(&rkey, CompareOp::Equal, rev));
        ops.push(TxnOp::delete(&rkey));
    }
    if let Some((mk, rev)) = own_mac(st, net, ip, Some(host)).await? {
        when.push(Compare::mod_revision(&mk, CompareOp::Equal, rev));
        ops.push(TxnOp::delete(&mk));
    }
    if ops.is_empty() {
        return Ok(false);
    }
    st.txn("releasing the address", Txn::new().when(when).and_then(ops))
        .await
}

/// Drop a reservation whose endpoint is gone, only if it is still as read
/// (revision `rev`) and no endpoint holds the address (a new claim of it
/// writes both).
pub async fn release_resv(st: &Store, net: &str, ip: IpAddr, rev: i64) -> Result<bool> {
    let key = store::ep_key(net, ip);
    let rkey = store::resv_key(net, ip);
    let mut when = vec![
        Compare::mod_revision(&rkey, CompareOp::Equal, rev),
        Compare::create_revision(&key, CompareOp::Equal, 0),
    ];
    let mut ops = vec![TxnOp::delete(&rkey)];
    if let Some((mk, mrev)) = own_mac(st, net, ip, None).await? {
        when.push(Compare::mod_revision(&mk, CompareOp::Equal, mrev));
        ops.push(TxnOp::delete(&mk));
    }
    st.txn(
        "releasing a reservation",
        Txn::new().when(when).and_then(ops),
    )
    .await
}

/// The MAC key address `ip` holds (of `host`, when given), with its
/// revision: released with the address.
async fn own_mac(
    st: &Store,
    net: &str,
    ip: IpAddr,
    host: Option<&str>,
) -> Result<Option<(String, i64)>> {
    let IpAddr::V6(v6) = ip else {
        return Ok(None);
    };
    let mk = store::mac_key(
        net,
        &crate::request::format_mac(&super::names::mac_for6(v6)),
    );
    Ok(match mac_held(st, &mk).await? {
        Some((h, rev)) if h.ip == ip && host.is_none_or(|o| o == h.host) => Some((mk, rev)),
        _ => None,
    })
}

/// Drop MAC key `mk` of `net` (IPv6-only address `ip`'s) whose address
/// has neither endpoint nor reservation, only if it is still as read
/// (revision `rev`) and both are still absent (a new claim writes all).
pub async fn release_mac(st: &Store, net: &str, mk: &str, ip: IpAddr, rev: i64) -> Result<bool> {
    let txn = Txn::new()
        .when(vec![
            Compare::mod_revision(mk, CompareOp::Equal, rev),
            Compare::create_revision(&store::ep_key(net, ip), CompareOp::Equal, 0),
            Compare::create_revision(&store::resv_key(net, ip), CompareOp::Equal, 0),
        ])
        .and_then(vec![TxnOp::delete(mk)]);
    st.txn("releasing a MAC", txn).await
}

/// "requested lease not found" means the agent's lease lapsed: say what to do.
pub fn lease_hint(e: Error) -> Error {
    let s = e.to_string();
    if s.contains("lease not found") {
        Error::other(format!(
            "{s}: this host's overlay agent lease expired; is `pipework overlay agent` running?"
        ))
    } else {
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(ip: u8) -> Endpoint {
        Endpoint {
            ip: std::net::Ipv4Addr::new(10, 40, 0, ip).into(),
            mac: String::new(),
            host: "pwvh1".into(),
            container: "pwvc1".into(),
            ifname: "eth1".into(),
            hi: None,
            since: 1_700_000_000,
        }
    }

    #[test]
    fn a_claim_read_back_is_ours_only_if_it_is_the_same_write() {
        let mine = ep(2);
        // The same write, at the address an `auto` round picked.
        assert!(same_claim(&ep(9), &mine));
        let mut other = ep(2);
        other.host = "pwvh2".into();
        assert!(!same_claim(&other, &mine));
        let mut other = ep(2);
        other.container = "pwvc2".into();
        assert!(!same_claim(&other, &mine));
        let mut other = ep(2);
        other.ifname = "eth2".into();
        assert!(!same_claim(&other, &mine));
        // An earlier attach of the same container: not this claim.
        let mut other = ep(2);
        other.since -= 1;
        assert!(!same_claim(&other, &mine));
    }
}
