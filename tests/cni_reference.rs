//! Side by side with the reference `bridge` plugin (containernetworking-
//! plugins, Debian's /usr/lib/cni): the same config shape, with only
//! `type` changed, gives the same address, routes and interface list.
mod cni_util;

use cni_util::{Call, REF_DIR, Scratch, in_ns, with_prev};
use serde_json::{Value, json};

fn conf(plugin: &str, br: &str, data: &str, is_gw: bool) -> Value {
    json!({
        "cniVersion": "1.0.0",
        "name": "pwcside",
        "type": plugin,
        "bridge": br,
        "isGateway": is_gw,
        "ipam": {
            "type": "host-local",
            "dataDir": data,
            "subnet": "10.231.9.0/24",
            "routes": [{"dst": "0.0.0.0/0"}, {"dst": "192.0.2.0/24", "gw": "10.231.9.254"}]
        }
    })
}

/// What a container sees: interface names with state and MTU, IPv4
/// addresses, and routes, with per-run details (MACs, indexes) removed.
fn view(ns: &str) -> (Vec<String>, Vec<String>, String) {
    let links = in_ns(ns, &["ip", "-o", "link"])
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let name = f[1]
                .trim_end_matches(':')
                .split('@')
                .next()
                .unwrap_or("")
                .to_string();
            let mtu = f
                .iter()
                .position(|x| *x == "mtu")
                .map(|i| f[i + 1])
                .unwrap_or("");
            let up = l.contains(",UP") || l.contains("<UP");
            format!("{name} mtu {mtu} up={up}")
        })
        .collect();
    let addrs = in_ns(ns, &["ip", "-o", "-4", "addr"])
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            format!("{} {}", f[1], f[3])
        })
        .collect();
    (links, addrs, in_ns(ns, &["ip", "-4", "route"]))
}

fn side(
    plugin: &str,
    s: &mut Scratch,
    tag: &str,
    is_gw: bool,
) -> (Value, (Vec<String>, Vec<String>, String), String) {
    let ns_name = format!("pwc-ref-{tag}");
    let ns = s.netns(&ns_name);
    let br = s.link(&format!("pwcrf{tag}"));
    let data = s.dir(&format!("/tmp/pwc-ref-ipam-{tag}"));
    let c = conf(plugin, &br, &data, is_gw);
    let call = Call {
        id: "pwc-side",
        netns: &ns,
        ifname: "eth0",
    };
    let res = call.exec(plugin, "ADD", &c).ok().clone();
    let seen = view(&ns_name);
    let host_addr = cni_util::sh(&["ip", "-o", "-4", "addr", "show", "dev", &br])
        .split_whitespace()
        .nth(3)
        .unwrap_or("")
        .to_string();
    let cc = with_prev(&c, &res);
    call.exec(plugin, "CHECK", &cc).ok();
    call.exec(plugin, "DEL", &cc).ok();
    assert!(
        !in_ns(&ns_name, &["ip", "-o", "link"]).contains("eth0"),
        "{plugin}: DEL removed eth0"
    );
    (res, seen, host_addr)
}

fn compare(is_gw: bool) {
    let mut s = Scratch::default();
    let reference = format!("{REF_DIR}/bridge");
    let t = if is_gw { "g" } else { "n" };
    let (rr, rv, rh) = side(&reference, &mut s, &format!("{t}r"), is_gw);
    let (or, ov, oh) = side(cni_util::OURS, &mut s, &format!("{t}o"), is_gw);

    assert_eq!(or["cniVersion"], rr["cniVersion"]);
    assert_eq!(
        or["ips"], rr["ips"],
        "same addresses, gateways and interface index"
    );
    assert_eq!(or["routes"], rr["routes"]);
    let ri = rr["interfaces"].as_array().unwrap();
    let oi = or["interfaces"].as_array().unwrap();
    assert_eq!(oi.len(), ri.len(), "same interface list: {oi:?} vs {ri:?}");
    for (o, r) in oi.iter().zip(ri) {
        assert_eq!(o["sandbox"].is_string(), r["sandbox"].is_string());
        assert!(o["mac"].as_str().is_some_and(|m| m.len() == 17), "{o}");
    }
    assert_eq!(oi[2]["name"], ri[2]["name"]);
    // Inside the container: same links, addresses and routes.
    assert_eq!(ov, rv, "container view differs");
    assert_eq!(ov.1, vec!["eth0 10.231.9.2/24".to_string()]);
    assert!(ov.2.contains("default via 10.231.9.1 dev eth0"), "{}", ov.2);
    assert!(
        ov.2.contains("192.0.2.0/24 via 10.231.9.254 dev eth0"),
        "{}",
        ov.2
    );
    // On the host: the bridge holds the gateway exactly when isGateway.
    assert_eq!(oh, rh, "bridge address");
    assert_eq!(rh.is_empty(), !is_gw);
}

#[test]
fn same_as_reference_bridge_with_gateway() {
    require_env!();
    compare(true);
}

#[test]
fn same_as_reference_bridge_without_gateway() {
    require_env!();
    compare(false);
}
