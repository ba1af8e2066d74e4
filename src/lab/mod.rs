//! `pipework lab up|down|status|graph FILE`: a declared topology (TOML, or
//! the common subset of a containerlab YAML file) made real with the
//! drivers that exist, converged on every `up`, and removed by `down` from
//! the signed records alone (the file may have changed or be gone).
pub mod apply;
mod bind_src;
mod build;
pub mod clab;
mod container;
pub mod down;
pub mod dryrun;
pub mod file;
pub mod graph;
pub mod hook;
pub mod model;
pub mod netem;
pub mod plan;
mod reap;
pub mod state;
pub mod status;
mod words;

use crate::error::{Error, Result};
use crate::guest::engine::Engine;

/// The engine image nodes run on: `$DOCKER_HOST` or the usual sockets
/// (looked up only when a lab has image nodes).
fn engine() -> Result<Engine> {
    Engine::from_env().ok_or_else(|| {
        Error::other(
            "an image node needs a container engine: no socket found (set DOCKER_HOST=unix:///path/to/docker.sock)",
        )
    })
}

/// Read a lab file: containerlab YAML by extension, TOML otherwise.
pub fn load(path: &str) -> Result<model::Lab> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::bad(path, format!("cannot read the lab file: {e}")))?;
    // Relative paths in the file (binds) are relative to the file.
    let base = std::path::Path::new(path)
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    if path.ends_with(".yml") || path.ends_with(".yaml") {
        clab::parse_yaml(&text, base)
    } else {
        file::parse_toml(&text, base)
    }
}
