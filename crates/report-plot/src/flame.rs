//! A flamegraph drawn root at the top (an icicle): each box is a function
//! in a call path, as wide as the samples whose stack passed through it.
//!
//! Every box is a `<g>` carrying its first sample (`data-x`), its samples
//! (`data-w`) and its depth (`data-d`) in sample units, so that a page's
//! script can zoom into a box by moving and resizing the rectangles; without
//! a script the picture is complete and each box's tooltip names it.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::svg::{self, escape};

const WIDTH: f64 = 1200.0;
const ROW: f64 = 17.0;
const TOP: f64 = 28.0;
/// Boxes narrower than this share of all samples are left out.
pub const MIN_SHARE: f64 = 0.001;
/// Deeper frames than this are left out.
const MAX_DEPTH: usize = 128;

#[derive(Default)]
struct Node<'a> {
    samples: u64,
    children: BTreeMap<&'a str, Node<'a>>,
}

/// A warm colour picked from the name, the same for the same name.
fn colour(name: &str) -> String {
    // FNV-1a: stable across runs and platforms.
    let mut hash: u32 = 0x811c_9dc5;
    for byte in name.bytes() {
        hash = (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193);
    }
    let r = 205 + (hash % 50);
    let g = 80 + ((hash >> 8) % 150);
    let b = 30 + ((hash >> 16) % 55);
    format!("rgb({r},{g},{b})")
}

/// The flamegraph of `stacks` (frames root first, and a sample count), or
/// `None` without samples.
pub fn flamegraph_svg(title: &str, stacks: &[(Vec<&str>, u64)]) -> Option<String> {
    let mut root = Node::default();
    for (frames, count) in stacks {
        root.samples += count;
        let mut node = &mut root;
        for frame in frames.iter().take(MAX_DEPTH) {
            node = node.children.entry(frame).or_default();
            node.samples += count;
        }
    }
    let total = root.samples;
    if total == 0 {
        return None;
    }
    let min = ((total as f64) * MIN_SHARE).ceil() as u64;
    let mut boxes = String::new();
    let mut depth_max = 0;
    // Depth-first, children in name order, each starting where the previous
    // sibling ended.
    let mut todo: Vec<(&str, &Node, u64, usize)> = vec![("all", &root, 0, 0)];
    while let Some((name, node, start, depth)) = todo.pop() {
        if node.samples < min.max(1) {
            continue;
        }
        depth_max = depth_max.max(depth);
        let x = start as f64 / total as f64 * WIDTH;
        let w = node.samples as f64 / total as f64 * WIDTH;
        let y = TOP + ROW * depth as f64;
        let share = node.samples as f64 * 100.0 / total as f64;
        let chars = ((w - 6.0) / 7.0).floor().max(0.0) as usize;
        let text = if chars >= 3 {
            escape(&svg::shorten(name, chars))
        } else {
            String::new()
        };
        let _ = writeln!(
            boxes,
            r#"<g data-x="{start}" data-w="{}" data-d="{depth}"><title>{}
{} samples ({share:.2}%)</title><rect x="{x:.2}" y="{y}" width="{w:.2}" height="{}" fill="{}"/><text x="{:.2}" y="{}">{text}</text></g>"#,
            node.samples,
            escape(name),
            node.samples,
            ROW - 1.0,
            if depth == 0 {
                "rgb(220,220,220)".to_owned()
            } else {
                colour(name)
            },
            x + 3.0,
            y + ROW - 5.0,
        );
        let mut offset = start;
        let mut children = Vec::new();
        for (child_name, child) in &node.children {
            children.push((*child_name, child, offset, depth + 1));
            offset += child.samples;
        }
        // Reversed so that the first child is drawn first.
        todo.extend(children.into_iter().rev());
    }
    let height = TOP + ROW * (depth_max + 1) as f64 + 8.0;
    let mut out = String::new();
    svg::open(&mut out, "flamegraph", WIDTH, height);
    let _ = writeln!(
        out,
        r#"<text x="4" y="18" font-size="14">{}</text>"#,
        escape(title)
    );
    let _ = writeln!(
        out,
        r#"<g class="boxes" data-total="{total}" font-size="11">"#
    );
    out.push_str(&boxes);
    out.push_str("</g>\n");
    svg::close(&mut out);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boxes_nest_and_add_up() {
        let stacks = vec![
            (vec!["main", "a", "x"], 3),
            (vec!["main", "b"], 1),
            (vec!["main", "a"], 4),
        ];
        let svg = flamegraph_svg("t", &stacks).unwrap();
        assert!(svg.contains(r#"data-x="0" data-w="8" data-d="0""#), "{svg}");
        assert!(svg.contains(r#"data-x="0" data-w="8" data-d="1""#));
        assert!(svg.contains(r#"data-x="0" data-w="7" data-d="2"><title>a"#));
        assert!(svg.contains(r#"data-x="7" data-w="1" data-d="2"><title>b"#));
        assert!(svg.contains(r#"data-x="0" data-w="3" data-d="3"><title>x"#));
        assert!(flamegraph_svg("t", &[]).is_none());
        assert_eq!(colour("a"), colour("a"));
    }
}
