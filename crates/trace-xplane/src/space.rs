//! The skeleton of an XSpace: where its planes and lines are, found without
//! decoding any event, plus the rule that picks the planes the trace shows.

use crate::Error;
use crate::wire::Cursor;

/// The plane that holds host threads; the JSON export shows it as pid 701.
pub(crate) const HOST_PLANE: &str = "/host:CPU";
/// Device plane families, in the order the JSON export looks for them: only
/// the first family present is exported.
pub(crate) const DEVICE_PREFIXES: [&str; 3] = ["/device:GPU:", "/device:TPU:", "/device:CUSTOM:"];
/// Lines with this display name repeat other lines' ops; the JSON export
/// leaves them out.
pub(crate) const ASYNC_OPS_LINE: &str = "Async XLA Ops";
/// The trace-viewer pid of the host plane (500 device ids, then 200 custom
/// plane ids, then the host).
pub(crate) const HOST_PID: u64 = 701;
/// The one-byte tag of `XLine.events` (field 4, length-delimited).
pub(crate) const EVENT_TAG: u8 = 4 << 3 | 2;

/// Checks that `bytes` look like an XSpace: walks its top-level fields,
/// checks their wire types and that there is at least one plane. Nothing is
/// collected, so memory does not grow with the number of planes; walk them
/// with [`repeated`] over [`whole`].
pub(crate) fn index_space(bytes: &[u8]) -> Result<Cursor<'_>, Error> {
    match bytes {
        [] => return Err(Error::Empty),
        [0x1f, 0x8b, ..] => return Err(Error::OtherFormat("gzip data")),
        [b'{' | b'[', ..] => return Err(Error::OtherFormat("JSON text")),
        _ => {}
    }
    let space = Cursor::new(bytes, "XSpace");
    let mut cursor = space;
    let mut n_planes = 0u64;
    while let Some(field) = cursor.next_field()? {
        match field.number {
            1 => {
                cursor.expect_len(&field)?;
                n_planes += 1;
            }
            // errors, warnings, hostnames
            2..=4 => {
                cursor.expect_str(&field)?;
            }
            _ => {}
        }
    }
    if n_planes == 0 {
        return Err(Error::NoPlanes);
    }
    Ok(space)
}

/// The byte range of the whole file, the message [`index_space`] checked.
pub(crate) fn whole(space: &Cursor<'_>) -> (usize, usize) {
    (0, space.file_len())
}

/// The payload ranges of every occurrence of the length-delimited field
/// `number` in the message `range`, in file order, found lazily.
pub(crate) fn repeated<'a>(
    parent: &Cursor<'a>,
    range: (usize, usize),
    message: &'static str,
    number: u32,
) -> Repeated<'a> {
    Repeated {
        cursor: parent.nested(range, message),
        number,
    }
}

/// The iterator of [`repeated`].
pub(crate) struct Repeated<'a> {
    cursor: Cursor<'a>,
    number: u32,
}

impl Iterator for Repeated<'_> {
    type Item = Result<(usize, usize), Error>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        loop {
            match self.cursor.next_field() {
                Err(err) => return Some(Err(err)),
                Ok(None) => return None,
                Ok(Some(field)) if field.number == self.number => {
                    return Some(self.cursor.expect_len(&field));
                }
                Ok(Some(_)) => {}
            }
        }
    }
}

/// One plane's scalar fields; its repeated ones are walked from `range`.
#[derive(Clone)]
pub(crate) struct PlaneIndex<'a> {
    pub(crate) id: i64,
    pub(crate) name: &'a str,
    pub(crate) range: (usize, usize),
}

impl<'a> PlaneIndex<'a> {
    /// The ranges of the plane's lines.
    pub(crate) fn lines(&self, space: &Cursor<'a>) -> Repeated<'a> {
        repeated(space, self.range, "XPlane", 3)
    }
}

/// Reads a plane's id and name and checks the wire type of every known
/// field; lines and metadata are left for later walks.
pub(crate) fn index_plane<'a>(
    space: &Cursor<'a>,
    range: (usize, usize),
) -> Result<PlaneIndex<'a>, Error> {
    let mut cursor = space.nested(range, "XPlane");
    let mut plane = PlaneIndex {
        id: 0,
        name: "",
        range,
    };
    while let Some(field) = cursor.next_field()? {
        match field.number {
            1 => plane.id = cursor.expect_varint(&field)? as i64,
            2 => plane.name = cursor.expect_str(&field)?,
            // Lines, event and stat metadata; plane-level stats are not part
            // of the event stream.
            3..=6 => {
                cursor.expect_len(&field)?;
            }
            _ => {}
        }
    }
    Ok(plane)
}

/// One line's fields other than its events, which are only counted.
pub(crate) struct LineHeader<'a> {
    pub(crate) range: (usize, usize),
    pub(crate) id: i64,
    pub(crate) name: &'a str,
    pub(crate) display_name: &'a str,
    pub(crate) timestamp_ns: i64,
    pub(crate) n_events: u64,
    /// Field starts among the events, one each [`CHECKPOINT_BYTES`] or so,
    /// in order: a walk to a byte of a long line can start at the last one
    /// before it instead of at the line's start. Empty for short lines.
    pub(crate) checkpoints: Vec<usize>,
}

/// How far apart [`LineHeader::checkpoints`] are: a walk from one to the
/// next hops over some ten thousand events.
pub(crate) const CHECKPOINT_BYTES: usize = 256 << 10;

impl<'a> LineHeader<'a> {
    /// The name the trace viewer shows: `display_name`, else `name`.
    pub(crate) fn shown_name(&self) -> &'a str {
        if self.display_name.is_empty() {
            self.name
        } else {
            self.display_name
        }
    }

    /// Whether the JSON export, and so this reader, leaves the line out.
    pub(crate) fn is_skipped(&self) -> bool {
        self.shown_name() == ASYNC_OPS_LINE
    }
}

/// Reads a line's fields other than its events, which it counts. A line
/// of [`SPLIT_ABOVE`] bytes or more is walked in two halves at once when
/// a second core is free (see [`halfway`]).
pub(crate) fn index_line<'a>(
    space: &Cursor<'a>,
    range: (usize, usize),
) -> Result<LineHeader<'a>, Error> {
    let whole = |from| walk_line(space, range, from, range.1);
    let split = range.1 - range.0 >= SPLIT_ABOVE
        && std::thread::available_parallelism().is_ok_and(|it| it.get() > 1);
    let Some(middle) = split.then(|| halfway(space, range)).flatten() else {
        return Ok(whole(range.0)?.0.header(range));
    };
    let (first, second) = std::thread::scope(|scope| {
        let second = scope.spawn(|| whole(middle));
        let first = walk_line(space, range, range.0, middle);
        let second = second
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        (first, second)
    });
    let (mut first, reached) = first?;
    if reached == middle {
        first.then(second?.0);
    } else {
        // A field runs across the guessed start: the first walk goes on.
        first.then(whole(reached)?.0);
    }
    Ok(first.header(range))
}

/// Lines this long or longer are walked in two halves at once.
const SPLIT_ABOVE: usize = 8 << 20;

/// What a walk over some of a line's fields saw: the last value of each
/// field it met, and its events.
#[derive(Default)]
struct LineWalk<'a> {
    id: Option<i64>,
    name: Option<&'a str>,
    display_name: Option<&'a str>,
    timestamp_ns: Option<i64>,
    n_events: u64,
    checkpoints: Vec<usize>,
}

impl<'a> LineWalk<'a> {
    /// Adds what a walk of the fields right after this one's saw.
    fn then(&mut self, later: LineWalk<'a>) {
        self.id = later.id.or(self.id);
        self.name = later.name.or(self.name);
        self.display_name = later.display_name.or(self.display_name);
        self.timestamp_ns = later.timestamp_ns.or(self.timestamp_ns);
        self.n_events += later.n_events;
        self.checkpoints.extend(later.checkpoints);
    }

    fn header(self, range: (usize, usize)) -> LineHeader<'a> {
        LineHeader {
            range,
            id: self.id.unwrap_or(0),
            name: self.name.unwrap_or(""),
            display_name: self.display_name.unwrap_or(""),
            timestamp_ns: self.timestamp_ns.unwrap_or(0),
            n_events: self.n_events,
            checkpoints: self.checkpoints,
        }
    }
}

/// Walks the fields of the line `range` from `from`, where a field starts,
/// until it reaches or passes `stop`; gives what it saw and where it
/// stopped (`stop` itself when a field ends there).
fn walk_line<'a>(
    space: &Cursor<'a>,
    range: (usize, usize),
    from: usize,
    stop: usize,
) -> Result<(LineWalk<'a>, usize), Error> {
    let mut cursor = space.nested((from, range.1), "XLine");
    let mut line = LineWalk::default();
    let mut next_checkpoint = from + CHECKPOINT_BYTES;
    while cursor.position() < stop {
        let Some(field) = cursor.next_field()? else {
            break;
        };
        match field.number {
            1 => line.id = Some(cursor.expect_varint(&field)? as i64),
            2 => line.name = Some(cursor.expect_str(&field)?),
            3 => line.timestamp_ns = Some(cursor.expect_varint(&field)? as i64),
            4 => {
                cursor.expect_len(&field)?;
                // The hop below stops short of the next checkpoint, so the
                // field after the event read here starts just past it.
                let at = cursor.position();
                if at >= next_checkpoint {
                    line.checkpoints.push(at);
                    next_checkpoint = at + CHECKPOINT_BYTES;
                }
                line.n_events += 1 + cursor.skip_short(EVENT_TAG, next_checkpoint.min(stop));
            }
            // duration_ps, display_id
            9 | 10 => {
                cursor.expect_varint(&field)?;
            }
            11 => line.display_name = Some(cursor.expect_str(&field)?),
            _ => {}
        }
    }
    Ok((line, cursor.position()))
}

/// A guess at where a field starts near the middle of the line `range`:
/// the first byte from there on that starts a run of [`HOPS`] events, each
/// an `events` tag and a length that ends inside the line. A walk from the
/// line's start that stops exactly there proves the guess; one that passes
/// it goes on instead ([`index_line`]).
fn halfway(space: &Cursor<'_>, range: (usize, usize)) -> Option<usize> {
    const HOPS: usize = 32;
    const SEARCH: usize = 64 << 10;
    let bytes = space.bytes(range);
    let middle = bytes.len() / 2;
    let event_at = |pos: usize| -> Option<usize> {
        if *bytes.get(pos)? != EVENT_TAG {
            return None;
        }
        let (mut len, mut shift, mut at) = (0usize, 0, pos + 1);
        loop {
            let byte = *bytes.get(at)?;
            len |= usize::from(byte & 0x7f).checked_shl(shift)?;
            at += 1;
            if byte < 0x80 {
                break;
            }
            shift += 7;
            if shift > 28 {
                return None;
            }
        }
        let end = at.checked_add(len)?;
        (end <= bytes.len()).then_some(end)
    };
    (middle..bytes.len().min(middle + SEARCH))
        .find(|&start| {
            let mut pos = start;
            (0..HOPS).all(|_| match event_at(pos) {
                Some(next) => {
                    pos = next;
                    true
                }
                None => pos == bytes.len(),
            })
        })
        .map(|it| range.0 + it)
}

/// Which planes the trace shows, decided from their names alone: the host
/// plane (the first one named [`HOST_PLANE`]) first, then every plane of the
/// first device family present, in file order. Holds no per-plane state.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Selection {
    host: Option<u64>,
    family: Option<&'static str>,
}

impl Selection {
    /// Walks every plane of the space (checking each one's fields) and
    /// decides from their names.
    pub(crate) fn of(space: &Cursor<'_>) -> Result<Selection, Error> {
        let mut host = None;
        let mut present = [false; DEVICE_PREFIXES.len()];
        for (idx, range) in repeated(space, whole(space), "XSpace", 1).enumerate() {
            let plane = index_plane(space, range?)?;
            if host.is_none() && plane.name == HOST_PLANE {
                host = Some(idx as u64);
            }
            for (seen, prefix) in present.iter_mut().zip(DEVICE_PREFIXES) {
                *seen |= plane.name.starts_with(prefix);
            }
        }
        let family = DEVICE_PREFIXES
            .iter()
            .zip(present)
            .find_map(|(prefix, seen)| seen.then_some(*prefix));
        Ok(Selection { host, family })
    }

    /// Whether the plane at position `idx` (file order) is the host plane.
    pub(crate) fn is_host(&self, idx: u64) -> bool {
        self.host == Some(idx)
    }

    /// Whether a plane other than the host plane is streamed.
    pub(crate) fn is_device(&self, name: &str) -> bool {
        self.family.is_some_and(|prefix| name.starts_with(prefix))
    }

    /// Whether the plane at `idx` named `name` is streamed.
    pub(crate) fn contains(&self, idx: u64, name: &str) -> bool {
        self.is_host(idx) || self.is_device(name)
    }
}

/// Calls `f` with every streamed plane, in the order the JSON export writes
/// them: the host plane, then the device planes in file order.
pub(crate) fn for_each_streamed<'a>(
    space: &Cursor<'a>,
    selection: Selection,
    mut f: impl FnMut(PlaneIndex<'a>) -> Result<(), Error>,
) -> Result<(), Error> {
    if let Some(host) = selection.host {
        let mut planes = repeated(space, whole(space), "XSpace", 1);
        if let Some(range) = planes.nth(host as usize) {
            f(index_plane(space, range?)?)?;
        }
    }
    if selection.family.is_some() {
        for range in repeated(space, whole(space), "XSpace", 1) {
            let plane = index_plane(space, range?)?;
            if selection.is_device(plane.name) {
                f(plane)?;
            }
        }
    }
    Ok(())
}

/// The pid of a streamed plane, as in the JSON export: 701 for the host
/// plane, one plus the plane id for device planes.
pub(crate) fn plane_pid(plane: &PlaneIndex<'_>) -> u64 {
    if plane.name == HOST_PLANE {
        HOST_PID
    } else {
        (plane.id as u64).wrapping_add(1)
    }
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;
    use crate::generated::{XEvent, XLine, XStat, x_event, x_stat};

    /// A line of more than [`SPLIT_ABOVE`] bytes; `middle` is the event
    /// placed at its middle.
    fn long_line(middle: XEvent) -> Vec<u8> {
        let event = |idx: i64| XEvent {
            metadata_id: idx % 5,
            duration_ps: 7,
            data: Some(x_event::Data::OffsetPs(500_000 + idx % 1000)),
            stats: Vec::new(),
        };
        let half = 700_000;
        let events = (0..half)
            .map(event)
            .chain([middle])
            .chain((half..2 * half).map(event))
            .collect();
        XLine {
            id: 9,
            name: "worker".to_owned(),
            display_name: "shown".to_owned(),
            timestamp_ns: 12,
            duration_ps: 3,
            events,
            ..XLine::default()
        }
        .encode_to_vec()
    }

    /// What a header says, checkpoints aside.
    fn fields(line: &LineHeader<'_>) -> (i64, String, String, i64, u64) {
        let (name, shown) = (line.name.to_owned(), line.display_name.to_owned());
        (line.id, name, shown, line.timestamp_ns, line.n_events)
    }

    /// A long line walked in two halves says what one walk says, and its
    /// checkpoints start fields; so it does when the guessed middle lies
    /// inside an event whose bytes look like a run of events, and when the
    /// second half is damaged.
    #[test]
    fn a_long_line_walked_in_halves_is_the_line_walked_once() {
        let plain = XEvent {
            metadata_id: 1,
            ..XEvent::default()
        };
        // Its string is 64 empty `events` fields: the guess can land there.
        let decoy = XEvent {
            metadata_id: 1,
            stats: vec![XStat {
                metadata_id: 2,
                value: Some(x_stat::Value::BytesValue([EVENT_TAG, 0].repeat(64 << 10))),
            }],
            ..XEvent::default()
        };
        for (what, middle) in [("plain", plain), ("decoy", decoy)] {
            let bytes = long_line(middle);
            assert!(bytes.len() >= SPLIT_ABOVE, "{what}: {}", bytes.len());
            let space = Cursor::new(&bytes, "XLine");
            let range = (0, bytes.len());
            let guess = halfway(&space, range).unwrap();
            let once = walk_line(&space, range, 0, range.1)
                .unwrap()
                .0
                .header(range);
            let halves = index_line(&space, range).unwrap();
            assert_eq!(fields(&halves), fields(&once), "{what}");
            assert_eq!(
                fields(&once),
                (9, "worker".into(), "shown".into(), 12, 1_400_001)
            );
            let mut starts = Vec::new();
            let mut cursor = space.nested(range, "XLine");
            while cursor.next_field().unwrap().is_some() {
                starts.push(cursor.position());
            }
            let from_start = walk_line(&space, range, 0, guess).unwrap().1;
            assert_eq!(
                starts.binary_search(&guess).is_ok(),
                what == "plain",
                "{what}"
            );
            assert_eq!(from_start == guess, what == "plain", "{what}");
            assert!(halves.checkpoints.len() > 20, "{what}");
            assert!(halves.checkpoints.is_sorted(), "{what}");
            assert!(
                (halves.checkpoints.iter()).all(|it| starts.binary_search(it).is_ok()),
                "{what}"
            );
            // A field number 0 three quarters in.
            let mut damaged = bytes.clone();
            let at = starts[starts.len() * 3 / 4];
            damaged[at] = 0x00;
            let space = Cursor::new(&damaged, "XLine");
            let once = walk_line(&space, range, 0, range.1).map(|it| it.1);
            let halves = index_line(&space, range).map(|it| it.n_events);
            assert_eq!(
                halves.unwrap_err().to_string(),
                once.unwrap_err().to_string(),
                "{what}"
            );
        }
    }
}
