//! A streaming reader of JAX/XLA profiler `.xplane.pb` files (an `XSpace`
//! protobuf message) that pushes [`trace_model::Event`]s into an
//! [`EventSink`].
//!
//! The reader walks the protobuf wire format by hand over the caller's byte
//! slice: XSpace, then XPlane, XLine and XEvent. Only each streamed plane's
//! metadata tables are decoded up front, into compact tables whose strings
//! borrow from the bytes; opaque blobs such as the HLO protos of the
//! `/host:metadata` plane are skipped unread. Events are decoded one at a
//! time, so memory stays at the file plus the metadata tables. The prost
//! types in [`generated`] describe the same format for code that builds
//! XSpaces (tests, fixture tools); the reader itself does not use them.
//!
//! [`read_parts`] gives the same stream cut into consecutive parts, each
//! read on a thread of its own into its own sink, for sinks whose results
//! can be joined afterwards.
//!
//! This crate does no file IO, no decompression and no analysis: callers read
//! the file and choose the sink. Chrome trace JSON is `trace-chrome`'s job.
//!
//! # What the event stream contains
//!
//! The stream is built to agree with the `*.trace.json.gz` that JAX writes
//! from the same XSpace (tsl's XSpace to trace-viewer JSON conversion):
//! for complete events grouped by name, the names, counts and total
//! durations match. The rules, checked on a real sglang-jax CPU profile
//! where the profile has the case and otherwise taken from the converter:
//!
//! - **Planes.** Only the planes the JSON export shows are streamed: the
//!   host plane `/host:CPU`, then the device planes of the first family
//!   present among `/device:GPU:*`, `/device:TPU:*` and `/device:CUSTOM:*`,
//!   in file order. Every other plane (`/host:metadata`, which carries the
//!   HLO protos; `Task Environment`; others) is left out of the stream, and
//!   [`planes`] lists every plane with a `streamed` flag.
//! - **Processes.** Each streamed plane gives one `process_name` metadata
//!   event, `args.name` = the plane name, with the JSON export's pid: 701
//!   for `/host:CPU`, `1 + plane id` for a device plane.
//! - **Threads.** Each line gives one `thread_name` metadata event with
//!   `tid` = the line id and `args.name` = `display_name`, else `name`.
//!   (The JSON export uses the low 32 bits of `display_id`, else `id`, as
//!   the tid; names are the same.) Lines shown as `Async XLA Ops` are left
//!   out, with their events, as in the JSON export.
//! - **Events.** Each XEvent gives one [`Phase::Complete`] event, except
//!   profiler-internal ones (`MemoryAllocation`, `PrefetchProduce` and the
//!   other tf.data producer/consumer markers), which the JSON export drops.
//!   The name is the metadata's `display_name`, else its `name`; when the
//!   display name is used, `args.long_name` holds the full name. A stat
//!   named `step_name` replaces the name, as in the JSON export.
//! - **Times.** An event starts at `line.timestamp_ns * 1000 +
//!   event.offset_ps` picoseconds. `ts` is relative to the origin, the
//!   earliest `timestamp_ns * 1000` among the streamed lines that have
//!   events, reported in [`ReadSummary::origin_ps`]. `dur` is `duration_ps`
//!   as stored: zero stays zero, while the JSON export writes at least 1 ps.
//! - **Aggregated events.** An event with `num_occurrences` instead of
//!   `offset_ps` starts at its line's timestamp, gives one event (not one
//!   per occurrence) with its stored duration, as in the JSON export, and
//!   gets an extra `args.num_occurrences`.
//! - **Args.** The event's own stats, then its metadata's stats that the
//!   event does not override (the JSON export's order of precedence), named
//!   through the plane's stat metadata. `ref_value` becomes the referenced
//!   stat metadata's name as a string; `bytes_value` becomes
//!   `ArgValue::Raw("<N bytes>")`; stats without a value are skipped.
//!   Unlike the JSON export, stats the converter treats as internal (`_p`,
//!   `_pt`, `_c`, `_ct`, `program_id`, ...) are kept. An id missing from
//!   the metadata tables gives an empty name.
//!
//! Reading is strict: the wire type of every known field is checked,
//! strings must be UTF-8, and a file with no plane is rejected, so another
//! format is never mistaken for an empty trace. Malformed input gives an
//! [`Error`]; no input makes the reader panic.

mod error;
mod events;
mod layout;
#[rustfmt::skip]
pub mod generated;
mod plane_stats;
mod space;
mod tile;
mod wire;

use trace_model::{EventSink, ReadSummary};

pub use error::Error;
pub use plane_stats::{PlaneStatValue, PlaneStats, plane_stats};
pub use tile::{TileError, tile};

use events::Output;
use layout::Layout;
use space::{PlaneIndex, Selection};

/// What [`planes`] reports about one plane of an XSpace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlaneInfo {
    pub id: i64,
    /// For example `/host:CPU` or `/device:TPU:0`.
    pub name: String,
    pub n_lines: usize,
    /// Events on all lines, aggregated and internal ones included.
    pub n_events: u64,
    /// Whether [`read`] streams this plane's lines and events.
    pub streamed: bool,
}

/// Calls `f` with every plane, in file order.
fn for_each_plane<'a>(
    space: &wire::Cursor<'a>,
    mut f: impl FnMut(u64, PlaneIndex<'a>) -> Result<(), Error>,
) -> Result<(), Error> {
    let planes = space::repeated(space, space::whole(space), "XSpace", 1);
    for (idx, range) in planes.enumerate() {
        f(idx as u64, space::index_plane(space, range?)?)?;
    }
    Ok(())
}

/// The distinct names of the planes, in order of first appearance:
/// [`planes`] without counting events, so it does not walk the events at
/// all. Memory grows with the distinct names, not with the planes.
pub fn plane_names(bytes: &[u8]) -> Result<Vec<String>, Error> {
    let space = space::index_space(bytes)?;
    let mut seen = std::collections::HashSet::new();
    let mut names = Vec::new();
    for_each_plane(&space, |_, plane| {
        if seen.insert(plane.name) {
            names.push(plane.name.to_owned());
        }
        Ok(())
    })?;
    Ok(names)
}

/// Lists the planes of an XSpace, in file order, without decoding events
/// (their headers are walked to count them).
pub fn planes(bytes: &[u8]) -> Result<Vec<PlaneInfo>, Error> {
    let space = space::index_space(bytes)?;
    let selection = Selection::of(&space)?;
    let mut res = Vec::new();
    for_each_plane(&space, |idx, plane| {
        let (mut n_lines, mut n_events) = (0, 0);
        for range in plane.lines(&space) {
            n_lines += 1;
            n_events += space::index_line(&space, range?)?.n_events;
        }
        res.push(PlaneInfo {
            id: plane.id,
            name: plane.name.to_owned(),
            n_lines,
            n_events,
            streamed: selection.contains(idx, plane.name),
        });
        Ok(())
    })?;
    Ok(res)
}

/// Reads an XSpace and pushes its events into `sink`, following the rules in
/// the crate docs. On error, the sink may already have received events.
///
/// Memory does not grow with the events, which are decoded one at a time:
/// one walk over the streamed planes' line headers keeps a small record per
/// streamed plane and per line that holds events, then the events are
/// decoded line by line.
pub fn read(bytes: &[u8], sink: &mut dyn EventSink) -> Result<ReadSummary, Error> {
    Stream::new(bytes)?.read(sink)
}

/// A streamed line, as [`read_lines`] asks about it: the pid and tid its
/// events get and the names of its plane and of itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LineInfo<'a> {
    pub pid: u64,
    pub plane: &'a str,
    pub tid: u64,
    pub line: &'a str,
}

/// [`read`] restricted to the lines `keep` accepts: every streamed plane's
/// `process_name` and `thread_name` events, then the events of those
/// lines, with the same origin as `read`; the other lines' events are not
/// decoded. A sink that needs what some lines say before it sees others
/// (the device view's idle gaps before the host's events), or that wants
/// a few lines again, reads them this way instead of keeping events.
pub fn read_lines(
    bytes: &[u8],
    keep: &dyn Fn(&LineInfo<'_>) -> bool,
    sink: &mut dyn EventSink,
) -> Result<ReadSummary, Error> {
    Stream::new(bytes)?.read_lines(keep, sink)
}

/// [`read`] on several cores: the stream is cut into `sinks.len()`
/// consecutive parts of about equal size, and sink `k` receives part `k`,
/// on a thread of its own (the caller's thread takes the first part).
/// Pushing the parts into one sink in order would give exactly what
/// [`read`] gives; a sink that can join the analyses of consecutive parts
/// (such as `trace_analysis::Analyzer::merge`) gets the whole result.
///
/// Cuts fall between events, never between two events of one line that
/// have the same start. A part may be empty (a small file, or one long
/// event), so fewer than `sinks.len()` threads may be busy. The summary
/// counts every part's events; on error, the first part's error in stream
/// order is returned and the sinks may already have received events.
pub fn read_parts<S: EventSink + Send>(
    bytes: &[u8],
    sinks: &mut [S],
) -> Result<ReadSummary, Error> {
    Stream::new(bytes)?.read_parts(sinks)
}

/// An XSpace laid out once for several reads: the walk over every streamed
/// line's event headers that each of [`read`], [`read_lines`] and
/// [`read_parts`] starts with is done by [`Stream::new`] alone, and each
/// read here gives what the function of the same name gives.
pub struct Stream<'a> {
    space: wire::Cursor<'a>,
    layout: Layout<'a>,
}

impl<'a> Stream<'a> {
    /// Checks the XSpace's planes and walks its streamed lines' headers.
    pub fn new(bytes: &'a [u8]) -> Result<Stream<'a>, Error> {
        let space = space::index_space(bytes)?;
        let layout = Layout::of(&space, Selection::of(&space)?)?;
        Ok(Stream { space, layout })
    }

    /// [`read`].
    pub fn read(&self, sink: &mut dyn EventSink) -> Result<ReadSummary, Error> {
        self.read_all(&self.layout, sink)
    }

    /// [`read_lines`].
    pub fn read_lines(
        &self,
        keep: &dyn Fn(&LineInfo<'_>) -> bool,
        sink: &mut dyn EventSink,
    ) -> Result<ReadSummary, Error> {
        self.read_all(&self.layout.only_lines(keep), sink)
    }

    /// [`read_parts`].
    pub fn read_parts<S: EventSink + Send>(&self, sinks: &mut [S]) -> Result<ReadSummary, Error> {
        self.parts(&self.layout, sinks)
    }

    /// [`read_parts`] of what [`read_lines`] gives: every plane's metadata
    /// events and the events of the lines `keep` accepts, cut into parts.
    pub fn read_parts_of_lines<S: EventSink + Send>(
        &self,
        keep: &dyn Fn(&LineInfo<'_>) -> bool,
        sinks: &mut [S],
    ) -> Result<ReadSummary, Error> {
        self.parts(&self.layout.only_lines(keep), sinks)
    }

    fn read_all(
        &self,
        layout: &Layout<'a>,
        sink: &mut dyn EventSink,
    ) -> Result<ReadSummary, Error> {
        let n_events = emit_part(layout, &self.space, layout.start(), layout.end(), sink)?;
        Ok(ReadSummary {
            n_events,
            origin_ps: layout.origin_ps,
        })
    }

    fn parts<S: EventSink + Send>(
        &self,
        layout: &Layout<'a>,
        sinks: &mut [S],
    ) -> Result<ReadSummary, Error> {
        let space = &self.space;
        let mut cuts = layout.cuts(space, sinks.len().max(1))?;
        // Empty parts at the end when the stream cannot be cut that finely.
        while cuts.len() <= sinks.len() {
            cuts.push(layout.end());
        }
        let run = |sink: &mut S, from, to| emit_part(layout, space, from, to, sink);
        let results: Vec<Result<u64, Error>> = std::thread::scope(|scope| {
            let mut sinks = sinks.iter_mut().zip(cuts.windows(2));
            let first = sinks.next();
            let handles: Vec<_> = sinks
                .map(|(sink, cut)| scope.spawn(|| run(sink, cut[0], cut[1])))
                .collect();
            let mut results = Vec::new();
            if let Some((sink, cut)) = first {
                results.push(run(sink, cut[0], cut[1]));
            }
            for handle in handles {
                results.push(
                    handle
                        .join()
                        .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
                );
            }
            results
        });
        let mut n_events = 0;
        for result in results {
            n_events += result?;
        }
        Ok(ReadSummary {
            n_events,
            origin_ps: layout.origin_ps,
        })
    }
}

/// Pushes the events between two cuts into `sink` and counts them.
fn emit_part<S: EventSink + ?Sized>(
    layout: &Layout<'_>,
    space: &wire::Cursor<'_>,
    from: layout::Cut,
    to: layout::Cut,
    sink: &mut S,
) -> Result<u64, Error> {
    let split = sink.takes_split_args();
    let mut out = Output {
        sink,
        origin_ps: layout.origin_ps,
        n_events: 0,
        split,
    };
    // Event names borrow from the file (or are constants), except the step
    // names the reader formats itself, which it pushes outside this window.
    out.sink.stable_names(true);
    let res = layout.emit(space, from, to, &mut out);
    out.sink.stable_names(false);
    res.map(|()| out.n_events)
}
