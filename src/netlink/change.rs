//! One typed RTM_SETLINK: the fields to change on a link, None leaving a
//! field as it is. Drivers and sriov say what they want changed; only this
//! file turns it into a netlink message (and, in a dry run, into the
//! iproute2 command that does the same).
use super::{Link, Net};
use crate::error::Result;
use crate::netns::NetNs;
use rtnetlink::LinkUnspec;
use std::os::fd::AsRawFd;

/// What to change; `Default` changes nothing.
#[derive(Debug, Clone, Default)]
pub struct LinkChange<'a> {
    pub up: Option<bool>,
    pub name: Option<String>,
    pub mtu: Option<u32>,
    /// Hardware address (6 bytes, or 20 on InfiniBand).
    pub mac: Option<Vec<u8>>,
    pub alias: Option<String>,
    /// Move the link into this namespace (it must be down to be renamed on
    /// the way, which `up: Some(false)` in the same change takes care of).
    pub netns: Option<&'a NetNs>,
    /// Make the link a port of this bridge (by index).
    pub controller: Option<u32>,
}

impl LinkChange<'_> {
    /// The iproute2 words for this change (`netns … name … mtu … up`).
    fn words(&self) -> String {
        let mut s = String::new();
        if let Some(ns) = self.netns {
            s += &format!(" netns {}", ns.path.display());
        }
        if let Some(n) = &self.name {
            s += &format!(" name {n}");
        }
        if let Some(m) = self.mtu {
            s += &format!(" mtu {m}");
        }
        if let Some(m) = &self.mac {
            let hex: Vec<String> = m.iter().map(|b| format!("{b:02x}")).collect();
            s += &format!(" address {}", hex.join(":"));
        }
        if let Some(a) = &self.alias {
            s += &format!(" alias '{a}'");
        }
        if let Some(c) = self.controller {
            s += &format!(" master #{c}");
        }
        match self.up {
            Some(true) => s += " up",
            Some(false) => s += " down",
            None => {}
        }
        s
    }
}

impl Net {
    /// Apply `c` to `link` in one request. `what` names the step in errors
    /// ("restoring the name and MTU of eth3").
    pub async fn change(
        &self,
        link: &Link,
        c: &LinkChange<'_>,
        what: impl Into<String>,
    ) -> Result<()> {
        let mut b = LinkUnspec::new_with_index(link.index);
        b = match c.up {
            Some(true) => b.up(),
            Some(false) => b.down(),
            None => b,
        };
        if let Some(ns) = c.netns {
            b = b.setns_by_fd(ns.fd().as_raw_fd());
        }
        if let Some(n) = &c.name {
            b = b.name(n.clone());
        }
        if let Some(m) = c.mtu {
            b = b.mtu(m);
        }
        if let Some(m) = &c.mac {
            b = b.address(m.clone());
        }
        if let Some(a) = &c.alias {
            b = b.alias(a);
        }
        if let Some(i) = c.controller {
            b = b.controller(i);
        }
        self.set_link(
            b.build(),
            format_args!("link set {}{}", link.name, c.words()),
            what.into(),
        )
        .await
    }
}
