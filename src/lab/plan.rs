//! What the kernel holds for a lab (read from the signed records alone),
//! and the difference to the file: units to add, records to remove.
use super::model::{Lab, Unit};
use crate::inventory::{self, Found, Namespace, Scan};
use crate::netlink::Net;
use crate::record::{Extras, Record};
use std::collections::{BTreeMap, HashSet};

/// The lab an attachment belongs to, from its record.
pub fn lab_of(rec: &Record) -> Option<&str> {
    rec.x.lab.as_deref()
}

/// The lab link (unit) an attachment belongs to.
pub fn unit_of(rec: &Record) -> Option<&str> {
    rec.x.lab_link.as_deref()
}

/// The extras a lab signs into every record it makes.
pub fn extras(lab: &str, unit: &Unit) -> Extras {
    Extras {
        lab: Some(lab.into()),
        lab_link: Some(unit.id()),
        ..Default::default()
    }
}

/// The host end of a lab's veth (bridge, OVS): a fresh name per build, so
/// a rebuilt unit's new host end never meets its old one (which `up`
/// removes only after every addition), and two labs never collide. The
/// records, not this name, say what the link is.
pub fn host_ifname(lab: &str, unit: &Unit) -> String {
    use sha2::{Digest, Sha256};
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let d = Sha256::digest(format!(
        "{lab}/{}/{}/{}/{nanos}",
        unit.id(),
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let hex: String = d[..5].iter().map(|b| format!("{b:02x}")).collect();
    format!("pl{hex}")
}

/// Every namespace's scan, kept so removals can use its handle.
pub struct Current {
    pub all: Vec<(Namespace, Net, Scan)>,
}

/// One of a lab's records where it was found.
pub struct Held<'a> {
    pub ns: &'a Namespace,
    pub net: &'a Net,
    pub found: &'a Found,
}

impl Current {
    pub async fn read() -> Current {
        Current {
            all: inventory::scan_all().await,
        }
    }

    /// The lab's verified records, from their own side of each link.
    pub fn held<'a>(&'a self, lab: &'a str) -> impl Iterator<Item = Held<'a>> + 'a {
        self.all.iter().flat_map(move |(ns, net, scan)| {
            scan.attachments()
                .filter(move |f| lab_of(&f.rec) == Some(lab))
                .map(move |found| Held { ns, net, found })
        })
    }

    /// Labs that have records on this host, by name.
    pub fn labs(&self) -> HashSet<String> {
        self.all
            .iter()
            .flat_map(|(_, _, s)| s.attachments())
            .filter_map(|f| lab_of(&f.rec).map(String::from))
            .collect()
    }
}

/// The record of `unit`'s end `k` if the kernel holds it in the node's
/// current namespace (`inos`: node → namespace inode; `host` included).
pub fn end_held<'a>(
    held: &'a [Held<'a>],
    unit: &Unit,
    k: usize,
    inos: &BTreeMap<String, u64>,
) -> Option<&'a Held<'a>> {
    let id = unit.id();
    let e = &unit.ends[k];
    let ino = *inos.get(&e.node)?;
    held.iter().find(|h| {
        unit_of(&h.found.rec) == Some(id.as_str())
            && h.found.rec.n == ino
            && h.found.rec.ifname == e.ifname
            && h.found.rec.p.is_none()
    })
}

pub struct Plan {
    /// Indices into `lab.units` to build.
    pub add: Vec<usize>,
    /// Indices into `held` to remove (stale, edited, or half there).
    pub remove: Vec<usize>,
    pub unchanged: usize,
}

/// Whether a held end drifted from the file: down, or an address gone.
pub async fn drifted(h: &Held<'_>, e: &super::model::End) -> bool {
    if !h.found.link.up {
        return true;
    }
    let addrs = h.net.addrs(h.found.link.index).await.unwrap_or_default();
    !e.addrs.iter().all(|a| addrs.iter().any(|x| x.net == *a))
}

/// Units the kernel holds as the file says are kept; the others (missing,
/// half there, drifted) are rebuilt, and records of no kept unit removed.
pub async fn diff(lab: &Lab, held: &[Held<'_>], inos: &BTreeMap<String, u64>) -> Plan {
    let mut add = Vec::new();
    let mut keep: HashSet<String> = HashSet::new();
    'units: for (i, u) in lab.units.iter().enumerate() {
        for (k, e) in u.ends.iter().enumerate() {
            match end_held(held, u, k, inos) {
                Some(h) if !drifted(h, e).await => {}
                _ => {
                    add.push(i);
                    continue 'units;
                }
            }
        }
        keep.insert(u.id());
    }
    let unchanged = keep.len();
    keep.extend(lab.elsewhere.iter().cloned());
    let remove = held
        .iter()
        .enumerate()
        .filter(|(_, h)| !unit_of(&h.found.rec).is_some_and(|id| keep.contains(id)))
        .map(|(i, _)| i)
        .collect();
    Plan {
        add,
        remove,
        unchanged,
    }
}
