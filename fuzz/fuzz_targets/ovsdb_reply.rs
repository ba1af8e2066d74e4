//! Fuzz the OVSDB JSON-RPC client with the server's side of the socket:
//! the streaming decoder over arbitrary read boundaries, the transaction
//! result and value-notation readers, and a real `Connection` running one
//! typed operation. First byte: scenario (low 3 bits) and read sizes
//! (high 5 bits); the rest: what the server sends.
//!
//! The harness is `pipework::fuzzing::ovsdb_reply`, shared with
//! tests/fuzz_seeds.rs, which replays fuzz/seeds/ovsdb_reply/ on stable.
//!
//! Run: RUSTC_BOOTSTRAP=1 cargo fuzz run ovsdb_reply fuzz/seeds/ovsdb_reply
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = pipework::fuzzing::ovsdb_reply(data);
});
