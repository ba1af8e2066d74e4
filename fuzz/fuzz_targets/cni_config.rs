//! Fuzz the CNI network configuration read from stdin: decoding, version
//! negotiation, validation, mode and MAC, IPAM selection, the static IPAM
//! result in every result version, prevResult, and the VERSION verb.
//! Bytes after a NUL, if any, are CNI_ARGS. Nothing touches the kernel.
//!
//! The harness is `pipework::fuzzing::cni_config`, shared with
//! tests/fuzz_seeds.rs, which replays fuzz/seeds/cni_config/ on stable.
//!
//! Run: RUSTC_BOOTSTRAP=1 cargo fuzz run cni_config fuzz/seeds/cni_config
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = pipework::fuzzing::cni_config(data);
});
