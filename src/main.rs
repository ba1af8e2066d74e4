//! Thin binary: all behaviour lives in the library so tests and the CNI
//! entry point share one code path.
fn main() {
    // The core verbs' hooks into the subsystems, for both entry points.
    pipework::subsystems::install();
    // A runtime that sets CNI_COMMAND is calling us as a CNI plugin.
    if let Some(code) = pipework::cni::main_if_cni() {
        std::process::exit(code);
    }
    std::process::exit(pipework::cli::main());
}
