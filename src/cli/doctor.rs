//! `pipework doctor` flags and output.
use crate::error::Result;
use clap::Args;

#[derive(Args, Debug, Clone)]
pub struct DoctorArgs {
    /// The end probes start from: a container (name or id), pid, netns:NAME, a namespace path, or `host`.
    pub a: String,
    /// The other end: same forms, or an IP address B's side owns.
    pub b: String,
    /// Also try a TCP connect to this port of B.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    pub port: Option<u16>,
    /// Print the result as JSON: {"ok", "causes": [{"kind", "hop", "detail", "fix"}], "hops"}.
    #[arg(long)]
    pub json: bool,
}

/// Exit status: 0 when they can talk, 1 when a cause was found (usage
/// errors are 2, from the caller).
pub fn run(d: &DoctorArgs) -> Result<i32> {
    let req = crate::doctor::Request {
        a: d.a.clone(),
        b: d.b.clone(),
        port: d.port,
    };
    let rep = super::runtime()?.block_on(crate::doctor::run(&req))?;
    // A closed pipe is not a failure of the diagnosis: the exit status
    // still tells (SIGPIPE may be ignored here: doctor can talk to etcd).
    use std::io::Write;
    let text = if d.json {
        format!("{}\n", rep.json())
    } else {
        rep.human()
    };
    let _ = std::io::stdout().write_all(text.as_bytes());
    Ok(rep.exit_code())
}
