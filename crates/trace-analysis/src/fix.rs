//! [`SelfTimeFix`]: exact self time for the threads whose operations came
//! out of order, without keeping the other threads' operations.

use std::collections::{HashMap, HashSet};

use trace_model::{Event, EventSink, Phase, SharedArgs};

use crate::analyzer::{Analysis, Analyzer};

/// Makes an online [`Analysis`] exact when only some threads broke the
/// order ([`Analysis::unordered_threads`]): fed the trace again (all of it,
/// or only those threads' events), it computes those threads' self time
/// twice, online as the first pass did and buffered as it should be, and
/// [`SelfTimeFix::apply`] swaps one for the other. Each thread's self time
/// depends on its own events only, so the online replay gives exactly what
/// the first pass added for them. Memory is those threads' operations (24
/// bytes each), not the whole trace's.
pub struct SelfTimeFix {
    threads: HashSet<(u64, u64)>,
    online: Analyzer,
    buffered: Analyzer,
}

impl SelfTimeFix {
    pub fn new(analysis: &Analysis) -> SelfTimeFix {
        SelfTimeFix {
            threads: analysis.unordered_threads.iter().copied().collect(),
            online: Analyzer::new(),
            buffered: Analyzer::buffered(),
        }
    }

    /// Replaces the unordered threads' online self time in `analysis` with
    /// the buffered one; self time is then exact.
    pub fn apply(self, analysis: &mut Analysis) {
        let online = self.online.finish();
        let buffered = self.buffered.finish();
        let mut delta: HashMap<&str, i128> = HashMap::new();
        for op in &buffered.ops {
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
            self.buffered.event(event);
        }
    }

    fn stable_names(&mut self, stable: bool) {
        self.online.stable_names(stable);
        self.buffered.stable_names(stable);
    }

    fn takes_split_args(&self) -> bool {
        true
    }

    fn split_event(&mut self, event: &Event<'_>, shared: SharedArgs<'_>) {
        // Self time needs no args.
        if self.wanted(event) {
            self.online.split_event(event, shared);
            self.buffered.split_event(event, shared);
        }
    }
}
