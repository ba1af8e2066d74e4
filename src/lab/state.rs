//! What a lab made besides links, which carries no record of its own: the
//! containers it started and the bridges it created. Kept in the state
//! area (`own`: root only, signed, beside the host key), never in a Docker
//! label a container owner could write, so `down` removes only what we made.
use crate::error::Result;
use crate::own::{self, Area};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

#[derive(Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct State {
    /// node name → container id, for image nodes the lab started.
    #[serde(default)]
    pub containers: std::collections::BTreeMap<String, String>,
    /// Linux bridges the lab created (deleted once no port is left).
    #[serde(default)]
    pub bridges: Vec<String>,
    /// The file the last `up` read (absolute), so a watcher can converge
    /// the lab again when one of its containers restarts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<PathBuf>,
    /// The `--host` of the last `up` (a lab across hosts), so a watcher
    /// converges this host's part only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// node name → how its `exec` lines went when `up` started it.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub exec: std::collections::BTreeMap<String, ExecRun>,
}

/// A node's `exec` lines as run by the `up` that started it.
#[derive(Debug, Default, Clone, Serialize, Deserialize, PartialEq)]
pub struct ExecRun {
    /// Lines that exited 0.
    pub ok: usize,
    pub of: usize,
    /// Whether the first line was started. Saved `false` with the
    /// container id (one save), so an `up` killed before the first line
    /// leaves a record the next `up` finishes by running the lines: none
    /// of them ran, so running them is safe. Records from before this
    /// field count as begun.
    #[serde(default = "begun_default")]
    pub begun: bool,
    /// The container's start (the engine's `StartedAt`) the lines ran
    /// in ("" not known): a restarted container has a new network
    /// namespace and a new start, and its lines run again there. (Not the
    /// namespace's inode: the kernel hands a freed one to the next
    /// namespace at once, so a restart often gets the same number.)
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub started: String,
}

impl ExecRun {
    /// The record saved with a new container: `of` lines, none begun.
    pub fn pending(of: usize) -> ExecRun {
        ExecRun {
            ok: 0,
            of,
            begun: false,
            started: String::new(),
        }
    }
}

fn begun_default() -> bool {
    true
}

/// Lab state files live in the state area's `labs` folder (`own`).
const FOLDER: &str = "labs";

pub fn load(lab: &str) -> Result<State> {
    Ok(own::read(Area::State, FOLDER, lab)?.unwrap_or_default())
}

/// Write (signed, atomically), or delete when there is nothing left to
/// remember.
pub fn save(lab: &str, s: &State) -> Result<()> {
    if *s == State::default() {
        return own::remove(Area::State, FOLDER, lab);
    }
    own::write(Area::State, FOLDER, lab, s)
}

/// Every lab with state on this host.
pub fn list() -> Vec<String> {
    own::names(Area::State, FOLDER)
}

/// Whether a lab of this name has state (for `down NAME` without a file).
pub fn exists(lab: &str) -> bool {
    own::exists(Area::State, FOLDER, lab)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_records_from_before_begun_count_as_begun() {
        let old: ExecRun = serde_json::from_str(r#"{"ok":0,"of":2}"#).expect("old");
        assert!(old.begun && old.started.is_empty());
        let p = ExecRun::pending(3);
        let back: ExecRun =
            serde_json::from_str(&serde_json::to_string(&p).expect("ser")).expect("de");
        assert_eq!(back, p);
        assert!(!back.begun);
    }
}
