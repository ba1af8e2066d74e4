//! Records written by a guest must never steer the host.
//!
//! A container with CAP_NET_ADMIN can put any alias on links in its own
//! namespace, including one that looks like a pipework record. Each test
//! below is one forgery, written from inside a real Docker container, next
//! to a genuine attachment of that container. `ls`, `ls --json`, `gc`
//! (`--dry-run`, `--json`), a rolled-back attach and `detach` (of the forged
//! link, then of the whole guest) must leave the host exactly as the
//! genuine attachment made it, say on stderr that the forged link was
//! ignored, and never print a raw ESC byte.
//!
//! How the guest writes: busybox `ip` (in the test image) creates veths but
//! cannot set an alias, so the container writes /sys/class/net/X/ifalias.
//! That needs a writable /sys: Docker's `--privileged` cannot start on this
//! host (its capability bounding set lacks CAP_SYS_RESOURCE), so the
//! container gets NET_ADMIN + SYS_ADMIN and remounts /sys read-write. The
//! kernel operation (dev_set_alias on a link of the container's own
//! namespace) is the one a CAP_NET_ADMIN-only guest performs through
//! RTM_SETLINK/IFLA_IFALIAS.
//!
//! Every object carries the `pwf` prefix and is removed on drop, also when a
//! test fails. Nothing here changes eth0 or a host route: the uplink row
//! only names the uplink inside a record.
mod common;
mod trust_util;

use common::*;
use trust_util::*;

/// The label pipework puts on a VLAN sub-interface it created (only that
/// label, and the link kind, stood between a forged record and deletion).
const CREATED_VLAN_ALIAS: &str = "pipework-vlan (created by pipework; removed with its last guest)";

/// Removes everything a test made on the host, in any state.
struct Janitor {
    tag: String,
    netns: Vec<String>,
    ovs_bridges: Vec<String>,
    bridges: Vec<String>,
    files: Vec<String>,
}

impl Janitor {
    fn new(tag: &str) -> Janitor {
        Janitor {
            tag: tag.to_string(),
            netns: vec![],
            ovs_bridges: vec![],
            bridges: vec![],
            files: vec![],
        }
    }

    fn netns(&mut self, name: &str) -> String {
        let _ = sh("ip", &["netns", "del", name]);
        ok("ip", &["netns", "add", name]);
        ok("ip", &["-n", name, "link", "set", "lo", "up"]);
        self.netns.push(name.to_string());
        format!("/run/netns/{name}")
    }
}

impl Drop for Janitor {
    fn drop(&mut self) {
        for n in &self.netns {
            let _ = sh("ip", &["netns", "del", n]);
        }
        for b in &self.ovs_bridges {
            let _ = vsctl(&["--if-exists", "del-br", b]);
        }
        for l in links_with_prefix(None, &self.tag) {
            let _ = sh("ip", &["link", "del", &l]);
        }
        for b in &self.bridges {
            let _ = sh("ip", &["link", "del", b]);
            drop_firewall(b);
        }
        for f in &self.files {
            let _ = std::fs::remove_file(f);
        }
    }
}

/// A container that does to its own namespace what a CAP_NET_ADMIN guest
/// can do (see the module comment for the extra SYS_ADMIN).
fn hostile(tag: &str) -> Container {
    let c = Container::run_with(
        tag,
        &[
            "--cap-add",
            "NET_ADMIN",
            "--cap-add",
            "SYS_ADMIN",
            "--security-opt",
            "seccomp=unconfined",
            "--security-opt",
            "apparmor=unconfined",
        ],
    );
    c.exec_ok(&["sh", "-c", "mount -o remount,rw /sys"]);
    c
}

/// Inside the guest: a veth pair of its own (busybox names the peer
/// `vethN` itself).
fn guest_veth(c: &Container, a: &str) {
    c.exec_ok(&["ip", "link", "add", a, "type", "veth"]);
}

/// Inside the guest: set a link's alias (bytes passed as an argument, never
/// through the shell's parser).
fn guest_alias(c: &Container, link: &str, alias: &str) {
    c.exec_ok(&[
        "sh",
        "-c",
        "printf '%s' \"$1\" > \"/sys/class/net/$2/ifalias\"",
        "sh",
        alias,
        link,
    ]);
}

/// Inside the guest: read a link's alias, as any process there can.
fn guest_read_alias(c: &Container, link: &str) -> String {
    c.exec_ok(&["cat", &format!("/sys/class/net/{link}/ifalias")])
        .trim_end_matches('\n')
        .to_string()
}

fn guest_has(c: &Container, link: &str) -> bool {
    c.exec(&["ip", "link", "show", link]).status.success()
}

/// The interface of the host's default route (only ever named in a record).
fn uplink() -> Option<String> {
    let r = ok("ip", &["route", "show", "default"]);
    let mut w = r.split_whitespace();
    while let Some(t) = w.next() {
        if t == "dev" {
            return w.next().map(String::from);
        }
    }
    None
}

/// One forgery: a link in the hostile guest and the alias it carries.
struct Forged {
    link: String,
    alias: String,
}

/// What a row leaves to check besides the snapshots.
#[derive(Default)]
struct Extra {
    /// Host files that must survive.
    files: Vec<String>,
    /// Host links that must survive.
    links: Vec<String>,
    /// OVS ports that must survive.
    ovs_ports: Vec<String>,
    /// iptables rule comments that must survive.
    rules: Vec<String>,
    /// Host links that must never appear.
    absent: Vec<String>,
}

/// Everything one row needs: the hostile guest with its genuine eth1 on a
/// bridge of our own, plus whatever victims the row adds.
struct Row {
    tag: String,
    br: String,
    c: Container,
    j: Janitor,
    n: u8,
}

impl Row {
    fn new(n: u8) -> Row {
        let tag = uniq("pwf");
        let mut j = Janitor::new(&tag);
        let br = format!("br{tag}");
        j.bridges.push(br.clone());
        // A fixed MAC: a bridge without one changes it as ports come and go.
        ok(
            "ip",
            &[
                "link",
                "add",
                &br,
                "address",
                &format!("02:00:00:91:00:{n:02x}"),
                "type",
                "bridge",
            ],
        );
        ok("ip", &["link", "set", &br, "up"]);
        let c = hostile("pwf-c");
        Row { tag, br, c, j, n }
    }

    /// A host veth pair named `{tag}{a}` / `{tag}{b}` (a victim).
    fn host_veth(&self, a: &str, b: &str) -> (String, String) {
        let (a, b) = (format!("{}{a}", self.tag), format!("{}{b}", self.tag));
        ok(
            "ip",
            &["link", "add", &a, "type", "veth", "peer", "name", &b],
        );
        (a, b)
    }

    fn genuine_attach(&self) {
        let lif = format!("{}e1", self.tag);
        let addr = format!("10.91.{}.2/24@10.91.{}.1", self.n, self.n);
        pipework_ok(&[&self.br, "-l", &lif, &self.c.name, &addr]);
    }

    fn host(&self) -> String {
        snapshot(None, &self.tag, false, true)
    }

    fn guest(&self) -> String {
        ns_snapshot(&format!("/proc/{}/ns/net", self.c.pid()), false)
    }
}

/// Collects every problem of a row instead of stopping at the first, so a
/// failure report shows the whole picture (and names the row).
struct Verdict {
    row: &'static str,
    problems: Vec<String>,
}

impl Verdict {
    fn fail(&mut self, step: &str, what: String) {
        self.problems.push(format!("[{}] {step}: {what}", self.row));
    }
}

fn run_row(
    name: &'static str,
    n: u8,
    victims: impl FnOnce(&mut Row) -> Extra,
    forge: impl FnOnce(&Row) -> Vec<Forged>,
) {
    if !require_env() {
        return;
    }
    let mut row = Row::new(n);
    let extra = victims(&mut row);
    let s0 = row.host();
    let c0_links = link_names(&row.c);

    row.genuine_attach();
    let forged = forge(&row);
    assert!(!forged.is_empty(), "row {name} forged nothing");
    for f in &forged {
        assert!(
            guest_has(&row.c, &f.link),
            "[{name}] the guest could not make {}",
            f.link
        );
        assert_eq!(
            guest_read_alias(&row.c, &f.link),
            f.alias,
            "[{name}] the guest could not write its alias on {}",
            f.link
        );
    }

    let mut v = Verdict {
        row: name,
        problems: vec![],
    };
    let mut host = row.host();
    let mut guest = row.guest();
    let check_state = |v: &mut Verdict, step: &str, host: &mut String, guest: &mut String| {
        let h = row.host();
        if let Some(d) = diff(host, &h) {
            v.fail(step, format!("host changed:\n  {d}"));
            *host = h;
        }
        let g = row.guest();
        if let Some(d) = diff(guest, &g) {
            v.fail(step, format!("guest changed:\n  {d}"));
            *guest = g;
        }
        check_extra(v, step, &extra);
    };
    let check_out = |v: &mut Verdict, step: &str, o: &std::process::Output, ignored: bool| {
        if let Some(e) = esc_in(o) {
            v.fail(step, e);
        }
        if ignored {
            let err = stderr(o);
            for f in &forged {
                let said = err
                    .lines()
                    .any(|l| l.contains("ignored") && l.contains(&f.link));
                if !said {
                    v.fail(
                        step,
                        format!("stderr has no line with `ignored` and {}: {err:?}", f.link),
                    );
                }
            }
        }
    };
    let succeeded = |v: &mut Verdict, step: &str, o: &std::process::Output| {
        if !o.status.success() {
            v.fail(
                step,
                format!("failed ({}): {:?}", o.status, stderr(o).trim_end()),
            );
        }
    };

    // ls, human and JSON: the forged links are not listed, the genuine one is.
    let o = pipework(&["ls"]);
    succeeded(&mut v, "ls", &o);
    check_out(&mut v, "ls", &o, true);
    for f in &forged {
        if stdout(&o).contains(&f.link) {
            v.fail("ls", format!("lists forged {}: {}", f.link, stdout(&o)));
        }
    }
    check_state(&mut v, "ls", &mut host, &mut guest);

    let o = pipework(&["ls", "--json"]);
    succeeded(&mut v, "ls --json", &o);
    check_out(&mut v, "ls --json", &o, true);
    match serde_json::from_slice::<serde_json::Value>(&o.stdout) {
        Ok(serde_json::Value::Array(entries)) => {
            let mine = |e: &&serde_json::Value| {
                e["host"] == row.br.as_str() || e["host_interface"] == format!("{}e1", row.tag)
            };
            if !entries
                .iter()
                .filter(mine)
                .any(|e| e["interface"] == "eth1" && e["guest"] == row.c.name.as_str())
            {
                v.fail("ls --json", "the genuine attachment is not listed".into());
            }
            for e in &entries {
                let s = e.to_string();
                if let Some(f) = forged
                    .iter()
                    .find(|f| e["interface"] == f.link.as_str() || s.contains(&f.link))
                {
                    v.fail("ls --json", format!("lists forged {}: {s}", f.link));
                }
            }
        }
        other => v.fail("ls --json", format!("not a JSON array: {other:?}")),
    }
    check_state(&mut v, "ls --json", &mut host, &mut guest);

    // gc, in all three forms: the forged links are not ours, so they stay,
    // and nothing they name is touched.
    let o = pipework(&["gc", "--dry-run"]);
    succeeded(&mut v, "gc --dry-run", &o);
    check_out(&mut v, "gc --dry-run", &o, true);
    check_state(&mut v, "gc --dry-run", &mut host, &mut guest);

    let o = pipework(&["gc", "--json"]);
    succeeded(&mut v, "gc --json", &o);
    check_out(&mut v, "gc --json", &o, true);
    if o.status.success() {
        match serde_json::from_slice::<serde_json::Value>(&o.stdout) {
            Ok(serde_json::Value::Array(items)) => {
                for it in &items {
                    if it.get("kind").is_none() || it.get("name").is_none() {
                        v.fail("gc --json", format!("item without kind/name: {it}"));
                    }
                    let name = it["name"].as_str().unwrap_or_default();
                    let victim = extra
                        .links
                        .iter()
                        .chain(&extra.ovs_ports)
                        .chain(&extra.files)
                        .chain(std::iter::once(&row.br))
                        .any(|x| name == x);
                    if victim {
                        v.fail("gc --json", format!("acts on someone else's object: {it}"));
                    }
                }
            }
            other => v.fail("gc --json", format!("not a JSON array: {other:?}")),
        }
    }
    check_state(&mut v, "gc --json", &mut host, &mut guest);

    let o = pipework(&["gc"]);
    succeeded(&mut v, "gc", &o);
    check_out(&mut v, "gc", &o, true);
    check_state(&mut v, "gc", &mut host, &mut guest);

    // A rollback in the same guest: Docker keeps IPv6 off in containers,
    // so the second address fails after the veth, the first address and
    // the default route exist. The undo must not consult forged records.
    let o = pipework(&[
        &row.br,
        "-i",
        "eth2",
        "-l",
        &format!("{}e2", row.tag),
        &row.c.name,
        &format!("10.92.{n}.2/24@10.92.{n}.1"),
        "--ip",
        "2001:db8:92::2/64",
    ]);
    if o.status.success() {
        v.fail("rollback", "the attach meant to fail late succeeded".into());
    }
    check_out(&mut v, "rollback", &o, false);
    check_state(&mut v, "rollback", &mut host, &mut guest);

    // Detach of each forged link alone: ignored, nothing changes.
    for f in &forged {
        let step = format!("detach -i {}", f.link);
        let o = pipework(&["detach", &row.c.name, "-i", &f.link]);
        succeeded(&mut v, &step, &o);
        check_out(&mut v, &step, &o, false);
        if !stderr(&o).contains("ignored") {
            v.fail(
                &step,
                format!("stderr does not say ignored: {:?}", stderr(&o)),
            );
        }
        check_state(&mut v, &step, &mut host, &mut guest);
    }

    // Detach of the whole guest: the genuine attachment goes, the host is
    // back to how it was before it, the forged links stay in the guest.
    let o = pipework(&["detach", &row.c.name]);
    succeeded(&mut v, "detach", &o);
    check_out(&mut v, "detach", &o, true);
    if let Some(d) = diff(&s0, &row.host()) {
        v.fail(
            "detach",
            format!("host differs from before the genuine attach:\n  {d}"),
        );
    }
    check_extra(&mut v, "detach", &extra);
    let now = link_names(&row.c);
    if now.contains(&"eth1".to_string()) {
        v.fail("detach", "the genuine eth1 is still in the guest".into());
    }
    for f in &forged {
        if !now.contains(&f.link) {
            v.fail(
                "detach",
                format!("the guest's own link {} was taken away", f.link),
            );
        }
    }
    for l in &c0_links {
        if !now.contains(l) {
            v.fail("detach", format!("the guest lost {l}"));
        }
    }

    if !v.problems.is_empty() {
        panic!(
            "{} problem(s) in row {name}:\n{}",
            v.problems.len(),
            v.problems.join("\n")
        );
    }
}

fn check_extra(v: &mut Verdict, step: &str, x: &Extra) {
    for f in &x.files {
        if !std::path::Path::new(f).exists() {
            v.fail(step, format!("host file {f} was deleted"));
        }
    }
    for l in &x.links {
        if !sh("ip", &["link", "show", l]).status.success() {
            v.fail(step, format!("host link {l} was deleted"));
        }
    }
    for l in &x.absent {
        if sh("ip", &["link", "show", l]).status.success() {
            v.fail(step, format!("host link {l} appeared"));
        }
    }
    if !x.ovs_ports.is_empty() {
        let ports = vsctl(&["--columns=name", "--format=csv", "list", "Port"]);
        for p in &x.ovs_ports {
            if !ports.lines().any(|l| l.trim_matches('"') == p) {
                v.fail(step, format!("OVS port {p} was removed"));
            }
        }
    }
    if !x.rules.is_empty() {
        let rules = ok("iptables", &["-w", "-S"]);
        for r in &x.rules {
            if !rules.contains(r) {
                v.fail(step, format!("iptables rule {r} was removed"));
            }
        }
    }
}

fn link_names(c: &Container) -> Vec<String> {
    c.exec_ok(&["ip", "-o", "link", "show"])
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).to_string())
        .collect()
}

/// A record in the pre-authentication format (src/record.rs), as a guest
/// would write it.
fn record(json: serde_json::Value) -> String {
    format!("pipework {json}")
}

#[test]
fn forged_bridge_record_naming_a_host_link() {
    run_row(
        "bridge record, host victim link",
        1,
        |r| {
            let (v0, _v1) = r.host_veth("v0", "v1");
            Extra {
                links: vec![v0],
                ..Default::default()
            }
        },
        |r| {
            let x = format!("{}x", r.tag);
            guest_veth(&r.c, &x);
            // The container end is absent ("nosuch…"), which sent the old
            // detach to the host end named in "hi". Terminal escapes in
            // the strings (JSON-escaped, as the record format allows).
            let alias = record(serde_json::json!({
                "k": "bridge",
                "h": r.br,
                "hi": format!("{}v0", r.tag),
                "g": format!("{}\u{1b}[2J", r.c.name),
                "if": "nosuch\u{1b}[2J",
            }));
            guest_alias(&r.c, &x, &alias);
            vec![Forged { link: x, alias }]
        },
    );
}

#[test]
fn forged_phys_record_moving_a_guest_link_to_the_host() {
    run_row(
        "phys record",
        2,
        |r| Extra {
            absent: vec![format!("{}p", r.tag)],
            ..Default::default()
        },
        |r| {
            let x = format!("{}x", r.tag);
            guest_veth(&r.c, &x);
            // Keys of src/driver/phys.rs `Original`: detach would move
            // the guest's own link to the host, renamed and addressed.
            let alias = record(serde_json::json!({
                "k": "phys",
                "h": format!("{}p", r.tag),
                "g": r.c.name,
                "if": x,
                "x": {"o": {"n": format!("{}p", r.tag), "m": 1500, "up": true,
                             "a": ["198.51.100.77/32"]}},
            }));
            guest_alias(&r.c, &x, &alias);
            vec![Forged { link: x, alias }]
        },
    );
}

#[test]
fn forged_vlan_records_naming_a_host_link() {
    run_row(
        "VLAN records",
        3,
        |r| {
            // This kernel has no 8021q; a host veth labelled as a VLAN we
            // created stands in for one.
            let (l0, _l1) = r.host_veth("l0", "l1");
            ok("ip", &["link", "set", &l0, "alias", CREATED_VLAN_ALIAS]);
            Extra {
                links: vec![l0],
                ..Default::default()
            }
        },
        |r| {
            let x = format!("{}x", r.tag);
            let z = format!("{}z", r.tag);
            guest_veth(&r.c, &x);
            guest_veth(&r.c, &z);
            // macvlan on "parent.VID": detach releases the VLAN in "hi".
            let a1 = record(serde_json::json!({
                "k": "macvlan",
                "h": format!("{}l1", r.tag),
                "hi": format!("{}l0", r.tag),
                "g": r.c.name,
                "if": "nosuch",
                "x": {"mode": "bridge", "vlan": 5},
            }));
            // --direct-phys of a VLAN we "created": delete, don't return.
            let a2 = record(serde_json::json!({
                "k": "phys",
                "h": format!("{}l0", r.tag),
                "g": r.c.name,
                "if": z,
                "x": {"o": {"n": format!("{}l0", r.tag), "m": 1500, "up": true, "vc": true}},
            }));
            guest_alias(&r.c, &x, &a1);
            guest_alias(&r.c, &z, &a2);
            vec![Forged { link: x, alias: a1 }, Forged { link: z, alias: a2 }]
        },
    );
}

#[test]
fn forged_ovs_record_naming_another_attachments_port() {
    if !require_env() || !have_ovs() {
        return;
    }
    run_row(
        "OVS record",
        4,
        |r| {
            // Another attachment: a namespace on an OVS bridge that pipework
            // creates by the classic rule (name starting with "ovs").
            let obr = format!("ovs{}", r.tag);
            r.j.ovs_bridges.push(obr.clone());
            let ns = r.j.netns(&format!("{}n", r.tag));
            let port = format!("{}o", r.tag);
            pipework_ok(&[&obr, "-l", &port, &ns, "10.93.4.2/24"]);
            Extra {
                links: vec![port.clone()],
                ovs_ports: vec![port],
                ..Default::default()
            }
        },
        |r| {
            let x = format!("{}x", r.tag);
            guest_veth(&r.c, &x);
            let port = format!("{}o", r.tag);
            let alias = record(serde_json::json!({
                "k": "ovs",
                "h": format!("ovs{}", r.tag),
                "hi": port,
                "g": r.c.name,
                "if": "nosuch",
                "x": {"port": port},
            }));
            guest_alias(&r.c, &x, &alias);
            vec![Forged { link: x, alias }]
        },
    );
}

#[test]
fn forged_h_naming_another_bridge_and_a_path() {
    run_row(
        "forged h",
        5,
        |r| {
            // Another bridge with a genuine attachment, hence (dockerd's
            // FORWARD DROP) our DOCKER-USER rule for it.
            let obr = format!("br{}o", r.tag);
            r.j.bridges.push(obr.clone());
            ok(
                "ip",
                &[
                    "link",
                    "add",
                    &obr,
                    "address",
                    "02:00:00:91:01:05",
                    "type",
                    "bridge",
                ],
            );
            let ns = r.j.netns(&format!("{}n", r.tag));
            pipework_ok(&[&obr, "-l", &format!("{}o", r.tag), &ns, "10.93.5.2/24"]);
            let comment = format!("pipework:{obr}");
            // With dockerd's FORWARD DROP the genuine attach added the rule
            // this row is about; without it there is no rule to protect.
            let drop_policy = ok("iptables", &["-w", "-S", "FORWARD"]).contains("-P FORWARD DROP");
            let has_rule = ok("iptables", &["-w", "-S"]).contains(&comment);
            assert!(
                has_rule || !drop_policy,
                "setup: FORWARD drops but no {comment} rule after the genuine attach"
            );
            let rules = if has_rule { vec![comment] } else { vec![] };
            // A host file the firewall marker path could be steered to.
            let file = format!("/tmp/{}victim", r.tag);
            std::fs::write(&file, "pwf victim\n").expect("write victim file");
            r.j.files.push(file.clone());
            Extra {
                files: vec![file],
                links: vec![format!("{}o", r.tag)],
                rules,
                ..Default::default()
            }
        },
        |r| {
            let x = format!("{}x", r.tag);
            let z = format!("{}z", r.tag);
            guest_veth(&r.c, &x);
            guest_veth(&r.c, &z);
            let a1 = record(serde_json::json!({
                "k": "bridge",
                "h": format!("br{}o", r.tag),
                "g": r.c.name,
                "if": "nosuch",
            }));
            let a2 = record(serde_json::json!({
                "k": "bridge",
                "h": format!("../../../tmp/{}victim", r.tag),
                "g": r.c.name,
                "if": "nosuch",
            }));
            guest_alias(&r.c, &x, &a1);
            guest_alias(&r.c, &z, &a2);
            vec![Forged { link: x, alias: a1 }, Forged { link: z, alias: a2 }]
        },
    );
}

#[test]
fn genuine_record_copied_onto_another_link() {
    run_row(
        "copied genuine record",
        6,
        |_| Extra::default(),
        |r| {
            let x = format!("{}x", r.tag);
            guest_veth(&r.c, &x);
            // Byte for byte what pipework wrote on the genuine eth1.
            let alias = guest_read_alias(&r.c, "eth1");
            assert!(alias.starts_with("pipework"), "eth1's alias: {alias:?}");
            guest_alias(&r.c, &x, &alias);
            vec![Forged { link: x, alias }]
        },
    );
}

#[test]
fn forged_records_naming_the_host_uplink() {
    let Some(up) = (if require_env() { uplink() } else { None }) else {
        // Without a default route there is no uplink to name.
        eprintln!("SKIP: no default route on this host (or no environment)");
        return;
    };
    run_row(
        "uplink named in records",
        7,
        |_| Extra::default(),
        move |r| {
            let x = format!("{}x", r.tag);
            let z = format!("{}z", r.tag);
            guest_veth(&r.c, &x);
            guest_veth(&r.c, &z);
            // Only kinds whose old detach could not delete the uplink are
            // used (moving a link in under an existing name fails): the
            // host's uplink is never put at risk, even by the old code.
            let a1 = record(serde_json::json!({
                "k": "phys",
                "h": up,
                "g": r.c.name,
                "if": x,
                "x": {"o": {"n": up, "m": 1500, "up": true, "a": ["198.51.100.78/32"]}},
            }));
            let a2 = record(serde_json::json!({
                "k": "macvlan",
                "h": up,
                "hi": up,
                "g": r.c.name,
                "if": "nosuch",
                "x": {"mode": "bridge"},
            }));
            guest_alias(&r.c, &x, &a1);
            guest_alias(&r.c, &z, &a2);
            vec![Forged { link: x, alias: a1 }, Forged { link: z, alias: a2 }]
        },
    );
}

// ---- C: terminal escapes in names and aliases -------------------------------

/// Every command that prints names, with their outputs checked for raw ESC.
fn no_raw_escapes(step: &str, o: &std::process::Output, problems: &mut Vec<String>) {
    if let Some(e) = esc_in(o) {
        problems.push(format!("{step}: {e}"));
    }
}

#[test]
fn ansi_escape_in_a_netns_name_and_its_links() {
    if !require_env() {
        return;
    }
    let tag = uniq("pwf");
    let mut j = Janitor::new(&tag);
    let br = format!("br{tag}");
    j.bridges.push(br.clone());
    // A namespace whose name carries a clear-screen sequence. Names under
    // /run/netns are any file name; the guest's records repeat them.
    let name = format!("{tag}\u{1b}[2J");
    let path = j.netns(&name);
    // In it, links the guest's admin made: one named with an escape, one
    // with a plain alias full of escapes, one with a record-shaped alias
    // whose strings carry escapes (written with host `ip -n`, the same
    // kernel operation a CAP_NET_ADMIN guest performs).
    let odd = "x\u{1b}[2J";
    ok(
        "ip",
        &[
            "-n", &name, "link", "add", odd, "type", "veth", "peer", "name", "y0",
        ],
    );
    ok(
        "ip",
        &[
            "-n",
            &name,
            "link",
            "set",
            "y0",
            "alias",
            "\u{1b}]0;pwned\u{7}\u{1b}[2J admin alias",
        ],
    );
    let forged = record(serde_json::json!({
        "k": "bridge", "h": br, "g": "\u{1b}]0;pwned\u{7}", "if": odd,
    }));
    ok("ip", &["-n", &name, "link", "set", odd, "alias", &forged]);

    let mut problems = vec![];
    // A genuine attachment by path: its record carries the name.
    let o = pipework(&[&br, "-l", &format!("{tag}e"), &path, "10.94.1.2/24"]);
    no_raw_escapes("attach", &o, &mut problems);
    let attached = o.status.success();
    for args in [
        &["ls"][..],
        &["ls", "--json"],
        &["gc", "--dry-run"],
        &["gc", "--json"],
        &["gc"],
        &["detach", &path, "-i", odd],
        &["detach", &path],
    ] {
        let o = pipework(args);
        let step = format!("{args:?}");
        no_raw_escapes(&step, &o, &mut problems);
        if !o.status.success() {
            problems.push(format!("{step} failed: {:?}", stderr(&o)));
        }
        if !stderr(&o).contains("ignored") {
            problems.push(format!(
                "{step}: the forged record is not reported as ignored: {:?}",
                stderr(&o)
            ));
        }
    }
    // The forged link is the namespace owner's, never ours to remove.
    if !sh("ip", &["-n", &name, "link", "show", odd])
        .status
        .success()
    {
        problems.push("the link with an escape in its name was removed".into());
    }
    if attached
        && sh("ip", &["-n", &name, "link", "show", "eth1"])
            .status
            .success()
    {
        problems.push("detach left the genuine eth1".into());
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn ansi_escape_in_a_container_alias() {
    if !require_env() {
        return;
    }
    let tag = uniq("pwf");
    let mut j = Janitor::new(&tag);
    let br = format!("br{tag}");
    j.bridges.push(br.clone());
    let c = hostile("pwf-a");
    pipework_ok(&[&br, "-l", &format!("{tag}e"), &c.name, "10.94.2.2/24"]);
    // From inside: a link named with an escape, a plain alias and a
    // record-shaped alias, both full of escapes.
    c.exec_ok(&[
        "sh",
        "-c",
        "ip link add \"$(printf 'x\\033[2J')\" type veth",
    ]);
    guest_veth(&c, "q0");
    guest_alias(&c, "q0", "\u{1b}]0;pwned\u{7}\u{1b}[2J plain");
    let odd = "x\u{1b}[2J";
    let forged = record(serde_json::json!({
        "k": "bridge", "h": br, "hi": format!("{tag}e"), "g": "\u{1b}[2J", "if": "q0",
    }));
    guest_alias(&c, odd, &forged);

    let mut problems = vec![];
    for args in [
        &["ls"][..],
        &["ls", "--json"],
        &["gc", "--json"],
        &["gc"],
        &["detach", &c.name],
    ] {
        let o = pipework(args);
        let step = format!("{args:?}");
        no_raw_escapes(&step, &o, &mut problems);
        if !o.status.success() {
            problems.push(format!("{step} failed: {:?}", stderr(&o)));
        }
        if !stderr(&o).contains("ignored") {
            problems.push(format!(
                "{step}: the forged record is not reported as ignored: {:?}",
                stderr(&o)
            ));
        }
    }
    if !guest_has(&c, "q0") {
        problems.push("the guest's own q0 was removed".into());
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
