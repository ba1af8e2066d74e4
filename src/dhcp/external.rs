//! The classic forms that run an external DHCP client inside the
//! container's namespace, as the original pipework did: `udhcpc`,
//! `udhcpc-f`, `dhclient`, `dhclient-f`, `dhcpcd` (each optionally
//! `:OPTS`) and `dhcp:OPTS` (busybox udhcpc left running, which the
//! original started in a busybox container).
//!
//! The client is exec'd directly (no shell) after `setns` in the forked
//! child; OPTS are split on whitespace like the original's unquoted
//! `$DHCP_OPTIONS`. Pidfiles and lease files go where the original put them.
use crate::error::{Error, Result};
use crate::netns::NetNs;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

pub use crate::request::dhcp_form::{Client, Form, parse};

/// Find an executable in PATH plus the sbin directories (root's PATH may
/// lack them under sudo or cron).
pub fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| {
            use std::os::unix::fs::PermissionsExt;
            p.metadata()
                .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                .unwrap_or(false)
        })
}

/// Program and leading arguments for udhcpc: the real one, else busybox's
/// applet.
fn udhcpc(method: &str) -> Result<(PathBuf, Vec<String>)> {
    if let Some(p) = which("udhcpc") {
        return Ok((p, Vec::new()));
    }
    if let Some(p) = which("busybox") {
        return Ok((p, vec!["udhcpc".into()]));
    }
    Err(Error::bad(
        method,
        "udhcpc is not installed (install busybox or busybox-static, or use `dhcp` for the built-in client)",
    ))
}

// The clients run in the guest's network namespace only: these files are
// on the host, in host-only directories, and we read a pid from one and
// signal it. The guest name in them is a container or netns name (or a
// namespace path): `file_component` keeps it to one file-name component
// (no `/`, so no `..` walk out of the directory) while leaving ordinary
// names exactly as the original spelled them.
pub fn udhcpc_pidfile(guest: &str) -> PathBuf {
    let g = crate::untrusted::file_component(guest);
    PathBuf::from(format!("/var/run/udhcpc.{g}.pid"))
}
pub fn dhclient_pidfile(guest: &str) -> PathBuf {
    let g = crate::untrusted::file_component(guest);
    PathBuf::from(format!("/var/run/dhclient.{g}.pid"))
}
pub fn dhclient_leasefile(guest: &str) -> PathBuf {
    let g = crate::untrusted::file_component(guest);
    PathBuf::from(format!("/etc/dhclient/dhclient.{g}.leases"))
}

/// The command line the original would have run, as (program, args).
pub fn command_line(form: &Form, ifname: &str, guest: &str) -> Result<(PathBuf, Vec<String>)> {
    let method = match form.client {
        Client::Udhcpc => "udhcpc",
        Client::Dhclient => "dhclient",
        Client::Dhcpcd => "dhcpcd",
        Client::BusyboxUdhcpc => "dhcp",
    };
    let missing = |c: &str| {
        Error::bad(
            method,
            format!("{c} is not installed (install it, or use `dhcp` for the built-in client)"),
        )
    };
    let s = |x: &str| x.to_string();
    let (prog, mut args) = match form.client {
        Client::Udhcpc => {
            let (p, mut a) = udhcpc(method)?;
            a.extend([s("-qi"), s(ifname), s("-x"), format!("hostname:{guest}")]);
            a.extend([s("-p"), udhcpc_pidfile(guest).display().to_string()]);
            (p, a)
        }
        Client::BusyboxUdhcpc => {
            let (p, mut a) = udhcpc(method)?;
            a.extend([s("-i"), s(ifname), s("-x"), format!("hostname:{guest}")]);
            a.extend([s("-p"), udhcpc_pidfile(guest).display().to_string()]);
            (p, a)
        }
        Client::Dhclient => {
            let p = which("dhclient").ok_or_else(|| missing("dhclient"))?;
            let a = vec![
                s(ifname),
                s("-pf"),
                dhclient_pidfile(guest).display().to_string(),
                s("-lf"),
                dhclient_leasefile(guest).display().to_string(),
            ];
            (p, a)
        }
        Client::Dhcpcd => {
            let p = which("dhcpcd").ok_or_else(|| missing("dhcpcd"))?;
            (p, vec![s("-q"), s(ifname), s("-h"), s(guest)])
        }
    };
    args.extend(form.opts.iter().cloned());
    if form.client == Client::Udhcpc && form.foreground {
        args.push(s("-f"));
    }
    Ok((prog, args))
}

/// Run the external client in `ns` and wait for it, then tidy up as the
/// original did (drop udhcpc's pidfile, stop a non-foreground dhclient).
/// `timeout` bounds the wait (the original could hang forever when no
/// server answered); on expiry the client is killed.
pub async fn run(
    ns: &NetNs,
    ifname: &str,
    guest: &str,
    form: &Form,
    timeout: std::time::Duration,
) -> Result<()> {
    let (prog, args) = command_line(form, ifname, guest)?;
    // The clients do not bring the link up themselves.
    super::client::link_info(ns, ifname).await?;
    if form.client == Client::Dhclient
        && let Some(d) = dhclient_leasefile(guest).parent()
    {
        std::fs::create_dir_all(d)
            .map_err(|e| Error::io(format!("cannot create {}", d.display()), e))?;
    }
    let fd = ns.fd().as_raw_fd();
    let mut cmd = tokio::process::Command::new(&prog);
    cmd.args(&args).stdin(std::process::Stdio::null());
    // SAFETY: only setns (a plain syscall) runs between fork and exec; the
    // namespace fd stays open in the parent for the child's lifetime.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd.kill_on_drop(true);
    let mut child = cmd
        .spawn()
        .map_err(|e| Error::io(format!("cannot run {}", prog.display()), e))?;
    let status = match tokio::time::timeout(timeout, child.wait()).await {
        Ok(r) => r.map_err(|e| Error::io(format!("waiting for {}", prog.display()), e))?,
        Err(_) => {
            let _ = child.kill().await;
            return Err(Error::other(format!(
                "{}: no lease on {ifname} after {:.1} s (raise --dhcp-timeout or check the network)",
                prog.display(),
                timeout.as_secs_f64()
            )));
        }
    };
    if !status.success() {
        return Err(Error::other(format!(
            "{} {} failed ({status}); no lease on {ifname}",
            prog.display(),
            args.join(" ")
        )));
    }
    match (form.client, form.foreground) {
        (Client::Udhcpc, false) => {
            let _ = std::fs::remove_file(udhcpc_pidfile(guest));
        }
        (Client::Dhclient, false) => {
            // dhclient daemonizes after its lease; the original killed it
            // so it would not outlive the container's interface. The
            // daemon writes its pidfile after the parent exits: wait for it.
            let pf = dhclient_pidfile(guest);
            let until = tokio::time::Instant::now() + std::time::Duration::from_secs(3);
            while read_pid(&pf).is_none() && tokio::time::Instant::now() < until {
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
            stop_pidfile(&pf);
        }
        _ => {}
    }
    Ok(())
}

fn read_pid(pidfile: &Path) -> Option<i32> {
    std::fs::read_to_string(pidfile)
        .ok()
        .and_then(|s| s.trim().parse::<i32>().ok())
        .filter(|p| *p > 0)
}

/// SIGTERM the pid named in `pidfile` and remove the file.
pub fn stop_pidfile(pidfile: &Path) -> bool {
    let pid = read_pid(pidfile);
    let _ = std::fs::remove_file(pidfile);
    match pid {
        Some(p) if p > 0 => nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(p),
            nix::sys::signal::Signal::SIGTERM,
        )
        .is_ok(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classic_forms() {
        let f = parse("udhcpc-f:-s /x -t 3").expect("form");
        assert_eq!(f.client, Client::Udhcpc);
        assert!(f.foreground);
        assert_eq!(f.opts, vec!["-s", "/x", "-t", "3"]);
        assert_eq!(parse("dhclient").map(|f| f.foreground), Some(false));
        assert_eq!(parse("dhcp"), None);
        assert_eq!(parse("dhcp:once"), None);
        assert_eq!(
            parse("dhcp:-t 5").map(|f| f.client),
            Some(Client::BusyboxUdhcpc)
        );
        assert_eq!(parse("10.0.0.1/24"), None);
        let f = parse("udhcpc:-s /x").expect("form");
        assert_eq!((f.client, f.opts.len()), (Client::Udhcpc, 2));
    }

    #[test]
    fn client_files_stay_in_their_directory() {
        // Ordinary names: the original's paths, unchanged.
        assert_eq!(
            udhcpc_pidfile("web1"),
            Path::new("/var/run/udhcpc.web1.pid")
        );
        assert_eq!(
            dhclient_leasefile("web_1.x-y"),
            Path::new("/etc/dhclient/dhclient.web_1.x-y.leases")
        );
        for g in [
            "../../etc/shadow",
            "/proc/1/ns/net",
            "..",
            "a/../../b",
            "x\ny",
            "\x1b[2J",
        ] {
            for (p, dir) in [
                (udhcpc_pidfile(g), "/var/run"),
                (dhclient_pidfile(g), "/var/run"),
                (dhclient_leasefile(g), "/etc/dhclient"),
            ] {
                assert_eq!(p.parent(), Some(Path::new(dir)), "{g:?} -> {}", p.display());
                let name = p.file_name().map(|n| n.to_string_lossy().into_owned());
                let name = name.unwrap_or_default();
                assert!(
                    !name.contains('/') && !name.chars().any(char::is_control),
                    "{name:?}"
                );
                assert!(p.components().all(|c| c != std::path::Component::ParentDir));
            }
        }
    }
}
