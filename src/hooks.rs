//! How the core verbs (`detach`, `gc`, `ls`) reach what only a subsystem
//! knows, without naming the subsystem: the overlay must leave etcd before
//! its endpoint's link goes, `ls` shows which lab built a link, and `link`
//! finishes its own half-built point-to-point ends in `gc`. The verbs call
//! the hooks in this table; the subsystems fill it.
//!
//! Layering: this module sits in the verbs layer, below `detach`, `gc` and
//! `ls` (they call it, it calls none of them) and names only lower layers
//! (record, inventory, netlink). The one function that names the
//! subsystems and fills the table is `subsystems::install`
//! (src/subsystems.rs), which lives above them, beside the CLI.
//!
//! Why a table that must be installed, and why it cannot be forgotten
//! silently:
//! - The table is one struct with a field per hook, each required: a new
//!   hook does not compile until the installer supplies it, so no hook is
//!   left out by a subsystem that forgot to register.
//! - The table is installed once per process, by `subsystems::install()`,
//!   which every entry point calls first (the binary's `main`, for the CLI
//!   and the CNI plugin alike; library users and tests the same way).
//! - A verb that needs the table asks `get()`, which fails with a
//!   one-line error when nothing was installed: a detach without its
//!   overlay step never happens quietly, it refuses before changing
//!   anything.
//!
//! Undoing a record is not a hook: `driver::undo` dispatches on the
//! record's kind, the point-to-point kind included, so nothing that takes
//! a link down depends on anything being installed.
use crate::error::{Error, Result};
use crate::inventory::{Namespace, Scan, Unscanned};
use crate::netlink::Net;
use crate::record::Record;
use futures::future::BoxFuture;
use std::sync::OnceLock;

/// Runs before a recorded attachment is undone by `detach`; an error
/// stops that interface's detach with nothing changed. `bool`: dry run.
pub type BeforeDetach = for<'a> fn(&'a Record, bool) -> BoxFuture<'a, Result<()>>;

/// One subsystem's pass of `gc`, given the scan gc made.
pub type GcPass = for<'a> fn(&'a GcCtx<'a>) -> BoxFuture<'a, GcOut>;

/// What `gc` hands each pass.
pub struct GcCtx<'a> {
    pub host: &'a Net,
    /// Every namespace, its handle and its scan, the host's first.
    pub all: &'a [(Namespace, Net, Scan)],
    /// The namespaces gc found but could not scan (gc names each as
    /// stuck). A pass that would act on something being *absent* from
    /// `all` must not act while this is not empty.
    pub unscanned: &'a [Unscanned],
    pub dry_run: bool,
}

/// One object a pass removed or restored (or, in a dry run, would have).
pub struct GcItem {
    /// What kind of object (`link`, `attachment`, …), as `gc` prints it.
    pub kind: &'static str,
    pub name: String,
    /// Where it is: a namespace path, `host`, a bridge.
    pub place: String,
    /// removed, rolled back, restored (`gc` adds "would be" in a dry run).
    pub action: &'static str,
    pub reason: String,
}

/// One object a pass could not deal with; `gc` goes on and names it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Stuck {
    pub kind: &'static str,
    pub name: String,
    #[serde(rename = "where")]
    pub place: String,
    pub error: String,
}

impl std::fmt::Display for Stuck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {} ({}): {}",
            self.kind,
            crate::untrusted::display(&self.name),
            crate::untrusted::display(&self.place),
            self.error
        )
    }
}

#[derive(Default)]
pub struct GcOut {
    pub items: Vec<GcItem>,
    pub stuck: Vec<Stuck>,
}

/// Every hook, each required.
pub struct Hooks {
    /// In order, before each interface's undo in `detach` (the overlay:
    /// release the endpoint in etcd).
    pub before_detach: &'static [BeforeDetach],
    /// Passes `gc` runs after its own namespace pass, in order (`link`:
    /// point-to-point ends whose builder died).
    pub gc: &'static [GcPass],
    /// For `ls`: the lab that built an attachment, if any.
    pub lab_of: for<'a> fn(&'a Record) -> Option<&'a str>,
    /// For `ls`: the guest a subsystem recorded in its own compact form,
    /// spelled out (CNI: the tag with its full container ID), and the
    /// container ID it holds.
    pub guest_of: fn(&Record) -> Option<(String, String)>,
}

static HOOKS: OnceLock<Hooks> = OnceLock::new();

/// Install the table. The first call wins; later ones change nothing
/// (every entry point may call the installer, and tests call it once per
/// test).
pub fn install(h: Hooks) {
    let _ = HOOKS.set(h);
}

/// The installed table, or an error saying it never was.
pub fn get() -> Result<&'static Hooks> {
    HOOKS.get().ok_or_else(|| {
        Error::other(
            "internal error: the subsystem hooks are not installed (call pipework::subsystems::install() first); nothing was changed",
        )
    })
}
