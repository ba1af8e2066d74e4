//! Our DHCP client against a real dnsmasq: lease contents, applying it,
//! rolling it back, an offer without a router.
mod dhcp_support;
use dhcp_support::{SRV_IP, rt};
use pipework::dhcp::{self, DhcpOptions};
use pipework::netlink::Journal;
use std::net::Ipv4Addr;

#[test]
fn lease_with_options_is_applied_and_rolled_back() {
    let Some(mut rig) = rig!("acq") else { return };
    rig.start_dnsmasq(
        "10.232.0.100,10.232.0.200",
        &[
            "--dhcp-option=option:router,10.232.0.1",
            "--dhcp-option=option:dns-server,10.232.0.53,10.232.0.54",
            "--dhcp-option=option:mtu,1400",
            "--dhcp-option=option:classless-static-route,192.168.77.0/24,10.232.0.254,0.0.0.0/0,10.232.0.1",
        ],
    );
    let ns = rig.cli_ns();
    let opts = DhcpOptions {
        hostname: Some("pwd-web1".into()),
        ..Default::default()
    };
    rt().block_on(async {
        let lease = dhcp::acquire(&ns, "eth0", &opts).await.expect("lease");
        let a = u32::from(lease.address);
        assert!(
            (u32::from(Ipv4Addr::new(10, 232, 0, 100))..=u32::from(Ipv4Addr::new(10, 232, 0, 200)))
                .contains(&a),
            "{lease:?}"
        );
        assert_eq!(lease.prefix, 24);
        assert_eq!(lease.router, Some(SRV_IP.parse().expect("ip")));
        assert_eq!(
            lease.dns,
            vec![Ipv4Addr::new(10, 232, 0, 53), Ipv4Addr::new(10, 232, 0, 54)]
        );
        assert_eq!(lease.mtu, Some(1400));
        assert_eq!(lease.server_id, SRV_IP.parse::<Ipv4Addr>().expect("ip"));
        assert_eq!(lease.lease_time, 120);
        assert_eq!(lease.routes.len(), 2, "{lease:?}");
        // dnsmasq saw our hostname and client identifier.
        let log = rig.log();
        assert!(log.contains("pwd-web1"), "hostname not sent: {log}");
        // The lease file's last field is the client identifier we sent:
        // type 1 (Ethernet) followed by the MAC.
        let addr = lease.address.to_string();
        let line = dhcp_support::wait_for(5, || {
            std::fs::read_to_string(rig.dir.join("leases"))
                .ok()?
                .lines()
                .find(|l| l.contains(&addr))
                .map(String::from)
        })
        .expect("lease in dnsmasq's lease file");
        let f: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(f[3], "pwd-web1", "{line}");
        assert_eq!(f[4], format!("01:{}", f[1]), "client id: {line}");

        let mut j = Journal::new();
        dhcp::apply(&ns, "eth0", &lease, &mut j)
            .await
            .expect("apply");
        assert_eq!(rig.cli_addrs(), vec![format!("{}/24", lease.address)]);
        let routes = rig.cli_routes();
        assert!(
            routes.contains("192.168.77.0/24 via 10.232.0.254"),
            "{routes}"
        );
        assert!(routes.contains("default via 10.232.0.1"), "{routes}");
        let link = rig.ip_cli(&["link", "show", "eth0"]);
        assert!(link.contains("mtu 1400"), "{link}");

        j.rollback().await;
        assert!(rig.cli_addrs().is_empty(), "address left behind");
        let routes = rig.cli_routes();
        assert!(
            !routes.contains("192.168.77.0"),
            "route left behind: {routes}"
        );
        assert!(!routes.contains("default"), "route left behind: {routes}");
        let link = rig.ip_cli(&["link", "show", "eth0"]);
        assert!(link.contains("mtu 1500"), "MTU not restored: {link}");
    });
}

#[test]
fn router_option_gives_default_route() {
    let Some(mut rig) = rig!("def") else { return };
    rig.start_dnsmasq(
        "10.232.0.100,10.232.0.200",
        &["--dhcp-option=option:router,10.232.0.1"],
    );
    let ns = rig.cli_ns();
    rt().block_on(async {
        let lease = dhcp::acquire(&ns, "eth0", &DhcpOptions::default())
            .await
            .expect("lease");
        assert!(lease.routes.is_empty());
        let mut j = Journal::new();
        dhcp::apply(&ns, "eth0", &lease, &mut j)
            .await
            .expect("apply");
        j.commit();
    });
    let routes = rig.cli_routes();
    assert!(
        routes.contains("default via 10.232.0.1 dev eth0"),
        "{routes}"
    );
}

#[test]
fn offer_without_router_is_handled() {
    let Some(mut rig) = rig!("norouter") else {
        return;
    };
    // An empty option 3 makes dnsmasq send no router at all.
    rig.start_dnsmasq("10.232.0.100,10.232.0.200", &["--dhcp-option=3"]);
    let ns = rig.cli_ns();
    rt().block_on(async {
        let lease = dhcp::acquire(&ns, "eth0", &DhcpOptions::default())
            .await
            .expect("lease");
        assert_eq!(lease.router, None, "{lease:?}");
        assert!(lease.effective_routes().is_empty());
        let mut j = Journal::new();
        dhcp::apply(&ns, "eth0", &lease, &mut j)
            .await
            .expect("apply");
        j.commit();
        assert_eq!(rig.cli_addrs(), vec![format!("{}/24", lease.address)]);
    });
    let routes = rig.cli_routes();
    assert!(!routes.contains("default"), "{routes}");
}

#[test]
fn hidden_acquire_command_prints_the_lease() {
    let Some(mut rig) = rig!("cmd") else { return };
    rig.start_dnsmasq("10.232.0.100,10.232.0.200", &[]);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pipework"))
        .args(["dhcp-acquire", "--netns"])
        .arg(rig.cli_path())
        .args(["-i", "eth0", "--apply"])
        .output()
        .expect("run pipework");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lease: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let addr = lease["address"].as_str().expect("address");
    assert_eq!(rig.cli_addrs(), vec![format!("{addr}/24")]);
}
