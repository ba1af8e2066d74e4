//! Command line: clap definitions (flags defined once) plus the classic
//! positional grammar, both parsed into one typed request.
mod ambassador;
mod args;
mod classic;
mod doctor;
mod lab;
mod link;
mod output;
#[cfg(feature = "overlay")]
mod overlay;

pub use args::{AttachArgs, Cli, Cmd, WaitArgs};
pub use classic::to_request;

use crate::error::{Error, Result};
use clap::{CommandFactory, Parser};

/// Entry point of the binary. Returns the process exit status.
pub fn main() -> i32 {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if let Some(code) = crate::dhcp::cmd::hidden(&args) {
        return code;
    }
    let argv: Vec<String> = std::env::args().collect();
    let cli = match parse_args(argv) {
        Ok(c) => c,
        Err(e) => {
            // Help and version go to stdout with status 0; real errors are
            // reported as clap formats them (it names the bad token).
            if !e.use_stderr() {
                let _ = e.print();
                return 0;
            }
            // One line, like every other error of ours: clap's first line
            // names the bad token; the rest is a hint we fold in.
            let text = e.render().to_string();
            let first = text.lines().next().unwrap_or_default();
            eprintln!(
                "pipework: {} (see pipework --help)",
                first.trim_start_matches("error: ")
            );
            return 2;
        }
    };
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("pipework: {e}");
            e.exit_code()
        }
    }
}

/// argv (classic or subcommand form, program name first) to the parsed
/// command line. Pure: it neither prints nor exits, so the fuzz harness
/// (crate::fuzzing) goes through exactly the parse `main` does.
pub fn parse_args(argv: Vec<String>) -> std::result::Result<Cli, clap::Error> {
    Cli::try_parse_from(classic::rewrite(argv))
}

use crate::rt::current as runtime;

fn run(cli: Cli) -> Result<i32> {
    // The proxy keeps SIGPIPE ignored: a peer closing mid-splice must be an
    // EPIPE on that connection, not the end of every connection.
    let cmd = match cli.cmd {
        Cmd::Ambassador(a) => return crate::ambassador::run(a.into()).map(|()| 0),
        // Long-lived too: a write to a socket the engine closed must be an
        // error to reconnect from, not the end of the process.
        Cmd::Watch(w) => {
            privileged()?;
            return crate::watch::run(w.into()).map(|()| 0);
        }
        other => other,
    };
    // Like other Unix tools, die quietly when our output pipe closes
    // (`pipework ls | head`) instead of panicking in println!. Not where
    // we talk to etcd: its client writes to sockets a member may have
    // closed (a refused TLS handshake, a member going away), and that has
    // to be an error we report in one line (or, for the agent, retry), not
    // a silent death by SIGPIPE.
    if !speaks_etcd(&cmd) {
        // SAFETY: restoring the default disposition of one signal.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    match cmd {
        #[cfg(feature = "overlay")]
        Cmd::Attach(a) if crate::overlay::attach::claims(&a.classic()) => {
            privileged()?;
            let rt = runtime()?;
            match rt.block_on(crate::overlay::attach::try_attach(&a.classic()))? {
                Some(rep) => output::attach(&rep, a.json, false),
                None => {
                    let req = classic::to_request(&a)?;
                    let rep = rt.block_on(crate::attach::run(&req))?;
                    output::attach(&rep, req.json, req.dry_run);
                }
            }
            Ok(0)
        }
        Cmd::Attach(a) => {
            let req = classic::to_request(&a)?;
            privileged()?;
            let rep = runtime()?.block_on(crate::attach::run(&req))?;
            output::attach(&rep, req.json, req.dry_run);
            Ok(0)
        }
        Cmd::Detach(d) => {
            privileged()?;
            let out = runtime()?.block_on(crate::detach::run(
                &d.guest,
                d.ifname.as_deref(),
                d.dry_run,
            ))?;
            output::detach(&out, d.json);
            Ok(0)
        }
        Cmd::Ls(l) => {
            privileged()?;
            let out = runtime()?.block_on(crate::ls::run())?;
            output::ls(&out, l.json);
            Ok(0)
        }
        Cmd::Gc(g) => {
            privileged()?;
            // What was collected is shown even when something is stuck;
            // then the stuck items, in one line, and a non-zero exit.
            let r = runtime()?.block_on(crate::gc::report(g.dry_run))?;
            output::gc(&r.collected, g.json);
            match crate::gc::stuck_error(&r) {
                None => Ok(0),
                Some(e) => Err(e),
            }
        }
        Cmd::Demo => {
            privileged()?;
            runtime()?.block_on(crate::demo::run())?;
            Ok(0)
        }
        Cmd::Wait(w) => {
            let timeout = match w.timeout {
                None => None,
                Some(t) => Some(crate::wait::parse_timeout(&t.to_string())?),
            };
            crate::request::check_ifname(&w.ifname)?;
            runtime()?.block_on(crate::wait::wait_for_link(None, &w.ifname, timeout))?;
            Ok(0)
        }
        Cmd::Route(p) => passthrough(crate::passthrough::Tool::Route, &p.args),
        Cmd::Rule(p) => passthrough(crate::passthrough::Tool::Rule, &p.args),
        Cmd::Tc(p) => passthrough(crate::passthrough::Tool::Tc, &p.args),
        Cmd::HostShim(p) => {
            privileged()?;
            let json = p.args.iter().any(|a| a == "--json");
            let args: Vec<String> = p.args.into_iter().filter(|a| a != "--json").collect();
            let rep = runtime()?.block_on(crate::driver::host_shim::run(&args))?;
            output::host_shim(&rep, json);
            Ok(0)
        }
        Cmd::Link(l) => {
            privileged()?;
            link::run(&l)
        }
        Cmd::Lab(l) => {
            privileged()?;
            lab::run(&l)
        }
        Cmd::Doctor(d) => {
            privileged()?;
            doctor::run(&d)
        }
        #[cfg(feature = "overlay")]
        Cmd::Overlay(o) => {
            privileged()?;
            runtime()?.block_on(crate::overlay::run(o.cmd.into()))
        }
        Cmd::Ambassador(_) | Cmd::Watch(_) => Ok(0), // handled above
        Cmd::Man => {
            let man = clap_mangen::Man::new(Cli::command());
            man.render(&mut std::io::stdout())
                .map_err(|e| Error::io("writing man page", e))?;
            Ok(0)
        }
        Cmd::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "pipework",
                &mut std::io::stdout(),
            );
            Ok(0)
        }
    }
}

/// Whether a command talks to etcd (the overlay), and so must keep
/// SIGPIPE ignored.
#[cfg(feature = "overlay")]
fn speaks_etcd(cmd: &Cmd) -> bool {
    match cmd {
        Cmd::Overlay(_) => true,
        Cmd::Attach(a) => crate::overlay::attach::claims(&a.classic()),
        Cmd::Detach(_) => crate::overlay::state::exists(),
        // Reads the overlay's keys when A sits on an overlay bridge.
        Cmd::Doctor(_) => crate::overlay::state::exists(),
        _ => false,
    }
}

/// Built without the overlay: nothing talks to etcd.
#[cfg(not(feature = "overlay"))]
fn speaks_etcd(_: &Cmd) -> bool {
    false
}

/// `pipework route|rule|tc <guest> ARGS...`: the tool's own exit status.
fn passthrough(tool: crate::passthrough::Tool, args: &[String]) -> Result<i32> {
    let Some((guest, rest)) = args.split_first() else {
        return Err(Error::bad(
            "<guest>",
            "missing: pipework route|rule|tc <guest> ARGS... (e.g. pipework route web1 add 10.0.0.0/8 via 10.1.1.1)",
        ));
    };
    privileged()?;
    let g = crate::guest::resolve(guest)?;
    let rest: Vec<std::ffi::OsString> = rest.iter().map(Into::into).collect();
    crate::passthrough::run(tool, &g.netns, &rest)
}

/// Refuse up front, in one line, when we cannot administer networking:
/// otherwise the first failure would come from deep inside an attach.
fn privileged() -> Result<()> {
    const CAP_NET_ADMIN: u32 = 12;
    const CAP_SYS_ADMIN: u32 = 21;
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|h| u64::from_str_radix(h.trim(), 16).ok())
        .unwrap_or(0);
    for (bit, name) in [
        (CAP_NET_ADMIN, "CAP_NET_ADMIN"),
        (CAP_SYS_ADMIN, "CAP_SYS_ADMIN"),
    ] {
        if eff & (1 << bit) == 0 {
            return Err(Error::other(format!(
                "needs {name} (run as root, e.g. with sudo)"
            )));
        }
    }
    Ok(())
}
