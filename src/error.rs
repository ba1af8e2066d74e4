//! One error type for the whole crate.
//!
//! Every variant renders as a single line: operators read these in shell
//! scripts and scheduler logs, so the message names the bad token (or the
//! kernel object and errno) and, where we know it, the fix.
//!
//! Messages quote names that a guest chose (container names, netns names,
//! link names and aliases read from its namespace), so every text field
//! goes through `untrusted::display` when the error is rendered: stored
//! as given (callers may match on it), shown without control characters.
//! That also keeps the one-line promise when a name contains a newline.
use crate::untrusted::display;
use std::fmt::Display;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The user's input is wrong; nothing has been touched yet.
    #[error("{}: {}", display(token), display(reason))]
    BadInput { token: String, reason: String },

    /// The guest named does not exist (any more): no container, process or
    /// namespace by that name. `detach` treats this as "already gone".
    #[error("{}: {}", display(token), display(reason))]
    GuestGone { token: String, reason: String },

    /// A classic form that a later version will implement.
    #[error("{}: not supported yet", display(.0))]
    NotSupported(String),

    /// Something we looked for does not exist (container, link, bridge).
    #[error("{}", display(.0))]
    NotFound(String),

    /// The kernel refused a netlink request.
    #[error("{}: {} (errno {errno})", display(context), display(message))]
    Netlink {
        context: String,
        errno: i32,
        message: String,
    },

    #[error("{}: {source}", display(context))]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },

    #[error("{}", display(.0))]
    Other(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn bad(token: impl Display, reason: impl Display) -> Self {
        Error::BadInput {
            token: token.to_string(),
            reason: reason.to_string(),
        }
    }

    pub fn gone(token: impl Display, reason: impl Display) -> Self {
        Error::GuestGone {
            token: token.to_string(),
            reason: reason.to_string(),
        }
    }

    pub fn other(msg: impl Display) -> Self {
        Error::Other(msg.to_string())
    }

    pub fn io(context: impl Display, source: std::io::Error) -> Self {
        Error::Io {
            context: context.to_string(),
            source,
        }
    }

    /// The errno behind a kernel refusal, if any.
    pub fn errno(&self) -> Option<i32> {
        match self {
            Error::Netlink { errno, .. } if *errno != 0 => Some(*errno),
            Error::Io { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }

    /// Process exit status: 2 for bad input (like clap's usage errors), 1 otherwise.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::BadInput { .. } | Error::GuestGone { .. } | Error::NotSupported(_) => 2,
            _ => 1,
        }
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::Io {
            context: "I/O".into(),
            source: e,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_chosen_text_is_escaped_when_shown() {
        let e = Error::bad("netns:pw\x1b[2J\x1b]0;x\x07", "no such \u{202e}namespace");
        let s = e.to_string();
        assert_eq!(s, r"netns:pw\x1b[2J\x1b]0;x\x07: no such \u{202e}namespace");
        // Stored as given: callers that match on the token still can.
        match &e {
            Error::BadInput { token, .. } => assert!(token.contains('\x1b')),
            _ => unreachable!(),
        }
        for e in [
            Error::NotFound("eth\x1b[1\n".into()),
            Error::NotSupported("x\u{9b}".into()),
            Error::Other("a\nb".into()),
            Error::io("open \x1b", std::io::Error::from_raw_os_error(libc::ENOENT)),
            Error::Netlink {
                context: "c\x1b".into(),
                errno: 1,
                message: "m\r".into(),
            },
        ] {
            let s = e.to_string();
            assert!(!s.chars().any(|c| c.is_control()), "{s:?}");
            assert_eq!(s.lines().count(), 1, "{s:?}");
        }
    }
}
