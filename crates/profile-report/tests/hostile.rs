//! Hostile inputs to the whole report, with default flags (the full trace
//! is written), in a test binary of their own: it counts every allocation,
//! so memory is measured exactly and no other test disturbs it. The input
//! file itself is mapped, not allocated, and counts in none of the bounds.
//!
//! - One event name of 100 MB: `report.md` and `summary.json` were 200 MB
//!   each and the process peaked at 888 MiB. Every output must show the
//!   name shortened and stay under 1 MB.
//! - 5,000,000 empty lines: the full trace kept a thread name per line
//!   (840 MiB). Memory must follow the events, not the lines.

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use profile_report::{Request, generate};
use prost::Message;
use trace_xplane::generated::{XEvent, XEventMetadata, XLine, XPlane, XSpace, x_event};

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded to the system allocator unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
        PEAK.fetch_max(live, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Held by every test, so that no other test allocates while one measures.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

const MIB: usize = 1 << 20;

/// The most bytes allocated at once while `f` runs, beyond what was
/// allocated when it started.
fn peak_during<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let base = LIVE.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let res = f();
    (res, PEAK.load(Ordering::Relaxed) - base)
}

/// The report of `xplane` (written to a folder of its own) with default
/// flags: the largest output's size and the heap's peak while it ran.
fn report(xplane: Vec<u8>) -> (u64, usize, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("host.xplane.pb");
    std::fs::write(&input, xplane).unwrap();
    let out = dir.path().join("out");
    let mut request = Request::for_run_folder(&input);
    request.out_dir = out.clone();
    let (outcome, peak) = peak_during(|| generate(&request).unwrap());
    assert!(outcome.written.iter().any(|it| it.ends_with("report.md")));
    let largest = largest_file(&out);
    (largest, peak, dir)
}

fn largest_file(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|it| it.unwrap().metadata().unwrap().len())
        .max()
        .unwrap()
}

fn event(metadata_id: i64, offset_us: i64) -> XEvent {
    XEvent {
        metadata_id,
        data: Some(x_event::Data::OffsetPs(offset_us * 1_000_000)),
        duration_ps: 1_000_000,
        stats: Vec::new(),
    }
}

/// A host plane with `lines` and event metadata `names`, ids from 1.
fn host_plane(lines: Vec<XLine>, names: &[String]) -> XPlane {
    XPlane {
        id: 0,
        name: "/host:CPU".to_owned(),
        lines,
        event_metadata: names
            .iter()
            .enumerate()
            .map(|(idx, name)| {
                let id = idx as i64 + 1;
                (
                    id,
                    XEventMetadata {
                        id,
                        name: name.clone(),
                        ..XEventMetadata::default()
                    },
                )
            })
            .collect(),
        ..XPlane::default()
    }
}

#[test]
fn a_100_mb_event_name_is_shown_shortened_everywhere() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|it| it.into_inner());
    const NAME: usize = 100_000_000;
    let names = ["n".repeat(NAME), "step".to_owned()];
    let line = XLine {
        id: 1,
        name: "main".to_owned(),
        timestamp_ns: 1,
        events: vec![event(2, 0), event(1, 2), event(2, 4), event(2, 6)],
        ..XLine::default()
    };
    let bytes = XSpace {
        planes: vec![host_plane(vec![line], &names)],
        ..XSpace::default()
    }
    .encode_to_vec();
    let shown = trace_model::shown_name(&names[0]).into_owned();
    drop(names);
    let (largest, peak, dir) = report(bytes);
    assert!(largest < 1_000_000, "an output of {largest} bytes");
    // The analysis keeps the name once (it is how operations are told
    // apart; the analysis of a part of the file that holds no event of it
    // does not); nothing else may copy it.
    assert!(
        peak < NAME + 32 * MIB,
        "the report allocated {} MiB at its peak",
        peak / MIB
    );
    let report = std::fs::read_to_string(dir.path().join("out/report.md")).unwrap();
    assert!(report.contains("[100000000 bytes, fnv1a64 "), "{report}");
    let summary = std::fs::read_to_string(dir.path().join("out/summary.json")).unwrap();
    assert!(summary.contains(&shown), "the shortened name with its hash");
}

#[test]
fn millions_of_empty_lines_do_not_make_the_full_trace_grow() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|it| it.into_inner());
    const MANY: usize = 5_000_000;
    // One host plane holding 5,000,000 empty lines (2 bytes each) and one
    // line with events.
    let line = XLine {
        id: 7,
        name: "main".to_owned(),
        timestamp_ns: 1,
        events: vec![event(1, 0), event(1, 2)],
        ..XLine::default()
    };
    let mut plane = host_plane(vec![line], &["op".to_owned()]).encode_to_vec();
    for _ in 0..MANY {
        plane.extend_from_slice(&[0x1a, 0x00]);
    }
    let mut bytes = Vec::with_capacity(plane.len() + 16);
    bytes.push(0x0a);
    let mut len = plane.len() as u64;
    while len >= 0x80 {
        bytes.push(len as u8 | 0x80);
        len >>= 7;
    }
    bytes.push(len as u8);
    bytes.extend_from_slice(&plane);
    drop(plane);
    let (largest, peak, _dir) = report(bytes);
    assert!(largest < 1_000_000, "an output of {largest} bytes");
    assert!(
        peak < 64 * MIB,
        "the report allocated {} MiB at its peak",
        peak / MIB
    );
}
