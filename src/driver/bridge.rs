//! Linux bridge + veth: the classic `pipework br1 $CID 10.0.0.2/24`.
use super::{Ctx, Driver, HostSide, bridge_vlan, tc_redirect};
use crate::error::{Error, Result};
use crate::firewall;
use crate::inventory::{self, host_ns, temp_name};
use crate::netlink::{Journal, Net};
use crate::record::{Ident, Kind, Record};
use crate::request::check_ifname;

#[derive(Default)]
pub struct Bridge {
    /// The bridge as driver selection found it (spares a second lookup);
    /// None when it is to be created.
    pub existing: Option<crate::netlink::Link>,
}

/// Locally administered unicast MAC derived from a bridge's name, so a
/// re-created bridge keeps the MAC its neighbours have cached.
pub fn stable_mac(name: &str) -> [u8; 6] {
    let mut m = crate::request::mac_from_seed(&format!("pipework-bridge:{name}"));
    m[0] = 0x02;
    m
}

/// Host end of the veth: the original script's `v<if>pl<pid>` when it fits
/// in 15 characters (scripts grep for it), else a stable hash of the guest
/// namespace and interface.
pub fn host_ifname(cx: &Ctx<'_>) -> String {
    if let Some(n) = &cx.req.host_ifname {
        return n.clone();
    }
    if let Some(pid) = cx.guest.pid {
        let classic = format!("v{}pl{}", cx.req.ifname, pid);
        if classic.len() <= 15 {
            return classic;
        }
    }
    let ino = cx.guest.netns.inode().unwrap_or(0);
    // FNV-1a: tiny, stable across versions, good enough to avoid collisions
    // between the handful of interfaces on one host.
    let mut h: u64 = 0xcbf29ce484222325;
    for b in ino.to_le_bytes().iter().chain(cx.req.ifname.as_bytes()) {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x100000001b3);
    }
    format!("vpw{:010x}", h & 0xff_ffff_ffff)
}

impl Driver for Bridge {
    async fn validate(&self, cx: &Ctx<'_>) -> Result<()> {
        check_ifname(&cx.req.host)?;
        if cx.req.tc_redirect {
            tc_redirect::validate(cx, self.existing.as_ref()).await?;
        }
        // A VLAN on an existing bridge: refuse up front, before anything
        // is built, when its kernel cannot filter VLANs.
        if let Some(plan) = bridge_vlan::Plan::of(cx)
            && let Some(b) = &self.existing
        {
            bridge_vlan::validate(&cx.host, b, &plan).await?;
        }
        let name = host_ifname(cx);
        check_ifname(&name)?;
        if cx.host.link_by_name(&name).await?.is_some() {
            return Err(Error::bad(
                &name,
                "host interface already exists; pick another with -l NAME",
            ));
        }
        Ok(())
    }

    async fn attach(&self, cx: &mut Ctx<'_>, j: &mut Journal) -> Result<HostSide> {
        let req = cx.req;
        let mut notes = Vec::new();

        // 1. The bridge: use it, or create it (classic rule: name starts with
        //    "br", or --create). A concurrent pipework may win the race to
        //    create it; that is fine, we join it.
        let found = match &self.existing {
            Some(b) => Some(b.clone()),
            None => cx.host.link_by_name(&req.host).await?,
        };
        let bridge = match found {
            Some(b) => b,
            None => {
                if cx
                    .host
                    .create_bridge(j, &req.host, req.mtu, stable_mac(&req.host))
                    .await?
                {
                    notes.push(format!("created bridge {}", req.host));
                }
                match cx.host.link_by_name(&req.host).await? {
                    Some(b) => b,
                    None if cx.host.dry_run => crate::netlink::Link {
                        name: req.host.clone(),
                        mtu: 1500,
                        ..Default::default()
                    },
                    None => return Err(Error::other(format!("bridge {} vanished", req.host))),
                }
            }
        };

        // 1b. VLANs: the bridge filters them (turned on if it did not)
        //     before the port exists (bridge_vlan.rs says why existing
        //     ports keep working).
        let vlan = match bridge_vlan::Plan::of(cx) {
            Some(plan) => {
                let state = bridge_vlan::prepare(cx, &bridge, &plan, j).await?;
                Some((plan, state))
            }
            None => None,
        };

        // 2. The veth pair, container end born inside the guest namespace
        //    with its MAC and the bridge's MTU. Both ends start under
        //    temporary names, so a SIGKILL from here on leaves links that
        //    say whose they are (see inventory.rs).
        let mtu = req.mtu.unwrap_or(bridge.mtu.max(68));
        let host_name = host_ifname(cx);
        // A dry run shows the plain equivalent, final names from the start.
        let (host_tmp, guest_tmp) = if cx.host.dry_run {
            (host_name.clone(), req.ifname.clone())
        } else {
            (temp_name(), temp_name())
        };
        // --tc-redirect: pipework sets the MAC the other ports' rules match.
        let tcr_mac = req.tc_redirect.then(|| tc_redirect::mac(cx));
        let host_link = cx
            .host
            .create_veth(
                j,
                &host_tmp,
                &guest_tmp,
                &cx.guest.netns,
                tcr_mac.as_ref().or(req.mac.as_ref()).map(|m| &m[..]),
                mtu,
                Some(&bridge),
                req.veth_queues.get(),
            )
            .await?;

        // 2b. The port's VLANs, while it is still down.
        if let Some((plan, state)) = &vlan {
            bridge_vlan::configure_port(&cx.host, &host_link, plan, *state).await?;
        }

        // 3. Docker hosts drop bridged frames in FORWARD; let this bridge's
        //    own traffic through (pipework#211). After the veth: its
        //    temporary name on the bridge tells a concurrent detach or gc
        //    that a live pipework still needs the rule; on rollback the
        //    rule goes first unless another attachment uses it.
        //    Where it is safe, conntrack is skipped for frames that stay
        //    within the bridge (firewall/notrack.rs).
        let addrs = if bridge.index != 0 {
            cx.host.addrs(bridge.index).await?
        } else {
            Vec::new()
        };
        let wants = firewall::Wants {
            notrack: !req.keep_conntrack,
            bridge_has_addr: addrs.iter().any(|a| a.net.is_ipv4()),
            // Link-local does not count: every up bridge has one
            // (firewall/notrack.rs).
            bridge_has_addr6: addrs.iter().any(|a| match a.net.ip() {
                std::net::IpAddr::V6(v6) => !v6.is_unicast_link_local(),
                std::net::IpAddr::V4(_) => false,
            }),
        };
        if let Some(note) = firewall::allow_bridge(
            &cx.host,
            &bridge,
            host_link.index,
            cx.host.dry_run,
            wants,
            j,
        )? {
            notes.push(note);
        }

        // 4. The host end takes its final name, its record and comes up in
        //    one request: from now on it forwards on the bridge.
        cx.record.k = Kind::Bridge;
        cx.record.hi = Some(host_name.clone());
        cx.record.x.tc_redirect = tcr_mac.as_ref().map(tc_redirect::mac_hex);
        let mut host_rec = cx.record.clone();
        host_rec.p = None;
        let id = Ident {
            ns: host_ns(),
            index: host_link.index,
        };
        let alias = host_rec.alias_for(id, cx.host.dry_run)?;
        cx.host
            .rename_alias_up(&host_link, &host_name, &alias)
            .await?;
        if !cx.host.dry_run {
            cx.made = cx.cont.link_by_name(&guest_tmp).await?;
        }

        // 5. --tc-redirect: rules between this port and the other opted-in
        //    ports, now that its record tells other attaches and gc it is
        //    one of them (tc_redirect.rs).
        if let Some(mac) = tcr_mac {
            let port = crate::netlink::Link {
                name: host_name.clone(),
                ..host_link.clone()
            };
            let n = tc_redirect::install(&cx.host, &bridge, &port, mac, j).await?;
            notes.push(format!(
                "tc redirect: {n} other opted-in port(s) of {} reached without the bridge",
                bridge.name
            ));
        }

        Ok(HostSide {
            kind: "bridge",
            host: bridge.name.clone(),
            host_ifname: Some(host_name),
            mtu,
            notes,
        })
    }

    async fn detach(&self, host: &Net, cont: &Net, rec: &Record) -> Result<()> {
        // Deleting either end removes the pair; prefer the container end
        // (always reachable through the guest's namespace). The host end
        // only when it verifies as this attachment's own.
        // --tc-redirect: rules on other ports pointing at this port go
        // before it does (a rule must not outlive its target).
        // The bridge's tcr lock covers the sweep and the deletion: an
        // install in between would add rules pointing at this port.
        let tcr_lock = if rec.x.tc_redirect.is_some() {
            let lock = tc_redirect::lock(host, &rec.h)?;
            let gone = inventory::host_end(host, rec).await?.map(|l| l.index);
            if let Some(br) = host.link_by_name(&rec.h).await? {
                tc_redirect::sweep(host, &br, gone, host.dry_run).await?;
            }
            lock
        } else {
            None
        };
        if let Some(l) = cont.link_by_name(&rec.ifname).await? {
            cont.delete_link(&l).await?;
        } else if let Some(l) = inventory::host_end(host, rec).await? {
            host.delete_link(&l).await?;
        }
        drop(tcr_lock);
        bridge_vlan::release(host, rec).await?;
        firewall::release_bridge_if_unused(host, &rec.h).await
    }
}
