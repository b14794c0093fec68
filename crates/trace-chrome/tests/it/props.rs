//! Property tests: no input makes the reader panic, and events written by
//! serde_json read back as written.

use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use serde_json::{Value, json};
use trace_model::{ArgValue, Event, Phase};

use crate::{OneByte, gzip, jax_cpu_head};

/// The decompressed head of the real fixture, cut to its first events.
fn small_real_trace() -> Vec<u8> {
    let mut text = Vec::new();
    let gz = jax_cpu_head();
    flate2::read::GzDecoder::new(&gz[..])
        .read_to_end(&mut text)
        .unwrap();
    text.truncate(6000);
    text
}

use std::io::Read as _;

/// Reads `bytes` as plain, one byte at a time, and as gzip; only the
/// absence of a panic matters.
fn read_all_ways(bytes: &[u8]) {
    let mut sink = |_: &Event<'_>| {};
    let _ = trace_chrome::read(&mut &bytes[..], &mut sink);
    let _ = trace_chrome::read(&mut OneByte(bytes), &mut sink);
    let _ = trace_chrome::read_slice(bytes, &mut sink);
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn random_bytes_never_panic(bytes in vec(any::<u8>(), 0..300), gz_magic in any::<bool>()) {
        let mut input = if gz_magic { vec![0x1f, 0x8b] } else { Vec::new() };
        input.extend(bytes);
        read_all_ways(&input);
    }

    #[test]
    fn mutated_real_trace_never_panics(
        flips in vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
        cut in any::<prop::sample::Index>(),
        compress in any::<bool>(),
    ) {
        let mut text = small_real_trace();
        for (at, byte) in flips {
            let at = at.index(text.len());
            text[at] = byte;
        }
        text.truncate(cut.index(text.len() + 1));
        let mut sink = |_: &Event<'_>| {};
        let _ = trace_chrome::read(&mut &text[..], &mut sink);
        if compress {
            // Damage the compressed form too.
            let mut gz = gzip(&text);
            let _ = trace_chrome::read(&mut &gz[..], &mut sink);
            let at = cut.index(gz.len());
            gz[at] ^= 0xa5;
            let _ = trace_chrome::read(&mut &gz[..], &mut sink);
            gz.truncate(at);
            let _ = trace_chrome::read(&mut OneByte(&gz), &mut sink);
        }
    }

    #[test]
    fn serde_json_events_read_back(events in vec(event(), 0..20), pretty in any::<bool>()) {
        let doc = json!({ "displayTimeUnit": "ns", "traceEvents": events });
        let text = if pretty {
            serde_json::to_string_pretty(&doc).unwrap()
        } else {
            serde_json::to_string(&doc).unwrap()
        };
        let mut got = Vec::new();
        let mut sink = |event: &Event<'_>| got.push(Owned::from(event));
        let summary = trace_chrome::read(&mut text.as_bytes(), &mut sink);
        prop_assert!(summary.is_ok(), "{:?}", summary);
        prop_assert_eq!(got.len(), events.len());
        for (event, got) in events.iter().zip(&got) {
            compare(event, got)?;
        }
    }
}

/// A generated event: known members with random values, in random order of
/// presence.
fn event() -> impl Strategy<Value = Value> {
    let phase = prop::sample::select(vec!["X", "B", "E", "i", "I", "C", "M", "b", "n"]);
    let id = prop_oneof![
        any::<u64>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        "[a-z]{1,8}".prop_map(Value::from),
    ];
    let time = prop_oneof![
        (-1e11f64..1e11).prop_map(Value::from),
        (-100_000_000_000i64..100_000_000_000).prop_map(Value::from),
        (0.0f64..1e-3).prop_map(Value::from),
    ];
    (
        prop::option::of(phase),
        prop::option::of(any::<String>()),
        prop::option::of(id.clone()),
        prop::option::of(id),
        prop::option::of(time.clone()),
        prop::option::of(time),
        prop::option::of(btree_map(any::<String>(), arg_value(), 0..5)),
    )
        .prop_map(|(ph, name, pid, tid, ts, dur, args)| {
            let mut event = serde_json::Map::new();
            let mut put = |key: &str, value: Option<Value>| {
                if let Some(value) = value {
                    event.insert(key.to_owned(), value);
                }
            };
            put("ph", ph.map(Value::from));
            put("name", name.map(Value::from));
            put("pid", pid);
            put("tid", tid);
            put("ts", ts);
            put("dur", dur);
            put(
                "args",
                args.map(|it| Value::Object(it.into_iter().collect())),
            );
            Value::Object(event)
        })
}

fn arg_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        any::<String>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |it| it.is_finite())
            .prop_map(Value::from),
        any::<bool>().prop_map(Value::from),
        Just(Value::Null),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..4).prop_map(Value::Array),
            btree_map("[a-z]{0,3}", inner, 0..4)
                .prop_map(|it| Value::Object(it.into_iter().collect())),
        ]
    })
}

/// An event copied out of the reader's buffers.
#[derive(Debug)]
struct Owned {
    phase: Phase,
    name: String,
    pid: u64,
    tid: u64,
    ts: Option<i64>,
    dur: Option<i64>,
    args: Vec<(String, String)>,
}

impl From<&Event<'_>> for Owned {
    fn from(event: &Event<'_>) -> Owned {
        Owned {
            phase: event.phase,
            name: event.name.to_owned(),
            pid: event.pid,
            tid: event.tid,
            ts: event.ts,
            dur: event.dur,
            args: event
                .args
                .iter()
                .map(|it| (it.key.to_owned(), arg_text(it.value)))
                .collect(),
        }
    }
}

/// An arg value as serde_json would write it.
fn arg_text(value: ArgValue<'_>) -> String {
    match value {
        ArgValue::Str(s) => Value::from(s).to_string(),
        ArgValue::Int(v) => v.to_string(),
        ArgValue::Uint(v) => v.to_string(),
        ArgValue::Float(v) => Value::from(v).to_string(),
        ArgValue::Bool(v) => v.to_string(),
        ArgValue::Null => "null".to_owned(),
        // Raw text keeps the file's layout; compare it as written compactly.
        ArgValue::Raw(raw) => minify(raw),
    }
}

/// JSON text without the whitespace between tokens.
fn minify(raw: &str) -> String {
    let mut out = String::new();
    let (mut in_string, mut escaped) = (false, false);
    for c in raw.chars() {
        if in_string {
            (in_string, escaped) = (escaped || c != '"', !escaped && c == '\\');
        } else if c == '"' {
            in_string = true;
        } else if c.is_ascii_whitespace() {
            continue;
        }
        out.push(c);
    }
    out
}

fn compare(event: &Value, got: &Owned) -> Result<(), TestCaseError> {
    let phase = event
        .get("ph")
        .and_then(Value::as_str)
        .map_or(Phase::Missing, Phase::from_code);
    prop_assert_eq!(got.phase, phase);
    prop_assert_eq!(
        &got.name,
        event.get("name").and_then(Value::as_str).unwrap_or("")
    );
    for (key, got_id) in [("pid", got.pid), ("tid", got.tid)] {
        match event.get(key) {
            None => prop_assert_eq!(got_id, 0),
            Some(Value::String(_)) => prop_assert!(got_id >= 1 << 63),
            Some(v) => {
                let want = v.as_u64().unwrap_or_else(|| v.as_i64().unwrap_or(0) as u64);
                prop_assert_eq!(got_id, want);
            }
        }
    }
    check_time(event.get("ts"), got.ts)?;
    if phase == Phase::Complete {
        check_time(event.get("dur"), got.dur)?;
    } else {
        prop_assert_eq!(got.dur, None);
    }
    let want_args: Vec<(String, String)> = match event.get("args") {
        Some(Value::Object(args)) => args
            .iter()
            .map(|(k, v)| (k.clone(), v.to_string()))
            .collect(),
        _ => Vec::new(),
    };
    prop_assert_eq!(&got.args, &want_args);
    Ok(())
}

/// Times are exact for integers and within a picosecond of the float's
/// value otherwise (the float itself is only close to the decimal written).
fn check_time(want: Option<&Value>, got: Option<i64>) -> Result<(), TestCaseError> {
    match (want, got) {
        (None, None) => {}
        (Some(v), Some(got)) if v.is_i64() => prop_assert_eq!(got, v.as_i64().unwrap() * 1_000_000),
        (Some(v), Some(got)) => {
            let want = v.as_f64().unwrap() * 1e6;
            prop_assert!(
                (got as f64 - want).abs() <= 1.0 + want.abs() * 1e-15,
                "{} vs {}",
                got,
                want
            );
        }
        (want, got) => prop_assert!(false, "want {:?}, got {:?}", want, got),
    }
    Ok(())
}
