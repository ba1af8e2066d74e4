//! The CNI execution parameters, read from `CNI_*` environment variables.
//!
//! Which variables are required depends on the verb (SPEC.md section 2);
//! a missing or malformed one is error code 4 naming the variable, so the
//! runtime's log says exactly what it forgot to set.
use super::error::{CniError, CniResult, code};
use std::path::PathBuf;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Add,
    Del,
    Check,
    Status,
    Version,
    Gc,
}

impl Command {
    pub fn parse(s: &str) -> CniResult<Self> {
        Ok(match s {
            "ADD" => Command::Add,
            "DEL" => Command::Del,
            "CHECK" => Command::Check,
            "STATUS" => Command::Status,
            "VERSION" => Command::Version,
            "GC" => Command::Gc,
            other => {
                return Err(CniError::new(
                    code::INVALID_ENV,
                    format!("CNI_COMMAND={other} is not a CNI verb"),
                    "expected ADD, DEL, CHECK, STATUS, VERSION or GC",
                ));
            }
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Command::Add => "ADD",
            Command::Del => "DEL",
            Command::Check => "CHECK",
            Command::Status => "STATUS",
            Command::Version => "VERSION",
            Command::Gc => "GC",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Env {
    pub command: Command,
    pub container_id: String,
    /// Empty when the runtime did not pass one (allowed for DEL).
    pub netns: String,
    pub ifname: String,
    pub args: Vec<(String, String)>,
    pub path: Vec<PathBuf>,
}

impl Env {
    /// Read from the process environment.
    pub fn from_process() -> CniResult<Self> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// Read through `get`, so unit tests need not touch the real environment.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> CniResult<Self> {
        let command = Command::parse(&get("CNI_COMMAND").unwrap_or_default())?;
        let value = |k: &str| get(k).unwrap_or_default();
        let env = Env {
            command,
            container_id: value("CNI_CONTAINERID"),
            netns: value("CNI_NETNS"),
            ifname: value("CNI_IFNAME"),
            args: parse_args(&value("CNI_ARGS"))?,
            path: value("CNI_PATH")
                .split(':')
                .filter(|p| !p.is_empty())
                .map(PathBuf::from)
                .collect(),
        };
        env.validate()?;
        Ok(env)
    }

    fn validate(&self) -> CniResult<()> {
        let (need_id, need_netns, need_ifname, need_path) = match self.command {
            Command::Add | Command::Check => (true, true, true, false),
            Command::Del => (true, false, true, false),
            Command::Gc => (false, false, false, true),
            Command::Status | Command::Version => (false, false, false, false),
        };
        let mut missing = Vec::new();
        if need_id && self.container_id.is_empty() {
            missing.push("CNI_CONTAINERID");
        }
        if need_netns && self.netns.is_empty() {
            missing.push("CNI_NETNS");
        }
        if need_ifname && self.ifname.is_empty() {
            missing.push("CNI_IFNAME");
        }
        if need_path && self.path.is_empty() {
            missing.push("CNI_PATH");
        }
        if !missing.is_empty() {
            return Err(CniError::new(
                code::INVALID_ENV,
                format!(
                    "required environment variables missing for {}: {}",
                    self.command.as_str(),
                    missing.join(", ")
                ),
                "",
            ));
        }
        if !self.container_id.is_empty() && !valid_container_id(&self.container_id) {
            return Err(CniError::new(
                code::INVALID_ENV,
                format!(
                    "CNI_CONTAINERID={} has invalid characters",
                    self.container_id
                ),
                "must start with a letter or digit, then letters, digits, '_', '.' or '-'",
            ));
        }
        if !self.ifname.is_empty()
            && let Err(why) = check_ifname(&self.ifname)
        {
            return Err(CniError::new(
                code::INVALID_ENV,
                format!("CNI_IFNAME={} {why}", self.ifname),
                "",
            ));
        }
        Ok(())
    }

    /// A `KEY=VALUE` from `CNI_ARGS`.
    pub fn arg(&self, key: &str) -> Option<&str> {
        self.args
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

fn valid_container_id(id: &str) -> bool {
    let mut chars = id.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// The kernel's rules for interface names (IFNAMSIZ, no '/', ':' or blanks).
pub fn check_ifname(name: &str) -> Result<(), &'static str> {
    if name.len() > 15 {
        return Err("is longer than 15 bytes");
    }
    if name == "." || name == ".." {
        return Err("is not a valid interface name");
    }
    if name
        .chars()
        .any(|c| c == '/' || c == ':' || c.is_whitespace())
    {
        return Err("contains '/', ':' or whitespace");
    }
    Ok(())
}

fn parse_args(s: &str) -> CniResult<Vec<(String, String)>> {
    s.split(';')
        .filter(|kv| !kv.is_empty())
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => Err(CniError::new(
                code::INVALID_ENV,
                format!("CNI_ARGS: '{kv}' is not KEY=VALUE"),
                "CNI_ARGS is a ';'-separated list such as IP=10.0.0.5;MAC=02:00:00:00:00:01",
            )),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> CniResult<Env> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Env::from_lookup(|k| m.get(k).cloned())
    }

    #[test]
    fn add_requires_netns() {
        let e = env(&[
            ("CNI_COMMAND", "ADD"),
            ("CNI_CONTAINERID", "c1"),
            ("CNI_IFNAME", "eth0"),
        ])
        .unwrap_err();
        assert_eq!(e.code, 4);
        assert!(e.msg.contains("CNI_NETNS"), "{e}");
    }

    #[test]
    fn del_without_netns_is_fine() {
        let e = env(&[
            ("CNI_COMMAND", "DEL"),
            ("CNI_CONTAINERID", "c1"),
            ("CNI_IFNAME", "eth0"),
            ("CNI_ARGS", "IgnoreUnknown=1;IP=10.0.0.2"),
            ("CNI_PATH", "/a::/b"),
        ])
        .unwrap();
        assert_eq!(e.arg("IP"), Some("10.0.0.2"));
        assert_eq!(e.path.len(), 2);
    }

    #[test]
    fn bad_values() {
        assert_eq!(env(&[("CNI_COMMAND", "FOO")]).unwrap_err().code, 4);
        assert_eq!(env(&[]).unwrap_err().code, 4);
        let e = env(&[
            ("CNI_COMMAND", "DEL"),
            ("CNI_CONTAINERID", "-bad"),
            ("CNI_IFNAME", "eth0"),
        ])
        .unwrap_err();
        assert!(e.msg.contains("CNI_CONTAINERID"));
        let e = env(&[
            ("CNI_COMMAND", "DEL"),
            ("CNI_CONTAINERID", "c"),
            ("CNI_IFNAME", "a-very-long-interface-name"),
        ])
        .unwrap_err();
        assert!(e.msg.contains("CNI_IFNAME"));
        let e = env(&[("CNI_COMMAND", "VERSION"), ("CNI_ARGS", "novalue")]).unwrap_err();
        assert!(e.msg.contains("novalue"));
        assert_eq!(env(&[("CNI_COMMAND", "GC")]).unwrap_err().code, 4);
    }
}
