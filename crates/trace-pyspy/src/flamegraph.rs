//! The flamegraph SVG of a profile, drawn by `inferno` from collapsed
//! stacks.
//!
//! Every stack becomes one collapsed line, root first: the sampled
//! process (`<role> pid <pid>`), the thread when known, then the Python
//! frames as `name (file)`. Lines are left out of frame names so that one
//! function is one box however many lines of it were sampled, as in the
//! report's tables.

use crate::{Error, Profile, Role};

/// The collapsed form (`a;b;c 42`) of every stack, sorted.
pub fn collapsed_lines(profile: &Profile) -> Vec<String> {
    let mut lines: Vec<String> = profile
        .stacks
        .iter()
        .filter(|stack| stack.count > 0)
        .map(|stack| {
            let mut parts: Vec<String> = Vec::with_capacity(stack.frames.len() + 2);
            parts.push(match &stack.process {
                Some(process) => format!(
                    "{} pid {}",
                    Role::of(process.name.as_deref()).label(),
                    process.pid
                ),
                None => "unknown process".to_owned(),
            });
            if let Some(thread) = &stack.thread {
                parts.push(match &thread.name {
                    Some(name) => format!("thread {} {name}", thread.id),
                    None => format!("thread {}", thread.id),
                });
            }
            for frame in &stack.frames {
                parts.push(match &frame.file {
                    Some(file) => format!("{} ({file})", frame.name),
                    None => frame.name.to_string(),
                });
            }
            // `;` separates frames and the last space the count.
            let parts: Vec<String> = parts.iter().map(|it| it.replace(';', ",")).collect();
            format!("{} {}", parts.join(";"), stack.count)
        })
        .collect();
    lines.sort();
    lines
}

/// The flamegraph of `profile` as an SVG document.
pub fn render_flamegraph(profile: &Profile, title: &str) -> Result<String, Error> {
    let lines = collapsed_lines(profile);
    if lines.is_empty() {
        return Err(Error::Empty);
    }
    let mut options = inferno::flamegraph::Options::default();
    options.title = title.to_owned();
    options.count_name = "samples".to_owned();
    // Deterministic colours: the same profile draws the same file.
    options.hash = true;
    let mut svg = Vec::new();
    inferno::flamegraph::from_lines(&mut options, lines.iter().map(String::as_str), &mut svg)
        .map_err(|e| Error::Flamegraph(e.to_string()))?;
    String::from_utf8(svg).map_err(|e| Error::Flamegraph(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse_raw;

    #[test]
    fn collapsed_lines_keep_every_sample() {
        let text = include_str!("../../../fixtures/pyspy/scheduler.raw.txt");
        let profile = parse_raw(text).unwrap();
        let lines = collapsed_lines(&profile);
        let total: u64 = lines
            .iter()
            .map(|line| line.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
            .sum();
        let expected: u64 = text
            .lines()
            .map(|line| line.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
            .sum();
        assert_eq!(total, expected);
        assert!(
            lines
                .iter()
                .any(|it| it.starts_with("scheduler pid 18887;"))
        );
        assert!(
            lines
                .iter()
                .any(|it| it.starts_with("detokenizer pid 18888;"))
        );
        assert!(
            lines
                .iter()
                .any(|it| it.starts_with("HTTP server and tokenizer pid 18883;"))
        );
        // No line numbers in boxes.
        assert!(lines.iter().all(|it| !it.contains(".py:")));
    }

    #[test]
    fn the_svg_has_a_box_per_process() {
        let text = include_str!("../../../fixtures/pyspy/scheduler.raw.txt");
        let profile = parse_raw(text).unwrap();
        let svg = render_flamegraph(&profile, "score session").unwrap();
        assert!(svg.starts_with("<?xml"));
        assert!(svg.contains("score session"));
        for role in ["scheduler pid 18887", "detokenizer pid 18888"] {
            assert!(svg.contains(role), "{role} missing");
        }
        assert_eq!(svg, render_flamegraph(&profile, "score session").unwrap());
    }

    #[test]
    fn an_empty_profile_has_no_flamegraph() {
        assert_eq!(
            render_flamegraph(&Profile::default(), "t"),
            Err(Error::Empty)
        );
    }
}
