//! Container labels → attach requests. `pipework.IFNAME="HOSTIF IP [MAC][@VLAN]"`
//! is the classic command line without the guest, so it goes through the
//! very same checks (`classic::to_request`): one grammar, one set of error
//! messages.
//!
//! Labels are untrusted: whoever may start a container may write them. So
//! only the positional words are accepted (no flag could pick a host
//! interface name, an OVSDB socket or `--direct-phys`), and the host side
//! must match one of the operator's `--allow` patterns.
use crate::classic::{ClassicArgs, to_request};
use crate::request::AttachRequest;
use crate::untrusted::display;
use std::collections::BTreeMap;

pub const PREFIX: &str = "pipework.";

/// `pipework.*` keys that are not interfaces: `pipework lab` marks the
/// containers it starts with `pipework.lab=NAME`.
const RESERVED: &[&str] = &["lab"];

/// The interface a label key names, if it is one of ours.
fn ifname_of(key: &str) -> Option<&str> {
    key.strip_prefix(PREFIX).filter(|i| !RESERVED.contains(i))
}

/// Host sides `watch` may act on: shell-style patterns (`*`, `?`).
#[derive(Debug, Clone)]
pub struct Allow(pub Vec<String>);

impl Allow {
    pub fn permits(&self, host: &str) -> bool {
        self.0.iter().any(|p| glob(p.as_bytes(), host.as_bytes()))
    }
}

fn glob(p: &[u8], s: &[u8]) -> bool {
    match p.split_first() {
        None => s.is_empty(),
        Some((b'*', rest)) => (0..=s.len()).any(|i| glob(rest, &s[i..])),
        Some((b'?', rest)) => !s.is_empty() && glob(rest, &s[1..]),
        Some((c, rest)) => s.first() == Some(c) && glob(rest, &s[1..]),
    }
}

/// Whether a container carries any label of ours (others are ignored
/// without a word: most containers on a host are not pipework's).
pub fn has_ours(labels: &BTreeMap<String, String>) -> bool {
    labels.keys().any(|k| ifname_of(k).is_some())
}

/// Every `pipework.*` label as an attach request for `guest` (the
/// container id). All or nothing: one bad or refused label yields its log
/// line and no request at all, so a container is never half plumbed
/// because of a typo.
pub fn requests(
    labels: &BTreeMap<String, String>,
    guest: &str,
    allow: &Allow,
) -> Result<Vec<AttachRequest>, Vec<String>> {
    let mut ok = Vec::new();
    let mut refused = Vec::new();
    for (key, value) in labels {
        let Some(ifname) = ifname_of(key) else {
            continue;
        };
        match one(ifname, value, guest) {
            Err(why) => refused.push(format!("label {}: {why}; ignored", display(key))),
            Ok(req) if !allow.permits(&req.host) => refused.push(format!(
                "label {}: refused host side {}: not allowed by --allow {}",
                display(key),
                display(&req.host),
                allow.0.join(",")
            )),
            Ok(req) => ok.push(req),
        }
    }
    if refused.is_empty() {
        Ok(ok)
    } else {
        Err(refused)
    }
}

fn one(ifname: &str, value: &str, guest: &str) -> Result<AttachRequest, String> {
    let words: Vec<&str> = value.split_whitespace().collect();
    if let Some(flag) = words.iter().find(|w| w.starts_with('-')) {
        return Err(format!(
            "{}: a label takes only HOSTIF IP [MAC][@VLAN], no flags",
            display(flag)
        ));
    }
    let (host, rest) = match words.split_first() {
        Some((h, rest)) if !rest.is_empty() => (*h, rest),
        _ => {
            return Err(format!(
                "{}: expected \"HOSTIF IP [MAC][@VLAN]\"",
                display(value)
            ));
        }
    };
    if rest.len() > 2 {
        return Err(format!(
            "{}: too many words; expected \"HOSTIF IP [MAC][@VLAN]\"",
            display(rest[2])
        ));
    }
    crate::request::check_ifname(ifname).map_err(|e| e.to_string())?;
    // Positional words only: nothing a label holds is read as a flag.
    let mut a = ClassicArgs::new(host, guest);
    a.ifname = Some(ifname.into());
    a.ip = rest.first().map(|w| w.to_string());
    a.mac = rest.get(1).map(|w| w.to_string());
    to_request(&a).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn br() -> Allow {
        Allow(vec!["br*".into()])
    }

    #[test]
    fn labels_parse_as_the_classic_grammar() {
        let l = labels(&[
            ("pipework.eth1", "br1 10.0.0.2/24@10.0.0.1"),
            ("pipework.eth2", "br2 dhcp 02:00:00:00:00:09"),
            ("com.example.other", "x"),
            ("pipework.lab", "lab1"),
        ]);
        assert!(!has_ours(&labels(&[("pipework.lab", "lab1")])));
        let r = requests(&l, "abc123", &br()).expect("valid");
        assert_eq!(r.len(), 2);
        assert_eq!((r[0].ifname.as_str(), r[0].host.as_str()), ("eth1", "br1"));
        assert_eq!(r[0].guest, "abc123");
        assert_eq!(r[1].mac, Some([2, 0, 0, 0, 0, 9]));
        let r = requests(
            &labels(&[("pipework.eth1", "br1 10.0.0.2/24 @10")]),
            "c",
            &br(),
        );
        assert_eq!(r.expect("vlan")[0].vlan, Some(10));
    }

    #[test]
    fn bad_labels_name_the_token_and_plan_nothing() {
        for (value, token) in [
            ("br1 10.0.0.300/24", "10.0.0.300/24"),
            ("br1", "br1"),
            ("br1 10.0.0.2/24 -l eth0", "-l"),
            ("br1 10.0.0.2/24 --direct-phys", "--direct-phys"),
            ("br1 10.0.0.2/24 02:00:00:00:00:01 extra", "extra"),
            ("br1 10.0.0.2/24 @x1", "x1"),
        ] {
            let l = labels(&[
                ("pipework.eth1", "br1 10.0.0.2/24"),
                ("pipework.eth2", value),
            ]);
            let e = requests(&l, "c", &br()).expect_err(value);
            assert_eq!(e.len(), 1, "{e:?}");
            assert!(
                e[0].contains("pipework.eth2") && e[0].contains(token),
                "{e:?}"
            );
        }
        let e = requests(&labels(&[("pipework.a/b", "br1 0/0")]), "c", &br());
        assert!(e.is_err());
    }

    #[test]
    fn host_sides_outside_allow_are_refused() {
        let l = labels(&[("pipework.eth1", "eth0 10.0.0.2/24")]);
        let e = requests(&l, "c", &br()).expect_err("refused");
        assert!(e[0].contains("refused host side eth0"), "{e:?}");
        let ovs = Allow(vec!["br*".into(), "ovs?".into()]);
        assert!(ovs.permits("ovs1") && ovs.permits("br") && !ovs.permits("ovs12"));
        assert!(!ovs.permits("xbr1"));
    }
}
