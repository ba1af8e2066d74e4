//! `pipework lab` flags, dispatch and output.
use crate::error::{Error, Result};
use crate::lab::model::NodeKind;
use crate::lab::{apply, down, dryrun, graph, load, state, status};
use crate::untrusted::display as shown;
use clap::{Args, Subcommand};

#[derive(Args, Debug)]
pub struct LabArgs {
    #[command(subcommand)]
    pub cmd: LabCmd,
}

#[derive(Subcommand, Debug)]
pub enum LabCmd {
    /// Build the lab, or converge it to the file (only the difference is applied).
    Up {
        /// Lab file: TOML, or a containerlab .yml/.yaml.
        file: String,
        #[arg(long)]
        json: bool,
        /// Print what up would do (nodes to start, links to add, remove or
        /// rebuild, with iproute2 equivalents); change nothing.
        #[arg(long = "dry-run")]
        dry_run: bool,
        /// Refuse the file if it has keys pipework does not act on (named
        /// on stderr otherwise), before anything is changed.
        #[arg(long)]
        strict: bool,
        /// Build only this host's part of a lab across hosts (nodes with
        /// host = "H"); without it, the nodes that name no host.
        #[arg(long)]
        host: Option<String>,
    },
    /// Remove what the lab built (found from its records; the file may be gone).
    Down {
        /// Lab file, or the lab's name.
        lab: String,
        #[arg(long)]
        json: bool,
        /// Remove only this host's part of a lab across hosts (needs the file).
        #[arg(long)]
        host: Option<String>,
    },
    /// Every node and link, and whether the kernel still matches the file.
    Status {
        file: String,
        #[arg(long)]
        json: bool,
        /// This host's part of a lab across hosts.
        #[arg(long)]
        host: Option<String>,
    },
    /// Draw the lab: DOT (default) or SVG on stdout.
    Graph {
        file: String,
        /// dot or svg.
        #[arg(long, default_value = "dot")]
        format: String,
    },
}

fn json<T: serde::Serialize>(v: &T) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

pub fn run(a: &LabArgs) -> Result<i32> {
    let rt = super::runtime()?;
    match &a.cmd {
        LabCmd::Up {
            file,
            json: j,
            dry_run,
            strict,
            host,
        } => {
            let lab = load(file)?.for_host(host.as_deref());
            if *strict && !lab.ignored.is_empty() {
                for i in &lab.ignored[1..] {
                    eprintln!("pipework: not supported: {}", shown(i));
                }
                return Err(Error::bad(
                    &lab.ignored[0],
                    format!(
                        "--strict: {} key(s) of the file would be ignored; remove them or drop --strict",
                        lab.ignored.len()
                    ),
                ));
            }
            for i in &lab.ignored {
                eprintln!("ignored: {}", shown(i));
            }
            let unprivileged: Vec<&str> = lab
                .nodes
                .values()
                .filter(|n| matches!(&n.kind, NodeKind::Image(i) if !i.privileged))
                .map(|n| n.name.as_str())
                .collect();
            if lab.clab && !unprivileged.is_empty() {
                eprintln!(
                    "note: nodes {} start unprivileged with NET_ADMIN and NET_RAW (containerlab starts them privileged; set privileged: true to match)",
                    shown(&unprivileged.join(","))
                );
            }
            if *dry_run {
                let d = rt.block_on(dryrun::run(&lab))?;
                if *j {
                    json(&d);
                } else {
                    for s in &d.steps {
                        println!("{:<7} {}", s.action, shown(&s.what));
                        for c in &s.commands {
                            println!("          {}", shown(c));
                        }
                    }
                    println!(
                        "lab {}: {} step(s), {} unchanged",
                        shown(&d.lab),
                        d.steps.len(),
                        d.unchanged
                    );
                }
                eprintln!("pipework: dry run, nothing changed");
                return Ok(0);
            }
            let r = rt.block_on(apply::up(&lab, Some(std::path::Path::new(file))))?;
            for n in &r.notes {
                eprintln!("note: {}", shown(n));
            }
            if *j {
                json(&r);
            } else {
                for n in &r.started {
                    println!("started {}", shown(n));
                }
                for l in &r.added {
                    println!("added   {}", shown(l));
                }
                for l in &r.removed {
                    println!("removed {}", shown(l));
                }
                for (n, k) in &r.exec {
                    println!("exec    {}: {k} line(s) ok", shown(n));
                }
                println!(
                    "lab {}: {} added, {} removed, {} unchanged",
                    shown(&r.lab),
                    r.added.len(),
                    r.removed.len(),
                    r.unchanged
                );
            }
            Ok(0)
        }
        LabCmd::Down { lab, json: j, host } => {
            let mut elsewhere = Default::default();
            let name = if std::path::Path::new(lab).exists() {
                let l = load(lab)?.for_host(host.as_deref());
                elsewhere = l.elsewhere;
                l.name
            } else if host.is_some() {
                return Err(Error::bad(lab, "down --host needs the lab file"));
            } else if state::exists(lab)
                || lab
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                lab.clone()
            } else {
                return Err(Error::bad(lab, "no such lab file, and not a lab name"));
            };
            let r = rt.block_on(down::down_except(&name, &elsewhere))?;
            if *j {
                json(&r);
            } else {
                for l in &r.removed {
                    println!("removed {}", shown(l));
                }
                for c in &r.containers {
                    println!("removed container {}", shown(c));
                }
                for b in &r.bridges {
                    println!("removed bridge {}", shown(b));
                }
            }
            Ok(0)
        }
        LabCmd::Status {
            file,
            json: j,
            host,
        } => {
            let lab = load(file)?.for_host(host.as_deref());
            let s = rt.block_on(status::run(&lab));
            if *j {
                json(&s);
            } else {
                for n in &s.nodes {
                    println!(
                        "node {:<16} {:<9} {}{}{}",
                        shown(&n.name),
                        n.kind,
                        if n.running { "running" } else { "NOT RUNNING" },
                        n.problem
                            .as_deref()
                            .map(|p| format!(": {}", shown(p)))
                            .unwrap_or_default(),
                        n.exec
                            .as_deref()
                            .map(|e| format!("  exec {e}"))
                            .unwrap_or_default()
                    );
                }
                for l in &s.links {
                    println!("link {} {:<8} {}", l.id, l.state, shown(&l.link));
                }
                for x in &s.stale {
                    println!("stale {}", shown(x));
                }
                println!(
                    "lab {}: {}",
                    shown(&s.lab),
                    if s.matches {
                        "matches the file"
                    } else {
                        "DIFFERS from the file (run lab up)"
                    }
                );
            }
            Ok(if s.matches { 0 } else { 1 })
        }
        LabCmd::Graph { file, format } => {
            let lab = load(file)?;
            match format.as_str() {
                "dot" => print!("{}", graph::dot(&lab)),
                "svg" => print!("{}", graph::svg(&lab)),
                f => return Err(Error::bad(f, "--format takes dot or svg")),
            }
            Ok(0)
        }
    }
}
