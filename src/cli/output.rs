//! Human and JSON output. Results go to stdout; notes to stderr.
use crate::attach::Report;
use crate::detach::Detached;
use crate::ls::Entry;

fn json<T: serde::Serialize>(v: &T) {
    match serde_json::to_string_pretty(v) {
        Ok(s) => println!("{s}"),
        Err(e) => eprintln!("pipework: cannot encode JSON: {e}"),
    }
}

pub fn attach(r: &Report, as_json: bool, dry_run: bool) {
    for n in &r.host.notes {
        eprintln!("pipework: {n}");
    }
    if as_json {
        json(r);
    } else if !dry_run && std::env::var_os("PIPEWORK_VERBOSE").is_some() {
        println!(
            "{} {} {} {}",
            r.guest,
            r.interface,
            r.mac,
            r.addresses.join(",")
        );
    }
}

pub fn detach(d: &[Detached], as_json: bool) {
    if as_json {
        json(&d);
        return;
    }
    if d.is_empty() {
        eprintln!("pipework: nothing attached; nothing to do");
    }
    for x in d {
        eprintln!(
            "pipework: detached {} {} ({} {})",
            x.guest, x.interface, x.kind, x.host
        );
    }
}

pub fn ls(entries: &[Entry], as_json: bool) {
    if as_json {
        json(&entries);
        return;
    }
    println!(
        "{:<20} {:<8} {:<8} {:<14} {:<15} {:<17} ADDRESSES",
        "GUEST", "IFACE", "KIND", "HOST", "HOST-IFACE", "MAC"
    );
    for e in entries {
        println!(
            "{:<20} {:<8} {:<8} {:<14} {:<15} {:<17} {}",
            e.guest,
            e.interface,
            e.kind,
            e.host,
            e.host_interface.as_deref().unwrap_or("-"),
            e.mac,
            e.addresses.join(",")
        );
    }
}

pub fn gc(items: &[crate::gc::Collected], as_json: bool) {
    if as_json {
        json(&items);
        return;
    }
    if items.is_empty() {
        eprintln!("pipework: gc: nothing to collect");
    }
    for i in items {
        // Names may come from guests: {:?} escapes control characters.
        println!(
            "{} {} {:?} in {:?}: {}",
            i.action, i.kind, i.name, i.place, i.reason
        );
    }
}

pub fn host_shim(r: &crate::driver::host_shim::ShimReport, as_json: bool) {
    if as_json {
        json(r);
        return;
    }
    let verb = if r.created { "created" } else { "updated" };
    eprintln!(
        "pipework: {verb} host shim {} on {} with {}; {} guest route(s)",
        r.shim,
        r.parent,
        r.address,
        r.routes.len()
    );
    for route in &r.routes {
        println!("{route}");
    }
}
