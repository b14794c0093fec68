//! Inputs that parse, each compared with its snapshot.

use crate::{Input, RAW_FIXTURE, SPEEDSCOPE_FIXTURE, check};

#[test]
fn raw_fixture() {
    check("raw_fixture", Input::Raw(RAW_FIXTURE), 5);
}

#[test]
fn speedscope_fixture() {
    check(
        "speedscope_fixture",
        Input::Speedscope(SPEEDSCOPE_FIXTURE),
        5,
    );
}

// `--threads` adds a thread frame after the process frames: a decimal OS
// thread id, or `0x` hex, with or without a name.
#[test]
fn raw_thread_frames() {
    let input = r#"process 10:"python -m app";process 11:"worker";thread (11): MainThread;run (app/worker.py:5);step (app/worker.py:9) 3
process 10:"python -m app";process 11:"worker";thread (12): Thread-1 (poll);poll (app/worker.py:20) 2
process 10:"python -m app";thread (0x7F00AB);main (app/main.py:1) 1
"#;
    check("raw_thread_frames", Input::Raw(input), 10);
}

// A command line may hold spaces, `;` and parentheses; only `";` ends it. A
// function called `thread` is not a thread frame.
#[test]
fn raw_command_line_with_semicolons() {
    let input = r#"process 7:"python -c import app; app.main(1) --x 'a b'";main (<string>:1);thread (app/t.py:3) 4
process 7:"python -c import app; app.main(1) --x 'a b'";process 8:"a;b";main (<string>:1) 1
"#;
    check("raw_command_line_with_semicolons", Input::Raw(input), 10);
}

// Without `--subprocesses` there are no process frames, and with
// `--nolineno` no line numbers. Blank lines and CRLF endings are fine, and
// the same stack on two lines adds up.
#[test]
fn raw_without_processes_or_lines() {
    let input = "main (app.py);work (app.py) 2\r\n\r\nmain (app.py);idle (app.py) 1\r\nmain (app.py);work (app.py) 3\r\n";
    check("raw_without_processes_or_lines", Input::Raw(input), 10);
}

// Own samples go to the leaf; total samples count a function once per stack,
// however often it recurses. Lines of one function are one function.
#[test]
fn raw_recursion_and_lines() {
    let input = r#"process 1:"p";walk (t.py:10);walk (t.py:12);walk (t.py:12);visit (t.py:30) 5
process 1:"p";walk (t.py:10);walk (t.py:14) 3
process 1:"p";walk (u.py:10) 2
process 2:"q";only (q.py:1) 1
process 2:"q" 1
"#;
    check("raw_recursion_and_lines", Input::Raw(input), 10);
}

#[test]
fn raw_top_n_zero() {
    let input = "process 1:\"p\";a (a.py:1);b (b.py:2) 4\n";
    check("raw_top_n_zero", Input::Raw(input), 0);
}

// With unit "none" the weight is the sample count. Line 0 or null means no
// line. A profile name without "Process" still names the thread.
#[test]
fn speedscope_unit_none() {
    let input = br#"{
  "shared": {"frames": [
    {"name": "main", "file": "app.py", "line": 3, "col": null},
    {"name": "work", "file": "app.py", "line": 0},
    {"name": "idle", "file": "app.py", "line": null}
  ]},
  "profiles": [
    {"type": "sampled", "name": "Thread 0x1A \"MainThread\"", "unit": "none",
     "startValue": 0, "endValue": 6, "samples": [[0, 1], [0, 2], [0, 1]], "weights": [2, 1, 3.0]},
    {"type": "sampled", "name": "py-spy", "unit": "none",
     "startValue": 0, "endValue": 1, "samples": [[0]], "weights": [1]}
  ]
}"#;
    check("speedscope_unit_none", Input::Speedscope(input), 10);
}

// The process comes from the innermost process frame; without one, from
// the profile name. A thread frame in the stack wins over the profile name.
#[test]
fn speedscope_process_sources() {
    let input = br#"{
  "shared": {"frames": [
    {"name": "process 5:\"launcher\"", "file": "", "line": 0},
    {"name": "process 6:\"sglang::scheduler\"", "file": "", "line": 0},
    {"name": "thread (60): Worker", "file": "", "line": 0},
    {"name": "loop", "file": "/srv/s.py", "line": 4}
  ]},
  "profiles": [
    {"type": "sampled", "name": "Process 6 Thread 60 \"MainThread\"", "unit": "seconds",
     "samples": [[0, 1, 3], [0, 1, 2, 3]], "weights": [0.01, 0.01]},
    {"type": "sampled", "name": "Process 9 Thread 90 \"\"", "unit": "seconds",
     "samples": [[3], []], "weights": [0.01, 0.01]}
  ]
}"#;
    check("speedscope_process_sources", Input::Speedscope(input), 10);
}
