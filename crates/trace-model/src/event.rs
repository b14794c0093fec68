//! One trace event as every reader hands it to the analysis.

use crate::time::Ps;

/// The phase of a Chrome trace event (`ph`), which XPlane readers also use:
/// XPlane events are complete events, plane and line names are metadata.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Phase {
    /// `X`: an event with a start and a duration.
    Complete,
    /// `B`: the start of a duration event, closed by a matching `E`.
    Begin,
    /// `E`: the end of the innermost open `B` on the same thread.
    End,
    /// `i` or `I`: an instant.
    Instant,
    /// `C`: a counter sample.
    Counter,
    /// `M`: process and thread names and sort indices.
    Metadata,
    /// Any other phase letter (async, flow, sample, object events...).
    Other(char),
    /// No `ph` member at all, such as the empty `{}` JAX writes last.
    Missing,
}

impl Phase {
    /// Maps the `ph` string of a Chrome trace event to a phase.
    pub fn from_code(code: &str) -> Phase {
        match code {
            "X" => Phase::Complete,
            "B" => Phase::Begin,
            "E" => Phase::End,
            "i" | "I" => Phase::Instant,
            "C" => Phase::Counter,
            "M" => Phase::Metadata,
            _ => Phase::Other(code.chars().next().unwrap_or('?')),
        }
    }

    /// The letter used in reports and `summary.json`, or `(none)` for a
    /// missing phase. Instants are reported as `i` whichever case was used.
    pub fn label(self) -> String {
        match self {
            Phase::Complete => "X".to_owned(),
            Phase::Begin => "B".to_owned(),
            Phase::End => "E".to_owned(),
            Phase::Instant => "i".to_owned(),
            Phase::Counter => "C".to_owned(),
            Phase::Metadata => "M".to_owned(),
            Phase::Other(c) => c.to_string(),
            Phase::Missing => "(none)".to_owned(),
        }
    }

    /// A short English name for the phase, as in the seed report
    /// ("X (complete)").
    pub fn description(self) -> &'static str {
        match self {
            Phase::Complete => "complete",
            Phase::Begin => "begin",
            Phase::End => "end",
            Phase::Instant => "instant",
            Phase::Counter => "counter",
            Phase::Metadata => "metadata",
            Phase::Other(_) => "other",
            Phase::Missing => "no phase",
        }
    }
}

/// The value of one entry of an event's `args` (Chrome) or stats (XPlane).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ArgValue<'a> {
    Str(&'a str),
    Int(i64),
    Uint(u64),
    Float(f64),
    Bool(bool),
    Null,
    /// A nested object or array, as its raw JSON text; or raw bytes of an
    /// XPlane `bytes_value`, rendered as `<N bytes>`.
    Raw(&'a str),
}

/// One entry of an event's `args`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Arg<'a> {
    pub key: &'a str,
    pub value: ArgValue<'a>,
}

/// One trace event. Strings borrow from the reader, so a sink that wants to
/// keep a name must copy or intern it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Event<'a> {
    pub phase: Phase,
    /// `name`; empty when absent.
    pub name: &'a str,
    /// `cat`; empty when absent.
    pub cat: &'a str,
    /// Process id. Chrome string ids and XPlane plane ids are mapped to
    /// numbers by the reader.
    pub pid: u64,
    /// Thread id (XPlane: the line id).
    pub tid: u64,
    /// Start, relative to the reader's origin; `None` when the event has no
    /// `ts` (metadata events, the trailing `{}`).
    pub ts: Option<Ps>,
    /// Duration of a complete event; `None` for other phases.
    pub dur: Option<Ps>,
    pub args: &'a [Arg<'a>],
}

impl<'a> Event<'a> {
    /// The value of the arg named `key`, if any.
    pub fn arg(&self, key: &str) -> Option<ArgValue<'a>> {
        self.args.iter().find(|it| it.key == key).map(|it| it.value)
    }
}

/// Receives the events of a trace, in file order.
pub trait EventSink {
    fn event(&mut self, event: &Event<'_>);

    /// A reader calls this with `true` when the names of the events that
    /// follow lie in memory that stays as it is, and holds no other name at
    /// the same place, until it calls this with `false` (at the latest
    /// before it returns). A sink may then tell names apart by address and
    /// length alone, without reading them. The default ignores it.
    fn stable_names(&mut self, _stable: bool) {}
}

impl<F: FnMut(&Event<'_>)> EventSink for F {
    fn event(&mut self, event: &Event<'_>) {
        self(event)
    }
}

/// What a reader reports once it has pushed every event of a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadSummary {
    /// Number of events pushed into the sink, every phase included.
    pub n_events: u64,
    /// The absolute time, in picoseconds, of `ts == 0`: for XPlane,
    /// nanoseconds since the Unix epoch times 1000; for Chrome traces, whatever
    /// zero the file's `ts` values use plus any shift the reader applied.
    pub origin_ps: i128,
}
