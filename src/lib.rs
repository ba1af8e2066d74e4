//! pipework: plumb containers into host networks.
//!
//! Data flows one way: cli → request → guest → driver → netlink.
pub mod cli;
pub mod error;
pub mod netlink;
pub mod netns;

pub use error::{Error, Result};
pub mod passthrough;
pub mod wait;
