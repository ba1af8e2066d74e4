//! Hidden subcommands: `dhcp-keeper` (started by `keeper::spawn`) and
//! `dhcp-acquire` (tests and benchmarks). They are not part of the user
//! interface, so they parse their few flags by hand instead of through
//! the public clap grammar.
use super::{DhcpOptions, keeper};
use crate::error::{Error, Result};
use crate::netns::NetNs;
use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

/// If `args` (including argv[0]) name a hidden DHCP subcommand, run it and
/// return its exit status.
pub fn hidden(args: &[OsString]) -> Option<i32> {
    let sub = args.get(1)?.to_str()?;
    let rest = &args[2..];
    match sub {
        "dhcp-keeper" => Some(match flag(rest, "--state") {
            Some(p) => keeper::main(&PathBuf::from(p)),
            None => {
                eprintln!("pipework dhcp-keeper: --state FILE is required");
                2
            }
        }),
        "dhcp-acquire" => Some(match acquire_cmd(rest) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("pipework: {e}");
                e.exit_code()
            }
        }),
        _ => None,
    }
}

fn flag(args: &[OsString], name: &str) -> Option<OsString> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn has(args: &[OsString], name: &str) -> bool {
    args.iter().any(|a| a == name)
}

/// `pipework dhcp-acquire --netns PATH -i IF [--hostname H]
/// [--dhcp-timeout SECS] [--apply] [--keep]`: print the lease as JSON.
fn acquire_cmd(args: &[OsString]) -> Result<()> {
    let ns_path = flag(args, "--netns")
        .ok_or_else(|| Error::bad("dhcp-acquire", "--netns PATH is required"))?;
    let ifname = flag(args, "-i")
        .and_then(|s| s.into_string().ok())
        .unwrap_or_else(|| "eth0".into());
    let mut opts = DhcpOptions {
        hostname: flag(args, "--hostname").and_then(|s| s.into_string().ok()),
        ..Default::default()
    };
    if let Some(t) = flag(args, "--dhcp-timeout") {
        let t = t.to_string_lossy().to_string();
        let secs: f64 = t
            .parse()
            .ok()
            .filter(|s: &f64| s.is_finite() && *s > 0.0)
            .ok_or_else(|| Error::bad(&t, "--dhcp-timeout takes a number of seconds, e.g. 10"))?;
        // try_: a huge value is an error here, not a panic.
        opts.timeout = Duration::try_from_secs_f64(secs)
            .map_err(|_| Error::bad(&t, "--dhcp-timeout is too large"))?;
    }
    let rt = crate::rt::current()?;
    rt.block_on(async {
        let ns = NetNs::open(&PathBuf::from(&ns_path))?;
        let lease = super::acquire(&ns, &ifname, &opts).await?;
        if has(args, "--apply") {
            let mut j = crate::netlink::Journal::new();
            match super::apply(&ns, &ifname, &lease, &mut j).await {
                Ok(()) => j.commit(),
                Err(e) => {
                    j.rollback().await;
                    return Err(e);
                }
            }
            if has(args, "--keep") {
                let pid = keeper::spawn(&ns, &ifname, &lease, &opts).await?;
                eprintln!("pipework: dhcp keeper pid {pid}");
            }
        }
        let json = serde_json::to_string(&lease).map_err(|e| Error::other(e.to_string()))?;
        println!("{json}");
        Ok(())
    })
}
