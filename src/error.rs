//! One error type for the whole crate.
//!
//! Every variant renders as a single line: operators read these in shell
//! scripts and scheduler logs, so the message names the bad token (or the
//! kernel object and errno) and, where we know it, the fix.
use std::fmt::Display;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The user's input is wrong; nothing has been touched yet.
    #[error("{token}: {reason}")]
    BadInput { token: String, reason: String },

    /// The guest named does not exist (any more): no container, process or
    /// namespace by that name. `detach` treats this as "already gone".
    #[error("{token}: {reason}")]
    GuestGone { token: String, reason: String },

    /// A classic form that a later version will implement.
    #[error("{0}: not supported yet")]
    NotSupported(String),

    /// Something we looked for does not exist (container, link, bridge).
    #[error("{0}")]
    NotFound(String),

    /// The kernel refused a netlink request.
    #[error("{context}: {message} (errno {errno})")]
    Netlink {
        context: String,
        errno: i32,
        message: String,
    },

    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },

    #[error("{0}")]
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

    /// Wrap an rtnetlink error with what we were doing; keep the errno so
    /// callers can match on EEXIST/ENODEV/EBUSY.
    pub fn netlink(context: impl Display, err: rtnetlink::Error) -> Self {
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
