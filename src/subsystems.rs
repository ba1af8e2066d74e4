//! The one place that names every subsystem with a hook: it fills the
//! table the core verbs call (`crate::hooks`, which says why a table and
//! how a missing one is caught). It sits above the subsystems, beside the
//! CLI, so no layer below ever names one. Every entry point calls
//! `install()` first: the binary's `main` (CLI and CNI plugin), and any
//! program or test that calls `detach`, `gc` or `ls` as a library.
use crate::hooks::{self, Hooks};

pub fn install() {
    hooks::install(Hooks {
        #[cfg(feature = "overlay")]
        before_detach: &[crate::overlay::attach::before_detach_hook],
        #[cfg(not(feature = "overlay"))]
        before_detach: &[],
        #[cfg(feature = "overlay")]
        gc: &[crate::link::gc::pass, crate::overlay::gc::pass],
        #[cfg(not(feature = "overlay"))]
        gc: &[crate::link::gc::pass],
        lab_of: crate::lab::plan::lab_of,
        guest_of: crate::cni::tag::guest_of,
    });
}
