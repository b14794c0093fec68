//! A zero-copy cursor over the protobuf wire format.
//!
//! A [`Cursor`] walks the fields of one message, a window `pos..end` of the
//! whole file, and hands out nested messages as new cursors over sub-windows.
//! Offsets stay absolute, so every error can name the byte where it happened.
//! Nothing is allocated and nothing is copied.

use crate::Error;

/// The value of one field, as the wire type says.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Value {
    Varint(u64),
    Fixed64(u64),
    /// A length-delimited payload: `start..end` in the file.
    Len(usize, usize),
    /// A 4-byte value; no XPlane field uses it, so only its presence matters.
    Fixed32,
}

/// One field: its number, where its tag starts, and its value.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Field {
    pub(crate) number: u32,
    pub(crate) at: usize,
    pub(crate) value: Value,
}

#[derive(Clone, Copy)]
pub(crate) struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
    end: usize,
    /// The message being walked, for error messages.
    message: &'static str,
}

impl<'a> Cursor<'a> {
    /// A cursor over the whole file as one message.
    pub(crate) fn new(buf: &'a [u8], message: &'static str) -> Cursor<'a> {
        Cursor {
            buf,
            pos: 0,
            end: buf.len(),
            message,
        }
    }

    /// A cursor over the nested message `start..end` (a [`Value::Len`]).
    pub(crate) fn nested(&self, range: (usize, usize), message: &'static str) -> Cursor<'a> {
        Cursor {
            buf: self.buf,
            pos: range.0,
            end: range.1,
            message,
        }
    }

    /// Where the next field starts (or the end of the message).
    pub(crate) fn position(&self) -> usize {
        self.pos
    }

    /// Skips the fields that come next while each is a length-delimited
    /// field with the one-byte tag `tag`, a one-byte length, and an end
    /// before `limit`; returns how many it skipped. Anything else is left
    /// for [`Cursor::next_field`], which checks it. A line's events mostly
    /// look like that, and walking them this way is several times faster.
    #[inline]
    pub(crate) fn skip_short(&mut self, tag: u8, limit: usize) -> u64 {
        let limit = limit.min(self.end);
        let mut n = 0;
        while let Some(next) = self.short_end(tag)
            && next < limit
        {
            self.pos = next;
            n += 1;
        }
        n
    }

    /// Where the field at the cursor ends when it has the one-byte tag
    /// `tag` and a one-byte length (the end may lie past the message).
    #[inline(always)]
    fn short_end(&self, tag: u8) -> Option<usize> {
        match self.buf.get(self.pos..self.pos + 2)? {
            &[t, len] if t == tag && len < 0x80 => Some(self.pos + 2 + usize::from(len)),
            _ => None,
        }
    }

    /// The common shape of an `XEvent`: fields 1 (`metadata_id`), 2
    /// (`offset_ps`) and 3 (`duration_ps`) as varints, nothing else. Gives
    /// `[metadata_id, offset_ps, duration_ps]` (0 when absent, the last
    /// occurrence winning) when the message `range` has that shape and its
    /// varints decode on the fast path, else `None`, and the caller decodes
    /// it field by field.
    #[inline]
    pub(crate) fn plain_event(&self, range: (usize, usize)) -> Option<[u64; 3]> {
        let mut values = [0u64; 3];
        let mut pos = range.0;
        // Writers put the fields in number order: try that order first,
        // each field once, without a loop.
        for (slot, tag) in [0x08, 0x10, 0x18].into_iter().enumerate() {
            if pos < range.1 && self.buf[pos] == tag {
                let (value, len) = short_varint(self.buf, pos + 1)?;
                pos += 1 + len;
                values[slot] = value;
            }
        }
        if pos >= range.1 {
            // Past the end: a varint ran out of the message.
            return (pos == range.1).then_some(values);
        }
        while pos < range.1 {
            let slot = match self.buf[pos] {
                0x08 => 0,
                0x10 => 1,
                0x18 => 2,
                _ => return None,
            };
            let (value, len) = short_varint(self.buf, pos + 1)?;
            pos += 1 + len;
            if pos > range.1 {
                return None;
            }
            values[slot] = value;
        }
        Some(values)
    }

    /// The common shape of an `XEvent` with stats: [`Cursor::plain_event`]'s
    /// fields, then stats (field 4) of a one-byte length, each a metadata
    /// id (field 1) and one numeric value: `double` (2), `uint64` (3),
    /// `int64` (4) or `ref_value` (7), every varint on the fast path. Gives
    /// `[metadata_id, offset_ps, duration_ps]` and calls `stat` with each
    /// stat's (metadata id, value field, value bits) in order; `None` for
    /// anything else, after which the caller forgets the stats it was given
    /// and decodes the event field by field.
    #[inline]
    pub(crate) fn event_with_stats(
        &self,
        range: (usize, usize),
        mut stat: impl FnMut(u64, u8, u64),
    ) -> Option<[u64; 3]> {
        let buf = self.buf;
        let mut values = [0u64; 3];
        let mut pos = range.0;
        for (slot, tag) in [0x08, 0x10, 0x18].into_iter().enumerate() {
            if pos < range.1 && buf[pos] == tag {
                let (value, len) = short_varint(buf, pos + 1)?;
                pos += 1 + len;
                values[slot] = value;
            }
        }
        while pos < range.1 {
            // A stat: tag 0x22 (field 4, length-delimited), a one-byte
            // length, then `[0x08 id][value]`.
            let &[tag, len] = buf.get(pos..pos + 2)? else {
                return None;
            };
            if tag != 0x22 || len >= 0x80 {
                return None;
            }
            let end = pos + 2 + usize::from(len);
            if end > range.1 || *buf.get(pos + 2)? != 0x08 {
                return None;
            }
            let (id, len) = short_varint(buf, pos + 3)?;
            let mut at = pos + 3 + len;
            let value_tag = *buf.get(at)?;
            at += 1;
            let (field, bits) = match value_tag {
                0x11 => {
                    let bytes: [u8; 8] = buf.get(at..at + 8)?.try_into().ok()?;
                    at += 8;
                    (2, u64::from_le_bytes(bytes))
                }
                0x18 | 0x20 | 0x38 => {
                    let (value, len) = short_varint(buf, at)?;
                    at += len;
                    (value_tag >> 3, value)
                }
                _ => return None,
            };
            if at != end {
                return None;
            }
            stat(id, field, bits);
            pos = end;
        }
        (pos == range.1).then_some(values)
    }

    /// The next field when it is a length-delimited field with the one-byte
    /// tag `tag` and a one-byte length that fits the message: its payload
    /// range, the cursor moved past it. `None` (the cursor unmoved) for
    /// anything else, which [`Cursor::next_field`] then reads and checks.
    #[inline(always)]
    pub(crate) fn short_len(&mut self, tag: u8) -> Option<(usize, usize)> {
        let end = self.short_end(tag).filter(|&end| end <= self.end)?;
        let start = self.pos + 2;
        self.pos = end;
        Some((start, end))
    }

    /// The length of the whole file.
    pub(crate) fn file_len(&self) -> usize {
        self.buf.len()
    }

    pub(crate) fn bytes(&self, range: (usize, usize)) -> &'a [u8] {
        &self.buf[range.0..range.1]
    }

    /// Reads the next field, or `None` at the end of the message. Always
    /// inlined: as a call, its result went through memory, and the event
    /// loop stalled on reading it back.
    #[inline(always)]
    pub(crate) fn next_field(&mut self) -> Result<Option<Field>, Error> {
        if self.pos >= self.end {
            return Ok(None);
        }
        let at = self.pos;
        let tag = self.varint()?;
        let wire_type = (tag & 7) as u8;
        let number = tag >> 3;
        if number == 0 || number > u64::from(u32::MAX >> 3) {
            return Err(Error::FieldNumber {
                message: self.message,
                number,
                at,
            });
        }
        let value = match wire_type {
            0 => Value::Varint(self.varint()?),
            1 => Value::Fixed64(u64::from_le_bytes(self.fixed::<8>("fixed64 value")?)),
            2 => {
                let len_at = self.pos;
                let len = self.varint()?;
                let room = (self.end - self.pos) as u64;
                if len > room {
                    return Err(self.length_error(len, len_at));
                }
                let start = self.pos;
                self.pos += len as usize;
                Value::Len(start, self.pos)
            }
            5 => {
                self.fixed::<4>("fixed32 value")?;
                Value::Fixed32
            }
            _ => {
                return Err(Error::InvalidWireType {
                    message: self.message,
                    wire_type,
                    at,
                });
            }
        };
        Ok(Some(Field {
            number: number as u32,
            at,
            value,
        }))
    }

    /// Out of line on purpose: inlined into every field read, it made the
    /// event loop larger and 3 % more instructions (cachegrind).
    #[inline(never)]
    fn varint(&mut self) -> Result<u64, Error> {
        if let Some((value, len)) = short_varint(self.buf, self.pos)
            && self.pos + len <= self.end
        {
            self.pos += len;
            return Ok(value);
        }
        // Longer varints (a negative int64 takes ten bytes), ones that run
        // past the message and ones near the end of the file.
        self.varint_slow()
    }

    #[cold]
    fn varint_slow(&mut self) -> Result<u64, Error> {
        let at = self.pos;
        let window = &self.buf[at..self.end];
        let mut value: u64 = 0;
        for (i, &byte) in window.iter().take(10).enumerate() {
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte < 0x80 {
                self.pos = at + i + 1;
                return Ok(value);
            }
        }
        if window.len() < 10 {
            return Err(self.overrun_error("varint", at));
        }
        Err(Error::LongVarint {
            message: self.message,
            at,
        })
    }

    fn fixed<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], Error> {
        let at = self.pos;
        match self.buf[..self.end].get(at..at + N) {
            Some(bytes) => {
                self.pos += N;
                let mut out = [0u8; N];
                out.copy_from_slice(bytes);
                Ok(out)
            }
            None => Err(self.overrun_error(what, at)),
        }
    }

    /// A read that runs past the end of the message is a truncated file when
    /// the message ends where the file does, and a damaged one otherwise.
    fn overrun_error(&self, what: &'static str, at: usize) -> Error {
        if self.end == self.buf.len() {
            Error::Truncated {
                what,
                at,
                file_len: self.buf.len(),
            }
        } else {
            Error::Overrun {
                message: self.message,
                what,
                at,
                end: self.end,
            }
        }
    }

    fn length_error(&self, len: u64, at: usize) -> Error {
        if self.end == self.buf.len() {
            Error::TruncatedLength {
                len,
                at,
                file_len: self.buf.len(),
            }
        } else {
            Error::LengthOverrun {
                message: self.message,
                len,
                at,
                end: self.end,
            }
        }
    }

    /// The error for a known field that came with the wrong wire type.
    pub(crate) fn wire_type_error(&self, field: &Field, expected: &'static str) -> Error {
        let wire_type = match field.value {
            Value::Varint(_) => 0,
            Value::Fixed64(_) => 1,
            Value::Len(..) => 2,
            Value::Fixed32 => 5,
        };
        Error::WireType {
            message: self.message,
            field: field.number,
            wire_type,
            expected,
            at: field.at,
        }
    }

    /// The value of a varint field (`int64`, `uint64`).
    #[inline]
    pub(crate) fn expect_varint(&self, field: &Field) -> Result<u64, Error> {
        match field.value {
            Value::Varint(v) => Ok(v),
            _ => Err(self.wire_type_error(field, "varint")),
        }
    }

    /// The payload range of a length-delimited field (message, bytes).
    #[inline]
    pub(crate) fn expect_len(&self, field: &Field) -> Result<(usize, usize), Error> {
        match field.value {
            Value::Len(start, end) => Ok((start, end)),
            _ => Err(self.wire_type_error(field, "length-delimited")),
        }
    }

    /// The value of a `double` field.
    pub(crate) fn expect_fixed64(&self, field: &Field) -> Result<u64, Error> {
        match field.value {
            Value::Fixed64(v) => Ok(v),
            _ => Err(self.wire_type_error(field, "fixed64")),
        }
    }

    /// The text of a `string` field, borrowed from the file.
    #[inline]
    pub(crate) fn expect_str(&self, field: &Field) -> Result<&'a str, Error> {
        let range = self.expect_len(field)?;
        std::str::from_utf8(self.bytes(range)).map_err(|_| Error::Utf8 {
            message: self.message,
            field: field.number,
            at: field.at,
        })
    }
}

/// Decodes the varint at `buf[pos..]` when it is at most eight bytes long
/// and eight bytes of `buf` follow `pos`: its value and length, found with
/// a few word operations instead of a loop over bytes. `None` otherwise,
/// and the caller takes the general path.
#[inline(always)]
fn short_varint(buf: &[u8], pos: usize) -> Option<(u64, usize)> {
    let word = u64::from_le_bytes(buf.get(pos..pos + 8)?.try_into().ok()?);
    // One byte (ids, small counts): no groups to close up.
    if word & 0x80 == 0 {
        return Some((word & 0x7f, 1));
    }
    // The high bit of each byte that ends the varint, the lowest first.
    let stops = !word & 0x8080_8080_8080_8080;
    if stops == 0 {
        return None;
    }
    let len = (stops.trailing_zeros() / 8 + 1) as usize;
    // The bytes up to the last one of the varint, without continuation bits.
    let mut x = word & (stops ^ (stops - 1)) & 0x7f7f_7f7f_7f7f_7f7f;
    // Closes the gaps the continuation bits left: pairs of 7-bit groups,
    // then of 14-bit groups, then of 28-bit groups.
    x = (x & 0x007f_007f_007f_007f) | ((x & 0x7f00_7f00_7f00_7f00) >> 1);
    x = (x & 0x0000_3fff_0000_3fff) | ((x & 0x3fff_0000_3fff_0000) >> 2);
    x = (x & 0x0000_0000_0fff_ffff) | ((x & 0x0fff_ffff_0000_0000) >> 4);
    Some((x, len))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `value` as a protobuf varint.
    fn encode(mut value: u64) -> Vec<u8> {
        let mut out = Vec::new();
        while value >= 0x80 {
            out.push(value as u8 | 0x80);
            value >>= 7;
        }
        out.push(value as u8);
        out
    }

    #[test]
    fn short_varints_decode_like_the_byte_loop() {
        let mut values = vec![0, 1, 127, 128, 300, u64::MAX, (1 << 56) - 1, 1 << 56];
        for bits in 0..64 {
            values.extend([1u64 << bits, (1u64 << bits) - 1, (1u64 << bits) + 1]);
        }
        for value in values {
            let mut buf = encode(value);
            let len = buf.len();
            // Trailing bytes with continuation bits must not leak in.
            buf.extend([0xff; 10]);
            let got = short_varint(&buf, 0);
            if len <= 8 {
                assert_eq!(got, Some((value, len)), "{value}");
            } else {
                assert_eq!(got, None, "{value}");
            }
            let mut cursor = Cursor::new(&buf[..len], "test");
            assert_eq!(cursor.varint().unwrap(), value);
            assert_eq!(cursor.position(), len);
        }
        // Fewer than eight bytes left: the general path's job.
        assert_eq!(short_varint(&[1, 2, 3], 0), None);
    }

    /// What the general field loop makes of an event: `[metadata_id,
    /// offset_ps, duration_ps]`, `None` when it holds anything else or
    /// does not decode.
    fn fields_of_event(buf: &[u8], range: (usize, usize)) -> Option<[u64; 3]> {
        let mut cursor = Cursor::new(buf, "test").nested(range, "XEvent");
        let mut values = [0; 3];
        while let Some(field) = cursor.next_field().ok()? {
            match (field.number, field.value) {
                (1..=3, Value::Varint(v)) => values[field.number as usize - 1] = v,
                _ => return None,
            }
        }
        Some(values)
    }

    /// What the general field loop makes of an event with stats: its
    /// `[metadata_id, offset_ps, duration_ps]` and, per stat, (metadata id,
    /// value field, value bits); `None` when it holds anything the fast
    /// path does not take or does not decode.
    #[allow(clippy::type_complexity)]
    fn fields_of_event_with_stats(
        buf: &[u8],
        range: (usize, usize),
    ) -> Option<([u64; 3], Vec<(u64, u8, u64)>)> {
        let mut cursor = Cursor::new(buf, "test").nested(range, "XEvent");
        let mut values = [0; 3];
        let mut stats = Vec::new();
        while let Some(field) = cursor.next_field().ok()? {
            match (field.number, field.value) {
                (1..=3, Value::Varint(v)) => values[field.number as usize - 1] = v,
                (4, Value::Len(start, end)) => {
                    let mut stat = cursor.nested((start, end), "XStat");
                    let (mut id, mut value) = (0, None);
                    while let Some(field) = stat.next_field().ok()? {
                        match (field.number, field.value) {
                            (1, Value::Varint(v)) => id = v,
                            (2, Value::Fixed64(v)) => value = Some((2, v)),
                            (3 | 4 | 7, Value::Varint(v)) => value = Some((field.number as u8, v)),
                            _ => return None,
                        }
                    }
                    stats.push((id, value?.0, value?.1));
                }
                _ => return None,
            }
        }
        Some((values, stats))
    }

    proptest::proptest! {
        #[test]
        fn events_with_stats_decode_like_the_field_loop(
            head in proptest::collection::vec((1u8..4, proptest::num::u64::ANY, 0u32..64), 0..4),
            stats in proptest::collection::vec(
                (0u64..300, 0u8..9, proptest::num::u64::ANY, 0u32..64, proptest::bool::ANY),
                0..4,
            ),
            cut in 0usize..3,
            tail in proptest::collection::vec(proptest::num::u8::ANY, 0..12),
        ) {
            let mut buf = Vec::new();
            for (number, value, shift) in head {
                buf.push(number << 3);
                buf.extend(encode(value >> shift));
            }
            for (id, field, value, shift, with_id) in stats {
                let mut stat = Vec::new();
                if with_id {
                    stat.push(0x08);
                    stat.extend(encode(id));
                }
                match field {
                    // A double, and a string the fast path leaves alone.
                    2 => {
                        stat.push(0x11);
                        stat.extend(value.to_le_bytes());
                    }
                    5 => {
                        stat.extend([0x2a, 1, b'x']);
                    }
                    _ => {
                        stat.push(field << 3);
                        stat.extend(encode(value >> shift));
                    }
                }
                buf.push(0x22);
                buf.extend(encode(stat.len() as u64));
                buf.extend(stat);
            }
            let end = buf.len().saturating_sub(cut);
            buf.extend(tail);
            let mut got_stats = Vec::new();
            let got = Cursor::new(&buf, "test").event_with_stats((0, end), |id, field, bits| {
                got_stats.push((id, field, bits));
            });
            if let Some(values) = got {
                proptest::prop_assert_eq!(Some((values, got_stats)), fields_of_event_with_stats(&buf, (0, end)));
            }
        }

        #[test]
        fn plain_events_decode_like_the_field_loop(
            fields in proptest::collection::vec((0u8..5, proptest::num::u64::ANY, 0u32..64), 0..6),
            cut in 0usize..4,
            tail in proptest::collection::vec(proptest::num::u8::ANY, 0..12),
        ) {
            let mut buf = Vec::new();
            for (number, value, shift) in fields {
                // Field 0 stands for a tag of another field (4: a stat).
                let tag = if number == 0 { 4 << 3 | 2 } else { number << 3 };
                buf.push(tag);
                buf.extend(encode(value >> shift));
            }
            // Cutting bytes off the message leaves varints that run past it.
            let end = buf.len().saturating_sub(cut);
            buf.extend(tail);
            let got = Cursor::new(&buf, "test").plain_event((0, end));
            if let Some(values) = got {
                proptest::prop_assert_eq!(Some(values), fields_of_event(&buf, (0, end)));
            }
        }
    }
}
