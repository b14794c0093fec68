//! Reads one Chrome trace file and prints its event count per phase and the
//! time the read took; a manual benchmark, e.g. against `gzip -dc FILE`.
//!
//! `cargo run -p trace-chrome --example read_trace -- FILE`

use std::time::Instant;

use trace_model::{Event, Phase};

fn main() {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: read_trace FILE");
        std::process::exit(2);
    };
    let mut file = match std::fs::File::open(&path) {
        Ok(file) => file,
        Err(err) => {
            eprintln!("failed to open `{path}`: {err}");
            std::process::exit(1);
        }
    };
    let started = Instant::now();
    // Counting into an array keeps the sink's own cost out of the timing.
    let phases = [
        Phase::Complete,
        Phase::Begin,
        Phase::End,
        Phase::Instant,
        Phase::Counter,
        Phase::Metadata,
        Phase::Missing,
    ];
    let mut counts = [0u64; 8];
    let mut sink = |event: &Event<'_>| {
        let idx = phases.iter().position(|it| *it == event.phase).unwrap_or(7);
        counts[idx] += 1;
    };
    let res = trace_chrome::read(&mut file, &mut sink);
    let elapsed = started.elapsed();
    match res {
        Ok(summary) => {
            println!(
                "{} events in {:.3} s",
                summary.n_events,
                elapsed.as_secs_f64()
            );
            println!("origin_ps: {}", summary.origin_ps);
            for (idx, n) in counts.iter().enumerate().filter(|(_, n)| **n > 0) {
                let label = phases.get(idx).map_or("other".to_owned(), |it| it.label());
                println!("  {label:>6}: {n}");
            }
        }
        Err(err) => {
            eprintln!("failed to read `{path}`: {err}");
            std::process::exit(1);
        }
    }
}
