//! [`tile`]: a longer session made of a real one, for benchmarks at sizes
//! no capture at hand has.

use std::io::{self, Write};

use crate::Error;
use crate::space;
use crate::wire::{Cursor, Field, Value};

/// Writes `bytes`, an XSpace, with every line's events repeated: copy `k`
/// (from 1) of an event starts `k` times its plane's span later (the span
/// from its earliest event start to its latest end, plus 1 ns), so each
/// line stays in time order and its metadata is shared. `factor` may be
/// fractional: the last copy holds the first part of each line's events.
/// Everything else is copied as it is. The file is walked twice (sizes
/// first), and nothing is kept but one plane's line sizes.
pub fn tile(bytes: &[u8], factor: f64, out: &mut dyn Write) -> Result<(), TileError> {
    let space = space::index_space(bytes)?;
    let mut cursor = space;
    let factor = factor.max(1.0);
    while let Some(field) = cursor.next_field()? {
        match (field.number, field.value) {
            (1, Value::Len(start, end)) => {
                let plane = Plane::of(&space, (start, end), factor)?;
                write_len_field(out, 1, plane.size)?;
                plane.write(&space, out)?;
            }
            _ => out.write_all(&bytes[field.at..cursor.position()])?,
        }
    }
    Ok(())
}

/// Why [`tile`] stopped.
#[derive(Debug, thiserror::Error)]
pub enum TileError {
    #[error(transparent)]
    Read(#[from] Error),
    #[error("cannot write the tiled XSpace")]
    Write(#[from] io::Error),
}

/// One plane and what its tiled copy is made of.
struct Plane {
    range: (usize, usize),
    shift: i64,
    factor: f64,
    /// The tiled size of each line, in order, then of the whole plane.
    line_sizes: Vec<usize>,
    size: usize,
}

impl Plane {
    fn of(space: &Cursor<'_>, range: (usize, usize), factor: f64) -> Result<Plane, Error> {
        // The span of the plane's events, on the file's clock.
        let mut span: Option<(i128, i128)> = None;
        for line in repeated(space, range, 3) {
            let line = line?;
            let timestamp = line_timestamp(space, line)?;
            for event in repeated(space, line, 4) {
                let (offset, dur) = event_times(space, event?)?;
                let start = i128::from(timestamp) * 1000 + i128::from(offset);
                let end = start + i128::from(dur);
                span = Some(span.map_or((start, end), |(a, b)| (a.min(start), b.max(end))));
            }
        }
        let shift = span.map_or(0, |(a, b)| (b - a + 1000) as i64);
        let mut plane = Plane {
            range,
            shift,
            factor,
            line_sizes: Vec::new(),
            size: 0,
        };
        let mut cursor = space.nested(range, "XPlane");
        while let Some(field) = cursor.next_field()? {
            plane.size += match (field.number, field.value) {
                (3, Value::Len(start, end)) => {
                    let size = plane.line_size(space, (start, end))?;
                    plane.line_sizes.push(size);
                    len_field_size(3, size)
                }
                _ => cursor.position() - field.at,
            };
        }
        Ok(plane)
    }

    /// How many events of a line of `n` go into copy `k` (from 0).
    fn copies(&self, n: usize) -> impl Iterator<Item = (i64, usize)> + '_ {
        let whole = self.factor.floor() as usize;
        let part = ((self.factor - whole as f64) * n as f64) as usize;
        (0..whole)
            .map(move |k| (k as i64, n))
            .chain((part > 0).then_some((whole as i64, part)))
    }

    fn line_size(&self, space: &Cursor<'_>, range: (usize, usize)) -> Result<usize, Error> {
        let mut size = 0;
        let mut events = Vec::new();
        let mut cursor = space.nested(range, "XLine");
        while let Some(field) = cursor.next_field()? {
            match (field.number, field.value) {
                (4, Value::Len(start, end)) => events.push((start, end)),
                _ => size += cursor.position() - field.at,
            }
        }
        for (k, n) in self.copies(events.len()) {
            for &event in &events[..n] {
                size += len_field_size(4, event_size(space, event, k * self.shift)?);
            }
        }
        Ok(size)
    }

    fn write(&self, space: &Cursor<'_>, out: &mut dyn Write) -> Result<(), TileError> {
        let mut lines = self.line_sizes.iter();
        let mut cursor = space.nested(self.range, "XPlane");
        while let Some(field) = cursor.next_field()? {
            match (field.number, field.value) {
                (3, Value::Len(start, end)) => {
                    let size = *lines.next().expect("sized above");
                    write_len_field(out, 3, size)?;
                    self.write_line(space, (start, end), out)?;
                }
                _ => out.write_all(space.bytes((field.at, cursor.position())))?,
            }
        }
        Ok(())
    }

    fn write_line(
        &self,
        space: &Cursor<'_>,
        range: (usize, usize),
        out: &mut dyn Write,
    ) -> Result<(), TileError> {
        let mut events = Vec::new();
        let mut cursor = space.nested(range, "XLine");
        while let Some(field) = cursor.next_field()? {
            match (field.number, field.value) {
                (4, Value::Len(start, end)) => events.push((start, end)),
                _ => out.write_all(space.bytes((field.at, cursor.position())))?,
            }
        }
        let mut buf = Vec::new();
        for (k, n) in self.copies(events.len()) {
            for &event in &events[..n] {
                buf.clear();
                write_event(space, event, k * self.shift, &mut buf)?;
                write_len_field(out, 4, buf.len())?;
                out.write_all(&buf)?;
            }
        }
        Ok(())
    }
}

fn repeated<'a>(space: &Cursor<'a>, range: (usize, usize), number: u32) -> space::Repeated<'a> {
    space::repeated(space, range, "tiled message", number)
}

fn line_timestamp(space: &Cursor<'_>, range: (usize, usize)) -> Result<i64, Error> {
    let mut cursor = space.nested(range, "XLine");
    let mut timestamp = 0;
    while let Some(field) = cursor.next_field()? {
        if field.number == 3 {
            timestamp = cursor.expect_varint(&field)? as i64;
        }
    }
    Ok(timestamp)
}

/// An event's offset (0 for an aggregated one) and duration.
fn event_times(space: &Cursor<'_>, range: (usize, usize)) -> Result<(i64, i64), Error> {
    let mut cursor = space.nested(range, "XEvent");
    let (mut offset, mut dur) = (0, 0);
    while let Some(field) = cursor.next_field()? {
        match field.number {
            2 => offset = cursor.expect_varint(&field)? as i64,
            5 => offset = 0,
            3 => dur = cursor.expect_varint(&field)? as i64,
            _ => {}
        }
    }
    Ok((offset, dur))
}

/// The event's fields with `offset_ps` moved by `shift` (aggregated events,
/// without an offset, are copied as they are).
fn for_each_field(
    space: &Cursor<'_>,
    range: (usize, usize),
    shift: i64,
    mut f: impl FnMut(Field, Option<u64>, &[u8]) -> Result<(), TileError>,
) -> Result<(), TileError> {
    let mut cursor = space.nested(range, "XEvent");
    while let Some(field) = cursor.next_field()? {
        let raw = space.bytes((field.at, cursor.position()));
        match (field.number, field.value) {
            (2, Value::Varint(offset)) => {
                f(field, Some((offset as i64).wrapping_add(shift) as u64), raw)?
            }
            _ => f(field, None, raw)?,
        }
    }
    Ok(())
}

fn event_size(space: &Cursor<'_>, range: (usize, usize), shift: i64) -> Result<usize, Error> {
    let mut size = 0;
    let res = for_each_field(space, range, shift, |_, offset, raw| {
        size += match offset {
            Some(offset) => 1 + varint_size(offset),
            None => raw.len(),
        };
        Ok(())
    });
    match res {
        Ok(()) => Ok(size),
        Err(TileError::Read(err)) => Err(err),
        Err(TileError::Write(_)) => unreachable!("sizing writes nothing"),
    }
}

fn write_event(
    space: &Cursor<'_>,
    range: (usize, usize),
    shift: i64,
    out: &mut Vec<u8>,
) -> Result<(), TileError> {
    for_each_field(space, range, shift, |_, offset, raw| {
        match offset {
            Some(offset) => {
                out.push(2 << 3);
                push_varint(out, offset);
            }
            None => out.extend_from_slice(raw),
        }
        Ok(())
    })
}

fn varint_size(mut value: u64) -> usize {
    let mut size = 1;
    while value >= 0x80 {
        value >>= 7;
        size += 1;
    }
    size
}

fn push_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push(value as u8 | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn len_field_size(number: u32, len: usize) -> usize {
    varint_size(u64::from(number) << 3 | 2) + varint_size(len as u64) + len
}

fn write_len_field(out: &mut dyn Write, number: u32, len: usize) -> io::Result<()> {
    let mut head = Vec::with_capacity(12);
    push_varint(&mut head, u64::from(number) << 3 | 2);
    push_varint(&mut head, len as u64);
    out.write_all(&head)
}
