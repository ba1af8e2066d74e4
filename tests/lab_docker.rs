//! `pipework lab` against a real dockerd: a six-container lab with
//! point-to-point links, a Linux bridge and a macvlan; converging, editing,
//! a failed `up` rolled back, `down` from the records after the file is
//! gone; the containerlab subset; and the SVG drawn in a real Chromium.
mod common;
use common::*;
use std::path::PathBuf;

/// A lab's files; `lab down` by name when dropped, so a failing test
/// leaves nothing behind.
struct LabGuard {
    name: String,
    dir: PathBuf,
}

impl LabGuard {
    fn new() -> LabGuard {
        let name = uniq("pwl");
        let dir = std::env::temp_dir().join(format!("{name}-files"));
        std::fs::create_dir_all(&dir).expect("lab dir");
        LabGuard { name, dir }
    }
    fn write(&self, file: &str, text: &str) -> String {
        let p = self.dir.join(file);
        std::fs::write(&p, text).expect("write lab file");
        p.display().to_string()
    }
    fn container(&self, node: &str) -> String {
        format!("{}-{node}", self.name)
    }
    fn exec(&self, node: &str, args: &[&str]) -> String {
        let c = self.container(node);
        let mut a = vec!["exec", &c];
        a.extend_from_slice(args);
        let o = docker(&a);
        assert!(o.status.success(), "{node} {args:?}: {}", stderr(&o));
        stdout(&o)
    }
    fn ping(&self, node: &str, ip: &str) {
        self.exec(node, &["ping", "-c", "1", "-W", "2", ip]);
    }
}

impl Drop for LabGuard {
    fn drop(&mut self) {
        let _ = pipework(&["lab", "down", &self.name]);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A host NIC for macvlan children: one end of a veth pair, both up.
struct Nic(String);

impl Nic {
    fn new() -> Nic {
        let n = uniq("pwlp");
        ok(
            "ip",
            &[
                "link",
                "add",
                &n,
                "type",
                "veth",
                "peer",
                "name",
                &format!("{n}p"),
            ],
        );
        // No IPv6 on it: its link-local routes would appear whenever DAD
        // ends, in the middle of the host snapshots.
        for i in [n.clone(), format!("{n}p")] {
            std::fs::write(format!("/proc/sys/net/ipv6/conf/{i}/disable_ipv6"), "1")
                .expect("disable IPv6 on the test NIC");
            ok("ip", &["link", "set", &i, "up"]);
        }
        // Carrier comes a moment later (linkwatch): wait for it, so the
        // host snapshots see the NIC as it will stay.
        for _ in 0..30 {
            let l = ok("ip", &["-o", "link", "show", &format!("{n}p")]);
            if !l.contains("NO-CARRIER")
                && !ok("ip", &["-o", "link", "show", &n]).contains("NO-CARRIER")
            {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        Nic(n)
    }
}

impl Drop for Nic {
    fn drop(&mut self) {
        let _ = sh("ip", &["link", "del", &self.0]);
    }
}

fn nodes(keep: &str) -> String {
    let mut s = String::new();
    for n in ["r1", "r2", "r3", "h1", "h2"] {
        s.push_str(&format!(
            "[nodes.{n}]\nimage = \"bb:latest\"\ncmd = [\"/bin/sleep\", \"3600\"]\n"
        ));
    }
    s.push_str(&format!("[nodes.x]\ncontainer = \"{keep}\"\n"));
    s
}

const P2P_KEPT: &str = r#"
[[links]]
endpoints = ["r1:eth1", "r2:eth1"]
ips = ["10.71.0.1/30", "10.71.0.2/30"]
macs = ["U:pwl-r1"]
[[links]]
endpoints = ["r3:eth2", "x:eth1"]
ips = ["10.71.0.9/30", "10.71.0.10/30"]
"#;

const P2P_REMOVED: &str = r#"
[[links]]
endpoints = ["r2:eth2", "r3:eth1"]
ips = ["10.71.0.5/30", "10.71.0.6/30"]
mtu = 1400
"#;

const P2P_ADDED: &str = r#"
[[links]]
endpoints = ["h1:eth3", "h2:eth3"]
ips = ["10.74.0.1/30", "10.74.0.2/30"]
"#;

fn segments(bridge: &str, nic: &str) -> String {
    format!(
        r#"
[[links]]
kind = "bridge"
bridge = "{bridge}"
endpoints = ["r1:eth2", "h1:eth1", "h2:eth1"]
ips = ["10.72.0.1/24", "10.72.0.2/24", "10.72.0.3/24"]
[[links]]
kind = "macvlan"
parent = "{nic}"
endpoints = ["h1:eth2", "h2:eth2", "x:eth2"]
ips = ["10.73.0.1/24", "10.73.0.2/24", "10.73.0.3/24"]
"#
    )
}

/// Every interface and address of every container of the lab, once the
/// kernel has propagated carrier to new veth ends (linkwatch runs
/// asynchronously, up to a second later).
fn lab_state(g: &LabGuard, keep: &Container) -> Vec<(String, String)> {
    for _ in 0..30 {
        let s = lab_state_now(g, keep);
        if !s.iter().any(|(_, st)| st.contains("NO-CARRIER")) {
            return s;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    lab_state_now(g, keep)
}

fn lab_state_now(g: &LabGuard, keep: &Container) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = ["r1", "r2", "r3", "h1", "h2"]
        .iter()
        .map(|n| {
            let pid = stdout(&docker(&[
                "inspect",
                "-f",
                "{{.State.Pid}}",
                &g.container(n),
            ]));
            (
                n.to_string(),
                ns_state(&format!("/proc/{}/ns/net", pid.trim())),
            )
        })
        .collect();
    v.push(("x".into(), keep.net_state()));
    v
}

fn lines_only_in<'a>(a: &'a str, b: &str) -> Vec<&'a str> {
    let bs: std::collections::HashSet<&str> = b.lines().collect();
    a.lines().filter(|l| !bs.contains(l)).collect()
}

#[test]
fn a_lab_converges_edits_rolls_back_and_goes_away() {
    if !require_env() {
        return;
    }
    let keep = Container::run("pwl-keep");
    let nic = Nic::new();
    let before = lab_snap();
    let g = LabGuard::new();
    let bridge = uniq("pwlbr");
    let head = format!("name = \"{}\"\n{}", g.name, nodes(&keep.name));
    let v1 = format!("{head}{P2P_KEPT}{P2P_REMOVED}{}", segments(&bridge, &nic.0));
    let f1 = g.write("lab.toml", &v1);

    let out = stdout(&pipework_ok(&["lab", "up", &f1]));
    assert_eq!(out.matches("started").count(), 5, "{out}");
    assert!(out.contains("9 added, 0 removed, 0 unchanged"), "{out}");
    // Across every kind of link.
    g.ping("r1", "10.71.0.2");
    g.ping("r2", "10.71.0.6");
    g.ping("r3", "10.71.0.10");
    g.ping("r1", "10.72.0.3");
    g.ping("h1", "10.73.0.3");
    let mac = g.exec("r1", &["ip", "-o", "link", "show", "eth1"]);
    let r2e2 = g.exec("r2", &["ip", "-o", "link", "show", "eth2"]);
    assert!(mac.contains("02:"), "{mac}");
    assert!(r2e2.contains("mtu 1400"), "{r2e2}");
    let st = stdout(&pipework_ok(&["lab", "status", "--json", &f1]));
    let v: serde_json::Value = serde_json::from_str(&st).expect("status json");
    assert_eq!(v["matches"], true, "{st}");
    assert_eq!(v["links"].as_array().map(Vec::len), Some(9), "{st}");
    // ls names the lab on each of its 12 link ends (3 p2p × 2, 6 members).
    let ls = stdout(&pipework_ok(&["ls", "--json"]));
    let ls: serde_json::Value = serde_json::from_str(&ls).expect("ls json");
    let ours = ls
        .as_array()
        .map(|a| a.iter().filter(|e| e["lab"] == g.name.as_str()).count());
    assert_eq!(ours, Some(12));

    // Again: nothing to do, nothing touched.
    let s1 = lab_state(&g, &keep);
    let out = stdout(&pipework_ok(&["lab", "up", &f1]));
    assert!(out.contains("0 added, 0 removed, 9 unchanged"), "{out}");
    assert_eq!(lab_state(&g, &keep), s1, "a second up changed something");

    // Edit: one link added, another removed; only those change.
    let v2 = format!("{head}{P2P_KEPT}{P2P_ADDED}{}", segments(&bridge, &nic.0));
    let f2 = g.write("lab.toml", &v2);
    let out = stdout(&pipework_ok(&["lab", "up", &f2]));
    assert!(out.contains("1 added, 1 removed, 8 unchanged"), "{out}");
    let s2 = lab_state(&g, &keep);
    for ((node, a), (_, b)) in s1.iter().zip(&s2) {
        let gone = lines_only_in(a, b);
        let new = lines_only_in(b, a);
        let touched = |ls: &[&str], names: &[&str]| {
            ls.iter()
                .all(|l| names.iter().any(|n| l.contains(&format!(" {n}"))))
        };
        let want: &[&str] = match node.as_str() {
            "r2" => &["eth2"],
            "r3" => &["eth1"],
            "h1" | "h2" => &["eth3"],
            _ => &[],
        };
        assert!(
            touched(&gone, want) && touched(&new, want),
            "{node}: only {want:?} may change\n gone: {gone:#?}\n new: {new:#?}"
        );
    }
    g.ping("h1", "10.74.0.2");

    // A bad address in the last link: the whole up is rolled back.
    let host_mid = lab_snap();
    let bad = format!(
        "{v2}\n[[links]]\nendpoints = [\"r1:eth3\", \"h1:eth4\"]\nips = [\"10.75.0.1/30\", \"fd00::2/64\"]\n"
    );
    let f3 = g.write("bad.toml", &bad);
    let o = pipework(&["lab", "up", &f3]);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(e.contains("fd00::2/64") && e.contains("links[6]"), "{e}");
    assert_same(&host_mid, &lab_snap(), "host after a failed up");
    assert_eq!(lab_state(&g, &keep), s2, "containers after a failed up");

    // Drift: an address removed by hand. status says so; up rebuilds
    // that one link.
    let pid = stdout(&docker(&[
        "inspect",
        "-f",
        "{{.State.Pid}}",
        &g.container("r1"),
    ]));
    ok(
        "nsenter",
        &[
            &format!("--net=/proc/{}/ns/net", pid.trim()),
            "ip",
            "addr",
            "del",
            "10.72.0.1/24",
            "dev",
            "eth2",
        ],
    );
    let o = pipework(&["lab", "status", &f2]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stdout(&o).contains("drifted"), "{}", stdout(&o));
    let out = stdout(&pipework_ok(&["lab", "up", &f2]));
    assert!(out.contains("1 added, 1 removed, 8 unchanged"), "{out}");
    pipework_ok(&["lab", "status", &f2]);
    g.ping("r1", "10.72.0.3");

    // A node restarts: its links died with its namespace. What `watch`
    // calls finds the lab from the container and builds back only those.
    let r2 = g.container("r2");
    assert!(docker(&["restart", "-t", "0", &r2]).status.success());
    let labs = pipework::lab::hook::labs_of(&r2, "");
    assert_eq!(labs.len(), 1, "{labs:?}");
    assert_eq!(
        (labs[0].0.as_str(), labs[0].2.as_str()),
        (g.name.as_str(), "r2")
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    // SAFETY: set once, before any thread of this test reads it.
    unsafe { std::env::set_var("DOCKER_HOST", docker_host()) };
    let reps = rt
        .block_on(pipework::lab::hook::replumb(&r2, ""))
        .expect("replumb");
    assert_eq!(reps.len(), 1);
    assert_eq!(
        reps[0].added,
        vec!["r1:eth1 -- r2:eth1".to_string()],
        "{reps:?}"
    );
    g.ping("r1", "10.71.0.2");

    // The file is gone: down still finds everything from the records.
    std::fs::remove_file(&f2).expect("rm");
    let out = stdout(&pipework_ok(&["lab", "down", &g.name]));
    assert_eq!(out.matches("removed container").count(), 5, "{out}");
    assert!(out.contains(&format!("removed bridge {bridge}")), "{out}");
    let ps = stdout(&docker(&["ps", "-a", "--format", "{{.Names}}"]));
    assert!(!ps.contains(&g.name), "{ps}");
    // The container the lab did not start is left running, without our links.
    let x = keep.exec_ok(&["ip", "-o", "link"]);
    assert!(!x.contains("eth1") && !x.contains("eth2"), "{x}");
    assert_same(&before, &lab_snap(), "host after lab down");
}

/// Interface names, MTUs and states in each container: what the kernel
/// holds, without what differs between any two runs (indexes, MACs,
/// namespace ids, the records' tags).
fn shape(g: &LabGuard, nodes: &[&str]) -> Vec<String> {
    // Once carrier has reached every new veth end (see lab_state).
    for _ in 0..30 {
        let v = shape_now(g, nodes);
        if !v.iter().any(|l| l.contains("NO-CARRIER")) {
            return v;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    shape_now(g, nodes)
}

fn shape_now(g: &LabGuard, nodes: &[&str]) -> Vec<String> {
    let mut v = Vec::new();
    for n in nodes {
        for l in g.exec(n, &["ip", "-o", "link"]).lines() {
            let mut w = l.split_whitespace().skip(1);
            let name = w
                .next()
                .unwrap_or_default()
                .split('@')
                .next()
                .unwrap_or_default();
            let flags = w.next().unwrap_or_default();
            let mtu = l.split(" mtu ").nth(1).and_then(|r| r.split(' ').next());
            v.push(format!("{n} {name} {flags} {mtu:?}"));
        }
    }
    v.sort();
    v
}

#[test]
fn a_containerlab_file_builds_what_its_toml_twin_builds() {
    if !require_env() {
        return;
    }
    let g = LabGuard::new();
    let yml = g.write(
        "lab.clab.yml",
        &format!(
            r#"name: {}
topology:
  nodes:
    a:
      kind: linux
      image: bb:latest
      cmd: /bin/sleep 3600
    b:
      kind: linux
      image: bb:latest
      cmd: /bin/sleep 3600
    c:
      kind: linux
      image: bb:latest
      cmd: /bin/sleep 3600
  links:
    - endpoints: ["a:eth1", "b:eth1"]
    - endpoints: ["b:eth2", "c:eth1"]
    - endpoints: ["c:eth2", "a:eth2"]
"#,
            g.name
        ),
    );
    let mut toml = format!("name = \"{}\"\n", g.name);
    for n in ["a", "b", "c"] {
        toml.push_str(&format!(
            "[nodes.{n}]\nimage = \"bb:latest\"\ncmd = \"/bin/sleep 3600\"\n"
        ));
    }
    for (x, y) in [
        ("a:eth1", "b:eth1"),
        ("b:eth2", "c:eth1"),
        ("c:eth2", "a:eth2"),
    ] {
        toml.push_str(&format!("[[links]]\nendpoints = [\"{x}\", \"{y}\"]\n"));
    }
    let tf = g.write("lab.toml", &toml);

    pipework_ok(&["lab", "up", &yml]);
    let from_yaml = shape(&g, &["a", "b", "c"]);
    pipework_ok(&["lab", "down", &yml]);
    pipework_ok(&["lab", "up", &tf]);
    let from_toml = shape(&g, &["a", "b", "c"]);
    // Same units, same ids: the TOML twin finds the lab as built.
    let out = stdout(&pipework_ok(&["lab", "up", &yml]));
    assert!(out.contains("0 added, 0 removed, 3 unchanged"), "{out}");
    pipework_ok(&["lab", "down", &tf]);
    assert_eq!(from_yaml, from_toml);
    assert_eq!(from_yaml.iter().filter(|l| l.contains("eth")).count(), 6);
}

#[test]
fn the_svg_shows_every_node_in_a_real_browser() {
    let chromium = ["chromium", "chromium-browser"].into_iter().find(|c| {
        sh("sh", &["-c", &format!("command -v {c}")])
            .status
            .success()
    });
    let Some(chromium) = chromium else {
        assert!(
            std::env::var_os("CI").is_none(),
            "chromium missing: run scripts/env-up.sh"
        );
        eprintln!("SKIP: no chromium");
        return;
    };
    let g = LabGuard::new();
    let names = ["core", "edge-1", "edge-2", "web", "db", "cache"];
    let mut toml = format!("name = \"{}\"\n", g.name);
    for n in names {
        toml.push_str(&format!("[nodes.{n}]\nnetns = \"{n}\"\n"));
    }
    toml.push_str(
        r#"
[[links]]
endpoints = ["core:eth1", "edge-1:eth1"]
ips = ["10.0.0.1/30", "10.0.0.2/30"]
[[links]]
endpoints = ["core:eth2", "edge-2:eth1"]
[[links]]
kind = "bridge"
bridge = "br-lab"
endpoints = ["edge-1:eth2", "web:eth1", "db:eth1", "cache:eth1"]
ips = ["192.168.9.1/24", "192.168.9.2/24"]
"#,
    );
    let f = g.write("lab.toml", &toml);
    let dot = stdout(&pipework_ok(&["lab", "graph", &f]));
    for n in names {
        assert!(dot.contains(&format!("\"{n}\" [label=\"{n}\"]")), "{dot}");
    }
    let svg = stdout(&pipework_ok(&["lab", "graph", "--format", "svg", &f]));
    let list: Vec<String> = names.iter().map(|n| format!("'{n}'")).collect();
    let html = format!(
        r#"<!doctype html><html><body>{svg}<script>
const out = [{}].map(n => {{
  const g = document.getElementById('node-' + n);
  if (!g) return n + ':missing';
  const b = g.getBBox();
  return n + ':' + (b.width > 0 && b.height > 0 && g.textContent.trim() === n ? 'ok' : 'bad');
}});
const seg = document.getElementById('segment-bridge-br-lab');
out.push('br:' + (seg && seg.getBBox().width > 0 ? 'ok' : 'bad'));
document.body.setAttribute('data-result', out.join(','));
</script></body></html>"#,
        list.join(",")
    );
    let page = g.write("graph.html", &html);
    let o = sh(
        "timeout",
        &[
            "120",
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            &format!("--user-data-dir={}", g.dir.join("chromium").display()),
            "--dump-dom",
            &format!("file://{page}"),
        ],
    );
    let dom = stdout(&o);
    let result = dom
        .split("data-result=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap_or_else(|| panic!("no result in the DOM: {}", stderr(&o)));
    let want: Vec<String> = names
        .iter()
        .map(|n| format!("{n}:ok"))
        .chain(std::iter::once("br:ok".to_string()))
        .collect();
    assert_eq!(result, want.join(","));
}

#[test]
fn bad_lab_files_change_nothing() {
    if !require_env() {
        return;
    }
    let before = lab_snap();
    let g = LabGuard::new();
    let cases = [
        ("missing.toml", None, "cannot read"),
        (
            "unknown-node.toml",
            Some(format!(
                "name = \"{}\"\n[nodes.a]\nimage = \"bb:latest\"\n[[links]]\nendpoints = [\"a:eth1\", \"zz:eth1\"]\n",
                g.name
            )),
            "zz:eth1",
        ),
        (
            "bad-ip.toml",
            Some(format!(
                "name = \"{}\"\n[nodes.a]\nimage = \"bb:latest\"\n[nodes.b]\nimage = \"bb:latest\"\n[[links]]\nendpoints = [\"a:eth1\", \"b:eth1\"]\nips = [\"10.0.0.1\"]\n",
                g.name
            )),
            "10.0.0.1",
        ),
        (
            "no-image.toml",
            Some(format!(
                "name = \"{}\"\n[nodes.a]\nimage = \"pwl-no-such-image:1\"\n",
                g.name
            )),
            "pwl-no-such-image",
        ),
    ];
    for (file, text, token) in cases {
        let path = match text {
            Some(t) => g.write(file, &t),
            None => g.dir.join(file).display().to_string(),
        };
        let o = pipework(&["lab", "up", &path]);
        assert!(!o.status.success(), "{file}");
        let e = stderr(&o);
        assert_eq!(e.lines().count(), 1, "{file}: {e}");
        assert!(e.contains(token), "{file}: {e}");
    }
    let ps = stdout(&docker(&["ps", "-a", "--format", "{{.Names}}"]));
    assert!(!ps.contains(&g.name), "{ps}");
    assert_same(&before, &lab_snap(), "host after refused lab files");
}

/// `ovs-vsctl` on the test OVSDB (independent check and set-up only).
fn vsctl(args: &[&str]) -> String {
    let db =
        std::env::var("PIPEWORK_OVSDB").unwrap_or_else(|_| "unix:/tmp/pw-env/ovs/db.sock".into());
    let mut a = vec![format!("--db={db}")];
    a.extend(args.iter().map(|s| s.to_string()));
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    stdout(&sh("ovs-vsctl", &a)).trim().to_string()
}

struct OvsBridge(String);

impl Drop for OvsBridge {
    fn drop(&mut self) {
        vsctl(&["--if-exists", "del-br", &self.0]);
    }
}

#[test]
fn an_ovs_segment_with_a_vlan() {
    if !require_env() {
        return;
    }
    let db =
        std::env::var("PIPEWORK_OVSDB").unwrap_or_else(|_| "unix:/tmp/pw-env/ovs/db.sock".into());
    if !std::path::Path::new(db.trim_start_matches("unix:")).exists() {
        assert!(
            std::env::var_os("CI").is_none(),
            "no OVSDB at {db}: scripts/env-up.sh"
        );
        eprintln!("SKIP: no OVSDB at {db}");
        return;
    }
    let br = OvsBridge(uniq("pwlovs"));
    vsctl(&[
        "add-br",
        &br.0,
        "--",
        "set",
        "bridge",
        &br.0,
        "datapath_type=netdev",
    ]);
    let (a, b) = (Netns::new("pwloa"), Netns::new("pwlob"));
    let g = LabGuard::new();
    let f = g.write(
        "ovs.toml",
        &format!(
            r#"name = "{}"
[nodes.a]
netns = "{}"
[nodes.b]
netns = "{}"
[[links]]
kind = "ovs"
bridge = "{}"
vlan = 12
endpoints = ["a:eth1", "b:eth1"]
ips = ["10.81.0.1/24", "10.81.0.2/24"]
"#,
            g.name, a.name, b.name, br.0
        ),
    );
    pipework_ok(&["lab", "up", &f]);
    let ports = vsctl(&["list-ports", &br.0]);
    assert_eq!(ports.lines().count(), 2, "{ports}");
    for p in ports.lines() {
        assert_eq!(vsctl(&["get", "port", p, "tag"]), "12");
    }
    assert!(
        a.exec(&["busybox", "ping", "-c", "1", "-W", "2", "10.81.0.2"])
            .status
            .success()
    );
    // `ls` shows each port's VLAN.
    let ls: serde_json::Value =
        serde_json::from_str(&stdout(&pipework_ok(&["ls", "--json"]))).expect("ls");
    let ours: Vec<&serde_json::Value> = ls
        .as_array()
        .expect("list")
        .iter()
        .filter(|e| e["lab"] == serde_json::json!(g.name))
        .collect();
    assert_eq!(ours.len(), 2, "{ls}");
    assert!(ours.iter().all(|e| e["vlan"] == "12"), "{ls}");
    let text = stdout(&pipework_ok(&["ls"]));
    assert!(
        text.lines().next().is_some_and(|h| h.contains("VLAN")),
        "{text}"
    );
    let out = stdout(&pipework_ok(&["lab", "up", &f]));
    assert!(out.contains("0 added, 0 removed, 2 unchanged"), "{out}");
    pipework_ok(&["lab", "down", &g.name]);
    assert_eq!(vsctl(&["list-ports", &br.0]), "");
}

/// Review finding: an `up` killed between starting an image node and
/// saving the lab's state left a container no `down` knew. The next `up`
/// adopts a container of the node's name that carries this lab's label,
/// so `down` removes it; a same-named container without the label would
/// not be adopted (and `up` then refuses to start a second one).
#[test]
fn an_orphaned_image_node_is_adopted_and_removed_by_down() {
    if !require_env() {
        return;
    }
    let g = LabGuard::new();
    let node = g.container("a");
    // What the killed `up` left: the node's container, labelled, running.
    let o = docker(&[
        "run",
        "-d",
        "--name",
        &node,
        "--network",
        "none",
        "--label",
        &format!("pipework.lab={}", g.name),
        "bb:latest",
        "/bin/sleep",
        "3600",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let path = g.write(
        "orphan.toml",
        &format!("name = \"{}\"\n[nodes.a]\nimage = \"bb:latest\"\n", g.name),
    );
    let o = pipework(&["lab", "up", &path]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = pipework(&["lab", "down", &g.name]);
    assert!(o.status.success(), "{}", stderr(&o));
    let ps = stdout(&docker(&["ps", "-a", "--format", "{{.Names}}"]));
    assert!(
        !ps.lines().any(|l| l == node),
        "down left the adopted container: {ps}"
    );
}
