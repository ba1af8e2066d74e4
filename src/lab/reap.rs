//! Removing many point-to-point links at once (`lab down`). Each
//! RTM_DELLINK of a veth waits for an RCU grace period (about 15 ms), one
//! per link. The kernel deletes every link of a namespace that is in one
//! link group with a single request and a single wait, and a veth takes its
//! peer along; so one end of each pair is tagged with a group of our own
//! and each namespace gets one delete. A guest could only add its own
//! links to that group, within its own namespace.
use super::plan::{Held, unit_of};
use crate::error::{Error, Result};
use crate::record::Kind;
use netlink_packet_route::link::LinkAttribute;
use rtnetlink::LinkUnspec;
use std::collections::{BTreeMap, HashMap};

/// A link group no one else uses: high bit set, then pid and time mixed.
fn group() -> u32 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    0x8000_0000 | ((std::process::id() << 12) ^ t) & 0x7fff_ffff
}

/// Delete the p2p links among `held` in as few requests as possible;
/// returns which entries of `held` are gone (both ends of each pair).
pub async fn p2p(held: &[Held<'_>]) -> Result<Vec<usize>> {
    // Units → their ends; namespaces → how many units they could take.
    let mut units: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, h) in held.iter().enumerate() {
        if h.found.rec.k == Kind::P2p
            && let Some(id) = unit_of(&h.found.rec)
        {
            units.entry(id).or_default().push(i);
        }
    }
    let mut weight: HashMap<u64, usize> = HashMap::new();
    for ends in units.values() {
        for &i in ends {
            *weight.entry(held[i].ns.ino).or_default() += 1;
        }
    }
    // Each unit is deleted from its busiest namespace.
    let mut per_ns: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
    let mut gone = Vec::new();
    for ends in units.values() {
        let Some(&pick) = ends
            .iter()
            .max_by_key(|&&i| (weight.get(&held[i].ns.ino), held[i].ns.ino))
        else {
            continue;
        };
        per_ns.entry(held[pick].ns.ino).or_default().push(pick);
        gone.extend(ends.iter().copied());
    }
    let g = group();
    for picks in per_ns.values() {
        let net = held[picks[0]].net;
        // `held` is a snapshot: look again (one dump per namespace) and
        // group only links still as it saw them (index, name, alias), so
        // a link renamed or replaced meanwhile is never deleted here. Its
        // pair is not reported gone, so `down` takes it the careful way
        // (one by one, each link read again by name and deleted only while
        // its record verifies).
        let now = net.links().await?;
        let mut picks = picks.clone();
        picks.retain(|&i| {
            let l = &held[i].found.link;
            let same = now
                .iter()
                .any(|n| n.index == l.index && n.name == l.name && n.alias == l.alias);
            if !same && let Some(ends) = unit_of(&held[i].found.rec).and_then(|id| units.get(id)) {
                gone.retain(|x| !ends.contains(x));
            }
            same
        });
        if picks.is_empty() {
            continue;
        }
        for &i in &picks {
            let mut m = LinkUnspec::new_with_index(held[i].found.link.index).build();
            m.attributes.push(LinkAttribute::Group(g));
            net.handle
                .link()
                .set(m)
                .execute()
                .await
                .map_err(|e| Error::netlink(format!("grouping {}", held[i].found.link.name), e))?;
        }
        let mut del = net.handle.link().del(0);
        del.message_mut().attributes.push(LinkAttribute::Group(g));
        del.execute()
            .await
            .map_err(|e| Error::netlink("deleting a lab's links", e))?;
    }
    Ok(gone)
}
