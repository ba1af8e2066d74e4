//! One end of a point-to-point link: `GUEST:IFNAME`, where GUEST is what
//! the classic guest argument accepts, or `host` for the host namespace.
use crate::error::{Error, Result};
use crate::guest;
use crate::netns::NetNs;
use crate::request::check_ifname;

/// A resolved end: the namespace pinned by fd and the names we record.
#[derive(Debug)]
pub struct End {
    pub netns: NetNs,
    pub ino: u64,
    /// How the record names it: container name, netns name, pid or `host`.
    pub label: String,
    pub id: Option<String>,
    pub host: bool,
}

/// Split `GUEST:IFNAME` at the last colon (guests may contain colons:
/// `netns:NAME:eth1`, `pid:42:eth1`).
pub fn parse_end(tok: &str) -> Result<(String, String)> {
    let Some((g, i)) = tok.rsplit_once(':') else {
        return Err(Error::bad(
            tok,
            "expected GUEST:IFNAME, e.g. web1:eth1 or host:veth-web1",
        ));
    };
    if g.is_empty() {
        return Err(Error::bad(tok, "missing guest before ':' (GUEST:IFNAME)"));
    }
    check_ifname(i)?;
    Ok((g.to_string(), i.to_string()))
}

/// Resolve a guest spec (or `host`) to its namespace.
pub fn resolve(spec: &str) -> Result<End> {
    if spec == "host" {
        let netns = NetNs::current()?;
        return Ok(End {
            ino: netns.inode()?,
            netns,
            label: "host".into(),
            id: None,
            host: true,
        });
    }
    let g = guest::resolve(spec)?;
    let ino = g.netns.inode()?;
    let id = g.id.as_ref().map(|_| g.short_id());
    Ok(End {
        netns: g.netns,
        ino,
        label: g.name,
        id,
        host: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ends_split_at_the_last_colon() {
        assert_eq!(
            parse_end("web1:eth1").ok(),
            Some(("web1".into(), "eth1".into()))
        );
        assert_eq!(
            parse_end("netns:lab1:eth2").ok(),
            Some(("netns:lab1".into(), "eth2".into()))
        );
        assert!(parse_end("web1").is_err());
        assert!(parse_end(":eth1").is_err());
        assert!(parse_end("web1:").is_err());
        assert!(parse_end("web1:a/b").is_err());
    }
}
