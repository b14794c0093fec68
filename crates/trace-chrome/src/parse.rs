//! The byte-level JSON parser: a state machine for the top level that reads
//! one event at a time from a contiguous window of text.
//!
//! Each step (one top-level member, or one event with the comma before it)
//! either completes or leaves every piece of state as it was. When a window
//! ends inside a step, [`Parser::run`] returns how far it got, and the caller
//! carries the unparsed tail into the next window and runs the step again,
//! so tokens split across windows need no special handling.

use std::collections::HashMap;

use trace_model::{Arg, ArgValue, Event, EventSink, Phase, Ps, ReadSummary};

use crate::Error;
use crate::lex::{Cur, PResult, Stop, unescape};
use crate::number::Decimal;

/// From the first `ts` that lies this far from zero, the origin moves to it
/// (see the crate docs).
const ORIGIN_THRESHOLD_PS: i128 = 1_000_000_000_000_000_000;
const PS_PER_US: i128 = 1_000_000;

/// The id of the first `pid`/`tid` string that is not a decimal number.
const FIRST_STRING_ID: u64 = 1 << 63;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Start,
    /// Inside the top-level object, before a member (`first`) or a comma;
    /// `after_comma` when a member must follow.
    Object {
        first: bool,
        after_comma: bool,
    },
    /// Inside an array of events, which is a member of the top-level object
    /// or the top level itself; `after_comma` when an event must follow.
    Events {
        first: bool,
        in_object: bool,
        after_comma: bool,
    },
    Done,
}

/// A string: text of the window, or unescaped text in `scratch`.
#[derive(Clone, Copy)]
enum Span {
    Window(usize, usize),
    Scratch(usize, usize),
}

#[derive(Clone, Copy)]
enum RawValue {
    Str(Span),
    Int(i64),
    Uint(u64),
    Float(f64),
    Bool(bool),
    Null,
    /// Raw JSON text of the window.
    Json(usize, usize),
}

struct RawArg {
    key: Span,
    value: RawValue,
}

#[derive(Clone, Copy)]
enum Field {
    Ph,
    Name,
    Cat,
    Pid,
    Tid,
    Ts,
    Dur,
    Args,
    Other,
}

pub(crate) struct Parser<'s> {
    sink: &'s mut dyn EventSink,
    state: State,
    /// Unescaped strings of the current event or member.
    scratch: Vec<u8>,
    raw_args: Vec<RawArg>,
    /// Empty between events; kept only for its allocation.
    args: Vec<Arg<'static>>,
    string_ids: HashMap<Box<[u8]>, u64>,
    origin_ps: Option<i128>,
    n_events: u64,
    saw_trace_events: bool,
}

/// The text of a span; checks UTF-8.
fn text<'x>(w: &'x [u8], scratch: &'x [u8], base: u64, span: Span) -> Result<&'x str, Error> {
    let (bytes, start) = match span {
        Span::Window(s, e) => (&w[s..e], Some(s)),
        Span::Scratch(s, e) => (&scratch[s..e], None),
    };
    std::str::from_utf8(bytes).map_err(|err| Error::Json {
        // Unescaped text has no offset of its own; point at the event.
        offset: base + start.map_or(0, |s| (s + err.valid_up_to()) as u64),
        message: "invalid UTF-8 in string".to_owned(),
    })
}

fn span_bytes<'x>(w: &'x [u8], scratch: &'x [u8], span: Span) -> &'x [u8] {
    match span {
        Span::Window(s, e) => &w[s..e],
        Span::Scratch(s, e) => &scratch[s..e],
    }
}

/// Hands out `v`'s allocation as an empty vector of another lifetime
/// (collecting in place reuses it).
#[allow(clippy::unnecessary_filter_map)]
fn recycle<'a, 'b>(mut v: Vec<Arg<'a>>) -> Vec<Arg<'b>> {
    v.clear();
    v.into_iter().filter_map(|_| None).collect()
}

impl<'s> Parser<'s> {
    pub(crate) fn new(sink: &'s mut dyn EventSink) -> Parser<'s> {
        Parser {
            sink,
            state: State::Start,
            scratch: Vec::new(),
            raw_args: Vec::new(),
            args: Vec::new(),
            string_ids: HashMap::new(),
            origin_ps: None,
            n_events: 0,
            saw_trace_events: false,
        }
    }

    pub(crate) fn summary(&self) -> ReadSummary {
        ReadSummary {
            n_events: self.n_events,
            origin_ps: self.origin_ps.unwrap_or(0),
        }
    }

    /// Parses the window `w`, which starts at byte `base` of the text, as
    /// far as it holds whole steps, and returns how many bytes it used.
    /// With `eof`, `w` is the rest of the text, and it must complete it.
    pub(crate) fn run(&mut self, w: &[u8], base: u64, eof: bool) -> Result<usize, Error> {
        let mut cur = Cur { w, i: 0, base };
        loop {
            // Whitespace between steps is used up for good, so that a long
            // run of it is never carried into the next window.
            if self.state != State::Start {
                while cur.i < w.len() && matches!(w[cur.i], b' ' | b'\n' | b'\r' | b'\t') {
                    cur.i += 1;
                }
            }
            let start = cur.i;
            match self.step(&mut cur) {
                Ok(true) => {}
                Ok(false) => return Ok(cur.i),
                Err(Stop::More) if eof => {
                    return Err(Error::Truncated {
                        offset: base + w.len() as u64,
                    });
                }
                Err(Stop::More) => return Ok(start),
                Err(Stop::Fail(err)) => return Err(err),
            }
        }
    }

    /// One step; `Ok(false)` when the whole window is used up after the end
    /// of the document.
    #[inline]
    fn step(&mut self, c: &mut Cur<'_>) -> PResult<bool> {
        match self.state {
            State::Events {
                first,
                in_object,
                after_comma,
            } => {
                let b = c.peek()?;
                if !first {
                    // The comma is a step of its own, so that whitespace
                    // after it is used up too.
                    match b {
                        b',' => {
                            c.i += 1;
                            self.state = State::Events {
                                first: true,
                                in_object,
                                after_comma: true,
                            };
                            return Ok(true);
                        }
                        b']' => return self.close_events(c, in_object),
                        _ => return Err(c.json_err(c.i, "expected ',' or ']'")),
                    }
                } else if b == b']' && !after_comma {
                    return self.close_events(c, in_object);
                }
                if b != b'{' {
                    return Err(c.event_err(c.i, "expected an object"));
                }
                self.event(c)?;
                self.state = State::Events {
                    first: false,
                    in_object,
                    after_comma: false,
                };
            }
            State::Start => self.start(c)?,
            State::Object { first, after_comma } => self.member(c, first, after_comma)?,
            State::Done => match c.peek() {
                Err(_) => {
                    c.i = c.w.len();
                    return Ok(false);
                }
                Ok(_) => return Err(c.json_err(c.i, "unexpected data after the top-level value")),
            },
        }
        Ok(true)
    }

    fn close_events(&mut self, c: &mut Cur<'_>, in_object: bool) -> PResult<bool> {
        c.i += 1;
        self.state = if in_object {
            State::Object {
                first: false,
                after_comma: false,
            }
        } else {
            State::Done
        };
        Ok(true)
    }

    fn start(&mut self, c: &mut Cur<'_>) -> PResult<()> {
        // A byte order mark is tolerated at the very start.
        if c.base == 0 && c.i == 0 && c.w.first() == Some(&0xef) {
            c.literal(b"\xef\xbb\xbf")?;
        }
        let kind = match c.peek()? {
            b'{' => {
                c.i += 1;
                self.state = State::Object {
                    first: true,
                    after_comma: false,
                };
                return Ok(());
            }
            b'[' => {
                c.i += 1;
                self.state = State::Events {
                    first: true,
                    in_object: false,
                    after_comma: false,
                };
                return Ok(());
            }
            b'"' => "top level is a string",
            b'-' | b'0'..=b'9' => "top level is a number",
            b't' | b'f' => "top level is a boolean",
            b'n' => "top level is null",
            _ => return Err(c.json_err(c.i, "expected '{' or '['")),
        };
        Err(Stop::Fail(Error::NotATrace(kind)))
    }

    /// One member of the top-level object, or its end.
    fn member(&mut self, c: &mut Cur<'_>, first: bool, after_comma: bool) -> PResult<()> {
        let b = c.peek()?;
        if !first {
            match b {
                b',' => {
                    c.i += 1;
                    self.state = State::Object {
                        first: true,
                        after_comma: true,
                    };
                    return Ok(());
                }
                b'}' => {}
                _ => return Err(c.json_err(c.i, "expected ',' or '}'")),
            }
        } else if after_comma && b != b'"' {
            return Err(c.json_err(c.i, "expected a string key"));
        }
        match b {
            b'}' => {
                c.i += 1;
                if !self.saw_trace_events {
                    return Err(Stop::Fail(Error::NotATrace(
                        "object has no traceEvents member",
                    )));
                }
                self.state = State::Done;
                Ok(())
            }
            b'"' => {
                self.scratch.clear();
                let key = self.string(c)?;
                c.expect(b':', "expected ':'")?;
                if span_bytes(c.w, &self.scratch, key) == b"traceEvents" {
                    if c.peek()? != b'[' {
                        return Err(Stop::Fail(Error::NotATrace("traceEvents is not an array")));
                    }
                    c.i += 1;
                    self.state = State::Events {
                        first: true,
                        in_object: true,
                        after_comma: false,
                    };
                    self.saw_trace_events = true;
                } else {
                    c.skip_value(0)?;
                    self.state = State::Object {
                        first: false,
                        after_comma: false,
                    };
                }
                Ok(())
            }
            _ => Err(c.json_err(c.i, "expected a string key or '}'")),
        }
    }

    /// Reads the string at the current position; one with escapes is
    /// unescaped into `scratch`.
    #[inline]
    fn string(&mut self, c: &mut Cur<'_>) -> PResult<Span> {
        let start = c.i + 1;
        let (end, escaped) = c.scan_string()?;
        if !escaped {
            return Ok(Span::Window(start, end));
        }
        let from = self.scratch.len();
        unescape(&c.w[start..end], &mut self.scratch)
            .map_err(|(at, message)| c.json_err(start + at, message))?;
        Ok(Span::Scratch(from, self.scratch.len()))
    }

    /// One event, from its `{`; pushes it into the sink.
    fn event(&mut self, c: &mut Cur<'_>) -> PResult<()> {
        c.i += 1;
        self.scratch.clear();
        self.raw_args.clear();
        let mut ph = None;
        let mut name = None;
        let mut cat = None;
        let mut pid = 0;
        let mut tid = 0;
        let mut ts = None;
        let mut dur = None;
        let mut b = c.peek()?;
        if b != b'}' {
            loop {
                if b != b'"' {
                    return Err(c.json_err(c.i, "expected a string key"));
                }
                let field = match known_key(c.w, c.i) {
                    Some((field, len)) => {
                        c.i += len;
                        field
                    }
                    None => {
                        let key = self.string(c)?;
                        field_of(span_bytes(c.w, &self.scratch, key))
                    }
                };
                c.expect(b':', "expected ':'")?;
                match field {
                    Field::Ph => ph = self.string_field(c, "ph")?,
                    Field::Name => name = self.string_field(c, "name")?,
                    Field::Cat => cat = self.string_field(c, "cat")?,
                    Field::Pid => pid = self.id_field(c, "pid")?,
                    Field::Tid => tid = self.id_field(c, "tid")?,
                    Field::Ts => ts = self.time_field(c, "ts")?,
                    Field::Dur => dur = self.time_field(c, "dur")?,
                    Field::Args => self.args(c)?,
                    Field::Other => c.skip_value(0)?,
                }
                match c.peek()? {
                    b',' => {
                        c.i += 1;
                        b = c.peek()?;
                    }
                    b'}' => break,
                    _ => return Err(c.json_err(c.i, "expected ',' or '}'")),
                }
            }
        }
        c.i += 1;

        // The event is complete: from here on nothing asks for more text,
        // so changing state is safe.
        let w = c.w;
        let scratch = &self.scratch;
        let phase = match ph {
            Some(span) => Phase::from_code(text(w, scratch, c.base, span)?),
            None => Phase::Missing,
        };
        let ts = match ts {
            Some((ps, ts_at)) => {
                let origin = *self.origin_ps.get_or_insert_with(|| choose_origin(ps));
                let rel = Ps::try_from(ps - origin).map_err(|_| {
                    c.event_err(
                        ts_at,
                        "ts is out of range (more than 106 days from the origin)",
                    )
                })?;
                Some(rel)
            }
            None => None,
        };
        let dur = match dur {
            Some((ps, dur_at)) if phase == Phase::Complete => Some(
                Ps::try_from(ps)
                    .map_err(|_| c.event_err(dur_at, "dur is out of range (more than 106 days)"))?,
            ),
            _ => None,
        };
        let mut args = recycle(std::mem::take(&mut self.args));
        for raw in &self.raw_args {
            let value = match raw.value {
                RawValue::Str(span) => ArgValue::Str(text(w, scratch, c.base, span)?),
                RawValue::Int(v) => ArgValue::Int(v),
                RawValue::Uint(v) => ArgValue::Uint(v),
                RawValue::Float(v) => ArgValue::Float(v),
                RawValue::Bool(v) => ArgValue::Bool(v),
                RawValue::Null => ArgValue::Null,
                RawValue::Json(s, e) => {
                    ArgValue::Raw(text(w, scratch, c.base, Span::Window(s, e))?)
                }
            };
            args.push(Arg {
                key: text(w, scratch, c.base, raw.key)?,
                value,
            });
        }
        let event = Event {
            phase,
            name: match name {
                Some(span) => text(w, scratch, c.base, span)?,
                None => "",
            },
            cat: match cat {
                Some(span) => text(w, scratch, c.base, span)?,
                None => "",
            },
            pid,
            tid,
            ts,
            dur,
            args: &args,
        };
        self.sink.event(&event);
        self.n_events += 1;
        self.args = recycle(args);
        Ok(())
    }

    /// A string member; `null` counts as absent.
    fn string_field(&mut self, c: &mut Cur<'_>, field: &str) -> PResult<Option<Span>> {
        match c.peek()? {
            b'"' => Ok(Some(self.string(c)?)),
            b'n' => {
                c.literal(b"null")?;
                Ok(None)
            }
            _ => Err(c.event_err(c.i, &format!("{field} must be a string"))),
        }
    }

    /// A time in microseconds, as picoseconds and where it was written.
    fn time_field(&mut self, c: &mut Cur<'_>, field: &str) -> PResult<Option<(i128, usize)>> {
        let b = c.peek()?;
        let at = c.i;
        match b {
            b'-' | b'0'..=b'9' => {
                let ps = c
                    .number()?
                    .us_to_ps()
                    .ok_or_else(|| c.event_err(at, &format!("{field} is out of range")))?;
                Ok(Some((ps, at)))
            }
            b'n' => {
                c.literal(b"null")?;
                Ok(None)
            }
            _ => Err(c.event_err(at, &format!("{field} must be a number"))),
        }
    }

    /// A process or thread id: an integer or a string (see the crate docs).
    fn id_field(&mut self, c: &mut Cur<'_>, field: &str) -> PResult<u64> {
        let b = c.peek()?;
        let at = c.i;
        match b {
            b'-' | b'0'..=b'9' => {
                let value = c.number()?.as_i128();
                match value.and_then(|v| {
                    u64::try_from(v)
                        .ok()
                        .or_else(|| i64::try_from(v).ok().map(|v| v as u64))
                }) {
                    Some(id) => Ok(id),
                    None => Err(
                        c.event_err(at, &format!("{field} must be a 64-bit integer or a string"))
                    ),
                }
            }
            b'"' => {
                let span = self.string(c)?;
                let bytes = span_bytes(c.w, &self.scratch, span);
                string_id(&mut self.string_ids, bytes)
                    .ok_or_else(|| c.json_err(at, "invalid UTF-8 in string"))
            }
            b'n' => {
                c.literal(b"null")?;
                Ok(0)
            }
            _ => Err(c.event_err(at, &format!("{field} must be an integer or a string"))),
        }
    }

    /// The `args` object, into `raw_args`.
    fn args(&mut self, c: &mut Cur<'_>) -> PResult<()> {
        match c.peek()? {
            b'{' => c.i += 1,
            b'n' => return c.literal(b"null"),
            _ => return Err(c.event_err(c.i, "args must be an object")),
        }
        let mut b = c.peek()?;
        if b == b'}' {
            c.i += 1;
            return Ok(());
        }
        loop {
            if b != b'"' {
                return Err(c.json_err(c.i, "expected a string key"));
            }
            let key = self.string(c)?;
            c.expect(b':', "expected ':'")?;
            let value = match c.peek()? {
                b'"' => RawValue::Str(self.string(c)?),
                b'{' | b'[' => {
                    let start = c.i;
                    c.skip_value(1)?;
                    RawValue::Json(start, c.i)
                }
                b't' => {
                    c.literal(b"true")?;
                    RawValue::Bool(true)
                }
                b'f' => {
                    c.literal(b"false")?;
                    RawValue::Bool(false)
                }
                b'n' => {
                    c.literal(b"null")?;
                    RawValue::Null
                }
                b'-' | b'0'..=b'9' => {
                    let start = c.i;
                    let number = c.number()?;
                    number_value(number, &c.w[start..c.i])
                }
                _ => return Err(c.json_err(c.i, "expected a value")),
            };
            self.raw_args.push(RawArg { key, value });
            match c.peek()? {
                b',' => {
                    c.i += 1;
                    b = c.peek()?;
                }
                b'}' => {
                    c.i += 1;
                    return Ok(());
                }
                _ => return Err(c.json_err(c.i, "expected ',' or '}'")),
            }
        }
    }
}

fn field_of(key: &[u8]) -> Field {
    match key {
        b"ph" => Field::Ph,
        b"name" => Field::Name,
        b"cat" => Field::Cat,
        b"pid" => Field::Pid,
        b"tid" => Field::Tid,
        b"ts" => Field::Ts,
        b"dur" => Field::Dur,
        b"args" => Field::Args,
        _ => Field::Other,
    }
}

/// A fast path for the usual keys, written without escapes: the field and
/// the length of the key with its quotes. Compares 8 bytes at once.
#[inline]
fn known_key(w: &[u8], i: usize) -> Option<(Field, usize)> {
    const fn word(key: &[u8]) -> (u64, u64) {
        let mut value = 0u64;
        let mut k = 0;
        while k < key.len() {
            value |= (key[k] as u64) << (8 * k);
            k += 1;
        }
        (value, u64::MAX >> (64 - 8 * key.len()))
    }
    const KEYS: [(u64, u64, Field, usize); 8] = {
        let keys: [(&[u8], Field); 8] = [
            (b"\"ph\"", Field::Ph),
            (b"\"pid\"", Field::Pid),
            (b"\"tid\"", Field::Tid),
            (b"\"ts\"", Field::Ts),
            (b"\"dur\"", Field::Dur),
            (b"\"name\"", Field::Name),
            (b"\"args\"", Field::Args),
            (b"\"cat\"", Field::Cat),
        ];
        let mut out = [(0, 0, Field::Other, 0); 8];
        let mut k = 0;
        while k < keys.len() {
            let (value, mask) = word(keys[k].0);
            out[k] = (value, mask, keys[k].1, keys[k].0.len());
            k += 1;
        }
        out
    };
    let block = w.get(i..i + 8)?;
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(block);
    let x = u64::from_le_bytes(bytes);
    KEYS.iter()
        .find(|(value, mask, _, _)| x & mask == *value)
        .map(|(_, _, field, len)| (*field, *len))
}

/// The origin for a trace whose first `ts` is `ps` (see the crate docs).
fn choose_origin(ps: i128) -> i128 {
    if ps.abs() < ORIGIN_THRESHOLD_PS {
        return 0;
    }
    ps.div_euclid(PS_PER_US) * PS_PER_US
}

/// An `args` number: an integer when written as one and it fits, otherwise
/// a float.
fn number_value(number: Decimal, text: &[u8]) -> RawValue {
    if let Some(v) = number.as_i128() {
        if let Ok(v) = i64::try_from(v) {
            return RawValue::Int(v);
        }
        if let Ok(v) = u64::try_from(v) {
            return RawValue::Uint(v);
        }
    }
    let value = std::str::from_utf8(text)
        .ok()
        .and_then(|it| it.parse::<f64>().ok());
    RawValue::Float(value.unwrap_or(f64::NAN))
}

/// The id of a string `pid` or `tid` (see the crate docs); `None` when the
/// string is not UTF-8.
fn string_id(ids: &mut HashMap<Box<[u8]>, u64>, bytes: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(bytes).ok()?;
    if !text.is_empty()
        && text.bytes().all(|b| b.is_ascii_digit())
        && let Ok(id) = text.parse::<u64>()
    {
        return Some(id);
    }
    if let Some(&id) = ids.get(bytes) {
        return Some(id);
    }
    let id = FIRST_STRING_ID + ids.len() as u64;
    ids.insert(bytes.into(), id);
    Some(id)
}
