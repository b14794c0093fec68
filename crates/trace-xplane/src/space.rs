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

/// Checks that `bytes` look like an XSpace and returns the byte ranges of
/// its planes, in file order. Other top-level fields are checked for their
/// wire type and skipped.
pub(crate) fn index_space(bytes: &[u8]) -> Result<(Cursor<'_>, Vec<(usize, usize)>), Error> {
    match bytes {
        [] => return Err(Error::Empty),
        [0x1f, 0x8b, ..] => return Err(Error::OtherFormat("gzip data")),
        [b'{' | b'[', ..] => return Err(Error::OtherFormat("JSON text")),
        _ => {}
    }
    let space = Cursor::new(bytes, "XSpace");
    let mut cursor = space;
    let mut planes = Vec::new();
    while let Some(field) = cursor.next_field()? {
        match field.number {
            1 => planes.push(cursor.expect_len(&field)?),
            // errors, warnings, hostnames
            2..=4 => {
                cursor.expect_str(&field)?;
            }
            _ => {}
        }
    }
    if planes.is_empty() {
        return Err(Error::NoPlanes);
    }
    Ok((space, planes))
}

/// One plane's scalar fields and the ranges of its repeated ones.
pub(crate) struct PlaneIndex<'a> {
    pub(crate) id: i64,
    pub(crate) name: &'a str,
    pub(crate) lines: Vec<(usize, usize)>,
    /// Map entries of `event_metadata`, decoded only for streamed planes.
    pub(crate) event_metadata: Vec<(usize, usize)>,
    /// Map entries of `stat_metadata`.
    pub(crate) stat_metadata: Vec<(usize, usize)>,
}

pub(crate) fn index_plane<'a>(
    space: &Cursor<'a>,
    range: (usize, usize),
) -> Result<PlaneIndex<'a>, Error> {
    let mut cursor = space.nested(range, "XPlane");
    let mut plane = PlaneIndex {
        id: 0,
        name: "",
        lines: Vec::new(),
        event_metadata: Vec::new(),
        stat_metadata: Vec::new(),
    };
    while let Some(field) = cursor.next_field()? {
        match field.number {
            1 => plane.id = cursor.expect_varint(&field)? as i64,
            2 => plane.name = cursor.expect_str(&field)?,
            3 => plane.lines.push(cursor.expect_len(&field)?),
            4 => plane.event_metadata.push(cursor.expect_len(&field)?),
            5 => plane.stat_metadata.push(cursor.expect_len(&field)?),
            // Plane-level stats: not part of the event stream.
            6 => {
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
                line.n_events += 1;
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

/// The indices of the planes whose events the trace shows, in the order the
/// JSON export writes them: the host plane first, then the first family of
/// device planes present, in file order.
pub(crate) fn streamed_planes(names: &[&str]) -> Vec<usize> {
    let mut picked = Vec::new();
    if let Some(host) = names.iter().position(|&it| it == HOST_PLANE) {
        picked.push(host);
    }
    for prefix in DEVICE_PREFIXES {
        let devices: Vec<usize> = (0..names.len())
            .filter(|&i| names[i].starts_with(prefix))
            .collect();
        if !devices.is_empty() {
            picked.extend(devices);
            break;
        }
    }
    picked
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
