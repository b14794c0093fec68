//! Where the event stream of [`crate::read`] and [`crate::read_parts`] comes from, as a list of
//! segments, and how to cut it into consecutive parts.
//!
//! The stream is, plane by plane: the plane's metadata events (a
//! [`Segment::Header`]), then the events of each of its lines that hold
//! some (a [`Segment::Events`], a byte range of the line). One walk over
//! the streamed planes' line headers finds every segment and the origin;
//! the events themselves are decoded only when a part is emitted.

use trace_model::{EventSink, Ps};

use crate::Error;
use crate::events::{self, Output, Scratch, Tables};
use crate::space::{self, PlaneIndex, Selection};
use crate::wire::Cursor;

/// A streamed plane.
#[derive(Clone)]
struct PlaneRef<'a> {
    index: PlaneIndex<'a>,
    pid: u64,
}

#[derive(Clone, Copy)]
enum Segment<'a> {
    /// The plane's `process_name` and `thread_name` events.
    Header { plane: usize },
    /// Events of one line: the byte range of the line's fields.
    Events {
        plane: usize,
        line_id: i64,
        timestamp_ns: i64,
        range: (usize, usize),
        shown_name: &'a str,
        /// Whether its events are in the stream: a layout of some lines
        /// ([`Layout::only_lines`]) keeps the others' segments for their
        /// names, which the plane's metadata events give.
        kept: bool,
        /// Where its [`space::LineHeader::checkpoints`] are in
        /// [`Layout::checkpoints`].
        checkpoints: (usize, usize),
    },
}

/// A point in the stream: the fields of segment `segment` from byte `at`
/// on come after it. `at` is where a field of the line starts, or the end
/// of the line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Cut {
    segment: usize,
    at: usize,
}

pub(crate) struct Layout<'a> {
    planes: Vec<PlaneRef<'a>>,
    segments: Vec<Segment<'a>>,
    /// Every line's checkpoints, one line after the other.
    checkpoints: Vec<usize>,
    pub(crate) origin_ps: i128,
}

impl<'a> Layout<'a> {
    /// Walks the streamed planes' line headers once.
    pub(crate) fn of(space: &Cursor<'a>, selection: Selection) -> Result<Layout<'a>, Error> {
        let mut layout = Layout {
            planes: Vec::new(),
            segments: Vec::new(),
            checkpoints: Vec::new(),
            origin_ps: 0,
        };
        let mut origin_ps: Option<i128> = None;
        space::for_each_streamed(space, selection, |index| {
            let plane = layout.planes.len();
            layout.segments.push(Segment::Header { plane });
            for range in index.lines(space) {
                let line = space::index_line(space, range?)?;
                if line.is_skipped() || line.n_events == 0 {
                    continue;
                }
                let start = i128::from(line.timestamp_ns) * 1000;
                origin_ps = Some(origin_ps.map_or(start, |it| it.min(start)));
                let first = layout.checkpoints.len();
                layout.checkpoints.extend_from_slice(&line.checkpoints);
                layout.segments.push(Segment::Events {
                    plane,
                    line_id: line.id,
                    timestamp_ns: line.timestamp_ns,
                    range: line.range,
                    shown_name: line.shown_name(),
                    kept: true,
                    checkpoints: (first, layout.checkpoints.len()),
                });
            }
            let pid = space::plane_pid(&index);
            layout.planes.push(PlaneRef { index, pid });
            Ok(())
        })?;
        layout.origin_ps = origin_ps.unwrap_or(0);
        Ok(layout)
    }

    /// The same layout with the events of the lines `keep` accepts only;
    /// every plane's metadata events stay. The origin stays that of the
    /// whole stream.
    pub(crate) fn only_lines(&self, keep: &dyn Fn(&crate::LineInfo<'_>) -> bool) -> Layout<'a> {
        let planes = &self.planes;
        let segments = self
            .segments
            .iter()
            .map(|it| match *it {
                Segment::Events {
                    plane,
                    line_id,
                    timestamp_ns,
                    range,
                    shown_name,
                    kept,
                    checkpoints,
                } => Segment::Events {
                    plane,
                    line_id,
                    timestamp_ns,
                    range,
                    shown_name,
                    checkpoints,
                    kept: kept
                        && keep(&crate::LineInfo {
                            pid: planes[plane].pid,
                            plane: planes[plane].index.name,
                            tid: line_id as u64,
                            line: shown_name,
                        }),
                },
                header => header,
            })
            .collect();
        Layout {
            planes: self.planes.clone(),
            segments,
            checkpoints: self.checkpoints.clone(),
            origin_ps: self.origin_ps,
        }
    }

    /// The start of the stream.
    pub(crate) fn start(&self) -> Cut {
        Cut { segment: 0, at: 0 }
    }

    /// The end of the stream.
    pub(crate) fn end(&self) -> Cut {
        Cut {
            segment: self.segments.len(),
            at: 0,
        }
    }

    /// `n + 1` cuts, from [`Layout::start`] to [`Layout::end`], that split
    /// the events' bytes into `n` parts of about equal size. A cut inside a
    /// line moves forward to the next event whose stored start differs
    /// from the one before it, so that a line's events with one start time
    /// stay in one part.
    pub(crate) fn cuts(&self, space: &Cursor<'a>, n: usize) -> Result<Vec<Cut>, Error> {
        let size = |segment: &Segment| match segment {
            Segment::Events {
                range, kept: true, ..
            } => range.1 - range.0,
            Segment::Events { kept: false, .. } => 0,
            Segment::Header { .. } => 0,
        };
        let total: usize = self.segments.iter().map(size).sum();
        let mut cuts = vec![self.start()];
        let (mut segment, mut before) = (0, 0);
        for k in 1..n {
            let target = (total as u128 * k as u128 / n as u128) as usize;
            while segment < self.segments.len() && before + size(&self.segments[segment]) <= target
            {
                before += size(&self.segments[segment]);
                segment += 1;
            }
            let Some(Segment::Events {
                range,
                kept: true,
                checkpoints,
                ..
            }) = self.segments.get(segment)
            else {
                break;
            };
            let checkpoints = &self.checkpoints[checkpoints.0..checkpoints.1];
            let at = cut_line(space, *range, checkpoints, range.0 + (target - before))?;
            let cut = Cut { segment, at };
            if cut > *cuts.last().expect("starts with one cut") {
                cuts.push(cut);
            }
        }
        cuts.push(self.end());
        cuts.dedup();
        Ok(cuts)
    }

    /// Pushes the events between two cuts.
    pub(crate) fn emit<S: EventSink + ?Sized>(
        &self,
        space: &Cursor<'a>,
        from: Cut,
        to: Cut,
        out: &mut Output<'_, S>,
    ) -> Result<(), Error> {
        let mut tables: Option<(usize, Tables<'a>)> = None;
        let mut scratch = Scratch::default();
        for idx in from.segment..to.segment.saturating_add(1).min(self.segments.len()) {
            match self.segments[idx] {
                Segment::Header { .. } => {
                    if idx == to.segment {
                        break;
                    }
                    self.emit_header(space, idx, out)?;
                }
                Segment::Events {
                    plane,
                    line_id,
                    timestamp_ns,
                    range,
                    shown_name: _,
                    kept,
                    checkpoints: _,
                } => {
                    if !kept {
                        continue;
                    }
                    let start = if idx == from.segment {
                        from.at.max(range.0)
                    } else {
                        range.0
                    };
                    let end = if idx == to.segment {
                        to.at.min(range.1)
                    } else {
                        range.1
                    };
                    if start >= end {
                        continue;
                    }
                    if tables.as_ref().is_none_or(|(it, _)| *it != plane) {
                        tables = Some((
                            plane,
                            events::decode_tables(space, &self.planes[plane].index, plane)?,
                        ));
                    }
                    let (_, tables) = tables.as_ref().expect("decoded above");
                    let line = events::LineRef {
                        range: (start, end),
                        id: line_id,
                        timestamp_ns,
                    };
                    events::emit_line(
                        space,
                        tables,
                        &line,
                        self.planes[plane].pid,
                        out,
                        &mut scratch,
                    )?;
                }
            }
        }
        Ok(())
    }

    /// The metadata events of the plane whose header is segment `idx`. The
    /// lines are walked again, except the ones that hold events: their
    /// segments, which follow the header, already know their names.
    fn emit_header<S: EventSink + ?Sized>(
        &self,
        space: &Cursor<'a>,
        idx: usize,
        out: &mut Output<'_, S>,
    ) -> Result<(), Error> {
        let Segment::Header { plane } = self.segments[idx] else {
            unreachable!("segment {idx} is a header");
        };
        let plane = &self.planes[plane];
        out.metadata("process_name", plane.pid, 0, plane.index.name);
        let mut known = self.segments[idx + 1..]
            .iter()
            .map_while(|it| match it {
                Segment::Events {
                    range,
                    line_id,
                    shown_name,
                    ..
                } => Some((*range, *line_id, *shown_name)),
                Segment::Header { .. } => None,
            })
            .peekable();
        for range in plane.index.lines(space) {
            let range = range?;
            let (id, name) = match known.next_if(|it| it.0 == range) {
                Some((_, id, name)) => (id, name),
                None => {
                    let line = space::index_line(space, range)?;
                    if line.is_skipped() {
                        continue;
                    }
                    (line.id, line.shown_name())
                }
            };
            out.metadata("thread_name", plane.pid, id as u64, name);
        }
        Ok(())
    }
}

/// Where to cut the line `range` at or after byte `target`: the start of
/// the first event there whose start differs from its predecessor's, else
/// the end of the line.
fn cut_line(
    space: &Cursor<'_>,
    range: (usize, usize),
    checkpoints: &[usize],
    target: usize,
) -> Result<usize, Error> {
    // The walk starts at the last checkpoint before the target: the event
    // there starts before the target, as the line's first field does.
    let from = match checkpoints.partition_point(|&it| it < target) {
        0 => range.0,
        n => checkpoints[n - 1],
    };
    let mut cursor = space.nested((from, range.1), "XLine");
    let mut last_before = None;
    let mut previous: Option<Ps> = None;
    loop {
        cursor.skip_short(space::EVENT_TAG, target);
        let at = cursor.position();
        let Some(field) = cursor.next_field()? else {
            return Ok(range.1);
        };
        if field.number != 4 {
            continue;
        }
        let event = cursor.expect_len(&field)?;
        if at < target {
            last_before = Some(event);
            continue;
        }
        if let Some(before) = last_before.take() {
            previous = Some(event_offset(space, before)?);
        }
        let offset = event_offset(space, event)?;
        if previous != Some(offset) {
            return Ok(at);
        }
        previous = Some(offset);
    }
}

/// An event's `offset_ps` as the reader takes it (the last of `offset_ps`
/// and `num_occurrences` wins; the latter means offset 0).
fn event_offset(space: &Cursor<'_>, range: (usize, usize)) -> Result<Ps, Error> {
    let mut cursor = space.nested(range, "XEvent");
    let mut offset = 0;
    while let Some(field) = cursor.next_field()? {
        match field.number {
            2 => offset = cursor.expect_varint(&field)? as i64,
            5 => {
                cursor.expect_varint(&field)?;
                offset = 0;
            }
            _ => {}
        }
    }
    Ok(offset)
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;
    use crate::generated::{XEvent, XLine, XStat, x_event, x_stat};

    /// A line of 1.5 MB: events in runs that share a start (so cuts move
    /// forward past them), some long (a stat makes them more than a short
    /// field), and its display name after the events.
    fn long_line() -> Vec<u8> {
        let events = (0..150_000i64)
            .map(|idx| XEvent {
                metadata_id: idx % 7,
                duration_ps: 10,
                data: Some(x_event::Data::OffsetPs(idx / 5 * 100)),
                stats: if idx % 97 == 0 {
                    vec![XStat {
                        metadata_id: 1,
                        value: Some(x_stat::Value::StrValue("x".repeat(200))),
                    }]
                } else {
                    Vec::new()
                },
            })
            .collect();
        XLine {
            id: 3,
            name: "line".to_owned(),
            display_name: "shown".to_owned(),
            timestamp_ns: 5,
            events,
            ..XLine::default()
        }
        .encode_to_vec()
    }

    /// A cut found from the line's checkpoints is the cut a walk from the
    /// line's start finds, for targets everywhere in the line, and every
    /// checkpoint starts a field.
    #[test]
    fn cuts_from_checkpoints_are_the_cuts_from_the_start() {
        let bytes = long_line();
        let space = Cursor::new(&bytes, "XLine");
        let range = (0, bytes.len());
        let line = space::index_line(&space, range).unwrap();
        assert_eq!((line.n_events, line.shown_name()), (150_000, "shown"));
        assert!(line.checkpoints.len() >= 4, "{:?}", line.checkpoints);
        let mut starts = Vec::new();
        let mut cursor = space.nested(range, "XLine");
        while cursor.next_field().unwrap().is_some() {
            starts.push(cursor.position());
        }
        assert!(
            line.checkpoints
                .iter()
                .all(|it| starts.binary_search(it).is_ok())
        );
        let targets = (1..bytes.len())
            .step_by(4_099)
            .chain(line.checkpoints.iter().flat_map(|&it| [it - 1, it, it + 1]));
        for target in targets {
            assert_eq!(
                cut_line(&space, range, &line.checkpoints, target).unwrap(),
                cut_line(&space, range, &[], target).unwrap(),
                "target {target}"
            );
        }
    }
}
