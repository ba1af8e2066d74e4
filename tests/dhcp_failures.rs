//! Bad networks: no server, a NAK, malformed and foreign replies.
mod dhcp_support;
use dhcp_support::rt;
use dhcproto::v4::{DhcpOption, Message, MessageType, Opcode};
use dhcproto::{Encodable, Encoder};
use pipework::dhcp::{self, DhcpOptions};
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

#[test]
fn no_server_times_out_and_changes_nothing() {
    let Some(rig) = rig!("nosrv") else { return };
    let ns = rig.cli_ns();
    let opts = DhcpOptions {
        timeout: Duration::from_millis(1500),
        ..Default::default()
    };
    let before = rig.cli_routes();
    let err = rt()
        .block_on(dhcp::acquire(&ns, "eth0", &opts))
        .expect_err("no server must be an error");
    let msg = err.to_string();
    assert!(msg.contains("no lease for eth0"), "{msg}");
    assert!(msg.contains("--dhcp-timeout"), "{msg}");
    assert!(!msg.contains('\n'), "one-line error: {msg}");
    assert!(rig.cli_addrs().is_empty());
    assert_eq!(rig.cli_routes(), before);
    // The link was down before; acquire raised it to send and must have
    // put it back.
    let link = rig.ip_cli(&["link", "show", "eth0"]);
    assert!(!link.contains(",UP"), "link left up: {link}");
}

#[test]
fn missing_interface_is_a_clear_error() {
    let Some(rig) = rig!("noif") else { return };
    let ns = rig.cli_ns();
    let err = rt()
        .block_on(dhcp::acquire(&ns, "nosuch0", &DhcpOptions::default()))
        .expect_err("must fail");
    assert!(err.to_string().contains("nosuch0"), "{err}");
}

#[test]
fn nak_restarts_from_discover() {
    let Some(mut rig) = rig!("nak") else { return };
    rig.start_dnsmasq("10.232.0.100,10.232.0.200", &["--dhcp-authoritative"]);
    let ns = rig.cli_ns();
    // INIT-REBOOT for an address this server does not hand out: it NAKs,
    // and we must start over and still end up with a lease in its range.
    let opts = DhcpOptions {
        request: Some(Ipv4Addr::new(10, 99, 0, 5)),
        ..Default::default()
    };
    let lease = rt()
        .block_on(dhcp::acquire(&ns, "eth0", &opts))
        .expect("lease after NAK");
    let log = rig.log();
    assert!(log.contains("DHCPNAK"), "server did not NAK: {log}");
    assert_eq!(lease.address.octets()[..3], [10, 232, 0]);
}

fn offer(xid: u32, chaddr: &[u8]) -> Vec<u8> {
    let mut m = Message::default();
    m.set_opcode(Opcode::BootReply)
        .set_xid(xid)
        .set_chaddr(chaddr)
        .set_yiaddr(Ipv4Addr::new(10, 232, 0, 66));
    m.opts_mut()
        .insert(DhcpOption::MessageType(MessageType::Offer));
    m.opts_mut()
        .insert(DhcpOption::ServerIdentifier(Ipv4Addr::new(10, 232, 0, 9)));
    let mut b = Vec::new();
    m.encode(&mut Encoder::new(&mut b)).expect("encode");
    b
}

/// Broadcast junk to port 68 from the server namespace until `stop`.
fn spray(
    rig: &dhcp_support::Rig,
    stop: Arc<AtomicBool>,
    mac: Vec<u8>,
) -> std::thread::JoinHandle<u64> {
    let sock = rig
        .srv_ns()
        .run(|| {
            let s = std::net::UdpSocket::bind("0.0.0.0:0").expect("bind");
            s.set_broadcast(true).expect("broadcast");
            s
        })
        .expect("enter server ns");
    std::thread::spawn(move || {
        let mut sent = 0u64;
        let mut seed = 0x1234_5678u32;
        let good = offer(0xdead_beef, &mac);
        while !stop.load(Ordering::Relaxed) {
            let mut junk: Vec<Vec<u8>> = vec![
                Vec::new(),
                vec![2; 10],
                good[..good.len() / 2].to_vec(),
                offer(0xdead_beef, &mac),                // wrong xid
                offer(0, &mac),                          // wrong xid
                offer(0xdead_beef, &[9, 9, 9, 9, 9, 9]), // not our MAC
            ];
            // Random bytes and a valid offer with random bit flips.
            let mut next = || {
                seed ^= seed << 13;
                seed ^= seed >> 17;
                seed ^= seed << 5;
                seed
            };
            let r: Vec<u8> = (0..300).map(|_| next() as u8).collect();
            let mut flipped = good.clone();
            for b in flipped.iter_mut().skip(236) {
                let x = next();
                if x % 7 == 0 {
                    *b ^= (x >> 8) as u8;
                }
            }
            junk.push(r);
            junk.push(flipped);
            for j in &junk {
                if sock.send_to(j, "10.232.0.255:68").is_ok() {
                    sent += 1;
                }
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        sent
    })
}

fn cli_mac(rig: &dhcp_support::Rig) -> Vec<u8> {
    let out = rig.ip_cli(&["-o", "link", "show", "eth0"]);
    let mac = out
        .split_whitespace()
        .skip_while(|w| *w != "link/ether")
        .nth(1)
        .expect("mac");
    mac.split(':')
        .map(|h| u8::from_str_radix(h, 16).expect("hex"))
        .collect()
}

#[test]
fn malformed_and_foreign_replies_are_ignored() {
    let Some(rig) = rig!("junk") else { return };
    rig.ip_cli(&["link", "set", "eth0", "up"]);
    let stop = Arc::new(AtomicBool::new(false));
    let sprayer = spray(&rig, stop.clone(), cli_mac(&rig));
    let ns = rig.cli_ns();
    let opts = DhcpOptions {
        timeout: Duration::from_secs(2),
        ..Default::default()
    };
    let r = rt().block_on(dhcp::acquire(&ns, "eth0", &opts));
    stop.store(true, Ordering::Relaxed);
    let sent = sprayer.join().expect("sprayer");
    assert!(sent > 50, "sprayer sent only {sent}");
    // Nothing we were sent is a valid answer to our exchange.
    let err = r.expect_err("junk must not produce a lease");
    assert!(err.to_string().contains("no lease"), "{err}");
}

#[test]
fn real_server_wins_through_junk() {
    let Some(mut rig) = rig!("junk2") else { return };
    rig.ip_cli(&["link", "set", "eth0", "up"]);
    rig.start_dnsmasq("10.232.0.100,10.232.0.200", &[]);
    let stop = Arc::new(AtomicBool::new(false));
    let sprayer = spray(&rig, stop.clone(), cli_mac(&rig));
    let ns = rig.cli_ns();
    let r = rt().block_on(dhcp::acquire(&ns, "eth0", &DhcpOptions::default()));
    stop.store(true, Ordering::Relaxed);
    sprayer.join().expect("sprayer");
    let lease = r.expect("lease despite junk");
    assert_eq!(lease.server_id, Ipv4Addr::new(10, 232, 0, 1));
    assert_ne!(
        lease.address,
        Ipv4Addr::new(10, 232, 0, 66),
        "took a forged offer"
    );
}
