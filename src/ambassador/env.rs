//! Docker-links compatibility (`--from-env`).
//!
//! Linked containers got variables like `DB_PORT_5432_TCP=tcp://172.17.0.5:5432`;
//! the socat-based ambassador images listened on port 5432 and forwarded to
//! that address. We do the same; several links exposing the same port and
//! protocol become one listener with several backends.
use super::config::{self, ListenerSpec};
use crate::error::{Error, Result};
use std::collections::BTreeMap;
use std::net::IpAddr;

pub fn listeners<I>(vars: I, bind: IpAddr) -> Result<Vec<ListenerSpec>>
where
    I: IntoIterator<Item = (String, String)>,
{
    let mut groups: BTreeMap<(String, u16), Vec<String>> = BTreeMap::new();
    for (k, v) in vars {
        let Some((proto, port)) = link_var(&k) else {
            continue;
        };
        let scheme = format!("{proto}://");
        let target = v.strip_prefix(&scheme).ok_or_else(|| {
            Error::bad(
                format!("{k}={v}"),
                format!("expected {scheme}HOST:PORT as Docker links set it"),
            )
        })?;
        let target = config::parse_backend(target).map_err(|e| Error::bad(&k, e))?;
        groups.entry((proto, port)).or_default().push(target);
    }
    let mut out = Vec::new();
    for ((proto, port), mut to) in groups {
        to.sort();
        to.dedup();
        let host = match bind {
            IpAddr::V6(ip) => format!("[{ip}]"),
            IpAddr::V4(ip) => ip.to_string(),
        };
        out.push(config::spec(&format!("{proto}:{host}:{port}"), &to, None)?);
    }
    Ok(out)
}

/// `NAME_PORT_<n>_TCP` / `NAME_PORT_<n>_UDP` → (proto, n). The `_ADDR`,
/// `_PORT` and `_PROTO` companions are redundant and skipped.
fn link_var(k: &str) -> Option<(String, u16)> {
    let (rest, proto) = if let Some(r) = k.strip_suffix("_TCP") {
        (r, "tcp")
    } else if let Some(r) = k.strip_suffix("_UDP") {
        (r, "udp")
    } else {
        return None;
    };
    let (head, port) = rest.rsplit_once('_')?;
    if !head.ends_with("_PORT") || head.len() <= "_PORT".len() {
        return None;
    }
    let port: u16 = port.parse().ok().filter(|p| *p > 0)?;
    Some((proto.to_string(), port))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn v(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn docker_link_variables() {
        let l = listeners(
            v(&[
                ("DB_PORT_5432_TCP", "tcp://172.17.0.5:5432"),
                ("DB_PORT_5432_TCP_ADDR", "172.17.0.5"),
                ("DB_PORT_5432_TCP_PORT", "5432"),
                ("DB_PORT", "tcp://172.17.0.5:5432"),
                ("DNS_PORT_53_UDP", "udp://10.0.0.2:53"),
                ("DB2_PORT_5432_TCP", "tcp://172.17.0.6:5432"),
                ("PATH", "/bin"),
            ]),
            IpAddr::V4(Ipv4Addr::LOCALHOST),
        )
        .unwrap();
        assert_eq!(l.len(), 2);
        assert_eq!(l[0].listen.to_string(), "tcp:127.0.0.1:5432");
        assert_eq!(l[0].backends, ["172.17.0.5:5432", "172.17.0.6:5432"]);
        assert_eq!(l[1].listen.to_string(), "udp:127.0.0.1:53");
    }

    #[test]
    fn bad_value_names_the_variable() {
        let e = listeners(
            v(&[("DB_PORT_5432_TCP", "http://x:1")]),
            IpAddr::V4(Ipv4Addr::LOCALHOST),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("DB_PORT_5432_TCP"), "{e}");
    }
}
