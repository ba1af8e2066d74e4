//! Open vSwitch configuration through its own database protocol.
//!
//! We speak RFC 7047 (JSON-RPC over the `ovsdb-server` unix socket)
//! directly instead of running `ovs-vsctl`: the tool must not depend on
//! external binaries, and one socket round trip per step is much cheaper
//! than a process that downloads the schema and whole database each time.
pub mod connection;
pub mod datapath;
pub mod ops;
pub mod value;

pub use connection::Connection;

use std::path::PathBuf;

/// Where `ovsdb-server` listens on a stock Debian/Ubuntu/RHEL install.
pub const DEFAULT_SOCKET: &str = "/var/run/openvswitch/db.sock";

/// Environment variable that overrides the socket (same syntax as `--ovsdb`).
pub const SOCKET_ENV: &str = "PIPEWORK_OVSDB";

/// The database every switch configuration lives in.
pub const DATABASE: &str = "Open_vSwitch";

/// Resolve the socket path: `--ovsdb` wins, then `$PIPEWORK_OVSDB`, then the
/// distribution default. Accepts OVS's own `unix:/path` spelling as well as
/// a plain path, so users can paste what they give `ovs-vsctl --db=`.
pub fn socket_path(flag: Option<&str>) -> crate::Result<PathBuf> {
    let env = std::env::var(SOCKET_ENV).ok();
    let raw = flag
        .map(str::to_owned)
        .or(env.filter(|v| !v.is_empty()))
        .unwrap_or_else(|| DEFAULT_SOCKET.to_owned());
    parse_remote(&raw)
}

fn parse_remote(raw: &str) -> crate::Result<PathBuf> {
    if let Some(path) = raw.strip_prefix("unix:") {
        if path.is_empty() {
            return Err(crate::Error::bad(
                raw,
                "empty socket path (use unix:/path/to/db.sock)",
            ));
        }
        return Ok(PathBuf::from(path));
    }
    // tcp:/ssl: remotes would need TLS and auth handling we do not carry.
    if let Some((scheme, _)) = raw.split_once(':')
        && !raw.starts_with('/')
        && !scheme.contains('/')
    {
        return Err(crate::Error::bad(
            raw,
            "only local OVSDB sockets are supported (use unix:/path/to/db.sock)",
        ));
    }
    if raw.is_empty() {
        return Err(crate::Error::bad("--ovsdb", "empty socket path"));
    }
    Ok(PathBuf::from(raw))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_spellings() {
        assert_eq!(
            parse_remote("unix:/tmp/x/db.sock").unwrap(),
            PathBuf::from("/tmp/x/db.sock")
        );
        assert_eq!(
            parse_remote("/run/openvswitch/db.sock").unwrap(),
            PathBuf::from("/run/openvswitch/db.sock")
        );
        assert!(parse_remote("tcp:127.0.0.1:6640").is_err());
        assert!(parse_remote("unix:").is_err());
        assert!(parse_remote("").is_err());
    }

    #[test]
    fn flag_beats_default() {
        assert_eq!(
            socket_path(Some("unix:/a/b.sock")).unwrap(),
            PathBuf::from("/a/b.sock")
        );
    }
}
