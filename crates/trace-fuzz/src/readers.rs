//! The readers under test, their seeds and what each checks beyond "does
//! not panic".

use std::io::{Read, Write};

use gcs_artifacts::{Manifest, RunListing, RunSummary, render_listing};
use trace_analysis::Analyzer;
use trace_model::Event;

use crate::mutate::{input_rng, mutate};

/// Every reader the fuzzer drives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reader {
    ChromeJson,
    ChromeGzip,
    XPlane,
    PySpyRaw,
    Speedscope,
    Manifest,
    RunMetadata,
}

impl Reader {
    pub const ALL: [Reader; 7] = [
        Reader::ChromeJson,
        Reader::ChromeGzip,
        Reader::XPlane,
        Reader::PySpyRaw,
        Reader::Speedscope,
        Reader::Manifest,
        Reader::RunMetadata,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Reader::ChromeJson => "chrome-json",
            Reader::ChromeGzip => "chrome-gzip",
            Reader::XPlane => "xplane",
            Reader::PySpyRaw => "pyspy-raw",
            Reader::Speedscope => "speedscope",
            Reader::Manifest => "manifest",
            Reader::RunMetadata => "run-metadata",
        }
    }

    pub fn parse(name: &str) -> Option<Reader> {
        Reader::ALL.into_iter().find(|it| it.name() == name)
    }

    /// The fixture its seeds come from, relative to `fixtures/`.
    pub fn fixture(self) -> &'static str {
        match self {
            Reader::ChromeJson | Reader::ChromeGzip => "chrome/jax-cpu-head.trace.json.gz",
            Reader::XPlane => "xplane/jax-cpu-head.xplane.pb",
            Reader::PySpyRaw => "pyspy/scheduler.raw.txt",
            Reader::Speedscope => "pyspy/scheduler.speedscope.json",
            Reader::Manifest => "artifacts/manifest.json",
            Reader::RunMetadata => "artifacts/run_metadata.json",
        }
    }

    fn index(self) -> usize {
        Reader::ALL.iter().position(|&it| it == self).unwrap_or(0)
    }

    fn dict(self) -> &'static [&'static [u8]] {
        match self {
            Reader::ChromeJson | Reader::ChromeGzip | Reader::Speedscope => JSON_DICT,
            Reader::Manifest | Reader::RunMetadata => JSON_DICT,
            Reader::PySpyRaw => RAW_DICT,
            Reader::XPlane => &[
                b"\x0a\x00",
                b"\x12\x00",
                b"\x1a\x00",
                b"\xff\xff\xff\xff\x0f",
            ],
        }
    }
}

const JSON_DICT: &[&[u8]] = &[
    b"\"ph\":\"X\",",
    b"\"ph\":\"Xx\",",
    b"\"ts\":1e308,",
    b"\"dur\":-0.0000001,",
    b"\"ts\":123456789012345678901234567890,",
    b"\"pid\":\"p\",",
    b"\"name\":\"\\ud800\",",
    b"\"args\":{\"a\":[[[[]]]]},",
    b"{}",
    b"[]",
    b"null",
    b"\"\\u001b[31m\"",
    b"\"../../x\"",
    b"\"/abs\"",
    b"\"run_id\":",
    b"\"path\":",
    b"\"samples\":",
    b"\"frames\":",
    b"1.5e-400",
    b"-",
];

const RAW_DICT: &[&[u8]] = &[
    b"process 1:\"python\";",
    b"thread (0x7f):  x;",
    b"thread (123);",
    b"f (a.py:0);",
    b"f (a.py);",
    b" 18446744073709551616\n",
    b" 0\n",
    b";;",
    b"\n",
];

/// Seed inputs per reader, derived from the fixtures.
pub struct Seeds {
    per_reader: Vec<Vec<Vec<u8>>>,
}

impl Seeds {
    /// Builds the seeds; `load` returns a fixture's bytes by its path
    /// relative to `fixtures/`.
    pub fn build(load: &mut dyn FnMut(&str) -> Result<Vec<u8>, String>) -> Result<Seeds, String> {
        let mut per_reader = Vec::new();
        for reader in Reader::ALL {
            let bytes = load(reader.fixture())?;
            let seeds = seeds_of(reader, &bytes)
                .map_err(|e| format!("fixture {}: {e}", reader.fixture()))?;
            if seeds.is_empty() {
                return Err(format!("fixture {}: no seeds", reader.fixture()));
            }
            per_reader.push(seeds);
        }
        Ok(Seeds { per_reader })
    }

    pub fn of(&self, reader: Reader) -> &[Vec<u8>] {
        &self.per_reader[reader.index()]
    }
}

/// Events per Chrome seed, and lines per py-spy raw seed: small seeds keep
/// each input fast and mutations near every kind of event.
const EVENTS_PER_SEED: usize = 12;
const LINES_PER_SEED: usize = 8;

fn seeds_of(reader: Reader, bytes: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    Ok(match reader {
        Reader::ChromeJson => chrome_seeds(bytes)?,
        Reader::ChromeGzip => chrome_seeds(bytes)?.iter().map(|it| gzip(it)).collect(),
        Reader::PySpyRaw => {
            let text = std::str::from_utf8(bytes).map_err(|e| e.to_string())?;
            let lines: Vec<&str> = text.lines().collect();
            lines
                .chunks(LINES_PER_SEED)
                .map(|group| (group.join("\n") + "\n").into_bytes())
                .collect()
        }
        Reader::XPlane | Reader::Speedscope | Reader::Manifest | Reader::RunMetadata => {
            vec![bytes.to_vec()]
        }
    })
}

/// The fixture's events in groups, each group a trace of its own with the
/// fixture's other top-level members.
fn chrome_seeds(gz: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    let mut text = Vec::new();
    flate2::read::MultiGzDecoder::new(gz)
        .read_to_end(&mut text)
        .map_err(|e| e.to_string())?;
    let mut doc: serde_json::Value = serde_json::from_slice(&text).map_err(|e| e.to_string())?;
    let events = doc
        .get_mut("traceEvents")
        .and_then(|it| it.as_array_mut())
        .map(std::mem::take)
        .ok_or("no traceEvents array")?;
    Ok(events
        .chunks(EVENTS_PER_SEED)
        .map(|group| {
            let mut seed = doc.clone();
            seed["traceEvents"] = serde_json::Value::Array(group.to_vec());
            serde_json::to_vec(&seed).unwrap_or_default()
        })
        .collect())
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let _ = enc.write_all(bytes);
    enc.finish().unwrap_or_default()
}

pub(crate) fn make_input(reader: Reader, seeds: &Seeds, seed: u64, index: u64) -> Vec<u8> {
    let mut rng = input_rng(seed, reader.index(), index);
    let list = seeds.of(reader);
    let mut data = list[rng.below(list.len())].clone();
    // One input in sixteen is a seed unchanged, so the valid path is run too.
    if rng.chance(16) {
        return data;
    }
    if reader == Reader::ChromeGzip && rng.chance(2) {
        // Mutate the text and compress it again: hostile JSON behind gzip.
        let mut text = Vec::new();
        let _ = flate2::read::MultiGzDecoder::new(&data[..]).read_to_end(&mut text);
        mutate(&mut rng, &mut text, reader.dict());
        return gzip(&text);
    }
    mutate(&mut rng, &mut data, reader.dict());
    data
}

/// Runs `reader` over `input`. `Ok` carries the size the budget scales
/// with (the decompressed text for gzip); `Err` a broken invariant.
pub(crate) fn run(reader: Reader, input: &[u8]) -> Result<u64, String> {
    match reader {
        Reader::ChromeJson | Reader::ChromeGzip => chrome(input, reader == Reader::ChromeJson),
        Reader::XPlane => {
            let mut analyzer = Analyzer::new();
            let res = trace_xplane::read(input, &mut analyzer);
            let whole = analyzer.finish();
            // Read in parts and merged, the analysis is the same one.
            let mut parts = [Analyzer::new(), Analyzer::new()];
            let in_parts = trace_xplane::read_parts(input, &mut parts);
            let [mut merged, later] = parts;
            merged.merge(later);
            let merged = merged.finish();
            if res.is_ok() != in_parts.is_ok() {
                return Err(format!("read gave {res:?}, read_parts {in_parts:?}"));
            }
            if res.is_ok() && whole.self_time_exact && merged.self_time_exact && whole != merged {
                return Err("the analysis read in parts differs from the whole one".to_owned());
            }
            error_is_one_line(in_parts)?;
            error_is_one_line(res)?;
            error_is_one_line(trace_xplane::planes(input))?;
            Ok(input.len() as u64)
        }
        Reader::PySpyRaw => {
            if let Ok(text) = std::str::from_utf8(input) {
                let profile = error_is_one_line(trace_pyspy::parse_raw(text))?;
                if let Some(profile) = profile {
                    let _ = trace_pyspy::summarize(&profile, 10);
                }
            }
            Ok(input.len() as u64)
        }
        Reader::Speedscope => {
            let profile = error_is_one_line(trace_pyspy::parse_speedscope(input))?;
            if let Some(profile) = profile {
                let _ = trace_pyspy::summarize(&profile, 10);
            }
            Ok(input.len() as u64)
        }
        Reader::Manifest => manifest(input),
        Reader::RunMetadata => run_metadata(input),
    }
}

fn chrome(input: &[u8], plain: bool) -> Result<u64, String> {
    let mut analyzer = Analyzer::new();
    let (res, work) = trace_chrome::read_with_work(&mut &input[..], &mut analyzer);
    let _ = analyzer.finish();
    let linear = 3 * work.text_bytes + (4 << 20);
    if work.bytes_scanned > linear {
        return Err(format!(
            "scanned {} bytes for {} bytes of text",
            work.bytes_scanned, work.text_bytes
        ));
    }
    let n_events = error_is_one_line(res)?.map(|it| it.n_events);
    if plain {
        let mut n = 0u64;
        let mut count = |_: &Event<'_>| n += 1;
        let again = trace_chrome::read_slice(input, &mut count)
            .ok()
            .map(|it| it.n_events);
        if again != n_events {
            return Err(format!(
                "read gives {n_events:?} events, read_slice {again:?}"
            ));
        }
    }
    Ok(work.text_bytes.max(input.len() as u64))
}

fn manifest(input: &[u8]) -> Result<u64, String> {
    let Some(m) = error_is_one_line(Manifest::from_json("gs://fuzz/m/manifest.json", input))?
    else {
        return Ok(input.len() as u64);
    };
    let listing = RunListing {
        runs: vec![RunSummary {
            url: "gs://fuzz/m/".to_owned(),
            model: m.metadata_field("model").map(str::to_owned),
            endpoint: m.metadata_field("endpoint").map(str::to_owned),
            hardware: m.metadata_field("hardware").map(str::to_owned),
            kind: m.kind.clone(),
            date: m.date.clone(),
            run_id: m.run_id.clone(),
            objects: m.objects.len(),
            total_bytes: m.total_bytes,
        }],
        ..RunListing::default()
    };
    let shown = render_listing(&listing);
    if shown.chars().any(|c| c.is_control() && c != '\n') {
        return Err("the listing prints a control character".to_owned());
    }
    if shown.lines().count() != 2 {
        return Err("one run takes more than one line of the listing".to_owned());
    }
    let root = std::path::Path::new("runs");
    if let Ok(dir) = m.default_dir(root)
        && dir.parent() != Some(root)
    {
        return Err(format!("run_id {:?} leaves the runs folder", m.run_id));
    }
    Ok(input.len() as u64)
}

fn run_metadata(input: &[u8]) -> Result<u64, String> {
    let Ok(text) = std::str::from_utf8(input) else {
        return Ok(input.len() as u64);
    };
    let Some(meta) = error_is_one_line(session_report::RunMetadata::from_json(text))? else {
        return Ok(input.len() as u64);
    };
    let again = session_report::RunMetadata::from_json(&meta.to_json())
        .map_err(|e| format!("written metadata does not read back: {e}"))?;
    if again != meta {
        return Err("metadata changes in a write and read round trip".to_owned());
    }
    Ok(input.len() as u64)
}

/// `Ok(Some)` for a success, `Ok(None)` for a one-line error.
fn error_is_one_line<T, E: std::fmt::Display>(res: Result<T, E>) -> Result<Option<T>, String> {
    match res {
        Ok(value) => Ok(Some(value)),
        Err(err) => {
            let text = err.to_string();
            if text.contains(['\n', '\r']) {
                Err(format!("error message is not one line: {text:?}"))
            } else {
                Ok(None)
            }
        }
    }
}
