//! The two digests every archived file carries: sha256 (hex, what people
//! compare by eye and what `sha256sum` prints) and crc32c (base64 of the
//! big-endian value, what GCS reports and checks on upload).

use std::io::Read;
use std::path::Path;

use base64::Engine;
use sha2::Digest;

use crate::error::{Error, Result};

/// Size and digests of one file's bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileDigest {
    pub size: u64,
    /// Lowercase hex.
    pub sha256: String,
    /// Base64 of the big-endian u32, as in the JSON API's `crc32c` field.
    pub crc32c: String,
}

/// Incremental computation of a [`FileDigest`].
#[derive(Clone, Default)]
pub struct Hasher {
    size: u64,
    sha256: sha2::Sha256,
    crc32c: u32,
}

impl Hasher {
    pub fn new() -> Hasher {
        Hasher::default()
    }

    pub fn update(&mut self, bytes: &[u8]) {
        self.size += bytes.len() as u64;
        self.sha256.update(bytes);
        self.crc32c = crc32c::crc32c_append(self.crc32c, bytes);
    }

    pub fn crc32c_value(&self) -> u32 {
        self.crc32c
    }

    pub fn finish(self) -> FileDigest {
        FileDigest {
            size: self.size,
            sha256: hex(&self.sha256.finalize()),
            crc32c: crc32c_base64(self.crc32c),
        }
    }
}

/// Reads `path` once and returns its size and digests.
pub fn digest_file(path: &Path) -> Result<FileDigest> {
    let mut file = std::fs::File::open(path).map_err(|e| Error::io("open", path, e))?;
    let mut hasher = Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file
            .read(&mut buf)
            .map_err(|e| Error::io("read", path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher.finish())
}

/// Digests of an in-memory buffer.
pub fn digest_bytes(bytes: &[u8]) -> FileDigest {
    let mut hasher = Hasher::new();
    hasher.update(bytes);
    hasher.finish()
}

pub fn crc32c_base64(value: u32) -> String {
    base64::engine::general_purpose::STANDARD.encode(value.to_be_bytes())
}

/// The inverse of [`crc32c_base64`]; `None` for anything that is not four
/// bytes of base64.
pub fn crc32c_from_base64(text: &str) -> Option<u32> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .ok()?;
    Some(u32::from_be_bytes(bytes.try_into().ok()?))
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut res = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(res, "{b:02x}");
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values() {
        // `gsutil hash` and the emulator both report G9ywgw== for "hi\n".
        let d = digest_bytes(b"hi\n");
        assert_eq!(d.size, 3);
        assert_eq!(d.crc32c, "G9ywgw==");
        assert_eq!(
            d.sha256,
            "98ea6e4f216f2fb4b69fff9b3a44842c38686ca685f3f55dc48c5d3fb1107be4"
        );
        assert_eq!(
            crc32c_from_base64("G9ywgw=="),
            Some(crc32c::crc32c(b"hi\n"))
        );
        assert_eq!(crc32c_from_base64("not base64"), None);
    }

    #[test]
    fn incremental_equals_one_shot() {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let mut h = Hasher::new();
        for chunk in data.chunks(333) {
            h.update(chunk);
        }
        assert_eq!(h.finish(), digest_bytes(&data));
    }
}
