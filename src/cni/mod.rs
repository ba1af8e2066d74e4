//! CNI plugin mode (spec 1.1): the same binary is a CNI plugin when the
//! runtime sets `CNI_COMMAND`. Install it (or a symlink) as `pipework` in
//! the runtime's plugin directory and use `"type": "pipework"`:
//!
//! ```json
//! {"cniVersion": "1.1.0", "name": "n", "plugins": [{
//!   "type": "pipework", "mode": "bridge", "bridge": "br0", "isGateway": true,
//!   "ipam": {"type": "static",
//!            "addresses": [{"address": "10.0.0.5/24", "gateway": "10.0.0.1"}],
//!            "routes": [{"dst": "0.0.0.0/0"}]}}]}
//! ```
//!
//! Protocol: config on stdin, one JSON result or error on stdout, logs on
//! stderr only, exit status 0 on success. Results are written in the
//! config's version (0.3.0 through 1.1.0). The interface itself is plumbed
//! by the same drivers the command line uses (`mode` picks one); this
//! module only translates between the CNI protocol and an attach request.
//!
//! Error codes: 1 version, 2 unsupported key/value (`mode`, `ipMasq`),
//! 3 namespace unknown, 4 environment, 5 stdin I/O, 6 undecodable JSON,
//! 7 invalid config, 11 kernel busy, 50 IPAM plugin or parent missing;
//! plugin codes 100 kernel refusal, 101 IPAM failure, 102 interface exists,
//! 103 CHECK mismatch, 199 internal.
pub mod attach;
pub mod check;
pub mod detach;
pub mod env;
pub mod error;
mod fits;
pub mod gc;
pub mod ipam;
#[cfg(feature = "overlay")]
mod overlay;
pub mod tag;
pub mod types;
mod undo;
pub mod verbs;

use error::{CniError, code};
use std::io::{Read, Write};

/// Called first by the binary. `None` when not invoked as a CNI plugin.
pub fn main_if_cni() -> Option<i32> {
    std::env::var_os("CNI_COMMAND")?;
    Some(run_plugin())
}

fn run_plugin() -> i32 {
    let mut stdin = Vec::new();
    let read = std::io::stdin().read_to_end(&mut stdin);
    // Errors are reported in the config's version when we can tell it,
    // so a 0.4.0 runtime gets a 0.4.0-shaped error.
    let version = error_version(&stdin);
    let outcome = match read {
        Err(e) => Err(CniError::new(
            code::IO_FAILURE,
            "cannot read the network configuration from stdin",
            e.to_string(),
        )),
        Ok(_) => env::Env::from_process().and_then(|env| verbs::dispatch(&env, &stdin)),
    };
    let mut out = std::io::stdout().lock();
    match outcome {
        Ok(text) => {
            if let Some(text) = text {
                let _ = writeln!(out, "{text}");
            }
            0
        }
        Err(e) => {
            eprintln!("pipework (cni): {e}");
            let _ = writeln!(out, "{}", e.to_json(&version));
            1
        }
    }
}

fn error_version(stdin: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(stdin)
        .ok()
        .and_then(|v| v.get("cniVersion")?.as_str().map(str::to_string))
        .filter(|v| types::SUPPORTED_VERSIONS.contains(&v.as_str()))
        .unwrap_or_else(|| types::LATEST.to_string())
}
