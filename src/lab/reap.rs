//! Removing many point-to-point links at once (`lab down`). A veth takes
//! its peer along, and `Net::delete_links_together` deletes a namespace's
//! links with one RCU wait instead of one each; so one end of each pair is
//! picked, from the namespace holding the most ends, and each namespace
//! gets one delete.
use super::plan::{Held, unit_of};
use crate::error::Result;
use crate::record::Kind;
use std::collections::{BTreeMap, HashMap};

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
        let links: Vec<_> = picks.iter().map(|&i| &held[i].found.link).collect();
        net.delete_links_together(&links).await?;
    }
    Ok(gone)
}
