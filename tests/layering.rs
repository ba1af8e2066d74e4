//! The layering the README promises, checked from the source: data flows
//! one way, cli → subsystems → verbs → drivers → core → leaves.
//!
//! Every `crate::MODULE` path in a file under `src/TOP/` (or `src/TOP.rs`)
//! is an edge TOP → MODULE between top-level modules. An edge may point
//! down the table below, or sideways within one layer as long as it closes
//! no cycle. Comments are skipped: a doc comment naming a module is not a
//! dependency. A new top-level module must be given a layer here.
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Top to bottom. The README's architecture section lists the same table.
const LAYERS: &[(&str, &[&str])] = &[
    // The only place clap lives; the fuzz harness drives the same parse;
    // `subsystems::install` fills the verbs' hook table from above.
    ("cli", &["cli", "fuzzing", "subsystems"]),
    // Take typed requests; may use each other (watch re-plumbs labs, CNI
    // attaches to overlays) but never in a circle.
    (
        "subsystems",
        &[
            "lab",
            "link",
            "overlay",
            "watch",
            "cni",
            "ambassador",
            "demo",
            "doctor",
        ],
    ),
    // Core verbs, and the classic grammar that feeds attach; they call
    // hooks, never a subsystem.
    (
        "verbs",
        &["attach", "detach", "gc", "ls", "classic", "hooks"],
    ),
    (
        "drivers",
        &["driver", "sriov", "firewall", "address", "dhcp"],
    ),
    (
        "core",
        &[
            "request",
            "inventory",
            "record",
            "netlink",
            "guest",
            "ovsdb",
            "own",
            "lock",
            "wait",
        ],
    ),
    (
        "leaves",
        &["error", "netns", "key", "untrusted", "passthrough", "rt"],
    ),
];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rs_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).expect("read src").flatten() {
        let p = e.path();
        if p.is_dir() {
            rs_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The code of a file without its comments (line comments and doc
/// comments; the sources use no block comments). A `//` inside a string
/// literal ("http://…") is code.
fn code(text: &str) -> String {
    text.lines()
        .map(|l| {
            let b = l.as_bytes();
            let mut in_str = false;
            for i in 0..b.len() {
                match b[i] {
                    // '"' as a char literal does not open a string.
                    b'"' if i > 0 && b[i - 1] == b'\'' && b.get(i + 1) == Some(&b'\'') => {}
                    b'"' if !(in_str && i > 0 && b[i - 1] == b'\\') => in_str = !in_str,
                    b'/' if !in_str && b.get(i + 1) == Some(&b'/') => return &l[..i],
                    _ => {}
                }
            }
            l
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The top-level module a file belongs to (None for lib.rs and main.rs).
fn top_of(path: &Path) -> Option<String> {
    let rel = path.strip_prefix(src()).ok()?;
    let first = rel.components().next()?.as_os_str().to_str()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    (name != "lib" && name != "main").then(|| name.to_string())
}

/// Every module named after `crate::` (also inside `crate::{a, b::c}`).
fn named_modules(code: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for part in group[..end].split(',') {
                let word: String = part
                    .trim()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !word.is_empty() {
                    out.insert(word);
                }
            }
        } else {
            let word: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !word.is_empty() {
                out.insert(word);
            }
        }
    }
    out
}

type Graph = BTreeMap<String, BTreeMap<String, BTreeSet<String>>>;

/// TOP → (MODULE → files that name it).
fn graph() -> (Graph, BTreeSet<String>) {
    let mut files = Vec::new();
    rs_files(&src(), &mut files);
    let tops: BTreeSet<String> = files.iter().filter_map(|p| top_of(p)).collect();
    let mut g = Graph::new();
    for f in &files {
        let Some(top) = top_of(f) else { continue };
        let text = std::fs::read_to_string(f).expect("read source");
        for m in named_modules(&code(&text)) {
            if m != top && tops.contains(&m) {
                let shown = f.strip_prefix(src()).unwrap_or(f).display().to_string();
                g.entry(top.clone())
                    .or_default()
                    .entry(m)
                    .or_default()
                    .insert(shown);
            }
        }
    }
    (g, tops)
}

fn layer_of(m: &str) -> Option<usize> {
    LAYERS.iter().position(|(_, ms)| ms.contains(&m))
}

#[test]
fn every_top_level_module_has_a_layer() {
    let (_, tops) = graph();
    let missing: Vec<_> = tops.iter().filter(|m| layer_of(m).is_none()).collect();
    assert!(
        missing.is_empty(),
        "give these modules a layer in tests/layering.rs and the README: {missing:?}"
    );
}

#[test]
fn no_edge_points_up_a_layer() {
    let (g, _) = graph();
    let mut up = Vec::new();
    for (from, tos) in &g {
        for (to, files) in tos {
            if let (Some(a), Some(b)) = (layer_of(from), layer_of(to))
                && a > b
            {
                up.push(format!(
                    "{from} ({}) -> {to} ({}) in {files:?}",
                    LAYERS[a].0, LAYERS[b].0
                ));
            }
        }
    }
    assert!(up.is_empty(), "edges pointing up:\n{}", up.join("\n"));
}

#[test]
fn no_cycle_between_top_level_modules() {
    let (g, tops) = graph();
    // A cycle exists iff some module reaches itself.
    let mut cycles = Vec::new();
    for start in &tops {
        let mut seen = BTreeSet::new();
        let mut stack: Vec<(String, Vec<String>)> = vec![(start.clone(), vec![start.clone()])];
        while let Some((m, path)) = stack.pop() {
            for next in g.get(&m).map(|t| t.keys()).into_iter().flatten() {
                if next == start {
                    cycles.push(format!("{} -> {start}", path.join(" -> ")));
                } else if seen.insert(next.clone()) {
                    let mut p = path.clone();
                    p.push(next.clone());
                    stack.push((next.clone(), p));
                }
            }
        }
    }
    assert!(cycles.is_empty(), "import cycles:\n{}", cycles.join("\n"));
}

/// clap lives in src/cli only (and the fuzz harness, which drives the
/// same parse); subsystems take typed requests.
#[test]
fn clap_only_in_the_cli() {
    let mut files = Vec::new();
    rs_files(&src(), &mut files);
    let mut found = Vec::new();
    for f in &files {
        let top = top_of(f).unwrap_or_default();
        if top == "cli" || top == "fuzzing" {
            continue;
        }
        let text = code(&std::fs::read_to_string(f).expect("read"));
        if text.contains("clap::") || text.contains("use clap") || text.contains("crate::cli") {
            found.push(f.strip_prefix(src()).unwrap_or(f).display().to_string());
        }
    }
    assert!(
        found.is_empty(),
        "clap or crate::cli outside src/cli: {found:?}"
    );
}

/// The checker itself: a file naming a module in a comment only adds no
/// edge, and grouped imports are all seen.
#[test]
fn the_checker_sees_grouped_imports_and_skips_comments() {
    let c = code(
        "use crate::{error::Error, netlink};\n/// see crate::cli\nlet u = \"http://x\"; // crate::lab\n",
    );
    let m = named_modules(&c);
    assert!(m.contains("error") && m.contains("netlink"), "{m:?}");
    assert!(!m.contains("cli") && !m.contains("lab"), "{m:?}");
}

/// The overlay's device-name prefixes (`pub const …_PREFIX: &str = "…";`
/// in src/overlay/names.rs), read from the source so a renamed prefix
/// is still checked.
fn overlay_prefixes() -> Vec<String> {
    let names = std::fs::read_to_string(src().join("overlay/names.rs")).expect("read names.rs");
    code(&names)
        .lines()
        .filter_map(|l| {
            let rest = l.trim().strip_prefix("pub const ")?;
            let (name, value) = rest.split_once(": &str = \"")?;
            name.ends_with("_PREFIX")
                .then(|| value.split('"').next().unwrap_or_default().to_string())
        })
        .filter(|p| !p.is_empty())
        .collect()
}

/// Files below the subsystems whose code (comments skipped) has a string
/// literal starting with one of `prefixes` (`"ov-…"`, `b"ov-"`).
fn lower_files_naming(prefixes: &[String]) -> Vec<String> {
    let subsystems = layer_of("overlay").expect("overlay has a layer");
    let mut files = Vec::new();
    rs_files(&src(), &mut files);
    let mut found = Vec::new();
    for f in &files {
        let Some(layer) = top_of(f).and_then(|t| layer_of(&t)) else {
            continue;
        };
        if layer <= subsystems {
            continue;
        }
        let text = code(&std::fs::read_to_string(f).expect("read"));
        for p in prefixes {
            if text.contains(&format!("\"{p}")) {
                let rel = f.strip_prefix(src()).unwrap_or(f).display().to_string();
                found.push(format!("{rel} spells {p:?}"));
            }
        }
    }
    found
}

/// A layer below the subsystems must not know a subsystem's naming: the
/// firewall matches "an overlay bridge" by the prefix the overlay passes
/// down (`Routed::group`, `guard_vxlan`'s `group`), never by spelling
/// `ov-` itself.
#[test]
fn lower_layers_do_not_know_the_overlay_naming() {
    let prefixes = overlay_prefixes();
    assert!(
        prefixes.iter().any(|p| p == "ov-"),
        "the bridge prefix is not read from src/overlay/names.rs: {prefixes:?}"
    );
    let found = lower_files_naming(&prefixes);
    assert!(
        found.is_empty(),
        "the overlay's device naming below the subsystems (pass it down as data):\n{}",
        found.join("\n")
    );
}

/// Route netlink is spoken only in src/netlink (`Net`'s typed ops, dry-run
/// printing and undo journal); the datapath and nftables clients speak
/// other netlink families over netlink_sys and are exempt.
#[test]
fn route_netlink_only_in_netlink() {
    let mut files = Vec::new();
    rs_files(&src(), &mut files);
    let mut found = Vec::new();
    for f in &files {
        let rel = f.strip_prefix(src()).unwrap_or(f);
        let top = top_of(f).unwrap_or_default();
        if top == "netlink" || top == "firewall" || rel == Path::new("ovsdb/datapath.rs") {
            continue;
        }
        let text = code(&std::fs::read_to_string(f).expect("read"));
        if ["rtnetlink", "netlink_packet_route", "netlink_packet_core"]
            .iter()
            .any(|c| text.contains(c))
        {
            found.push(rel.display().to_string());
        }
    }
    assert!(
        found.is_empty(),
        "route netlink used outside src/netlink: {found:?}"
    );
}
