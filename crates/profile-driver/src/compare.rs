//! A comparison as `cargo xtask compare` makes it: the candidate fetched
//! (a local folder as it is, a `gs://` run downloaded and verified into a
//! scratch folder), read, and judged against a baseline input, a named
//! baseline of its model and accelerator, or the last archived runs like
//! it ([`crate::archive::Baselines`]); then compare.md, compare.json,
//! compare.svg and compare.html written, none of them over a file that was
//! read. The statistics are `profile-compare`'s, reading a side
//! `profile_report::compare_side`'s. Which profiler run or host a side
//! uses, when it has several, is handed to the caller as a note.

use std::path::{Path, PathBuf};

use gcs_artifacts::RunKind;
use profile_compare::{Comparison, Profile, Settings};
use profile_report::Note;
use profile_report::compare_side::{load_side, write_comparison};

use crate::DriveError;
use crate::archive::{Baselines, fetch_input};

/// What the candidate is compared with.
#[derive(Clone, Debug)]
pub enum Against {
    /// A baseline input: a local folder or file, or a `gs://` run.
    Input(String),
    /// The named baseline of the candidate's model and accelerator.
    Named(String),
    /// The last `count` archived runs of `kind` like the candidate.
    History { kind: RunKind, count: usize },
}

/// One comparison.
pub struct CompareRequest<'a> {
    /// A local folder or file, or a `gs://` run.
    pub candidate: &'a str,
    pub against: Against,
    /// Where the outputs go; the candidate's own output folder when it is a
    /// local folder, else the current folder.
    pub out: Option<PathBuf>,
    pub settings: Settings,
    /// Where named baselines and the history are archived.
    pub baselines: Baselines<'a>,
}

/// A comparison made and written.
pub struct CompareOutcome {
    pub comparison: Comparison,
    pub written: Vec<PathBuf>,
}

/// Makes and writes the comparison of `request`; `note` receives each
/// side's label and the choices made reading it.
pub async fn compare(
    request: &CompareRequest<'_>,
    note: &mut dyn FnMut(&str, Note),
) -> Result<CompareOutcome, DriveError> {
    let scratch = crate::archive::scratch_dir("sglprof-compare-")?;
    let scratch = scratch.path();
    let conn = request.baselines.conn;
    let candidate_input = request.candidate;
    let candidate_dir = fetch_input(candidate_input, &scratch.join("candidate"), conn).await?;
    // Every local file read, so that no output replaces one.
    let mut read = Vec::new();
    let mut load = |dir: &Path, label: &str, read: &mut Vec<PathBuf>| {
        let mut notes = Vec::new();
        let profile: Profile = load_side(dir, label, read, &mut notes)?;
        for it in notes {
            note(label, it);
        }
        Ok::<_, DriveError>(profile)
    };
    let candidate = load(&candidate_dir, candidate_input, &mut read)?;
    let settings = &request.settings;
    let comparison = match &request.against {
        Against::History { kind, count } => {
            let dirs = (request.baselines)
                .history(*kind, *count, &candidate_dir, candidate_input, scratch)
                .await?;
            let mut read = Vec::new();
            let history = dirs
                .iter()
                .map(|(dir, url)| load(dir, url, &mut read))
                .collect::<Result<Vec<_>, _>>()?;
            profile_compare::judge_history(&history, &candidate, settings)
        }
        against => {
            let (baseline_dir, baseline_label) = match against {
                Against::Named(name) => {
                    (request.baselines)
                        .named(name, &candidate_dir, scratch)
                        .await?
                }
                Against::Input(input) => (
                    fetch_input(input, &scratch.join("baseline"), conn).await?,
                    input.clone(),
                ),
                Against::History { .. } => unreachable!("matched above"),
            };
            let baseline = load(&baseline_dir, &baseline_label, &mut read)?;
            profile_compare::compare(&baseline, &candidate, settings)
        }
    };
    let out = match &request.out {
        Some(out) => out.clone(),
        None if Path::new(candidate_input).is_dir() => {
            profile_report::outputs::default_dir(Path::new(candidate_input))
        }
        None => PathBuf::from("."),
    };
    let written = write_comparison(&comparison, &out, &read)?;
    Ok(CompareOutcome {
        comparison,
        written,
    })
}
