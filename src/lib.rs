//! pipework: plumb containers into host networks.
//!
//! Data flows one way, down the layers of README.md's Design section:
//! cli → subsystems → verbs → drivers → core → leaves (tests/layering.rs).
pub mod address;
pub mod ambassador;
pub mod attach;
pub mod classic;
pub mod cli;
pub mod cni;
pub mod demo;
pub mod detach;
pub mod dhcp;
pub mod doctor;
pub mod driver;
pub mod error;
pub mod firewall;
/// Fuzz harnesses shared by `fuzz/` and `tests/fuzz_seeds.rs`.
#[doc(hidden)]
pub mod fuzzing;
pub mod gc;
pub mod guest;
pub mod hooks;
pub mod inventory;
pub mod key;
pub mod lab;
pub mod link;
pub mod lock;
pub mod ls;
pub mod netlink;
pub mod netns;
#[cfg(feature = "overlay")]
pub mod overlay;
pub mod ovsdb;
pub mod own;
pub mod record;
pub mod request;
pub mod rt;
pub mod sriov;
pub mod subsystems;
pub mod untrusted;

pub use error::{Error, Result};
pub mod passthrough;
pub mod wait;
pub mod watch;
