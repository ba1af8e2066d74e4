//! `lab graph`: the lab as a picture. DOT for Graphviz users, and an SVG
//! drawn here (no Graphviz needed): nodes on a circle, shared segments
//! (bridges, OVS, macvlan parents) as ellipses among them, every link
//! labelled with its interface names and addresses.
use super::model::{End, Lab, LinkKind};
use std::f64::consts::PI;
use std::fmt::Write;

/// A vertex of the picture: a lab node, a shared segment or the host.
struct Vertex {
    id: String,
    label: String,
    segment: bool,
}

struct Edge {
    a: usize,
    b: usize,
    /// Label near `a` (interface and addresses of a's end).
    la: String,
    /// Label near `b` (empty for a segment).
    lb: String,
}

fn end_label(e: &End) -> String {
    let mut s = e.ifname.clone();
    for a in &e.addrs {
        s.push(' ');
        s.push_str(&a.to_string());
    }
    s
}

fn segment_id(k: &LinkKind) -> String {
    format!("{}:{}", k.name(), k.host().unwrap_or_default())
}

fn build(lab: &Lab) -> (Vec<Vertex>, Vec<Edge>) {
    let mut v: Vec<Vertex> = lab
        .nodes
        .keys()
        .map(|n| Vertex {
            id: n.clone(),
            label: n.clone(),
            segment: false,
        })
        .collect();
    let idx = |v: &mut Vec<Vertex>, id: String, label: String, segment: bool| -> usize {
        if let Some(i) = v.iter().position(|x| x.id == id) {
            return i;
        }
        v.push(Vertex { id, label, segment });
        v.len() - 1
    };
    let mut edges = Vec::new();
    for u in &lab.units {
        match u.kind.host() {
            None => {
                let a = idx(
                    &mut v,
                    u.ends[0].node.clone(),
                    u.ends[0].node.clone(),
                    false,
                );
                let b = idx(
                    &mut v,
                    u.ends[1].node.clone(),
                    u.ends[1].node.clone(),
                    false,
                );
                edges.push(Edge {
                    a,
                    b,
                    la: end_label(&u.ends[0]),
                    lb: end_label(&u.ends[1]),
                });
            }
            Some(h) => {
                let s = idx(
                    &mut v,
                    segment_id(&u.kind),
                    format!("{} {h}", u.kind.name()),
                    true,
                );
                let a = idx(
                    &mut v,
                    u.ends[0].node.clone(),
                    u.ends[0].node.clone(),
                    false,
                );
                edges.push(Edge {
                    a,
                    b: s,
                    la: end_label(&u.ends[0]),
                    lb: String::new(),
                });
            }
        }
    }
    (v, edges)
}

fn q(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

pub fn dot(lab: &Lab) -> String {
    let (v, e) = build(lab);
    let mut s = format!("graph \"{}\" {{\n  node [shape=box];\n", q(&lab.name));
    for x in &v {
        let shape = if x.segment { " shape=ellipse" } else { "" };
        let _ = writeln!(s, "  \"{}\" [label=\"{}\"{shape}];", q(&x.id), q(&x.label));
    }
    for x in &e {
        let _ = writeln!(
            s,
            "  \"{}\" -- \"{}\" [taillabel=\"{}\" headlabel=\"{}\"];",
            q(&v[x.a].id),
            q(&v[x.b].id),
            q(&x.la),
            q(&x.lb)
        );
    }
    s.push_str("}\n");
    s
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

pub fn svg(lab: &Lab) -> String {
    let (v, e) = build(lab);
    // Nodes on a circle; each shared segment at the centroid of its
    // members pulled towards the middle (a hub its members reach without
    // crossing the picture).
    let outer: Vec<usize> = (0..v.len()).filter(|i| !v[*i].segment).collect();
    let inner: Vec<usize> = (0..v.len()).filter(|i| v[*i].segment).collect();
    let r = (55.0 * outer.len() as f64).clamp(200.0, 480.0);
    let (w, h) = (2.0 * r + 320.0, 2.0 * r + 160.0);
    let (cx, cy) = (w / 2.0, h / 2.0 + 10.0);
    let mut pos = vec![(cx, cy); v.len()];
    let n = outer.len().max(1) as f64;
    for (k, &i) in outer.iter().enumerate() {
        let t = -PI / 2.0 + 2.0 * PI * k as f64 / n;
        pos[i] = (cx + r * t.cos(), cy + r * t.sin());
    }
    for (k, &i) in inner.iter().enumerate() {
        let members: Vec<(f64, f64)> = e.iter().filter(|x| x.b == i).map(|x| pos[x.a]).collect();
        let m = members.len().max(1) as f64;
        let (sx, sy) = members
            .iter()
            .fold((0.0, 0.0), |(ax, ay), (x, y)| (ax + x, ay + y));
        // Two segments with the same members must not sit on each other.
        let nudge = 24.0 * k as f64;
        // A lone member's segment goes further in, clear of its labels.
        let pull = if members.len() > 1 { 0.55 } else { 0.35 };
        pos[i] = (
            cx + (sx / m - cx) * pull + nudge,
            cy + (sy / m - cy) * pull + nudge,
        );
    }
    let mut s = String::new();
    let _ = writeln!(
        s,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w:.0}\" height=\"{h:.0}\" viewBox=\"0 0 {w:.0} {h:.0}\" font-family=\"sans-serif\" font-size=\"12\">"
    );
    let _ = writeln!(
        s,
        "<title>lab {}</title>\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>",
        esc(&lab.name)
    );
    let _ = writeln!(
        s,
        "<text x=\"16\" y=\"24\" font-size=\"16\" font-weight=\"bold\">lab {}</text>",
        esc(&lab.name)
    );
    s.push_str("<g stroke=\"#555\" stroke-width=\"1.5\">\n");
    for x in &e {
        let ((x1, y1), (x2, y2)) = (pos[x.a], pos[x.b]);
        let _ = writeln!(
            s,
            "<line x1=\"{x1:.1}\" y1=\"{y1:.1}\" x2=\"{x2:.1}\" y2=\"{y2:.1}\"/>"
        );
    }
    s.push_str("</g>\n<g fill=\"#124\">\n");
    for x in &e {
        let ((x1, y1), (x2, y2)) = (pos[x.a], pos[x.b]);
        for (label, t) in [(&x.la, 0.28), (&x.lb, 0.72)] {
            if label.is_empty() {
                continue;
            }
            let (lx, ly) = (x1 + (x2 - x1) * t, y1 + (y2 - y1) * t);
            let _ = writeln!(
                s,
                "<text x=\"{lx:.1}\" y=\"{ly:.1}\" text-anchor=\"middle\" paint-order=\"stroke\" stroke=\"white\" stroke-width=\"3\">{}</text>",
                esc(label)
            );
        }
    }
    s.push_str("</g>\n");
    for (i, x) in v.iter().enumerate() {
        let (px, py) = pos[i];
        let wbox = 16.0 + 7.5 * x.label.chars().count() as f64;
        let kind = if x.segment { "segment" } else { "node" };
        let _ = writeln!(
            s,
            "<g class=\"{kind}\" id=\"{kind}-{}\">",
            esc(&x.id.replace(':', "-"))
        );
        if x.segment {
            let _ = writeln!(
                s,
                "<ellipse cx=\"{px:.1}\" cy=\"{py:.1}\" rx=\"{:.1}\" ry=\"18\" fill=\"#fff4d6\" stroke=\"#a80\"/>",
                wbox / 2.0 + 6.0
            );
        } else {
            let _ = writeln!(
                s,
                "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{wbox:.1}\" height=\"28\" rx=\"6\" fill=\"#dbe9ff\" stroke=\"#246\"/>",
                px - wbox / 2.0,
                py - 14.0
            );
        }
        let _ = writeln!(
            s,
            "<text x=\"{px:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>\n</g>",
            py + 4.0,
            esc(&x.label)
        );
    }
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_node_and_label_is_drawn() {
        let lab = super::super::file::parse_toml(
            r#"
name = "g"
[nodes.a]
netns = "x"
[nodes.b]
netns = "y"
[nodes."c<&>"]
netns = "z"
[[links]]
endpoints = ["a:eth1", "b:eth1"]
ips = ["10.0.0.1/30", "10.0.0.2/30"]
[[links]]
kind = "bridge"
bridge = "br0"
endpoints = ["a:eth2", "b:eth2"]
"#,
        );
        // '<' is not a valid node name: refused at parse time.
        assert!(lab.is_err());
        let lab = super::super::file::parse_toml(
            r#"
name = "g"
[nodes.a]
netns = "x"
[nodes.b]
netns = "y"
[[links]]
endpoints = ["a:eth1", "b:eth1"]
ips = ["10.0.0.1/30", "10.0.0.2/30"]
[[links]]
kind = "bridge"
bridge = "br0"
endpoints = ["a:eth2", "b:eth2"]
"#,
        )
        .expect("parses");
        let d = dot(&lab);
        assert!(
            d.contains("\"a\" -- \"b\" [taillabel=\"eth1 10.0.0.1/30\""),
            "{d}"
        );
        assert!(
            d.contains("\"bridge:br0\" [label=\"bridge br0\" shape=ellipse]"),
            "{d}"
        );
        let s = svg(&lab);
        assert!(s.starts_with("<svg"));
        assert!(s.contains("id=\"node-a\"") && s.contains("id=\"node-b\""));
        assert!(s.contains("id=\"segment-bridge-br0\""));
        assert!(s.contains(">eth1 10.0.0.2/30<"));
        assert_eq!(s.matches("<line").count(), 3);
    }
}
