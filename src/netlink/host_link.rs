//! Links a driver creates on the host itself, up at birth: an 802.1Q
//! sub-interface (`NIC.VID`) and the host shim's macvlan. The caller keeps
//! what depends on whose the link is (labelling it, when to remove it);
//! here they are created, fetched and, in a dry run, printed.
use super::{Journal, Link, Net};
use crate::error::Result;
use netlink_packet_route::link::{InfoData, InfoKind, InfoMacVlan, MacVlanMode};
use rtnetlink::{LinkMessageBuilder, LinkUnspec, LinkVlan};

impl Net {
    /// Create VLAN `vid` on `parent` as `name`, with the parent's MTU, up,
    /// and return it. Not journaled: whether a VLAN may go depends on its
    /// other users, which the caller checks. The kernel's refusal keeps its
    /// errno (EEXIST: another pipework was first). None in a dry run.
    pub async fn add_vlan(&self, name: &str, parent: &Link, vid: u16) -> Result<Option<Link>> {
        if self.dry_run {
            self.show(format_args!(
                "link add link {} name {name} mtu {} type vlan id {vid}",
                parent.name, parent.mtu
            ));
            self.show(format_args!("link set {name} up"));
            return Ok(None);
        }
        let msg = LinkVlan::new(name, parent.index, vid)
            .mtu(parent.mtu.max(68))
            .up()
            .build();
        self.add_link(msg, &format!("VLAN {name}"), name)
            .await
            .map(Some)
    }

    /// Create a bridge-mode macvlan `name` on `parent` in this namespace,
    /// with the parent's MTU, up; journal its removal as `what name`, and
    /// return it (a stand-in with the name in a dry run).
    pub async fn add_macvlan_here(
        &self,
        j: &mut Journal,
        what: &str,
        name: &str,
        parent: &Link,
    ) -> Result<Link> {
        if self.dry_run {
            self.show(format_args!(
                "link add link {} name {name} type macvlan mode bridge",
                parent.name
            ));
            self.show(format_args!("link set {name} up"));
            return Ok(Link {
                name: name.to_string(),
                ..Default::default()
            });
        }
        let msg = LinkMessageBuilder::<LinkUnspec>::new_with_info_kind(InfoKind::MacVlan)
            .name(name.to_string())
            .link(parent.index)
            .mtu(parent.mtu.max(68))
            .set_info_data(InfoData::MacVlan(vec![InfoMacVlan::Mode(
                MacVlanMode::Bridge,
            )]))
            .up()
            .build();
        let l = self.add_link(msg, &format!("{what} {name}"), name).await?;
        self.journal_delete(j, format!("{what} {name}"), l.index);
        Ok(l)
    }
}
