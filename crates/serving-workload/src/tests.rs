//! The crate against `bench_serving` itself: `fixtures/serving/reference.json`
//! holds what NumPy, CPython and `sgl_jax.bench_serving` printed for the
//! same seeds and the same tokenizer (see `fixtures/serving/README.md`).

use serde_json::Value;

use crate::arrivals::{Arrivals, due_times};
use crate::dataset::{self, Prompt, Tokenizer};
use crate::pyrand::{NumpyRandom, PyRandom};

const REFERENCE: &str = include_str!("../../../fixtures/serving/reference.json");
const TOKENIZER: &str = include_str!("../../../fixtures/serving/tokenizer.json");
const SHAREGPT: &str = include_str!("../../../fixtures/serving/sharegpt-small.json");

struct Tiny(tokenizers::Tokenizer);

impl Tokenizer for Tiny {
    fn encode(&self, text: &str) -> Result<Vec<u32>, String> {
        self.0
            .encode_fast(text, true)
            .map(|e| e.get_ids().to_vec())
            .map_err(|e| e.to_string())
    }
    fn decode(&self, ids: &[u32]) -> Result<String, String> {
        self.0.decode(ids, false).map_err(|e| e.to_string())
    }
    fn vocab_size(&self) -> u32 {
        self.0.get_vocab_size(false) as u32
    }
}

fn tiny() -> Tiny {
    Tiny(tokenizers::Tokenizer::from_bytes(TOKENIZER.as_bytes()).unwrap())
}

fn reference() -> Value {
    serde_json::from_str(REFERENCE).unwrap()
}

fn ints(value: &Value) -> Vec<i64> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_i64().unwrap())
        .collect()
}

fn floats(value: &Value) -> Vec<f64> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect()
}

#[test]
fn numpy_streams_match_numpy() {
    let want = &reference()["numpy_seed7"];
    let mut rng = NumpyRandom::new(7);
    assert_eq!(rng.randint(64, 129, 20), ints(&want["randint_64_129"]));
    assert_eq!(rng.randint(0, 2032, 20), ints(&want["randint_0_2032"]));
    let got: Vec<f64> = (0..10).map(|_| rng.exponential(1.0 / 16.0)).collect();
    assert_eq!(got, floats(&want["exponential_0.0625"]));
    let got: Vec<f64> = (0..10).map(|_| rng.gamma(0.5, 1.0 / 8.0)).collect();
    assert_eq!(got, floats(&want["gamma_0.5"]));
    let got: Vec<f64> = (0..10).map(|_| rng.gamma(3.0, 1.0 / 48.0)).collect();
    assert_eq!(got, floats(&want["gamma_3"]));
    let got: Vec<f64> = (0..5).map(|_| rng.random()).collect();
    assert_eq!(got, floats(&want["random"]));
}

#[test]
fn python_streams_match_cpython() {
    let want = &reference()["python_seed7"];
    let mut rng = PyRandom::new(7);
    let mut items: Vec<i64> = (0..30).collect();
    rng.shuffle(&mut items);
    let got: Vec<f64> = (0..5).map(|_| rng.random()).collect();
    // Python drew the shuffle first, then these.
    assert_eq!(items, ints(&want["shuffle_30"]));
    assert_eq!(got, floats(&want["random"]));
    let population: Vec<i64> = (0..2032).collect();
    assert_eq!(rng.choices(&population, 20), ints(&want["choices_2032_20"]));
    let mut big = PyRandom::new((1 << 40) + 5);
    let got: Vec<f64> = (0..3).map(|_| big.random()).collect();
    assert_eq!(
        got,
        floats(&reference()["python_seed_2_40_plus_5"]["random"])
    );
}

#[test]
fn random_is_bench_serving_random_ids() {
    let want = reference();
    let mut rng = NumpyRandom::new(7);
    let params = dataset::RandomParams {
        num_prompts: 8,
        input_len: 128,
        output_len: 32,
        range_ratio: 0.5,
    };
    let rows = dataset::random(&tiny(), &params, &mut rng).unwrap();
    let want_rows = want["random_ids_seed7"].as_array().unwrap();
    assert_eq!(rows.len(), want_rows.len());
    for (row, want) in rows.iter().zip(want_rows) {
        assert_eq!(
            row.prompt,
            Prompt::Text(want["prompt"].as_str().unwrap().to_owned())
        );
        assert_eq!(row.input_len as i64, want["prompt_len"].as_i64().unwrap());
        assert_eq!(row.output_len as i64, want["output_len"].as_i64().unwrap());
    }
    // The gaps continue the same NumPy stream.
    let due = due_times(
        9,
        &Arrivals {
            rate: Some(16.0),
            burstiness: 1.0,
        },
        &mut rng,
    );
    let gaps: Vec<f64> = due.windows(2).map(|w| w[1] - w[0]).collect();
    let want_gaps = floats(&want["random_ids_seed7_gaps_16"]);
    for (got, want) in gaps.iter().zip(&want_gaps) {
        assert!((got - want).abs() < 1e-12, "{got} {want}");
    }
}

#[test]
fn sharegpt_is_bench_serving_sharegpt() {
    let want = reference();
    let mut rng = PyRandom::new(7);
    let rows = dataset::sharegpt(SHAREGPT, &tiny(), 10, None, &mut rng).unwrap();
    let want_rows = want["sharegpt_seed7"].as_array().unwrap();
    assert_eq!(rows.len(), want_rows.len());
    for (row, want) in rows.iter().zip(want_rows) {
        assert_eq!(
            row.prompt,
            Prompt::Text(want["prompt"].as_str().unwrap().to_owned())
        );
        assert_eq!(row.input_len as i64, want["prompt_len"].as_i64().unwrap());
        assert_eq!(row.output_len as i64, want["output_len"].as_i64().unwrap());
    }
    let err = dataset::sharegpt(SHAREGPT, &tiny(), 1000, None, &mut PyRandom::new(7)).unwrap_err();
    assert!(
        err.to_string().contains("fewer than the 1000 asked for"),
        "{err}"
    );
    let err = dataset::sharegpt("[{", &tiny(), 1, None, &mut rng).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("the ShareGPT file is not valid JSON: "),
        "{err}"
    );
}

#[test]
fn a_saved_dataset_replays_with_the_same_lengths() {
    let tok = tiny();
    let rows = dataset::random(
        &tok,
        &dataset::RandomParams {
            num_prompts: 20,
            input_len: 64,
            output_len: 40,
            range_ratio: 0.2,
        },
        &mut NumpyRandom::new(3),
    )
    .unwrap();
    let saved = dataset::to_sharegpt(&rows, &tok).unwrap();
    // Read back in file order: a ShareGPT replay sends the same prompts
    // and asks for the same output lengths.
    let mut back = dataset::sharegpt(&saved, &tok, 20, None, &mut PyRandom::new(1)).unwrap();
    let mut want: Vec<(Prompt, u32)> = rows
        .iter()
        .map(|r| (r.prompt.clone(), r.output_len))
        .collect();
    let mut got: Vec<(Prompt, u32)> = back.drain(..).map(|r| (r.prompt, r.output_len)).collect();
    want.sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
    got.sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
    // Rows with an output below 2 tokens are skipped on replay, as
    // bench_serving skips them.
    want.retain(|(_, n)| *n >= 2);
    assert_eq!(got, want);
}

#[test]
fn jsonl_rows_and_their_errors() {
    let tok = tiny();
    let text = "{\"prompt\": \"hello world\", \"output_len\": 8}\n\n{\"input_ids\": [5, 6, 7], \"output_len\": 4}\n";
    let rows = dataset::jsonl(text, &tok, None).unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[1].prompt, Prompt::Ids(vec![5, 6, 7]));
    assert_eq!(rows[1].input_len, 3);
    let line = |text: &str| dataset::jsonl(text, &tok, None).unwrap_err().to_string();
    assert!(line("{\"prompt\": \"a\"}").starts_with("line 1: missing field `output_len`"));
    assert!(line("\n{oops").starts_with("line 2: "));
    assert_eq!(
        line("{\"prompt\": \"a\", \"input_ids\": [1], \"output_len\": 3}"),
        "line 1: expected exactly one of \"prompt\" and \"input_ids\""
    );
    let err = dataset::jsonl(text, &tok, Some(5)).unwrap_err().to_string();
    assert_eq!(
        err,
        "the dataset has 2 usable rows, fewer than the 5 asked for"
    );
}

#[test]
fn shared_prefix_groups_share_their_system_prompt() {
    let tok = tiny();
    let params = dataset::SharedPrefixParams {
        num_prompts: 12,
        groups: 3,
        prefix_len: 40,
        question_len: 8,
        output_len: 16,
    };
    let rows = dataset::shared_prefix(&tok, &params, &mut PyRandom::new(5)).unwrap();
    let again = dataset::shared_prefix(&tok, &params, &mut PyRandom::new(5)).unwrap();
    assert_eq!(rows, again, "the same seed gives the same rows");
    let prefixes: std::collections::BTreeSet<String> = rows
        .iter()
        .map(|r| match &r.prompt {
            Prompt::Text(t) => t.split("\n\n").next().unwrap().to_owned(),
            Prompt::Ids(_) => unreachable!(),
        })
        .collect();
    assert_eq!(prefixes.len(), 3);
}

#[test]
fn the_itl_count_is_the_number_of_itl_values() {
    use crate::metrics::{distribution, itl_count, itls_ms};
    use crate::record::parse_record_line;
    // A chunk that adds no token, one that adds three, a count that goes
    // back (a server's glitch), and one token at a time.
    let line = r#"{"schema": "sglprof.request/1", "id": 0, "row": 0, "slot": 0, "due_ns": 0, "start_ns": 0, "end_ns": 9000000, "output_len": 8, "chunks": [[100, 1], [150, 1], [400, 4], [500, 2], [700, 3], [900, 4]]}"#;
    let record = parse_record_line(line, 1).unwrap().unwrap();
    let itls = itls_ms(&record);
    assert_eq!(itl_count(&record), itls.len());
    assert_eq!(itls.len(), 5);
    // Sorted in place, equal values and all: the same figures as a
    // stable sort of the same values.
    let values = vec![0.2, 0.1, 0.2, f64::NAN, 0.05, 0.2, 0.1];
    let dist = distribution(values, &[50.0, 90.0]).unwrap();
    assert_eq!((dist.count, dist.min, dist.max), (6, 0.05, 0.2));
    assert_eq!(dist.median, 0.15000000000000002);
}

/// The distribution of counted values is the distribution of the list,
/// bit for bit, on values like ITLs (gaps in microseconds over tokens).
#[test]
fn counted_values_give_the_same_distribution() {
    use crate::metrics::{distribution, distribution_of_counts};
    use std::collections::BTreeMap;
    let mut rng = NumpyRandom::new(11);
    let mut values = Vec::new();
    for _ in 0..20_000 {
        let gap_us = (rng.random() * 400.0) as u32;
        let added = 1 + (rng.random() * 3.0) as u32;
        values.push(gap_us as f64 / 1000.0 / added as f64);
    }
    values.push(f64::INFINITY);
    for p in [&[50.0, 90.0, 99.0][..], &[0.1, 33.3, 99.99]] {
        let mut counts: BTreeMap<u64, u64> = BTreeMap::new();
        // Positive values order as their bits do.
        for v in &values {
            *counts.entry(v.to_bits()).or_default() += 1;
        }
        let counted: BTreeMap<Bits, u64> = counts.into_iter().map(|(b, c)| (Bits(b), c)).collect();
        let a = distribution(values.clone(), p).unwrap();
        let b = distribution_of_counts(&counted, p).unwrap();
        assert_eq!(format!("{a:?}"), format!("{b:?}"));
        assert_eq!(a.count, 20_000);
    }
    let one = BTreeMap::from([(Bits(2.5f64.to_bits()), 1)]);
    let d = distribution_of_counts(&one, &[90.0]).unwrap();
    assert_eq!((d.median, d.min, d.max, d.std), (2.5, 2.5, 2.5, 0.0));
    assert!(distribution_of_counts(&BTreeMap::<Bits, u64>::new(), &[50.0]).is_none());
}

/// A positive `f64` by its bits.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Bits(u64);

impl From<Bits> for f64 {
    fn from(value: Bits) -> f64 {
        f64::from_bits(value.0)
    }
}
