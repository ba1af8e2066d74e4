//! rtnetlink's errors become `Error::Netlink` here and nowhere else, so the
//! rest of the crate never names rtnetlink; and the one policy for "already
//! there" / "already gone" lives beside it.
use crate::error::{Error, Result};
use std::fmt::Display;

pub const ENODEV: i32 = libc::ENODEV;
pub const EEXIST: i32 = libc::EEXIST;

/// Wrap an rtnetlink error with what we were doing; keep the errno so
/// callers can match on EEXIST/ENODEV/EBUSY.
pub fn nl_err(context: impl Display, err: rtnetlink::Error) -> Error {
    let (errno, message) = match &err {
        rtnetlink::Error::NetlinkError(e) => {
            let errno = e.raw_code().abs();
            let msg = std::io::Error::from_raw_os_error(errno).to_string();
            // io::Error appends " (os error N)"; we print the errno ourselves.
            let msg = msg
                .split(" (os error")
                .next()
                .unwrap_or_default()
                .to_string();
            (errno, msg)
        }
        other => (0, other.to_string()),
    };
    Error::Netlink {
        context: context.to_string(),
        errno,
        message,
    }
}

/// A delete whose object is already gone (any of `gone`) got what it
/// wanted: teardown and rollback must be idempotent.
pub(super) fn gone_ok(r: Result<()>, gone: &[i32]) -> Result<()> {
    match r {
        Err(e) if e.errno().is_some_and(|n| gone.contains(&n)) => Ok(()),
        r => r,
    }
}
