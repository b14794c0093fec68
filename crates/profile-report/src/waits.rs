//! What the server was doing while the slowest requests waited for their
//! first token.
//!
//! The requests are the [`SLOWEST`] with the longest TTFT whose whole wait
//! (from being sent to the first token) lies inside the profiler's window;
//! each wait is placed on the trace's clock as the "Requests" process is
//! ([`crate::requests`]). While the trace streams past, every complete
//! event that overlaps a wait is cut to the wait and passed to an
//! analyzer of that wait, one for the device planes (`/device:...`) and
//! one for the rest (the host). Self time is then what
//! `trace_analysis` defines, within the wait: an operation's time inside
//! the wait minus that of the operations nested in it there. Nothing is
//! kept per event but the events inside the waits.

use serving_workload::RequestRecord;
use session_report::{RequestWait, WaitOp, Window};
use trace_analysis::Analyzer;
use trace_model::{ArgValue, Event, EventSink, Phase, Ps};

use crate::requests::{Placement, trace_ps};

/// How many of the slowest requests are looked at.
pub const SLOWEST: usize = 5;

/// Operations listed per side of a wait.
const TOP_OPS: usize = 5;

struct Wait {
    id: u64,
    slot: u32,
    ttft_ms: f64,
    start: Ps,
    end: Ps,
    device: Analyzer,
    host: Analyzer,
}

/// The sink that takes the waits' events; see the module documentation.
pub struct WaitSink {
    waits: Vec<Wait>,
    lo: Ps,
    hi: Ps,
    device_pids: Vec<u64>,
}

impl WaitSink {
    /// The slowest waits of `records` inside `window` (the profiler's, on
    /// the client's clock; any wait when unknown), placed by `placement`.
    pub fn new(
        records: &[RequestRecord],
        window: Option<Window>,
        placement: &Placement,
    ) -> WaitSink {
        let inside = |r: &RequestRecord, first: u64| {
            window.is_none_or(|w| r.start_ns >= w.start_ns && first <= w.end_ns)
        };
        let mut slow: Vec<(&RequestRecord, u64)> = records
            .iter()
            .filter(|r| r.ok())
            .filter_map(|r| Some((r, r.first_token_ns?)))
            .filter(|(r, first)| inside(r, *first))
            .collect();
        // Longest wait first; the earlier request first among equal ones.
        slow.sort_by_key(|(r, first)| (std::cmp::Reverse(first - r.start_ns), r.id));
        let waits: Vec<Wait> = slow
            .into_iter()
            .filter_map(|(r, first)| {
                Some(Wait {
                    id: r.id,
                    slot: r.slot,
                    ttft_ms: r.ttft_ms()?,
                    start: trace_ps(r.start_ns, placement)?,
                    end: trace_ps(first, placement)?,
                    device: Analyzer::buffered(),
                    host: Analyzer::buffered(),
                })
            })
            .filter(|w| w.end > w.start)
            .take(SLOWEST)
            .collect();
        WaitSink {
            lo: waits.iter().map(|w| w.start).min().unwrap_or(0),
            hi: waits.iter().map(|w| w.end).max().unwrap_or(0),
            waits,
            device_pids: Vec::new(),
        }
    }

    /// The waits, slowest first, each with its top operations by self time.
    pub fn finish(self) -> Vec<RequestWait> {
        let top = |analyzer: Analyzer| -> Vec<WaitOp> {
            let analysis = analyzer.finish();
            let mut ops: Vec<WaitOp> = analysis
                .ops
                .iter()
                .filter(|op| op.self_ps > 0)
                .map(|op| WaitOp {
                    name: op.display_name().to_owned(),
                    self_ms: op.self_ps as f64 / 1e9,
                    count: op.count,
                })
                .collect();
            ops.sort_by(|a, b| b.self_ms.total_cmp(&a.self_ms).then(a.name.cmp(&b.name)));
            ops.truncate(TOP_OPS);
            ops
        };
        let device_planes = !self.device_pids.is_empty();
        self.waits
            .into_iter()
            .map(|w| RequestWait {
                id: w.id,
                slot: w.slot,
                ttft_ms: w.ttft_ms,
                device: top(w.device),
                host: top(w.host),
                device_planes,
            })
            .collect()
    }
}

impl EventSink for WaitSink {
    fn event(&mut self, event: &Event<'_>) {
        match event.phase {
            Phase::Metadata if event.name == "process_name" => {
                if let Some(ArgValue::Str(name)) = event.arg("name")
                    && name.starts_with("/device:")
                {
                    self.device_pids.push(event.pid);
                }
            }
            Phase::Complete => {
                let (Some(ts), Some(dur)) = (event.ts, event.dur) else {
                    return;
                };
                let end = ts.saturating_add(dur);
                if end <= self.lo || ts >= self.hi {
                    return;
                }
                let device = self.device_pids.contains(&event.pid);
                for wait in &mut self.waits {
                    if ts >= wait.end || end <= wait.start {
                        continue;
                    }
                    let start = ts.max(wait.start);
                    let cut = Event {
                        ts: Some(start),
                        dur: Some(end.min(wait.end) - start),
                        ..*event
                    };
                    match device {
                        true => wait.device.event(&cut),
                        false => wait.host.event(&cut),
                    }
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::requests::Method;

    fn record(id: u64, start_ns: u64, first_ns: u64) -> RequestRecord {
        RequestRecord {
            schema: serving_workload::REQUEST_SCHEMA.to_owned(),
            id,
            row: id,
            kind: None,
            slot: id as u32,
            due_ns: start_ns,
            start_ns,
            first_token_ns: Some(first_ns),
            end_ns: first_ns + 1_000_000,
            input_len: None,
            output_len: 4,
            prompt_tokens: None,
            completion_tokens: None,
            cached_tokens: None,
            server_e2e_ns: None,
            rid: None,
            chunks: Vec::new(),
            error: None,
        }
    }

    fn complete(pid: u64, name: &str, ts_us: i64, dur_us: i64) -> Event<'_> {
        Event {
            phase: Phase::Complete,
            name,
            cat: "",
            pid,
            tid: 1,
            ts: Some(ts_us * 1_000_000),
            dur: Some(dur_us * 1_000_000),
            args: &[],
        }
    }

    /// Waits are cut out of the events, nested operations keep only their
    /// own time inside the wait, and device and host are told apart.
    #[test]
    fn self_time_inside_the_slowest_waits() {
        // The trace's ts == 0 is the client's 1,000,000 ns (1 ms).
        let placement = Placement {
            zero_ps: 1_000_000_000,
            offset_ns: Some(0),
            uncertainty_ns: 0,
            method: Method::SameClock,
        };
        let records = [
            // Waits 100-300 us and 400-450 us of the trace; a third one
            // starts before the window and is left out.
            record(0, 1_100_000, 1_300_000),
            record(1, 1_400_000, 1_450_000),
            record(2, 900_000, 1_990_000),
        ];
        let window = Window {
            start_ns: 1_000_000,
            end_ns: 2_000_000,
        };
        let mut sink = WaitSink::new(&records, Some(window), &placement);
        let device = [trace_model::Arg {
            key: "name",
            value: ArgValue::Str("/device:TPU:0"),
        }];
        sink.event(&Event {
            phase: Phase::Metadata,
            name: "process_name",
            cat: "",
            pid: 2,
            tid: 0,
            ts: None,
            dur: None,
            args: &device,
        });
        // Host: a loop from 0 to 500 us with a step inside it, 250-420.
        sink.event(&complete(1, "loop", 0, 500));
        sink.event(&complete(1, "step", 250, 170));
        // Device: a fusion from 150 to 200 us.
        sink.event(&complete(2, "fusion", 150, 50));
        let waits = sink.finish();
        assert_eq!(waits.len(), 2);
        let (slow, fast) = (&waits[0], &waits[1]);
        assert_eq!((slow.id, fast.id), (0, 1));
        assert!((slow.ttft_ms - 0.2).abs() < 1e-9);
        let ms = |ops: &[WaitOp], name: &str| {
            ops.iter()
                .find(|op| op.name == name)
                .map(|op| op.self_ms)
                .unwrap()
        };
        // 100-300: the loop's own time is 150 us (the step took 250-300).
        assert!((ms(&slow.host, "loop") - 0.15).abs() < 1e-9);
        assert!((ms(&slow.host, "step") - 0.05).abs() < 1e-9);
        assert!((ms(&slow.device, "fusion") - 0.05).abs() < 1e-9);
        // 400-450: the step until 420, the loop after it.
        assert!((ms(&fast.host, "step") - 0.02).abs() < 1e-9);
        assert!((ms(&fast.host, "loop") - 0.03).abs() < 1e-9);
        assert!(fast.device.is_empty());
        assert!(slow.device_planes);
    }
}
