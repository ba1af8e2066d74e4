//! Typed netlink operations (filled in by the foundation work).
