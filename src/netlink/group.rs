//! Deleting many links of one namespace in one request.
//!
//! Each RTM_DELLINK of a veth waits for an RCU grace period (about 15 ms).
//! The kernel deletes every link of a namespace that is in one link group
//! with a single request and a single wait, and a veth takes its peer
//! along. So the links are tagged with a group of our own, then the group
//! is deleted. A guest could only add its own links to that group, within
//! its own namespace.
use super::errors::nl_err;
use super::{Link, Net};
use crate::error::Result;
use netlink_packet_route::link::LinkAttribute;
use rtnetlink::LinkUnspec;

/// A link group no one else uses: high bit set, then pid and time mixed.
fn group() -> u32 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    0x8000_0000 | ((std::process::id() << 12) ^ t) & 0x7fff_ffff
}

impl Net {
    /// Delete `links` (all in this namespace) with one RCU wait.
    pub async fn delete_links_together(&self, links: &[&Link]) -> Result<()> {
        if links.is_empty() {
            return Ok(());
        }
        if self.dry_run {
            for l in links {
                self.show(format_args!("link del {}", l.name));
            }
            return Ok(());
        }
        let g = group();
        for l in links {
            let mut m = LinkUnspec::new_with_index(l.index).build();
            m.attributes.push(LinkAttribute::Group(g));
            self.handle
                .link()
                .set(m)
                .execute()
                .await
                .map_err(|e| nl_err(format!("grouping {}", l.name), e))?;
        }
        let mut del = self.handle.link().del(0);
        del.message_mut().attributes.push(LinkAttribute::Group(g));
        del.execute()
            .await
            .map_err(|e| nl_err("deleting a group of links", e))
    }
}
