//! Structured one-line logs (`key=value`) on stderr, and a rate limiter so a
//! dead backend under load logs once per window instead of once per
//! connection attempt.
use std::fmt::Display;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Debug,
    Info,
    Warn,
    Error,
}

fn enabled(l: Level) -> bool {
    // Read once; `PIPEWORK_LOG=debug` turns on per-connection lines.
    static MIN: std::sync::OnceLock<Level> = std::sync::OnceLock::new();
    let min = *MIN.get_or_init(|| match std::env::var("PIPEWORK_LOG").as_deref() {
        Ok("debug") => Level::Debug,
        Ok("warn") => Level::Warn,
        Ok("error") => Level::Error,
        _ => Level::Info,
    });
    l >= min
}

pub fn log(level: Level, msg: &str, kv: &[(&str, &dyn Display)]) {
    if !enabled(level) {
        return;
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let lv = match level {
        Level::Debug => "debug",
        Level::Info => "info",
        Level::Warn => "warn",
        Level::Error => "error",
    };
    let mut line = format!(
        "ts={}.{:03} level={lv} msg={}",
        now.as_secs(),
        now.subsec_millis(),
        quote(msg)
    );
    for (k, v) in kv {
        line.push(' ');
        line.push_str(k);
        line.push('=');
        line.push_str(&quote(&v.to_string()));
    }
    line.push('\n');
    // One write per line so concurrent tasks do not interleave.
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

fn quote(s: &str) -> String {
    if !s.is_empty() && !s.contains(|c: char| c.is_whitespace() || c == '"' || c == '=') {
        return s.to_string();
    }
    format!("{:?}", s)
}

pub fn info(msg: &str, kv: &[(&str, &dyn Display)]) {
    log(Level::Info, msg, kv)
}
pub fn warn(msg: &str, kv: &[(&str, &dyn Display)]) {
    log(Level::Warn, msg, kv)
}
pub fn debug(msg: &str, kv: &[(&str, &dyn Display)]) {
    log(Level::Debug, msg, kv)
}

/// Milliseconds on a monotonic clock, for cheap atomics-based timestamps.
pub fn now_ms() -> u64 {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    START
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_millis() as u64
        + 1
}

/// Allows one event per window; counts what it swallowed.
#[derive(Default)]
pub struct RateLimit {
    last_ms: AtomicU64,
    suppressed: AtomicU64,
}

pub const WINDOW_MS: u64 = 10_000;

impl RateLimit {
    /// `Some(n)` if this event may be logged, with `n` events suppressed since the last one.
    pub fn allow(&self) -> Option<u64> {
        let now = now_ms();
        let last = self.last_ms.load(Ordering::Relaxed);
        if (last == 0 || now.saturating_sub(last) >= WINDOW_MS)
            && self
                .last_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            return Some(self.suppressed.swap(0, Ordering::Relaxed));
        }
        self.suppressed.fetch_add(1, Ordering::Relaxed);
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limit_swallows_bursts() {
        let r = RateLimit::default();
        assert_eq!(r.allow(), Some(0));
        assert_eq!(r.allow(), None);
        assert_eq!(r.allow(), None);
        assert_eq!(r.suppressed.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn quoting() {
        assert_eq!(quote("a"), "a");
        assert_eq!(quote("a b"), "\"a b\"");
    }
}
