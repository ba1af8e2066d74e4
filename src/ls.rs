//! `pipework ls`: every attachment on this host, read from the records on
//! the container-side links in every network namespace we can find.
use crate::error::Result;
use crate::guest::netns_dir;
use crate::netlink::Net;
use crate::netns::NetNs;
use crate::record::Record;
use serde::Serialize;
use std::collections::HashSet;
use std::path::PathBuf;

#[derive(Debug, Serialize)]
pub struct Entry {
    pub guest: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container_id: Option<String>,
    pub interface: String,
    pub kind: String,
    pub host: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host_interface: Option<String>,
    pub mac: String,
    pub addresses: Vec<String>,
    pub up: bool,
}

/// Candidate namespace files: named ones first, then every process's.
fn namespace_paths() -> Vec<PathBuf> {
    let mut v = Vec::new();
    if let Ok(rd) = std::fs::read_dir(netns_dir()) {
        v.extend(rd.flatten().map(|e| e.path()));
    }
    if let Ok(rd) = std::fs::read_dir("/proc") {
        for e in rd.flatten() {
            if e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
            {
                v.push(e.path().join("ns/net"));
            }
        }
    }
    v
}

pub async fn run() -> Result<Vec<Entry>> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for path in namespace_paths() {
        let Ok(ns) = NetNs::open(&path) else { continue };
        let Ok(ino) = ns.inode() else { continue };
        if !seen.insert(ino) {
            continue;
        }
        let Ok(net) = Net::new(Some(&ns), false) else {
            continue;
        };
        let Ok(links) = net.links().await else {
            continue;
        };
        for l in links {
            let Some(rec) = l.alias.as_deref().and_then(Record::decode) else {
                continue;
            };
            // The host end of a veth carries the same record: list each
            // attachment once, from its container side.
            if rec.hi.as_deref() == Some(l.name.as_str()) && rec.ifname != l.name {
                continue;
            }
            let addrs = net.addrs(l.index).await.unwrap_or_default();
            out.push(Entry {
                guest: rec.g,
                container_id: rec.id,
                interface: l.name.clone(),
                kind: rec.k,
                host: rec.h,
                host_interface: rec.hi,
                mac: crate::request::format_mac(&l.mac),
                addresses: addrs.iter().map(|a| a.net.to_string()).collect(),
                up: l.up,
            });
        }
    }
    // OVS rows whose guest is gone live on in OVSDB only (pipework#143).
    out.extend(crate::driver::ovs::stale_ls_entries().await);
    out.sort_by(|a, b| (&a.guest, &a.interface).cmp(&(&b.guest, &b.interface)));
    Ok(out)
}
