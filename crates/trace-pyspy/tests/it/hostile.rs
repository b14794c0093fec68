//! Inputs that are small on disk but would be large in memory if the reader
//! copied what they refer to.

use std::sync::Arc;

use trace_pyspy::parse_speedscope;

/// One frame with a 1 MiB name, referred to by 4,000 distinct samples of one
/// thread with a 64 KiB name. Copying the names per stack would take about
/// 4.3 GB; shared, every stack points at the same two strings.
#[test]
fn speedscope_names_are_shared_not_copied_per_sample() {
    let long = "f".repeat(1 << 20);
    let thread = "t".repeat(1 << 16);
    let mut frames = vec![format!(r#"{{"name":"{long}"}}"#)];
    let mut samples = Vec::new();
    for i in 1..=4000 {
        frames.push(format!(r#"{{"name":"g{i}"}}"#));
        samples.push(format!("[0,{i}]"));
    }
    let input = format!(
        r#"{{"shared":{{"frames":[{}]}},"profiles":[{{"type":"sampled","name":"Process 7 Thread 9 \"{thread}\"","unit":"seconds","samples":[{}],"weights":[]}}]}}"#,
        frames.join(","),
        samples.join(",")
    );
    let profile = parse_speedscope(input.as_bytes()).unwrap();
    assert_eq!(profile.stacks.len(), 4000);
    let first = &profile.stacks[0];
    let first_thread = first.thread.as_ref().unwrap().name.as_ref().unwrap();
    assert_eq!(first_thread.len(), 1 << 16);
    for stack in &profile.stacks {
        assert!(Arc::ptr_eq(&stack.frames[0].name, &first.frames[0].name));
        let name = stack.thread.as_ref().unwrap().name.as_ref().unwrap();
        assert!(Arc::ptr_eq(name, first_thread));
    }
}
