//! The one error type of the crate: why a byte slice could not be read as an
//! XSpace, with the byte offset where reading stopped.

/// Why a file could not be read as an XSpace. Every message is one lowercase
/// line; byte offsets count from the start of the file.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("empty file")]
    Empty,
    /// The first bytes are those of another format that is never a valid
    /// XSpace (a gzip stream, JSON text).
    #[error("not an XSpace: the file starts like {0}")]
    OtherFormat(&'static str),
    /// The bytes are valid protobuf but hold no plane: profilers always
    /// write at least one, so this is some other message.
    #[error("not an XSpace: no planes")]
    NoPlanes,
    #[error(
        "{}: field {field} has wire type {wire_type}, expected {expected} at byte {at}",
        subject(.message)
    )]
    WireType {
        message: &'static str,
        field: u32,
        wire_type: u8,
        expected: &'static str,
        at: usize,
    },
    #[error("{}: invalid wire type {wire_type} at byte {at}", subject(.message))]
    InvalidWireType {
        message: &'static str,
        wire_type: u8,
        at: usize,
    },
    /// Field numbers run from 1 to 2^29 - 1.
    #[error("{}: field number {number} at byte {at} is out of range", subject(.message))]
    FieldNumber {
        message: &'static str,
        number: u64,
        at: usize,
    },
    #[error("truncated protobuf: length {len} at byte {at} runs past the end ({file_len} bytes)")]
    TruncatedLength {
        len: u64,
        at: usize,
        file_len: usize,
    },
    #[error("truncated protobuf: {what} at byte {at} runs past the end ({file_len} bytes)")]
    Truncated {
        what: &'static str,
        at: usize,
        file_len: usize,
    },
    #[error(
        "{}: length {len} at byte {at} runs past the end of the message at byte {end}",
        subject(.message)
    )]
    LengthOverrun {
        message: &'static str,
        len: u64,
        at: usize,
        end: usize,
    },
    #[error(
        "{}: {what} at byte {at} runs past the end of the message at byte {end}",
        subject(.message)
    )]
    Overrun {
        message: &'static str,
        what: &'static str,
        at: usize,
        end: usize,
    },
    #[error("{}: varint at byte {at} is longer than 10 bytes", subject(.message))]
    LongVarint { message: &'static str, at: usize },
    #[error("{}: field {field} at byte {at} is not valid utf-8", subject(.message))]
    Utf8 {
        message: &'static str,
        field: u32,
        at: usize,
    },
    /// An event lies so far from the earliest line that its relative time
    /// does not fit in 64-bit picoseconds (about 106 days).
    #[error(
        "malformed XEvent: start at byte {at} is more than 106 days away from the earliest line"
    )]
    TimeOutOfRange { at: usize },
}

/// How a message is named in errors: a bad top-level field means the file is
/// not an XSpace at all; a bad nested field means a damaged one.
fn subject(message: &str) -> String {
    if message == "XSpace" {
        "not an XSpace".to_owned()
    } else {
        format!("malformed {message}")
    }
}
