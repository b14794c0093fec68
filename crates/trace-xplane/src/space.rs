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
}

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

pub(crate) fn index_line<'a>(
    space: &Cursor<'a>,
    range: (usize, usize),
) -> Result<LineHeader<'a>, Error> {
    let mut cursor = space.nested(range, "XLine");
    let mut line = LineHeader {
        range,
        id: 0,
        name: "",
        display_name: "",
        timestamp_ns: 0,
        n_events: 0,
    };
    while let Some(field) = cursor.next_field()? {
        match field.number {
            1 => line.id = cursor.expect_varint(&field)? as i64,
            2 => line.name = cursor.expect_str(&field)?,
            3 => line.timestamp_ns = cursor.expect_varint(&field)? as i64,
            4 => {
                cursor.expect_len(&field)?;
                line.n_events += 1 + cursor.skip_short(EVENT_TAG, usize::MAX);
            }
            // duration_ps, display_id
            9 | 10 => {
                cursor.expect_varint(&field)?;
            }
            11 => line.display_name = cursor.expect_str(&field)?,
            _ => {}
        }
    }
    Ok(line)
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
