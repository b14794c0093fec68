//! `manifest.json`: the last object written for a run. It lists every
//! object with its size, sha256 and crc32c, and carries the run metadata,
//! so that downloads need no bucket listing and `ls` needs no other object.
//! A run folder without one is an incomplete upload.
//!
//! The format is versioned by [`MANIFEST_SCHEMA`]; readers accept unknown
//! fields so that later additions do not break old tools.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::checksum::FileDigest;
use crate::error::{Error, Result};
use crate::layout::{MANIFEST_NAME, RunAddress, RunKind, is_date, is_plain_segment};

pub const MANIFEST_SCHEMA: &str = "sglprof.artifact-manifest/1";

/// Where the run metadata sits in a run folder (see the session-report crate).
pub const RUN_METADATA_PATH: &str = "inputs/run_metadata.json";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub schema: String,
    /// `manual` or `nightly`.
    pub kind: String,
    /// `YYYY-MM-DD`.
    pub date: String,
    pub run_id: String,
    /// The bucket prefix the run was archived under.
    pub prefix: String,
    /// RFC 3339 UTC time the manifest was written.
    pub created_at: String,
    pub total_bytes: u64,
    /// Sorted by path.
    pub objects: Vec<ManifestEntry>,
    /// `inputs/run_metadata.json` of the run as JSON (keys sorted), when it
    /// has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_metadata: Option<serde_json::Value>,
}

/// One file of the run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestEntry {
    /// Relative to the run folder, `/`-separated.
    pub path: String,
    pub size: u64,
    pub sha256: String,
    pub crc32c: String,
}

impl ManifestEntry {
    pub fn new(path: &str, digest: &FileDigest) -> ManifestEntry {
        ManifestEntry {
            path: path.to_owned(),
            size: digest.size,
            sha256: digest.sha256.clone(),
            crc32c: digest.crc32c.clone(),
        }
    }
}

impl Manifest {
    pub fn new(
        addr: &RunAddress,
        created_at: &str,
        mut objects: Vec<ManifestEntry>,
        run_metadata: Option<serde_json::Value>,
    ) -> Manifest {
        objects.sort_by(|a, b| a.path.cmp(&b.path));
        Manifest {
            schema: MANIFEST_SCHEMA.to_owned(),
            kind: addr.kind.as_str().to_owned(),
            date: addr.date.clone(),
            run_id: addr.run_id.clone(),
            prefix: addr.prefix.clone(),
            created_at: created_at.to_owned(),
            total_bytes: objects.iter().map(|o| o.size).sum(),
            objects,
            run_metadata,
        }
    }

    pub fn to_json(&self) -> String {
        let mut res = serde_json::to_string_pretty(self).unwrap_or_default();
        res.push('\n');
        res
    }

    /// Parses and checks a manifest read from `url` (named in errors).
    pub fn from_json(url: &str, text: &[u8]) -> Result<Manifest> {
        let bad = |detail: String| Error::BadManifest {
            url: url.to_owned(),
            detail,
        };
        let res: Manifest = serde_json::from_slice(text).map_err(|e| bad(e.to_string()))?;
        if res.schema != MANIFEST_SCHEMA {
            return Err(bad(format!(
                "schema is `{}`, expected `{MANIFEST_SCHEMA}`",
                printable(&res.schema)
            )));
        }
        // Every string that becomes part of a local path or of the bucket
        // layout is checked here, once, so no caller can forget it: anyone
        // who can write into the bucket can write a manifest.
        for obj in &res.objects {
            if !is_safe_relative(&obj.path) {
                return Err(bad(format!(
                    "unsafe object path `{}`",
                    printable(&obj.path)
                )));
            }
        }
        if !is_plain_segment(&res.run_id) {
            return Err(bad(format!(
                "run_id `{}` is not a plain folder name",
                printable(&res.run_id)
            )));
        }
        if RunKind::parse(&res.kind).is_err() {
            return Err(bad(format!(
                "kind `{}` is neither manual nor nightly",
                printable(&res.kind)
            )));
        }
        if !is_date(&res.date) {
            return Err(bad(format!(
                "date `{}` is not YYYY-MM-DD",
                printable(&res.date)
            )));
        }
        if !res.prefix.split('/').all(is_plain_segment) {
            return Err(bad(format!(
                "prefix `{}` is not a plain folder path",
                printable(&res.prefix)
            )));
        }
        Ok(res)
    }

    /// Where `artifacts download` puts the run when not told: `root/<run_id>`.
    /// The run id is checked again here, so that a manifest built in memory
    /// cannot name a folder outside `root` either.
    pub fn default_dir(&self, root: &Path) -> Result<PathBuf> {
        if !is_plain_segment(&self.run_id) {
            return Err(Error::invalid(
                "run id",
                &printable(&self.run_id),
                "it must be a plain folder name",
            ));
        }
        Ok(root.join(&self.run_id))
    }

    /// The same run content: the same objects with the same digests.
    pub fn same_objects(&self, other: &Manifest) -> bool {
        self.objects == other.objects
    }

    /// A string field of the run metadata (`model`, `endpoint`, ...).
    pub fn metadata_field(&self, key: &str) -> Option<&str> {
        self.run_metadata.as_ref()?.get(key)?.as_str()
    }
}

/// A relative path that stays inside the folder it is joined to.
pub fn is_safe_relative(path: &str) -> bool {
    !path.is_empty()
        && !path.starts_with('/')
        && !path.contains('\\')
        && !path.contains('\0')
        && !path.contains('\n')
        && path
            .split('/')
            .all(|seg| !seg.is_empty() && seg != "." && seg != "..")
}

/// `text` with every control character (terminal escapes, newlines) shown
/// as a Rust-style escape, for printing strings that come from a bucket.
pub fn printable(text: &str) -> String {
    let mut res = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() {
            res.extend(c.escape_default());
        } else {
            res.push(c);
        }
    }
    res
}

/// Checks that `dir.join(rel)` stays inside `dir` on disk: `rel` must be a
/// safe relative path and none of the folders it goes through under `dir`
/// may be a symbolic link (which could point anywhere). Returns the path.
pub fn path_inside(dir: &Path, rel: &str) -> Result<PathBuf> {
    if !is_safe_relative(rel) {
        return Err(Error::invalid(
            "object path",
            &printable(rel),
            "it leaves the destination folder",
        ));
    }
    let full = dir.join(rel);
    let mut at = dir.to_path_buf();
    let segments: Vec<&str> = rel.split('/').collect();
    for (idx, seg) in segments.iter().enumerate() {
        at.push(seg);
        let last = idx + 1 == segments.len();
        match std::fs::symlink_metadata(&at) {
            Ok(meta) if meta.file_type().is_symlink() => {
                return Err(Error::invalid(
                    "download path",
                    &at.display().to_string(),
                    if last {
                        "it is a symbolic link; remove it first"
                    } else {
                        "a folder on the way is a symbolic link; remove it first"
                    },
                ));
            }
            Ok(_) => {}
            // What does not exist yet is created as a plain folder or file.
            Err(_) => break,
        }
    }
    Ok(full)
}

/// The files of a run folder, as (relative `/` path, absolute path), sorted
/// by relative path. The top-level `manifest.json` is left out (it is
/// rebuilt on every upload), and so are download leftovers (`*.sglprof-part`).
pub fn local_files(run_dir: &Path) -> Result<Vec<(String, PathBuf)>> {
    let mut res = Vec::new();
    let mut stack = vec![(String::new(), run_dir.to_path_buf())];
    while let Some((rel_dir, dir)) = stack.pop() {
        let entries = std::fs::read_dir(&dir).map_err(|e| Error::io("read folder", &dir, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| Error::io("read folder", &dir, e))?;
            let path = entry.path();
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                return Err(Error::invalid(
                    "file name",
                    &path.display().to_string(),
                    "names must be UTF-8",
                ));
            };
            let rel = if rel_dir.is_empty() {
                name.clone()
            } else {
                format!("{rel_dir}/{name}")
            };
            // Follows symlinks, so a linked trace folder is archived too.
            let meta = std::fs::metadata(&path).map_err(|e| Error::io("stat", &path, e))?;
            if meta.is_dir() {
                stack.push((rel, path));
            } else if meta.is_file() {
                if rel == MANIFEST_NAME || rel.ends_with(PART_SUFFIX) {
                    continue;
                }
                if !is_safe_relative(&rel) {
                    return Err(Error::invalid(
                        "file name",
                        &rel,
                        "it cannot be an object name",
                    ));
                }
                res.push((rel, path));
            }
        }
    }
    res.sort();
    Ok(res)
}

/// The suffix of files being downloaded, renamed into place once verified.
pub const PART_SUFFIX: &str = ".sglprof-part";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::RunKind;

    #[test]
    fn manifest_json() {
        let addr = RunAddress::new(
            "sglprof-runs",
            "sglang-profiles",
            RunKind::Manual,
            "2026-02-05",
            "r1",
        )
        .unwrap();
        let digest = crate::checksum::digest_bytes(b"hi\n");
        let m = Manifest::new(
            &addr,
            "2026-02-05T20:15:30Z",
            vec![
                ManifestEntry::new("traces/b.bin", &digest),
                ManifestEntry::new("a.txt", &digest),
            ],
            Some(
                serde_json::json!({"schema": "sglprof.run-metadata/1", "model": "Qwen/Qwen3-0.6B"}),
            ),
        );
        insta::assert_snapshot!(m.to_json());
        let back = Manifest::from_json("x", m.to_json().as_bytes()).unwrap();
        assert_eq!(back, m);
        assert_eq!(back.metadata_field("model"), Some("Qwen/Qwen3-0.6B"));

        let evil = m.to_json().replace("a.txt", "../a.txt");
        let err = Manifest::from_json("gs://b/m.json", evil.as_bytes()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid manifest gs://b/m.json: unsafe object path `../a.txt`"
        );
    }

    fn sample_json() -> String {
        let addr = RunAddress::new(
            "sglprof-runs",
            "sglang-profiles",
            RunKind::Manual,
            "2026-02-05",
            "r1",
        )
        .unwrap();
        let digest = crate::checksum::digest_bytes(b"hi\n");
        Manifest::new(
            &addr,
            "2026-02-05T20:15:30Z",
            vec![ManifestEntry::new("a.txt", &digest)],
            None,
        )
        .to_json()
    }

    #[test]
    fn hostile_manifest_strings_are_refused() {
        let json = sample_json();
        for (field, from, to, expect) in [
            (
                "run_id",
                r#""run_id": "r1""#,
                r#""run_id": "../../../x""#,
                "run_id `../../../x` is not a plain folder name",
            ),
            (
                "run_id",
                r#""run_id": "r1""#,
                r#""run_id": "/abs/path""#,
                "run_id `/abs/path` is not a plain folder name",
            ),
            (
                "run_id",
                r#""run_id": "r1""#,
                r#""run_id": "x\u001b[2J\ny""#,
                "run_id `x\\u{1b}[2J\\ny` is not a plain folder name",
            ),
            (
                "schema",
                r#""schema": "sglprof.artifact-manifest/1""#,
                r#""schema": "m\nx\u001b[2J""#,
                "schema is `m\\nx\\u{1b}[2J`, expected `sglprof.artifact-manifest/1`",
            ),
            (
                "kind",
                r#""kind": "manual""#,
                r#""kind": "../k""#,
                "kind `../k` is neither manual nor nightly",
            ),
            (
                "date",
                r#""date": "2026-02-05""#,
                r#""date": "../../d""#,
                "date `../../d` is not YYYY-MM-DD",
            ),
            (
                "prefix",
                r#""prefix": "sglang-profiles""#,
                r#""prefix": "a/../..""#,
                "prefix `a/../..` is not a plain folder path",
            ),
        ] {
            let evil = json.replace(from, to);
            assert_ne!(evil, json, "{field}");
            let err = Manifest::from_json("gs://b/m.json", evil.as_bytes()).unwrap_err();
            let text = err.to_string();
            assert_eq!(
                text,
                format!("invalid manifest gs://b/m.json: {expect}"),
                "{field}"
            );
            assert!(!text.chars().any(char::is_control), "{text:?}");
        }
        let ok = Manifest::from_json("gs://b/m.json", json.as_bytes()).unwrap();
        let root = Path::new("runs");
        assert_eq!(ok.default_dir(root).unwrap(), root.join("r1"));
        let mut built = ok.clone();
        built.run_id = "../../../x".to_owned();
        assert!(built.default_dir(root).is_err());
        built.run_id = "/abs".to_owned();
        assert!(built.default_dir(root).is_err());
    }

    #[test]
    fn downloads_stay_inside_the_destination() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("run");
        std::fs::create_dir_all(dir.join("plain")).unwrap();
        let outside = tmp.path().join("outside");
        std::fs::create_dir_all(&outside).unwrap();
        std::os::unix::fs::symlink(&outside, dir.join("linked")).unwrap();
        std::os::unix::fs::symlink(outside.join("f"), dir.join("file-link")).unwrap();
        assert_eq!(
            path_inside(&dir, "plain/new/a.txt").unwrap(),
            dir.join("plain/new/a.txt")
        );
        for bad in [
            "linked/a.txt",
            "file-link",
            "../outside/a.txt",
            "/etc/passwd",
        ] {
            let err = path_inside(&dir, bad).unwrap_err().to_string();
            assert!(err.starts_with("invalid "), "{bad}: {err}");
        }
    }

    #[test]
    fn control_characters_are_shown_escaped() {
        assert_eq!(printable("a\u{1b}[31mb\nc\td"), "a\\u{1b}[31mb\\nc\\td");
        assert_eq!(printable("Qwen/Qwen3-0.6B"), "Qwen/Qwen3-0.6B");
    }

    #[test]
    fn safe_paths() {
        for ok in ["a", "a/b.json", "plugins/profile/2026_02_05/t1v.xplane.pb"] {
            assert!(is_safe_relative(ok), "{ok}");
        }
        for bad in ["", "/etc/passwd", "a/../b", "./a", "a//b", "a\\b", "a/"] {
            assert!(!is_safe_relative(bad), "{bad}");
        }
    }
}

#[cfg(test)]
mod listing_tests {
    use crate::transfer::{RunListing, RunSummary, render_listing};

    /// Found by `cargo xtask fuzz` (manifest, seed 7, input 281): a column
    /// wider than 65535 characters made `format!` panic.
    #[test]
    fn a_very_long_manifest_string_is_listed() {
        let listing = RunListing {
            runs: vec![RunSummary {
                url: "gs://b/p/manual/2026-02-05/r1/".to_owned(),
                kind: "manual".to_owned(),
                date: "2026-02-05".to_owned(),
                run_id: "r1".to_owned(),
                model: Some("m".repeat(70_000)),
                endpoint: Some("\u{1b}[2J/generate\n".to_owned()),
                hardware: None,
                objects: 1,
                total_bytes: 3,
            }],
            ..RunListing::default()
        };
        let shown = render_listing(&listing);
        assert_eq!(shown.lines().count(), 2);
        assert!(shown.contains("\\u{1b}[2J/generate\\n"));
        assert!(!shown.chars().any(|c| c.is_control() && c != '\n'));
    }
}
