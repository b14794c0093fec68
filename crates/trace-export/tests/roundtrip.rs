//! What `ChromeJson` and `Exporter` write reads back through `trace-chrome`
//! as the same events.

use std::cell::RefCell;
use std::rc::Rc;

use proptest::prelude::*;
use trace_export::{ChromeJson, Exporter, Selection};
use trace_model::{Arg, ArgValue, Event, EventSink, Phase};

/// An owned copy of an event, to compare.
#[derive(Clone, Debug, PartialEq)]
struct Owned {
    phase: Phase,
    name: String,
    pid: u64,
    tid: u64,
    ts: Option<i64>,
    dur: Option<i64>,
    args: Vec<(String, String)>,
}

fn own(event: &Event<'_>) -> Owned {
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
            .map(|arg| {
                // JSON has one kind of integer: a reader gives `Int` for
                // what fits, whatever it was written from.
                let value = match arg.value {
                    ArgValue::Uint(v) if i64::try_from(v).is_ok() => ArgValue::Int(v as i64),
                    other => other,
                };
                (arg.key.to_owned(), format!("{value:?}"))
            })
            .collect(),
    }
}

fn read_back(bytes: &[u8]) -> Vec<Owned> {
    let mut got = Vec::new();
    let mut sink = |event: &Event<'_>| got.push(own(event));
    trace_chrome::read_slice(bytes, &mut sink).expect("valid JSON");
    got
}

fn meta<'a>(name: &'a str, pid: u64, tid: u64, args: &'a [Arg<'a>]) -> Event<'a> {
    Event {
        phase: Phase::Metadata,
        name,
        cat: "",
        pid,
        tid,
        ts: None,
        dur: None,
        args,
    }
}

proptest! {
    #[test]
    fn complete_events_read_back(
        events in prop::collection::vec(
            (".{0,12}", 0u64..5, 0u64..5, -(1i64 << 50)..(1i64 << 50), 0i64..(1 << 40),
             ".{0,8}", any::<i64>(), any::<u64>(), -1e15f64..1e15),
            0..40,
        )
    ) {
        let mut json = ChromeJson::new(Vec::new());
        let mut want = Vec::new();
        for (name, pid, tid, ts, dur, text, i, u, f) in &events {
            let args = [
                Arg { key: "s", value: ArgValue::Str(text) },
                Arg { key: "i", value: ArgValue::Int(*i) },
                Arg { key: "u", value: ArgValue::Uint(*u) },
                Arg { key: "f", value: ArgValue::Float(*f) },
                Arg { key: "b", value: ArgValue::Bool(true) },
                Arg { key: "n", value: ArgValue::Null },
                Arg { key: "o", value: ArgValue::Raw("{\"a\":[1,2]}") },
            ];
            let event = Event {
                phase: Phase::Complete,
                name,
                cat: "",
                pid: *pid,
                tid: *tid,
                ts: Some(*ts),
                dur: Some(*dur),
                args: &args,
            };
            json.event(&event);
            want.push(own(&event));
        }
        let bytes = json.finish().unwrap();
        let mut got = read_back(&bytes);
        // The reader may shift times by an origin when they are far from 0;
        // these are not, but the trailing lines hold nothing else.
        got.retain(|it| it.phase == Phase::Complete);
        prop_assert_eq!(got, want);
    }
}

#[test]
fn raw_bytes_become_strings() {
    let args = [Arg {
        key: "blob",
        value: ArgValue::Raw("<3 bytes>"),
    }];
    let mut json = ChromeJson::new(Vec::new());
    json.event(&Event {
        args: &args,
        ..meta("x", 1, 1, &[])
    });
    let got = read_back(&json.finish().unwrap());
    assert_eq!(
        got[0].args,
        [("blob".to_owned(), "Str(\"<3 bytes>\")".to_owned())]
    );
}

#[test]
fn chunks_repeat_the_names_and_split_by_count() {
    let chunks: Rc<RefCell<Vec<Vec<u8>>>> = Rc::default();
    let store = chunks.clone();
    let mut exporter = Exporter::new(
        Selection {
            split_events: Some(2),
            threads: Some("keep".to_owned()),
            ..Selection::default()
        },
        |_| Ok(Vec::new()),
        move |bytes| {
            store.borrow_mut().push(bytes);
            Ok(())
        },
    );
    let name = |value| {
        [Arg {
            key: "name",
            value: ArgValue::Str(value),
        }]
    };
    let (p, t1, t2) = (name("proc"), name("keep me"), name("drop me"));
    exporter.event(&meta("process_name", 1, 0, &p));
    exporter.event(&meta("thread_name", 1, 1, &t1));
    exporter.event(&meta("thread_name", 1, 2, &t2));
    for tid in [1, 2, 1, 2, 1, 1, 1] {
        exporter.event(&Event {
            phase: Phase::Complete,
            ts: Some(5),
            dur: Some(1),
            ..meta("op", 1, tid, &[])
        });
    }
    let summary = exporter.finish().unwrap();
    assert_eq!(summary.chunks, 3);
    assert_eq!(summary.events, 5);
    // Two events on the dropped thread, and its name.
    assert_eq!(summary.left_out, 3);
    let chunks = chunks.borrow();
    let counts: Vec<(usize, usize)> = chunks
        .iter()
        .map(|bytes| {
            let events = read_back(bytes);
            let metas = events
                .iter()
                .filter(|it| it.phase == Phase::Metadata)
                .count();
            (metas, events.len() - metas)
        })
        .collect();
    assert_eq!(counts, [(2, 2), (2, 2), (2, 1)]);
}
