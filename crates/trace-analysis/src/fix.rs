//! [`SelfTimeFix`]: exact self time for the threads whose operations came
//! out of order, without keeping the other threads' operations.

use std::collections::{HashMap, HashSet};

use trace_model::{Event, EventSink, Phase, SharedArgs};

use crate::analyzer::{Analysis, Analyzer};

/// How far out of order (in operations of one thread) [`SelfTimeFix::new`]
/// puts operations back in order.
pub const FIX_WINDOW: usize = 65_536;

/// Makes an online [`Analysis`] exact when only some threads broke the
/// order ([`Analysis::unordered_threads`]): fed the trace again (all of it,
/// or only those threads' events), it computes those threads' self time
/// twice, online as the first pass did and in order, and
/// [`SelfTimeFix::apply`] swaps one for the other. Each thread's self time
/// depends on its own events only, so the online replay gives exactly what
/// the first pass added for them.
///
/// [`SelfTimeFix::new`] puts each thread's operations in order within a
/// window of [`FIX_WINDOW`] operations (24 bytes each), which is enough
/// unless an operation comes later than that many after its place;
/// [`SelfTimeFix::buffered`] keeps every operation of those threads and
/// sorts them, and is always enough.
pub struct SelfTimeFix {
    threads: HashSet<(u64, u64)>,
    online: Analyzer,
    ordered: Analyzer,
}

impl SelfTimeFix {
    pub fn new(analysis: &Analysis) -> SelfTimeFix {
        SelfTimeFix::with(analysis, Analyzer::reordering(FIX_WINDOW))
    }

    pub fn buffered(analysis: &Analysis) -> SelfTimeFix {
        SelfTimeFix::with(analysis, Analyzer::buffered())
    }

    fn with(analysis: &Analysis, ordered: Analyzer) -> SelfTimeFix {
        SelfTimeFix {
            threads: analysis.unordered_threads.iter().copied().collect(),
            online: Analyzer::new(),
            ordered,
        }
    }

    /// Replaces the unordered threads' online self time in `analysis` with
    /// the one in order; self time is then exact. Returns false, leaving
    /// `analysis` as it was, when an operation came too far out of order
    /// for [`SelfTimeFix::new`]'s window: read those threads again into
    /// [`SelfTimeFix::buffered`].
    pub fn apply(self, analysis: &mut Analysis) -> bool {
        let online = self.online.finish();
        let ordered = self.ordered.finish();
        if !ordered.self_time_exact {
            return false;
        }
        let mut delta: HashMap<&str, i128> = HashMap::new();
        for op in &ordered.ops {
            *delta.entry(op.name.as_str()).or_default() += op.self_ps;
        }
        for op in &online.ops {
            *delta.entry(op.name.as_str()).or_default() -= op.self_ps;
        }
        for op in &mut analysis.ops {
            if let Some(delta) = delta.get(op.name.as_str()) {
                op.self_ps += delta;
            }
        }
        analysis.self_time_exact = true;
        analysis.unordered_threads.clear();
        true
    }

    fn wanted(&self, event: &Event<'_>) -> bool {
        matches!(event.phase, Phase::Complete | Phase::Begin | Phase::End)
            && self.threads.contains(&(event.pid, event.tid))
    }
}

impl EventSink for SelfTimeFix {
    fn event(&mut self, event: &Event<'_>) {
        if self.wanted(event) {
            self.online.event(event);
            self.ordered.event(event);
        }
    }

    fn stable_names(&mut self, stable: bool) {
        self.online.stable_names(stable);
        self.ordered.stable_names(stable);
    }

    fn takes_split_args(&self) -> bool {
        true
    }

    fn split_event(&mut self, event: &Event<'_>, shared: SharedArgs<'_>) {
        // Self time needs no args.
        if self.wanted(event) {
            self.online.split_event(event, shared);
            self.ordered.split_event(event, shared);
        }
    }
}
