//! Hostile inputs that once made the reader quadratic: one enormous token,
//! and long runs of whitespace between events. The reader's own work
//! counters must stay within a small multiple of the text.

use trace_chrome::ReadWork;
use trace_model::Event;

use crate::gzip;

const MIB: usize = 1 << 20;

/// Reads `text` plain and gzip-compressed; returns the length of the
/// longest name seen, the event count and both work counters.
fn read_both(text: &[u8]) -> (usize, u64, ReadWork, ReadWork) {
    let mut longest = 0;
    let mut sink = |event: &Event<'_>| longest = longest.max(event.name.len());
    let (res, plain) = trace_chrome::read_with_work(&mut &text[..], &mut sink);
    let n_events = res.unwrap().n_events;
    let gz = gzip(text);
    let mut sink = |_: &Event<'_>| {};
    let (res, packed) = trace_chrome::read_with_work(&mut &gz[..], &mut sink);
    assert_eq!(res.unwrap().n_events, n_events);
    assert_eq!(plain.text_bytes, text.len() as u64);
    assert_eq!(packed.text_bytes, text.len() as u64);
    (longest, n_events, plain, packed)
}

/// At most three passes over the text, plus a chunk per event.
fn assert_linear(work: &ReadWork, what: &str) {
    assert!(
        work.bytes_scanned <= 3 * work.text_bytes + 4 * MIB as u64,
        "{what}: {} bytes scanned for {} bytes of text",
        work.bytes_scanned,
        work.text_bytes
    );
}

#[test]
fn one_huge_name_is_read_in_linear_work() {
    let name = "n".repeat(24 * MIB);
    let text = format!(
        r#"{{"traceEvents":[{{"ph":"X","ts":1,"dur":2,"name":"{name}"}},{{"ph":"i","ts":3,"name":"after"}}]}}"#
    );
    let (longest, n_events, plain, packed) = read_both(text.as_bytes());
    assert_eq!((longest, n_events), (name.len(), 2));
    for (work, what) in [(plain, "plain"), (packed, "gzip")] {
        assert_linear(&work, what);
        // The event must be in one window, but not in many copies of it.
        assert!(work.peak_window <= 2 * name.len() + MIB, "{what}: {work:?}");
    }
}

#[test]
fn a_huge_skipped_member_is_read_in_linear_work() {
    // A long array of numbers, skipped value by value.
    let blob = format!("[{}1]", "1,".repeat(6 * MIB));
    let text = format!(r#"{{"meta":{blob},"traceEvents":[{{"ph":"X","ts":1,"dur":2}}]}}"#);
    let (_, n_events, plain, packed) = read_both(text.as_bytes());
    assert_eq!(n_events, 1);
    assert_linear(&plain, "plain");
    assert_linear(&packed, "gzip");
}

#[test]
fn whitespace_between_events_is_not_carried() {
    let gap = " \n\t\r".repeat(8 * MIB);
    for text in [
        // Before the comma, after it, and before the closing bracket.
        format!(r#"[{{"ph":"i","ts":1}}{gap},{{"ph":"i","ts":2}}]"#),
        format!(r#"[{{"ph":"i","ts":1}},{gap}{{"ph":"i","ts":2}}]"#),
        format!(r#"{{"traceEvents":[{{"ph":"i","ts":1}}{gap}],{gap}"x":1{gap}}}"#),
    ] {
        let (_, _, plain, packed) = read_both(text.as_bytes());
        for (work, what) in [(plain, "plain"), (packed, "gzip")] {
            // Whitespace is scanned once and never held beyond one window.
            assert!(
                work.bytes_scanned <= work.text_bytes + 2 * MIB as u64,
                "{what}: {work:?}"
            );
            assert!(work.peak_window <= MIB, "{what}: {work:?}");
        }
    }
}
