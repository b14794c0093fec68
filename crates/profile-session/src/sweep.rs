//! Sweeps: a grid of flag values, one session per combination (one after
//! another on one local server, or one index of a Kubernetes Indexed Job).
//!
//! `--sweep concurrency=1,4,16` is one axis. A sweep file has one axis per
//! line in the same form (`#` starts a comment); several axes give their
//! cartesian product, the first axis varying slowest. Which flags may be
//! swept, and whether a value is valid, is the command line's to check: it
//! knows the flags.

use sha2::{Digest, Sha256};

/// A sweep that cannot be run.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid sweep {0}")]
pub struct SweepError(pub String);

/// One axis: a `profile` flag (without `--`) and its values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Axis {
    pub flag: String,
    pub values: Vec<String>,
}

/// One point of the grid: `(flag, value)` per axis, in axis order.
pub type Variant = Vec<(String, String)>;

/// Parses `flag=v1,v2,...`.
pub fn parse_axis(text: &str) -> Result<Axis, SweepError> {
    let bad = |why: &str| SweepError(format!("{text:?}: {why}"));
    let (flag, values) = text
        .split_once('=')
        .ok_or_else(|| bad("expected flag=value,value,..."))?;
    let flag = flag.trim().trim_start_matches("--");
    if flag.is_empty()
        || !flag
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        return Err(bad("the flag must be a profile flag such as concurrency"));
    }
    let values: Vec<String> = values
        .split(',')
        .map(|it| it.trim().to_owned())
        .filter(|it| !it.is_empty())
        .collect();
    if values.is_empty() {
        return Err(bad("no values"));
    }
    Ok(Axis {
        flag: flag.to_owned(),
        values,
    })
}

/// Parses a sweep file: one axis per line, blank lines and `#` comments
/// ignored.
pub fn parse_sweep_file(text: &str) -> Result<Vec<Axis>, SweepError> {
    let mut axes = Vec::new();
    for (idx, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let axis = parse_axis(line).map_err(|e| SweepError(format!("line {}: {e}", idx + 1)))?;
        axes.push(axis);
    }
    if axes.is_empty() {
        return Err(SweepError("the sweep file has no axis".into()));
    }
    let mut flags: Vec<&str> = axes.iter().map(|it| it.flag.as_str()).collect();
    flags.sort_unstable();
    if let Some(pair) = flags.windows(2).find(|pair| pair[0] == pair[1]) {
        return Err(SweepError(format!("axis {} appears twice", pair[0])));
    }
    Ok(axes)
}

/// The largest grid a sweep may have (one pod per point).
pub const MAX_VARIANTS: usize = 256;

/// Every combination, the first axis varying slowest.
pub fn variants(axes: &[Axis]) -> Result<Vec<Variant>, SweepError> {
    let mut out: Vec<Variant> = vec![Vec::new()];
    for axis in axes {
        let mut next = Vec::with_capacity(out.len() * axis.values.len());
        for prefix in &out {
            for value in &axis.values {
                let mut variant = prefix.clone();
                variant.push((axis.flag.clone(), value.clone()));
                next.push(variant);
            }
        }
        if next.len() > MAX_VARIANTS {
            return Err(SweepError(format!(
                "{} variants or more; at most {MAX_VARIANTS}",
                next.len()
            )));
        }
        out = next;
    }
    Ok(out)
}

/// The longest slug [`variant_slug`] makes: a run folder named
/// `<run-id>-<slug>` stays well under the 255 bytes a file name may have.
pub const MAX_SLUG: usize = 96;

/// A short name of a variant for folder names: `concurrency-4_requests-12`.
/// Only ASCII letters, digits, `.` and `-` survive; a longer slug keeps its
/// start and ends with a hash of the whole variant, so distinct variants
/// keep distinct names.
pub fn variant_slug(variant: &Variant) -> String {
    let slug = variant
        .iter()
        .map(|(flag, value)| {
            let value: String = value
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '.' {
                        c
                    } else {
                        '-'
                    }
                })
                .collect();
            format!("{flag}-{value}")
        })
        .collect::<Vec<_>>()
        .join("_");
    if slug.len() <= MAX_SLUG {
        return slug;
    }
    let mut hasher = Sha256::new();
    for (flag, value) in variant {
        hasher.update(flag.as_bytes());
        hasher.update([0]);
        hasher.update(value.as_bytes());
        hasher.update([0]);
    }
    let hash: String = hasher.finalize()[..6]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    // The slug is ASCII, so any byte is a character boundary.
    format!("{}-{hash}", &slug[..MAX_SLUG - hash.len() - 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_axis() {
        let axis = parse_axis("concurrency=1,4,16").unwrap();
        assert_eq!(axis.flag, "concurrency");
        assert_eq!(axis.values, ["1", "4", "16"]);
        let grid = variants(&[axis]).unwrap();
        assert_eq!(grid.len(), 3);
        assert_eq!(variant_slug(&grid[2]), "concurrency-16");
    }

    #[test]
    fn a_file_is_a_product() {
        let axes =
            parse_sweep_file("# grid\nconcurrency=1,4\n\n--requests = 12, 24 # two\n").unwrap();
        let grid = variants(&axes).unwrap();
        let slugs: Vec<String> = grid.iter().map(variant_slug).collect();
        assert_eq!(
            slugs,
            [
                "concurrency-1_requests-12",
                "concurrency-1_requests-24",
                "concurrency-4_requests-12",
                "concurrency-4_requests-24"
            ]
        );
    }

    #[test]
    fn bad_sweeps_say_why() {
        assert!(
            parse_axis("concurrency")
                .unwrap_err()
                .to_string()
                .contains("expected flag=")
        );
        assert!(
            parse_axis("concurrency=")
                .unwrap_err()
                .to_string()
                .contains("no values")
        );
        assert!(parse_axis("Con currency=1").is_err());
        let err = parse_sweep_file("a=1\na=2\n").unwrap_err().to_string();
        assert!(err.contains("appears twice"), "{err}");
        let err = parse_sweep_file("ok=1\nbroken\n").unwrap_err().to_string();
        assert!(err.contains("line 2"), "{err}");
        let axes = vec![parse_axis(&format!("a={}", vec!["1"; 20].join(","))).unwrap(); 2];
        assert!(variants(&axes).unwrap_err().to_string().contains("at most"));
    }

    #[test]
    fn long_values_make_short_distinct_names() {
        let long = |tail: &str| vec![("prompt".to_owned(), format!("{}{tail}", "x".repeat(400)))];
        let (a, b) = (variant_slug(&long("a")), variant_slug(&long("b")));
        assert_eq!(a.len(), MAX_SLUG);
        assert_ne!(a, b);
        assert!(a.starts_with("prompt-xxxx"), "{a}");
        let multibyte = vec![("prompt".to_owned(), "é".repeat(300))];
        assert!(variant_slug(&multibyte).len() <= MAX_SLUG);
    }
}
