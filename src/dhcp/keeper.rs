//! Lease keeping: one small detached process per attachment
//! (`pipework dhcp-keeper --state FILE`), so leases get renewed (the
//! original's users lost theirs: pipework#111, #133, #181, #152) and no
//! client is orphaned when the container goes away.
//!
//! The keeper holds nothing in the container's namespace between events:
//! a held namespace fd or socket would keep a dead container's namespace
//! (and its veth) alive. It reopens the namespace path every second and
//! exits as soon as that path is gone or names another namespace, or the
//! interface has disappeared.
//!
//! Files, in /run/pipework/dhcp (or $PIPEWORK_DHCP_DIR):
//! `<nsinode>-<ifname>.json` (state, rewritten on every change),
//! `.pid`, `.log` (the keeper's stderr).
use super::client::{self, DhcpOptions, Identity, Renewal};
use super::lease::Lease;
use super::socket::{RawSocket, UdpSocket};
use crate::error::{Error, Result};
use crate::netns::NetNs;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::time::Instant;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeeperState {
    pub netns: PathBuf,
    pub ns_inode: u64,
    pub ifname: String,
    pub mac: [u8; 6],
    pub hostname: Option<String>,
    pub client_id: Vec<u8>,
    pub lease: Option<Lease>,
    /// When the lease's clock started (the REQUEST that got the ACK), ms
    /// since the epoch.
    pub acquired_ms: u64,
    /// bound | renewing | rebinding | init
    pub state: String,
    pub renewals: u32,
    pub pid: u32,
}

impl KeeperState {
    pub fn expires_ms(&self) -> Option<u64> {
        let l = self.lease.as_ref()?;
        Some(self.acquired_ms + u64::from(l.lease_time) * 1000)
    }
}

/// What `ls` shows for one attachment.
#[derive(Debug, Clone, Serialize)]
pub struct KeeperStatus {
    pub state: String,
    pub address: Option<String>,
    pub expires_unix: Option<u64>,
    pub keeper_pid: u32,
    pub keeper_alive: bool,
    pub renewals: u32,
    pub lease: Option<Lease>,
}

pub fn dir() -> PathBuf {
    std::env::var_os("PIPEWORK_DHCP_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::own::root(crate::own::Area::Run).join("dhcp"))
}

/// `<dir>/<nsinode>-<ifname>`. The interface name is read back from the
/// guest's namespace by `ls`/`detach`; the kernel forbids `/` in link
/// names, but we do not rely on it to keep the path inside `dir()`.
fn base(ns_inode: u64, ifname: &str) -> Result<PathBuf> {
    crate::request::check_ifname(ifname)?;
    Ok(dir().join(format!("{ns_inode}-{ifname}")))
}

/// `base` plus an extension; not `with_extension`, which would eat the
/// `.10` of an interface named `eth0.10`.
fn file(b: &Path, ext: &str) -> PathBuf {
    let mut s = b.as_os_str().to_owned();
    s.push(".");
    s.push(ext);
    PathBuf::from(s)
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Tokio instant for a wall-clock time in ms (past times map to now).
fn instant_at(ms: u64) -> Instant {
    Instant::now() + Duration::from_millis(ms.saturating_sub(now_ms()))
}

fn save(path: &Path, st: &KeeperState) -> Result<()> {
    let tmp = path.with_extension("json.tmp");
    let text = serde_json::to_vec_pretty(st).map_err(|e| Error::other(format!("dhcp: {e}")))?;
    std::fs::write(&tmp, text)
        .and_then(|_| std::fs::rename(&tmp, path))
        .map_err(|e| Error::io(format!("dhcp: cannot write {}", path.display()), e))
}

fn load(path: &Path) -> Result<KeeperState> {
    let b = std::fs::read(path)
        .map_err(|e| Error::io(format!("dhcp: cannot read {}", path.display()), e))?;
    serde_json::from_slice(&b).map_err(|e| Error::other(format!("dhcp: {}: {e}", path.display())))
}

/// A live keeper process (not a zombie, not a reused pid).
pub fn keeper_alive(pid: u32) -> bool {
    if pid == 0 {
        return false;
    }
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Field 3, after the parenthesised command name.
    let zombie = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.trim_start().starts_with(['Z', 'X']))
        .unwrap_or(true);
    let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    !zombie && cmd.windows(11).any(|w| w == b"dhcp-keeper")
}

/// Start a keeper for a lease that `apply` just configured. Returns its pid.
pub async fn spawn(ns: &NetNs, ifname: &str, lease: &Lease, opts: &DhcpOptions) -> Result<u32> {
    let exe = std::env::current_exe().map_err(|e| Error::io("dhcp: cannot find own binary", e))?;
    spawn_with(&exe, ns, ifname, lease, opts).await
}

/// As `spawn`, running `exe` (tests pass the pipework binary here).
pub async fn spawn_with(
    exe: &Path,
    ns: &NetNs,
    ifname: &str,
    lease: &Lease,
    opts: &DhcpOptions,
) -> Result<u32> {
    use std::os::unix::process::CommandExt;
    let (_, mac) = client::link_info(ns, ifname).await?;
    let id = Identity::new(mac, opts);
    let inode = ns.inode()?;
    let b = base(inode, ifname)?;
    std::fs::create_dir_all(dir())
        .map_err(|e| Error::io(format!("dhcp: cannot create {}", dir().display()), e))?;
    // One keeper per attachment: a stale one for the same interface is
    // replaced (it would fight over the same lease).
    if let Ok(old) = load(&file(&b, "json"))
        && keeper_alive(old.pid)
    {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(old.pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    let mut st = KeeperState {
        netns: ns.path.clone(),
        ns_inode: inode,
        ifname: ifname.to_string(),
        mac,
        hostname: id.hostname.clone(),
        client_id: id.client_id.clone(),
        lease: Some(lease.clone()),
        acquired_ms: now_ms(),
        state: "bound".into(),
        renewals: 0,
        pid: 0,
    };
    let state_path = file(&b, "json");
    save(&state_path, &st)?;
    let log = std::fs::File::create(file(&b, "log"))
        .map_err(|e| Error::io("dhcp: cannot create keeper log", e))?;
    let mut cmd = std::process::Command::new(exe);
    // Started from CNI ADD, we inherit CNI_COMMAND: the keeper must not
    // take itself for a plugin invocation.
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("CNI_") {
            cmd.env_remove(k);
        }
    }
    cmd.arg("dhcp-keeper")
        .arg("--state")
        .arg(&state_path)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(log);
    // SAFETY: setsid is async-signal-safe; it detaches the keeper from our
    // session so a terminal hangup or our exit does not take it down.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    let child = cmd
        .spawn()
        .map_err(|e| Error::io(format!("dhcp: cannot start keeper {}", exe.display()), e))?;
    let pid = child.id();
    st.pid = pid;
    // The keeper rewrites the state itself; this covers the window before.
    save(&state_path, &st)?;
    std::fs::write(file(&b, "pid"), format!("{pid}\n"))
        .map_err(|e| Error::io("dhcp: cannot write keeper pidfile", e))?;
    Ok(pid)
}

/// Detach: ask the keeper to send DHCPRELEASE and exit; wait for it.
/// Returns whether a keeper was running.
pub async fn release(ns: &NetNs, ifname: &str) -> Result<bool> {
    release_key(ns.inode()?, ifname).await
}

pub async fn release_key(ns_inode: u64, ifname: &str) -> Result<bool> {
    // No keeper can have been started for a name `base` refuses.
    let Ok(b) = base(ns_inode, ifname) else {
        return Ok(false);
    };
    let Ok(st) = load(&file(&b, "json")) else {
        return Ok(false);
    };
    let mut was_running = false;
    if keeper_alive(st.pid) {
        was_running = true;
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(st.pid as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let until = Instant::now() + Duration::from_secs(3);
        while keeper_alive(st.pid) && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if keeper_alive(st.pid) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(st.pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
    remove_files(&b);
    Ok(was_running)
}

fn remove_files(b: &Path) {
    for ext in ["json", "pid", "log"] {
        let _ = std::fs::remove_file(file(b, ext));
    }
}

/// Lease state for `ls`; `None` if no keeper state exists for it.
pub fn status(ns: &NetNs, ifname: &str) -> Result<Option<KeeperStatus>> {
    let Ok(b) = base(ns.inode()?, ifname) else {
        return Ok(None);
    };
    let p = file(&b, "json");
    if !p.exists() {
        return Ok(None);
    }
    Ok(Some(to_status(load(&p)?)))
}

fn to_status(st: KeeperState) -> KeeperStatus {
    KeeperStatus {
        address: st
            .lease
            .as_ref()
            .map(|l| format!("{}/{}", l.address, l.prefix)),
        expires_unix: st.expires_ms().map(|ms| ms / 1000),
        keeper_alive: keeper_alive(st.pid),
        keeper_pid: st.pid,
        renewals: st.renewals,
        state: st.state,
        lease: st.lease,
    }
}

/// Every keeper state on this host (for `ls` across attachments).
pub fn list() -> Vec<(KeeperState, KeeperStatus)> {
    let Ok(rd) = std::fs::read_dir(dir()) else {
        return Vec::new();
    };
    rd.filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
        .filter_map(|e| load(&e.path()).ok())
        .map(|st| (st.clone(), to_status(st)))
        .collect()
}

// ---------------------------------------------------------------------
// The keeper process itself.

/// Why the keeper stops.
enum Stop {
    /// SIGTERM/SIGINT: release the lease.
    Term,
    /// Namespace or interface gone: nothing left to release on.
    Gone(String),
}

/// Reopen the namespace by path and check it is still the same one, and
/// that the interface still exists in it.
async fn check_alive(st: &KeeperState) -> std::result::Result<NetNs, String> {
    let ns = NetNs::open(&st.netns).map_err(|e| format!("namespace gone ({e})"))?;
    match ns.inode() {
        Ok(i) if i == st.ns_inode => {}
        _ => {
            return Err(format!(
                "{} now names another namespace",
                st.netns.display()
            ));
        }
    }
    let net = crate::netlink::Net::new(Some(&ns), false).map_err(|e| e.to_string())?;
    match net.link_by_name(&st.ifname).await {
        Ok(Some(_)) => Ok(ns),
        // ENODEV reads as None.
        Ok(None) => Err(format!("{} is gone", st.ifname)),
        // Transient netlink trouble is not a reason to drop a lease.
        Err(_) => Ok(ns),
    }
}

/// Resolves when the namespace or interface disappears.
async fn watch(st: &KeeperState) -> String {
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        if let Err(why) = check_alive(st).await {
            return why;
        }
    }
}

/// Entry point of `pipework dhcp-keeper --state FILE`.
pub fn main(state_path: &Path) -> i32 {
    let rt = match crate::rt::current() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("pipework dhcp-keeper: {e}");
            return 1;
        }
    };
    match rt.block_on(run(state_path)) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("pipework dhcp-keeper: {e}");
            1
        }
    }
}

async fn run(state_path: &Path) -> Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut st = load(state_path)?;
    st.pid = std::process::id();
    save(state_path, &st)?;
    let b = PathBuf::from(
        state_path
            .to_string_lossy()
            .trim_end_matches(".json")
            .to_string(),
    );
    let _ = std::fs::write(file(&b, "pid"), format!("{}\n", st.pid));
    let mut term = signal(SignalKind::terminate()).map_err(|e| Error::io("signal", e))?;
    let mut int = signal(SignalKind::interrupt()).map_err(|e| Error::io("signal", e))?;
    let id = Identity {
        mac: st.mac,
        hostname: st.hostname.clone(),
        client_id: st.client_id.clone(),
    };
    eprintln!(
        "pipework dhcp-keeper: keeping {:?} on {} in {}",
        st.lease.as_ref().map(|l| l.address),
        st.ifname,
        st.netns.display()
    );
    let stop = loop {
        let snapshot = st.clone();
        let r = tokio::select! {
            r = step(&mut st, &id, state_path) => r,
            why = watch(&snapshot) => Err(Stop::Gone(why)),
            _ = term.recv() => Err(Stop::Term),
            _ = int.recv() => Err(Stop::Term),
        };
        match r {
            Ok(()) => continue,
            Err(stop) => break stop,
        }
    };
    match stop {
        Stop::Term => {
            if let (Some(lease), true) = (st.lease.clone(), st.state != "init")
                && let Ok(ns) = check_alive(&st).await
            {
                match UdpSocket::open(&ns, &st.ifname) {
                    Ok(sock) => {
                        if let Err(e) = client::release(&sock, &id, &lease).await {
                            eprintln!("pipework dhcp-keeper: release: {e}");
                        } else {
                            eprintln!("pipework dhcp-keeper: released {}", lease.address);
                        }
                    }
                    Err(e) => eprintln!("pipework dhcp-keeper: release: {e}"),
                }
            }
        }
        Stop::Gone(why) => eprintln!("pipework dhcp-keeper: exiting: {why}"),
    }
    remove_files(&b);
    Ok(())
}

/// One state-machine step; returns after each transition so the caller
/// can re-check signals and liveness.
async fn step(
    st: &mut KeeperState,
    id: &Identity,
    state_path: &Path,
) -> std::result::Result<(), Stop> {
    let Some(lease) = st.lease.clone() else {
        return reacquire(st, id, state_path).await;
    };
    let t1 = st.acquired_ms + u64::from(lease.t1) * 1000;
    let t2 = st.acquired_ms + u64::from(lease.t2) * 1000;
    let end = st.expires_ms().unwrap_or(t2);
    let now = now_ms();
    if now < t1 {
        set_state(st, "bound", state_path);
        tokio::time::sleep_until(instant_at(t1)).await;
        return Ok(());
    }
    if now >= end {
        eprintln!("pipework dhcp-keeper: lease {} expired", lease.address);
        drop_lease(st, &lease, state_path).await?;
        return Ok(());
    }
    let rebinding = now >= t2;
    set_state(
        st,
        if rebinding { "rebinding" } else { "renewing" },
        state_path,
    );
    let ns = check_alive(st).await.map_err(Stop::Gone)?;
    let sock = match UdpSocket::open(&ns, &st.ifname) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("pipework dhcp-keeper: {e}");
            tokio::time::sleep(Duration::from_secs(1)).await;
            return Ok(());
        }
    };
    drop(ns);
    let until = instant_at(if rebinding { end } else { t2 });
    let started = now_ms();
    match client::renew(&sock, id, &lease, rebinding, until).await {
        Ok(Renewal::Renewed(new)) => {
            let changed =
                new.routes != lease.routes || new.router != lease.router || new.mtu != lease.mtu;
            if changed && let Ok(ns) = check_alive(st).await {
                let mut j = crate::netlink::Journal::new();
                if let Err(e) = super::apply(&ns, &st.ifname, &new, &mut j).await {
                    eprintln!("pipework dhcp-keeper: re-apply: {e}");
                }
                j.commit();
            }
            eprintln!(
                "pipework dhcp-keeper: {} {} for {} s",
                if rebinding { "rebound" } else { "renewed" },
                new.address,
                new.lease_time
            );
            st.lease = Some(new);
            st.acquired_ms = started;
            st.renewals += 1;
            set_state(st, "bound", state_path);
        }
        Ok(Renewal::Nak) => {
            eprintln!(
                "pipework dhcp-keeper: server refused {} (NAK); starting over",
                lease.address
            );
            drop_lease(st, &lease, state_path).await?;
        }
        Ok(Renewal::NoAnswer) => {}
        Err(e) => {
            eprintln!("pipework dhcp-keeper: {e}");
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
    Ok(())
}

async fn drop_lease(
    st: &mut KeeperState,
    lease: &Lease,
    state_path: &Path,
) -> std::result::Result<(), Stop> {
    let ns = check_alive(st).await.map_err(Stop::Gone)?;
    if let Err(e) = super::deconfigure(&ns, &st.ifname, lease).await {
        eprintln!("pipework dhcp-keeper: deconfigure: {e}");
    }
    st.lease = None;
    set_state(st, "init", state_path);
    Ok(())
}

/// INIT: DISCOVER until a server answers, then configure the new lease.
async fn reacquire(
    st: &mut KeeperState,
    id: &Identity,
    state_path: &Path,
) -> std::result::Result<(), Stop> {
    let ns = check_alive(st).await.map_err(Stop::Gone)?;
    let sock = match RawSocket::open(&ns, &st.ifname) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("pipework dhcp-keeper: {e}");
            tokio::time::sleep(Duration::from_secs(2)).await;
            return Ok(());
        }
    };
    let started = now_ms();
    let until = Instant::now() + Duration::from_secs(30);
    match client::obtain(&sock, id, None, until).await {
        Ok(Some(lease)) => {
            let mut j = crate::netlink::Journal::new();
            let r = super::apply(&ns, &st.ifname, &lease, &mut j).await;
            j.commit();
            if let Err(e) = r {
                eprintln!("pipework dhcp-keeper: apply: {e}");
                tokio::time::sleep(Duration::from_secs(2)).await;
                return Ok(());
            }
            eprintln!("pipework dhcp-keeper: new lease {}", lease.address);
            st.lease = Some(lease);
            st.acquired_ms = started;
            set_state(st, "bound", state_path);
        }
        Ok(None) => {}
        Err(e) => {
            eprintln!("pipework dhcp-keeper: {e}");
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }
    Ok(())
}

fn set_state(st: &mut KeeperState, s: &str, state_path: &Path) {
    st.state = s.to_string();
    if let Err(e) = save(state_path, st) {
        eprintln!("pipework dhcp-keeper: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_files_stay_in_the_keeper_directory() {
        let b = base(4026531840, "eth0.10").expect("valid");
        assert_eq!(b, dir().join("4026531840-eth0.10"));
        assert_eq!(file(&b, "json"), dir().join("4026531840-eth0.10.json"));
        for bad in [
            "../../etc/x",
            "a/b",
            "..",
            "",
            "e\x1b[2J",
            "0123456789abcdef",
        ] {
            assert!(base(1, bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn forged_names_find_no_keeper() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("rt");
        assert!(
            !rt.block_on(release_key(1, "../../../etc/passwd"))
                .expect("release")
        );
    }
}
