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

/// The args an event shares with other events, as an XPlane reader has
/// them: the stats of the event's metadata (and its `long_name`), which
/// every event of that metadata carries. A sink that takes them apart
/// ([`EventSink::split_event`]) can work them out once per `id` instead of
/// once per event.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SharedArgs<'a> {
    /// Within one call of a reader (or one part of it), events with the
    /// same `id` have the same shared `args`, and different shared args have
    /// different ids.
    pub id: u64,
    pub args: &'a [Arg<'a>],
}

/// Receives the events of a trace, in file order.
pub trait EventSink {
    fn event(&mut self, event: &Event<'_>);

    /// Whether the sink wants events with shared args through
    /// [`EventSink::split_event`]. A reader asks once, before its first
    /// event; the default is no, and such a sink gets every event's args
    /// merged into one list.
    fn takes_split_args(&self) -> bool {
        false
    }

    /// An event whose args are its own, `event.args`, followed by those of
    /// `shared.args` whose key none of its own has (an own arg overrides a
    /// shared one of the same key). Readers call it instead of
    /// [`EventSink::event`] only for a sink that [`EventSink::takes_split_args`];
    /// they may still call [`EventSink::event`] for events without shared
    /// args. The default merges the two lists and calls `event`.
    fn split_event(&mut self, event: &Event<'_>, shared: SharedArgs<'_>) {
        let mut args: Vec<Arg<'_>> = event.args.to_vec();
        args.extend(
            shared
                .args
                .iter()
                .filter(|it| !event.args.iter().any(|own| own.key == it.key)),
        );
        self.event(&Event {
            args: &args,
            ..*event
        });
    }

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
    /// The time, in picoseconds, of `ts == 0` on the file's own clock: for
    /// XPlane, the lines' `timestamp_ns` times 1000; for Chrome traces,
    /// whatever zero the file's `ts` values use plus any shift the reader
    /// applied. Current JAX counts both from the profiler's start, not from
    /// the Unix epoch: the start itself, in epoch nanoseconds, is only in
    /// the XPlane's `Task Environment` plane (`profile_start_time`).
    pub origin_ps: i128,
}
