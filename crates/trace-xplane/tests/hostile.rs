//! Hostile inputs that once made the reader slow or greedy (issue 13, item
//! 8), in a test binary of their own: it counts every allocation, so memory
//! is measured exactly and no other test disturbs it.
//!
//! - An event with 40,000 stats whose metadata has 40,000 more: each
//!   metadata stat was checked against every own stat (28 s). It must cost
//!   about what the same number of stats spread over 40,000 events costs.
//! - 5,000,000 empty lines or planes in 10 MB: a record per line and per
//!   plane was collected for the whole file (435 to 760 MB). Reading must
//!   allocate a small, fixed amount beyond the input.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use prost::Message;
use trace_model::{ArgValue, Event, Phase};
use trace_xplane::generated::{
    XEvent, XEventMetadata, XLine, XPlane, XSpace, XStat, XStatMetadata, x_event, x_stat,
};

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

/// The most bytes allocated at once while `f` runs, beyond what was
/// allocated when it started.
fn peak_during<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let base = LIVE.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let res = f();
    (res, PEAK.load(Ordering::Relaxed) - base)
}

/// Reads `bytes`, counting complete events and the args they carry.
fn read(bytes: &[u8]) -> (u64, u64) {
    let (mut events, mut args) = (0, 0);
    let mut sink = |event: &Event<'_>| {
        if event.phase == Phase::Complete {
            events += 1;
            args += event.args.len() as u64;
        }
    };
    trace_xplane::read(bytes, &mut sink).expect("a valid XSpace");
    (events, args)
}

/// The fastest of three reads.
fn time(bytes: &[u8]) -> (Duration, (u64, u64)) {
    let mut best = Duration::MAX;
    let mut counts = (0, 0);
    for _ in 0..3 {
        let start = Instant::now();
        counts = read(bytes);
        best = best.min(start.elapsed());
    }
    (best, counts)
}

fn stat(id: i64, v: u64) -> XStat {
    XStat {
        metadata_id: id,
        value: Some(x_stat::Value::Uint64Value(v)),
    }
}

/// One host plane with stat names `0..2n`, and the given events and event
/// metadata 1.
fn space(events: Vec<XEvent>, meta_stats: Vec<XStat>, n: i64) -> Vec<u8> {
    let plane = XPlane {
        id: 0,
        name: "/host:CPU".to_owned(),
        lines: vec![XLine {
            id: 1,
            name: "main".to_owned(),
            timestamp_ns: 1,
            events,
            ..XLine::default()
        }],
        event_metadata: [(
            1,
            XEventMetadata {
                id: 1,
                name: "op".to_owned(),
                stats: meta_stats,
                ..XEventMetadata::default()
            },
        )]
        .into_iter()
        .collect(),
        stat_metadata: (0..2 * n)
            .map(|id| {
                (
                    id,
                    XStatMetadata {
                        id,
                        name: format!("s{id}"),
                        description: String::new(),
                    },
                )
            })
            .collect(),
        ..XPlane::default()
    };
    XSpace {
        planes: vec![plane],
        ..XSpace::default()
    }
    .encode_to_vec()
}

fn event(stats: Vec<XStat>) -> XEvent {
    XEvent {
        metadata_id: 1,
        data: Some(x_event::Data::OffsetPs(0)),
        duration_ps: 1,
        stats,
    }
}

#[test]
fn many_stats_cost_linear_time() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|it| it.into_inner());
    const N: i64 = 40_000;
    // One event: N own stats (ids 0..N) and N metadata stats (ids N..2N),
    // every one of them shown.
    let own: Vec<XStat> = (0..N).map(|id| stat(id, 1)).collect();
    let meta: Vec<XStat> = (N..2 * N).map(|id| stat(id, 2)).collect();
    let wide = space(vec![event(own)], meta.clone(), N);
    // The baseline: as many stats decoded and args pushed, over N events
    // with two own stats each.
    let spread = space(
        (0..N)
            .map(|id| event(vec![stat(id, 1), stat(N + id, 2)]))
            .collect(),
        Vec::new(),
        N,
    );
    let (wide_time, wide_counts) = time(&wide);
    let (spread_time, spread_counts) = time(&spread);
    assert_eq!(wide_counts, (1, 2 * N as u64));
    assert_eq!(spread_counts, (N as u64, 2 * N as u64));
    // Same number of stats decoded and args pushed: the wide event may cost
    // a few times more (a hash set), not N times more (28 s before).
    let ratio = wide_time.as_secs_f64() / spread_time.as_secs_f64().max(1e-4);
    assert!(
        ratio < 20.0,
        "{wide_time:?} for one event with {N}+{N} stats vs {spread_time:?} spread over {N} events"
    );

    // An own stat still overrides the metadata's stat of the same name.
    let overridden = space(
        vec![event((0..N).map(|id| stat(id, 1)).collect())],
        (0..N).map(|id| stat(id, 2)).collect(),
        N,
    );
    let mut values = Vec::new();
    let mut sink = |event: &Event<'_>| {
        if event.phase != Phase::Complete {
            return;
        }
        values.extend(
            event
                .args
                .iter()
                .map(|arg| (arg.key.to_owned(), arg.value == ArgValue::Uint(1))),
        );
    };
    trace_xplane::read(&overridden, &mut sink).unwrap();
    assert_eq!(values.len(), N as usize);
    assert!(values.iter().all(|(_, own)| *own));
}

/// A varint, for building files by hand.
fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// A length-delimited field.
fn len_field(out: &mut Vec<u8>, number: u32, payload: &[u8]) {
    varint(out, u64::from(number) << 3 | 2);
    varint(out, payload.len() as u64);
    out.extend_from_slice(payload);
}

const MANY: usize = 5_000_000;

#[test]
fn millions_of_empty_lines_or_planes_take_fixed_memory() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|it| it.into_inner());
    // One host plane holding 5,000,000 empty lines (2 bytes each) and one
    // line with an event.
    let mut plane = Vec::with_capacity(2 * MANY + 64);
    len_field(&mut plane, 2, b"/host:CPU");
    let line = XLine {
        id: 7,
        timestamp_ns: 1,
        events: vec![event(Vec::new())],
        ..XLine::default()
    }
    .encode_to_vec();
    len_field(&mut plane, 3, &line);
    for _ in 0..MANY {
        plane.extend_from_slice(&[0x1a, 0x00]);
    }
    let mut lines = Vec::with_capacity(plane.len() + 16);
    len_field(&mut lines, 1, &plane);
    drop(plane);

    // 5,000,000 empty planes, then a host plane with one event.
    let mut planes = Vec::with_capacity(2 * MANY + 64);
    for _ in 0..MANY {
        planes.extend_from_slice(&[0x0a, 0x00]);
    }
    let host = XPlane {
        id: 0,
        name: "/host:CPU".to_owned(),
        lines: vec![XLine::decode(&line[..]).unwrap()],
        ..XPlane::default()
    }
    .encode_to_vec();
    len_field(&mut planes, 1, &host);

    for (what, bytes) in [("lines", &lines), ("planes", &planes)] {
        let (counts, peak) = peak_during(|| read(bytes));
        assert_eq!(counts, (1, 0), "{what}");
        assert!(
            peak < 64 * 1024,
            "reading {MANY} empty {what} allocated {peak} bytes at its peak"
        );
        let (names, peak) = peak_during(|| trace_xplane::plane_names(bytes).unwrap());
        assert!(names.len() <= 2, "{what}: {names:?}");
        assert!(
            peak < 64 * 1024,
            "listing the names of {MANY} empty {what} allocated {peak} bytes at its peak"
        );
    }
}
