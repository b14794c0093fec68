//! The Chrome trace-event JSON writer.

use std::io::{self, Write};

use trace_model::{ArgValue, Event, EventSink, Phase, Ps, SHOWN_NAME_LIMIT, shown_name};

/// Bytes gathered before they are handed to the writer.
const FLUSH_AT: usize = 256 * 1024;

/// Writes `{"traceEvents":[` ... `]}` to `out`, one event per line.
///
/// The first write error stops all output; [`ChromeJson::finish`] reports
/// it. Call `finish` to close the document: without it the JSON is cut off.
pub struct ChromeJson<W: Write> {
    out: W,
    buf: Vec<u8>,
    n_events: u64,
    error: Option<io::Error>,
}

impl<W: Write> ChromeJson<W> {
    pub fn new(out: W) -> ChromeJson<W> {
        let mut buf = Vec::with_capacity(FLUSH_AT + 4096);
        buf.extend_from_slice(b"{\"displayTimeUnit\":\"ns\",\"traceEvents\":[\n");
        ChromeJson {
            out,
            buf,
            n_events: 0,
            error: None,
        }
    }

    /// Events written so far.
    pub fn n_events(&self) -> u64 {
        self.n_events
    }

    /// Closes the document, flushes and returns the writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.buf.extend_from_slice(b"\n]}\n");
        self.flush_buf();
        if let Some(err) = self.error.take() {
            return Err(err);
        }
        self.out.flush()?;
        Ok(self.out)
    }

    fn flush_buf(&mut self) {
        if self.error.is_none()
            && let Err(err) = self.out.write_all(&self.buf)
        {
            self.error = Some(err);
        }
        self.buf.clear();
    }

    /// Appends one event.
    pub fn write_event(&mut self, event: &Event<'_>) {
        if self.error.is_some() {
            return;
        }
        self.separate();
        format_event(&mut self.buf, event);
        self.maybe_flush();
    }

    /// Appends one event that [`format_event`] wrote earlier.
    pub(crate) fn write_formatted(&mut self, text: &[u8]) {
        if self.error.is_some() {
            return;
        }
        self.separate();
        self.buf.extend_from_slice(text);
        self.maybe_flush();
    }

    fn separate(&mut self) {
        if self.n_events > 0 {
            self.buf.extend_from_slice(b",\n");
        }
        self.n_events += 1;
    }

    fn maybe_flush(&mut self) {
        if self.buf.len() >= FLUSH_AT {
            self.flush_buf();
        }
    }
}

/// Appends one event as a JSON object.
pub(crate) fn format_event(buf: &mut Vec<u8>, event: &Event<'_>) {
    buf.push(b'{');
    let mut code_buf = [0u8; 4];
    let code: &str = match event.phase {
        Phase::Complete => "X",
        Phase::Begin => "B",
        Phase::End => "E",
        Phase::Instant => "i",
        Phase::Counter => "C",
        Phase::Metadata => "M",
        Phase::Other(c) => c.encode_utf8(&mut code_buf),
        // The model's "no ph": written without one, as it was read.
        Phase::Missing => "",
    };
    if event.phase != Phase::Missing {
        buf.extend_from_slice(b"\"ph\":");
        string(buf, code);
        buf.push(b',');
    }
    buf.extend_from_slice(b"\"name\":");
    string(buf, event.name);
    if !event.cat.is_empty() {
        buf.extend_from_slice(b",\"cat\":");
        string(buf, event.cat);
    }
    buf.extend_from_slice(b",\"pid\":");
    uint(buf, event.pid);
    buf.extend_from_slice(b",\"tid\":");
    uint(buf, event.tid);
    if let Some(ts) = event.ts {
        buf.extend_from_slice(b",\"ts\":");
        micros(buf, ts);
    }
    if let Some(dur) = event.dur {
        buf.extend_from_slice(b",\"dur\":");
        micros(buf, dur);
    }
    if !event.args.is_empty() {
        buf.extend_from_slice(b",\"args\":{");
        for (idx, arg) in event.args.iter().enumerate() {
            if idx > 0 {
                buf.push(b',');
            }
            string(buf, arg.key);
            buf.push(b':');
            value(buf, arg.value);
        }
        buf.push(b'}');
    }
    buf.push(b'}');
}

impl<W: Write> EventSink for ChromeJson<W> {
    fn event(&mut self, event: &Event<'_>) {
        self.write_event(event);
    }
}

fn value(buf: &mut Vec<u8>, value: ArgValue<'_>) {
    match value {
        ArgValue::Str(s) => string(buf, s),
        ArgValue::Int(v) => int(buf, v),
        ArgValue::Uint(v) => uint(buf, v),
        ArgValue::Float(v) if v.is_finite() => {
            // Display gives the shortest text that reads back to the same
            // f64, without an exponent: valid JSON. A whole number gets a
            // `.0` so that it reads back as a float.
            let start = buf.len();
            let _ = write!(buf, "{v}");
            if !buf[start..].contains(&b'.') {
                buf.extend_from_slice(b".0");
            }
        }
        ArgValue::Float(v) => string(buf, &v.to_string()),
        ArgValue::Bool(v) => buf.extend_from_slice(if v { b"true" } else { b"false" }),
        ArgValue::Null => buf.extend_from_slice(b"null"),
        ArgValue::Raw(raw) if raw.starts_with(['{', '[']) && raw.len() <= SHOWN_NAME_LIMIT => {
            buf.extend_from_slice(raw.as_bytes())
        }
        ArgValue::Raw(raw) => string(buf, raw),
    }
}

/// A JSON string literal; a text beyond a few kilobytes is written
/// shortened, with its length and hash (`trace_model::shown_name`).
fn string(buf: &mut Vec<u8>, text: &str) {
    let text = shown_name(text);
    buf.push(b'"');
    let bytes = text.as_bytes();
    let mut start = 0;
    for (idx, &byte) in bytes.iter().enumerate() {
        let escape: &[u8] = match byte {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0..=0x1f => b"",
            _ => continue,
        };
        buf.extend_from_slice(&bytes[start..idx]);
        if escape.is_empty() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            buf.extend_from_slice(b"\\u00");
            buf.push(HEX[usize::from(byte >> 4)]);
            buf.push(HEX[usize::from(byte & 15)]);
        } else {
            buf.extend_from_slice(escape);
        }
        start = idx + 1;
    }
    buf.extend_from_slice(&bytes[start..]);
    buf.push(b'"');
}

fn uint(buf: &mut Vec<u8>, mut v: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    buf.extend_from_slice(&digits[at..]);
}

fn int(buf: &mut Vec<u8>, v: i64) {
    if v < 0 {
        buf.push(b'-');
    }
    uint(buf, v.unsigned_abs());
}

/// Picoseconds as exact decimal microseconds: `1500000` -> `1.5`.
fn micros(buf: &mut Vec<u8>, ps: Ps) {
    if ps < 0 {
        buf.push(b'-');
    }
    let ps = ps.unsigned_abs();
    uint(buf, ps / 1_000_000);
    let mut frac = ps % 1_000_000;
    if frac == 0 {
        return;
    }
    let mut width = 6;
    while frac.is_multiple_of(10) {
        frac /= 10;
        width -= 1;
    }
    buf.push(b'.');
    let mut digits = [b'0'; 6];
    let mut at = width;
    while frac > 0 {
        at -= 1;
        digits[at] = b'0' + (frac % 10) as u8;
        frac /= 10;
    }
    buf.extend_from_slice(&digits[..width]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(f: impl FnOnce(&mut Vec<u8>)) -> String {
        let mut buf = Vec::new();
        f(&mut buf);
        String::from_utf8(buf).unwrap()
    }

    #[test]
    fn micros_are_exact() {
        assert_eq!(text(|b| micros(b, 0)), "0");
        assert_eq!(text(|b| micros(b, 1)), "0.000001");
        assert_eq!(text(|b| micros(b, 1_500_000)), "1.5");
        assert_eq!(text(|b| micros(b, -2_000_010)), "-2.00001");
        assert_eq!(text(|b| micros(b, i64::MIN)), "-9223372036854.775808");
    }

    #[test]
    fn strings_are_escaped() {
        assert_eq!(
            text(|b| string(b, "a\"b\\c\nd\u{1}é")),
            r#""a\"b\\c\nd\u0001é""#
        );
    }
}
