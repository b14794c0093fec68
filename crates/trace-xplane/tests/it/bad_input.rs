//! Input that is not an XSpace, or a damaged one: the exact error text.

use std::fmt::Write as _;
use std::io::Write as _;

use prost::Message;
use trace_xplane::generated::{XEvent, XEventMetadata, XLine, XPlane, XSpace, x_event, x_stat};

use crate::{check_bytes, stat};

#[track_caller]
fn check_error(bytes: &[u8], expect: &str) {
    let mut n_events = 0;
    let mut sink = |_: &trace_model::Event<'_>| n_events += 1;
    let read = trace_xplane::read(bytes, &mut sink)
        .map(|_| ())
        .map_err(|err| err.to_string());
    assert_eq!(read, Err(expect.to_owned()));
    let planes = trace_xplane::planes(bytes)
        .map(|_| ())
        .map_err(|err| err.to_string());
    // `planes` does not decode events, so it may accept what `read` rejects.
    if let Err(err) = planes {
        assert_eq!(err, expect);
    }
}

/// A small valid space: one plane, one line, two events with a stat.
pub(crate) fn small_space() -> Vec<u8> {
    let event = |offset_ps, stats| XEvent {
        metadata_id: 1,
        data: Some(x_event::Data::OffsetPs(offset_ps)),
        duration_ps: 10,
        stats,
    };
    let plane = XPlane {
        id: 0,
        name: "/host:CPU".to_owned(),
        lines: vec![XLine {
            id: 1,
            name: "main".to_owned(),
            timestamp_ns: 5,
            events: vec![
                event(0, vec![stat(1, x_stat::Value::StrValue("v".to_owned()))]),
                event(20, vec![]),
            ],
            ..XLine::default()
        }],
        event_metadata: [(
            1,
            XEventMetadata {
                id: 1,
                name: "op".to_owned(),
                ..Default::default()
            },
        )]
        .into_iter()
        .collect(),
        ..XPlane::default()
    };
    XSpace {
        planes: vec![plane],
        hostnames: vec!["vm".to_owned()],
        ..XSpace::default()
    }
    .encode_to_vec()
}

#[test]
fn empty_file() {
    check_error(b"", "empty file");
}

#[test]
fn json_text() {
    check_error(
        br#"{"traceEvents": []}"#,
        "not an XSpace: the file starts like JSON text",
    );
    check_error(b"[]", "not an XSpace: the file starts like JSON text");
}

#[test]
fn gzip_data() {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(br#"{"traceEvents": []}"#).unwrap();
    check_error(
        &gz.finish().unwrap(),
        "not an XSpace: the file starts like gzip data",
    );
}

#[test]
fn random_bytes() {
    // A fixed xorshift stream, so the error is always the same.
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let bytes: Vec<u8> = (0..4096)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 56) as u8
        })
        .collect();
    check_error(&bytes, "not an XSpace: invalid wire type 4 at byte 0");
    // The same noise inside a plane.
    let mut in_plane = vec![0x0a, 0x80, 0x20];
    in_plane.extend(&bytes);
    check_error(&in_plane, "malformed XPlane: invalid wire type 4 at byte 3");
}

#[test]
fn wrong_wire_types() {
    check_error(
        &[0x08, 0x01],
        "not an XSpace: field 1 has wire type 0, expected length-delimited at byte 0",
    );
    check_error(
        &[0x22, 0x00, 0x11, 1, 2, 3, 4, 5, 6, 7, 8],
        "not an XSpace: field 2 has wire type 1, expected length-delimited at byte 2",
    );
    // A plane whose name is a varint.
    check_error(
        &[0x0a, 0x02, 0x10, 0x01],
        "malformed XPlane: field 2 has wire type 0, expected length-delimited at byte 2",
    );
}

#[test]
fn structure() {
    check_error(&[0x22, 0x02, b'v', b'm'], "not an XSpace: no planes");
    check_error(
        &[0x00],
        "not an XSpace: field number 0 at byte 0 is out of range",
    );
    check_error(
        &[0x0a, 0x01, 0x0f],
        "malformed XPlane: invalid wire type 7 at byte 2",
    );
    check_error(
        &[0x0a, 0x03, 0x12, 0x01, 0xff],
        "malformed XPlane: field 2 at byte 2 is not valid utf-8",
    );
    check_error(
        &[0x0a, 0x03, 0x12, 0x05, b'x', 0x22, 0x00],
        "malformed XPlane: length 5 at byte 3 runs past the end of the message at byte 5",
    );
    // The same, when the plane ends where the file does: a cut file.
    check_error(
        &[0x0a, 0x03, 0x12, 0x05, b'x'],
        "truncated protobuf: length 5 at byte 3 runs past the end (5 bytes)",
    );
    check_error(
        &[
            0x0a, 0x0b, 0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        ],
        "malformed XPlane: varint at byte 3 is longer than 10 bytes",
    );
    check_error(
        &[0x0a, 0x02, 0x08, 0xff, 0x22, 0x00],
        "malformed XPlane: varint at byte 3 runs past the end of the message at byte 4",
    );
    check_error(
        &[0x0a, 0x02, 0x09, 0x00, 0x22, 0x00],
        "malformed XPlane: fixed64 value at byte 3 runs past the end of the message at byte 4",
    );
    check_error(
        &[0x0a, 0x05],
        "truncated protobuf: length 5 at byte 1 runs past the end (2 bytes)",
    );
    check_error(
        &[0x0a],
        "truncated protobuf: varint at byte 1 runs past the end (1 bytes)",
    );
    check_error(
        &[0x0a, 0x00, 0x1d, 0x00],
        "truncated protobuf: fixed32 value at byte 3 runs past the end (4 bytes)",
    );
}

/// Damage deep inside a line is caught by `read`, which decodes events.
#[test]
fn damaged_event() {
    let mut bytes = small_space();
    // The first event's stat holds the only "v" of the file: make it invalid UTF-8.
    let at = bytes.iter().position(|&b| b == b'v').unwrap();
    bytes[at] = 0xff;
    check_error(
        &bytes,
        "malformed XStat: field 5 at byte 37 is not valid utf-8",
    );
}

/// Every prefix of a valid file: protobuf has no end marker, so a cut
/// between two planes is a valid, shorter space; every other cut is an error.
#[test]
fn truncated_at_every_byte() {
    let bytes = small_space();
    let mut listing = String::new();
    for cut in 0..bytes.len() {
        let mut sink = |_: &trace_model::Event<'_>| {};
        let res = match trace_xplane::read(&bytes[..cut], &mut sink) {
            Ok(summary) => format!("ok, {} events", summary.n_events),
            Err(err) => err.to_string(),
        };
        let _ = writeln!(listing, "{cut:3}: {res}");
    }
    insta::assert_snapshot!("truncated_at_every_byte", listing);
}

#[test]
fn small_space_reads() {
    check_bytes("small_space_reads", &small_space());
}
