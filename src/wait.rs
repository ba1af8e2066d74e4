//! `pipework --wait [-i IF] [--timeout S]`: block until an interface exists
//! and is up with carrier, the classic way for a container's entrypoint to
//! wait for pipework to finish plumbing it.
//!
//! The original polled /sys/class/net/IF/carrier in a shell loop. We listen
//! to the kernel's link notifications instead (`netlink::events`).
use crate::error::{Error, Result};
use std::time::Duration;

pub use crate::netlink::events::wait_for_link;

/// Parse `--timeout S` (seconds, fractions allowed).
pub fn parse_timeout(s: &str) -> Result<Duration> {
    s.parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && *v >= 0.0)
        // try_: from_secs_f64 panics past u64::MAX seconds (found by the
        // cli_argv harness: `pipework wait --timeout 1e300`).
        .and_then(|v| Duration::try_from_secs_f64(v).ok())
        .ok_or_else(|| Error::bad(s, "--timeout takes a number of seconds, e.g. --timeout 30"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeout_parsing() {
        assert_eq!(parse_timeout("2.5").ok(), Some(Duration::from_millis(2500)));
        assert!(parse_timeout("-1").is_err());
        assert!(parse_timeout("1e300").is_err());
        assert!(
            parse_timeout("soon")
                .unwrap_err()
                .to_string()
                .starts_with("soon: ")
        );
    }
}
