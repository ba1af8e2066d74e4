//! `pipework lab up|down|status|graph FILE`: a declared topology (TOML, or
//! the common subset of a containerlab YAML file) made real with the
//! drivers that exist, converged on every `up`, and removed by `down` from
//! the signed records alone (the file may have changed or be gone).
pub mod apply;
mod build;
pub mod clab;
pub mod down;
mod engine;
pub mod file;
pub mod graph;
pub mod hook;
pub mod model;
pub mod netem;
pub mod plan;
mod reap;
pub mod state;
pub mod status;

use crate::error::{Error, Result};

/// Read a lab file: containerlab YAML by extension, TOML otherwise.
pub fn load(path: &str) -> Result<model::Lab> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::bad(path, format!("cannot read the lab file: {e}")))?;
    if path.ends_with(".yml") || path.ends_with(".yaml") {
        clab::parse_yaml(&text)
    } else {
        file::parse_toml(&text)
    }
}
