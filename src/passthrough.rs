//! Classic pass-throughs: `pipework route|rule|tc <guest> ARGS...`.
//!
//! These are the only places pipework runs an external binary: iproute2's
//! `ip route`, `ip rule` and `tc` have grammars far too large to re-implement,
//! and users of the original script rely on them. We run the binary directly
//! (no shell, so arguments are never re-parsed) after entering the guest's
//! network namespace in the child between fork and exec. The parent never
//! changes namespace.
use crate::error::{Error, Result};
use crate::netns::NetNs;
use std::ffi::OsString;
use std::os::fd::AsRawFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Which pass-through the user asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tool {
    Route,
    Rule,
    Tc,
}

impl Tool {
    pub fn parse(word: &str) -> Option<Tool> {
        match word {
            "route" => Some(Tool::Route),
            "rule" => Some(Tool::Rule),
            "tc" => Some(Tool::Tc),
            _ => None,
        }
    }

    /// The binary and the leading arguments it gets before the user's.
    fn command(self) -> (&'static str, &'static [&'static str]) {
        match self {
            Tool::Route => ("ip", &["route"]),
            Tool::Rule => ("ip", &["rule"]),
            Tool::Tc => ("tc", &[]),
        }
    }
}

/// Find a binary the way a login shell for root would: $PATH first, then the
/// sbin directories, which are often missing from a non-root or cron PATH.
pub fn find_binary(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let extra = ["/usr/local/sbin", "/usr/sbin", "/sbin", "/usr/bin", "/bin"];
    std::env::split_paths(&path)
        .chain(extra.iter().map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// Build the command line (binary, arguments) for a pass-through; split out
/// so the argument handling is testable without running anything.
pub fn command_line(tool: Tool, args: &[OsString]) -> Result<(PathBuf, Vec<OsString>)> {
    let (bin, lead) = tool.command();
    let path = find_binary(bin).ok_or_else(|| {
        Error::other(format!(
            "pipework {}: `{bin}` not found in PATH or /sbin: install iproute2 \
             (it is only needed for the route, rule and tc pass-throughs)",
            match tool {
                Tool::Route => "route",
                Tool::Rule => "rule",
                Tool::Tc => "tc",
            }
        ))
    })?;
    let mut argv: Vec<OsString> = lead.iter().map(OsString::from).collect();
    argv.extend(args.iter().cloned());
    Ok((path, argv))
}

/// Run the pass-through inside `ns`, inheriting stdio. Returns the exit code
/// to pass on (128+signal if the tool was killed).
pub fn run(tool: Tool, ns: &NetNs, args: &[OsString]) -> Result<i32> {
    let (path, argv) = command_line(tool, args)?;
    let fd = ns.fd().as_raw_fd();
    let mut cmd = Command::new(&path);
    cmd.args(&argv);
    // SAFETY: only async-signal-safe calls between fork and exec: setns(2)
    // on an fd inherited from the parent, which outlives the spawn call.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let status = cmd
        .status()
        .map_err(|e| Error::io(format!("cannot run {}", path.display()), e))?;
    Ok(status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tool_words() {
        assert_eq!(Tool::parse("route"), Some(Tool::Route));
        assert_eq!(Tool::parse("rule"), Some(Tool::Rule));
        assert_eq!(Tool::parse("tc"), Some(Tool::Tc));
        assert_eq!(Tool::parse("link"), None);
    }

    #[test]
    fn arguments_are_passed_verbatim_after_the_subcommand() {
        // Needs iproute2 on the machine; without it, the error must name it.
        let args: Vec<OsString> = ["add", "10.0.0.0/8", "via", "1.2.3.4; rm -rf /"]
            .iter()
            .map(OsString::from)
            .collect();
        match command_line(Tool::Route, &args) {
            Ok((path, argv)) => {
                assert!(path.ends_with("ip"));
                assert_eq!(argv[0], "route");
                assert_eq!(&argv[1..], &args[..]);
            }
            Err(e) => assert!(e.to_string().contains("install iproute2"), "{e}"),
        }
    }

    #[test]
    fn missing_binary_is_reported() {
        assert!(find_binary("pipework-no-such-tool-pwp").is_none());
    }
}
