//! The per-occurrence durations of every operation of one trace.

use std::collections::HashMap;

use trace_analysis::{Analysis, Analyzer, OpKind};
use trace_model::{Event, EventSink, Phase, Ps};

/// Where an operation ran, as the comparison tables group them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Side {
    /// XLA operations and program executions on a `/device:` plane.
    Device,
    /// Everything else: host XLA operations, runtime events, Python.
    Host,
}

impl Side {
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Device => "device",
            Side::Host => "host",
        }
    }

    fn of(kind: OpKind) -> Side {
        match kind {
            OpKind::Xla { device: true } | OpKind::XlaModule => Side::Device,
            _ => Side::Host,
        }
    }
}

/// Every duration of one operation name, in picoseconds, in order of start
/// time (so that neighbours in the list ran close in time: the block
/// bootstrap resamples runs of them).
#[derive(Clone, Debug, PartialEq)]
pub struct OpSamples {
    pub name: String,
    pub side: Side,
    pub durations: Vec<Ps>,
}

/// (start, duration) of one occurrence.
type Occurrence = (Ps, Ps);

/// A sink that records each operation's durations and also feeds the
/// [`Analyzer`], so that one read of a trace gives both the samples and the
/// operation kinds. Operations are the analyzer's: complete events and
/// `B`/`E` pairs matched on the same thread, grouped by exact name.
pub struct Collector {
    analyzer: Analyzer,
    ids: HashMap<Box<str>, u32>,
    /// Per name, (start, duration) of each occurrence.
    names: Vec<(Box<str>, Vec<Occurrence>)>,
    open: HashMap<(u64, u64), Vec<(u32, Ps)>>,
}

impl Default for Collector {
    fn default() -> Collector {
        Collector::new(Analyzer::new())
    }
}

impl Collector {
    /// Wraps `analyzer` (online or buffered; see [`Analyzer`]).
    pub fn new(analyzer: Analyzer) -> Collector {
        Collector {
            analyzer,
            ids: HashMap::new(),
            names: Vec::new(),
            open: HashMap::new(),
        }
    }

    fn id(&mut self, name: &str) -> u32 {
        if let Some(&id) = self.ids.get(name) {
            return id;
        }
        let id = self.names.len() as u32;
        self.names.push((name.into(), Vec::new()));
        self.ids.insert(name.into(), id);
        id
    }

    /// The samples, sorted by name, and the analysis of the same events.
    pub fn finish(self) -> (Vec<OpSamples>, Analysis) {
        let analysis = self.analyzer.finish();
        let sides: HashMap<&str, Side> = analysis
            .ops
            .iter()
            .map(|op| (op.name.as_str(), Side::of(op.kind)))
            .collect();
        let mut ops: Vec<OpSamples> = self
            .names
            .into_iter()
            .filter(|(_, occurrences)| !occurrences.is_empty())
            .map(|(name, mut occurrences)| {
                // Stable: equal starts keep trace order.
                occurrences.sort_by_key(|it| it.0);
                OpSamples {
                    side: sides.get(&*name).copied().unwrap_or(Side::Host),
                    name: name.into(),
                    durations: occurrences.into_iter().map(|it| it.1).collect(),
                }
            })
            .collect();
        ops.sort_by(|a, b| a.name.cmp(&b.name));
        (ops, analysis)
    }
}

impl EventSink for Collector {
    fn event(&mut self, event: &Event<'_>) {
        self.analyzer.event(event);
        match event.phase {
            Phase::Complete => {
                if let (Some(ts), Some(dur)) = (event.ts, event.dur)
                    && dur >= 0
                {
                    let id = self.id(event.name);
                    self.names[id as usize].1.push((ts, dur));
                }
            }
            Phase::Begin => {
                if let Some(start) = event.ts {
                    let id = self.id(event.name);
                    self.open
                        .entry((event.pid, event.tid))
                        .or_default()
                        .push((id, start));
                }
            }
            Phase::End => {
                if let Some(end) = event.ts
                    && let Some((id, start)) = self
                        .open
                        .get_mut(&(event.pid, event.tid))
                        .and_then(|it| it.pop())
                    && end >= start
                {
                    self.names[id as usize].1.push((start, end - start));
                }
            }
            _ => {}
        }
    }
}
