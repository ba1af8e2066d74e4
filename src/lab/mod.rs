//! `pipework lab up|down|status|graph FILE`: a declared topology (TOML, or
//! the common subset of a containerlab YAML file) made real with the
//! drivers that exist, converged on every `up`, and removed by `down` from
//! the signed records alone (the file may have changed or be gone).
pub mod cli;
