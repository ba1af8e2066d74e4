//! Fuzz our DHCP reply handling: frame parsing (Ethernet/IPv4/UDP),
//! option sanitizing, message decoding, classification for the state
//! machine and lease interpretation. Nothing may panic.
//!
//! Run: RUSTC_BOOTSTRAP=1 cargo fuzz run dhcp_reply fuzz/seeds/dhcp_reply
#![no_main]
use libfuzzer_sys::fuzz_target;
use pipework::dhcp::client::{Reply, classify};
use pipework::dhcp::socket::{parse_frame, parse_ipv4};

fn handle(payload: &[u8]) {
    // Take xid and chaddr from the input itself so the fuzzer gets past
    // the "is this for us" checks and into option handling.
    let xid = payload
        .get(4..8)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        .unwrap_or(0);
    let mut mac = [0u8; 6];
    if let Some(m) = payload.get(28..34) {
        mac.copy_from_slice(m);
    }
    if let Some(Reply::Ack(lease)) = classify(payload, xid, &mac) {
        assert!(lease.prefix <= 32);
        assert!(lease.t1 <= lease.t2 && lease.t2 <= lease.lease_time);
        let _ = lease.effective_routes();
        let _ = serde_json_roundtrip(&lease);
    }
    // Any other xid must never be accepted.
    assert!(classify(payload, xid.wrapping_add(1), &mac).is_none());
}

fn serde_json_roundtrip(l: &pipework::dhcp::Lease) -> bool {
    format!("{l:?}").len() > 0
}

fuzz_target!(|data: &[u8]| {
    // The same bytes as a whole frame, as an IPv4 packet and as a bare
    // DHCP payload.
    if let Some(u) = parse_frame(data) {
        assert!(u.payload.len() <= data.len());
        handle(u.payload);
    }
    if let Some(u) = parse_ipv4(data) {
        handle(u.payload);
    }
    handle(data);
});
