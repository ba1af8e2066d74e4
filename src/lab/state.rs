//! What a lab made besides links, which carries no record of its own: the
//! containers it started and the bridges it created. Kept in a root-only
//! state directory (beside the host key), never in a Docker label a
//! container owner could write, so `down` removes only what we made.
use crate::error::{Error, Result};
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
}

fn path(lab: &str) -> PathBuf {
    crate::key::dir().join("labs").join(format!("{lab}.json"))
}

pub fn load(lab: &str) -> Result<State> {
    match std::fs::read(path(lab)) {
        Ok(b) => serde_json::from_slice(&b)
            .map_err(|e| Error::other(format!("{}: {e}", path(lab).display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State::default()),
        Err(e) => Err(Error::io(path(lab).display(), e)),
    }
}

/// Write (atomically), or delete when there is nothing left to remember.
pub fn save(lab: &str, s: &State) -> Result<()> {
    let p = path(lab);
    if *s == State::default() {
        return match std::fs::remove_file(&p) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io(p.display(), e)),
            _ => Ok(()),
        };
    }
    let dir = p.parent().map(PathBuf::from).unwrap_or_default();
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(dir.display(), e))?;
    let tmp = p.with_extension(format!("tmp{}", std::process::id()));
    let body = serde_json::to_vec_pretty(s).unwrap_or_default();
    std::fs::write(&tmp, body).map_err(|e| Error::io(tmp.display(), e))?;
    std::fs::rename(&tmp, &p).map_err(|e| Error::io(p.display(), e))
}

/// Every lab with state on this host.
pub fn list() -> Vec<String> {
    let dir = crate::key::dir().join("labs");
    let Ok(rd) = std::fs::read_dir(dir) else {
        return vec![];
    };
    let mut v: Vec<String> = rd
        .flatten()
        .filter_map(|e| {
            e.file_name()
                .to_str()?
                .strip_suffix(".json")
                .map(String::from)
        })
        .collect();
    v.sort();
    v
}

/// Whether a lab of this name has state (for `down NAME` without a file).
pub fn exists(lab: &str) -> bool {
    path(lab).exists()
}
