//! Command-line entry point.
pub fn main() -> i32 {
    // Temporary wiring until the CLI has subcommands: `pipework ambassador ...`.
    let argv: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    if argv.first().is_some_and(|a| a == "ambassador") {
        return crate::ambassador::cli_main(argv);
    }
    0
}
