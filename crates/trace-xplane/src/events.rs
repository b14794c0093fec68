//! One streamed plane: its metadata tables, then its lines and events as
//! trace-model events.
//!
//! Metadata is decoded into compact tables that borrow their strings from
//! the file. Events are decoded one at a time and handed to the sink before
//! the next one is read, so nothing per event outlives its sink call.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;

use trace_model::{Arg, ArgValue, Event, EventSink, Phase, Ps, SharedArgs};

use crate::Error;
use crate::space::{self, PlaneIndex};
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

/// A map from metadata ids to values, filled entry by entry. Ids below a
/// bound derived from the number of entries (profilers number them densely
/// from 0 or 1) go through a slot table of 4 bytes per id; others go to a
/// hash map. Memory is linear in the number of entries either way.
struct IdMap<T> {
    /// `slots[id]` is an index into `values`, or `u32::MAX` for none.
    slots: Vec<u32>,
    values: Vec<T>,
    sparse: HashMap<i64, u32>,
    limit: i64,
}

impl<T> IdMap<T> {
    fn new(n_entries: usize) -> IdMap<T> {
        IdMap {
            slots: Vec::new(),
            values: Vec::new(),
            sparse: HashMap::new(),
            limit: (n_entries as i64).saturating_mul(2).saturating_add(1024),
        }
    }

    /// A later entry with the same id replaces an earlier one, as protobuf
    /// maps do.
    fn insert(&mut self, id: i64, value: T) {
        let slot = if (0..self.limit).contains(&id) {
            let idx = id as usize;
            if self.slots.len() <= idx {
                self.slots.resize(idx + 1, u32::MAX);
            }
            &mut self.slots[idx]
        } else {
            self.sparse.entry(id).or_insert(u32::MAX)
        };
        if *slot == u32::MAX {
            *slot = self.values.len() as u32;
            self.values.push(value);
        } else {
            self.values[*slot as usize] = value;
        }
    }

    /// Where the value of `id` lies in `values`.
    #[inline]
    fn index(&self, id: i64) -> Option<usize> {
        let slot = match usize::try_from(id).ok().and_then(|i| self.slots.get(i)) {
            Some(&slot) => slot,
            None => *self.sparse.get(&id)?,
        };
        (slot != u32::MAX).then_some(slot as usize)
    }

    #[inline]
    fn get(&self, id: i64) -> Option<&T> {
        self.values.get(self.index(id)?)
    }
}

struct EventMeta<'a> {
    name: &'a str,
    display_name: &'a str,
    internal: bool,
    /// The stats as decoded, until the stat names are known.
    stats: Vec<Stat<'a>>,
    /// The stats that have a value, named, with `ref_value`s resolved to
    /// the name they refer to: what every event of this metadata adds to
    /// its args, worked out once per plane instead of once per event.
    args: Vec<(&'a str, StatValue<'a>)>,
    /// What a sink that takes split args gets as the shared part of every
    /// event of this metadata: `long_name` (when the display name is the
    /// event's name), then `args`. Empty when `shareable` is false.
    shared: Vec<Arg<'a>>,
    /// Whether `shared` can stand for this metadata's args: not when one of
    /// them has to be formatted per event (a `bytes_value`) or renames the
    /// event (`step_name`); such events go out with merged args.
    shareable: bool,
}

/// The summary of [`NO_META`].
const NO_HOT: Hot<'static> = Hot {
    name: "",
    plain: true,
};

static NO_META: EventMeta<'static> = EventMeta {
    name: "",
    display_name: "",
    internal: false,
    stats: Vec::new(),
    args: Vec::new(),
    shared: Vec::new(),
    shareable: false,
};

/// What the event loop needs to know of an event metadata first, in a
/// small record: most events need nothing else.
#[derive(Clone, Copy)]
struct Hot<'a> {
    name: &'a str,
    /// Neither internal nor with a display name or stats: its events go out
    /// as they are, without args.
    plain: bool,
}

/// The decoded metadata of one plane.
pub(crate) struct Tables<'a> {
    /// The plane's place among the streamed planes: the high half of the
    /// ids of its shared args.
    plane_seq: u64,
    events: IdMap<EventMeta<'a>>,
    /// `hot[i]` sums up `events.values[i]`.
    hot: Vec<Hot<'a>>,
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

pub(crate) fn decode_tables<'a>(
    space: &Cursor<'a>,
    plane: &PlaneIndex<'a>,
    plane_seq: usize,
) -> Result<Tables<'a>, Error> {
    let count = |number| {
        space::repeated(space, plane.range, "XPlane", number).try_fold(0usize, |n, it| {
            it?;
            Ok::<_, Error>(n + 1)
        })
    };
    let mut events = IdMap::new(count(4)?);
    for entry in space::repeated(space, plane.range, "XPlane", 4) {
        let (key, value) = map_entry(space, entry?, "event_metadata entry")?;
        let mut meta = EventMeta {
            name: "",
            display_name: "",
            internal: false,
            stats: Vec::new(),
            args: Vec::new(),
            shared: Vec::new(),
            shareable: false,
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
        events.insert(key, meta);
    }
    let mut stat_names = IdMap::new(count(5)?);
    for entry in space::repeated(space, plane.range, "XPlane", 5) {
        let (key, value) = map_entry(space, entry?, "stat_metadata entry")?;
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
        stat_names.insert(key, name);
    }
    let name = |id: i64| stat_names.get(id).copied().unwrap_or("");
    for meta in &mut events.values {
        meta.args = std::mem::take(&mut meta.stats)
            .into_iter()
            .filter_map(|stat| {
                let value = match stat.value? {
                    StatValue::Ref(id) => StatValue::Str(name(id as i64)),
                    value => value,
                };
                Some((name(stat.metadata_id), value))
            })
            .collect();
        meta.shareable = meta
            .args
            .iter()
            .all(|(key, value)| *key != STEP_NAME && !matches!(value, StatValue::Bytes(_)));
        if meta.shareable {
            let long_name = (!meta.display_name.is_empty()).then_some(Arg {
                key: "long_name",
                value: ArgValue::Str(meta.name),
            });
            meta.shared = long_name
                .into_iter()
                .chain(meta.args.iter().map(|&(key, value)| Arg {
                    key,
                    value: match value {
                        StatValue::Double(v) => ArgValue::Float(v),
                        StatValue::Uint(v) => ArgValue::Uint(v),
                        StatValue::Int(v) => ArgValue::Int(v),
                        StatValue::Str(s) => ArgValue::Str(s),
                        StatValue::Bytes(_) | StatValue::Ref(_) => {
                            unreachable!("bytes make a metadata unshareable, refs are resolved")
                        }
                    },
                }))
                .collect();
        }
    }
    let hot = events
        .values
        .iter()
        .map(|meta| Hot {
            name: meta.name,
            plain: !meta.internal && meta.display_name.is_empty() && meta.args.is_empty(),
        })
        .collect();
    Ok(Tables {
        plane_seq: plane_seq as u64,
        events,
        hot,
        stat_names,
    })
}

/// Where events go, and what every event of a read shares.
pub(crate) struct Output<'s, S: EventSink + ?Sized> {
    pub(crate) sink: &'s mut S,
    pub(crate) origin_ps: i128,
    pub(crate) n_events: u64,
    /// Whether the sink takes events with their shared args apart.
    pub(crate) split: bool,
}

impl<S: EventSink + ?Sized> Output<'_, S> {
    fn push(&mut self, event: &Event<'_>) {
        self.sink.event(event);
        self.n_events += 1;
    }

    fn push_split(&mut self, event: &Event<'_>, shared: SharedArgs<'_>) {
        self.sink.split_event(event, shared);
        self.n_events += 1;
    }

    pub(crate) fn metadata(&mut self, name: &str, pid: u64, tid: u64, value: &str) {
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

/// A streamed line that holds events, or a part of one: what its events
/// need from its header.
pub(crate) struct LineRef {
    /// The line's fields to walk: all of them, or a part's share.
    pub(crate) range: (usize, usize),
    pub(crate) id: i64,
    pub(crate) timestamp_ns: i64,
}

/// Buffers reused from one event to the next, so that decoding an event
/// allocates nothing once they have grown to the largest event's size.
#[derive(Default)]
pub(crate) struct Scratch<'a> {
    stats: Vec<Stat<'a>>,
    entries: Vec<(&'a str, StatValue<'a>)>,
    spans: Vec<(usize, usize)>,
    text: String,
    own_keys: HashSet<&'a str>,
    /// Always empty between events; see [`reuse_args`].
    args: Vec<Arg<'static>>,
}

/// An empty vector of args that keeps `args`'s allocation but may borrow
/// for any lifetime (the standard library collects an empty `IntoIter`
/// into its own buffer).
#[allow(
    clippy::unnecessary_filter_map,
    reason = "the map changes the lifetime, which `filter` cannot"
)]
fn reuse_args<'x, 'y>(mut args: Vec<Arg<'x>>) -> Vec<Arg<'y>> {
    args.clear();
    args.into_iter().filter_map(|_| None).collect()
}

/// Pushes the events of `line.range`, a line or a part of one.
pub(crate) fn emit_line<'a, S: EventSink + ?Sized>(
    space: &Cursor<'a>,
    tables: &Tables<'a>,
    line: &LineRef,
    pid: u64,
    out: &mut Output<'_, S>,
    scratch: &mut Scratch<'a>,
) -> Result<(), Error> {
    let line_start = i128::from(line.timestamp_ns) * 1000 - out.origin_ps;
    let mut cursor = space.nested(line.range, "XLine");
    loop {
        // Most events are short and plain: their header and fields are
        // read on fast paths, and anything else goes the general way.
        let at = cursor.position();
        let range = match cursor.short_len(space::EVENT_TAG) {
            Some(range) => range,
            None => match cursor.next_field()? {
                Some(field) if field.number == 4 => cursor.expect_len(&field)?,
                Some(_) => continue,
                None => break,
            },
        };
        let (mut metadata_id, mut offset_ps, mut occurrences, mut dur) = (0, 0, None, 0);
        scratch.stats.clear();
        let stats = &mut scratch.stats;
        // Fields in number order, stats (if any) short and numeric: most
        // events. A plain event in another order, then anything else, take
        // the slower paths.
        let fast = space
            .event_with_stats(range, |id, field, bits| {
                let value = match field {
                    2 => StatValue::Double(f64::from_bits(bits)),
                    3 => StatValue::Uint(bits),
                    4 => StatValue::Int(bits as i64),
                    _ => StatValue::Ref(bits),
                };
                stats.push(Stat {
                    metadata_id: id as i64,
                    value: Some(value),
                });
            })
            .or_else(|| {
                stats.clear();
                space.plain_event(range)
            });
        if let Some([id, offset, duration]) = fast {
            (metadata_id, offset_ps, dur) = (id as i64, offset as i64, duration as i64);
        } else {
            scratch.stats.clear();
            let mut event = space.nested(range, "XEvent");
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
                    4 => scratch
                        .stats
                        .push(decode_stat(&event, event.expect_len(&field)?)?),
                    _ => {}
                }
            }
        }
        let index = tables.events.index(metadata_id);
        let hot = index.map_or(NO_HOT, |i| tables.hot[i]);
        // Most events need nothing from their metadata but its name.
        let meta = if hot.plain && scratch.stats.is_empty() && occurrences.is_none() {
            &NO_META
        } else {
            index.map_or(&NO_META, |i| &tables.events.values[i])
        };
        if meta.internal {
            continue;
        }
        let ts = Ps::try_from(line_start + i128::from(offset_ps))
            .map_err(|_| Error::TimeOutOfRange { at })?;
        let (name, long_name) = if meta.display_name.is_empty() {
            (hot.name, None)
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
        if scratch.stats.is_empty()
            && meta.args.is_empty()
            && long_name.is_none()
            && occurrences.is_none()
        {
            out.push(&plain);
        } else if out.split && meta.shareable && splits(tables, &scratch.stats) {
            let shared = SharedArgs {
                id: tables.plane_seq << 32 | index.expect("a shareable metadata exists") as u64,
                args: &meta.shared,
            };
            push_split(out, tables, plain, shared, occurrences, scratch);
        } else {
            let extra = Extra {
                long_name,
                occurrences,
            };
            push_with_args(out, tables, plain, meta, extra, scratch);
        }
    }
    Ok(())
}

/// At most this many own stats go out split from the shared ones (an
/// event has a few); more, or an own `step_name`, take the merged path.
const SPLIT_OWN_LIMIT: usize = 8;

/// Whether an event with these own stats can go out split.
#[inline]
fn splits(tables: &Tables<'_>, own: &[Stat<'_>]) -> bool {
    own.len() <= SPLIT_OWN_LIMIT
        && own
            .iter()
            .all(|stat| tables.stat_name(stat.metadata_id) != STEP_NAME)
}

/// An event for a sink that takes split args: its own stats (and
/// `num_occurrences`) as args, the metadata's as `shared`. [`splits`]
/// said yes to the own stats.
fn push_split<'a, S: EventSink + ?Sized>(
    out: &mut Output<'_, S>,
    tables: &Tables<'a>,
    plain: Event<'a>,
    shared: SharedArgs<'_>,
    occurrences: Option<i64>,
    scratch: &mut Scratch<'a>,
) {
    let Scratch {
        stats: own,
        text,
        args: args_buf,
        ..
    } = scratch;
    text.clear();
    let mut spans = [(0usize, 0usize); SPLIT_OWN_LIMIT];
    for (stat, span) in own.iter().zip(spans.iter_mut()) {
        if let Some(StatValue::Bytes(n)) = stat.value {
            let start = text.len();
            let _ = write!(text, "<{n} bytes>");
            *span = (start, text.len());
        }
    }
    let text: &str = text;
    let mut args: Vec<Arg<'_>> = reuse_args(std::mem::take(args_buf));
    for (idx, stat) in own.iter().enumerate() {
        let Some(value) = stat.value else { continue };
        let key = tables.stat_name(stat.metadata_id);
        let value = match value {
            StatValue::Double(v) => ArgValue::Float(v),
            StatValue::Uint(v) => ArgValue::Uint(v),
            StatValue::Int(v) => ArgValue::Int(v),
            StatValue::Str(s) => ArgValue::Str(s),
            StatValue::Bytes(_) => {
                let (start, end) = spans[idx];
                ArgValue::Raw(&text[start..end])
            }
            StatValue::Ref(id) => ArgValue::Str(tables.stat_name(id as i64)),
        };
        args.push(Arg { key, value });
    }
    if let Some(n) = occurrences {
        args.push(Arg {
            key: "num_occurrences",
            value: ArgValue::Int(n),
        });
    }
    let mut event = plain;
    event.args = &args;
    out.push_split(&event, shared);
    *args_buf = reuse_args(args);
}

/// The args an event gets besides its stats.
struct Extra<'a> {
    long_name: Option<&'a str>,
    occurrences: Option<i64>,
}

/// Above this many (own stat, metadata stat) pairs, overrides are found
/// through a hash set of the own stats' names instead of by scanning them,
/// so that an event with many stats costs time linear in its stats.
const SCAN_LIMIT: usize = 256;

/// The slow path for the events that carry args. Args are, in order:
/// `long_name`, the event's own stats, the metadata's stats that the event's
/// own do not override, `num_occurrences`.
fn push_with_args<'a, S: EventSink + ?Sized>(
    out: &mut Output<'_, S>,
    tables: &Tables<'a>,
    plain: Event<'a>,
    meta: &EventMeta<'a>,
    extra: Extra<'a>,
    scratch: &mut Scratch<'a>,
) {
    let Scratch {
        stats: own,
        entries,
        spans,
        text: scratch,
        own_keys,
        args: args_buf,
    } = scratch;
    entries.clear();
    for stat in own.iter() {
        if let Some(value) = stat.value {
            entries.push((tables.stat_name(stat.metadata_id), value));
        }
    }
    let n_own = entries.len();
    if n_own == 0 {
        entries.extend_from_slice(&meta.args);
    } else {
        let hashed = n_own.saturating_mul(meta.args.len()) > SCAN_LIMIT;
        if hashed {
            own_keys.clear();
            own_keys.extend(entries.iter().map(|(key, _)| *key));
        }
        for &(key, value) in &meta.args {
            let overridden = if hashed {
                own_keys.contains(key)
            } else {
                entries[..n_own].iter().any(|(it, _)| *it == key)
            };
            if !overridden {
                entries.push((key, value));
            }
        }
    }
    // Text that has to be formatted is written to `scratch` first and sliced
    // out afterwards: `(start, end)` per entry, or for the step name.
    scratch.clear();
    spans.clear();
    for (_, value) in entries.iter() {
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
    let mut args: Vec<Arg<'_>> = reuse_args(std::mem::take(args_buf));
    if let Some(long_name) = extra.long_name {
        args.push(Arg {
            key: "long_name",
            value: ArgValue::Str(long_name),
        });
    }
    for (&(key, value), &span) in entries.iter().zip(spans.iter()) {
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
    // A name formatted into the scratch buffer does not stay put.
    let formatted =
        step.is_some_and(|idx| !matches!(entries[idx].1, StatValue::Str(_) | StatValue::Ref(_)));
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
    if formatted {
        out.sink.stable_names(false);
    }
    out.push(&event);
    if formatted {
        out.sink.stable_names(true);
    }
    *args_buf = reuse_args(args);
}
