//! `lab graph`: the lab as a picture. DOT for Graphviz users, and an SVG
//! drawn here (no Graphviz needed): layered (rows by breadth-first
//! distance, ordered by barycentres), shared segments (bridges, OVS,
//! macvlan parents) as pills among the nodes, every link labelled at both
//! ends with its interface names and addresses. Labels sit in bands
//! beside the boxes and lines slant only between rows, so no label
//! covers another or a box, and no line crosses a box
//! (tests/lab_graph.rs checks it from the SVG's own geometry).
use super::model::{End, Lab, LinkKind};
use std::collections::BTreeMap;
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

/// Font size of port labels; monospace, so a label's width is known
/// here and written into the SVG (`textLength`), which is what the
/// geometry test reads.
const FS: f64 = 11.0;
const CW: f64 = FS * 0.6;
/// Name text.
const NFS: f64 = 13.0;
const NCW: f64 = NFS * 0.6;
const BOX_H: f64 = 28.0;
/// Height of the label band above and below each row of boxes.
const BAND: f64 = 16.0;
/// Horizontal room between two boxes of a row.
const HGAP: f64 = 36.0;
/// Vertical room between the bands of two rows, for the slanted parts
/// of the lines.
const SLANT: f64 = 44.0;
/// Spacing of the horizontal lanes that join two boxes of one row.
const LANE: f64 = 8.0;

fn text_w(s: &str, cw: f64) -> f64 {
    s.chars().count() as f64 * cw
}

/// Rows by breadth-first distance from each component's best-connected
/// vertex: every edge then joins one row or two neighbouring rows.
fn layers(n: usize, e: &[Edge]) -> Vec<usize> {
    let mut adj = vec![Vec::new(); n];
    for x in e {
        adj[x.a].push(x.b);
        adj[x.b].push(x.a);
    }
    let mut layer = vec![usize::MAX; n];
    let mut by_degree: Vec<usize> = (0..n).collect();
    by_degree.sort_by_key(|&i| std::cmp::Reverse(adj[i].len()));
    for root in by_degree {
        if layer[root] != usize::MAX {
            continue;
        }
        layer[root] = 0;
        let mut q = std::collections::VecDeque::from([root]);
        while let Some(u) = q.pop_front() {
            for &w in &adj[u] {
                if layer[w] == usize::MAX {
                    layer[w] = layer[u] + 1;
                    q.push_back(w);
                }
            }
        }
    }
    layer
}

/// Order each row by the mean position of its neighbours (a few sweeps
/// down and up), which takes out most crossings.
fn order(rows: &mut [Vec<usize>], e: &[Edge], n: usize) {
    let mut pos = vec![0.0; n];
    let set = |rows: &[Vec<usize>], pos: &mut Vec<f64>| {
        for r in rows {
            for (k, &v) in r.iter().enumerate() {
                pos[v] = k as f64 / r.len().max(1) as f64;
            }
        }
    };
    set(rows, &mut pos);
    for sweep in 0..6 {
        let idx: Vec<usize> = if sweep % 2 == 0 {
            (1..rows.len()).collect()
        } else {
            (0..rows.len().saturating_sub(1)).rev().collect()
        };
        for r in idx {
            let mut keyed: Vec<(f64, usize)> = rows[r]
                .iter()
                .map(|&v| {
                    let ns: Vec<f64> = e
                        .iter()
                        .filter_map(|x| {
                            if x.a == v {
                                Some(pos[x.b])
                            } else if x.b == v {
                                Some(pos[x.a])
                            } else {
                                None
                            }
                        })
                        .collect();
                    let b = if ns.is_empty() {
                        pos[v]
                    } else {
                        ns.iter().sum::<f64>() / ns.len() as f64
                    };
                    (b, v)
                })
                .collect();
            keyed.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            rows[r] = keyed.into_iter().map(|(_, v)| v).collect();
            set(rows, &mut pos);
        }
    }
}

/// One end of an edge on a box side: where the line meets the box, and
/// its label to the right of it (outside the box, in the row's band).
struct Port {
    edge: usize,
    label: String,
    x: f64,
}

fn slot_w(label: &str) -> f64 {
    if label.is_empty() {
        14.0
    } else {
        text_w(label, CW) + 14.0
    }
}

pub fn svg(lab: &Lab) -> String {
    let (v, e) = build(lab);
    let n = v.len();
    let layer = layers(n, &e);
    let nrows = layer.iter().copied().max().map_or(0, |m| m + 1);
    let mut rows: Vec<Vec<usize>> = vec![Vec::new(); nrows];
    for i in 0..n {
        rows[layer[i]].push(i);
    }
    order(&mut rows, &e, n);
    let mut rank = vec![0usize; n];
    for r in &rows {
        for (k, &i) in r.iter().enumerate() {
            rank[i] = k;
        }
    }
    // Ports: below a box for an edge to the same or the next row, above
    // for an edge to the row before; sorted by where the other end is.
    let mut top: Vec<Vec<Port>> = (0..n).map(|_| Vec::new()).collect();
    let mut bottom: Vec<Vec<Port>> = (0..n).map(|_| Vec::new()).collect();
    for (k, x) in e.iter().enumerate() {
        for (me, other, label) in [(x.a, x.b, &x.la), (x.b, x.a, &x.lb)] {
            let p = Port {
                edge: k,
                label: label.clone(),
                x: 0.0,
            };
            if layer[other] < layer[me] {
                top[me].push(p);
            } else {
                bottom[me].push(p);
            }
        }
    }
    let key = |p: &Port, me: usize| {
        let o = if e[p.edge].a == me {
            e[p.edge].b
        } else {
            e[p.edge].a
        };
        (layer[o], rank[o], p.edge)
    };
    for i in 0..n {
        top[i].sort_by_key(|p| key(p, i));
        bottom[i].sort_by_key(|p| key(p, i));
    }
    let width: Vec<f64> = (0..n)
        .map(|i| {
            let ports = |ps: &[Port]| ps.iter().map(|p| slot_w(&p.label)).sum::<f64>();
            (text_w(&v[i].label, NCW) + 20.0)
                .max(ports(&top[i]) + 16.0)
                .max(ports(&bottom[i]) + 16.0)
        })
        .collect();
    // Same-row edges get a lane each below their row.
    let mut lanes: Vec<usize> = vec![0; nrows];
    let mut lane_of: BTreeMap<usize, usize> = BTreeMap::new();
    for (k, x) in e.iter().enumerate() {
        if layer[x.a] == layer[x.b] {
            lane_of.insert(k, lanes[layer[x.a]]);
            lanes[layer[x.a]] += 1;
        }
    }
    let row_w: Vec<f64> = rows
        .iter()
        .map(|r| r.iter().map(|&i| width[i]).sum::<f64>() + HGAP * r.len().saturating_sub(1) as f64)
        .collect();
    let title = format!("lab {}", lab.name);
    let total_w = row_w
        .iter()
        .copied()
        .fold(text_w(&title, NCW) + 32.0, f64::max)
        + 40.0;
    let mut xy = vec![(0.0, 0.0); n];
    let mut row_top = vec![0.0; nrows];
    let mut y = 40.0 + BAND;
    for (r, row) in rows.iter().enumerate() {
        row_top[r] = y;
        let mut x = (total_w - row_w[r]) / 2.0;
        for &i in row {
            xy[i] = (x, y);
            x += width[i] + HGAP;
        }
        y += BOX_H + BAND + LANE * (lanes[r] as f64 + 1.0) + SLANT + BAND;
    }
    let total_h = y;
    for i in 0..n {
        let (bx, _) = xy[i];
        for ps in [&mut top[i], &mut bottom[i]] {
            let used: f64 = ps.iter().map(|p| slot_w(&p.label)).sum();
            let mut sx = bx + (width[i] - used) / 2.0;
            for p in ps.iter_mut() {
                p.x = sx + 5.0;
                sx += slot_w(&p.label);
            }
        }
    }
    // A link from a node to itself has two ports on one side: the `nth`.
    let port_of = |ps: &[Port], k: usize, nth: usize| {
        ps.iter()
            .filter(|p| p.edge == k)
            .nth(nth)
            .map_or(0.0, |p| p.x)
    };
    let mut s = String::new();
    let _ = writeln!(
        s,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{total_w:.0}\" height=\"{total_h:.0}\" viewBox=\"0 0 {total_w:.0} {total_h:.0}\" font-family=\"monospace\">"
    );
    let _ = writeln!(
        s,
        "<title>{}</title>\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>",
        esc(&title)
    );
    let _ = writeln!(
        s,
        "<text class=\"title\" x=\"16\" y=\"24\" font-size=\"{NFS}\" textLength=\"{:.1}\" lengthAdjust=\"spacingAndGlyphs\" font-weight=\"bold\">{}</text>",
        text_w(&title, NCW),
        esc(&title)
    );
    // Lines: out of a box straight through its label band, slanted only
    // in the room between rows (no box there), back in straight; two
    // boxes of one row are joined through a lane below the row.
    s.push_str("<g stroke=\"#555\" stroke-width=\"1.5\" fill=\"none\">\n");
    for (k, x) in e.iter().enumerate() {
        let (u, w) = if layer[x.a] <= layer[x.b] {
            (x.a, x.b)
        } else {
            (x.b, x.a)
        };
        let (pu, pw) = (
            port_of(&bottom[u], k, 0),
            port_of(&bottom[w], k, usize::from(u == w)),
        );
        let ubot = xy[u].1 + BOX_H;
        let pts: Vec<(f64, f64)> = if layer[u] == layer[w] {
            let ly = ubot + BAND + LANE * (lane_of.get(&k).copied().unwrap_or(0) as f64 + 1.0);
            vec![(pu, ubot), (pu, ly), (pw, ly), (pw, ubot)]
        } else {
            let pw = port_of(&top[w], k, 0);
            let wtop = xy[w].1;
            let y1 = ubot + BAND + LANE * (lanes[layer[u]] as f64 + 1.0);
            vec![(pu, ubot), (pu, y1), (pw, wtop - BAND), (pw, wtop)]
        };
        let pts: Vec<String> = pts.iter().map(|(a, b)| format!("{a:.1},{b:.1}")).collect();
        let _ = writeln!(s, "<polyline class=\"link\" points=\"{}\"/>", pts.join(" "));
    }
    s.push_str("</g>\n<g fill=\"#124\">\n");
    for i in 0..n {
        let (_, by) = xy[i];
        for (ps, ly) in [(&top[i], by - 4.0), (&bottom[i], by + BOX_H + FS + 1.0)] {
            for p in ps.iter().filter(|p| !p.label.is_empty()) {
                let _ = writeln!(
                    s,
                    "<text class=\"port\" x=\"{:.1}\" y=\"{ly:.1}\" font-size=\"{FS}\" textLength=\"{:.1}\" lengthAdjust=\"spacingAndGlyphs\">{}</text>",
                    p.x + 5.0,
                    text_w(&p.label, CW),
                    esc(&p.label)
                );
            }
        }
    }
    s.push_str("</g>\n");
    for (i, x) in v.iter().enumerate() {
        let (bx, by) = xy[i];
        let kind = if x.segment { "segment" } else { "node" };
        let _ = writeln!(
            s,
            "<g class=\"{kind}\" id=\"{kind}-{}\">",
            esc(&x.id.replace(':', "-"))
        );
        let (fill, stroke, rx) = if x.segment {
            ("#fff4d6", "#a80", BOX_H / 2.0)
        } else {
            ("#dbe9ff", "#246", 6.0)
        };
        let _ = writeln!(
            s,
            "<rect class=\"box\" x=\"{bx:.1}\" y=\"{by:.1}\" width=\"{:.1}\" height=\"{BOX_H}\" rx=\"{rx}\" fill=\"{fill}\" stroke=\"{stroke}\"/>",
            width[i]
        );
        let tw = text_w(&x.label, NCW);
        let _ = writeln!(
            s,
            "<text class=\"name\" x=\"{:.1}\" y=\"{:.1}\" font-size=\"{NFS}\" textLength=\"{tw:.1}\" lengthAdjust=\"spacingAndGlyphs\">{}</text>\n</g>",
            bx + (width[i] - tw) / 2.0,
            by + BOX_H / 2.0 + NFS * 0.35,
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
            std::path::Path::new("/"),
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
            std::path::Path::new("/"),
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
        assert_eq!(s.matches("<polyline").count(), 3);
    }
}
