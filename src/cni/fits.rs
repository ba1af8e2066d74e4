//! Will an attachment's record fit the kernel's 255-byte link alias? The
//! kernel refuses a longer alias only once the link exists, so ADD asks
//! before building anything, on the record as its driver will write it,
//! and refuses in one line saying by how many bytes.
use super::attach::Mode;
use super::error::{CniError, CniResult};
use crate::record::{Kind, Record};
use crate::request::{AttachRequest, HostMode};

/// The veth's host end (and OVS port) a CNI guest gets: `vpw` and 10 hex
/// digits, as it has no pid for the classic `v<if>pl<pid>`
/// (driver::bridge::host_ifname).
const VETH_HOST_END: usize = 13;

/// A VF's PF name and the largest index it may get, when its host
/// interface resolves (else `planned` counts both at their longest).
pub(super) fn vf_of(host: &str) -> Option<(String, u32)> {
    let target = crate::sriov::parse_target(host).ok()?;
    let (pf, index) = crate::sriov::resolve(&target, host).ok()?;
    Some((pf.name, index.unwrap_or(pf.num.saturating_sub(1))))
}

/// The record `attach_to` will seal for `req` in mode `mode`, guest tag
/// `tag`, namespace inode `ino` (with an overlay's addresses `ips`; a VF's
/// PF and index from `vf_of`): the fields the driver will write, and this
/// process's pid (`attach_to` runs here and records it until the commit).
pub(super) fn planned(
    req: &AttachRequest,
    mode: Mode,
    tag: &str,
    ino: u64,
    ips: &[std::net::IpAddr],
    vf: Option<(String, u32)>,
) -> Record {
    let veth = || Some("x".repeat(VETH_HOST_END));
    let mut x = req.record_extras.clone();
    for ip in ips {
        match ip {
            std::net::IpAddr::V4(a) => x.overlay_ip = Some(*a),
            std::net::IpAddr::V6(a) => x.overlay_ip6 = Some(*a),
        }
    }
    let (h, mut hi) = (req.host.clone(), None);
    match (&req.mode, mode) {
        (_, Mode::Bridge | Mode::Overlay) => {
            hi = veth();
            // A VLAN on a bridge port, and bridge filtering turned on.
            x.vlan = req.vlan;
            x.bridge_vlan_filtering = req.vlan.map(|_| true);
            // --tc-redirect: the guest's MAC, 12 hex digits (bridge.rs).
            x.tc_redirect = req.tc_redirect.then(|| "0".repeat(12));
        }
        (HostMode::Macvlan(m) | HostMode::Ipvlan(m), _) => {
            x.mode = Some(m.clone());
            // The parent's 802.1Q sub-interface, `PARENT.VID`.
            if let Some(v) = req.vlan {
                hi = Some(format!("{h}.{v}"));
                x.vlan = Some(v);
            }
        }
        // Its VLAN lives in OVSDB; its socket is recorded when it is not
        // the default one.
        (_, Mode::Ovs) => {
            hi = veth();
            x.ovs_port = veth();
            x.ovsdb = crate::ovsdb::socket_path(req.ovs.db.as_deref())
                .ok()
                .filter(|p| p != std::path::Path::new(crate::ovsdb::DEFAULT_SOCKET))
                .map(|p| p.display().to_string());
        }
        // The host interface as given (its PCI address, or `vf:PF:N`).
        (_, Mode::Sriov) => {
            let (pf, index) = vf.unwrap_or(("x".repeat(15), u32::from(u16::MAX)));
            x.vf_pci = Some("0000:00:00.0".into());
            x.vf_pf = Some(pf);
            x.vf_index = Some(index);
        }
        _ => {}
    }
    Record {
        k: Kind::from_name(mode.kind()).unwrap_or_default(),
        h,
        hi,
        g: tag.to_string(),
        // `record_no_id`: the tag holds the container ID.
        id: None,
        ifname: req.ifname.clone(),
        n: ino,
        p: Some(std::process::id()),
        x,
        ..Default::default()
    }
}

/// Refuse `rec` if its sealed alias exceeds 255 bytes. `network`
/// describes an overlay network ("dual-stack"), else the mode is named.
pub(super) fn check(rec: &Record, mode: Mode, network: Option<&str>) -> CniResult<()> {
    let len = rec.sealed_len();
    if len <= 255 {
        return Ok(());
    }
    let what = network.map_or_else(
        || format!("{} attachment", mode.name()),
        |n| format!("{n} network"),
    );
    let name = super::tag::decode(&rec.g).map_or("", |(n, _, _)| n);
    Err(CniError::config(format!(
        "network name '{name}' with CNI_CONTAINERID ({}) and CNI_IFNAME '{}' is too long to record on the link of this {what} ({len} of the kernel's 255 bytes); {}; nothing kept",
        recorded_id(&rec.g),
        rec.ifname,
        shorten(&rec.g, len - 255)
    )))
}

/// What to shorten, and by how much (`over` bytes), for tag `tag`. A
/// 64-hex ID is recorded compact (43 bytes); a shorter ID is no longer
/// 64 hex digits and is recorded as given, in the longer `cni:` spelling
/// (a cut under 21 bytes makes the record longer): so only the network
/// name. Any other ID is recorded as given: either.
pub(super) fn shorten(tag: &str, over: usize) -> String {
    if super::tag::is_compact(tag) {
        format!("shorten the network name by {over} bytes")
    } else {
        format!("shorten the network name or the container ID by {over} bytes")
    }
}

/// The tag's container ID as recorded (`tag::COMPACT_ID_LEN` bytes for 64
/// hex digits), for the limit errors.
pub(super) fn recorded_id(tag: &str) -> String {
    let recorded = tag.split('/').nth(1).map_or(0, str::len);
    match super::tag::decode(tag) {
        Some((_, c, _)) if c.len() != recorded => {
            format!("{} bytes, {recorded} as recorded", c.len())
        }
        Some((_, c, _)) => format!("{} bytes", c.len()),
        None => format!("{recorded} bytes"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 32 bytes, and a 64-hex ID as Kubernetes/containerd pass it.
    const NET32: &str = "kubernetes-pod-network-attach-32";
    const HEX: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
    /// The largest namespace inode (procfs hands them out below 2^32).
    const INO: u64 = u32::MAX as u64;

    fn req(host: &str, mode: HostMode, vlan: Option<u16>) -> AttachRequest {
        AttachRequest {
            host: host.into(),
            ifname: "eth0".into(),
            mode,
            vlan,
            ..Default::default()
        }
    }

    /// The record, its builder's pid at the kernel's largest (pid_max).
    fn record(req: &AttachRequest, mode: Mode, tag: &str) -> Record {
        // A VF: a 15-character PF with 256 VFs.
        let vf = Some(("x".repeat(15), 255));
        let mut r = planned(req, mode, tag, INO, &[], vf);
        r.p = Some(4_194_304);
        r
    }

    /// OVS through the default socket, whatever `PIPEWORK_OVSDB` says.
    fn ovs_default(mut r: AttachRequest) -> AttachRequest {
        r.ovs.db = Some(crate::ovsdb::DEFAULT_SOCKET.into());
        r
    }

    fn fits(req: &AttachRequest, mode: Mode, net: &str) -> CniResult<()> {
        let tag = super::super::tag::encode(net, HEX, "eth0");
        check(&record(req, mode, &tag), mode, None)
    }

    /// A 32-byte network name with a 64-hex ID and `eth0` fits each kind's
    /// record with 15-character host interface names (a VLAN's parent: 10,
    /// so `PARENT.VID` has 15; a VF: its PCI address, a 15-character PF
    /// with 256 VFs), a 4-digit VLAN and a 7-digit pid;
    /// before the compact tag it fit none of those with a VLAN.
    #[test]
    fn a_32_byte_name_with_a_64_hex_id_fits_every_kind() {
        let h15 = "x".repeat(15);
        let v = Some(4094);
        let m = |s: &str| HostMode::Macvlan(s.into());
        let cases = [
            ("bridge + VLAN", req(&h15, HostMode::Auto, v), Mode::Bridge),
            (
                "macvlan + VLAN",
                req("enp129s0f1", m("passthru"), v),
                Mode::Macvlan,
            ),
            ("macvlan", req(&h15, m("passthru"), None), Mode::Macvlan),
            (
                "ipvlan + VLAN",
                req("enp129s0f1", HostMode::Ipvlan("l3s".into()), v),
                Mode::Ipvlan,
            ),
            ("ovs", ovs_default(req(&h15, HostMode::Auto, v)), Mode::Ovs),
            ("sriov", req("0000:01:10.2", HostMode::Auto, v), Mode::Sriov),
            ("phys", req(&h15, HostMode::DirectPhys, None), Mode::Phys),
        ];
        for (what, r, mode) in &cases {
            let tag = super::super::tag::encode(NET32, HEX, "eth0");
            let len = record(r, *mode, &tag).sealed_len();
            assert!(fits(r, *mode, NET32).is_ok(), "{what}: {len}");
            // The same record with the legacy tag and the short id, as
            // before: over the limit with a VLAN.
            let mut old = planned(
                r,
                *mode,
                &super::super::tag::legacy(NET32, HEX, "eth0"),
                INO,
                &[],
                None,
            );
            old.id = Some(HEX[..12].into());
            // Even without the builder's pid, which the commit drops.
            old.p = None;
            if r.vlan.is_some() && matches!(mode, Mode::Bridge | Mode::Macvlan | Mode::Ipvlan) {
                assert!(old.sealed_len() > 255, "{what}: {}", old.sealed_len());
            }
        }
    }

    /// `tcRedirect` records the guest's MAC (`,"tcr":"<12 hex>"`): counted
    /// as the bridge driver writes it, and a 32-byte name still fits.
    #[test]
    fn tc_redirect_mac_is_counted() {
        let tag = super::super::tag::encode(NET32, HEX, "eth0");
        let plain = req(&"x".repeat(15), HostMode::Auto, None);
        let tcr = AttachRequest {
            tc_redirect: true,
            ..plain.clone()
        };
        let mut written = record(&plain, Mode::Bridge, &tag);
        written.x.tc_redirect = Some(crate::driver::tc_redirect::mac_hex(&[0xfe; 6]));
        let planned = record(&tcr, Mode::Bridge, &tag);
        assert_eq!(planned.sealed_len(), written.sealed_len());
        // 21 bytes, 27 when it opens the extras (`,"x":{}`).
        let without = record(&plain, Mode::Bridge, &tag).sealed_len();
        assert_eq!(planned.sealed_len(), without + 27);
        assert!(fits(&tcr, Mode::Bridge, NET32).is_ok());
    }

    /// Too long: one line, naming the network, the ID as recorded, the
    /// kind and the bytes over.
    #[test]
    fn too_long_is_one_accurate_line() {
        let net = "n".repeat(70);
        let r = req("cni0", HostMode::Auto, Some(100));
        let e = fits(&r, Mode::Bridge, &net).expect_err("too long");
        let rec = record(
            &r,
            Mode::Bridge,
            &super::super::tag::encode(&net, HEX, "eth0"),
        );
        let over = rec.sealed_len() - 255;
        assert_eq!(e.msg.lines().count(), 1, "{}", e.msg);
        for w in [
            net.as_str(),
            "64 bytes, 43 as recorded",
            "bridge attachment",
            &format!("shorten the network name by {over} bytes;"),
        ] {
            assert!(e.msg.contains(w), "{w}: {}", e.msg);
        }
        // A 64-hex ID cut short is spelled out in full: no advice to cut it.
        assert!(!e.msg.contains("container ID by"), "{}", e.msg);
        let legacy = super::super::tag::encode(&net, "pwc-ctr", "eth0");
        assert_eq!(
            shorten(&legacy, 3),
            "shorten the network name or the container ID by 3 bytes"
        );
        assert_eq!(recorded_id("cni:n/pwc-ctr/eth0"), "7 bytes");
    }

    /// The longest network name an overlay attachment's record holds with
    /// a 64-hex ID and `eth0`, at the longest addresses of each family
    /// (the record holds `ov-NAME` and the addresses besides the tag).
    #[cfg(feature = "overlay")]
    fn overlay_longest(ips: &[std::net::IpAddr]) -> usize {
        let fits_n = |n: usize| {
            let net = "n".repeat(n);
            let r = req(&format!("ov-{net}"), HostMode::Auto, None);
            let tag = super::super::tag::encode(&net, HEX, "eth0");
            let mut rec = planned(&r, Mode::Overlay, &tag, INO, ips, None);
            rec.p = Some(4_194_304);
            check(&rec, Mode::Overlay, Some("overlay")).is_ok()
        };
        (1..=64).take_while(|&n| fits_n(n)).last().unwrap_or(0)
    }

    /// README's figures, with a 64-hex ID and the longest IPv4 text: an
    /// IPv4 network takes any name (at most 12 bytes, `ov-NAME` being an
    /// interface name); a dual-stack one, twice the name (the tag and
    /// `ov-NAME`) and the IPv6 address's text, 37 bytes at most.
    #[cfg(feature = "overlay")]
    #[test]
    fn overlay_names_that_fit() {
        let ip = |s: &str| -> std::net::IpAddr { s.parse().expect("address") };
        let v4 = ip("255.255.255.255");
        let longest4 = overlay_longest(&[v4]);
        assert!(longest4 >= crate::overlay::names::MAX_NAME, "{longest4}");
        for v6 in [
            "fd67::2",
            "fd67::ffff",
            "2001:db8:1:2:3:4:5:6",
            "2001:db8:1234:5678::a",
        ] {
            let n = overlay_longest(&[v4, ip(v6)]);
            // One more byte of name would cost two.
            let used = 2 * n + v6.len();
            assert!(used <= 37 && used + 2 > 37, "{v6}: {n}");
        }
    }
}
