//! Sweeps: a grid of flag values, one session per combination (one after
//! another on one local server, or one index of a Kubernetes Indexed Job).
//!
//! `--sweep concurrency=1,4,16` is one axis. A sweep file has one axis per
//! line in the same form (`#` starts a comment); several axes give their
//! cartesian product, the first axis varying slowest. [`grid`] reads a
//! plan's axes and refuses flags a sweep may not vary ([`SWEEPABLE`]);
//! whether a long name is a flag at all, and whether a value is valid, is
//! the command line's to check: it knows the flags, and parses each
//! variant's [`variant_words`] again.

use std::path::PathBuf;

use sha2::{Digest, Sha256};

use crate::plan::{HostPlan, Plan};

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

/// Flags a sweep may vary: the session's. Host, output, archive and secret
/// flags are the same for every variant.
pub const SWEEPABLE: &[&str] = &[
    "endpoint",
    "dataset",
    "num-prompts",
    "seed",
    "input-len",
    "output-len",
    "range-ratio",
    "prefix-groups",
    "prefix-len",
    "request-rate",
    "burstiness",
    "max-concurrency",
    "requests",
    "concurrency",
    "max-new-tokens",
    "prompt",
    "warmup",
    "num-steps",
    "host-tracer-level",
    "python-tracer-level",
    "start-step",
];

/// Flags a sweep may vary only where every variant has a server of its
/// own (one pod each, with --k8s).
pub const SWEEPABLE_PER_SERVER: &[&str] = &["sglang-jax-version", "model-path"];

/// A plan whose sweep cannot be run, in one line.
#[derive(Debug, thiserror::Error)]
pub enum GridError {
    #[error("cannot read {}", .path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}", .path.display())]
    File {
        path: PathBuf,
        #[source]
        source: SweepError,
    },
    #[error(transparent)]
    Axis(#[from] SweepError),
    #[error("sweep axis {0} is given twice")]
    Twice(String),
    #[error("--sweep {flag}: {why}")]
    Refused { flag: String, why: &'static str },
    #[error("--sweep is not supported with --tpu: run the sweep with --k8s, or locally")]
    Tpu,
}

/// The grid of `plan`'s sweep (its sweep file's axes, then its `--sweep`
/// ones); empty without a sweep. `is_flag` says whether a long name is a
/// flag of the command line.
pub fn grid(plan: &Plan, is_flag: impl Fn(&str) -> bool) -> Result<Vec<Variant>, GridError> {
    let mut axes = Vec::new();
    if let Some(path) = &plan.sweep_file {
        let text = std::fs::read_to_string(path).map_err(|source| GridError::Read {
            path: path.clone(),
            source,
        })?;
        axes = parse_sweep_file(&text).map_err(|source| GridError::File {
            path: path.clone(),
            source,
        })?;
    }
    for axis in &plan.sweep {
        let axis = parse_axis(axis)?;
        if axes.iter().any(|it: &Axis| it.flag == axis.flag) {
            return Err(GridError::Twice(axis.flag));
        }
        axes.push(axis);
    }
    if axes.is_empty() {
        return Ok(Vec::new());
    }
    let per_server = matches!(plan.host, HostPlan::K8s(_));
    for axis in &axes {
        let flag = axis.flag.as_str();
        let refuse = |why| {
            Err(GridError::Refused {
                flag: flag.to_owned(),
                why,
            })
        };
        if !is_flag(flag) {
            return refuse("not a flag of `cargo xtask profile`");
        }
        let may_vary =
            SWEEPABLE.contains(&flag) || (per_server && SWEEPABLE_PER_SERVER.contains(&flag));
        if !may_vary {
            return refuse(if SWEEPABLE_PER_SERVER.contains(&flag) {
                "the variants share one server here; sweep it with --k8s, where each has its own"
            } else {
                "it is the same for every variant (only session flags may vary)"
            });
        }
    }
    if matches!(plan.host, HostPlan::Tpu(_)) {
        return Err(GridError::Tpu);
    }
    Ok(variants(&axes)?)
}

/// The argument list of one variant: `plan`'s own, without its sweep, and
/// `--flag=value` for each swept flag (a flag given twice takes its last
/// value).
pub fn variant_words(plan: &Plan, variant: &Variant) -> Vec<String> {
    let mut base = plan.clone();
    base.sweep.clear();
    base.sweep_file = None;
    let mut words = base.to_args();
    for (flag, value) in variant {
        words.push(format!("--{flag}={value}"));
    }
    words
}

/// A variant as `flag=value` words, for messages.
pub fn variant_label(variant: &Variant) -> String {
    let values: Vec<String> = variant.iter().map(|(f, v)| format!("{f}={v}")).collect();
    values.join(" ")
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

    #[test]
    fn a_grid_varies_session_flags_only() {
        use crate::plan::{K8sOptions, LocalOptions};
        let is_flag = |flag: &str| flag != "nonsense";
        let mut plan = Plan::new(HostPlan::Local(LocalOptions::default()));
        assert!(grid(&plan, is_flag).unwrap().is_empty());
        plan.sweep = vec!["concurrency=1,4".into(), "requests=6,12".into()];
        let got = grid(&plan, is_flag).unwrap();
        assert_eq!(got.len(), 4);
        let words = variant_words(&plan, &got[1]);
        assert!(
            !words.iter().any(|it| it.starts_with("--sweep")),
            "{words:?}"
        );
        assert!(words.ends_with(&["--concurrency=1".into(), "--requests=12".into()]));
        assert_eq!(variant_label(&got[1]), "concurrency=1 requests=12");
        let refused = |sweep: &str, plan: &mut Plan| {
            plan.sweep = vec![sweep.to_owned()];
            grid(plan, is_flag).unwrap_err().to_string()
        };
        assert_eq!(
            refused("nonsense=1", &mut plan),
            "--sweep nonsense: not a flag of `cargo xtask profile`"
        );
        assert!(refused("out=a,b", &mut plan).contains("same for every variant"));
        assert!(refused("model-path=a,b", &mut plan).contains("share one server"));
        plan.sweep = vec!["concurrency=1".into(), "concurrency=2".into()];
        assert_eq!(
            grid(&plan, is_flag).unwrap_err().to_string(),
            "sweep axis concurrency is given twice"
        );
        let mut k8s = Plan::new(HostPlan::K8s(K8sOptions::default()));
        k8s.sweep = vec!["model-path=a,b".into()];
        assert_eq!(grid(&k8s, is_flag).unwrap().len(), 2);
    }
}
