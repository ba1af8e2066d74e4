//! `--tc-redirect`'s kernel objects: an ingress qdisc on a bridge port
//! (the host end of a guest's veth) and u32 filters on it that send
//! unicast frames for another guest's MAC straight to that guest's host
//! end (`tc filter add dev A ingress protocol all pref PRIO u32 match
//! ether dst MAC action mirred egress redirect dev B`), so they never
//! enter the bridge or bridge-nf. The driver (driver/tc_redirect.rs)
//! decides which; this only speaks rtnetlink.
//!
//! Ownership: every filter of ours sits at preference `PRIO` and its
//! mirred action carries a cookie (`TCA_ACT_COOKIE`, never read by the
//! kernel) of `COOKIE_TAG`, the target's MAC and ifindex. A filter without
//! both is someone else's and is never listed nor removed.
use super::errors::nl_err;
use super::{Link, Net};
use crate::error::{Error, Result};
use futures::StreamExt;
use netlink_packet_core::{NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REQUEST};
use netlink_packet_core::{NetlinkMessage, NetlinkPayload};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::link::{InfoBridgePort, InfoPortData, LinkAttribute, LinkInfo};
use netlink_packet_route::tc::{
    TcAction, TcActionAttribute, TcActionGeneric, TcActionMirror, TcActionMirrorOption,
    TcActionOption, TcActionType, TcAttribute, TcFilterU32, TcFilterU32Option, TcHandle, TcMessage,
    TcMirror, TcMirrorActionType, TcOption, TcU32Key, TcU32Selector, TcU32SelectorFlags,
};

/// Filter preference of ours (0x7077, "pw"): far from tc's default
/// 49152 and from 0, which the kernel would replace with its own pick.
pub const PRIO: u16 = 0x7077;
/// Start of every cookie of ours; then 6 bytes of MAC, 4 of ifindex.
pub const COOKIE_TAG: &[u8; 5] = b"pwtcr";
/// ETH_P_ALL, in network byte order as the filter header carries it.
const ETH_P_ALL_BE: u16 = 0x0003u16.to_be();

/// One filter of ours, as dumped from a port's ingress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redirect {
    /// The port (host end) the filter sits on.
    pub port: u32,
    /// The u32 filter's handle (what a delete names).
    pub handle: u32,
    /// The mirred action's device now: 0 once that device is gone (the
    /// kernel drops its reference when it unregisters).
    pub dev: u32,
    /// What the cookie says the target was when we made the rule.
    pub mac: [u8; 6],
    pub target: u32,
    /// Packets the filter matched (the selector's hit counter).
    pub hits: u64,
}

fn cookie(mac: [u8; 6], target: u32) -> Vec<u8> {
    let mut c = COOKIE_TAG.to_vec();
    c.extend_from_slice(&mac);
    c.extend_from_slice(&target.to_le_bytes());
    c
}

fn parse_cookie(c: &[u8]) -> Option<([u8; 6], u32)> {
    let rest = c.strip_prefix(&COOKIE_TAG[..])?;
    if rest.len() != 10 {
        return None;
    }
    let mac = rest[..6].try_into().ok()?;
    let target = u32::from_le_bytes(rest[6..].try_into().ok()?);
    Some((mac, target))
}

/// `match ether dst MAC` as iproute2 encodes it: u32 keys relative to the
/// network header, the MAC header 14 bytes before it (first two MAC bytes
/// in the low half of the word at -16, the last four at -12).
fn ether_dst_keys(mac: [u8; 6]) -> Vec<TcU32Key> {
    let key = |mask, val, off| {
        let mut k = TcU32Key::default();
        (k.mask, k.val, k.off) = (mask, val, off);
        k
    };
    vec![
        key(0x0000_ffff, u32::from_be_bytes([0, 0, mac[0], mac[1]]), -16),
        key(
            !0,
            u32::from_be_bytes([mac[2], mac[3], mac[4], mac[5]]),
            -12,
        ),
    ]
}

/// The ingress qdisc (ffff:) of ifindex `port`.
fn ingress_qdisc_msg(port: u32) -> TcMessage {
    let mut m = TcMessage::with_index(port as i32);
    m.header.parent = TcHandle::INGRESS;
    m.header.handle = TcHandle::from(0xffff_0000);
    m.attributes.push(TcAttribute::Kind("ingress".into()));
    m
}

fn ingress_filter_msg(port: u32) -> TcMessage {
    let mut m = TcMessage::with_index(port as i32);
    m.header.parent = TcHandle {
        major: 0xffff,
        minor: TcHandle::MIN_INGRESS,
    };
    m.header.info = (u32::from(PRIO) << 16) | u32::from(ETH_P_ALL_BE);
    m
}

impl Net {
    /// Send one tc request and wait for its ack; `Err(errno)` if refused.
    async fn tc_request(&self, msg: RouteNetlinkMessage, flags: u16, what: &str) -> Result<()> {
        let mut req = NetlinkMessage::from(msg);
        req.header.flags = NLM_F_REQUEST | NLM_F_ACK | flags;
        let mut resp = self
            .handle
            .clone()
            .request(req)
            .map_err(|e| nl_err(what, e))?;
        while let Some(msg) = resp.next().await {
            if let NetlinkPayload::Error(e) = msg.payload
                && e.code.is_some()
            {
                return Err(Error::Netlink {
                    context: what.to_string(),
                    errno: e.raw_code().abs(),
                    message: "the kernel refused it".into(),
                });
            }
        }
        Ok(())
    }

    /// The ingress qdisc on `port`; one already there is fine. True when
    /// this call made it (the caller's to undo on a failed attach).
    pub async fn ensure_ingress_qdisc(&self, port: &Link) -> Result<bool> {
        if self.dry_run {
            println!("tc qdisc add dev {} ingress", port.name);
            return Ok(false);
        }
        let what = format!("ingress qdisc on {}", port.name);
        match self
            .tc_request(
                RouteNetlinkMessage::NewQueueDiscipline(ingress_qdisc_msg(port.index)),
                NLM_F_CREATE | NLM_F_EXCL,
                &what,
            )
            .await
        {
            Ok(()) => Ok(true),
            Err(Error::Netlink { errno, .. }) if errno == libc::EEXIST => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Remove the ingress qdisc on ifindex `port` (and every filter on
    /// it): only one `ensure_ingress_qdisc` made in this attach, while
    /// rolling it back. One already gone is fine.
    pub async fn del_ingress_qdisc(&self, port: u32) -> Result<()> {
        let what = format!("removing the ingress qdisc on ifindex {port}");
        match self
            .tc_request(
                RouteNetlinkMessage::DelQueueDiscipline(ingress_qdisc_msg(port)),
                0,
                &what,
            )
            .await
        {
            Err(Error::Netlink {
                errno: libc::ENOENT | libc::ENODEV | libc::EINVAL,
                ..
            }) => Ok(()),
            r => r,
        }
    }

    /// Frames entering `port` for `mac` go out of `target` instead.
    pub async fn add_redirect(&self, port: &Link, mac: [u8; 6], target: &Link) -> Result<()> {
        if self.dry_run {
            println!(
                "tc filter add dev {} ingress protocol all pref {PRIO} u32 match ether dst {} action mirred egress redirect dev {}",
                port.name,
                super::ops::mac_str(&mac),
                target.name
            );
            return Ok(());
        }
        let mut m = ingress_filter_msg(port.index);
        let mut sel = TcU32Selector::default();
        sel.flags = TcU32SelectorFlags::Terminal;
        sel.keys = ether_dst_keys(mac);
        sel.nkeys = sel.keys.len() as u8;
        let mut generic = TcActionGeneric::default();
        generic.action = TcActionType::Stolen;
        let mut mirror = TcMirror::default();
        mirror.generic = generic;
        mirror.eaction = TcMirrorActionType::EgressRedir;
        mirror.ifindex = target.index;
        let mut action = TcAction::default();
        action.tab = 1;
        action.attributes = vec![
            TcActionAttribute::Kind(TcActionMirror::KIND.to_string()),
            TcActionAttribute::Options(vec![TcActionOption::Mirror(TcActionMirrorOption::Parms(
                mirror,
            ))]),
            TcActionAttribute::Cookie(cookie(mac, target.index)),
        ];
        m.attributes
            .push(TcAttribute::Kind(TcFilterU32::KIND.to_string()));
        m.attributes.push(TcAttribute::Options(vec![
            TcOption::U32(TcFilterU32Option::Selector(sel)),
            TcOption::U32(TcFilterU32Option::Action(vec![action])),
        ]));
        let what = format!("tc redirect {} -> {}", port.name, target.name);
        self.tc_request(
            RouteNetlinkMessage::NewTrafficFilter(m),
            NLM_F_CREATE | NLM_F_EXCL,
            &what,
        )
        .await
    }

    /// Our filters on `port`'s ingress (none when it has no ingress qdisc).
    pub async fn redirects(&self, port: u32) -> Result<Vec<Redirect>> {
        let mut msgs = self
            .handle
            .traffic_filter(port as i32)
            .get()
            .ingress()
            .execute();
        let mut out = Vec::new();
        while let Some(m) = msgs.next().await {
            let m = match m {
                Ok(m) => m,
                // No ingress qdisc (EINVAL) or the port just went (ENODEV).
                Err(rtnetlink::Error::NetlinkError(e))
                    if matches!(e.raw_code().abs(), libc::EINVAL | libc::ENODEV) =>
                {
                    return Ok(out);
                }
                Err(e) => return Err(nl_err(format!("listing filters on ifindex {port}"), e)),
            };
            if (m.header.info >> 16) as u16 != PRIO {
                continue;
            }
            if let Some(r) = ours(port, &m) {
                out.push(r);
            }
        }
        Ok(out)
    }

    /// Remove one filter of ours; one already gone is fine.
    pub async fn del_redirect(&self, r: &Redirect) -> Result<()> {
        if self.dry_run {
            println!(
                "tc filter del dev ifindex {} ingress pref {PRIO} handle {:x} u32",
                r.port, r.handle
            );
            return Ok(());
        }
        let mut m = ingress_filter_msg(r.port);
        m.header.handle = TcHandle::from(r.handle);
        m.attributes
            .push(TcAttribute::Kind(TcFilterU32::KIND.to_string()));
        let what = format!("removing tc redirect on ifindex {}", r.port);
        match self
            .tc_request(RouteNetlinkMessage::DelTrafficFilter(m), 0, &what)
            .await
        {
            Err(Error::Netlink {
                errno: libc::ENOENT | libc::ENODEV | libc::EINVAL,
                ..
            }) => Ok(()),
            r => r,
        }
    }

    /// Is bridge port `port` isolated (`bridge link set … isolated on`)?
    pub async fn port_isolated(&self, port: u32) -> Result<bool> {
        let mut msgs = self.handle.link().get().match_index(port).execute();
        let mut iso = false;
        while let Some(m) = msgs.next().await {
            let m = m.map_err(|e| nl_err(format!("looking at ifindex {port}"), e))?;
            for a in &m.attributes {
                let LinkAttribute::LinkInfo(infos) = a else {
                    continue;
                };
                for i in infos {
                    if let LinkInfo::PortData(InfoPortData::BridgePort(opts)) = i {
                        iso |= opts.contains(&InfoBridgePort::Isolated(true));
                    }
                }
            }
        }
        Ok(iso)
    }
}

/// A dumped filter, if it is one of ours (u32 with our cookie on a
/// mirred redirect).
fn ours(port: u32, m: &TcMessage) -> Option<Redirect> {
    let mut sel_hits = 0;
    let mut found = None;
    for a in &m.attributes {
        let TcAttribute::Options(opts) = a else {
            continue;
        };
        for o in opts {
            match o {
                // struct tc_u32_pcnt: rcnt (looked at), rhit (matched), ….
                TcOption::U32(TcFilterU32Option::Pnct(p)) if p.len() >= 16 => {
                    sel_hits = u64::from_ne_bytes(p[8..16].try_into().unwrap_or_default());
                }
                TcOption::U32(TcFilterU32Option::Action(acts)) => {
                    for act in acts {
                        let mut dev = None;
                        let mut ck = None;
                        for aa in &act.attributes {
                            match aa {
                                TcActionAttribute::Cookie(c) => ck = parse_cookie(c),
                                TcActionAttribute::Options(os) => {
                                    for o in os {
                                        if let TcActionOption::Mirror(
                                            TcActionMirrorOption::Parms(p),
                                        ) = o
                                        {
                                            dev = Some(p.ifindex);
                                        }
                                    }
                                }
                                _ => {}
                            }
                        }
                        if let (Some(dev), Some((mac, target))) = (dev, ck) {
                            found = Some((dev, mac, target));
                        }
                    }
                }
                _ => {}
            }
        }
    }
    let (dev, mac, target) = found?;
    Some(Redirect {
        port,
        handle: u32::from(m.header.handle),
        dev,
        mac,
        target,
        hits: sel_hits,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_what_iproute2_makes_of_match_ether_dst() {
        // `tc filter show` for `match ether dst 02:42:ac:11:00:02`:
        // match 00000242/0000ffff at -16, match ac110002/ffffffff at -12.
        let k = ether_dst_keys([0x02, 0x42, 0xac, 0x11, 0x00, 0x02]);
        assert_eq!((k[0].val, k[0].mask, k[0].off), (0x0242, 0xffff, -16));
        assert_eq!((k[1].val, k[1].mask, k[1].off), (0xac11_0002, !0, -12));
    }

    #[test]
    fn cookies_round_trip_and_foreign_ones_are_not_ours() {
        let c = cookie([2, 0, 0, 0, 0, 9], 77);
        assert!(c.len() <= 16, "TC_COOKIE_MAX_SIZE");
        assert_eq!(parse_cookie(&c), Some(([2, 0, 0, 0, 0, 9], 77)));
        assert_eq!(parse_cookie(b"pwtcr"), None);
        assert_eq!(parse_cookie(&[0u8; 15]), None);
    }
}
