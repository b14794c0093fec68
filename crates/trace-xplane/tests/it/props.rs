//! Property tests: no input makes the reader panic.

use proptest::prelude::*;

use crate::bad_input::small_space;

/// Reads whole and in three parts; when both succeed they agree. The same
/// for some lines (odd tids) of a stream laid out once.
fn read_both(bytes: &[u8]) {
    if let Ok(stream) = trace_xplane::Stream::new(bytes) {
        let keep = |line: &trace_xplane::LineInfo<'_>| line.tid % 2 == 1;
        let mut whole = crate::Lines::default();
        let res = stream.read_lines(&keep, &mut whole);
        let mut parts: Vec<crate::Lines> = (0..3).map(|_| crate::Lines::default()).collect();
        let in_parts = stream.read_parts_of_lines(&keep, &mut parts);
        if let (Ok(res), Ok(in_parts)) = (res, in_parts) {
            assert_eq!(res, in_parts);
            let joined: String = parts.iter().map(|it| it.0.as_str()).collect();
            assert_eq!(joined, whole.0);
        }
    }
    let mut whole = crate::Lines::default();
    let res = trace_xplane::read(bytes, &mut whole);
    let mut parts: Vec<crate::Lines> = (0..3).map(|_| crate::Lines::default()).collect();
    let in_parts = trace_xplane::read_parts(bytes, &mut parts);
    if let (Ok(res), Ok(in_parts)) = (res, in_parts) {
        assert_eq!(res, in_parts);
        let joined: String = parts.iter().map(|it| it.0.as_str()).collect();
        assert_eq!(joined, whole.0);
    }
    let _ = trace_xplane::planes(bytes);
}

proptest! {
    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        read_both(&bytes);
    }

    #[test]
    fn random_bytes_after_a_plane_tag_never_panic(
        len in 0u8..128,
        bytes in proptest::collection::vec(any::<u8>(), 0..256),
    ) {
        let mut input = vec![0x0a, len];
        input.extend(bytes);
        read_both(&input);
    }

    #[test]
    fn mutated_spaces_never_panic(
        edits in proptest::collection::vec((any::<usize>(), any::<u8>(), 0u8..3), 1..8),
        cut in any::<usize>(),
    ) {
        let mut bytes = small_space();
        for (at, byte, kind) in edits {
            let at = at % (bytes.len() + 1);
            match kind {
                0 if at < bytes.len() => bytes[at] = byte,
                1 => bytes.insert(at, byte),
                _ if at < bytes.len() => { bytes.remove(at); }
                _ => {}
            }
        }
        let cut = cut % (bytes.len() + 1);
        read_both(&bytes[..cut]);
        read_both(&bytes);
    }
}
