//! Bad input: every case must exit non-zero with exactly one line on stderr
//! that names the bad token, and change nothing on the host or in the guest.
mod common;
use common::*;

#[test]
fn bad_input_table() {
    if !require_env() {
        return;
    }
    let g = BridgeGuard::new("brpwt");
    let br = g.0.as_str();
    let c = Container::run("pwt-bad");
    let stopped = Container::run("pwt-stp");
    assert!(docker(&["stop", "-t", "0", &stopped.name]).status.success());
    let n = Netns::new("pwtbad");
    let ns = n.spec();
    let cn = c.name.as_str();
    let long = "abcdefghijklmnop"; // 16 characters
    let long_br = format!("br{long}");

    // (arguments, text the single error line must contain)
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec![br, cn, "10.0.0.2"], "Maybe you meant 10.0.0.2/24?"),
        (
            vec![br, cn, "2001:db8::5"],
            "Maybe you meant 2001:db8::5/64?",
        ),
        (vec![br, cn, "10.0.0.300/24"], "10.0.0.300/24"),
        (vec![br, cn, "10.0.0.2/33"], "10.0.0.2/33"),
        (vec![br, cn, "10.0.0.2/abc"], "10.0.0.2/abc"),
        (vec![br, cn, "hello"], "hello"),
        (vec![br, cn, "10.0.0.2/24@2001:db8::1"], "2001:db8::1"),
        (vec![br, cn, "10.0.0.2/24@gateway"], "gateway"),
        (vec![br, cn, "10.0.0.2/24@10.0.0.2"], "10.0.0.2"),
        (vec![br, cn, "224.0.0.5/24"], "224.0.0.5/24"),
        (vec![br, cn, "127.0.0.2/8"], "127.0.0.2/8"),
        (vec![br, cn, "0.0.0.0/24"], "0.0.0.0/24"),
        (vec![br, cn, "255.255.255.255/32"], "255.255.255.255/32"),
        (
            vec![br, cn, "10.0.0.2/24", "01:00:5e:00:00:01"],
            "01:00:5e:00:00:01",
        ),
        (
            vec![br, cn, "10.0.0.2/24", "00:00:00:00:00:00"],
            "00:00:00:00:00:00",
        ),
        (
            vec![br, cn, "10.0.0.2/24", "zz:zz:zz:zz:zz:zz"],
            "zz:zz:zz:zz:zz:zz",
        ),
        (
            vec![br, cn, "10.0.0.2/24", "26:2e:71:98:60"],
            "26:2e:71:98:60",
        ),
        (vec![br, "-i", long, cn, "10.0.0.2/24"], long),
        (vec![br, "-l", long, cn, "10.0.0.2/24"], long),
        (vec![br, "-i", "a/b", cn, "10.0.0.2/24"], "a/b"),
        (vec![&long_br, cn, "10.0.0.2/24"], &long_br),
        (
            vec![br, "pwt-nosuch-container", "10.0.0.2/24"],
            "pwt-nosuch-container",
        ),
        (vec![br, &stopped.name, "10.0.0.2/24"], "not running"),
        (vec!["nobrpwt", cn, "10.0.0.2/24"], "nobrpwt"),
        (vec![br, "-a", "5", cn, "10.0.0.2/24"], "5"),
        (vec![br, "-a", "6", cn, "10.0.0.2/24"], "10.0.0.2/24"),
        (vec![br, cn, "10.0.0.2/24", "@4095"], "4095"),
        (vec![br, cn, "10.0.0.2/24", "@0"], "0"),
        (vec![br, cn, "10.0.0.2/24", "@abc"], "abc"),
        (vec![br, cn, "10.0.0.2/24", "@10"], "@10"),
        (vec![br, cn, "10.0.0.2/24", "--mtu", "50"], "50"),
        (vec![br, cn, "10.0.0.2/24", "--mtu", "abc"], "abc"),
        (
            vec![br, cn, "10.0.0.2/24", "--macvlan-mode", "fast"],
            "fast",
        ),
        (vec![br, cn, "10.0.0.2/24", "--ipvlan", "l9"], "l9"),
        (
            vec![br, cn, "10.0.0.2/24", "--ipvlan", "l2", "--direct-phys"],
            "--direct-phys",
        ),
        (vec![br, cn], "missing address"),
        (vec![br, "pid:abc", "10.0.0.2/24"], "pid:abc"),
        (
            vec![br, "netns:pwt-nosuch", "10.0.0.2/24"],
            "netns:pwt-nosuch",
        ),
        (
            vec![br, "/nonexistent/pwt", "10.0.0.2/24"],
            "/nonexistent/pwt",
        ),
        (vec![br, "/etc/hostname", "10.0.0.2/24"], "/etc/hostname"),
        (vec![br, "../etc", "10.0.0.2/24"], "../etc"),
        (
            vec![
                br,
                &ns,
                "10.0.0.2/24@10.0.0.1",
                "--ip",
                "10.0.1.2/24@10.0.1.1",
            ],
            "10.0.1.2/24@10.0.1.1",
        ),
        (
            vec![br, &ns, "dhcp", "--ip", "10.0.0.3/24"],
            "cannot be combined",
        ),
        (vec![br, &ns, "10.0.0.2/24", "--frobnicate"], "--frobnicate"),
        // Open vSwitch: OVS-only options on a name that is no OVS bridge, VLAN
        // and OpenFlow numbers out of range, and a missing OVSDB socket.
        (
            vec![br, &ns, "10.0.0.2/24", "--ofport", "5"],
            "not an OVS bridge",
        ),
        (
            vec![br, &ns, "10.0.0.2/24", "--trunk", "10,4095"],
            "10,4095",
        ),
        (vec![br, &ns, "10.0.0.2/24", "--ofport", "0"], "0"),
        (
            vec![
                "ovspwt0",
                &ns,
                "10.0.0.2/24",
                "--ovsdb",
                "unix:/nonexistent/pwt.sock",
            ],
            "/nonexistent/pwt.sock",
        ),
    ];
    assert!(cases.len() >= 30);

    let host_before = host_state();
    let cont_before = c.net_state();
    let ns_before = ns_state(&n.path());
    for (args, want) in &cases {
        let o = pipework(args);
        let err = stderr(&o);
        assert!(!o.status.success(), "{args:?} succeeded");
        assert_eq!(err.lines().count(), 1, "{args:?}: not one line: {err}");
        assert!(
            err.contains(want),
            "{args:?}: {err:?} does not name {want:?}"
        );
        assert!(err.starts_with("pipework: "), "{args:?}: {err}");
        assert_same(&host_before, &host_state(), &format!("host after {args:?}"));
    }
    assert_same(&cont_before, &c.net_state(), "container");
    assert_same(&ns_before, &ns_state(&n.path()), "namespace");
}

#[test]
fn without_cap_net_admin_we_refuse_in_one_line() {
    if !require_env() {
        return;
    }
    // setpriv drops every capability while staying uid 0.
    let o = sh(
        "setpriv",
        &["--inh-caps=-all", "--bounding-set=-all", BIN, "ls"],
    );
    let err = stderr(&o);
    assert!(!o.status.success());
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("CAP_NET_ADMIN"), "{err}");
}
