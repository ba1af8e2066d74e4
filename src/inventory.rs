//! The one place that finds our objects and decides which to believe.
//!
//! `ls`, `detach`, `gc`, rollback and the drivers ask this module; they never
//! read an alias themselves. What it trusts:
//! - a record whose tag verifies for the link it sits on (`record.rs`);
//! - a host link under a temporary name (`pw.<pid>.<n>`): only root on the
//!   host can name host links, and the name carries the pid of the pipework
//!   building it, so an unfinished link is recognisable after a SIGKILL;
//! - a guest link under a temporary name only when its parent or peer lives
//!   in the host namespace (`IFLA_LINK_NETNSID`), which a guest cannot fake.
//!
//! Everything else a guest can write is reported as ignored.
use crate::error::{Error, Result};
use crate::guest::netns_dir;
use crate::netlink::{Link, Net};
use crate::netns::NetNs;
use crate::record::{Ident, Record, Seen};
use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

/// Names that only pipework gives, and only while building.
pub const TEMP_PREFIX: &str = "pw.";

/// A fresh temporary link name owned by this process: `pw.<pid>.<n>` in
/// hex, at most 15 bytes for any pid the kernel hands out (≤ 2^22).
pub fn temp_name() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed) & 0xfff;
    format!("{TEMP_PREFIX}{:x}.{n:x}", std::process::id())
}

/// The pid that owns a temporary name, if `name` is one.
pub fn temp_owner(name: &str) -> Option<u32> {
    let rest = name.strip_prefix(TEMP_PREFIX)?;
    let (pid, n) = rest.split_once('.')?;
    u32::from_str_radix(n, 16).ok()?;
    u32::from_str_radix(pid, 16).ok().filter(|p| *p > 0)
}

/// Whether `l` is still as a scan saw it: same index, name and alias. A
/// scan is a snapshot, and a pipework that finished between the dump and
/// the liveness check has renamed or re-labelled its link by then: acting
/// on the stale view would undo a finished attachment. Ask after the
/// builder was found dead (a dead builder changes nothing any more).
pub async fn unchanged(net: &Net, l: &Link) -> Result<bool> {
    Ok(net
        .link_by_index(l.index)
        .await?
        .is_some_and(|now| now.name == l.name && now.alias == l.alias))
}

/// Delete the link `rec` names in `net`, only while it still carries a
/// verified record of the same kind for that namespace: never a link a
/// guest renamed into its place. Undo for kinds no driver builds (a
/// point-to-point end; deleting one end of a veth deletes the pair).
pub async fn delete_if_ours(net: &Net, rec: &Record) -> Result<()> {
    let Some(l) = net.link_by_name(&rec.ifname).await? else {
        return Ok(());
    };
    match read(&l, rec.n) {
        Seen::Ours(r) if r.k == rec.k => net.delete_link(&l).await,
        _ => Ok(()),
    }
}

/// Whether the pipework with this pid may still be working: the pid runs
/// and is a pipework (same command name as ours, or `pipework*`). A pid
/// reused by an unrelated long-lived process would otherwise keep an
/// unfinished attachment "busy" forever; a pid reused by another pipework
/// only makes us wait for a later run, which is never unsafe.
pub fn alive(pid: u32) -> bool {
    if pid == std::process::id() {
        return true;
    }
    let Ok(comm) = std::fs::read_to_string(format!("/proc/{pid}/comm")) else {
        return false;
    };
    let comm = comm.trim_end();
    static OURS: OnceLock<String> = OnceLock::new();
    let ours = OURS.get_or_init(|| {
        std::fs::read_to_string("/proc/self/comm")
            .map(|c| c.trim_end().to_string())
            .unwrap_or_default()
    });
    comm == ours || comm.starts_with("pipework")
}

/// Inode of the host's (our own) network namespace.
pub fn host_ns() -> u64 {
    static INO: OnceLock<u64> = OnceLock::new();
    *INO.get_or_init(|| {
        std::fs::metadata("/proc/self/ns/net")
            .map(|m| m.ino())
            .unwrap_or(0)
    })
}

/// A verified record and the link it sits on.
#[derive(Debug, Clone)]
pub struct Found {
    pub link: Link,
    pub rec: Record,
}

impl Found {
    /// The dead pipework that left this attachment unfinished, if any.
    pub fn abandoned_by(&self) -> Option<u32> {
        self.rec.p.filter(|p| !alive(*p))
    }
    /// The live pipework still building it, if any.
    pub fn building(&self) -> Option<u32> {
        self.rec.p.filter(|p| alive(*p))
    }
}

/// A record-looking alias that did not verify.
#[derive(Debug, Clone)]
pub struct Ignored {
    pub ns: String,
    pub link: String,
    pub why: &'static str,
}

/// Everything about one namespace's links that the callers need.
#[derive(Debug, Default)]
pub struct Scan {
    pub ns: u64,
    pub links: Vec<Link>,
    pub ours: Vec<Found>,
    pub ignored: Vec<Ignored>,
}

impl Scan {
    /// Container-side records: those written for a guest in this very
    /// namespace (a veth's host end carries its guest's record too).
    pub fn attachments(&self) -> impl Iterator<Item = &Found> {
        self.ours.iter().filter(|f| f.rec.n == self.ns)
    }
}

/// Verify the alias on one link of namespace `ns`.
pub fn read(link: &Link, ns: u64) -> Seen {
    Record::read(
        link.alias.as_deref(),
        Ident {
            ns,
            index: link.index,
        },
    )
}

/// The verified mark on a link of this (the host's) namespace, if any.
pub fn mark_of(link: &Link) -> Option<crate::record::Mark> {
    crate::record::Mark::read(
        link.alias.as_deref(),
        Ident {
            ns: host_ns(),
            index: link.index,
        },
    )
}

/// The alias that marks host link `link` as pipework's `kind` object.
pub fn mark_alias(link: &Link, kind: crate::record::MarkKind, of: &str) -> Result<String> {
    crate::record::Mark::new(kind, of).seal(Ident {
        ns: host_ns(),
        index: link.index,
    })
}

/// One dump of `net`'s links, sorted into ours and ignored.
pub async fn scan(net: &Net, ns: u64, label: &str) -> Result<Scan> {
    let links = net.links().await?;
    let mut s = Scan {
        ns,
        ..Default::default()
    };
    for l in &links {
        match read(l, ns) {
            Seen::Foreign => {}
            Seen::Ours(rec) => s.ours.push(Found {
                link: l.clone(),
                rec,
            }),
            Seen::Forged(why) => s.ignored.push(Ignored {
                ns: label.to_string(),
                link: l.name.clone(),
                why,
            }),
        }
    }
    s.links = links;
    Ok(s)
}

/// Tell the operator what we refused to act on. Names come from the guest:
/// they are escaped, so no escape sequence reaches the terminal.
pub fn warn_ignored(ignored: &[Ignored]) {
    use crate::untrusted::display;
    for i in ignored {
        eprintln!(
            "pipework: ignored {} in {}: {}",
            display(&i.link),
            display(&i.ns),
            i.why
        );
    }
}

/// The host end of a veth whose guest side carries `rec`, if it really is
/// that: our verified record, for the same guest namespace and interface.
pub async fn host_end(host: &Net, rec: &Record) -> Result<Option<Link>> {
    let Some(hi) = &rec.hi else { return Ok(None) };
    let Some(l) = host.link_by_name(hi).await? else {
        return Ok(None);
    };
    Ok(match read(&l, host_ns()) {
        Seen::Ours(r) if r.n == rec.n && r.ifname == rec.ifname => Some(l),
        _ => None,
    })
}

/// A guest link under a temporary name that pipework pid `owner` (dead)
/// created from the host: its parent or peer is in the host namespace.
pub async fn abandoned_guest_temp(cont: &Net, link: &Link, host: &NetNs) -> Result<Option<u32>> {
    let Some(owner) = temp_owner(&link.name).filter(|p| !alive(*p)) else {
        return Ok(None);
    };
    let Some(id) = link.netnsid else {
        return Ok(None);
    };
    Ok((cont.nsid_of(host).await? == Some(id)).then_some(owner))
}

/// Veth pairs a dead pipework created straight between two guests
/// (`pipework link`) and never named: each end under a temporary name of
/// that same pid, each the other's peer (`IFLA_LINK` both ways, and the
/// peer's namespace is the one this namespace numbers `IFLA_LINK_NETNSID`).
/// A guest could only fake such a pair between namespaces it administers
/// itself, so removing one never touches anything but its own links.
/// Returns one end of each pair (deleting it deletes both): the index into
/// `all`, the link and the dead pid.
pub async fn abandoned_p2p_temps(all: &[(Namespace, Net, Scan)]) -> Vec<(usize, Link, u32)> {
    let mut cands: Vec<(usize, &Link, u32)> = Vec::new();
    for (i, (ns, _, scan)) in all.iter().enumerate() {
        if ns.ino == host_ns() {
            continue;
        }
        for l in &scan.links {
            if l.kind.as_deref() != Some("veth") || l.netnsid.is_none() {
                continue;
            }
            if let Some(p) = temp_owner(&l.name).filter(|p| !alive(*p)) {
                cands.push((i, l, p));
            }
        }
    }
    let mut out: Vec<(usize, Link, u32)> = Vec::new();
    for (k, &(i, a, p)) in cands.iter().enumerate() {
        for &(j, b, q) in &cands[k + 1..] {
            if i == j || p != q || a.link != Some(b.index) || b.link != Some(a.index) {
                continue;
            }
            let (na, ns_b) = (&all[i].1, &all[j].0.ns);
            if na.nsid_of(ns_b).await.ok().flatten() == a.netnsid {
                out.push((i, a.clone(), p));
            }
        }
    }
    out
}

/// A network namespace found on this host.
pub struct Namespace {
    pub ns: NetNs,
    pub ino: u64,
    /// How to name it to the operator (a path).
    pub label: String,
}

/// Candidate namespace files: named ones first, then every process's; and
/// the folders that exist but could not be listed.
fn namespace_paths() -> (Vec<PathBuf>, Vec<Unscanned>) {
    let mut v = Vec::new();
    let mut failed = Vec::new();
    let mut list = |dir: PathBuf| match std::fs::read_dir(&dir) {
        Ok(rd) => Some(rd),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => {
            failed.push(Unscanned {
                label: dir.display().to_string(),
                ino: 0,
                why: format!("cannot list it: {e}"),
            });
            None
        }
    };
    if let Some(rd) = list(netns_dir()) {
        v.extend(rd.flatten().map(|e| e.path()));
    }
    if let Some(rd) = list(PathBuf::from("/proc")) {
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
    (v, failed)
}

/// Every network namespace we can open, each once, the host's first.
pub fn namespaces() -> Vec<Namespace> {
    namespaces_checked().0
}

/// The same, with the namespace files that exist but could not be opened
/// (out of file descriptors, say): what is in them is unknown. A process
/// that exited meanwhile, or a file that is no network namespace, is not
/// one of them.
pub fn namespaces_checked() -> (Vec<Namespace>, Vec<Unscanned>) {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    let host = PathBuf::from("/proc/self/ns/net");
    let (paths, mut failed) = namespace_paths();
    for path in std::iter::once(host).chain(paths) {
        let ns = match NetNs::open(&path) {
            Ok(ns) => ns,
            Err(e) => {
                if unreadable(&e) {
                    failed.push(Unscanned {
                        label: path.display().to_string(),
                        ino: 0,
                        why: e.to_string(),
                    });
                }
                continue;
            }
        };
        let Ok(ino) = ns.inode() else { continue };
        if !seen.insert(ino) {
            continue;
        }
        let label = if out.is_empty() {
            "host".to_string()
        } else {
            path.display().to_string()
        };
        out.push(Namespace { label, ns, ino });
    }
    (out, failed)
}

/// Whether a namespace file failed to open for want of something (file
/// descriptors, memory) rather than because it is gone or is no network
/// namespace: only then may it hold attachments we did not see.
fn unreadable(e: &Error) -> bool {
    !matches!(
        e.errno(),
        None | Some(libc::ENOENT | libc::ESRCH | libc::EACCES | libc::EINVAL)
    )
}

/// A namespace that was found but could not be scanned (its file could
/// not be opened, or its netlink socket or its link dump failed): what is
/// in it is unknown, not absent.
#[derive(Debug, Clone)]
pub struct Unscanned {
    pub label: String,
    /// 0 when the file could not be opened: which namespace it is, is
    /// unknown too, so none may be called gone.
    pub ino: u64,
    pub why: String,
}

/// Every namespace with its handle and its scan, the host's first. The
/// sockets come from one thread (`Net::for_all`) and the dumps run
/// concurrently: `ls` over 1,000 namespaces is bound by the kernel's dumps,
/// not by thread starts and round trips one after another.
pub async fn scan_all() -> Vec<(Namespace, Net, Scan)> {
    scan_all_checked().await.0
}

/// The same, with the namespaces that failed to scan. A caller that acts on
/// what is *missing* (releasing an address no container holds, a keeper
/// whose namespace is gone) must not act when this list is not empty.
pub async fn scan_all_checked() -> (Vec<(Namespace, Net, Scan)>, Vec<Unscanned>) {
    let (nss, unopened) = namespaces_checked();
    let refs: Vec<&NetNs> = nss.iter().map(|n| &n.ns).collect();
    let nets = Net::for_all(&refs);
    let scans = futures::future::join_all(nss.iter().zip(&nets).map(|(ns, net)| async move {
        match net {
            Ok(net) => scan(net, ns.ino, &ns.label).await,
            Err(e) => Err(Error::other(e.to_string())),
        }
    }))
    .await;
    let mut ok = Vec::new();
    let mut failed = unopened;
    for ((ns, net), scan) in nss.into_iter().zip(nets).zip(scans) {
        match (net, scan) {
            (Ok(net), Ok(scan)) => ok.push((ns, net, scan)),
            (_, Err(e)) | (Err(e), _) => failed.push(Unscanned {
                label: ns.label,
                ino: ns.ino,
                why: e.to_string(),
            }),
        }
    }
    (ok, failed)
}

/// Every verified attachment on this host, from its container side (the
/// question "does anything still use X?" asked by VLAN and shim cleanup).
pub async fn attachments_everywhere() -> Vec<Found> {
    scan_all()
        .await
        .into_iter()
        .flat_map(|(_, _, scan)| scan.attachments().cloned().collect::<Vec<_>>())
        .collect()
}

/// The same, or an error naming the namespaces that could not be scanned:
/// for a caller that would otherwise take "not found" for "not there".
pub async fn attachments_everywhere_complete() -> Result<Vec<Found>> {
    let (all, failed) = scan_all_checked().await;
    if let Some(err) = incomplete_error(&failed) {
        return Err(err);
    }
    Ok(all
        .into_iter()
        .flat_map(|(_, _, scan)| scan.attachments().cloned().collect::<Vec<_>>())
        .collect())
}

/// The error an incomplete scan is, if it is one.
pub fn incomplete_error(failed: &[Unscanned]) -> Option<Error> {
    if failed.is_empty() {
        return None;
    }
    // The first few say why; a thousand would drown the line.
    let mut names: Vec<String> = failed
        .iter()
        .take(3)
        .map(|u| format!("{}: {}", u.label, u.why))
        .collect();
    if failed.len() > 3 {
        names.push(format!("and {} more", failed.len() - 3));
    }
    Some(Error::other(format!(
        "{} namespace(s) could not be scanned ({}); their attachments are unknown",
        failed.len(),
        names.join("; ")
    )))
}

/// The same, with each guest link's addresses (for the host shim's
/// routes), and the namespaces that could not be scanned.
pub async fn attachments_with_addrs() -> (Vec<(Record, Vec<ipnetwork::IpNetwork>)>, Vec<Unscanned>)
{
    let mut out = Vec::new();
    let (all, failed) = scan_all_checked().await;
    for (_, net, scan) in all {
        for f in scan.attachments() {
            let addrs = net.addrs(f.link.index).await.unwrap_or_default();
            out.push((f.rec.clone(), addrs.into_iter().map(|a| a.net).collect()));
        }
    }
    (out, failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_running_pipework_counts_as_alive() {
        assert!(alive(std::process::id()));
        // pid 1 is init, not a pipework.
        assert!(!alive(1));
        assert!(!alive(0x3fffff));
    }

    #[test]
    fn temp_names_fit_and_name_their_owner() {
        let n = temp_name();
        assert!(n.len() <= 15, "{n}");
        assert_eq!(temp_owner(&n), Some(std::process::id()));
        assert_eq!(temp_owner("pw.3fffff.fff"), Some(0x3fffff));
        for not in ["eth0", "pw.", "pw.xyz.1", "pw.12", "pwt12.1", "pw.0.1"] {
            assert_eq!(temp_owner(not), None, "{not}");
        }
    }
}
