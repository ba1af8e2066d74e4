//! Human and JSON output. Results go to stdout; notes to stderr.
//!
//! Most strings we print were written by a guest or could have been: link
//! names and aliases (our records) live in its namespace, container names
//! come from the engine. Human output passes each through
//! `untrusted::display` so escape sequences show as text instead of
//! driving the operator's terminal. JSON needs nothing more: serde_json
//! already writes every control character as `\uXXXX`.
use crate::attach::Report;
use crate::detach::Detached;
use crate::ls::Entry;

use crate::untrusted::display as shown;

fn json<T: serde::Serialize>(v: &T) {
    match serde_json::to_string_pretty(v) {
        Ok(s) => println!("{s}"),
        Err(e) => eprintln!("pipework: cannot encode JSON: {e}"),
    }
}

pub fn attach(r: &Report, as_json: bool, dry_run: bool) {
    for n in &r.host.notes {
        eprintln!("pipework: {}", shown(n));
    }
    if as_json {
        json(r);
    } else if !dry_run && std::env::var_os("PIPEWORK_VERBOSE").is_some() {
        println!(
            "{} {} {} {}",
            shown(&r.guest),
            shown(&r.interface),
            shown(&r.mac),
            shown(&r.addresses.join(","))
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
            shown(&x.guest),
            shown(&x.interface),
            shown(&x.kind),
            shown(&x.host)
        );
    }
}

pub fn ls(entries: &[Entry], as_json: bool) {
    if as_json {
        json(&entries);
        return;
    }
    println!(
        "{:<20} {:<8} {:<8} {:<14} {:<15} {:<17} {:<6} ADDRESSES",
        "GUEST", "IFACE", "KIND", "HOST", "HOST-IFACE", "MAC", "VLAN"
    );
    for e in entries {
        println!(
            "{:<20} {:<8} {:<8} {:<14} {:<15} {:<17} {:<6} {}",
            shown(&e.guest),
            shown(&e.interface),
            shown(&e.kind),
            shown(&e.host),
            shown(e.host_interface.as_deref().unwrap_or("-")),
            shown(&e.mac),
            shown(e.vlan.as_deref().unwrap_or("-")),
            shown(&e.addresses.join(","))
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
        // Names may come from guests: escaped for the terminal.
        println!(
            "{} {} {} in {}: {}",
            i.action,
            i.kind,
            crate::untrusted::display(&i.name),
            crate::untrusted::display(&i.place),
            crate::untrusted::display(&i.reason)
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
        shown(&r.shim),
        shown(&r.parent),
        shown(&r.address),
        r.routes.len()
    );
    for route in &r.routes {
        println!("{}", shown(route));
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn json_escapes_control_characters_itself() {
        // What `--json` relies on instead of `display`: serde_json writes
        // ESC and the other C0 controls as \u00XX escapes, so the JSON
        // text carries no raw control byte and parses back to the original.
        let v = serde_json::json!({ "guest": "pw\x1b[2J\x07x", "kind": "a\u{9b}b" });
        for text in [
            serde_json::to_string(&v).expect("json"),
            serde_json::to_string_pretty(&v).expect("json"),
        ] {
            assert!(text.contains(r"pw\u001b[2J\u0007x"), "{text}");
            assert!(!text.bytes().any(|b| b == 0x1b || b == 0x07), "{text}");
            let back: serde_json::Value = serde_json::from_str(&text).expect("parse");
            assert_eq!(back, v);
        }
    }
}
