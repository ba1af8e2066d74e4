//! Thin binary: all behaviour lives in the library so tests and the CNI
//! entry point share one code path.
fn main() {
    std::process::exit(pipework::cli::main());
}
