//! Helpers shared by tests/trust_forged.rs and tests/crash_kill.rs: whole
//! host (or namespace) snapshots that survive other users of this machine,
//! OVS rows as a witness, and checks on what the binary printed.
#![allow(dead_code)]
use crate::common::{BIN, docker_host};
use std::process::{Command, Output, Stdio};

pub const ESC: u8 = 0x1b;

/// Run `cmd args` on the host, or inside named namespace `ns` (`ip netns
/// exec`, which also gives the program that namespace's /sys).
pub fn run_in(ns: Option<&str>, cmd: &str, args: &[&str]) -> Output {
    let mut c = match ns {
        Some(n) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", n, cmd]);
            c
        }
        None => Command::new(cmd),
    };
    c.args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd}: {e}"))
}

pub fn text(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn err_text(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The binary under test, on the host or inside namespace `ns`.
pub fn pw_in(ns: Option<&str>, args: &[&str]) -> Output {
    let mut c = match ns {
        Some(n) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", n, BIN]);
            c
        }
        None => Command::new(BIN),
    };
    c.args(args)
        .env("DOCKER_HOST", docker_host())
        .env("PIPEWORK_OVSDB", ovsdb_url())
        .stdin(Stdio::null())
        .output()
        .expect("run pipework")
}

pub fn ovsdb_url() -> String {
    std::env::var("PIPEWORK_OVSDB").unwrap_or_else(|_| "unix:/tmp/pw-env/ovs/db.sock".into())
}

/// Path of the OVSDB socket, when one is there.
pub fn ovsdb_socket() -> Option<String> {
    let u = ovsdb_url();
    let p = u.strip_prefix("unix:").unwrap_or(&u).to_string();
    std::path::Path::new(&p).exists().then_some(p)
}

/// `ovs-vsctl` as a witness of the database (never to set things up).
pub fn vsctl(args: &[&str]) -> String {
    let Some(sock) = ovsdb_socket() else {
        return String::new();
    };
    let o = Command::new("ovs-vsctl")
        .arg(format!("--db=unix:{sock}"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("ovs-vsctl");
    text(&o)
}

/// Is the component there? In CI a missing one is a failure.
pub fn have(what: &str, present: bool) -> bool {
    if present {
        return true;
    }
    assert!(std::env::var_os("CI").is_none(), "CI: {what} is missing");
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "SKIP: {what} is missing");
    false
}

pub fn have_ovs() -> bool {
    let vsctl = Command::new("ovs-vsctl")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    have(
        "Open vSwitch (ovs-vsctl and an OVSDB socket, see PIPEWORK_OVSDB)",
        vsctl && ovsdb_socket().is_some(),
    )
}

pub fn have_strace() -> bool {
    have(
        "strace",
        Command::new("strace")
            .arg("-V")
            .output()
            .is_ok_and(|o| o.status.success()),
    )
}

/// Other test suites and dockerd create and delete their own links on
/// this host while we run, under names we cannot predict. A host snapshot
/// therefore keeps a line only when every interface it names is ours (its
/// name contains `mine`, or it is enslaved to or paired into something
/// ours) or a system one (loopback and devices with hardware behind them,
/// such as the uplink). Lines that name no interface (policies, chains,
/// rules) are kept.
fn foreign(line: &str, mine: &str, system: &[String]) -> bool {
    if line.contains(mine) {
        return false;
    }
    if line.starts_with("ovs ") {
        return true;
    }
    let names = referenced_links(line);
    // iptables rules that name no interface belong to someone else
    // (dockerd's per-container NAT rules come and go); ours name a bridge.
    if (line.starts_with("-A ") || line.starts_with("-I ")) && names.is_empty() {
        return true;
    }
    names.iter().any(|n| !system.contains(n))
}

/// Interface names a line of `ip -o link/addr`, `ip route` or
/// `iptables -S` refers to.
fn referenced_links(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    if let Some((head, rest)) = line.split_once(": ")
        && !head.is_empty()
        && head.bytes().all(|b| b.is_ascii_digit())
    {
        let name = rest
            .split(|c: char| c.is_whitespace() || c == ':')
            .next()
            .unwrap_or_default();
        out.push(name.split('@').next().unwrap_or(name).to_string());
    }
    let toks: Vec<&str> = line.split_whitespace().collect();
    for w in toks.windows(2) {
        match w[0] {
            "dev" | "-i" | "-o" | "master" | "link-netns" => {
                out.push(w[1].trim_start_matches('!').to_string())
            }
            "--comment" => {
                let c = w[1].trim_matches('"');
                out.push(c.strip_prefix("pipework:").unwrap_or(c).to_string());
            }
            _ => {}
        }
    }
    out.retain(|n| !n.is_empty() && n != "!");
    out
}

/// Loopback and interfaces with a device behind them (the uplink).
fn system_links() -> Vec<String> {
    let mut v = vec!["lo".to_string()];
    if let Ok(rd) = std::fs::read_dir("/sys/class/net") {
        for e in rd.flatten() {
            if e.path().join("device").exists() {
                v.push(e.file_name().to_string_lossy().into_owned());
            }
        }
    }
    v
}

/// Make one snapshot line comparable across time: interface indexes,
/// carrier and operational state, address lifetimes and DAD progress are
/// the kernel's business, not ours. With `records`, the text of pipework's
/// own records is blanked too (crash tests rebuild links, and a record may
/// carry per-link data such as an authenticator).
pub fn normalise(line: &str, records: bool) -> Option<String> {
    // IPv6 link-local addresses and per-device multicast routes come and
    // go with carrier (linkwatch runs late); they are never ours.
    if line.contains("fe80::") || line.contains("ff00::/8") {
        return None;
    }
    let mut l = line.to_string();
    // Leading "12: " of ip -o link/addr.
    if let Some((head, rest)) = l.split_once(": ")
        && !head.is_empty()
        && head.bytes().all(|b| b.is_ascii_digit())
    {
        l = rest.to_string();
    }
    if let Some(i) = l.find(" valid_lft") {
        l.truncate(i);
    }
    for noise in [
        " tentative",
        " linkdown",
        " dadfailed",
        "NO-CARRIER,",
        ",LOWER_UP",
        ",M-DOWN",
    ] {
        l = l.replace(noise, "");
    }
    l = drop_word_after(&l, "state ");
    l = replace_digits_after(&l, "@if");
    // A veth end whose peer is in another namespace gets a random MAC on
    // each creation (crash tests re-create them).
    if records
        && l.contains(" link-netns ")
        && let Some(i) = l.find("link/ether ")
    {
        let at = i + "link/ether ".len();
        if l.len() >= at + 17 {
            l.replace_range(at..at + 17, "<mac>");
        }
    }
    if records && let Some(i) = l.find("alias pipework") {
        l.truncate(i);
        l.push_str("alias pipework<record>");
    }
    Some(l)
}

/// "… state UP mode …" → "… mode …".
fn drop_word_after(l: &str, key: &str) -> String {
    let Some(i) = l.find(key) else {
        return l.to_string();
    };
    let rest = &l[i + key.len()..];
    let end = rest.find(' ').map(|e| e + 1).unwrap_or(rest.len());
    format!("{}{}", &l[..i], &rest[end..])
}

/// "eth1@if17:" → "eth1@if:".
fn replace_digits_after(l: &str, key: &str) -> String {
    let mut out = String::new();
    let mut rest = l;
    while let Some(i) = rest.find(key) {
        out.push_str(&rest[..i + key.len()]);
        rest = rest[i + key.len()..].trim_start_matches(|c: char| c.is_ascii_digit());
    }
    out.push_str(rest);
    out
}

/// `ip -o` link, addr, route (all tables, both families) and rule, in one
/// batch.
fn ip_batch(prefix: &[&str]) -> String {
    use std::io::Write;
    let mut c = Command::new(prefix[0]);
    c.args(&prefix[1..])
        .args(["ip", "-o", "-b", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut child = c.spawn().expect("spawn ip -b");
    if let Some(mut i) = child.stdin.take() {
        let _ = i.write_all(b"link show\naddr show\nroute show table all\nrule show\n");
    }
    text(&child.wait_with_output().expect("ip -b"))
}

/// Everything about a network namespace (the host's when `ns` is None)
/// that an attach, detach, gc or a forged record could change: links (with
/// their aliases), addresses, routes, rules, iptables, our files under
/// /run/pipework and, with `ovs`, our OVS rows. Lines of other suites'
/// objects on the host are left out; lines naming `mine` are always kept.
/// Sorted, so a link re-created with a new index compares equal.
pub fn snapshot(ns: Option<&str>, mine: &str, records: bool, ovs: bool) -> String {
    let mut raw = match ns {
        Some(n) => ip_batch(&["ip", "netns", "exec", n]),
        None => ip_batch(&["env"]),
    };
    // raw: the bridge's notrack rule (firewall/notrack.rs).
    for table in ["filter", "nat", "raw"] {
        raw.push_str(&text(&run_in(ns, "iptables", &["-w", "-t", table, "-S"])));
    }
    // The IPv6 notrack rule (same module).
    raw.push_str(&text(&run_in(ns, "ip6tables", &["-w", "-t", "raw", "-S"])));
    if ovs && ns.is_none() && ovsdb_socket().is_some() {
        for br in vsctl(&["list-br"]).lines().filter(|b| b.contains(mine)) {
            raw.push_str(&format!("ovs bridge {br}\n"));
            for p in vsctl(&["list-ports", br]).lines() {
                raw.push_str(&format!("ovs port {br} {p}\n"));
            }
        }
        for l in vsctl(&[
            "--format=csv",
            "--no-headings",
            "--columns=name",
            "list",
            "Port",
        ])
        .lines()
        {
            raw.push_str(&format!("ovs port row {l}\n"));
        }
        for l in vsctl(&[
            "--format=csv",
            "--no-headings",
            "--columns=name,external_ids",
            "list",
            "Interface",
        ])
        .lines()
        {
            raw.push_str(&format!("ovs interface {l}\n"));
        }
    }
    // Our markers and state files (lock files come and go with first use).
    if let Ok(rd) = walk("/run/pipework") {
        for p in rd {
            if !p.ends_with(".lock") && p.contains(mine) {
                raw.push_str(&format!("file {p}\n"));
            }
        }
    }
    // Only the host is shared with others; a namespace of ours is all ours.
    let system = system_links();
    let mut v: Vec<String> = raw
        .lines()
        .filter(|l| ns.is_some() || !foreign(l, mine, &system))
        .filter_map(|l| normalise(l, records))
        .collect();
    v.sort();
    v.join("\n")
}

fn walk(dir: &str) -> std::io::Result<Vec<String>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir)?.flatten() {
        let p = e.path().display().to_string();
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            out.extend(walk(&p).unwrap_or_default());
        } else {
            out.push(p);
        }
    }
    Ok(out)
}

/// The namespace at `path` (a /proc/PID/ns/net or /run/netns file).
pub fn ns_snapshot(path: &str, records: bool) -> String {
    let net = format!("--net={path}");
    let raw = ip_batch(&["nsenter", &net, "--"]);
    assert!(raw.contains("lo"), "could not read namespace {path}");
    let mut v: Vec<String> = raw.lines().filter_map(|l| normalise(l, records)).collect();
    v.sort();
    v.join("\n")
}

/// Compare two snapshots (as multisets of lines); on a difference, say
/// which lines went and which came.
pub fn diff(before: &str, after: &str) -> Option<String> {
    if before == after {
        return None;
    }
    let mut count: std::collections::BTreeMap<&str, i64> = Default::default();
    for l in before.lines() {
        *count.entry(l).or_default() -= 1;
    }
    for l in after.lines() {
        *count.entry(l).or_default() += 1;
    }
    let gone: Vec<_> = count
        .iter()
        .filter(|(_, n)| **n < 0)
        .map(|(l, _)| *l)
        .collect();
    let new: Vec<_> = count
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(l, _)| *l)
        .collect();
    Some(format!("missing now: {gone:#?}\n  new: {new:#?}"))
}

/// Where a raw ESC byte shows up in what the binary printed, if anywhere.
pub fn esc_in(o: &Output) -> Option<String> {
    for (what, bytes) in [("stdout", &o.stdout), ("stderr", &o.stderr)] {
        if let Some(i) = bytes.iter().position(|b| *b == ESC) {
            let from = i.saturating_sub(40);
            let to = (i + 40).min(bytes.len());
            return Some(format!(
                "raw ESC in {what}: {:?}",
                String::from_utf8_lossy(&bytes[from..to])
            ));
        }
    }
    None
}

/// Host links whose names start with `prefix`.
pub fn links_with_prefix(ns: Option<&str>, prefix: &str) -> Vec<String> {
    text(&run_in(ns, "ip", &["-o", "link", "show"]))
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).to_string())
        .filter(|n| n.starts_with(prefix))
        .collect()
}

/// Remove our firewall rules and marker for a bridge name, whatever state
/// a failed test left them in.
pub fn drop_firewall(bridge: &str) {
    let _ = std::fs::remove_file(format!("/run/pipework/firewall/{bridge}"));
    let c = format!("pipework:{bridge}");
    // The notrack rules of both families (firewall/notrack.rs).
    for (tool, dir, only) in [
        ("iptables", "notrack", &[][..]),
        (
            "ip6tables",
            "notrack6",
            &["!", "-s", "fe80::/10", "!", "-d", "fe80::/10"][..],
        ),
    ] {
        let _ = std::fs::remove_file(format!("/run/pipework/firewall/{dir}/{bridge}"));
        let mut args = vec!["-w", "-t", "raw", "-D", "PREROUTING"];
        args.extend(only);
        args.extend(["-i", bridge, "-m", "comment", "--comment", &c]);
        args.extend(["-j", "CT", "--notrack"]);
        let _ = run_in(None, tool, &args);
    }
    for chain in ["DOCKER-USER", "FORWARD"] {
        for _ in 0..8 {
            let o = run_in(
                None,
                "iptables",
                &[
                    "-w",
                    "-D",
                    chain,
                    "-i",
                    bridge,
                    "-o",
                    bridge,
                    "-m",
                    "comment",
                    "--comment",
                    &c,
                    "-j",
                    "ACCEPT",
                ],
            );
            if !o.status.success() {
                break;
            }
        }
    }
}
