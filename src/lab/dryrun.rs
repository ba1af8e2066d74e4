//! `lab up --dry-run`: what `up` would do, read from the same sources
//! (the engine's view of the nodes, the lab's signed records, the same
//! diff), with nothing changed: no container started, no lock or state
//! file written. Each step comes with its iproute2 (or docker) equivalent.
use super::model::{ImageNode, Lab, LinkKind, NodeKind, Unit, container_name};
use super::plan::{self, Current, Held};
use super::state;
use crate::error::Result;
use crate::guest;
use crate::inventory::host_ns;
use crate::link::{EndSpec, LinkRequest, p2p_steps};
use serde::Serialize;
use std::collections::BTreeMap;

#[derive(Debug, Serialize)]
pub struct Step {
    /// start, add, rebuild, remove, exec.
    pub action: &'static str,
    pub what: String,
    /// The equivalent commands, for people (`<r1>`: node r1's namespace).
    pub commands: Vec<String>,
}

#[derive(Debug, Serialize, Default)]
pub struct DryRun {
    pub lab: String,
    pub steps: Vec<Step>,
    pub unchanged: usize,
}

fn docker_run(name: &str, i: &ImageNode) -> String {
    let mut v = vec![format!("docker run -d --name {name} --network none")];
    if i.privileged {
        v.push("--privileged".into());
    } else {
        v.extend(i.cap_add.iter().map(|c| format!("--cap-add {c}")));
    }
    v.extend(i.binds.iter().map(|b| format!("-v {b}")));
    // Values stay out of the plan (it is printed, logged, pasted into
    // issues; env often carries a password): the key is enough to read it.
    v.extend(i.env.iter().map(|e| match e.split_once('=') {
        Some((k, _)) => format!("-e {k}=…"),
        None => format!("-e {e}"),
    }));
    if let Some(u) = &i.user {
        v.push(format!("--user {u}"));
    }
    if let Some(e) = &i.entrypoint {
        v.push(format!("--entrypoint {}", e.join(" ")));
    }
    v.push(i.image.clone());
    v.extend(i.cmd.iter().cloned());
    v.join(" ")
}

fn unit_steps(lab: &Lab, u: &Unit) -> Vec<String> {
    match &u.kind {
        LinkKind::P2p => {
            let spec = |k: usize| EndSpec {
                guest: u.ends[k].node.clone(),
                ifname: u.ends[k].ifname.clone(),
                addrs: u.ends[k].addrs.clone(),
                mac: u.ends[k].mac,
            };
            let req = LinkRequest {
                a: spec(0),
                b: spec(1),
                mtu: u.mtu,
                extras: Default::default(),
                veth_queues: Default::default(),
            };
            p2p_steps(&req, &u.ends[0].node, &u.ends[1].node)
        }
        k => {
            let e = &u.ends[0];
            let h = k.host().unwrap_or_default();
            let n = &e.node;
            let mut v = match k {
                LinkKind::Overlay(net) => {
                    let ip = e.addrs.first().map(|a| a.to_string()).unwrap_or_default();
                    return vec![format!(
                        "pipework {net} {} {ip} -i {}   # claims {ip} in etcd, veth into ov-{net}",
                        lab.nodes
                            .get(n)
                            .map(|x| x.guest_spec(&lab.name))
                            .unwrap_or_default(),
                        e.ifname
                    )];
                }
                LinkKind::Macvlan { mode, .. } => vec![format!(
                    "ip link add {} link {h} netns <{n}> type macvlan mode {mode}",
                    e.ifname
                )],
                _ => {
                    let host_end = plan::host_ifname(&lab.name, u);
                    let mut v = vec![format!(
                        "ip link add {host_end} type veth peer name {} netns <{n}>",
                        e.ifname
                    )];
                    if let LinkKind::Ovs(_) = k {
                        let tag = u.vlan.map(|t| format!(" tag={t}")).unwrap_or_default();
                        v.push(format!("ovs-vsctl add-port {h} {host_end}{tag}"));
                    } else {
                        v.push(format!("ip link set {host_end} master {h}"));
                    }
                    v.push(format!("ip link set {host_end} up"));
                    v
                }
            };
            for a in &e.addrs {
                v.push(format!("ip -n <{n}> addr add {a} dev {}", e.ifname));
            }
            v.push(format!("ip -n <{n}> link set {} up", e.ifname));
            v
        }
    }
}

pub async fn run(lab: &Lab) -> Result<DryRun> {
    let mut out = DryRun {
        lab: lab.name.clone(),
        ..Default::default()
    };
    let st = state::load(&lab.name)?;
    let mut inos: BTreeMap<String, u64> = BTreeMap::new();
    inos.insert("host".into(), host_ns());
    let mut starting = Vec::new();
    for n in lab.nodes.values() {
        if let NodeKind::Image(i) = &n.kind {
            let cname = container_name(&lab.name, &n.name);
            match super::engine()?.inspect(&cname)? {
                Some(c) if c.state.running => {}
                Some(c) => out.steps.push(Step {
                    action: "start",
                    what: format!("container {cname} (stopped)"),
                    commands: vec![format!("docker start {}", c.id)],
                }),
                None => {
                    out.steps.push(Step {
                        action: "start",
                        what: format!("node {} (image {})", n.name, i.image),
                        commands: vec![docker_run(&cname, i)],
                    });
                    starting.push((n.name.clone(), i));
                }
            }
        }
        // A node that does not run yet has no namespace: its units are
        // all to add, as `end_held` finds nothing without an inode.
        if let Ok(g) = guest::resolve(&n.guest_spec(&lab.name))
            && let Ok(i) = g.netns.inode()
        {
            inos.insert(n.name.clone(), i);
        } else if !matches!(n.kind, NodeKind::Image(_)) {
            // What `up` would refuse: say it the way `up` would.
            guest::resolve(&n.guest_spec(&lab.name))
                .map_err(|e| crate::Error::bad(format!("nodes.{}", n.name), e))?;
        }
    }
    let host = crate::netlink::Net::new(None, false)?;
    let mut bridges: Vec<&str> = Vec::new();
    for u in &lab.units {
        if let LinkKind::Bridge(b) = &u.kind
            && !bridges.contains(&b.as_str())
            && host.link_by_name(b).await?.is_none()
        {
            bridges.push(b);
            out.steps.push(Step {
                action: "add",
                what: format!("bridge {b}"),
                commands: vec![
                    format!("ip link add {b} type bridge"),
                    format!("ip link set {b} up"),
                ],
            });
        }
    }
    let cur = Current::read().await;
    let held: Vec<Held> = cur.held(&lab.name).collect();
    let p = plan::diff(lab, &held, &inos).await;
    out.unchanged = p.unchanged;
    for &i in &p.add {
        let u = &lab.units[i];
        // Rebuilt: the kernel holds one of its interfaces as an older
        // version of it (a record the diff removes).
        let rebuild = u.ends.iter().any(|e| {
            p.remove.iter().any(|&r| {
                let h = &held[r];
                inos.get(&e.node) == Some(&h.found.rec.n) && h.found.rec.ifname == e.ifname
            })
        });
        out.steps.push(Step {
            action: if rebuild { "rebuild" } else { "add" },
            what: format!("links[{}] {}", u.index + 1, u.describe()),
            commands: unit_steps(lab, u),
        });
    }
    let mut seen = std::collections::HashSet::new();
    for &r in &p.remove {
        let h = &held[r];
        if seen.insert(plan::unit_of(&h.found.rec).map(String::from)) {
            out.steps.push(Step {
                action: "remove",
                what: super::down::describe_held(h),
                commands: vec![format!(
                    "ip{} link del {}",
                    if h.ns.ino == host_ns() {
                        String::new()
                    } else {
                        format!(" -n <{}>", h.found.rec.g)
                    },
                    h.found.link.name
                )],
            });
        }
    }
    for (n, i) in starting {
        for argv in &i.exec {
            out.steps.push(Step {
                action: "exec",
                what: format!("in {n}: {}", argv.join(" ")),
                commands: vec![format!(
                    "docker exec {} {}",
                    container_name(&lab.name, &n),
                    argv.join(" ")
                )],
            });
        }
    }
    for n in st.containers.keys() {
        if !lab
            .nodes
            .get(n)
            .is_some_and(|x| matches!(x.kind, NodeKind::Image(_)))
        {
            let c = container_name(&lab.name, n);
            out.steps.push(Step {
                action: "remove",
                what: format!("container {c}"),
                commands: vec![format!("docker rm -f {c}")],
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_values_are_masked_in_the_plan() {
        let i = ImageNode {
            image: "bb".into(),
            env: vec!["DB_PASSWORD=hunter2".into(), "A=".into(), "BARE".into()],
            ..Default::default()
        };
        let line = docker_run("lab-a", &i);
        assert!(!line.contains("hunter2"), "{line}");
        assert!(line.contains("-e DB_PASSWORD=… -e A=… -e BARE"), "{line}");
    }
}
