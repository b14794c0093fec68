//! A whole fuzzing campaign as `cargo xtask fuzz` runs it: the seeds read
//! from a checkout's fixtures, every chosen reader fuzzed in turn until the
//! first failure, whose input is written to a folder and named by the seed
//! and index that reproduce it; or one input alone, replayed and written.
//! The only IO of this crate: the fixtures are read and the inputs written
//! here, and progress is handed to the caller one line at a time.

use std::path::{Path, PathBuf};

use crate::{Budget, Config, Reader, Seeds};

/// What to fuzz.
#[derive(Clone, Debug)]
pub struct Options {
    /// The checkout: its `fixtures/` are the seeds.
    pub root: PathBuf,
    /// Where failing (or replayed) inputs are written.
    pub out_dir: PathBuf,
    /// Inputs per reader.
    pub inputs: u64,
    pub seed: u64,
    /// Reader names; every reader when empty.
    pub readers: Vec<String>,
    pub threads: usize,
    /// Replay this one input of each reader instead of fuzzing.
    pub index: Option<u64>,
}

/// Why a campaign stopped; each is one line.
#[derive(Debug, thiserror::Error)]
pub enum CampaignError {
    #[error("unknown reader `{0}`")]
    UnknownReader(String),
    /// The fixtures could not be read or made into seeds.
    #[error("{0}")]
    Seeds(String),
    #[error("cannot {what} {}", .path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// An input failed: what, and how to reproduce it.
    #[error("{0}")]
    Failed(String),
}

/// Runs the campaign of `options`, saying how it goes through `say`.
pub fn run(options: &Options, say: &mut dyn FnMut(&str)) -> Result<(), CampaignError> {
    let readers = options
        .readers
        .iter()
        .map(|name| Reader::parse(name).ok_or_else(|| CampaignError::UnknownReader(name.clone())))
        .collect::<Result<Vec<_>, _>>()?;
    let readers = if readers.is_empty() {
        Reader::ALL.to_vec()
    } else {
        readers
    };
    let fixtures = options.root.join("fixtures");
    let seeds = Seeds::build(&mut |rel| {
        std::fs::read(fixtures.join(rel)).map_err(|e| format!("cannot read: {e}"))
    })
    .map_err(CampaignError::Seeds)?;
    let budget = Budget::default();
    let (seed, out_dir) = (options.seed, &options.out_dir);

    if let Some(index) = options.index {
        for reader in readers {
            let input = crate::make_input(reader, &seeds, seed, index);
            let path = save(out_dir, reader, seed, index, &input)?;
            match crate::check_input(reader, &input, &budget) {
                Ok(usage) => say(&format!(
                    "[fuzz] {} input {index}: ok ({} bytes, {:.2} ms CPU, peak {} bytes); written to {}",
                    reader.name(),
                    input.len(),
                    usage.cpu.as_secs_f64() * 1e3,
                    usage.peak_bytes,
                    path.display()
                )),
                Err(problem) => {
                    return Err(CampaignError::Failed(format!(
                        "fuzz: {} input {index} (seed {seed}): {problem}; written to {}",
                        reader.name(),
                        path.display()
                    )));
                }
            }
        }
        return Ok(());
    }

    let config = Config {
        seed,
        inputs: options.inputs,
        threads: options.threads,
        budget,
    };
    say(&format!(
        "[fuzz] seed {seed}, {} inputs per reader, {} threads",
        options.inputs, options.threads
    ));
    // Panics are expected to be caught and reported as failures; the default
    // hook would print each one in the middle of the progress lines.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let mut failed = None;
    for reader in readers {
        let report = crate::fuzz(reader, &seeds, &config);
        say(&format!(
            "[fuzz] {:<12} {:>9} inputs  {:>8.0} inputs/s  {:>7.1} MB  {} failures  worst: {:.1}% of time budget, {:.1}% of memory bound",
            reader.name(),
            report.inputs,
            report.inputs_per_s(),
            report.bytes as f64 / 1e6,
            report.failures.len(),
            report.worst_time_share * 100.0,
            report.worst_mem_share * 100.0
        ));
        if let Some(first) = report.failures.into_iter().next() {
            failed = Some(first);
            break;
        }
    }
    std::panic::set_hook(hook);
    if let Some(failure) = failed {
        let input = crate::make_input(failure.reader, &seeds, failure.seed, failure.index);
        let path = save(out_dir, failure.reader, failure.seed, failure.index, &input)?;
        let (name, seed, index) = (failure.reader.name(), failure.seed, failure.index);
        return Err(CampaignError::Failed(format!(
            "fuzz: {name} input {index} (seed {seed}): {}; written to {}; rerun with --reader {name} --seed {seed} --index {index}",
            failure.problem,
            path.display(),
        )));
    }
    Ok(())
}

/// Writes `input` as `<dir>/<reader>-<seed>-<index>.bin`.
fn save(
    dir: &Path,
    reader: Reader,
    seed: u64,
    index: u64,
    input: &[u8],
) -> Result<PathBuf, CampaignError> {
    let io = |what, path: &Path| {
        let path = path.to_path_buf();
        move |source| CampaignError::Io { what, path, source }
    };
    std::fs::create_dir_all(dir).map_err(io("create", dir))?;
    let path = dir.join(format!("{}-{seed}-{index}.bin", reader.name()));
    std::fs::write(&path, input).map_err(io("write", &path))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(out_dir: PathBuf) -> Options {
        Options {
            root: Path::new(env!("CARGO_MANIFEST_DIR")).join("../.."),
            out_dir,
            inputs: 20,
            seed: 2,
            readers: vec!["manifest".into()],
            threads: 1,
            index: Some(3),
        }
    }

    #[test]
    fn one_input_is_replayed_and_written() {
        let out = std::env::temp_dir().join(format!("sglprof-fuzz-{}", std::process::id()));
        let mut lines = Vec::new();
        run(&options(out.clone()), &mut |line| {
            lines.push(line.to_owned())
        })
        .unwrap();
        let written = out.join("manifest-2-3.bin");
        let expect = crate::make_input(
            Reader::Manifest,
            &Seeds::build(&mut |rel| {
                std::fs::read(options(out.clone()).root.join("fixtures").join(rel))
                    .map_err(|e| e.to_string())
            })
            .unwrap(),
            2,
            3,
        );
        assert_eq!(std::fs::read(&written).unwrap(), expect);
        assert_eq!(lines.len(), 1);
        assert!(
            lines[0].starts_with("[fuzz] manifest input 3: ok ("),
            "{lines:?}"
        );
        std::fs::remove_dir_all(&out).unwrap();
        let mut fuzzing = options(out.clone());
        fuzzing.index = None;
        lines.clear();
        run(&fuzzing, &mut |line| lines.push(line.to_owned())).unwrap();
        assert_eq!(lines[0], "[fuzz] seed 2, 20 inputs per reader, 1 threads");
        assert!(lines[1].contains("20 inputs"), "{lines:?}");
        fuzzing.readers = vec!["nope".into()];
        let err = run(&fuzzing, &mut |_| {}).unwrap_err();
        assert_eq!(err.to_string(), "unknown reader `nope`");
        assert!(!out.exists());
    }
}
