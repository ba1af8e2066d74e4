//! Command-line entry point.
pub fn main() -> i32 {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if let Some(code) = crate::dhcp::cmd::hidden(&args) {
        return code;
    }
    0
}
