//! What the ambassador should do: listeners, their backends, and the knobs.
//!
//! Three sources feed one `Config`: command-line flags, a TOML file (re-read
//! on SIGHUP) and Docker-link environment variables. Everything is validated
//! here, before any socket exists, so bad input fails with one line and
//! nothing bound.
use crate::error::{Error, Result};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Proto {
    Tcp,
    Udp,
}

/// A listening address with its protocol; the key listeners are matched by
/// when a reload compares old and new configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ListenAddr {
    pub proto: Proto,
    pub addr: SocketAddr,
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = match self.proto {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        };
        write!(f, "{p}:{}", self.addr)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Balance {
    /// Round-robin over healthy backends.
    Rr,
    /// The healthy backend with the fewest open connections.
    Leastconn,
}

/// Knobs shared by all listeners; swapped as a whole on reload.
#[derive(Clone, Debug)]
pub struct Settings {
    pub balance: Balance,
    pub connect_timeout: Duration,
    /// Zero disables active checks (passive marking still applies).
    pub health_interval: Duration,
    /// Zero disables the TCP idle timeout.
    pub idle_timeout: Duration,
    pub udp_timeout: Duration,
    pub max_conns: usize,
    pub drain_timeout: Duration,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ListenerSpec {
    pub listen: ListenAddr,
    /// `host:port` as given; names are resolved at connect time.
    pub backends: Vec<String>,
    pub balance: Option<Balance>,
}

#[derive(Clone, Debug)]
pub struct Config {
    pub settings: Settings,
    pub listeners: Vec<ListenerSpec>,
}

/// Optional overrides, in the order defaults < file < command line.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    pub balance: Option<Balance>,
    pub connect_timeout: Option<DurationStr>,
    pub health_interval: Option<DurationStr>,
    pub idle_timeout: Option<DurationStr>,
    pub udp_timeout: Option<DurationStr>,
    pub max_conns: Option<usize>,
    pub drain_timeout: Option<DurationStr>,
}

impl Overrides {
    pub fn apply(&self, s: &mut Settings) {
        if let Some(b) = self.balance {
            s.balance = b;
        }
        let set = |dst: &mut Duration, v: &Option<DurationStr>| {
            if let Some(d) = v {
                *dst = d.0;
            }
        };
        set(&mut s.connect_timeout, &self.connect_timeout);
        set(&mut s.health_interval, &self.health_interval);
        set(&mut s.idle_timeout, &self.idle_timeout);
        set(&mut s.udp_timeout, &self.udp_timeout);
        set(&mut s.drain_timeout, &self.drain_timeout);
        if let Some(m) = self.max_conns {
            s.max_conns = m;
        }
    }
}

/// A duration written as `500ms`, `3s`, `5m`, `1h` or a bare number of seconds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DurationStr(pub Duration);

impl<'de> Deserialize<'de> for DurationStr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Num(u64),
            Str(String),
        }
        match Raw::deserialize(d)? {
            Raw::Num(n) => Ok(DurationStr(Duration::from_secs(n))),
            Raw::Str(s) => parse_duration(&s)
                .map(DurationStr)
                .map_err(serde::de::Error::custom),
        }
    }
}

pub fn parse_duration(s: &str) -> std::result::Result<Duration, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{s}: not a duration, expected e.g. 500ms, 3s, 5m, 1h"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "" | "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("{s}: unknown unit {unit:?}, use ms, s, m or h")),
    };
    if !secs.is_finite() || !(0.0..=1e9).contains(&secs) {
        return Err(format!("{s}: duration out of range"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// `[tcp:|udp:]IP:PORT` or `[tcp:|udp:]:PORT` (all IPv4 addresses).
pub fn parse_listen(s: &str) -> Result<ListenAddr> {
    let (proto, rest) = if let Some(r) = s.strip_prefix("udp:") {
        (Proto::Udp, r)
    } else if let Some(r) = s.strip_prefix("tcp:") {
        (Proto::Tcp, r)
    } else {
        (Proto::Tcp, s)
    };
    let (host, port) = split_host_port(s, rest)?;
    let port = parse_port(s, port, 0)?;
    let ip: IpAddr = if host.is_empty() {
        IpAddr::V4(Ipv4Addr::UNSPECIFIED)
    } else {
        host.parse().map_err(|_| {
            Error::bad(
                s,
                format!(
                    "{host:?} is not an IP address; listen on IP:PORT, e.g. 127.0.0.1:5432 or udp:0.0.0.0:53"
                ),
            )
        })?
    };
    Ok(ListenAddr {
        proto,
        addr: SocketAddr::new(ip, port),
    })
}

/// `HOST:PORT` where HOST is a name, an IPv4 address or `[IPv6]`.
pub fn parse_backend(s: &str) -> Result<String> {
    let (host, port) = split_host_port(s, s)?;
    if host.is_empty() {
        return Err(Error::bad(s, "backend needs a host, e.g. db1:5432"));
    }
    let bad_char = |c: char| !(c.is_ascii_alphanumeric() || "-._:".contains(c));
    if host.contains(bad_char) {
        return Err(Error::bad(
            s,
            format!("{host:?} is not a host name or address"),
        ));
    }
    parse_port(s, port, 1)?;
    Ok(s.to_string())
}

fn split_host_port<'a>(whole: &str, s: &'a str) -> Result<(&'a str, &'a str)> {
    let bad = || {
        Error::bad(
            whole,
            "expected HOST:PORT, e.g. 127.0.0.1:5432 or [::1]:5432",
        )
    };
    if let Some(r) = s.strip_prefix('[') {
        let (h, p) = r.split_once("]:").ok_or_else(bad)?;
        return Ok((h, p));
    }
    let (h, p) = s.rsplit_once(':').ok_or_else(bad)?;
    if h.contains(':') {
        return Err(Error::bad(
            whole,
            "write IPv6 addresses in brackets, e.g. [::1]:5432",
        ));
    }
    Ok((h, p))
}

fn parse_port(whole: &str, p: &str, min: u64) -> Result<u16> {
    let n: u64 = p
        .parse()
        .map_err(|_| Error::bad(whole, format!("port {p:?} is not a number")))?;
    if n < min || n > 65535 {
        return Err(Error::bad(
            whole,
            format!("port {n} out of range ({min}-65535)"),
        ));
    }
    Ok(n as u16)
}

/// The TOML file format.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    balance: Option<Balance>,
    connect_timeout: Option<DurationStr>,
    health_interval: Option<DurationStr>,
    idle_timeout: Option<DurationStr>,
    udp_timeout: Option<DurationStr>,
    max_conns: Option<usize>,
    drain_timeout: Option<DurationStr>,
    #[serde(default)]
    listen: Vec<FileListener>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileListener {
    addr: String,
    to: Vec<String>,
    balance: Option<Balance>,
}

/// Read a config file: global overrides plus its listeners.
pub fn read_file(path: &Path) -> Result<(Overrides, Vec<ListenerSpec>)> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::io(format!("cannot read {}", path.display()), e))?;
    let file: FileConfig = toml::from_str(&text).map_err(|e| {
        // toml's messages span lines (with a source excerpt); keep the first.
        let msg = e.to_string();
        let first = msg.lines().next().unwrap_or("parse error").to_string();
        let at = e
            .span()
            .map(|sp| format!(" (at byte {})", sp.start))
            .unwrap_or_default();
        Error::bad(
            path.display(),
            format!("{}{at}: {}", first.trim(), e.message()),
        )
    })?;
    let mut specs = Vec::new();
    for l in &file.listen {
        specs.push(spec(&l.addr, &l.to, l.balance)?);
    }
    let o = Overrides {
        balance: file.balance,
        connect_timeout: file.connect_timeout,
        health_interval: file.health_interval,
        idle_timeout: file.idle_timeout,
        udp_timeout: file.udp_timeout,
        max_conns: file.max_conns,
        drain_timeout: file.drain_timeout,
    };
    Ok((o, specs))
}

pub fn spec(listen: &str, to: &[String], balance: Option<Balance>) -> Result<ListenerSpec> {
    let listen = parse_listen(listen)?;
    if to.is_empty() {
        return Err(Error::bad(
            listen,
            "listener has no backend; add --to HOST:PORT (or to = [...] in the file)",
        ));
    }
    let backends = to.iter().map(|t| parse_backend(t)).collect::<Result<_>>()?;
    Ok(ListenerSpec {
        listen,
        backends,
        balance,
    })
}

/// Merge listener lists; the same address given twice is an error, since
/// only one socket can own it.
pub fn merge(lists: Vec<Vec<ListenerSpec>>) -> Result<Vec<ListenerSpec>> {
    let mut seen = BTreeMap::new();
    for l in lists.into_iter().flatten() {
        if seen.contains_key(&l.listen) {
            return Err(Error::bad(
                l.listen,
                "listen address given twice; list all backends under one --listen",
            ));
        }
        seen.insert(l.listen, l);
    }
    Ok(seen.into_values().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_forms() {
        let a = parse_listen("127.0.0.1:5432").unwrap();
        assert_eq!(a.proto, Proto::Tcp);
        assert_eq!(a.addr.port(), 5432);
        let u = parse_listen("udp:[::1]:53").unwrap();
        assert_eq!(u.proto, Proto::Udp);
        assert!(u.addr.is_ipv6());
        assert_eq!(
            parse_listen(":80").unwrap().addr.ip(),
            Ipv4Addr::UNSPECIFIED
        );
    }

    #[test]
    fn bad_addresses_name_the_token() {
        let e = parse_listen("127.0.0.1:70000").unwrap_err().to_string();
        assert!(
            e.contains("127.0.0.1:70000") && e.contains("out of range"),
            "{e}"
        );
        let e = parse_listen("db:80").unwrap_err().to_string();
        assert!(e.contains("not an IP address"), "{e}");
        let e = parse_listen("1.2.3.4").unwrap_err().to_string();
        assert!(e.contains("HOST:PORT"), "{e}");
        assert!(parse_backend("db1:0").is_err());
        assert!(parse_backend("db1:5432").is_ok());
        assert!(parse_backend("[::1]:5432").is_ok());
        assert!(parse_backend("a b:1").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("3").unwrap(), Duration::from_secs(3));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert!(parse_duration("5x").is_err());
        assert!(parse_duration("-1s").is_err());
    }

    #[test]
    fn toml_file() {
        let dir = std::env::temp_dir().join(format!("pwa-cfg-{}", std::process::id()));
        std::fs::write(
            &dir,
            "balance = \"leastconn\"\nconnect_timeout = \"250ms\"\n\
             [[listen]]\naddr = \"127.0.0.1:7000\"\nto = [\"a:1\", \"b:2\"]\n\
             [[listen]]\naddr = \"udp:127.0.0.1:7001\"\nto = [\"c:3\"]\nbalance = \"rr\"\n",
        )
        .unwrap();
        let (o, l) = read_file(&dir).unwrap();
        std::fs::remove_file(&dir).ok();
        assert_eq!(o.balance, Some(Balance::Leastconn));
        assert_eq!(
            o.connect_timeout,
            Some(DurationStr(Duration::from_millis(250)))
        );
        assert_eq!(l.len(), 2);
        assert_eq!(l[1].listen.proto, Proto::Udp);
        assert_eq!(l[1].balance, Some(Balance::Rr));
    }

    #[test]
    fn duplicate_listen_rejected() {
        let a = spec("127.0.0.1:1", &["x:1".into()], None).unwrap();
        assert!(merge(vec![vec![a.clone()], vec![a]]).is_err());
    }
}
