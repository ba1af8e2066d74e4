//! `overlay create --encrypt` on a host whose kernel has no WireGuard
//! (this one): refused in one line naming the module, nothing written to
//! etcd; and an attach to an encrypted network (defined from a host that
//! has WireGuard) refused the same way, nothing claimed, nothing built.
//! The encrypted datapath itself runs in the VM tier (overlay_wg_vm.rs).
mod common;
mod overlay_lab;

use common::require_env;
use overlay_lab::*;

fn has_wireguard() -> bool {
    std::path::Path::new("/sys/module/wireguard").exists()
}

#[test]
fn overlay_encrypt_is_refused_without_wireguard() {
    if !require_env() {
        return;
    }
    if has_wireguard() {
        eprintln!("SKIP: this kernel has WireGuard; the refusal is for hosts without it");
        return;
    }
    let mut lab = Lab::new("w", 120);
    let dump = |lab: &Lab| lab.etcdctl(&["get", "--prefix", "/pipework/overlay/"]);
    let before = dump(&lab);
    let o = lab.pw(
        0,
        &[
            "overlay",
            "create",
            "sec",
            "--subnet",
            "10.63.0.0/24",
            "--encrypt",
        ],
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{err}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(
        err.contains("--encrypt") && err.contains("module wireguard"),
        "names the flag and the module: {err}"
    );
    assert_eq!(dump(&lab), before, "nothing written to etcd");

    // The same network as a host with WireGuard would have stored it.
    let spec = r#"{"name":"sec","subnet":"10.63.0.0/24","vni":4444,"mtu":1370,"port":4789,"encrypt":true}"#;
    lab.etcdctl(&["put", "/pipework/overlay/net/sec", spec]);
    lab.etcdctl(&["put", "/pipework/overlay/vni/4444", "sec"]);
    let before = dump(&lab);
    let c = lab.container("c");
    let o = lab.pw(0, &["sec", &format!("netns:{c}"), "auto"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{err}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(
        err.contains("sec") && err.contains("module wireguard"),
        "{err}"
    );
    assert_eq!(dump(&lab), before, "nothing claimed in etcd");
    assert!(!links(&c).contains("eth1"), "{}", links(&c));
    // Nor does the agent build it, and `overlay status` says why.
    let host = links(&lab.host(0));
    assert!(
        !host.contains("ov-sec") && !host.contains("pw-wg"),
        "{host}"
    );
    let st = lab.pw_ok(0, &["overlay", "status"]);
    assert!(
        st.contains("host h0: no WireGuard, so encrypted network sec is not built there"),
        "{st}"
    );
    // An admin's device under the agent's WireGuard name but of another
    // kind: status is still whole and names it as a problem.
    let h0 = lab.host(0);
    ok("ip", &["-n", &h0, "link", "add", "pw-wg", "type", "bridge"]);
    let st = lab.pw(0, &["overlay", "status"]);
    let _ = run("ip", &["-n", &h0, "link", "del", "pw-wg"]);
    let out = String::from_utf8_lossy(&st.stdout);
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    assert!(
        out.contains("pw-wg: not a WireGuard device (kind bridge)") && out.contains("sec"),
        "{out}"
    );
}
