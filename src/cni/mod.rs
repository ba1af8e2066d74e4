//! CNI plugin mode (spec 1.1): the same binary is a CNI plugin when the
//! runtime sets `CNI_COMMAND`.
//!
//! Protocol: config on stdin, one JSON result or error on stdout, logs on
//! stderr only, exit status 0 on success. The interface itself is plumbed
//! by the same drivers the command line uses; this module only translates
//! between the CNI protocol and an attach request.
pub mod attach;
pub mod env;
pub mod error;
pub mod ipam;
pub mod types;
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
