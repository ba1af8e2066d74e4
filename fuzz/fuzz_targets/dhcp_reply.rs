//! Fuzz our DHCP reply handling: frame parsing (Ethernet/IPv4/UDP),
//! option sanitizing, message decoding, classification for the state
//! machine and lease interpretation. Nothing may panic.
//!
//! The harness is `pipework::fuzzing::dhcp_reply`, shared with
//! tests/fuzz_seeds.rs, which replays fuzz/seeds/dhcp_reply/ on stable.
//!
//! Run: RUSTC_BOOTSTRAP=1 cargo fuzz run dhcp_reply fuzz/seeds/dhcp_reply
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = pipework::fuzzing::dhcp_reply(data);
});
