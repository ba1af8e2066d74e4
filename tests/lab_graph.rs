//! `lab graph --format svg` stays readable: read back from the SVG's own
//! geometry (boxes, labels with their declared `textLength`, lines), no
//! label overlaps another label or a box other than its own, and no line
//! crosses a box; on the lab of the Chromium test, on containerlab's
//! frr01 and on a generated 30-node lab. No engine needed: `graph` only
//! reads the file.
mod common;
use common::*;

#[derive(Debug, Clone, Copy)]
struct R {
    x0: f64,
    y0: f64,
    x1: f64,
    y1: f64,
}

impl R {
    fn overlaps(&self, o: &R) -> bool {
        self.x0 < o.x1 && o.x0 < self.x1 && self.y0 < o.y1 && o.y0 < self.y1
    }
    fn contains(&self, o: &R) -> bool {
        o.x0 >= self.x0 && o.x1 <= self.x1 && o.y0 >= self.y0 && o.y1 <= self.y1
    }
    /// Whether segment p-q passes through the inside (Liang-Barsky).
    fn cut_by(&self, p: (f64, f64), q: (f64, f64)) -> bool {
        let (dx, dy) = (q.0 - p.0, q.1 - p.1);
        let (mut t0, mut t1) = (0.0f64, 1.0f64);
        for (pp, qq) in [
            (-dx, p.0 - self.x0),
            (dx, self.x1 - p.0),
            (-dy, p.1 - self.y0),
            (dy, self.y1 - p.1),
        ] {
            if pp == 0.0 {
                if qq <= 0.0 {
                    return false;
                }
            } else {
                let r = qq / pp;
                if pp < 0.0 {
                    t0 = t0.max(r);
                } else {
                    t1 = t1.min(r);
                }
            }
        }
        t0 < t1
    }
}

fn attr(line: &str, name: &str) -> Option<String> {
    let k = format!(" {name}=\"");
    let i = line.find(&k)? + k.len();
    Some(line[i..].split('"').next()?.to_string())
}

fn num(line: &str, name: &str) -> f64 {
    attr(line, name)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no numeric {name} in {line}"))
}

struct Geometry {
    boxes: Vec<(String, R)>,
    /// (class, text, box, group id)
    texts: Vec<(String, String, R, String)>,
    lines: Vec<Vec<(f64, f64)>>,
}

fn parse(svg: &str) -> Geometry {
    let mut g = Geometry {
        boxes: vec![],
        texts: vec![],
        lines: vec![],
    };
    let mut group = String::new();
    for l in svg.lines() {
        if l.starts_with("<g ") {
            group = attr(l, "id").unwrap_or_default();
        } else if l.starts_with("<rect class=\"box\"") {
            let (x, y) = (num(l, "x"), num(l, "y"));
            g.boxes.push((
                group.clone(),
                R {
                    x0: x,
                    y0: y,
                    x1: x + num(l, "width"),
                    y1: y + num(l, "height"),
                },
            ));
        } else if l.starts_with("<text") {
            assert!(l.contains("textLength"), "a label of unknown width: {l}");
            let (x, y, fs) = (num(l, "x"), num(l, "y"), num(l, "font-size"));
            assert!(attr(l, "text-anchor").is_none(), "{l}");
            let text = l
                .split('>')
                .nth(1)
                .and_then(|t| t.split('<').next())
                .unwrap_or_default();
            g.texts.push((
                attr(l, "class").unwrap_or_default(),
                text.to_string(),
                R {
                    x0: x,
                    y0: y - 0.8 * fs,
                    x1: x + num(l, "textLength"),
                    y1: y + 0.25 * fs,
                },
                group.clone(),
            ));
        } else if l.starts_with("<polyline") {
            let pts = attr(l, "points").expect("points");
            g.lines.push(
                pts.split_whitespace()
                    .map(|p| {
                        let (a, b) = p.split_once(',').expect("x,y");
                        (a.parse().expect("x"), b.parse().expect("y"))
                    })
                    .collect(),
            );
        }
        if l == "</g>" {
            group.clear();
        }
    }
    g
}

/// Every rule; returns the counts for the caller's own checks.
fn check(svg: &str, what: &str) -> Geometry {
    let g = parse(svg);
    assert!(!g.boxes.is_empty() && !g.texts.is_empty(), "{what}: {svg}");
    for (i, a) in g.texts.iter().enumerate() {
        for b in &g.texts[i + 1..] {
            assert!(
                !a.2.overlaps(&b.2),
                "{what}: label {:?} overlaps label {:?}",
                a.1,
                b.1
            );
        }
        for (owner, bx) in &g.boxes {
            if a.0 == "name" && *owner == a.3 {
                assert!(bx.contains(&a.2), "{what}: name {:?} outside its box", a.1);
            } else {
                assert!(
                    !a.2.overlaps(bx),
                    "{what}: label {:?} overlaps the box of {owner}",
                    a.1
                );
            }
        }
    }
    for (k, l) in g.lines.iter().enumerate() {
        assert!(l.len() >= 2, "{what}: line {k}");
        for w in l.windows(2) {
            for (owner, bx) in &g.boxes {
                let inner = R {
                    x0: bx.x0 + 0.5,
                    y0: bx.y0 + 0.5,
                    x1: bx.x1 - 0.5,
                    y1: bx.y1 - 0.5,
                };
                assert!(
                    !inner.cut_by(w[0], w[1]),
                    "{what}: line {k} {:?}-{:?} crosses the box of {owner}",
                    w[0],
                    w[1]
                );
            }
        }
    }
    g
}

fn svg_of(file: &str) -> String {
    stdout(&pipework_ok(&["lab", "graph", "--format", "svg", file]))
}

#[test]
fn the_checker_catches_what_it_looks_for() {
    // A picture that breaks each rule, so the checks are known to bite.
    let good = "<svg>\n<g class=\"node\" id=\"node-a\">\n<rect class=\"box\" x=\"0\" y=\"0\" width=\"50\" height=\"20\"/>\n<text class=\"name\" x=\"5\" y=\"14\" font-size=\"10\" textLength=\"20\">a</text>\n</g>\n</svg>\n";
    check(good, "good");
    let overlap = good.replace(
        "</svg>",
        "<text class=\"port\" x=\"10\" y=\"14\" font-size=\"10\" textLength=\"20\">x</text>\n</svg>",
    );
    assert!(std::panic::catch_unwind(|| check(&overlap, "overlap")).is_err());
    let crossing = good.replace(
        "</svg>",
        "<polyline class=\"link\" points=\"-10,10 60,10\"/>\n</svg>",
    );
    assert!(std::panic::catch_unwind(|| check(&crossing, "crossing")).is_err());
    let touching = good.replace(
        "</svg>",
        "<polyline class=\"link\" points=\"10,20 10,40\"/>\n</svg>",
    );
    check(&touching, "a line leaving its box");
}

#[test]
fn the_example_labs_draw_without_overlaps() {
    let dir = std::env::temp_dir().join(uniq("pwl-graph"));
    std::fs::create_dir_all(&dir).expect("dir");
    // The lab of the Chromium test in lab_docker.rs.
    let mut toml = "name = \"pwlg\"\n".to_string();
    for n in ["core", "edge-1", "edge-2", "web", "db", "cache"] {
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
    let f = dir.join("lab.toml");
    std::fs::write(&f, toml).expect("write");
    let g = check(&svg_of(f.to_str().expect("utf-8")), "example lab");
    assert_eq!(g.boxes.len(), 7);
    assert_eq!(g.lines.len(), 6);
    let labels: Vec<&str> = g.texts.iter().map(|t| t.1.as_str()).collect();
    assert!(labels.contains(&"eth1 10.0.0.2/30"), "{labels:?}");

    // The README's example lab.
    let ex = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/lab-example.toml");
    let svg = svg_of(ex);
    check(&svg, "docs/lab-example.toml");
    // The picture in the README is this one.
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/lab-example.svg"))
        .expect("docs/lab-example.svg");
    assert_eq!(doc, svg, "regenerate docs/lab-example.svg with lab graph");

    let frr = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/frr01/frr01.clab.yml"
    );
    let g = check(&svg_of(frr), "frr01");
    assert_eq!(g.boxes.len(), 6);
    assert_eq!(g.lines.len(), 6);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_thirty_node_lab_draws_without_overlaps() {
    let dir = std::env::temp_dir().join(uniq("pwl-graph30"));
    std::fs::create_dir_all(&dir).expect("dir");
    let mut toml = "name = \"pwl30\"\n".to_string();
    for i in 0..30 {
        toml.push_str(&format!("[nodes.node-{i:02}]\nnetns = \"n{i}\"\n"));
    }
    let mut links = 0;
    let mut used = std::collections::HashMap::<usize, usize>::new();
    let mut ifname = |n: usize| {
        let k = used.entry(n).or_insert(0);
        *k += 1;
        format!("node-{n:02}:eth{k}")
    };
    // A ring, chords of a fixed pseudo-random pattern, two links between
    // one pair, and a bridge with six members.
    let mut pairs: Vec<(usize, usize)> = (0..30).map(|i| (i, (i + 1) % 30)).collect();
    let mut x = 7usize;
    for _ in 0..15 {
        x = (x * 1103515245 + 12345) % 2147483648;
        let a = x % 30;
        let b = (a + 2 + (x / 30) % 26) % 30;
        pairs.push((a, b));
    }
    pairs.push((3, 4));
    for (a, b) in pairs {
        toml.push_str(&format!(
            "[[links]]\nendpoints = [\"{}\", \"{}\"]\nips = [\"10.{a}.{b}.1/30\", \"10.{a}.{b}.2/30\"]\n",
            ifname(a),
            ifname(b)
        ));
        links += 1;
    }
    let members: Vec<String> = [0, 5, 11, 17, 23, 29]
        .iter()
        .map(|&n| format!("\"{}\"", ifname(n)))
        .collect();
    toml.push_str(&format!(
        "[[links]]\nkind = \"bridge\"\nbridge = \"br-big\"\nendpoints = [{}]\n",
        members.join(", ")
    ));
    links += members.len();
    let f = dir.join("lab30.toml");
    std::fs::write(&f, toml).expect("write");
    let svg = svg_of(f.to_str().expect("utf-8"));
    let g = check(&svg, "30 nodes");
    assert_eq!(g.boxes.len(), 31);
    assert_eq!(g.lines.len(), links);
    assert_eq!(svg.matches("class=\"node\" id=\"node-node-").count(), 30);
    let _ = std::fs::remove_dir_all(&dir);
}
