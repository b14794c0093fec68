//! Where a run lives in the bucket, after RFC-011:
//! `gs://<bucket>/<prefix>/{manual,nightly}/<date>/<run-id>/...`, and the
//! bucket settings (location, lifecycle) that go with that layout.

use std::fmt;

use serde::Serialize;

use crate::error::{Error, Result};

/// The prefix RFC-011 gives the profiling artifacts inside a bucket.
pub const DEFAULT_PREFIX: &str = "sglang-profiles";

/// The manifest's object name inside a run folder.
pub const MANIFEST_NAME: &str = "manifest.json";

/// Why a run was made; nightly runs expire, manual runs stay.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunKind {
    Manual,
    Nightly,
}

impl RunKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RunKind::Manual => "manual",
            RunKind::Nightly => "nightly",
        }
    }

    pub fn parse(text: &str) -> Result<RunKind> {
        match text {
            "manual" => Ok(RunKind::Manual),
            "nightly" => Ok(RunKind::Nightly),
            _ => Err(Error::invalid(
                "run kind",
                text,
                "expected `manual` or `nightly`",
            )),
        }
    }
}

impl fmt::Display for RunKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The folder of one run in the bucket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunAddress {
    pub bucket: String,
    /// Without leading or trailing slashes; may contain inner slashes.
    pub prefix: String,
    pub kind: RunKind,
    /// `YYYY-MM-DD`.
    pub date: String,
    pub run_id: String,
}

impl RunAddress {
    /// Checks every part, so that object names built from it are well formed.
    pub fn new(
        bucket: &str,
        prefix: &str,
        kind: RunKind,
        date: &str,
        run_id: &str,
    ) -> Result<RunAddress> {
        validate_bucket(bucket)?;
        let prefix = prefix.trim_matches('/');
        if prefix.split('/').any(|seg| !is_plain_segment(seg)) {
            return Err(Error::invalid(
                "prefix",
                prefix,
                "use non-empty segments of letters, digits, `-`, `_`, `.`",
            ));
        }
        if !is_date(date) {
            return Err(Error::invalid("date", date, "expected YYYY-MM-DD"));
        }
        if !is_plain_segment(run_id) {
            return Err(Error::invalid(
                "run id",
                run_id,
                "use letters, digits, `-`, `_`, `.` only",
            ));
        }
        Ok(RunAddress {
            bucket: bucket.to_owned(),
            prefix: prefix.to_owned(),
            kind,
            date: date.to_owned(),
            run_id: run_id.to_owned(),
        })
    }

    /// The run folder's object-name prefix, with its trailing slash.
    pub fn folder(&self) -> String {
        format!(
            "{}/{}/{}/{}/",
            self.prefix, self.kind, self.date, self.run_id
        )
    }

    pub fn object_name(&self, relative: &str) -> String {
        format!("{}{relative}", self.folder())
    }

    pub fn manifest_name(&self) -> String {
        self.object_name(MANIFEST_NAME)
    }

    /// `gs://bucket/prefix/kind/date/run-id/`.
    pub fn url(&self) -> String {
        format!("gs://{}/{}", self.bucket, self.folder())
    }
}

/// A `gs://bucket/object` address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GsUrl {
    pub bucket: String,
    /// May be empty (the bucket itself) and may end with `/` (a folder).
    pub object: String,
}

impl GsUrl {
    pub fn parse(text: &str) -> Result<GsUrl> {
        let rest = text
            .strip_prefix("gs://")
            .ok_or_else(|| Error::invalid("gs:// url", text, "it must start with gs://"))?;
        let (bucket, object) = rest.split_once('/').unwrap_or((rest, ""));
        validate_bucket(bucket)?;
        Ok(GsUrl {
            bucket: bucket.to_owned(),
            object: object.to_owned(),
        })
    }

    /// The manifest of the run this URL points at: the URL itself when it
    /// names a `manifest.json`, else `<url>/manifest.json`.
    pub fn manifest(&self) -> GsUrl {
        if self.object == MANIFEST_NAME || self.object.ends_with(&format!("/{MANIFEST_NAME}")) {
            return self.clone();
        }
        let folder = self.object.trim_end_matches('/');
        let object = if folder.is_empty() {
            MANIFEST_NAME.to_owned()
        } else {
            format!("{folder}/{MANIFEST_NAME}")
        };
        GsUrl {
            bucket: self.bucket.clone(),
            object,
        }
    }

    /// The folder part of the object name, with its trailing slash (empty
    /// for top-level objects).
    pub fn folder(&self) -> &str {
        match self.object.rfind('/') {
            Some(idx) => &self.object[..=idx],
            None => "",
        }
    }
}

impl fmt::Display for GsUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "gs://{}/{}", self.bucket, self.object)
    }
}

/// The RFC-011 lifecycle for a bucket whose runs live under `prefix`:
/// nightly runs move to COLDLINE after 7 days and are deleted after 30;
/// manual runs are kept. Serialises as the JSON API's `{"lifecycle": ...}`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Lifecycle {
    pub lifecycle: LifecycleRules,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LifecycleRules {
    pub rule: Vec<LifecycleRule>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LifecycleRule {
    pub action: LifecycleAction,
    pub condition: LifecycleCondition,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LifecycleAction {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(rename = "storageClass", skip_serializing_if = "Option::is_none")]
    pub storage_class: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LifecycleCondition {
    pub age: u32,
    #[serde(rename = "matchesPrefix")]
    pub matches_prefix: Vec<String>,
}

pub fn lifecycle(prefix: &str) -> Lifecycle {
    let nightly = vec![format!("{}/nightly/", prefix.trim_matches('/'))];
    let rule = |kind: &str, storage_class: Option<&str>, age: u32| LifecycleRule {
        action: LifecycleAction {
            kind: kind.to_owned(),
            storage_class: storage_class.map(str::to_owned),
        },
        condition: LifecycleCondition {
            age,
            matches_prefix: nightly.clone(),
        },
    };
    Lifecycle {
        lifecycle: LifecycleRules {
            rule: vec![
                rule("SetStorageClass", Some("COLDLINE"), 7),
                rule("Delete", None, 30),
            ],
        },
    }
}

/// The JSON API body of `buckets.insert` for an artifact bucket: the
/// location, uniform access and the [`lifecycle`].
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BucketInsert {
    pub name: String,
    pub location: String,
    #[serde(rename = "storageClass")]
    pub storage_class: String,
    #[serde(rename = "iamConfiguration")]
    pub iam_configuration: serde_json::Value,
    pub lifecycle: LifecycleRules,
}

pub fn bucket_insert_body(bucket: &str, location: &str, prefix: &str) -> BucketInsert {
    BucketInsert {
        name: bucket.to_owned(),
        location: location.to_owned(),
        storage_class: "STANDARD".to_owned(),
        iam_configuration: serde_json::json!({"uniformBucketLevelAccess": {"enabled": true}}),
        lifecycle: lifecycle(prefix).lifecycle,
    }
}

/// What `bucket create --dry-run` prints: the request that would create
/// the bucket through `endpoint` (in `project`, a placeholder when not
/// given) and the lifecycle it sets.
pub fn bucket_create_text(
    endpoint: &str,
    project: Option<&str>,
    bucket: &str,
    location: &str,
    prefix: &str,
) -> String {
    // Plain structs with string keys: serialising them cannot fail.
    let body = serde_json::to_string_pretty(&bucket_insert_body(bucket, location, prefix));
    let rules = serde_json::to_string_pretty(&lifecycle(prefix));
    format!(
        "POST {}/storage/v1/b?project={}\n{}\n\nlifecycle:\n{}\n",
        endpoint.trim_end_matches('/'),
        project.unwrap_or("<project>"),
        body.unwrap_or_default(),
        rules.unwrap_or_default(),
    )
}

/// Bucket names: 3-63 characters of lowercase letters, digits, `-`, `_`
/// and `.`, starting and ending with a letter or digit.
pub fn validate_bucket(bucket: &str) -> Result<()> {
    let ok_len = (3..=63).contains(&bucket.len());
    let ok_chars = bucket
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b));
    let ok_ends = bucket
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphanumeric())
        && bucket
            .bytes()
            .last()
            .is_some_and(|b| b.is_ascii_alphanumeric());
    if ok_len && ok_chars && ok_ends {
        Ok(())
    } else {
        Err(Error::invalid(
            "bucket name",
            bucket,
            "use 3-63 lowercase letters, digits, `-`, `_`, `.`",
        ))
    }
}

pub(crate) fn is_plain_segment(seg: &str) -> bool {
    !seg.is_empty()
        && seg != "."
        && seg != ".."
        && seg
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

pub(crate) fn is_date(text: &str) -> bool {
    let b = text.as_bytes();
    b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit())
}

/// Today's date (UTC) as `YYYY-MM-DD`, and the time as RFC 3339.
pub fn utc_now() -> (String, String) {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    let date = format!("{y:04}-{m:02}-{d:02}");
    let time = format!(
        "{date}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    );
    (date, time)
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian
/// (H. Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// The date and id a run folder is archived under when the caller gives
/// none: `run_id` and `date` from the run metadata if present, else the
/// folder name, and the date at its start (`20260205T...` or
/// `2026-02-05...`) or else `today`.
pub fn infer_run_identity(
    folder_name: &str,
    metadata: Option<&serde_json::Value>,
    today: &str,
) -> (String, String) {
    let field = |key: &str| {
        metadata
            .and_then(|m| m.get(key))
            .and_then(|v| v.as_str())
            .map(str::to_owned)
    };
    let run_id = field("run_id").unwrap_or_else(|| folder_name.to_owned());
    let date = field("date")
        .filter(|d| is_date(d))
        .or_else(|| date_at_start(&run_id))
        .unwrap_or_else(|| today.to_owned());
    (date, run_id)
}

fn date_at_start(text: &str) -> Option<String> {
    // `get`: a multi-byte character across byte 10 is no date, not a panic.
    if let Some(head) = text.get(..10)
        && is_date(head)
    {
        return Some(head.to_owned());
    }
    let b = text.as_bytes();
    if b.len() >= 8
        && b[..8].iter().all(u8::is_ascii_digit)
        && b.get(8).is_none_or(|c| !c.is_ascii_digit())
    {
        let date = format!("{}-{}-{}", &text[..4], &text[4..6], &text[6..8]);
        let month: u32 = text[4..6].parse().ok()?;
        let day: u32 = text[6..8].parse().ok()?;
        if (1..=12).contains(&month) && (1..=31).contains(&day) {
            return Some(date);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A run folder named with a multi-byte character across byte 10 (or 8)
    /// has no date in its name; it once panicked on a slice.
    #[test]
    fn a_multibyte_name_has_no_date_and_no_panic() {
        for name in [
            "2026-12-0é-run",
            "202612é-run",
            "日本語のフォルダ名",
            "20261206T1é",
        ] {
            let (date, run_id) = infer_run_identity(name, None, "2026-12-06");
            assert_eq!(run_id, name);
            assert_eq!(date, "2026-12-06", "{name}");
        }
        assert_eq!(date_at_start("20261205T1é").as_deref(), Some("2026-12-05"));
        assert_eq!(date_at_start("2026-12-05é").as_deref(), Some("2026-12-05"));
        assert_eq!(date_at_start("2026-12-0é"), None);
    }

    #[test]
    fn layout_and_urls() {
        let addr = RunAddress::new(
            "sglprof-runs",
            "/sglang-profiles/",
            RunKind::Nightly,
            "2026-02-05",
            "abc1234",
        )
        .unwrap();
        assert_eq!(
            addr.url(),
            "gs://sglprof-runs/sglang-profiles/nightly/2026-02-05/abc1234/"
        );
        assert_eq!(
            addr.manifest_name(),
            "sglang-profiles/nightly/2026-02-05/abc1234/manifest.json"
        );

        let url = GsUrl::parse(&addr.url()).unwrap();
        assert_eq!(url.manifest().object, addr.manifest_name());
        assert_eq!(url.manifest().manifest(), url.manifest());
        assert_eq!(url.manifest().folder(), addr.folder());
        assert_eq!(
            GsUrl::parse("gs://b12").unwrap().manifest().object,
            "manifest.json"
        );

        assert!(GsUrl::parse("s3://b/x").is_err());
        assert!(RunAddress::new("Bad_Bucket", "p", RunKind::Manual, "2026-02-05", "r").is_err());
        assert!(RunAddress::new("bucket", "p", RunKind::Manual, "2026-2-5", "r").is_err());
        assert!(RunAddress::new("bucket", "p", RunKind::Manual, "2026-02-05", "a/b").is_err());
        assert!(RunAddress::new("bucket", "p", RunKind::Manual, "2026-02-05", "..").is_err());
        assert!(RunAddress::new("bucket", "a//b", RunKind::Manual, "2026-02-05", "r").is_err());
    }

    #[test]
    fn identity() {
        let today = "2030-01-01";
        assert_eq!(
            infer_run_identity("20260205T201530Z_score_qwen3", None, today),
            (
                "2026-02-05".to_owned(),
                "20260205T201530Z_score_qwen3".to_owned()
            )
        );
        assert_eq!(
            infer_run_identity("2026-02-05-tinyllama", None, today).0,
            "2026-02-05"
        );
        assert_eq!(infer_run_identity("my-run", None, today).0, today);
        let meta = serde_json::json!({"run_id": "r-7", "date": "2026-03-04"});
        assert_eq!(
            infer_run_identity("folder", Some(&meta), today),
            ("2026-03-04".to_owned(), "r-7".to_owned())
        );
    }

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_489), (2026, 2, 5));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }

    #[test]
    fn lifecycle_json() {
        insta::assert_snapshot!(
            serde_json::to_string_pretty(&lifecycle("sglang-profiles")).unwrap()
        );
        insta::assert_snapshot!(
            serde_json::to_string_pretty(&bucket_insert_body(
                "sglprof-runs",
                "US-EAST5",
                "sglang-profiles"
            ))
            .unwrap()
        );
    }
}
