//! How outputs show a name from a trace: whole up to a few kilobytes,
//! shortened beyond, so that one hostile name cannot make a report as large
//! as the trace.

use std::borrow::Cow;

/// Names (and other trace texts) longer than this many bytes are shown
/// shortened by [`shown_name`].
pub const SHOWN_NAME_LIMIT: usize = 4096;

/// How many characters of a long name [`shown_name`] keeps.
const KEPT_CHARS: usize = 200;

/// `name` as every output shows it: unchanged when it is at most
/// [`SHOWN_NAME_LIMIT`] bytes long; else its first 200 characters, then
/// `… [N bytes, fnv1a64 H]` with its length and the FNV-1a 64-bit hash of
/// all of it in 16 hex digits, which tells two long names with the same
/// start apart and lets a machine match the name it came from.
pub fn shown_name(name: &str) -> Cow<'_, str> {
    if name.len() <= SHOWN_NAME_LIMIT {
        return Cow::Borrowed(name);
    }
    let cut = name
        .char_indices()
        .nth(KEPT_CHARS)
        .map_or(name.len(), |(at, _)| at);
    Cow::Owned(format!(
        "{}… [{} bytes, fnv1a64 {:016x}]",
        &name[..cut],
        name.len(),
        fnv1a64(name.as_bytes())
    ))
}

/// The FNV-1a 64-bit hash.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &byte in bytes {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names_stay_and_long_ones_are_cut_with_length_and_hash() {
        assert_eq!(shown_name("fusion.1"), "fusion.1");
        let edge = "x".repeat(SHOWN_NAME_LIMIT);
        assert_eq!(shown_name(&edge), edge.as_str());
        let long = format!("{}é{}", "a".repeat(199), "b".repeat(10_000));
        let shown = shown_name(&long);
        assert!(
            shown.starts_with(&format!("{}é…", "a".repeat(199))),
            "{shown}"
        );
        assert!(shown.ends_with(&format!(
            "[10201 bytes, fnv1a64 {:016x}]",
            fnv1a64(long.as_bytes())
        )));
        assert!(shown.len() < 300);
        // The FNV-1a test vectors.
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
