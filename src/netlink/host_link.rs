//! Links a driver creates on the host itself, down at birth: an 802.1Q
//! sub-interface (`NIC.VID`), the host shim's macvlan, an overlay bridge. The caller gives
//! a temporary name and names, marks and brings them up in one request
//! (`driver::marked`), so a killed run never leaves one unmarked under its
//! final name; here they are created, fetched and, in a dry run, printed.
use super::{Journal, Link, Net};
use crate::error::Result;
use netlink_packet_route::link::{InfoData, InfoKind, InfoMacVlan, MacVlanMode};
use rtnetlink::{LinkBridge, LinkMessageBuilder, LinkUnspec, LinkVlan};

impl Net {
    /// Create VLAN `vid` on `parent` as `name`, with the parent's MTU, down,
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
            .build();
        self.add_link(msg, &format!("VLAN {name}"), name)
            .await
            .map(Some)
    }

    /// Create a bridge-mode macvlan `name` on `parent` in this namespace,
    /// with the parent's MTU, down; journal its removal as `what name`, and
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
            .build();
        let l = self.add_link(msg, &format!("{what} {name}"), name).await?;
        self.journal_delete(j, format!("{what} {name}"), l.index);
        Ok(l)
    }

    /// Create a bridge `name` with a fixed MAC (see `create_bridge`) and
    /// `mtu`, down, and return it (a stand-in in a dry run). Not journaled:
    /// the caller commits or removes it (`driver::marked`).
    pub async fn add_bridge_down(&self, name: String, mtu: u32, mac: [u8; 6]) -> Result<Link> {
        if self.dry_run {
            self.show(format_args!("link add {name} mtu {mtu} type bridge"));
            self.show(format_args!("link set {name} up"));
            return Ok(Link {
                name,
                mtu,
                kind: Some("bridge".into()),
                ..Default::default()
            });
        }
        // rtnetlink's `LinkBridge::new` asks for the link up: undo that.
        // A kernel before 6.2 refuses to rename a link that is up (EBUSY),
        // and the rename that commits it comes next (driver::marked).
        let msg = LinkBridge::new(&name)
            .down()
            .address(mac.to_vec())
            .mtu(mtu)
            .build();
        self.add_link(msg, &format!("bridge {name}"), &name).await
    }
}

#[cfg(test)]
mod tests {
    /// Born down, in a namespace of its own (a thread that unshared).
    #[test]
    fn a_bridge_made_down_is_down() {
        if !nix::unistd::geteuid().is_root() {
            return;
        }
        std::thread::spawn(|| {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare");
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("rt");
            rt.block_on(async {
                let net = super::Net::new(None, false).expect("netlink");
                let l = net
                    .add_bridge_down("pwbd0".into(), 1400, [2, 0x55, 0, 0, 0, 1])
                    .await
                    .expect("bridge");
                assert!(!l.up, "born up");
                assert_eq!(l.mtu, 1400);
            });
        })
        .join()
        .expect("thread");
    }
}
