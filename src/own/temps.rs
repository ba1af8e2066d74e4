//! Temporary files a killed `write` left behind. `write` puts the new value
//! in `.NAME.PID` and renames it over `NAME.json`; a SIGKILL between the two
//! leaves the temporary file, which nothing reads. It is stale once no
//! `write` can still rename it: its pid is gone, or runs a process that
//! started after the file was written (the pid was reused). The host key's `key.PID` (`key::get_or_create`)
//! is the same kind of leftover in the state folder.
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// The pid in a temporary file's name: `.NAME.PID` (NAME not empty), or
/// `key.PID` when `key_dir` (the state folder, where the key lives).
pub(super) fn temp_pid(file: &str, key_dir: bool) -> Option<u32> {
    let (head, pid) = file.rsplit_once('.')?;
    let ours = match head.strip_prefix('.') {
        Some(name) => !name.is_empty(),
        None => key_dir && head == "key",
    };
    if !ours || pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    pid.parse().ok().filter(|p| *p > 0)
}

/// When process `pid` started, from /proc (None when it does not run).
fn started(pid: u32) -> Option<SystemTime> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Field 22, counted after the command name (which may hold spaces and
    // parentheses, hence the last ')').
    let rest = &stat[stat.rfind(')')? + 1..];
    let ticks: u64 = rest.split_whitespace().nth(19)?.parse().ok()?;
    let boot: u64 = std::fs::read_to_string("/proc/stat")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("btime ")?.trim().parse().ok())?;
    // SAFETY: sysconf only reads a constant of the running system.
    let hz = u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) })
        .ok()
        .filter(|h| *h > 0)?;
    let at = Duration::from_secs(boot) + Duration::from_millis(ticks * 1000 / hz);
    Some(SystemTime::UNIX_EPOCH + at)
}

/// Whether the temporary file `path`, named for `pid`, can no longer be
/// renamed by its writer.
/// The process start time decides alone (not its command name, as for
/// links): two processes never hold one pid at once, so a process that
/// started before the file was written is its writer, whatever it is called
/// (a library user, a renamed CNI plugin).
pub(super) fn stale(path: &Path, pid: u32) -> bool {
    let Ok(written) = std::fs::symlink_metadata(path).and_then(|m| m.modified()) else {
        // Gone meanwhile, or unreadable: leave it for a later look.
        return false;
    };
    let Some(start) = started(pid) else {
        return !std::path::Path::new(&format!("/proc/{pid}")).exists();
    };
    // /proc/stat's boot time is whole seconds: allow for it (a file kept
    // too long is only kept until a later look).
    written + Duration::from_secs(2) < start
}

/// Stale temporary files in `dir` (not below it).
pub(super) fn stale_in(dir: &Path, key_dir: bool) -> Vec<(PathBuf, u32)> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return vec![];
    };
    rd.flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter_map(|e| {
            let pid = temp_pid(e.file_name().to_str()?, key_dir)?;
            let p = e.path();
            stale(&p, pid).then_some((p, pid))
        })
        .collect()
}

/// Stale temporary files in `dir` and its folders, a few levels down (our
/// folders are `area/folder[/sub]`).
pub(super) fn stale_below(dir: &Path, key_dir: bool, depth: u8, out: &mut Vec<(PathBuf, u32)>) {
    out.extend(stale_in(dir, key_dir));
    if depth == 0 {
        return;
    }
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            stale_below(&e.path(), false, depth - 1, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_names() {
        assert_eq!(temp_pid(".agent.1234", false), Some(1234));
        assert_eq!(temp_pid(".0000:01:10.2.77", false), Some(77));
        assert_eq!(temp_pid("key.55", true), Some(55));
        for not in [
            "key.55",
            "agent.json",
            "..5",
            ".agent.",
            ".agent.12a",
            ".agent.0",
            "x.lock",
        ] {
            assert_eq!(temp_pid(not, false), None, "{not}");
        }
        assert_eq!(temp_pid("agent.5", true), None);
    }

    #[test]
    fn our_own_fresh_file_is_not_stale_but_one_older_than_us_is() {
        let d = std::env::temp_dir().join(format!("pw-own-temps-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        let me = std::process::id();
        let fresh = d.join(format!(".fresh.{me}"));
        std::fs::write(&fresh, b"x").unwrap();
        assert!(!stale(&fresh, me));
        // Written before this process started: an earlier holder of our pid.
        let old = d.join(format!(".old.{me}"));
        std::fs::write(&old, b"x").unwrap();
        let f = std::fs::File::options().write(true).open(&old).unwrap();
        f.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000))
            .unwrap();
        assert!(stale(&old, me));
        let found: Vec<PathBuf> = stale_in(&d, false).into_iter().map(|x| x.0).collect();
        assert_eq!(found, vec![old]);
        std::fs::remove_dir_all(&d).unwrap();
    }
}
