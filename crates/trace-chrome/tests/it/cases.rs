//! Inputs the reader must accept, each with a snapshot of its events.

use crate::{check, dump, gzip, jax_cpu_head};

#[test]
fn object_with_other_members() {
    check(
        r#"{"displayTimeUnit":"ns","metadata":{"highres-ticks":true,"list":[1,2.5e3,null,"x"]},
"traceEvents":[{"ph":"X","pid":701,"tid":3182955335,"ts":15.172000000000001,"dur":916.10699999999997,"name":"$scheduler.py:477 process_input_requests"},{}],
"otherData":{"version":"1"}}"#,
        "object_with_other_members",
    );
}

#[test]
fn bare_array() {
    check(
        r#"[{"ph":"B","pid":1,"tid":2,"ts":1,"name":"a"},{"ph":"E","pid":1,"tid":2,"ts":2}]"#,
        "bare_array",
    );
}

#[test]
fn trace_events_not_first() {
    check(
        r#"{"metadata":{"a":{"b":[{}]}},"traceEvents":[{"ph":"i","ts":3,"name":"tick","s":"g"}],"displayTimeUnit":"ms"}"#,
        "trace_events_not_first",
    );
}

#[test]
fn empty_trace() {
    check(r#"{"traceEvents":[]}"#, "empty_trace");
}

#[test]
fn every_phase() {
    // B/E are passed through unpaired, in file order; `dur` is kept for X
    // only.
    check(
        r#"[
{"ph":"X","pid":1,"tid":1,"ts":0,"dur":5,"name":"complete"},
{"ph":"B","pid":1,"tid":1,"ts":1,"dur":7,"name":"begin"},
{"ph":"E","pid":1,"tid":1,"ts":2},
{"ph":"E","pid":1,"tid":1,"ts":3},
{"ph":"i","pid":1,"tid":1,"ts":4,"name":"instant","s":"t"},
{"ph":"I","pid":1,"tid":1,"ts":5,"name":"old instant"},
{"ph":"C","pid":1,"ts":6,"name":"counter","args":{"value":3}},
{"ph":"M","pid":1,"name":"process_name","args":{"name":"host"}},
{"ph":"b","pid":1,"ts":7,"name":"async","id":"0x1","cat":"c"},
{"ph":"s","pid":1,"ts":8,"name":"flow","id":2,"bp":"e"},
{"ph":"","name":"empty ph"},
{"ph":null,"name":"null ph"},
{"name":"no ph"},
{}
]"#,
        "every_phase",
    );
}

#[test]
fn string_ids() {
    // Decimal strings are numbers; other strings get ids from 2^63 up, in
    // order of first appearance, shared between pid and tid.
    check(
        r#"[{"ph":"X","pid":"Browser","tid":"12","ts":0,"dur":1},
{"ph":"X","pid":"GPU","tid":"CrBrowserMain","ts":0,"dur":1},
{"ph":"X","pid":"Browser","tid":"GPU","ts":0,"dur":1},
{"ph":"X","pid":-1,"tid":18446744073709551615,"ts":0,"dur":1},
{"ph":"X","pid":null,"ts":0,"dur":1}]"#,
        "string_ids",
    );
}

#[test]
fn escapes() {
    check(
        r#"[{"ph":"X","ts":0,"dur":1,"name":"q\" b\\ s\/ \b\f\n\r\t \u00e9\u4e2d \ud83d\ude00 é","cat":"\u0041"},
{"\u0070h":"\u0058","n\u0061me":"escaped keys","args":{"k\"ey":"v\u0000al"}}]"#,
        "escapes",
    );
}

#[test]
fn numbers_to_picoseconds() {
    // Exact decimal arithmetic, rounding half away from zero.
    check(
        r#"[{"ph":"X","ts":15.172000000000001,"dur":9.9999999999999995e-07,"name":"jax floats"},
{"ph":"X","ts":1E3,"dur":2.5e+0,"name":"exponents"},
{"ph":"X","ts":0.0000005,"dur":0.0000004999,"name":"half rounds up"},
{"ph":"X","ts":-0.0000005,"dur":0.0000015,"name":"half away from zero"},
{"ph":"X","ts":-12,"dur":0,"name":"negative"},
{"ph":"X","ts":123456789.123456789123456789,"dur":1e-400,"name":"many digits"},
{"ph":"X","ts":0.00000000000000000000000000000000000000000000000000015e45,"dur":100000000000000000000000000000000000000000e-40,"name":"long mantissas"}]"#,
        "numbers_to_picoseconds",
    );
}

#[test]
fn epoch_timestamps_move_the_origin() {
    // The first ts, floored to a microsecond, becomes the origin.
    check(
        r#"{"traceEvents":[{"ph":"M","name":"process_name","args":{"name":"p"}},
{"ph":"X","ts":1700000000123456.789,"dur":1.5,"name":"first"},
{"ph":"X","ts":1700000000123450,"dur":1,"name":"earlier"},
{"ph":"X","ts":1700000100000000.0000001,"dur":1,"name":"later"}]}"#,
        "epoch_timestamps_move_the_origin",
    );
}

#[test]
fn args_values() {
    check(
        r#"[{"ph":"X","ts":0,"dur":1,"name":"op","args":{
"hlo_module":"jit_run_model","device_ordinal":0,"neg":-9223372036854775808,
"big":18446744073709551615,"bigger":18446744073709551616,"float":1.5,"exp":1e3,
"huge":1e400,"yes":true,"no":false,"none":null,
"list":[1, {"a" : [true]}],"obj":{ "x" : "y" },"empty":{},"dup":1,"dup":2}},
{"ph":"X","ts":0,"dur":1,"name":"no args","args":{}},
{"ph":"X","ts":0,"dur":1,"name":"null args","args":null}]"#,
        "args_values",
    );
}

#[test]
fn whitespace_and_unknown_members() {
    check(
        " \n\t{ \"traceEvents\" : [ { \"ph\" : \"X\" , \"id\" : [ 1 , { } ] , \"ts\" : 1 ,\r\n \"dur\" : 2 , \"bind_id\" : \"0x1\" , \"tts\" : 3 } , { } ] } \n ",
        "whitespace_and_unknown_members",
    );
}

#[test]
fn byte_order_mark() {
    check(
        "\u{feff}[{\"ph\":\"X\",\"ts\":1,\"dur\":2}]",
        "byte_order_mark",
    );
}

#[test]
fn large_event_split_across_chunks() {
    // One event larger than the room in front of a chunk, read in pieces.
    let long = "x".repeat(300_000);
    let input = format!(r#"[{{"ph":"X","ts":1,"dur":2,"name":"{long}"}},{{"ph":"E"}}]"#);
    let expect = dump(br#"[{"ph":"X","ts":1,"dur":2,"name":"x"},{"ph":"E"}]"#).replacen(
        "\"x\"",
        &format!("{long:?}"),
        1,
    );
    for piece in [1000, 70_000, 300_000] {
        let mut sink_out = String::new();
        let mut sink = |event: &trace_model::Event<'_>| crate::dump_event(&mut sink_out, event);
        let res = trace_chrome::read(&mut Pieces(input.as_bytes(), piece), &mut sink);
        sink_out.push_str(&format!("n_events={} origin_ps=0\n", res.unwrap().n_events));
        assert_eq!(sink_out, expect);
    }
}

/// A reader that hands out at most `.1` bytes per call.
struct Pieces<'a>(&'a [u8], usize);

impl std::io::Read for Pieces<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.0.len().min(buf.len()).min(self.1);
        buf[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        Ok(n)
    }
}

#[test]
fn split_at_every_position() {
    // Two reads, cut at every byte: tokens split anywhere.
    let input = br#"{"a":[1.5e-3,"\u00e9"],"traceEvents":[{"ph":"X","pid":"p","ts":15.172000000000001,"dur":9.9e-07,"name":"n\"1","args":{"k":[{}],"f":false}},{}]}"#;
    let expect = dump(input);
    for cut in 0..input.len() {
        let (a, b) = input.split_at(cut);
        let mut reader = std::io::Read::chain(a, b);
        let mut out = String::new();
        let mut sink = |event: &trace_model::Event<'_>| crate::dump_event(&mut out, event);
        let summary = trace_chrome::read(&mut reader, &mut sink).unwrap();
        out.push_str(&format!(
            "n_events={} origin_ps={}\n",
            summary.n_events, summary.origin_ps
        ));
        assert_eq!(out, expect, "cut at {cut}");
    }
}

#[test]
fn multi_member_gzip() {
    // Concatenated gzip members (as from `cat a.gz b.gz`) form one stream.
    let text = br#"{"traceEvents":[{"ph":"X","ts":1,"dur":2,"name":"a"},{"ph":"X","ts":3,"dur":4,"name":"b"}]}"#;
    let mut members = Vec::new();
    for part in text.chunks(20) {
        members.extend(gzip(part));
    }
    assert_eq!(dump(&members), dump(text));
}

#[test]
fn jax_cpu_head_summary() {
    let gz = jax_cpu_head();
    let full = dump(&gz);
    let lines: Vec<&str> = full.lines().collect();
    let mut per_phase = std::collections::BTreeMap::new();
    for line in lines.iter().filter(|it| !it.starts_with(' ')) {
        let phase = line.split(' ').next().unwrap_or("");
        *per_phase.entry(phase.to_owned()).or_insert(0) += 1;
    }
    let mut summary = String::new();
    for (phase, n) in per_phase
        .iter()
        .filter(|(phase, _)| !phase.starts_with("n_events"))
    {
        summary.push_str(&format!("{phase}: {n}\n"));
    }
    summary.push_str("first events:\n");
    for line in lines.iter().take(40) {
        summary.push_str(&format!("{line}\n"));
    }
    summary.push_str("last events:\n");
    for line in &lines[lines.len().saturating_sub(3)..] {
        summary.push_str(&format!("{line}\n"));
    }
    insta::assert_snapshot!("jax_cpu_head_summary", summary);
}
