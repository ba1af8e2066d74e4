//! pipework: plumb containers into host networks.
//!
//! Data flows one way: cli → request → guest → driver → netlink.
pub mod cli;
