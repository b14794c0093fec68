//! Inputs the reader must reject, with the exact message it gives.

use crate::{check_error, gzip, jax_cpu_head};

#[test]
fn empty() {
    check_error(b"", "empty input");
    check_error(&gzip(b""), "empty input");
}

#[test]
fn only_whitespace() {
    check_error(
        b" \n ",
        "unexpected end of input at byte 3 (truncated file?)",
    );
}

#[test]
fn truncated_json() {
    check_error(
        br#"{"traceEvents":[{"ph":"X","ts":1"#,
        "unexpected end of input at byte 32 (truncated file?)",
    );
    check_error(
        br#"[{"ph":"X"}"#,
        "unexpected end of input at byte 11 (truncated file?)",
    );
    check_error(
        br#"{"traceEvents":[]"#,
        "unexpected end of input at byte 17 (truncated file?)",
    );
    check_error(
        br#"[{"name":"abc"#,
        "unexpected end of input at byte 13 (truncated file?)",
    );
}

#[test]
fn truncated_gzip() {
    let gz = jax_cpu_head();
    check_error(&gz[..gz.len() / 2], "gzip stream is truncated");
    check_error(&gz[..gz.len() - 4], "gzip stream is truncated");
    check_error(&gz[..2], "gzip stream is truncated");
}

#[test]
fn corrupt_gzip() {
    let mut gz = jax_cpu_head();
    let mid = gz.len() / 2;
    gz[mid] ^= 0x55;
    gz[mid + 1] ^= 0x55;
    check_error(
        &gz,
        "gzip stream is corrupt: corrupt gzip stream does not have a matching checksum",
    );
    let mut bad_header = jax_cpu_head();
    bad_header[2] = 7;
    check_error(&bad_header, "gzip stream is corrupt: invalid gzip header");
    let mut bad_crc = jax_cpu_head();
    let n = bad_crc.len();
    bad_crc[n - 6] ^= 1;
    check_error(
        &bad_crc,
        "gzip stream is corrupt: corrupt gzip stream does not have a matching checksum",
    );
}

#[test]
fn wrong_top_level() {
    check_error(
        br#""traceEvents""#,
        "not a Chrome trace: top level is a string",
    );
    check_error(b"-1.5", "not a Chrome trace: top level is a number");
    check_error(b"true", "not a Chrome trace: top level is a boolean");
    check_error(b"null", "not a Chrome trace: top level is null");
    check_error(
        br#"{"events":[]}"#,
        "not a Chrome trace: object has no traceEvents member",
    );
    check_error(
        br#"{"traceEvents":{}}"#,
        "not a Chrome trace: traceEvents is not an array",
    );
    check_error(b"<html>", "invalid JSON at byte 0: expected '{' or '['");
}

#[test]
fn invalid_json() {
    check_error(
        br#"[{"ph":"X",}]"#,
        "invalid JSON at byte 11: expected a string key",
    );
    check_error(
        br#"[{"ph":"X"} {}]"#,
        "invalid JSON at byte 12: expected ',' or ']'",
    );
    check_error(br#"[{"ph" "X"}]"#, "invalid JSON at byte 7: expected ':'");
    check_error(
        br#"[{"ph":"X","ts":01}]"#,
        "invalid JSON at byte 17: expected ',' or '}'",
    );
    check_error(
        br#"[{"ph":"X","ts":1.}]"#,
        "invalid JSON at byte 18: expected a digit after '.'",
    );
    check_error(
        br#"[{"ph":"X","ts":1e+}]"#,
        "invalid JSON at byte 19: expected a digit in exponent",
    );
    check_error(
        br#"[{"ph":"X","ts":+1}]"#,
        "invalid trace event at byte 16: ts must be a number",
    );
    check_error(
        br#"[{"ph":"X","x":tru}]"#,
        "invalid JSON at byte 18: invalid literal",
    );
    check_error(
        br#"[{"ph":"X","x":[1,]}]"#,
        "invalid JSON at byte 18: expected a value",
    );
    check_error(
        br#"[{"ph":"X","x":{"a":1,}}]"#,
        "invalid JSON at byte 22: expected a string key",
    );
    check_error(
        br#"[{"ph":"X"}] x"#,
        "invalid JSON at byte 13: unexpected data after the top-level value",
    );
    check_error(
        br#"[{"ph":"X"}]]"#,
        "invalid JSON at byte 12: unexpected data after the top-level value",
    );
    check_error(
        br#"{"a":1 "b":2}"#,
        "invalid JSON at byte 7: expected ',' or '}'",
    );
}

#[test]
fn invalid_strings() {
    check_error(
        br#"[{"name":"a\qb"}]"#,
        "invalid JSON at byte 11: invalid escape in string",
    );
    check_error(
        br#"[{"name":"\u12G4"}]"#,
        "invalid JSON at byte 14: invalid \\u escape",
    );
    check_error(
        br#"[{"name":"\ud800x"}]"#,
        "invalid JSON at byte 10: unpaired surrogate in \\u escape",
    );
    check_error(
        br#"[{"name":"\udc00"}]"#,
        "invalid JSON at byte 10: unpaired surrogate in \\u escape",
    );
    check_error(
        b"[{\"name\":\"a\tb\"}]",
        "invalid JSON at byte 11: control character in string",
    );
    check_error(
        b"[{\"name\":\"a\xffb\"}]",
        "invalid JSON at byte 11: invalid UTF-8 in string",
    );
    check_error(
        b"[{\"x\":\"a\xc3\"}]",
        "invalid JSON at byte 8: invalid UTF-8 in string",
    );
}

#[test]
fn invalid_events() {
    check_error(b"[1]", "invalid trace event at byte 1: expected an object");
    check_error(
        br#"[{"ph":1}]"#,
        "invalid trace event at byte 7: ph must be a string",
    );
    check_error(
        br#"[{"pid":1.5}]"#,
        "invalid trace event at byte 8: pid must be a 64-bit integer or a string",
    );
    check_error(
        br#"[{"tid":true}]"#,
        "invalid trace event at byte 8: tid must be an integer or a string",
    );
    check_error(
        br#"[{"args":[1]}]"#,
        "invalid trace event at byte 9: args must be an object",
    );
    check_error(
        br#"[{"ph":"X","ts":1e40}]"#,
        "invalid trace event at byte 16: ts is out of range",
    );
    check_error(
        br#"[{"ph":"X","ts":1},{"ph":"X","ts":1e13}]"#,
        "invalid trace event at byte 34: ts is out of range (more than 106 days from the origin)",
    );
    check_error(
        br#"[{"ph":"X","ts":1,"dur":1e13}]"#,
        "invalid trace event at byte 24: dur is out of range (more than 106 days)",
    );
}

#[test]
fn deep_nesting() {
    let deep = format!(
        r#"[{{"args":{{"a":{}1{}}}}}]"#,
        "[".repeat(200),
        "]".repeat(200)
    );
    check_error(
        deep.as_bytes(),
        "invalid JSON at byte 142: nesting is too deep",
    );
}
