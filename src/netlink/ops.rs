//! Typed netlink operations.
//!
//! `Net` is one namespace's rtnetlink handle. Every mutating method takes the
//! attach's `Journal` and records how to undo what it created, and in dry-run
//! mode prints the equivalent iproute2 command instead of touching the kernel.
//! Read-only queries always hit the kernel, so a dry run plans against the
//! real host state.
use crate::error::{Error, Result};
use crate::netlink::Journal;
use crate::netns::NetNs;
use futures::{StreamExt, TryStreamExt};
use ipnetwork::IpNetwork;
use netlink_packet_route::address::{AddressAttribute, AddressFlags, AddressMessage};
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVeth, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};
use netlink_packet_route::route::{RouteAttribute, RouteMessage, RouteScope};
use rtnetlink::{Handle, LinkBridge, LinkMessageBuilder, LinkUnspec, RouteMessageBuilder};
use std::net::IpAddr;
use std::os::fd::AsRawFd;

use super::errors::gone_ok;
pub use super::errors::{EEXIST, ENODEV, nl_err};

/// What we need to know about a link, decoded once from its netlink message.
#[derive(Debug, Clone, Default)]
pub struct Link {
    pub index: u32,
    pub name: String,
    /// `IFLA_INFO_KIND`: "bridge", "veth", "macvlan", "openvswitch", … or
    /// None for physical NICs.
    pub kind: Option<String>,
    pub mtu: u32,
    pub mac: Vec<u8>,
    pub alias: Option<String>,
    pub controller: Option<u32>,
    /// `IFLA_LINK`: the parent (macvlan, vlan) or the veth peer's index.
    pub link: Option<u32>,
    pub up: bool,
    /// IFF_NOARP: the link neither asks nor answers ARP.
    pub noarp: bool,
    /// ARPHRD type (1 = Ethernet, 32 = InfiniBand).
    pub link_type: u16,
    /// `IFLA_LINK_NETNSID`: the namespace (as this one numbers it) where
    /// the parent or veth peer lives, when that is another namespace.
    pub netnsid: Option<i32>,
    /// `IFLA_PERM_ADDRESS`: the hardware's own MAC; virtual devices have none.
    pub perm: Option<Vec<u8>>,
    /// The PCI function it sits on (`IFLA_PARENT_DEV_NAME` on bus "pci"),
    /// e.g. "0000:01:10.0": how a VF is found wherever it was renamed.
    pub pci: Option<String>,
}

impl Link {
    pub(crate) fn from_message(msg: &LinkMessage) -> Self {
        let mut l = Link {
            index: msg.header.index,
            up: msg.header.flags.contains(LinkFlags::Up),
            noarp: msg.header.flags.contains(LinkFlags::Noarp),
            link_type: u16::from(msg.header.link_layer_type),
            ..Default::default()
        };
        let mut on_pci = false;
        let mut parent = None;
        for attr in &msg.attributes {
            match attr {
                LinkAttribute::ParentDevBusName(b) => on_pci = b == "pci",
                LinkAttribute::ParentDevName(d) => parent = Some(d.clone()),
                LinkAttribute::IfName(n) => l.name = n.clone(),
                LinkAttribute::Mtu(m) => l.mtu = *m,
                LinkAttribute::Address(a) => l.mac = a.clone(),
                LinkAttribute::IfAlias(a) => l.alias = Some(a.clone()),
                LinkAttribute::Controller(c) => l.controller = Some(*c),
                LinkAttribute::Link(p) => l.link = Some(*p),
                LinkAttribute::LinkNetNsId(n) => l.netnsid = Some(*n),
                LinkAttribute::PermAddress(a) if a.iter().any(|b| *b != 0) => {
                    l.perm = Some(a.clone())
                }
                LinkAttribute::LinkInfo(infos) => {
                    for i in infos {
                        if let LinkInfo::Kind(k) = i {
                            l.kind = Some(k.to_string());
                        }
                    }
                }
                _ => {}
            }
        }
        if on_pci {
            l.pci = parent;
        }
        l
    }

    pub fn is_bridge(&self) -> bool {
        self.kind.as_deref() == Some("bridge")
    }
}

/// An address as the kernel reports it.
#[derive(Debug, Clone)]
pub struct Addr {
    pub index: u32,
    pub net: IpNetwork,
}

/// A route we captured so it can be put back (only the fields we restore).
#[derive(Debug, Clone)]
pub struct Route {
    pub msg: RouteMessage,
}

impl Route {
    pub fn gateway(&self) -> Option<IpAddr> {
        self.msg.attributes.iter().find_map(|a| match a {
            RouteAttribute::Gateway(g) => route_addr(g),
            _ => None,
        })
    }
    pub fn oif(&self) -> Option<u32> {
        self.msg.attributes.iter().find_map(|a| match a {
            RouteAttribute::Oif(i) => Some(*i),
            _ => None,
        })
    }
}

fn route_addr(a: &netlink_packet_route::route::RouteAddress) -> Option<IpAddr> {
    use netlink_packet_route::route::RouteAddress as RA;
    match a {
        RA::Inet(v4) => Some(IpAddr::V4(*v4)),
        RA::Inet6(v6) => Some(IpAddr::V6(*v6)),
        _ => None,
    }
}

pub(super) fn mac_str(mac: &[u8]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// The single link a filtered RTM_GETLINK names; ENODEV is "absent".
async fn one_link(
    req: rtnetlink::LinkGetRequest,
    what: impl FnOnce() -> String,
) -> Result<Option<Link>> {
    match req.execute().try_next().await {
        Ok(m) => Ok(m.as_ref().map(Link::from_message)),
        Err(e) => {
            let err = nl_err(what(), e);
            if err.errno() == Some(ENODEV) {
                Ok(None)
            } else {
                Err(err)
            }
        }
    }
}

/// One namespace's netlink handle plus how to print dry-run commands for it.
#[derive(Clone)]
pub struct Net {
    /// Private to `netlink`: every request goes through a typed op, so
    /// dry runs and the journal see all of them.
    pub(super) handle: Handle,
    /// `ip` prefix for dry-run output: "ip" or "ip -n <ns>".
    ip: String,
    pub dry_run: bool,
}

impl Net {
    pub fn new(ns: Option<&NetNs>, dry_run: bool) -> Result<Self> {
        Ok(Self::from_handle(super::connect(ns)?, ns, dry_run))
    }

    /// Handles for many namespaces at once (see `netlink::connect_all`).
    pub fn for_all(nss: &[&NetNs]) -> Vec<Result<Self>> {
        super::connect_all(nss)
            .into_iter()
            .zip(nss)
            .map(|(h, ns)| h.map(|h| Self::from_handle(h, Some(ns), false)))
            .collect()
    }

    fn from_handle(handle: Handle, ns: Option<&NetNs>, dry_run: bool) -> Self {
        let ip = match ns {
            None => "ip".to_string(),
            Some(ns) => format!("nsenter --net={} ip", ns.path.display()),
        };
        Net {
            handle,
            ip,
            dry_run,
        }
    }

    pub(crate) fn show(&self, args: std::fmt::Arguments) {
        println!("{} {}", self.ip, args);
    }

    // ---- queries -----------------------------------------------------------

    pub async fn link_by_name(&self, name: &str) -> Result<Option<Link>> {
        let req = self.handle.link().get().match_name(name.to_string());
        one_link(req, || format!("looking up {name}")).await
    }

    pub async fn link_by_index(&self, index: u32) -> Result<Option<Link>> {
        let req = self.handle.link().get().match_index(index);
        one_link(req, || format!("looking up link #{index}")).await
    }

    pub async fn links(&self) -> Result<Vec<Link>> {
        Ok(self
            .link_messages()
            .await?
            .iter()
            .map(Link::from_message)
            .collect())
    }

    /// Every link as the kernel sent it, for callers that need attributes
    /// `Link` does not keep (VF info, PCI parentage).
    async fn link_messages(&self) -> Result<Vec<LinkMessage>> {
        self.handle
            .link()
            .get()
            .execute()
            .try_collect()
            .await
            .map_err(|e| nl_err("listing links", e))
    }

    pub async fn addrs(&self, index: u32) -> Result<Vec<Addr>> {
        let msgs: Vec<AddressMessage> = self
            .handle
            .address()
            .get()
            .set_link_index_filter(index)
            .execute()
            .try_collect()
            .await
            .map_err(|e| nl_err("listing addresses", e))?;
        Ok(msgs.iter().filter_map(addr_of).collect())
    }

    /// Default routes of one family in the main table.
    pub async fn default_routes(&self, v6: bool) -> Result<Vec<Route>> {
        let req = if v6 {
            RouteMessageBuilder::<std::net::Ipv6Addr>::new().build()
        } else {
            RouteMessageBuilder::<std::net::Ipv4Addr>::new().build()
        };
        let msgs: Vec<RouteMessage> = self
            .handle
            .route()
            .get(req)
            .execute()
            .try_collect()
            .await
            .map_err(|e| nl_err("listing routes", e))?;
        Ok(msgs
            .into_iter()
            .filter(|m| m.header.destination_prefix_length == 0 && m.header.table == 254)
            .map(|msg| Route { msg })
            .collect())
    }

    // ---- links -------------------------------------------------------------

    /// Create a bridge. Returns Ok(false) if another process created it
    /// first (EEXIST): parallel attaches to one new bridge must all succeed.
    pub async fn create_bridge(
        &self,
        j: &mut Journal,
        name: &str,
        mtu: Option<u32>,
        mac: [u8; 6],
    ) -> Result<bool> {
        if self.dry_run {
            match mtu {
                Some(m) => self.show(format_args!("link add {name} mtu {m} type bridge")),
                None => self.show(format_args!("link add {name} type bridge")),
            }
            self.show(format_args!("link set {name} up"));
            return Ok(true);
        }
        // A fixed MAC: otherwise the kernel gives the bridge the lowest
        // port MAC and changes it as containers come and go (and resets it
        // to zero when the last one leaves), which breaks neighbours' caches.
        let mut b = LinkBridge::new(name).up().address(mac.to_vec());
        if let Some(m) = mtu {
            b = b.mtu(m);
        }
        match self.handle.link().add(b.build()).execute().await {
            Ok(()) => {}
            Err(e) => {
                let err = nl_err(format!("creating bridge {name}"), e);
                if err.errno() == Some(EEXIST) {
                    return Ok(false);
                }
                return Err(err);
            }
        }
        let link = self
            .link_by_name(name)
            .await?
            .ok_or_else(|| Error::other(format!("bridge {name} vanished after creation")))?;
        self.journal_delete_bridge(j, link);
        Ok(true)
    }

    /// Record the removal of a bridge we made in `j`, done only if the
    /// bridge is still empty then: a concurrent attach may have joined it
    /// meanwhile, and its container must keep its network.
    pub fn journal_delete_bridge(&self, j: &mut Journal, link: Link) {
        let net = self.clone();
        j.record(format!("bridge {}", link.name), async move {
            let links = net.links().await?;
            if links.iter().any(|l| l.controller == Some(link.index)) {
                return Ok(());
            }
            net.delete_link(&link).await
        });
    }

    /// Create a veth pair whose peer is born directly inside `peer_ns`, so
    /// the container end never appears on the host. Both ends get `mtu`
    /// and are born down; the host end is returned. Callers pass temporary
    /// names (`inventory::temp_name`): the kernel ignores IFLA_IFALIAS on
    /// create, so until the link is renamed and labelled only its name says
    /// whose it is.
    #[allow(clippy::too_many_arguments)]
    pub async fn create_veth(
        &self,
        j: &mut Journal,
        host_name: &str,
        peer_name: &str,
        peer_ns: &NetNs,
        peer_mac: Option<&[u8]>,
        mtu: u32,
        master: Option<&Link>,
        queues: u32,
    ) -> Result<Link> {
        if self.dry_run {
            let mac = peer_mac
                .map(|m| format!(" address {}", mac_str(m)))
                .unwrap_or_default();
            let master_s = master
                .map(|b| format!(" master {}", b.name))
                .unwrap_or_default();
            self.show(format_args!(
                "link add {host_name} mtu {mtu}{master_s} type veth peer name {peer_name} mtu {mtu}{mac} netns {}",
                peer_ns.path.display()
            ));
            return Ok(Link {
                name: host_name.into(),
                mtu,
                ..Default::default()
            });
        }
        let q = queues;
        let mut peer = LinkUnspec::new_with_name(peer_name)
            .mtu(mtu)
            .setns_by_fd(peer_ns.fd().as_raw_fd())
            .append_extra_attribute(LinkAttribute::NumTxQueues(q))
            .append_extra_attribute(LinkAttribute::NumRxQueues(q));
        if let Some(mac) = peer_mac {
            peer = peer.address(mac.to_vec());
        }
        let mut msg = LinkMessageBuilder::<LinkUnspec>::new_with_info_kind(InfoKind::Veth)
            .name(host_name.to_string())
            .mtu(mtu)
            .append_extra_attribute(LinkAttribute::NumTxQueues(q))
            .append_extra_attribute(LinkAttribute::NumRxQueues(q));
        if let Some(b) = master {
            // Enslaved in the same request: one round trip fewer.
            msg = msg.controller(b.index);
        }
        let msg = msg
            .set_info_data(InfoData::Veth(InfoVeth::Peer(peer.build())))
            .build();
        let link = self
            .add_link(msg, &format!("veth {host_name}"), host_name)
            .await?;
        // Deleting one end of a veth deletes the pair.
        self.journal_delete(j, format!("veth {host_name}"), link.index);
        Ok(link)
    }

    /// Add a link (RTM_NEWLINK) named `name` and return it as the kernel
    /// now reports it: the add-link-and-fetch every create shares. `what`
    /// names it in errors ("veth X"); a refusal keeps the kernel's errno.
    pub(super) async fn add_link(&self, msg: LinkMessage, what: &str, name: &str) -> Result<Link> {
        self.handle
            .link()
            .add(msg)
            .execute()
            .await
            .map_err(|e| nl_err(format!("creating {what}"), e))?;
        self.link_by_name(name)
            .await?
            .ok_or_else(|| Error::other(format!("{what} vanished after creation")))
    }

    /// Record the deletion of link `index` in this namespace in the undo
    /// journal (idempotent: a link already gone is what we wanted).
    pub fn journal_delete(&self, j: &mut Journal, what: String, index: u32) {
        let h = self.handle.clone();
        j.record(what.clone(), async move {
            let r = h.link().del(index).execute().await;
            // Already gone is what we wanted.
            gone_ok(
                r.map_err(|e| nl_err(format!("deleting {what}"), e)),
                &[ENODEV],
            )
        });
    }

    pub async fn delete_link(&self, link: &Link) -> Result<()> {
        if self.dry_run {
            self.show(format_args!("link del {}", link.name));
            return Ok(());
        }
        let r = self.handle.link().del(link.index).execute().await;
        gone_ok(
            r.map_err(|e| nl_err(format!("deleting {}", link.name), e)),
            &[ENODEV],
        )
    }

    /// One RTM_SETLINK: `dry` is the iproute2 equivalent, `what` names the
    /// step in errors.
    pub(super) async fn set_link(
        &self,
        msg: LinkMessage,
        dry: std::fmt::Arguments<'_>,
        what: String,
    ) -> Result<()> {
        if self.dry_run {
            self.show(dry);
            return Ok(());
        }
        self.handle
            .link()
            .set(msg)
            .execute()
            .await
            .map_err(|e| nl_err(what, e))
    }

    pub async fn set_controller(&self, link: &Link, bridge: &Link) -> Result<()> {
        let msg = LinkUnspec::new_with_index(link.index)
            .controller(bridge.index)
            .build();
        let what = format!("adding {} to {}", link.name, bridge.name);
        self.set_link(
            msg,
            format_args!("link set {} master {}", link.name, bridge.name),
            what,
        )
        .await
    }

    pub async fn set_up(&self, link: &Link) -> Result<()> {
        let msg = LinkUnspec::new_with_index(link.index).up().build();
        let what = format!("bringing {} up", link.name);
        self.set_link(msg, format_args!("link set {} up", link.name), what)
            .await
    }

    /// Label a link and bring it up in one request.
    pub async fn set_alias_up(&self, link: &Link, alias: &str) -> Result<()> {
        let msg = LinkUnspec::new_with_index(link.index)
            .alias(alias)
            .up()
            .build();
        let what = format!("labelling {}", link.name);
        self.set_link(
            msg,
            format_args!("link set {} alias '{alias}' up", link.name),
            what,
        )
        .await
    }

    /// Name, label and bring up a link in one request: the commit step for
    /// a link born under a temporary name (the kernel renames before it
    /// applies the alias and the flags, and a down link may be renamed).
    pub async fn rename_alias_up(&self, link: &Link, name: &str, alias: &str) -> Result<()> {
        let msg = LinkUnspec::new_with_index(link.index)
            .name(name.to_string())
            .alias(alias)
            .up()
            .build();
        let what = format!("naming {} {name}", link.name);
        let rename = if link.name == name {
            String::new()
        } else {
            format!(" name {name}")
        };
        self.set_link(
            msg,
            format_args!("link set {}{rename} alias '{alias}' up", link.name),
            what,
        )
        .await
    }

    /// The id this namespace gives `other` (RTM_GETNSID), to tell whether a
    /// link's parent or peer (`Link::netnsid`) lives there. None when it
    /// has given it no id, which means no link here points into it.
    pub async fn nsid_of(&self, other: &NetNs) -> Result<Option<i32>> {
        use netlink_packet_core::{NLM_F_REQUEST, NetlinkMessage, NetlinkPayload};
        use netlink_packet_route::RouteNetlinkMessage;
        use netlink_packet_route::nsid::{NsidAttribute, NsidMessage};
        let mut m = NsidMessage::default();
        m.attributes
            .push(NsidAttribute::Fd(other.fd().as_raw_fd() as u32));
        let mut req = NetlinkMessage::from(RouteNetlinkMessage::GetNsId(m));
        req.header.flags = NLM_F_REQUEST;
        let mut resp = self
            .handle
            .clone()
            .request(req)
            .map_err(|e| nl_err("asking for a namespace id", e))?;
        while let Some(msg) = resp.next().await {
            match msg.payload {
                NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewNsId(m)) => {
                    return Ok(m.attributes.iter().find_map(|a| match a {
                        NsidAttribute::Id(i) if *i >= 0 => Some(*i),
                        _ => None,
                    }));
                }
                NetlinkPayload::Error(e) => {
                    return Err(Error::other(format!("asking for a namespace id: {e}")));
                }
                _ => {}
            }
        }
        Ok(None)
    }

    /// Rename a (down) link.
    pub async fn rename(&self, link: &Link, name: &str) -> Result<()> {
        let msg = LinkUnspec::new_with_index(link.index)
            .down()
            .name(name.to_string())
            .build();
        let what = format!("renaming {} to {name}", link.name);
        self.set_link(
            msg,
            format_args!("link set {} name {name}", link.name),
            what,
        )
        .await
    }

    pub async fn set_alias(&self, link: &Link, alias: &str) -> Result<()> {
        let msg = LinkUnspec::new_with_index(link.index).alias(alias).build();
        let what = format!("labelling {}", link.name);
        self.set_link(
            msg,
            format_args!("link set {} alias '{alias}'", link.name),
            what,
        )
        .await
    }

    // ---- addresses and routes ---------------------------------------------

    /// Add an address. IPv6 addresses skip DAD (as container runtimes do) so
    /// they are usable at once and the unsolicited NA can be sent from them.
    pub async fn add_addr(&self, link: &Link, net: IpNetwork) -> Result<()> {
        if self.dry_run {
            let nodad = if net.is_ipv6() { " nodad" } else { "" };
            self.show(format_args!("addr add {net} dev {}{nodad}", link.name));
            return Ok(());
        }
        let mut req = self
            .handle
            .address()
            .add(link.index, net.ip(), net.prefix());
        if net.is_ipv6() {
            req.message_mut()
                .attributes
                .push(AddressAttribute::Flags(AddressFlags::Nodad));
        }
        req.execute().await.map_err(|e| {
            let err = nl_err(format!("adding {net} to {}", link.name), e);
            if net.is_ipv6() && err.errno() == Some(libc::EACCES) {
                Error::bad(net, "IPv6 is disabled in the guest (net.ipv6.conf.all.disable_ipv6=1; with Docker: --sysctl net.ipv6.conf.all.disable_ipv6=0)")
            } else {
                err
            }
        })
        // No journal entry: the address dies with the link we created.
    }

    /// Route to a single host through the link, scope link: used when the
    /// gateway lies outside the container's subnet (classic pipework did this).
    pub async fn add_host_route(&self, link: &Link, dst: IpAddr) -> Result<()> {
        let len = if dst.is_ipv4() { 32 } else { 128 };
        if self.dry_run {
            self.show(format_args!(
                "route add {dst}/{len} dev {} scope link",
                link.name
            ));
            return Ok(());
        }
        let msg = match dst {
            IpAddr::V4(v4) => RouteMessageBuilder::<std::net::Ipv4Addr>::new()
                .destination_prefix(v4, len)
                .output_interface(link.index)
                .scope(RouteScope::Link)
                .build(),
            IpAddr::V6(v6) => RouteMessageBuilder::<std::net::Ipv6Addr>::new()
                .destination_prefix(v6, len)
                .output_interface(link.index)
                .scope(RouteScope::Link)
                .build(),
        };
        self.handle
            .route()
            .add(msg)
            .execute()
            .await
            .map_err(|e| nl_err(format!("adding route to {dst} via {}", link.name), e))
    }

    /// Make `gw` the default route through `link`, replacing any existing
    /// default of that family. The replaced routes are journaled so a later
    /// failure puts them back.
    pub async fn replace_default(&self, j: &mut Journal, link: &Link, gw: IpAddr) -> Result<()> {
        if self.dry_run {
            self.show(format_args!(
                "route replace default via {gw} dev {}",
                link.name
            ));
            return Ok(());
        }
        let old = self.default_routes(gw.is_ipv6()).await?;
        for r in &old {
            self.handle
                .route()
                .del(r.msg.clone())
                .execute()
                .await
                .map_err(|e| nl_err("removing the old default route", e))?;
            let h = self.handle.clone();
            let msg = r.msg.clone();
            j.record("old default route", async move {
                // Replace: our new default route still exists at this
                // point of the rollback (it goes with the veth, later).
                h.route()
                    .add(msg)
                    .replace()
                    .execute()
                    .await
                    .map_err(|e| nl_err("restoring the old default route", e))
            });
        }
        let msg = match gw {
            IpAddr::V4(v4) => RouteMessageBuilder::<std::net::Ipv4Addr>::new()
                .gateway(v4)
                .output_interface(link.index)
                .build(),
            IpAddr::V6(v6) => RouteMessageBuilder::<std::net::Ipv6Addr>::new()
                .gateway(v6)
                .output_interface(link.index)
                .build(),
        };
        self.handle
            .route()
            .add(msg)
            .execute()
            .await
            .map_err(|e| nl_err(format!("adding default route via {gw}"), e))
    }
}

/// One address message as an `Addr` (None without an address attribute):
/// the one reader for `addrs` and `all_addrs`.
pub(super) fn addr_of(m: &AddressMessage) -> Option<Addr> {
    let ip = m.attributes.iter().find_map(|a| match a {
        AddressAttribute::Address(ip) => Some(*ip),
        _ => None,
    })?;
    let net = IpNetwork::new(ip, m.header.prefix_len).ok()?;
    Some(Addr {
        index: m.header.index,
        net,
    })
}
