//! A short fuzzing pass over every reader, as the test suite runs it, and
//! checks that the budgets can fail at all.

use std::time::Duration;

use trace_fuzz::{Budget, Config, Reader, Seeds};

#[global_allocator]
static ALLOC: trace_fuzz::CountingAlloc = trace_fuzz::CountingAlloc;

fn seeds() -> Seeds {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures");
    Seeds::build(&mut |rel| std::fs::read(root.join(rel)).map_err(|e| e.to_string())).unwrap()
}

#[test]
fn every_reader_survives_a_short_pass() {
    let seeds = seeds();
    let config = Config {
        seed: 20261130,
        inputs: 400,
        threads: 2,
        budget: Budget::default(),
    };
    for reader in Reader::ALL {
        let report = trace_fuzz::fuzz(reader, &seeds, &config);
        assert!(
            report.failures.is_empty(),
            "{}: {:?}",
            reader.name(),
            report.failures
        );
        assert_eq!(report.inputs, 400);
        assert!(report.bytes > 0);
    }
}

#[test]
fn inputs_are_reproducible_and_varied() {
    let seeds = seeds();
    for reader in Reader::ALL {
        let a = trace_fuzz::make_input(reader, &seeds, 5, 17);
        assert_eq!(a, trace_fuzz::make_input(reader, &seeds, 5, 17));
        let distinct: std::collections::HashSet<Vec<u8>> = (0..64)
            .map(|i| trace_fuzz::make_input(reader, &seeds, 5, i))
            .collect();
        assert!(distinct.len() > 32, "{}: {}", reader.name(), distinct.len());
    }
}

#[test]
fn budgets_fail_an_input_that_exceeds_them() {
    let seeds = seeds();
    let input = seeds.of(Reader::XPlane)[0].clone();
    assert!(trace_fuzz::check_input(Reader::XPlane, &input, &Budget::default()).is_ok());
    let no_time = Budget {
        time_base: Duration::ZERO,
        time_per_byte: Duration::ZERO,
        ..Budget::default()
    };
    let err = trace_fuzz::check_input(Reader::XPlane, &input, &no_time).unwrap_err();
    assert!(err.starts_with("took "), "{err}");
    let no_memory = Budget {
        mem_base: 0,
        mem_per_byte: 0,
        ..Budget::default()
    };
    let err = trace_fuzz::check_input(Reader::XPlane, &input, &no_memory).unwrap_err();
    assert!(err.starts_with("held "), "{err}");
}

#[test]
fn a_hostile_manifest_fails_nothing_but_is_refused() {
    // The reader refuses a hostile run_id with a one-line error, which is
    // not a fuzzing failure.
    let seeds = seeds();
    let text = String::from_utf8(seeds.of(Reader::Manifest)[0].clone()).unwrap();
    let evil = text.replace(r#""run_id": "r1""#, r#""run_id": "../../../x\u001b[2J\n""#);
    assert_ne!(evil, text);
    assert!(trace_fuzz::check_input(Reader::Manifest, evil.as_bytes(), &Budget::default()).is_ok());
    let err = gcs_artifacts::Manifest::from_json("m", evil.as_bytes()).unwrap_err();
    assert!(!err.to_string().contains('\n'));
}
