//! Inputs that must be rejected, with the exact message.

use std::io::Read;

use crate::{Input, check_error};

fn raw(text: &str, expected: &str) {
    check_error(Input::Raw(text), expected);
}

fn speedscope(json: &str, expected: &str) {
    check_error(Input::Speedscope(json.as_bytes()), expected);
}

#[test]
fn raw_errors() {
    raw("", "empty py-spy output");
    raw(" \n\r\n\t\n", "empty py-spy output");
    raw(
        "main (a.py:1) 1\nmain (a.py:1)\n",
        "line 2: invalid sample count \"(a.py:1)\"",
    );
    raw("main 1\n\nmain\n", "line 3: missing sample count");
    raw("a;b x\n", "line 1: invalid sample count \"x\"");
    raw("a;b -1\n", "line 1: invalid sample count \"-1\"");
    raw("a;b +1\n", "line 1: invalid sample count \"+1\"");
    raw("a;b 1.5\n", "line 1: invalid sample count \"1.5\"");
    raw(
        "a;b 18446744073709551616\n",
        "line 1: invalid sample count \"18446744073709551616\"",
    );
    raw(" 3\n", "line 1: empty stack");
    raw("a;;b 1\n", "line 1: empty frame");
    raw("a;b; 1\n", "line 1: empty frame");
    raw("process 1:\"p\"; 1\n", "line 1: empty frame");
    raw(
        "process 1:\"python -m app;main (a.py:1) 2\n",
        "line 1: unterminated process frame",
    );
    let long = format!("a {}", "x".repeat(100));
    raw(
        &long,
        &format!("line 1: invalid sample count \"{}\"", "x".repeat(40)),
    );
}

#[test]
fn speedscope_errors() {
    speedscope("", "empty py-spy output");
    speedscope(" \n", "empty py-spy output");
    speedscope(
        "{",
        "invalid json: EOF while parsing an object at line 1 column 1",
    );
    speedscope(
        "main (a.py:1) 1",
        "invalid json: expected value at line 1 column 1",
    );
    speedscope("[]", "not a speedscope file: top level is not an object");
    speedscope("{}", "not a speedscope file: no profiles");
    speedscope(r#"{"profiles": []}"#, "not a speedscope file: no profiles");
    speedscope(
        r#"{"profiles": [{}]}"#,
        "not a speedscope file: no shared.frames",
    );
    speedscope(
        r#"{"profiles": [{}], "shared": {"frames": [{"name": "a"}, {"file": "x.py"}]}}"#,
        "shared.frames[1].name: expected a string",
    );
    speedscope(
        r#"{"profiles": [{}], "shared": {"frames": [{"name": "a", "line": -3}]}}"#,
        "shared.frames[0].line: invalid line -3",
    );
    speedscope(
        r#"{"profiles": [{}], "shared": {"frames": [{"name": "a", "file": 1}]}}"#,
        "shared.frames[0].file: expected a string",
    );
    speedscope(
        r#"{"profiles": [{}], "shared": {"frames": [7]}}"#,
        "shared.frames[0]: expected an object",
    );
    let frames = r#""shared": {"frames": [{"name": "a", "file": "a.py", "line": 1}]}"#;
    let with_profile = |profile: &str| format!(r#"{{{frames}, "profiles": [{profile}]}}"#);
    speedscope(&with_profile("3"), "profiles[0]: expected an object");
    speedscope(&with_profile("{}"), "profiles[0].type: expected a string");
    speedscope(
        &with_profile(r#"{"type": "evented", "events": []}"#),
        "profiles[0].type: unsupported profile type \"evented\"",
    );
    speedscope(
        &with_profile(r#"{"type": "sampled"}"#),
        "profiles[0].samples: expected an array",
    );
    speedscope(
        &with_profile(r#"{"type": "sampled", "samples": [[0], 0]}"#),
        "profiles[0].samples[1]: expected an array",
    );
    speedscope(
        &with_profile(r#"{"type": "sampled", "samples": [[0], [0, 7]]}"#),
        "profiles[0].samples[1][1]: frame index 7 out of range (1 frames)",
    );
    speedscope(
        &with_profile(r#"{"type": "sampled", "samples": [[0, -1]]}"#),
        "profiles[0].samples[0][1]: expected a frame index",
    );
    speedscope(
        &with_profile(r#"{"type": "sampled", "samples": [["0"]]}"#),
        "profiles[0].samples[0][0]: expected a frame index",
    );
    speedscope(
        &with_profile(r#"{"type": "sampled", "unit": "none", "samples": [[0]]}"#),
        "profiles[0].weights: expected an array",
    );
    speedscope(
        &with_profile(
            r#"{"type": "sampled", "unit": "none", "samples": [[0], [0]], "weights": [1]}"#,
        ),
        "profiles[0].weights: 1 weights for 2 samples",
    );
    speedscope(
        &with_profile(r#"{"type": "sampled", "unit": "none", "samples": [[0]], "weights": [1.5]}"#),
        "profiles[0].weights[0]: invalid sample count 1.5",
    );
    speedscope(
        &with_profile(r#"{"type": "sampled", "unit": "none", "samples": [[0]], "weights": [-2]}"#),
        "profiles[0].weights[0]: invalid sample count -2",
    );
    speedscope(
        &with_profile(r#"{"type": "sampled", "unit": "none", "samples": [[0]], "weights": ["1"]}"#),
        "profiles[0].weights[0]: expected a number",
    );
    // The second profile is wrong; the path says so.
    speedscope(
        &format!(
            r#"{{{frames}, "profiles": [{{"type": "sampled", "samples": []}}, {{"type": "sampled", "samples": [[1]]}}]}}"#
        ),
        "profiles[1].samples[0][0]: frame index 1 out of range (1 frames)",
    );
}

#[test]
fn endless_input_is_refused_at_the_limit() {
    // Like /dev/zero: never ends. The reader stops one byte past the limit.
    let mut zeros = std::io::repeat(0).take(u64::MAX);
    let err = trace_pyspy::read_input(&mut zeros, 1 << 20).unwrap_err();
    assert_eq!(
        err.to_string(),
        "py-spy output is larger than 1048576 bytes"
    );
    let text = b"a (x.py:1) 3\n";
    let bytes = trace_pyspy::read_input(&mut &text[..], text.len() as u64).unwrap();
    assert_eq!(bytes, text);
}
