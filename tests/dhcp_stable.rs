//! A `U:string` MAC gives the same lease across container restarts.
mod dhcp_support;
use dhcp_support::rt;
use pipework::dhcp::{self, DhcpOptions};
use pipework::request::mac_from_seed;

fn mac_str(m: [u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[test]
fn same_seed_same_lease_across_restarts() {
    let Some(mut rig) = rig!("stable") else {
        return;
    };
    let mac = mac_str(mac_from_seed("pwd-stable-web"));
    rig.ip_cli(&["link", "set", "eth0", "address", &mac]);
    rig.start_dnsmasq("10.232.0.100,10.232.0.200", &[]);
    let rt = rt();
    let first = rt
        .block_on(dhcp::acquire(
            &rig.cli_ns(),
            "eth0",
            &DhcpOptions::default(),
        ))
        .expect("first lease");

    // "Restart" the container: its namespace and veth are destroyed and
    // recreated; the server restarts too (its lease file persists).
    rig.stop_dnsmasq();
    rig.recreate_client(Some(&mac));
    rig.start_dnsmasq("10.232.0.100,10.232.0.200", &[]);
    let second = rt
        .block_on(dhcp::acquire(
            &rig.cli_ns(),
            "eth0",
            &DhcpOptions::default(),
        ))
        .expect("second lease");
    assert_eq!(first.address, second.address);

    // Another seed is another client: the first address is still leased
    // to the first one, so it must get a different address.
    rig.recreate_client(Some(&mac_str(mac_from_seed("pwd-stable-other"))));
    rig.stop_dnsmasq();
    rig.start_dnsmasq("10.232.0.100,10.232.0.200", &[]);
    let other = rt
        .block_on(dhcp::acquire(
            &rig.cli_ns(),
            "eth0",
            &DhcpOptions::default(),
        ))
        .expect("other lease");
    assert_ne!(other.address, first.address);
}
