//! Reads an `.xplane.pb` file and aggregates its complete events by name:
//! the workload of the speed and memory comparison with other tools.
//!
//! ```text
//! cargo run --release -p trace-xplane --example read_xplane -- FILE [--names]
//! cargo run --release -p trace-xplane --example read_xplane -- FILE --write-head OUT [N]
//! cargo run --release -p trace-xplane --example read_xplane -- FILE --one-device OUT PLANE
//! ```
//!
//! `--names` prints one `count<TAB>total_ps<TAB>name` line per name, sorted
//! by name. `--write-head` writes a small copy of FILE for test fixtures: the
//! first N (default 1500) events of each line, with opaque metadata blobs
//! emptied and byte stats cut to 16 bytes. `--one-device` writes a copy of
//! FILE without the device planes (`/device:...`) other than PLANE, so that
//! a tool which sums over devices (xprof) can be asked about one.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use prost::Message;
use trace_model::{Event, Phase};
use trace_xplane::generated::{XSpace, x_stat};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(path) = args.first() else {
        eprintln!("usage: read_xplane FILE [--names | --write-head OUT [N]]");
        std::process::exit(2);
    };
    let bytes = std::fs::read(path).unwrap_or_else(|err| {
        eprintln!("cannot read {path}: {err}");
        std::process::exit(1);
    });
    if args.get(1).map(String::as_str) == Some("--one-device") {
        let (Some(out), Some(plane)) = (args.get(2), args.get(3)) else {
            eprintln!("usage: read_xplane FILE --one-device OUT PLANE");
            std::process::exit(2);
        };
        std::fs::write(out, one_device(&bytes, plane)).expect("write the copy");
        return;
    }
    if args.get(1).map(String::as_str) == Some("--write-head") {
        let out = args.get(2).expect("--write-head needs an output path");
        let keep = args
            .get(3)
            .map_or(1500, |it| it.parse().expect("N must be a number"));
        std::fs::write(out, head(&bytes, keep)).expect("write the head file");
        return;
    }

    let started = std::time::Instant::now();
    // Per name: count and total duration in picoseconds.
    let mut by_name: HashMap<String, (u64, i128), BuildHasherDefault<NameHasher>> =
        HashMap::default();
    let mut sink = |event: &Event<'_>| {
        if event.phase != Phase::Complete {
            return;
        }
        let dur = i128::from(event.dur.unwrap_or(0));
        match by_name.get_mut(event.name) {
            Some(entry) => {
                entry.0 += 1;
                entry.1 += dur;
            }
            None => {
                by_name.insert(event.name.to_owned(), (1, dur));
            }
        }
    };
    let summary = trace_xplane::read(&bytes, &mut sink).unwrap_or_else(|err| {
        eprintln!("{path}: {err}");
        std::process::exit(1);
    });
    let elapsed = started.elapsed();
    if args.get(1).map(String::as_str) == Some("--names") {
        let mut rows: Vec<_> = by_name.iter().collect();
        rows.sort();
        for (name, (count, total)) in rows {
            println!("{count}\t{total}\t{name}");
        }
        return;
    }
    let n_complete: u64 = by_name.values().map(|it| it.0).sum();
    let total: i128 = by_name.values().map(|it| it.1).sum();
    println!(
        "{} events ({} complete, {} names), total duration {:.3} ms, origin {} ps, read in {:.3} s",
        summary.n_events,
        n_complete,
        by_name.len(),
        trace_model::ps_to_ms(total),
        summary.origin_ps,
        elapsed.as_secs_f64()
    );
}

/// A fast non-cryptographic hash for the name table (FxHash's mixing step,
/// eight bytes at a time); the names come from a trusted file.
#[derive(Default)]
struct NameHasher(u64);

impl Hasher for NameHasher {
    fn write(&mut self, bytes: &[u8]) {
        const K: u64 = 0x517c_c1b7_2722_0a95;
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let word = u64::from_le_bytes(chunk.try_into().unwrap_or([0; 8]));
            self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(K);
        }
        for &byte in chunks.remainder() {
            self.0 = (self.0.rotate_left(5) ^ u64::from(byte)).wrapping_mul(K);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// A small copy of an XSpace: see the module docs.
fn head(bytes: &[u8], keep: usize) -> Vec<u8> {
    let mut space = XSpace::decode(bytes).expect("decode the XSpace");
    for plane in &mut space.planes {
        for line in &mut plane.lines {
            line.events.truncate(keep);
        }
        for meta in plane.event_metadata.values_mut() {
            meta.metadata.clear();
            for stat in &mut meta.stats {
                if let Some(x_stat::Value::BytesValue(data)) = &mut stat.value {
                    data.truncate(16);
                }
            }
        }
    }
    space.encode_to_vec()
}

/// A copy of an XSpace without the device planes other than `keep`.
fn one_device(bytes: &[u8], keep: &str) -> Vec<u8> {
    let mut space = XSpace::decode(bytes).expect("decode the XSpace");
    space
        .planes
        .retain(|plane| plane.name == keep || !plane.name.starts_with("/device:"));
    space.encode_to_vec()
}
