//! Fuzz the command line: the classic positional grammar rewritten into
//! `attach`, clap, and the validation into an `AttachRequest` (plus the
//! `wait` checks). Input: arguments separated by NUL, or by whitespace
//! when there is no NUL. Errors are fine; panics are not.
//!
//! The harness is `pipework::fuzzing::cli_argv`, shared with
//! tests/fuzz_seeds.rs, which replays fuzz/seeds/cli_argv/ on stable.
//!
//! Run: RUSTC_BOOTSTRAP=1 cargo fuzz run cli_argv fuzz/seeds/cli_argv
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = pipework::fuzzing::cli_argv(data);
});
