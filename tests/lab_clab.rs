//! Labs as containerlab users write them, against a real dockerd:
//! containerlab's own frr01 example (tests/fixtures/frr01, images swapped
//! for the busybox test image), the kinds/defaults precedence, unsupported
//! keys named and refused under --strict, an exec failure rolled back, and
//! --dry-run changing nothing.
mod common;
use common::*;
use std::path::{Path, PathBuf};

/// The test image the fixture names: busybox with a default command (the
/// images containerlab's example uses have one).
const IMAGE: &str = "pwl-clab:latest";

fn image() {
    if docker(&["image", "inspect", IMAGE]).status.success() {
        return;
    }
    let tar = format!(
        "{}/bb.tar",
        std::env::var("PW_ENV").unwrap_or_else(|_| "/tmp/pw-env".into())
    );
    let o = docker(&["import", "-c", r#"CMD ["/bin/sleep","86400"]"#, &tar, IMAGE]);
    assert!(o.status.success(), "docker import: {}", stderr(&o));
}

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/frr01")
}

/// `lab down NAME` when dropped, so a failing test leaves nothing.
struct Down(String, Option<PathBuf>);

impl Drop for Down {
    fn drop(&mut self) {
        let _ = pipework(&["lab", "down", &self.0]);
        if let Some(d) = &self.1 {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

fn dexec(c: &str, args: &[&str]) -> String {
    let mut a = vec!["exec", c];
    a.extend_from_slice(args);
    let o = docker(&a);
    assert!(o.status.success(), "{c} {args:?}: {}", stderr(&o));
    stdout(&o)
}

fn containers(prefix: &str) -> Vec<String> {
    stdout(&docker(&["ps", "-a", "--format", "{{.Names}}"]))
        .lines()
        .filter(|l| l.starts_with(prefix))
        .map(String::from)
        .collect()
}

#[test]
fn containerlabs_frr01_comes_up_as_written() {
    if !require_env() {
        return;
    }
    image();
    let file = fixture().join("frr01.clab.yml");
    let file = file.to_str().expect("utf-8 path");
    let before = lab_snap();
    let _g = Down("frr01".into(), None);

    // The plan first: nothing changes.
    let o = pipework_ok(&["lab", "up", "--dry-run", file]);
    let plan = stdout(&o);
    assert!(plan.contains("start   node router1"), "{plan}");
    assert!(
        plan.contains(
            "ip link add eth1 netns <router1> mtu 1500 type veth peer name eth1 netns <router2>"
        ),
        "{plan}"
    );
    assert!(
        plan.contains("docker exec frr01-PC1 ip addr add 192.168.11.2/24 dev eth1"),
        "{plan}"
    );
    assert!(containers("frr01-").is_empty());
    assert_same(&before, &lab_snap(), "host after --dry-run");

    let o = pipework_ok(&["lab", "up", file]);
    let out = stdout(&o);
    assert!(out.contains("6 added, 0 removed, 0 unchanged"), "{out}");
    // Unprivileged, and said so.
    assert!(
        stderr(&o).contains("NET_ADMIN and NET_RAW"),
        "{}",
        stderr(&o)
    );

    // Binds, byte-equal.
    for r in ["router1", "router2", "router3"] {
        for f in ["daemons", "frr.conf"] {
            let want = std::fs::read_to_string(fixture().join(r).join(f)).expect("fixture");
            let got = dexec(&format!("frr01-{r}"), &["cat", &format!("/etc/frr/{f}")]);
            assert_eq!(got, want, "{r} {f}");
        }
    }
    // Every exec line took effect.
    for (pc, net) in [("PC1", "11"), ("PC2", "12"), ("PC3", "13")] {
        let c = format!("frr01-{pc}");
        let a = dexec(&c, &["ip", "-o", "addr", "show", "dev", "eth1"]);
        assert!(a.contains(&format!("inet 192.168.{net}.2/24")), "{pc}: {a}");
        let l = dexec(&c, &["ip", "-o", "link", "show", "dev", "eth1"]);
        assert!(l.contains(",UP"), "{pc}: {l}");
        let r = dexec(&c, &["ip", "route"]);
        for dst in ["192.168.0.0/16", "10.10.10.0/24"] {
            assert!(
                r.contains(&format!("{dst} via 192.168.{net}.1 dev eth1")),
                "{pc}: {r}"
            );
        }
    }
    // The routers' ends are there: PC1 reaches router1's eth3 once it has
    // an address (the routers' own config is FRR's, not run here).
    dexec(
        "frr01-router1",
        &["ip", "addr", "add", "192.168.11.1/24", "dev", "eth3"],
    );
    dexec("frr01-PC1", &["ping", "-c", "1", "-W", "2", "192.168.11.1"]);
    dexec(
        "frr01-router1",
        &["ip", "addr", "del", "192.168.11.1/24", "dev", "eth3"],
    );

    // `link --dry-run`: the plan, and nothing made.
    let o = pipework_ok(&[
        "link",
        "frr01-PC1:eth9",
        "frr01-PC2:eth9",
        "--ip-a",
        "10.9.9.1/30",
        "--dry-run",
    ]);
    let plan = stdout(&o);
    assert!(
        plan.contains(
            "ip link add eth9 netns <frr01-PC1> mtu 1500 type veth peer name eth9 netns <frr01-PC2>"
        ),
        "{plan}"
    );
    assert!(
        plan.contains("ip -n <frr01-PC1> addr add 10.9.9.1/30 dev eth9"),
        "{plan}"
    );
    for pc in ["PC1", "PC2"] {
        let l = dexec(&format!("frr01-{pc}"), &["ip", "-o", "link"]);
        assert!(!l.contains("eth9"), "{pc}: {l}");
    }
    // A name in use is refused by the dry run as by the real one.
    let o = pipework(&["link", "frr01-PC1:eth1", "frr01-PC2:eth9", "--dry-run"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("eth1"), "{}", stderr(&o));

    let st = stdout(&pipework_ok(&["lab", "status", file]));
    assert!(st.contains("exec 4/4 ok"), "{st}");
    assert!(st.contains("matches the file"), "{st}");

    // A second up is a no-op: nothing started, nothing run again.
    let again = stdout(&pipework_ok(&["lab", "up", file]));
    assert!(again.contains("0 added, 0 removed, 6 unchanged"), "{again}");
    assert!(
        !again.contains("started") && !again.contains("exec "),
        "{again}"
    );
    let r = dexec("frr01-PC1", &["ip", "route"]);
    assert_eq!(r.matches("192.168.0.0/16").count(), 1, "{r}");

    pipework_ok(&["lab", "down", file]);
    assert!(containers("frr01-").is_empty());
    assert_same(&before, &lab_snap(), "host after down");
}

fn lab_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("{name}-files"));
    std::fs::create_dir_all(&d).expect("dir");
    d
}

#[test]
fn kinds_and_defaults_give_way_to_groups_and_nodes() {
    if !require_env() {
        return;
    }
    image();
    let name = uniq("pwl");
    let d = lab_dir(&name);
    let _g = Down(name.clone(), Some(d.clone()));
    std::fs::write(d.join("d.txt"), "from defaults\n").expect("w");
    std::fs::write(d.join("n.txt"), "from the node\n").expect("w");
    let f = d.join("p.clab.yml");
    std::fs::write(
        &f,
        format!(
            r#"name: {name}
topology:
  defaults:
    image: pwl-no-such-image:1
    env: {{WHO: defaults, A: defaults}}
    binds: [d.txt:/srv/d.txt:ro, d.txt:/srv/x.txt]
    exec: ["sh -c 'echo defaults >> /tmp/order'"]
  kinds:
    linux:
      image: {IMAGE}
      env: {{WHO: kind, B: kind}}
      exec: ["sh -c 'echo kind >> /tmp/order'"]
  groups:
    g:
      env: {{WHO: group}}
      labels: {{team: blue}}
      exec: ["sh -c 'echo group >> /tmp/order'"]
  nodes:
    a:
      group: g
      env: {{WHO: node}}
      binds: [n.txt:/srv/x.txt:ro]
      exec: ["sh -c 'echo node >> /tmp/order'"]
    b:
      cmd: /bin/sleep 4000
  links:
    - endpoints: ["a:eth1", "b:eth1"]
"#
        ),
    )
    .expect("write");
    let f = f.to_str().expect("utf-8");
    pipework_ok(&["lab", "up", f]);
    let a = format!("{name}-a");
    let b = format!("{name}-b");
    let env = |c: &str| dexec(c, &["sh", "-c", "echo $WHO,$A,$B"]);
    assert_eq!(env(&a), "node,defaults,kind\n");
    assert_eq!(
        dexec(&a, &["cat", "/tmp/order"]),
        "defaults\nkind\ngroup\nnode\n"
    );
    assert_eq!(dexec(&a, &["cat", "/srv/d.txt"]), "from defaults\n");
    // The node's bind to the same path replaces the defaults'.
    assert_eq!(dexec(&a, &["cat", "/srv/x.txt"]), "from the node\n");
    // :ro holds.
    let o = docker(&["exec", &a, "sh", "-c", "echo x > /srv/x.txt"]);
    assert!(!o.status.success());
    let labels = stdout(&docker(&["inspect", "-f", "{{json .Config.Labels}}", &a]));
    assert!(labels.contains("\"team\":\"blue\""), "{labels}");
    // b: the kind's image and env, its own cmd, the defaults' exec.
    assert_eq!(env(&b), "kind,defaults,kind\n");
    let cmd = stdout(&docker(&["inspect", "-f", "{{json .Config.Cmd}}", &b]));
    assert!(cmd.contains("[\"/bin/sleep\",\"4000\"]"), "{cmd}");
    assert_eq!(dexec(&b, &["cat", "/tmp/order"]), "defaults\nkind\n");
    // Not privileged: NET_ADMIN only.
    let hc = stdout(&docker(&[
        "inspect",
        "-f",
        "{{.HostConfig.Privileged}} {{json .HostConfig.CapAdd}}",
        &a,
    ]));
    assert!(hc.starts_with("false "), "{hc}");
    assert!(hc.contains("NET_ADMIN") && hc.contains("NET_RAW"), "{hc}");

    // An edited node is not applied behind the user's back, nor silently
    // left as it was: `up` names it.
    let text = std::fs::read_to_string(f).expect("read");
    std::fs::write(f, text.replace("{WHO: node}", "{WHO: node2}")).expect("write");
    let o = pipework_ok(&["lab", "up", f]);
    let e = stderr(&o);
    assert!(
        e.contains("nodes.a: its container runs an older definition"),
        "{e}"
    );
    assert!(!e.contains("nodes.b:"), "{e}");
}

#[test]
fn unsupported_keys_are_named_and_refused_under_strict() {
    if !require_env() {
        return;
    }
    image();
    let name = uniq("pwl");
    let d = lab_dir(&name);
    let _g = Down(name.clone(), Some(d.clone()));
    let f = d.join("u.clab.yml");
    std::fs::write(
        &f,
        format!(
            r#"name: {name}
prefix: ""
mgmt:
  network: custom
topology:
  nodes:
    r1:
      kind: linux
      image: {IMAGE}
      startup-config: r1.cfg
      mgmt-ipv4: 172.20.20.2
    r2:
      kind: linux
      image: {IMAGE}
  links:
    - endpoints: ["r1:eth1", "r2:eth1"]
      vars: {{x: 1}}
"#
        ),
    )
    .expect("write");
    let f = f.to_str().expect("utf-8");
    let before = lab_snap();
    let o = pipework(&["lab", "up", "--strict", f]);
    assert!(!o.status.success());
    let e = stderr(&o);
    for k in [
        "prefix",
        "mgmt",
        "topology.nodes.r1.startup-config",
        "topology.nodes.r1.mgmt-ipv4",
        "topology.links[1].vars",
    ] {
        assert!(e.contains(k), "{k}: {e}");
    }
    assert!(e.contains("--strict"), "{e}");
    assert!(containers(&name).is_empty());
    assert_same(&before, &lab_snap(), "host after --strict refusal");

    let o = pipework_ok(&["lab", "up", f]);
    let e = stderr(&o);
    assert!(
        e.lines()
            .any(|l| l == "ignored: topology.nodes.r1.startup-config (not supported)"),
        "{e}"
    );
    assert!(
        e.contains("ignored: topology.links[1].vars (not supported)"),
        "{e}"
    );
    assert_eq!(containers(&name).len(), 2);
}

#[test]
fn a_failing_exec_line_rolls_the_whole_up_back() {
    if !require_env() {
        return;
    }
    image();
    let name = uniq("pwl");
    let d = lab_dir(&name);
    let _g = Down(name.clone(), Some(d.clone()));
    let f = d.join("x.clab.yml");
    std::fs::write(
        &f,
        format!(
            r#"name: {name}
topology:
  kinds:
    linux:
      image: {IMAGE}
  nodes:
    a:
      exec:
        - ip addr add 10.77.0.1/30 dev eth1
        - ip route add 10.99.0.0/16 via 10.77.0.9 dev nosuchdev
    b: {{}}
  links:
    - endpoints: ["a:eth1", "b:eth1"]
"#
        ),
    )
    .expect("write");
    let f = f.to_str().expect("utf-8");
    let before = lab_snap();
    let o = pipework(&["lab", "up", f]);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(
        e.contains("nodes.a.exec[2]") && e.contains("nosuchdev"),
        "{e}"
    );
    assert!(containers(&name).is_empty(), "{:?}", containers(&name));
    assert_same(&before, &lab_snap(), "host after a failed exec");
    // Nothing left for the next `up` or `down` to find either.
    let st = stdout(&pipework(&["lab", "status", f]));
    assert!(st.contains("NOT RUNNING"), "{st}");
}

/// Exec lines are never silently lost: a node whose container an `up`
/// left before its first exec line (here: created by hand with the lab's
/// label, what a SIGKILL right after `docker run` leaves) gets its lines
/// run by the next `up`, once; a container that restarted (a new network
/// namespace) gets them run again.
#[test]
fn exec_lines_run_after_an_interrupted_up_and_after_a_restart() {
    if !require_env() {
        return;
    }
    image();
    let name = uniq("pwl");
    let d = lab_dir(&name);
    let _g = Down(name.clone(), Some(d.clone()));
    let a = format!("{name}-a");
    let o = docker(&[
        "run",
        "-d",
        "--name",
        &a,
        "--network",
        "none",
        "--label",
        &format!("pipework.lab={name}"),
        IMAGE,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let f = d.join("e.clab.yml");
    std::fs::write(
        &f,
        format!(
            r#"name: {name}
topology:
  kinds:
    linux:
      image: {IMAGE}
  nodes:
    a:
      exec: ["sh -c 'echo ran >> /tmp/order'"]
    b: {{}}
  links:
    - endpoints: ["a:eth1", "b:eth1"]
"#
        ),
    )
    .expect("write");
    let f = f.to_str().expect("utf-8");
    pipework_ok(&["lab", "up", f]);
    assert_eq!(dexec(&a, &["cat", "/tmp/order"]), "ran\n");
    let st = stdout(&pipework(&["lab", "status", f]));
    assert!(st.contains("exec 1/1 ok"), "{st}");
    // Done once: a second `up` does not run them.
    pipework_ok(&["lab", "up", f]);
    assert_eq!(dexec(&a, &["cat", "/tmp/order"]), "ran\n");
    // Restarted: a new namespace, links rebuilt, exec lines again.
    let o = docker(&["restart", "-t", "0", &a]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = pipework(&["lab", "up", f]);
    assert!(o.status.success(), "{}", stderr(&o));
    let said = format!("{}{}", stdout(&o), stderr(&o));
    assert!(said.contains("restarted"), "{said}");
    assert_eq!(dexec(&a, &["cat", "/tmp/order"]), "ran\nran\n");
    let l = dexec(&a, &["ip", "-o", "link", "show", "dev", "eth1"]);
    assert!(l.contains("eth1"), "{l}");
}

#[test]
fn a_containerlab_bridge_node_is_a_bridge_its_links_join() {
    if !require_env() {
        return;
    }
    image();
    let name = uniq("pwl");
    let d = lab_dir(&name);
    let _g = Down(name.clone(), Some(d.clone()));
    let br = format!("{name}br");
    let f = d.join("br.clab.yml");
    std::fs::write(
        &f,
        format!(
            r#"name: {name}
topology:
  kinds:
    linux:
      image: {IMAGE}
  nodes:
    {br}:
      kind: bridge
    a:
      exec: ["ip addr add 10.79.0.1/24 dev eth1"]
    b:
      exec: ["ip addr add 10.79.0.2/24 dev eth1"]
  links:
    - endpoints: ["a:eth1", "{br}:a1"]
    - endpoints: ["b:eth1", "{br}:b1"]
"#
        ),
    )
    .expect("write");
    let f = f.to_str().expect("utf-8");
    let before = lab_snap();
    let o = pipework_ok(&["lab", "up", f]);
    assert!(
        stderr(&o).contains(&format!(
            "{br}:a1 (the bridge's end of the veth is named by pipework)"
        )),
        "{}",
        stderr(&o)
    );
    let ports = ok("ip", &["-o", "link", "show", "master", &br]);
    assert_eq!(ports.lines().count(), 2, "{ports}");
    dexec(
        &format!("{name}-a"),
        &["ping", "-c", "1", "-W", "2", "10.79.0.2"],
    );
    pipework_ok(&["lab", "down", f]);
    assert_same(&before, &lab_snap(), "host after down");
}
