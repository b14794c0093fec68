//! The token level of the JSON parser: whitespace, strings, numbers,
//! literals and skipping whole values, over one window of text.
//!
//! Every function either consumes a whole token or returns [`Stop::More`]
//! when the window ends inside it, leaving the position as it was for the
//! step that called it to be run again on a longer window.

use crate::Error;
use crate::number::{Decimal, MAX_DIGITS};

/// Deeper nesting inside skipped or raw values is rejected rather than
/// risking the stack.
const MAX_DEPTH: u32 = 128;

/// Why a step stopped early.
pub(crate) enum Stop {
    /// The window ended inside the step.
    More,
    Fail(Error),
}

impl From<Error> for Stop {
    fn from(err: Error) -> Stop {
        Stop::Fail(err)
    }
}

pub(crate) type PResult<T> = Result<T, Stop>;

/// A window of text and a position in it.
pub(crate) struct Cur<'w> {
    pub(crate) w: &'w [u8],
    pub(crate) i: usize,
    /// Offset of `w[0]` in the whole text.
    pub(crate) base: u64,
}

impl Cur<'_> {
    pub(crate) fn offset(&self, at: usize) -> u64 {
        self.base + at as u64
    }

    pub(crate) fn json_err(&self, at: usize, message: &str) -> Stop {
        Stop::Fail(Error::Json {
            offset: self.offset(at),
            message: message.to_owned(),
        })
    }

    pub(crate) fn event_err(&self, at: usize, message: &str) -> Stop {
        Stop::Fail(Error::Event {
            offset: self.offset(at),
            message: message.to_owned(),
        })
    }

    /// Skips whitespace and returns the next byte without consuming it.
    #[inline]
    pub(crate) fn peek(&mut self) -> PResult<u8> {
        while let Some(&b) = self.w.get(self.i) {
            if !matches!(b, b' ' | b'\n' | b'\r' | b'\t') {
                return Ok(b);
            }
            self.i += 1;
        }
        Err(Stop::More)
    }

    #[inline]
    pub(crate) fn expect(&mut self, byte: u8, message: &str) -> PResult<()> {
        if self.peek()? != byte {
            return Err(self.json_err(self.i, message));
        }
        self.i += 1;
        Ok(())
    }

    pub(crate) fn literal(&mut self, text: &[u8]) -> PResult<()> {
        for (k, &want) in text.iter().enumerate() {
            match self.w.get(self.i + k) {
                None => return Err(Stop::More),
                Some(&b) if b != want => return Err(self.json_err(self.i + k, "invalid literal")),
                Some(_) => {}
            }
        }
        self.i += text.len();
        Ok(())
    }

    /// Scans the string at `self.i` (a `"`), checking its escapes. Returns
    /// the end of its contents and whether it has escapes.
    #[inline]
    pub(crate) fn scan_string(&mut self) -> PResult<(usize, bool)> {
        let w = self.w;
        let mut i = self.i + 1;
        let mut escaped = false;
        loop {
            while let Some(block) = w.get(i..i + 8) {
                let mut bytes = [0u8; 8];
                bytes.copy_from_slice(block);
                let special = special_bytes(u64::from_le_bytes(bytes));
                if special != 0 {
                    // The lowest flag is exact (see `special_bytes`).
                    i += (special.trailing_zeros() / 8) as usize;
                    break;
                }
                i += 8;
            }
            let Some(&b) = w.get(i) else {
                return Err(Stop::More);
            };
            match b {
                b'"' => {
                    self.i = i + 1;
                    return Ok((i, escaped));
                }
                b'\\' => {
                    escaped = true;
                    let Some(&e) = w.get(i + 1) else {
                        return Err(Stop::More);
                    };
                    match e {
                        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => i += 2,
                        b'u' => {
                            for k in i + 2..i + 6 {
                                let Some(&h) = w.get(k) else {
                                    return Err(Stop::More);
                                };
                                if !h.is_ascii_hexdigit() {
                                    return Err(self.json_err(k, "invalid \\u escape"));
                                }
                            }
                            i += 6;
                        }
                        _ => return Err(self.json_err(i, "invalid escape in string")),
                    }
                }
                0..=0x1f => return Err(self.json_err(i, "control character in string")),
                _ => i += 1,
            }
        }
    }

    /// Reads the number at `self.i`, checking its syntax.
    #[inline]
    pub(crate) fn number(&mut self) -> PResult<Decimal> {
        match self.short_number() {
            Some(res) => res,
            None => self.long_number(),
        }
    }

    /// The common case: at most 19 digits, so that `u64` arithmetic does;
    /// `None` for longer numbers, and for any doubt, which the long path
    /// settles.
    #[inline]
    pub(crate) fn short_number(&mut self) -> Option<PResult<Decimal>> {
        let w = self.w;
        let mut i = self.i;
        let neg = w.get(i) == Some(&b'-');
        if neg {
            i += 1;
        }
        let first = i;
        let mut mantissa: u64 = 0;
        match w.get(i) {
            Some(b'0') => i += 1,
            Some(b'1'..=b'9') => i = digits(w, i, &mut mantissa),
            _ => return None,
        }
        // Leading zeros count too, which only sends more numbers down the
        // long path.
        let mut n_digits = i - first;
        let mut exp: i64 = 0;
        let mut integer = true;
        if w.get(i) == Some(&b'.') {
            integer = false;
            let first = i + 1;
            i = digits(w, first, &mut mantissa);
            if i == first {
                return None;
            }
            n_digits += i - first;
            exp = -((i - first) as i64);
        }
        if matches!(w.get(i), Some(b'e' | b'E')) {
            integer = false;
            let (e, next) = exponent(w, i + 1)?;
            exp += e;
            i = next;
        }
        if i >= w.len() || n_digits > 19 {
            return None;
        }
        self.i = i;
        Some(Ok(Decimal {
            neg,
            mantissa: u128::from(mantissa),
            exp,
            inexact: false,
            integer,
        }))
    }

    /// Any number, with up to 38 significant digits kept.
    pub(crate) fn long_number(&mut self) -> PResult<Decimal> {
        let w = self.w;
        let mut i = self.i;
        let neg = w.get(i) == Some(&b'-');
        if neg {
            i += 1;
        }
        let mut mantissa: u128 = 0;
        let mut n_digits = 0u32;
        let mut exp: i64 = 0;
        let mut inexact = false;
        match w.get(i) {
            None => return Err(Stop::More),
            Some(b'0') => i += 1,
            Some(b'1'..=b'9') => {
                while let Some(&b) = w.get(i) {
                    if !b.is_ascii_digit() {
                        break;
                    }
                    if n_digits < MAX_DIGITS {
                        mantissa = mantissa * 10 + u128::from(b - b'0');
                        n_digits += 1;
                    } else {
                        exp += 1;
                        inexact |= b != b'0';
                    }
                    i += 1;
                }
            }
            Some(_) => return Err(self.json_err(i, "invalid number")),
        }
        let mut integer = true;
        if w.get(i) == Some(&b'.') {
            integer = false;
            i += 1;
            let first = i;
            while let Some(&b) = w.get(i) {
                if !b.is_ascii_digit() {
                    break;
                }
                if n_digits < MAX_DIGITS {
                    if mantissa != 0 || b != b'0' {
                        mantissa = mantissa * 10 + u128::from(b - b'0');
                        n_digits += 1;
                    }
                    exp -= 1;
                } else {
                    inexact |= b != b'0';
                }
                i += 1;
            }
            if i == first {
                return Err(if i < w.len() {
                    self.json_err(i, "expected a digit after '.'")
                } else {
                    Stop::More
                });
            }
        }
        if matches!(w.get(i), Some(b'e' | b'E')) {
            integer = false;
            i += 1;
            match exponent(w, i) {
                Some((e, next)) => {
                    exp += e;
                    i = next;
                }
                None => {
                    let at = if matches!(w.get(i), Some(b'-' | b'+')) {
                        i + 1
                    } else {
                        i
                    };
                    return Err(if at < w.len() {
                        self.json_err(at, "expected a digit in exponent")
                    } else {
                        Stop::More
                    });
                }
            }
        }
        // A number is never the last byte of a document we accept, so a
        // window that ends here may cut it short.
        if i >= w.len() {
            return Err(Stop::More);
        }
        self.i = i;
        Ok(Decimal {
            neg,
            mantissa,
            exp,
            inexact,
            integer,
        })
    }

    /// Skips the value at the current position, checking it.
    pub(crate) fn skip_value(&mut self, depth: u32) -> PResult<()> {
        if depth > MAX_DEPTH {
            return Err(self.json_err(self.i, "nesting is too deep"));
        }
        match self.peek()? {
            b'"' => {
                let start = self.i + 1;
                let (end, _) = self.scan_string()?;
                check_utf8(self, start, end)?;
            }
            b'{' => {
                self.i += 1;
                let mut b = self.peek()?;
                if b == b'}' {
                    self.i += 1;
                    return Ok(());
                }
                loop {
                    if b != b'"' {
                        return Err(self.json_err(self.i, "expected a string key"));
                    }
                    let start = self.i + 1;
                    let (end, _) = self.scan_string()?;
                    check_utf8(self, start, end)?;
                    self.expect(b':', "expected ':'")?;
                    self.skip_value(depth + 1)?;
                    match self.peek()? {
                        b',' => {
                            self.i += 1;
                            b = self.peek()?;
                        }
                        b'}' => {
                            self.i += 1;
                            return Ok(());
                        }
                        _ => return Err(self.json_err(self.i, "expected ',' or '}'")),
                    }
                }
            }
            b'[' => {
                self.i += 1;
                if self.peek()? == b']' {
                    self.i += 1;
                    return Ok(());
                }
                loop {
                    self.skip_value(depth + 1)?;
                    match self.peek()? {
                        b',' => self.i += 1,
                        b']' => {
                            self.i += 1;
                            return Ok(());
                        }
                        _ => return Err(self.json_err(self.i, "expected ',' or ']'")),
                    }
                }
            }
            b't' => self.literal(b"true")?,
            b'f' => self.literal(b"false")?,
            b'n' => self.literal(b"null")?,
            b'-' | b'0'..=b'9' => {
                self.number()?;
            }
            _ => return Err(self.json_err(self.i, "expected a value")),
        }
        Ok(())
    }
}

pub(crate) fn check_utf8(cur: &Cur<'_>, start: usize, end: usize) -> PResult<()> {
    match std::str::from_utf8(&cur.w[start..end]) {
        Ok(_) => Ok(()),
        Err(err) => Err(cur.json_err(start + err.valid_up_to(), "invalid UTF-8 in string")),
    }
}

/// Appends the decimal digits at `w[i..]` to `mantissa` (wrapping on
/// overflow, which callers rule out by counting) and returns where they end.
#[inline]
fn digits(w: &[u8], mut i: usize, mantissa: &mut u64) -> usize {
    while let Some(block) = w.get(i..i + 8) {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(block);
        let Some(value) = eight_digits(u64::from_le_bytes(bytes)) else {
            break;
        };
        *mantissa = mantissa.wrapping_mul(100_000_000).wrapping_add(value);
        i += 8;
    }
    while let Some(&b) = w.get(i) {
        if !b.is_ascii_digit() {
            break;
        }
        *mantissa = mantissa.wrapping_mul(10).wrapping_add(u64::from(b - b'0'));
        i += 1;
    }
    i
}

/// The value of 8 ASCII digits read little-endian, or `None` if any byte is
/// not a digit.
#[inline]
fn eight_digits(x: u64) -> Option<u64> {
    const ZEROS: u64 = 0x3030_3030_3030_3030;
    let all_digits = (x & 0xf0f0_f0f0_f0f0_f0f0) == ZEROS
        && (x.wrapping_add(0x0606_0606_0606_0606) & 0xf0f0_f0f0_f0f0_f0f0) == ZEROS;
    if !all_digits {
        return None;
    }
    // Combine neighbours into 2-digit, then 4-digit, then 8-digit values.
    let x = x - ZEROS;
    let x = (x * 10 + (x >> 8)) & 0x00ff_00ff_00ff_00ff;
    let x = (x * 100 + (x >> 16)) & 0x0000_ffff_0000_ffff;
    Some((x * 10_000 + (x >> 32)) & 0xffff_ffff)
}

/// The exponent of a number from just after its `e`, and where it ends;
/// `None` when it has no digit (or the window ends before one).
#[inline]
pub(crate) fn exponent(w: &[u8], mut i: usize) -> Option<(i64, usize)> {
    let neg = match w.get(i) {
        Some(b'-') => {
            i += 1;
            true
        }
        Some(b'+') => {
            i += 1;
            false
        }
        _ => false,
    };
    let first = i;
    let mut e: i64 = 0;
    while let Some(&b) = w.get(i) {
        if !b.is_ascii_digit() {
            break;
        }
        // Far beyond any meaningful scale; saturating still tells "zero"
        // from "too large".
        e = (e * 10 + i64::from(b - b'0')).min(1_000_000_000);
        i += 1;
    }
    if i == first {
        return None;
    }
    Some((if neg { -e } else { e }, i))
}

/// Flags (high bit of the byte) the bytes of `x`, read little-endian, that
/// are `"`, `\` or a control character. A flag can be wrong only above a
/// right one, so the lowest flag is exact.
#[inline]
fn special_bytes(x: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let zero_byte = |v: u64| v.wrapping_sub(ONES) & !v & HIGHS;
    let quote = zero_byte(x ^ (ONES * u64::from(b'"')));
    let backslash = zero_byte(x ^ (ONES * u64::from(b'\\')));
    let control = x.wrapping_sub(ONES * 0x20) & !x & HIGHS;
    quote | backslash | control
}

/// Unescapes a string's contents (checked by `scan_string`) into `out`.
/// On error, returns the offset in `raw` and a message.
pub(crate) fn unescape(raw: &[u8], out: &mut Vec<u8>) -> Result<(), (usize, &'static str)> {
    let mut i = 0;
    while i < raw.len() {
        let Some(rel) = raw[i..].iter().position(|&b| b == b'\\') else {
            out.extend_from_slice(&raw[i..]);
            break;
        };
        out.extend_from_slice(&raw[i..i + rel]);
        i += rel;
        let code = raw.get(i + 1).copied().unwrap_or(b'?');
        let simple = match code {
            b'"' => Some(b'"'),
            b'\\' => Some(b'\\'),
            b'/' => Some(b'/'),
            b'b' => Some(0x08),
            b'f' => Some(0x0c),
            b'n' => Some(b'\n'),
            b'r' => Some(b'\r'),
            b't' => Some(b'\t'),
            _ => None,
        };
        if let Some(byte) = simple {
            out.push(byte);
            i += 2;
            continue;
        }
        let hi = hex4(raw, i + 2).ok_or((i, "invalid \\u escape"))?;
        let c = match hi {
            0xd800..=0xdbff => {
                let lo = match (raw.get(i + 6..i + 8), hex4(raw, i + 8)) {
                    (Some(b"\\u"), Some(lo @ 0xdc00..=0xdfff)) => lo,
                    _ => return Err((i, "unpaired surrogate in \\u escape")),
                };
                i += 6;
                0x10000 + ((hi - 0xd800) << 10) + (lo - 0xdc00)
            }
            0xdc00..=0xdfff => return Err((i, "unpaired surrogate in \\u escape")),
            _ => hi,
        };
        let c = char::from_u32(c).ok_or((i, "invalid \\u escape"))?;
        out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
        i += 6;
    }
    Ok(())
}

fn hex4(raw: &[u8], at: usize) -> Option<u32> {
    let digits = raw.get(at..at + 4)?;
    let mut value = 0;
    for &d in digits {
        value = value * 16 + char::from(d).to_digit(16)?;
    }
    Some(value)
}
