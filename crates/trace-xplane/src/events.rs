//! One streamed plane: its metadata tables, then its lines and events as
//! trace-model events.
//!
//! Metadata is decoded into compact tables that borrow their strings from
//! the file. Events are decoded one at a time and handed to the sink before
//! the next one is read, so nothing per event outlives its sink call.

use std::collections::HashMap;
use std::fmt::Write as _;

use trace_model::{Arg, ArgValue, Event, EventSink, Phase, Ps};

use crate::Error;
use crate::space::{LineHeader, PlaneIndex};
use crate::wire::Cursor;

/// Event names that the profiler uses for bookkeeping and that the JSON
/// export never shows (tsl `IsInternalEvent`).
const INTERNAL_EVENTS: [&str; 13] = [
    "MemoryAllocation",
    "MemoryDeallocation",
    "PrefetchProduce",
    "PrefetchConsume",
    "ParallelInterleaveProduce",
    "ParallelInterleaveConsume",
    "ParallelInterleaveInitializeInput",
    "ParallelMapProduce",
    "ParallelMapConsume",
    "MapAndBatchProduce",
    "MapAndBatchConsume",
    "ParseExampleProduce",
    "ParseExampleConsume",
];

/// The stat whose value the JSON export uses as the event's name.
const STEP_NAME: &str = "step_name";

#[derive(Clone, Copy, Debug)]
enum StatValue<'a> {
    Double(f64),
    Uint(u64),
    Int(i64),
    Str(&'a str),
    /// A `bytes_value`, kept only as its length.
    Bytes(usize),
    /// A `ref_value`: the id of the stat metadata whose name is the value.
    Ref(u64),
}

#[derive(Clone, Copy, Debug)]
struct Stat<'a> {
    metadata_id: i64,
    /// `None` when no value is set; such stats are not shown.
    value: Option<StatValue<'a>>,
}

fn decode_stat<'a>(parent: &Cursor<'a>, range: (usize, usize)) -> Result<Stat<'a>, Error> {
    let mut cursor = parent.nested(range, "XStat");
    let mut stat = Stat {
        metadata_id: 0,
        value: None,
    };
    while let Some(field) = cursor.next_field()? {
        let value = match field.number {
            1 => {
                stat.metadata_id = cursor.expect_varint(&field)? as i64;
                continue;
            }
            2 => StatValue::Double(f64::from_bits(cursor.expect_fixed64(&field)?)),
            3 => StatValue::Uint(cursor.expect_varint(&field)?),
            4 => StatValue::Int(cursor.expect_varint(&field)? as i64),
            5 => StatValue::Str(cursor.expect_str(&field)?),
            6 => {
                let (start, end) = cursor.expect_len(&field)?;
                StatValue::Bytes(end - start)
            }
            7 => StatValue::Ref(cursor.expect_varint(&field)?),
            _ => continue,
        };
        // The value is a oneof: the last one on the wire wins.
        stat.value = Some(value);
    }
    Ok(stat)
}

/// A map from metadata ids to values: a vector when the ids are small and
/// dense, as profilers write them, a hash map otherwise.
enum IdMap<T> {
    Dense(Vec<Option<T>>),
    Sparse(HashMap<i64, T>),
}

impl<T> IdMap<T> {
    /// Later entries with the same id replace earlier ones, as protobuf maps do.
    fn new(entries: Vec<(i64, T)>) -> IdMap<T> {
        let limit = entries.len() as i64 * 4 + 1024;
        if entries.iter().all(|(id, _)| (0..limit).contains(id)) {
            let size = entries
                .iter()
                .map(|(id, _)| *id as usize + 1)
                .max()
                .unwrap_or(0);
            let mut dense: Vec<Option<T>> = (0..size).map(|_| None).collect();
            for (id, value) in entries {
                dense[id as usize] = Some(value);
            }
            IdMap::Dense(dense)
        } else {
            IdMap::Sparse(entries.into_iter().collect())
        }
    }

    #[inline]
    fn get(&self, id: i64) -> Option<&T> {
        match self {
            IdMap::Dense(dense) => usize::try_from(id)
                .ok()
                .and_then(|i| dense.get(i)?.as_ref()),
            IdMap::Sparse(sparse) => sparse.get(&id),
        }
    }
}

struct EventMeta<'a> {
    name: &'a str,
    display_name: &'a str,
    internal: bool,
    stats: Vec<Stat<'a>>,
}

static NO_META: EventMeta<'static> = EventMeta {
    name: "",
    display_name: "",
    internal: false,
    stats: Vec::new(),
};

/// The decoded metadata of one plane.
struct Tables<'a> {
    events: IdMap<EventMeta<'a>>,
    stat_names: IdMap<&'a str>,
}

impl<'a> Tables<'a> {
    /// A stat's name; empty for an id missing from the table, as in the
    /// JSON export.
    fn stat_name(&self, id: i64) -> &'a str {
        self.stat_names.get(id).copied().unwrap_or("")
    }
}

/// Splits a map entry into its key and the range of its value message.
fn map_entry(
    parent: &Cursor<'_>,
    range: (usize, usize),
    message: &'static str,
) -> Result<(i64, Option<(usize, usize)>), Error> {
    let mut cursor = parent.nested(range, message);
    let (mut key, mut value) = (0, None);
    while let Some(field) = cursor.next_field()? {
        match field.number {
            1 => key = cursor.expect_varint(&field)? as i64,
            2 => value = Some(cursor.expect_len(&field)?),
            _ => {}
        }
    }
    Ok((key, value))
}

fn decode_tables<'a>(space: &Cursor<'a>, plane: &PlaneIndex<'a>) -> Result<Tables<'a>, Error> {
    let mut events = Vec::with_capacity(plane.event_metadata.len());
    for &entry in &plane.event_metadata {
        let (key, value) = map_entry(space, entry, "event_metadata entry")?;
        let mut meta = EventMeta {
            name: "",
            display_name: "",
            internal: false,
            stats: Vec::new(),
        };
        if let Some(range) = value {
            let mut cursor = space.nested(range, "XEventMetadata");
            while let Some(field) = cursor.next_field()? {
                match field.number {
                    1 => {
                        cursor.expect_varint(&field)?;
                    }
                    2 => meta.name = cursor.expect_str(&field)?,
                    // The opaque `metadata` blob (an HLO module, say) is skipped unread.
                    3 => {
                        cursor.expect_len(&field)?;
                    }
                    4 => meta.display_name = cursor.expect_str(&field)?,
                    5 => meta
                        .stats
                        .push(decode_stat(&cursor, cursor.expect_len(&field)?)?),
                    // child_id: packed or not, both are valid.
                    _ => {}
                }
            }
        }
        meta.internal = INTERNAL_EVENTS.contains(&meta.name);
        events.push((key, meta));
    }
    let mut stat_names = Vec::with_capacity(plane.stat_metadata.len());
    for &entry in &plane.stat_metadata {
        let (key, value) = map_entry(space, entry, "stat_metadata entry")?;
        let mut name = "";
        if let Some(range) = value {
            let mut cursor = space.nested(range, "XStatMetadata");
            while let Some(field) = cursor.next_field()? {
                match field.number {
                    1 => {
                        cursor.expect_varint(&field)?;
                    }
                    2 => name = cursor.expect_str(&field)?,
                    3 => {
                        cursor.expect_str(&field)?;
                    }
                    _ => {}
                }
            }
        }
        stat_names.push((key, name));
    }
    Ok(Tables {
        events: IdMap::new(events),
        stat_names: IdMap::new(stat_names),
    })
}

/// Everything `emit_plane` needs besides the plane itself.
pub(crate) struct Output<'s> {
    pub(crate) sink: &'s mut dyn EventSink,
    pub(crate) origin_ps: i128,
    pub(crate) n_events: u64,
}

impl Output<'_> {
    fn push(&mut self, event: &Event<'_>) {
        self.sink.event(event);
        self.n_events += 1;
    }

    fn metadata(&mut self, name: &str, pid: u64, tid: u64, value: &str) {
        let args = [Arg {
            key: "name",
            value: ArgValue::Str(value),
        }];
        self.push(&Event {
            phase: Phase::Metadata,
            name,
            cat: "",
            pid,
            tid,
            ts: None,
            dur: None,
            args: &args,
        });
    }
}

/// Pushes a plane's `process_name`, its lines' `thread_name`s and then every
/// event of every line, line by line.
pub(crate) fn emit_plane<'a>(
    space: &Cursor<'a>,
    plane: &PlaneIndex<'a>,
    lines: &[LineHeader<'a>],
    pid: u64,
    out: &mut Output<'_>,
) -> Result<(), Error> {
    let tables = decode_tables(space, plane)?;
    out.metadata("process_name", pid, 0, plane.name);
    for line in lines.iter().filter(|it| !it.is_skipped()) {
        out.metadata("thread_name", pid, line.id as u64, line.shown_name());
    }
    let mut stats: Vec<Stat<'a>> = Vec::new();
    let mut scratch = String::new();
    for line in lines.iter().filter(|it| !it.is_skipped()) {
        let line_start = i128::from(line.timestamp_ns) * 1000 - out.origin_ps;
        let mut cursor = space.nested(line.range, "XLine");
        while let Some(field) = cursor.next_field()? {
            if field.number != 4 {
                continue;
            }
            let range = cursor.expect_len(&field)?;
            let mut event = space.nested(range, "XEvent");
            let (mut metadata_id, mut offset_ps, mut occurrences, mut dur) = (0, 0, None, 0);
            stats.clear();
            while let Some(field) = event.next_field()? {
                match field.number {
                    1 => metadata_id = event.expect_varint(&field)? as i64,
                    // `offset_ps` and `num_occurrences` are a oneof: the last wins.
                    2 => {
                        offset_ps = event.expect_varint(&field)? as i64;
                        occurrences = None;
                    }
                    5 => {
                        occurrences = Some(event.expect_varint(&field)? as i64);
                        offset_ps = 0;
                    }
                    3 => dur = event.expect_varint(&field)? as i64,
                    4 => stats.push(decode_stat(&event, event.expect_len(&field)?)?),
                    _ => {}
                }
            }
            let meta = tables.events.get(metadata_id).unwrap_or(&NO_META);
            if meta.internal {
                continue;
            }
            let ts = Ps::try_from(line_start + i128::from(offset_ps))
                .map_err(|_| Error::TimeOutOfRange { at: field.at })?;
            let (name, long_name) = if meta.display_name.is_empty() {
                (meta.name, None)
            } else {
                (meta.display_name, Some(meta.name))
            };
            let plain = Event {
                phase: Phase::Complete,
                name,
                cat: "",
                pid,
                tid: line.id as u64,
                ts: Some(ts),
                dur: Some(dur),
                args: &[],
            };
            if stats.is_empty()
                && meta.stats.is_empty()
                && long_name.is_none()
                && occurrences.is_none()
            {
                out.push(&plain);
            } else {
                let extra = Extra {
                    long_name,
                    occurrences,
                };
                push_with_args(out, &tables, plain, meta, &stats, extra, &mut scratch);
            }
        }
    }
    Ok(())
}

/// The args an event gets besides its stats.
struct Extra<'a> {
    long_name: Option<&'a str>,
    occurrences: Option<i64>,
}

/// The slow path for the few events that carry args. Args are, in order:
/// `long_name`, the event's own stats, the metadata's stats that the event's
/// own do not override, `num_occurrences`.
fn push_with_args<'a>(
    out: &mut Output<'_>,
    tables: &Tables<'a>,
    plain: Event<'a>,
    meta: &EventMeta<'a>,
    own: &[Stat<'a>],
    extra: Extra<'a>,
    scratch: &mut String,
) {
    let mut entries: Vec<(&'a str, StatValue<'a>)> =
        Vec::with_capacity(own.len() + meta.stats.len());
    for stat in own {
        if let Some(value) = stat.value {
            entries.push((tables.stat_name(stat.metadata_id), value));
        }
    }
    let n_own = entries.len();
    for stat in &meta.stats {
        if let Some(value) = stat.value {
            let key = tables.stat_name(stat.metadata_id);
            if !entries[..n_own].iter().any(|(it, _)| *it == key) {
                entries.push((key, value));
            }
        }
    }
    // Text that has to be formatted is written to `scratch` first and sliced
    // out afterwards: `(start, end)` per entry, or for the step name.
    scratch.clear();
    let mut spans: Vec<(usize, usize)> = Vec::with_capacity(entries.len());
    for (_, value) in &entries {
        let start = scratch.len();
        if let StatValue::Bytes(n) = value {
            let _ = write!(scratch, "<{n} bytes>");
        }
        spans.push((start, scratch.len()));
    }
    let step = entries.iter().position(|(key, _)| *key == STEP_NAME);
    let step_span = step.map(|idx| {
        let start = scratch.len();
        match entries[idx].1 {
            StatValue::Double(v) => {
                let _ = write!(scratch, "{v}");
            }
            StatValue::Uint(v) => {
                let _ = write!(scratch, "{v}");
            }
            StatValue::Int(v) => {
                let _ = write!(scratch, "{v}");
            }
            StatValue::Str(_) | StatValue::Bytes(_) | StatValue::Ref(_) => {}
        }
        (start, scratch.len())
    });
    let scratch: &str = scratch;
    let text = |value: StatValue<'a>, span: (usize, usize)| -> ArgValue<'_> {
        match value {
            StatValue::Double(v) => ArgValue::Float(v),
            StatValue::Uint(v) => ArgValue::Uint(v),
            StatValue::Int(v) => ArgValue::Int(v),
            StatValue::Str(s) => ArgValue::Str(s),
            StatValue::Bytes(_) => ArgValue::Raw(&scratch[span.0..span.1]),
            StatValue::Ref(id) => ArgValue::Str(tables.stat_name(id as i64)),
        }
    };
    let mut args: Vec<Arg<'_>> = Vec::with_capacity(entries.len() + 2);
    if let Some(long_name) = extra.long_name {
        args.push(Arg {
            key: "long_name",
            value: ArgValue::Str(long_name),
        });
    }
    for (&(key, value), &span) in entries.iter().zip(&spans) {
        args.push(Arg {
            key,
            value: text(value, span),
        });
    }
    if let Some(n) = extra.occurrences {
        args.push(Arg {
            key: "num_occurrences",
            value: ArgValue::Int(n),
        });
    }
    let mut event = plain;
    if let (Some(idx), Some(span)) = (step, step_span) {
        event.name = match entries[idx].1 {
            StatValue::Str(s) => s,
            StatValue::Ref(id) => tables.stat_name(id as i64),
            StatValue::Bytes(_) => &scratch[spans[idx].0..spans[idx].1],
            StatValue::Double(_) | StatValue::Uint(_) | StatValue::Int(_) => {
                &scratch[span.0..span.1]
            }
        };
    }
    event.args = &args;
    out.push(&event);
}
