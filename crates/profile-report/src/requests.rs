//! The client's requests on the server trace's timeline: a "Requests"
//! process added to an export, one track per concurrency slot and one
//! slice per request, split at its first token.
//!
//! The records (`inputs/requests.jsonl`) are on the client's wall clock,
//! nanoseconds since the Unix epoch (`SystemTime`, anchored once, then a
//! monotonic clock). The trace's times are not: the profiler stamps events
//! with `tsl::profiler::GetCurrentTimeNanos()` (`CLOCK_REALTIME`, since the
//! epoch), but before writing it subtracts the session's start
//! (`NormalizeTimestamps`), so an XPlane line's `timestamp_ns` and JAX's
//! trace JSON `ts` count from the profiler's start. That start, on the
//! server's clock, is kept only in the `xplane.pb`: the `Task Environment`
//! plane's `profile_start_time` (and `profile_stop_time`). Older writers
//! that kept absolute times are told apart by the size of the times.
//! [`place`] finds the client-clock time of the trace's `ts == 0`:
//!
//! - the server's time of `ts == 0` is `profile_start_time` plus the
//!   reader's origin (or the origin alone, for absolute times);
//! - [`align`] gives the client's clock minus the server's: 0 when the
//!   server ran on the client's machine (both read `CLOCK_REALTIME`);
//!   otherwise estimated from the round trips of the profiler calls. The
//!   server stamped its trace's start between the client's sending
//!   `/start_profile` and its answer, and its stop inside `/stop_profile`;
//!   each call bounds the offset to `[sent - stamp, answered - stamp]`,
//!   the estimate is the middle of the bounds of both calls together, and
//!   the uncertainty half their width;
//! - a trace JSON without its `xplane.pb` has no stamp: its `ts == 0` is
//!   the profiler's start, which lies inside the client's `/start_profile`
//!   round trip, whatever the clocks: the middle of it, within half of it.
//!
//! Nothing here reads a file: the caller gives the records, the metadata
//! and the trace's stamps, and the events go into any [`EventSink`].

use serving_workload::RequestRecord;
use session_report::ServingMetadata;
use trace_model::{Arg, ArgValue, Event, EventSink, Phase, Ps};

/// The name of the added process.
pub const REQUESTS_PROCESS: &str = "Requests";

/// How the client's clock was placed on the server trace's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// The server ran on the client's machine: one wall clock.
    SameClock,
    /// Estimated from the round trips of the profiler calls.
    ProfilerCalls,
    /// The trace's start taken as the middle of the client's
    /// `/start_profile` round trip (a trace without its start stamp).
    StartCall,
    /// Nothing to estimate from (a run folder from before the calls were
    /// recorded): the clocks taken as equal, or the trace's start as the
    /// answer of `/start_profile`.
    Assumed,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::SameClock => "same clock",
            Method::ProfilerCalls => "profiler call round trips",
            Method::StartCall => "start call round trip",
            Method::Assumed => "assumed",
        }
    }
}

/// The client's clock minus the server's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Alignment {
    pub offset_ns: i64,
    /// The true offset lies within `offset_ns` plus or minus this; 0 for
    /// one clock.
    pub uncertainty_ns: u64,
    pub method: Method,
}

/// Where the trace's `ts == 0` lies on the client's clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Placement {
    /// The client-clock time of `ts == 0`, picoseconds since the epoch.
    pub zero_ps: i128,
    /// The client's clock minus the server's, when the server's times are
    /// known (from the `xplane.pb`'s stamps or absolute times).
    pub offset_ns: Option<i64>,
    /// `zero_ps` is right to within plus or minus this.
    pub uncertainty_ns: u64,
    pub method: Method,
}

impl Placement {
    /// One line: how the client's clock was placed on the trace's.
    pub fn describe(&self) -> String {
        let ms = |ns: f64| ns / 1e6;
        match self.method {
            Method::SameClock => {
                "client and server read one clock (the server ran on this machine); the trace's start from the server's own stamp".to_owned()
            }
            Method::ProfilerCalls => format!(
                "client clock minus server clock {:.3} ms +/- {:.3} ms (from the round trips of the profiler calls)",
                ms(self.offset_ns.unwrap_or(0) as f64),
                ms(self.uncertainty_ns as f64)
            ),
            Method::StartCall => format!(
                "the trace's start taken as the middle of the /start_profile round trip, +/- {:.3} ms (the trace has no start stamp)",
                ms(self.uncertainty_ns as f64)
            ),
            Method::Assumed => {
                "client and server clocks taken as equal (no profiler call round trips recorded)"
                    .to_owned()
            }
        }
    }
}

/// Times of a trace below this many picoseconds count from the profiler's
/// start; above it (after 1973), from the epoch.
const ABSOLUTE_PS: i128 = 100_000_000_000_000_000_000;

/// The client-clock time of the trace's `ts == 0`, whose absolute time the
/// reader gave as `origin_ps` (see the module documentation); `None` when
/// nothing places it (a run folder without the profiler's window).
pub fn place(
    serving: &ServingMetadata,
    stamps: ServerStamps,
    origin_ps: i128,
) -> Option<Placement> {
    let server_zero_ps = if origin_ps >= ABSOLUTE_PS {
        Some(origin_ps)
    } else {
        stamps.start_ns.map(|it| i128::from(it) * 1000 + origin_ps)
    };
    if let Some(zero) = server_zero_ps {
        let alignment = align(serving, stamps);
        return Some(Placement {
            zero_ps: zero + i128::from(alignment.offset_ns) * 1000,
            offset_ns: Some(alignment.offset_ns),
            uncertainty_ns: alignment.uncertainty_ns,
            method: alignment.method,
        });
    }
    if let Some(call) = serving.profiler_calls.and_then(|it| it.start) {
        let (sent, answered) = (i128::from(call.start_ns), i128::from(call.end_ns));
        return Some(Placement {
            zero_ps: (sent + answered) * 500 + origin_ps,
            offset_ns: None,
            uncertainty_ns: u64::try_from((answered - sent + 1) / 2).unwrap_or(0),
            method: Method::StartCall,
        });
    }
    serving.trace_window.map(|window| Placement {
        zero_ps: i128::from(window.start_ns) * 1000 + origin_ps,
        offset_ns: None,
        uncertainty_ns: 0,
        method: Method::Assumed,
    })
}

/// When the server's profiler started and stopped, on its own clock, in
/// nanoseconds since the Unix epoch (the `Task Environment` plane's
/// `profile_start_time` and `profile_stop_time`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ServerStamps {
    pub start_ns: Option<i64>,
    pub stop_ns: Option<i64>,
}

/// The offset between the client's clock and the server trace's, as the
/// module documentation says.
pub fn align(serving: &ServingMetadata, stamps: ServerStamps) -> Alignment {
    // Run folders from before `same_clock` was recorded all came from a
    // local server or one on the other side of a tunnel; without the call
    // windows nothing better than 0 can be said for either.
    if serving.same_clock == Some(true) {
        return Alignment {
            offset_ns: 0,
            uncertainty_ns: 0,
            method: Method::SameClock,
        };
    }
    let calls = serving.profiler_calls.unwrap_or_default();
    let bounds = [(calls.start, stamps.start_ns), (calls.stop, stamps.stop_ns)]
        .into_iter()
        .filter_map(|(call, stamp)| {
            let (call, stamp) = (call?, i128::from(stamp?));
            Some((
                i128::from(call.start_ns) - stamp,
                i128::from(call.end_ns) - stamp,
            ))
        })
        .collect::<Vec<_>>();
    let together = bounds
        .iter()
        .copied()
        .reduce(|(lo, hi), (a, b)| (lo.max(a), hi.min(b)));
    let (lo, hi) = match together {
        Some((lo, hi)) if lo <= hi => (lo, hi),
        // Bounds that do not meet (the clocks drifted between the calls):
        // the span of both, honestly wider.
        Some(_) => bounds
            .iter()
            .copied()
            .reduce(|(lo, hi), (a, b)| (lo.min(a), hi.max(b)))
            .expect("bounds are not empty"),
        None => {
            return Alignment {
                offset_ns: 0,
                uncertainty_ns: 0,
                method: Method::Assumed,
            };
        }
    };
    let clamp = |v: i128| v.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64;
    Alignment {
        offset_ns: clamp((lo + hi).div_euclid(2)),
        uncertainty_ns: clamp((hi - lo + 1) / 2).unsigned_abs(),
        method: Method::ProfilerCalls,
    }
}

/// The `ts` (picoseconds from the trace's `ts == 0`) of a client time.
pub(crate) fn trace_ps(client_ns: u64, placement: &Placement) -> Option<Ps> {
    Ps::try_from(i128::from(client_ns) * 1000 - placement.zero_ps).ok()
}

/// Pushes the "Requests" process into `sink` as process `pid`: its name
/// (sorted first), a `clock` track with one instant at the first request
/// saying how the clocks were aligned, and per slot a `slot N` track
/// whose slices are the requests: `request ID` from send to end, holding
/// `to first token` and `decode` when a first token came. Times are
/// relative to the trace's `ts == 0`, placed by `placement`.
pub fn push_requests(
    sink: &mut dyn EventSink,
    pid: u64,
    records: &[RequestRecord],
    placement: &Placement,
) {
    let meta = |sink: &mut dyn EventSink, name: &str, tid: u64, args: &[Arg<'_>]| {
        sink.event(&Event {
            phase: Phase::Metadata,
            name,
            cat: "",
            pid,
            tid,
            ts: None,
            dur: None,
            args,
        })
    };
    let text = |key: &'static str, value: &'static str| Arg {
        key,
        value: ArgValue::Str(value),
    };
    meta(sink, "process_name", 0, &[text("name", REQUESTS_PROCESS)]);
    meta(
        sink,
        "process_sort_index",
        0,
        &[Arg {
            key: "sort_index",
            value: ArgValue::Int(-1),
        }],
    );
    let mut slots: Vec<u32> = records.iter().map(|r| r.slot).collect();
    slots.sort_unstable();
    slots.dedup();
    meta(sink, "thread_name", 0, &[text("name", "clock")]);
    for slot in &slots {
        let name = format!("slot {slot}");
        meta(
            sink,
            "thread_name",
            u64::from(*slot) + 1,
            &[Arg {
                key: "name",
                value: ArgValue::Str(&name),
            }],
        );
    }
    let first = records.iter().map(|r| r.start_ns).min();
    if let Some(ts) = first.and_then(|ns| trace_ps(ns, placement)) {
        sink.event(&Event {
            phase: Phase::Instant,
            name: "clock alignment",
            cat: "sglprof",
            pid,
            tid: 0,
            ts: Some(ts),
            dur: None,
            args: &[
                Arg {
                    key: "uncertainty_ns",
                    value: ArgValue::Uint(placement.uncertainty_ns),
                },
                text("method", placement.method.as_str()),
                // The client-clock time of the trace's `ts == 0`, so that a
                // reader can map any event back to the wall clock.
                Arg {
                    key: "trace_zero_ns",
                    value: ArgValue::Int(
                        placement
                            .zero_ps
                            .div_euclid(1000)
                            .clamp(i128::from(i64::MIN), i128::from(i64::MAX))
                            as i64,
                    ),
                },
            ]
            .into_iter()
            .chain(placement.offset_ns.map(|it| Arg {
                key: "client_minus_server_ns",
                value: ArgValue::Int(it),
            }))
            .collect::<Vec<_>>(),
        });
    }
    let mut order: Vec<&RequestRecord> = records.iter().collect();
    order.sort_by_key(|r| (r.start_ns, r.id));
    for record in order {
        push_request(sink, pid, record, placement);
    }
}

fn push_request(sink: &mut dyn EventSink, pid: u64, record: &RequestRecord, placement: &Placement) {
    let tid = u64::from(record.slot) + 1;
    let at = |ns: u64| trace_ps(ns, placement);
    let end_ns = record.end_ns.max(record.start_ns);
    let (Some(start), Some(end)) = (at(record.start_ns), at(end_ns)) else {
        return;
    };
    let name = format!("request {}", record.id);
    let ttft = record.ttft_ms();
    let mut args = vec![
        Arg {
            key: "id",
            value: ArgValue::Uint(record.id),
        },
        Arg {
            key: "row",
            value: ArgValue::Uint(record.row),
        },
    ];
    let optional_u32 = [
        ("input_len", record.input_len),
        ("output_len", Some(record.output_len)),
        ("prompt_tokens", record.prompt_tokens),
        ("completion_tokens", record.completion_tokens),
        ("cached_tokens", record.cached_tokens),
    ];
    for (key, value) in optional_u32 {
        if let Some(value) = value {
            args.push(Arg {
                key,
                value: ArgValue::Uint(u64::from(value)),
            });
        }
    }
    if let Some(ttft) = ttft {
        args.push(Arg {
            key: "ttft_ms",
            value: ArgValue::Float(ttft),
        });
    }
    args.push(Arg {
        key: "e2e_ms",
        value: ArgValue::Float(record.e2e_ms()),
    });
    if let Some(kind) = &record.kind {
        args.push(Arg {
            key: "kind",
            value: ArgValue::Str(kind),
        });
    }
    if let Some(rid) = &record.rid {
        args.push(Arg {
            key: "rid",
            value: ArgValue::Str(rid),
        });
    }
    if let Some(error) = &record.error {
        args.push(Arg {
            key: "error",
            value: ArgValue::Str(error),
        });
    }
    let cat = if record.ok() { "request" } else { "failed" };
    sink.event(&Event {
        phase: Phase::Complete,
        name: &name,
        cat,
        pid,
        tid,
        ts: Some(start),
        dur: Some(end - start),
        args: &args,
    });
    let Some(first) = record
        .first_token_ns
        .map(|ns| ns.clamp(record.start_ns, end_ns))
        .and_then(at)
    else {
        return;
    };
    let id = [Arg {
        key: "id",
        value: ArgValue::Uint(record.id),
    }];
    for (name, from, to) in [("to first token", start, first), ("decode", first, end)] {
        sink.event(&Event {
            phase: Phase::Complete,
            name,
            cat,
            pid,
            tid,
            ts: Some(from),
            dur: Some(to - from),
            args: &id,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use session_report::{ProfilerCalls, Window};

    fn remote(start: Option<(u64, u64)>, stop: Option<(u64, u64)>) -> ServingMetadata {
        let window = |(start_ns, end_ns)| Window { start_ns, end_ns };
        ServingMetadata {
            same_clock: Some(false),
            profiler_calls: Some(ProfilerCalls {
                start: start.map(window),
                stop: stop.map(window),
            }),
            ..ServingMetadata::default()
        }
    }

    #[test]
    fn one_clock_needs_no_estimate() {
        let serving = ServingMetadata {
            same_clock: Some(true),
            ..remote(Some((100, 200)), None)
        };
        let stamps = ServerStamps {
            start_ns: Some(5_000),
            stop_ns: None,
        };
        let it = align(&serving, stamps);
        assert_eq!((it.offset_ns, it.uncertainty_ns), (0, 0));
        assert_eq!(it.method, Method::SameClock);
    }

    #[test]
    fn both_calls_bound_the_offset_together() {
        // The server's clock runs 1,000 ns behind the client's. Its trace
        // started 40 ns into a 100 ns start call and stopped 90 ns into a
        // 100 ns stop call, so the calls bound the offset to [960, 1060]
        // and [910, 1010]: together [960, 1010].
        let serving = remote(Some((10_000, 10_100)), Some((50_000, 50_100)));
        let stamps = ServerStamps {
            start_ns: Some(10_040 - 1_000),
            stop_ns: Some(50_090 - 1_000),
        };
        let it = align(&serving, stamps);
        assert_eq!(it.method, Method::ProfilerCalls);
        assert_eq!((it.offset_ns, it.uncertainty_ns), (985, 25));
        // One call alone: the middle of its window.
        let one = align(
            &remote(Some((10_000, 10_100)), None),
            ServerStamps {
                start_ns: Some(9_040),
                stop_ns: None,
            },
        );
        assert_eq!((one.offset_ns, one.uncertainty_ns), (1_010, 50));
    }

    #[test]
    fn bounds_that_do_not_meet_widen_and_nothing_to_go_on_is_said() {
        // The stop call's bounds [1900, 2000] miss the start call's [0,
        // 100]: the clocks drifted, and the estimate spans both.
        let serving = remote(Some((0, 100)), Some((5_000, 5_100)));
        let stamps = ServerStamps {
            start_ns: Some(0),
            stop_ns: Some(3_100),
        };
        let it = align(&serving, stamps);
        assert_eq!((it.offset_ns, it.uncertainty_ns), (1_000, 1_000));
        let none = align(&remote(None, None), stamps);
        assert_eq!((none.offset_ns, none.method), (0, Method::Assumed));
        let old = align(&ServingMetadata::default(), stamps);
        assert_eq!(old.method, Method::Assumed);
    }

    #[test]
    fn the_trace_start_is_placed_from_what_the_run_has() {
        let serving = ServingMetadata {
            same_clock: Some(true),
            ..remote(Some((1_000, 1_200)), None)
        };
        let stamped = ServerStamps {
            start_ns: Some(1_150),
            stop_ns: None,
        };
        // One clock and the stamp: the stamp plus the reader's origin.
        let it = place(&serving, stamped, 7_000).unwrap();
        assert_eq!((it.zero_ps, it.method), (1_157_000, Method::SameClock));
        // Times since the epoch (an older writer): the origin alone.
        let absolute = 1_700_000_000_000_000_000_000;
        let it = place(&serving, stamped, absolute).unwrap();
        assert_eq!(it.zero_ps, absolute);
        // No stamp (a trace JSON alone): the middle of the start call.
        let it = place(&serving, ServerStamps::default(), 7_000).unwrap();
        assert_eq!(
            (it.zero_ps, it.uncertainty_ns, it.method, it.offset_ns),
            (1_107_000, 100, Method::StartCall, None)
        );
        // Neither stamp nor calls: the answer of /start_profile, assumed.
        let old = ServingMetadata {
            trace_window: Some(Window {
                start_ns: 2_000,
                end_ns: 9_000,
            }),
            ..ServingMetadata::default()
        };
        let it = place(&old, ServerStamps::default(), 7_000).unwrap();
        assert_eq!((it.zero_ps, it.method), (2_007_000, Method::Assumed));
        assert!(place(&ServingMetadata::default(), ServerStamps::default(), 0).is_none());
    }

    #[test]
    fn a_request_is_one_slice_split_at_its_first_token() {
        let record = RequestRecord {
            schema: serving_workload::REQUEST_SCHEMA.to_owned(),
            id: 7,
            row: 3,
            kind: None,
            slot: 2,
            due_ns: 1_000,
            start_ns: 1_000,
            first_token_ns: Some(1_400),
            end_ns: 2_000,
            input_len: Some(12),
            output_len: 4,
            prompt_tokens: Some(12),
            completion_tokens: Some(4),
            cached_tokens: Some(8),
            server_e2e_ns: None,
            rid: Some("abc".to_owned()),
            chunks: Vec::new(),
            error: None,
        };
        // The client's clock runs 100 ns ahead of the server's: the
        // server stamped its start at 400 ns, inside a start call sent at
        // 480 and answered at 520 (client), so the offset is 100 +/- 20.
        // The trace's first line starts 100 ns after the stamp, so `ts ==
        // 0` is at 500 ns on the server's clock, 600 on the client's.
        let serving = remote(Some((480, 520)), None);
        let stamps = ServerStamps {
            start_ns: Some(400),
            stop_ns: None,
        };
        let placement = place(&serving, stamps, 100_000).unwrap();
        assert_eq!(
            placement,
            Placement {
                zero_ps: 600_000,
                offset_ns: Some(100),
                uncertainty_ns: 20,
                method: Method::ProfilerCalls,
            }
        );
        // Phase, name, tid, ts and dur of each event.
        type Seen = (Phase, String, u64, Option<Ps>, Option<Ps>);
        let mut seen: Vec<Seen> = Vec::new();
        let mut sink = |event: &Event<'_>| {
            seen.push((
                event.phase,
                event.name.to_owned(),
                event.tid,
                event.ts,
                event.dur,
            ))
        };
        push_requests(&mut sink, 9, &[record], &placement);
        let slices: Vec<_> = seen
            .iter()
            .filter(|it| it.0 == Phase::Complete)
            .map(|it| (it.1.as_str(), it.2, it.3, it.4))
            .collect();
        // Client 1,000 ns is 400 ns after `ts == 0`.
        assert_eq!(
            slices,
            [
                ("request 7", 3, Some(400_000), Some(1_000_000)),
                ("to first token", 3, Some(400_000), Some(400_000)),
                ("decode", 3, Some(800_000), Some(600_000)),
            ]
        );
        assert!(seen.iter().any(|it| it.1 == "clock alignment"));
    }
}
