//! The one place pipework keeps host-side files of its own: what it must
//! remember between runs beyond the records on links (a VF's original
//! state, a lab's containers, the overlay agent's lease, a DHCP keeper's
//! lease, markers).
//!
//! One root, two areas: `State` survives a reboot (`/var/lib/pipework`),
//! `Run` goes with it (`/run/pipework`, tmpfs, like the kernel objects it
//! describes). `PIPEWORK_STATE_DIR` moves both (`$DIR` and `$DIR/run`), so a
//! test or a read-only /var can put all of it elsewhere.
//!
//! One write: the value as JSON inside an envelope carrying an HMAC made
//! with the host key (`key`), bound to the file's place (area, folder and
//! name), written to a temporary file with mode 0600, synced, then renamed
//! over the old one: a reader never sees half a file, and a SIGKILL leaves
//! either the old value or the new one. One read: a file whose tag does not
//! verify, was edited, or was copied to another name is refused in one
//! line, and nothing acts on it.
use crate::error::{Error, Result};
use crate::key;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

mod temps;

/// Which of the two places a file lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Area {
    /// Survives a reboot: VF originals, lab state, the host key.
    State,
    /// On tmpfs: agent and keeper state, markers, locks.
    Run,
}

/// The folder of an area.
pub fn root(area: Area) -> PathBuf {
    // The state folder is where the key lives (`key::dir`, which honours
    // PIPEWORK_STATE_DIR); the run folder follows it only when moved.
    match area {
        Area::State => key::dir(),
        Area::Run if std::env::var_os("PIPEWORK_STATE_DIR").is_some() => key::dir().join("run"),
        Area::Run => PathBuf::from("/run/pipework"),
    }
}

/// `folder` inside an area (it may have several components, each checked).
pub fn dir(area: Area, folder: &str) -> Result<PathBuf> {
    let mut p = root(area);
    for part in folder.split('/').filter(|s| !s.is_empty()) {
        crate::untrusted::check_component(part, "state folder")
            .map_err(|r| Error::bad(r.token, r.reason))?;
        p.push(part);
    }
    Ok(p)
}

fn file(area: Area, folder: &str, name: &str) -> Result<PathBuf> {
    crate::untrusted::check_component(name, "state file")
        .map_err(|r| Error::bad(r.token, r.reason))?;
    Ok(dir(area, folder)?.join(format!("{name}.json")))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn area_word(a: Area) -> &'static [u8] {
    match a {
        Area::State => b"state",
        Area::Run => b"run",
    }
}

/// The tag of `body` at its place: moving a file to another name or
/// folder breaks it, as editing it does.
fn tag(k: &[u8; 32], area: Area, folder: &str, name: &str, body: &str) -> String {
    hex(&key::tag(
        k,
        &[
            b"pipework-own-v1",
            area_word(area),
            folder.as_bytes(),
            name.as_bytes(),
            body.as_bytes(),
        ],
    ))
}

/// The envelope on disk: the value, and its tag.
#[derive(Serialize, serde::Deserialize)]
struct Envelope {
    body: serde_json::Value,
    tag: String,
}

fn seal<T: Serialize>(k: &[u8; 32], area: Area, folder: &str, name: &str, v: &T) -> Result<String> {
    let body =
        serde_json::to_value(v).map_err(|e| Error::other(format!("encoding {name}: {e}")))?;
    let text = body.to_string();
    let env = Envelope {
        tag: tag(k, area, folder, name, &text),
        body,
    };
    serde_json::to_string_pretty(&env).map_err(|e| Error::other(format!("encoding {name}: {e}")))
}

fn open<T: DeserializeOwned>(
    text: &str,
    k: Option<[u8; 32]>,
    area: Area,
    folder: &str,
    name: &str,
) -> std::result::Result<T, &'static str> {
    let env: Envelope = serde_json::from_str(text).map_err(|_| "not a pipework state file")?;
    let k = k.ok_or("no host key to verify it")?;
    let want = tag(&k, area, folder, name, &env.body.to_string());
    if !key::same(env.tag.as_bytes(), want.as_bytes()) {
        return Err("its signature does not match (edited, moved, or another host's)");
    }
    serde_json::from_value(env.body).map_err(|_| "its contents are not what pipework wrote")
}

/// Write `v` as `folder/name` in `area`, signed and atomically.
pub fn write<T: Serialize>(area: Area, folder: &str, name: &str, v: &T) -> Result<()> {
    let k = key::get_or_create()?;
    let d = dir(area, folder)?;
    std::fs::create_dir_all(&d).map_err(|e| Error::io(format!("creating {}", d.display()), e))?;
    let _ = std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700));
    // What a killed write left here, so that leftovers do not pile up
    // between runs of gc.
    for (p, _) in temps::stale_in(&d, area == Area::State && folder.is_empty()) {
        let _ = std::fs::remove_file(p);
    }
    let dst = file(area, folder, name)?;
    let tmp = d.join(format!(".{name}.{}", std::process::id()));
    let text = seal(&k, area, folder, name, v)?;
    key::write_private(&tmp, text.as_bytes())?;
    std::fs::rename(&tmp, &dst).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::io(format!("installing {}", dst.display()), e)
    })
}

/// Read `folder/name`: None when there is no such file; an error naming
/// the file when it does not verify (nothing may act on it).
pub fn read<T: DeserializeOwned>(area: Area, folder: &str, name: &str) -> Result<Option<T>> {
    let p = file(area, folder, name)?;
    let text = match std::fs::read_to_string(&p) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(format!("reading {}", p.display()), e)),
    };
    open(&text, key::get(), area, folder, name)
        .map(Some)
        .map_err(|why| Error::other(format!("{}: {why}; not acting on it", p.display())))
}

/// Whether `folder/name` exists (verified or not).
pub fn exists(area: Area, folder: &str, name: &str) -> bool {
    file(area, folder, name).is_ok_and(|p| p.exists())
}

/// Remove `folder/name`; one already gone is fine.
pub fn remove(area: Area, folder: &str, name: &str) -> Result<()> {
    let p = file(area, folder, name)?;
    match std::fs::remove_file(&p) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(Error::io(format!("removing {}", p.display()), e))
        }
        _ => Ok(()),
    }
}

/// A temporary file a killed `write` left, and the dead writer's pid.
pub struct Leftover {
    pub path: PathBuf,
    pub pid: u32,
}

/// Remove (unless `dry_run`) the temporary files killed writes left in
/// both areas; each with the outcome of its removal.
pub fn sweep_temps(dry_run: bool) -> Vec<(Leftover, Result<()>)> {
    let mut found = Vec::new();
    let (state, run) = (root(Area::State), root(Area::Run));
    temps::stale_below(&state, true, 3, &mut found);
    // The run area lies inside the state one when both were moved.
    if !run.starts_with(&state) {
        temps::stale_below(&run, false, 3, &mut found);
    }
    found
        .into_iter()
        .map(|(path, pid)| {
            let r = match dry_run {
                true => Ok(()),
                false => match std::fs::remove_file(&path) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                        Err(Error::io(format!("removing {}", path.display()), e))
                    }
                    _ => Ok(()),
                },
            };
            (Leftover { path, pid }, r)
        })
        .collect()
}

/// The names of the files in `folder`, sorted.
pub fn names(area: Area, folder: &str) -> Vec<String> {
    let Ok(d) = dir(area, folder) else {
        return vec![];
    };
    let mut v: Vec<String> = std::fs::read_dir(d)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| {
                    let n = e.file_name().to_str()?.to_string();
                    if n.starts_with('.') {
                        return None;
                    }
                    n.strip_suffix(".json").map(String::from)
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Serialize, serde::Deserialize)]
    struct V {
        a: String,
        n: u32,
    }

    #[test]
    fn files_verify_only_unedited_in_their_own_place() {
        let k = [7u8; 32];
        let v = V {
            a: "eth2".into(),
            n: 3,
        };
        let text = seal(&k, Area::State, "sriov", "0000:01:10.2", &v).unwrap();
        let ok: std::result::Result<V, _> =
            open(&text, Some(k), Area::State, "sriov", "0000:01:10.2");
        assert_eq!(
            ok,
            Ok(V {
                a: "eth2".into(),
                n: 3
            })
        );
        // Moved to another name, folder or area; edited; another key; none.
        for (area, folder, name) in [
            (Area::State, "sriov", "0000:01:10.4"),
            (Area::State, "labs", "0000:01:10.2"),
            (Area::Run, "sriov", "0000:01:10.2"),
        ] {
            assert!(open::<V>(&text, Some(k), area, folder, name).is_err());
        }
        let edited = text.replace("eth2", "eth0");
        assert!(open::<V>(&edited, Some(k), Area::State, "sriov", "0000:01:10.2").is_err());
        assert!(open::<V>(&text, Some([8; 32]), Area::State, "sriov", "0000:01:10.2").is_err());
        assert!(open::<V>(&text, None, Area::State, "sriov", "0000:01:10.2").is_err());
        assert!(open::<V>("{}", Some(k), Area::State, "sriov", "0000:01:10.2").is_err());
    }

    #[test]
    fn names_cannot_leave_their_folder() {
        assert!(file(Area::State, "sriov", "../key").is_err());
        assert!(file(Area::State, "../etc", "x").is_err());
        assert!(file(Area::Run, "overlay/4026531840", "agent").is_ok());
    }
}
