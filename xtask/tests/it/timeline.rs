//! The client's requests on the server trace's timeline, on a real local
//! session: one `cargo xtask profile --local` with a streamed Poisson load
//! against the real sglang-jax CPU server, then the report's
//! `trace-full.json.gz` and `cargo xtask trace` read back.
//!
//! Locally the client and the server read one wall clock, so sglprof
//! places the requests with an offset of 0. The test proves that this is
//! right with two facts taken from the server's side alone:
//!
//! - the profiler's own start stamp (the `Task Environment` plane's
//!   `profile_start_time`) lies inside the client's `/start_profile` round
//!   trip;
//! - the scheduler's `handle_generate_request` calls (Python tracer
//!   events in the trace), taken in time order, each lie inside the
//!   matching request's wait for its first token, from its send to its
//!   first token, on the exported timeline.

#![allow(clippy::disallowed_methods)] // Runs the xtask binary.

use std::io::Read;
use std::path::Path;

use trace_model::{ArgValue, Event, Phase};

/// The events of an exported Chrome trace JSON (gzip or not), in
/// picoseconds since the Unix epoch on the server's clock (the trace's
/// `ts == 0` is the `clock alignment` instant's `trace_zero_ns`):
/// `(pid, tid, name, start, duration)` of complete events, and the process
/// names.
struct Trace {
    slices: Vec<(u64, u64, String, i128, i128)>,
    processes: Vec<(u64, String)>,
}

fn read_trace(path: &Path) -> Trace {
    let bytes = std::fs::read(path).unwrap();
    let mut text = Vec::new();
    if bytes.starts_with(&[0x1f, 0x8b]) {
        flate2::read::GzDecoder::new(&bytes[..])
            .read_to_end(&mut text)
            .unwrap();
    } else {
        text = bytes;
    }
    let mut out = Trace {
        slices: Vec::new(),
        processes: Vec::new(),
    };
    let mut zero_ns = None;
    let mut sink = |event: &Event<'_>| match event.phase {
        Phase::Complete => out.slices.push((
            event.pid,
            event.tid,
            event.name.to_owned(),
            i128::from(event.ts.unwrap_or(0)),
            i128::from(event.dur.unwrap_or(0)),
        )),
        Phase::Instant if event.name == "clock alignment" => {
            if let Some(ArgValue::Int(zero)) = event.arg("trace_zero_ns") {
                zero_ns = Some(i128::from(zero));
            }
        }
        Phase::Metadata if event.name == "process_name" => {
            if let Some(ArgValue::Str(name)) = event.arg("name") {
                out.processes.push((event.pid, name.to_owned()));
            }
        }
        _ => {}
    };
    let summary = trace_chrome::read(&mut &text[..], &mut sink).unwrap();
    let zero_ps = zero_ns.expect("a clock alignment instant") * 1000 + summary.origin_ps;
    for slice in &mut out.slices {
        slice.3 += zero_ps;
    }
    out
}

#[test]
fn requests_on_the_timeline_of_a_real_session() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let slot = crate::support::real_server();
    let output = crate::support::xtask()
        .args(["profile", "--local", "--quiet-wait", "0", "--out"])
        .arg(&run)
        .args([
            "--dataset",
            "random",
            "--num-prompts",
            "12",
            "--input-len",
            "64",
            "--output-len",
            "8",
            "--range-ratio",
            "0.5",
            "--request-rate",
            "8",
            "--seed",
            "7",
            "--stream",
        ])
        .output()
        .expect("the xtask binary runs");
    drop(slot);
    eprintln!("{}", String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "profile --local failed");
    let metadata_text = std::fs::read_to_string(run.join("inputs/run_metadata.json")).unwrap();
    let metadata = session_report::RunMetadata::from_json(&metadata_text).unwrap();
    let serving = metadata.serving.expect("serving metadata");
    assert_eq!(serving.same_clock, Some(true));
    let calls = serving
        .profiler_calls
        .expect("the profiler calls' round trips");
    let start_call = calls.start.expect("the /start_profile round trip");
    let records = std::fs::read_to_string(run.join("inputs/requests.jsonl")).unwrap();
    let mut records = serving_workload::record::parse_records(&records).unwrap();
    assert_eq!(records.len(), 12);
    assert!(records.iter().all(|r| r.ok()));

    // The profiler's start stamp lies inside the client's round trip.
    let xplane = walk(&run.join("artifacts/jax-profile"))
        .into_iter()
        .find(|p| p.to_string_lossy().ends_with(".xplane.pb"))
        .expect("an xplane.pb");
    let planes = trace_xplane::plane_stats(&std::fs::read(&xplane).unwrap()).unwrap();
    let stamp = planes
        .iter()
        .filter(|it| it.plane == "Task Environment")
        .find_map(|it| it.number("profile_start_time"))
        .expect("profile_start_time") as i128;
    // The stamp went through an f64: 256 ns of rounding either way.
    let (sent, answered) = (
        i128::from(start_call.start_ns),
        i128::from(start_call.end_ns),
    );
    eprintln!(
        "/start_profile: sent {sent}, server stamp {:+} ns later, answered {:+} ns later",
        stamp - sent,
        answered - sent
    );
    assert!(
        sent - 256 <= stamp && stamp <= answered + 256,
        "profile_start_time {stamp} outside the /start_profile round trip {sent}..{answered}"
    );

    // The report's full trace holds the requests, and so does `trace`.
    let full = read_trace(&run.join("trace-full.json.gz"));
    let out = dir.path().join("t.json");
    let status = crate::support::xtask()
        .args(["trace"])
        .arg(&run)
        .arg("--out")
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success());
    let exported = read_trace(&out);
    for trace in [&full, &exported] {
        let pid = trace
            .processes
            .iter()
            .find(|it| it.1 == "Requests")
            .expect("a Requests process")
            .0;
        let mut requests: Vec<_> = trace
            .slices
            .iter()
            .filter(|it| it.0 == pid && it.2.starts_with("request "))
            .collect();
        requests.sort_by_key(|it| it.3);
        assert_eq!(requests.len(), records.len());
        // Each slice is its record's send-to-end, to the picosecond.
        records.sort_by_key(|r| r.start_ns);
        for (slice, record) in requests.iter().zip(&records) {
            assert_eq!(slice.2, format!("request {}", record.id));
            assert_eq!(slice.3, i128::from(record.start_ns) * 1000);
            assert_eq!(slice.4, i128::from(record.end_ns - record.start_ns) * 1000);
            assert_eq!(slice.1, u64::from(record.slot) + 1);
        }
        let waits = trace
            .slices
            .iter()
            .filter(|it| it.0 == pid && it.2 == "to first token")
            .count();
        let streamed = records
            .iter()
            .filter(|r| r.first_token_ns.is_some())
            .count();
        assert_eq!(waits, streamed);
        assert!(streamed > 0);

        // The scheduler took each request in while it waited.
        let mut handled: Vec<i128> = trace
            .slices
            .iter()
            .filter(|it| it.0 != pid && it.2.ends_with(" handle_generate_request"))
            .map(|it| it.3)
            .collect();
        handled.sort_unstable();
        assert_eq!(handled.len(), records.len(), "one call per request");
        // A request whose answer came in one piece has no first token:
        // its wait is bounded by its end.
        let mut lags = Vec::new();
        for (at, record) in handled.iter().zip(&records) {
            let start = i128::from(record.start_ns) * 1000;
            let first = i128::from(record.first_token_ns.unwrap_or(record.end_ns)) * 1000;
            assert!(
                start <= *at && *at <= first,
                "request {}: handled at {at} ps, outside its wait {start}..{first}",
                record.id
            );
            lags.push(((at - start) / 1000, (first - at) / 1000));
        }
        let (before, after): (Vec<_>, Vec<_>) = lags.iter().copied().unzip();
        eprintln!(
            "handle_generate_request after the send: at least {} ns; before the first token (or end): at least {} ns",
            before.iter().min().unwrap(),
            after.iter().min().unwrap()
        );
    }

    // What the server did while the slowest requests waited, computed
    // again from the exported trace: the waits, and each listed host
    // operation's self time inside its wait.
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("summary.json")).unwrap()).unwrap();
    let listed = summary["full_trace"]["requests"]["slowest_waits"]
        .as_array()
        .expect("slowest_waits")
        .clone();
    let window = serving.trace_window.expect("the profiler's window");
    let mut slow: Vec<_> = records
        .iter()
        .filter(|r| r.ok())
        .filter_map(|r| Some((r, r.first_token_ns?)))
        .filter(|(r, first)| r.start_ns >= window.start_ns && *first <= window.end_ns)
        .collect();
    slow.sort_by_key(|(r, first)| (std::cmp::Reverse(first - r.start_ns), r.id));
    slow.truncate(5);
    let ids: Vec<u64> = listed.iter().map(|w| w["id"].as_u64().unwrap()).collect();
    assert_eq!(ids, slow.iter().map(|(r, _)| r.id).collect::<Vec<_>>());
    assert!(!ids.is_empty(), "no wait inside the profiler's window");
    let requests_pid = full
        .processes
        .iter()
        .find(|it| it.1 == "Requests")
        .unwrap()
        .0;
    let mut checked = 0;
    for (wait, (record, first)) in listed.iter().zip(&slow) {
        let (lo, hi) = (
            i128::from(record.start_ns) * 1000,
            i128::from(*first) * 1000,
        );
        let own = self_times_inside(&full, requests_pid, lo, hi);
        for op in wait["host"].as_array().unwrap() {
            let name = op["name"].as_str().unwrap();
            let ours = op["self_ms"].as_f64().unwrap();
            let theirs = own.get(name).copied().unwrap_or(0.0);
            // The export writes times in whole nanoseconds.
            assert!(
                (ours - theirs).abs() < 0.002,
                "request {}: {name} self time {ours} ms, recomputed {theirs} ms",
                record.id
            );
            checked += 1;
        }
    }
    assert!(checked > 0, "no host operation listed for any wait");

    // The page has them too, as a table that sorts in a real browser.
    let page = run.join("report.html");
    let outline = crate::html::outline(&std::fs::read_to_string(&page).unwrap());
    for part in ["section #waits", "table #waits-table"] {
        assert!(outline.contains(part), "no {part} in\n{outline}");
    }
    if let Some(browser) = crate::browser::browser() {
        crate::browser::check_page(
            &browser,
            &page,
            &crate::browser::Expect {
                sort: Some(("waits-table", 6)),
                filter: None,
                pictures: 1,
                screenshot: None,
            },
        );
    }
}

/// Self time per operation name inside `[lo, hi)`, over every thread of
/// every process but `skip`: each complete event cut to the window, nested
/// on its thread (sorted by start, the longer first), minus its direct
/// children, summed per name, in milliseconds.
fn self_times_inside(
    trace: &Trace,
    skip: u64,
    lo: i128,
    hi: i128,
) -> std::collections::HashMap<String, f64> {
    use std::collections::{BTreeMap, HashMap};
    // Per thread: each event's cut start and end, and its name.
    type Cut<'a> = (i128, i128, &'a str);
    let mut threads: BTreeMap<(u64, u64), Vec<Cut<'_>>> = BTreeMap::new();
    for (pid, tid, name, start, dur) in &trace.slices {
        let (s, e) = ((*start).max(lo), (start + dur).min(hi));
        if *pid != skip && s < e {
            let name = name.strip_prefix('$').unwrap_or(name);
            threads.entry((*pid, *tid)).or_default().push((s, e, name));
        }
    }
    let mut res: HashMap<String, f64> = HashMap::new();
    for events in threads.values_mut() {
        events.sort_by_key(|&(s, e, _)| (s, std::cmp::Reverse(e)));
        // Open events: end and self time so far, by index.
        let mut open: Vec<(i128, usize)> = Vec::new();
        let mut own: Vec<i128> = events.iter().map(|(s, e, _)| e - s).collect();
        for (idx, &(s, e, _)) in events.iter().enumerate() {
            while open.last().is_some_and(|&(end, _)| end <= s) {
                open.pop();
            }
            if let Some(&(end, parent)) = open.last()
                && e <= end
            {
                own[parent] -= e - s;
            }
            open.push((e, idx));
        }
        for ((_, _, name), ps) in events.iter().zip(own) {
            *res.entry((*name).to_owned()).or_default() += ps as f64 / 1e9;
        }
    }
    res
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut res = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            res.extend(walk(&path));
        } else {
            res.push(path);
        }
    }
    res
}
