//! CNI error results: `{cniVersion, code, msg, details}` on stdout, non-zero exit.
//!
//! Codes follow SPEC.md section 5. Runtimes branch on the code (for example
//! code 3 means "no cleanup needed", 11 means "retry"), so every failure path
//! picks one deliberately instead of a catch-all.
use serde::Serialize;
use std::fmt;

/// Well-known codes (0-99 are reserved by the spec).
pub mod code {
    pub const INCOMPATIBLE_VERSION: u32 = 1;
    pub const UNSUPPORTED_FIELD: u32 = 2;
    pub const UNKNOWN_CONTAINER: u32 = 3;
    pub const INVALID_ENV: u32 = 4;
    pub const IO_FAILURE: u32 = 5;
    pub const DECODING_FAILURE: u32 = 6;
    pub const INVALID_CONFIG: u32 = 7;
    pub const TRY_AGAIN_LATER: u32 = 11;
    pub const NOT_AVAILABLE: u32 = 50;
    pub const NOT_AVAILABLE_LIMITED: u32 = 51;
    /// Plugin-specific: the kernel refused an operation.
    pub const KERNEL: u32 = 100;
    /// Plugin-specific: the delegated IPAM plugin failed without a CNI error.
    pub const IPAM: u32 = 101;
    /// Plugin-specific: ADD found the interface already present.
    pub const INTERFACE_EXISTS: u32 = 102;
    /// Plugin-specific: CHECK found the kernel state differs from prevResult.
    pub const CHECK_MISMATCH: u32 = 103;
    /// Plugin-specific: anything else that went wrong inside the plugin.
    pub const INTERNAL: u32 = 199;
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CniError {
    pub code: u32,
    pub msg: String,
    pub details: String,
}

pub type CniResult<T> = std::result::Result<T, CniError>;

impl CniError {
    pub fn new(code: u32, msg: impl Into<String>, details: impl Into<String>) -> Self {
        CniError {
            code,
            msg: msg.into(),
            details: details.into(),
        }
    }

    pub fn config(msg: impl Into<String>) -> Self {
        Self::new(code::INVALID_CONFIG, msg, "")
    }

    /// The error JSON object for protocol version `version`.
    pub fn to_json(&self, version: &str) -> String {
        #[derive(Serialize)]
        struct Wire<'a> {
            #[serde(rename = "cniVersion")]
            cni_version: &'a str,
            code: u32,
            msg: &'a str,
            #[serde(skip_serializing_if = "str::is_empty")]
            details: &'a str,
        }
        let wire = Wire {
            cni_version: version,
            code: self.code,
            msg: &self.msg,
            details: &self.details,
        };
        serde_json::to_string(&wire).unwrap_or_else(|_| {
            // Serialising plain strings and an integer cannot fail; keep a
            // valid fallback anyway so the runtime always gets JSON.
            format!(
                r#"{{"cniVersion":"{version}","code":{},"msg":"error"}}"#,
                self.code
            )
        })
    }
}

impl fmt::Display for CniError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.details.is_empty() {
            write!(f, "{} (code {})", self.msg, self.code)
        } else {
            write!(f, "{}: {} (code {})", self.msg, self.details, self.code)
        }
    }
}

/// Map the crate's error type onto CNI codes: bad input is a config problem,
/// a missing object is an unknown container, kernel refusals keep their errno
/// in the message under a plugin code.
impl From<crate::Error> for CniError {
    fn from(e: crate::Error) -> Self {
        use crate::Error as E;
        let code = match &e {
            E::BadInput { .. } | E::GuestGone { .. } => code::INVALID_CONFIG,
            E::NotSupported(_) => code::UNSUPPORTED_FIELD,
            E::NotFound(_) => code::UNKNOWN_CONTAINER,
            E::Netlink { errno, .. } if *errno == libc::EBUSY || *errno == libc::EAGAIN => {
                code::TRY_AGAIN_LATER
            }
            E::Netlink { errno, .. } if *errno == libc::EEXIST => code::INTERFACE_EXISTS,
            E::Netlink { .. } => code::KERNEL,
            E::Io { .. } => code::IO_FAILURE,
            _ => code::INTERNAL,
        };
        CniError::new(code, e.to_string(), "")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_shape() {
        let e = CniError::new(7, "bad", "more");
        let v: serde_json::Value = serde_json::from_str(&e.to_json("1.1.0")).unwrap();
        assert_eq!(v["cniVersion"], "1.1.0");
        assert_eq!(v["code"], 7);
        assert_eq!(v["msg"], "bad");
        assert_eq!(v["details"], "more");
        let e = CniError::new(4, "x", "");
        let v: serde_json::Value = serde_json::from_str(&e.to_json("0.4.0")).unwrap();
        assert!(v.get("details").is_none());
    }

    #[test]
    fn crate_errors_map_to_codes() {
        let e: CniError = crate::Error::bad("mtu", "too small").into();
        assert_eq!(e.code, code::INVALID_CONFIG);
        let e: CniError = crate::Error::NotFound("ns".into()).into();
        assert_eq!(e.code, code::UNKNOWN_CONTAINER);
    }
}
