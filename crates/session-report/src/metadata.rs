//! `inputs/run_metadata.json`: what a session driver knows about a run that
//! the traces do not say (model, hardware, versions, workload, cost).
//!
//! Every field but `schema` is optional: `cargo xtask report` on a bare
//! profile folder has none of it and prints "unknown".

use serde::{Deserialize, Serialize};

/// The value of [`RunMetadata::schema`] this version writes and reads.
pub const RUN_METADATA_SCHEMA: &str = "sglprof.run-metadata/1";

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunMetadata {
    pub schema: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    /// `YYYY-MM-DD`, UTC, of the session start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date: Option<String>,
    /// RFC 3339 UTC times of the session start and end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// For example `TPU v6e-1 (single chip)` or `CPU (local, 2 cores)`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hardware: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    /// The profiled endpoint, with its slash: `/generate`, `/v1/score`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jax_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jaxlib_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sglang_jax_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub python_version: Option<String>,
    /// The `/start_profile` body that was sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<ProfileConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload: Option<WorkloadSummary>,
    /// The serving load and where its per-request records are; the
    /// report computes the serving metrics from those records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serving: Option<crate::ServingMetadata>,
    /// Shell commands that reproduce the session, one per entry.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reproduction: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cost: Vec<CostRow>,
    /// Where the prices in `cost` come from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_source: Option<String>,
    /// Run-folder-relative paths of py-spy output, when py-spy ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pyspy_raw: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pyspy_speedscope: Option<String>,
    /// Where the artifacts were archived (`gs://...`), when they were.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archive_url: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_dir: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_steps: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_step: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_tracer_level: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub python_tracer_level: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile_by_stage: Option<bool>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub profile_stages: Vec<String>,
}

/// The profiled workload and its client-side latencies.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkloadSummary {
    /// `/generate` or `/v1/score`.
    pub endpoint: String,
    /// Free text, e.g. `15 x /generate, max_new_tokens 20` or the score mix.
    pub description: String,
    pub requests: u64,
    pub concurrency: u64,
    /// Requests that failed (transport error or non-2xx answer).
    pub errors: u64,
    /// Wall time from the first request sent to the last answer, seconds.
    pub wall_s: f64,
    /// Latency of the successful requests, in milliseconds.
    pub latency_ms: LatencyStats,
    /// Successful requests per second of wall time.
    pub throughput_rps: f64,
    /// Generated tokens per second of wall time, when the endpoint reports
    /// them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_tokens_per_s: Option<f64>,
    /// Per-kind breakdown for mixed workloads (the RFC-010 score mix).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parts: Vec<WorkloadSummary>,
}

/// Latency percentiles use the nearest-rank method: p is the value at rank
/// `ceil(p/100 * n)` of the sorted latencies.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LatencyStats {
    pub count: u64,
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub min: f64,
    pub max: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CostRow {
    /// `TPU v6e-1 (on-demand)`, `GCS storage`.
    pub resource: String,
    /// Human text: `47 minutes`, `87 MB`.
    pub duration: String,
    /// Dollars; for storage, per month.
    pub cost_usd: f64,
    /// `/month` for storage, empty otherwise.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub unit: String,
}

/// A file of the trace set, for the Trace Files table.
#[derive(Clone, Debug, PartialEq)]
pub struct TraceFileInfo {
    /// Path as shown in the report (relative to the report when possible).
    pub path: String,
    pub size_bytes: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    /// serde_json's message, with control characters escaped (it quotes
    /// unknown field names as they are). Kept as text, not as a source, so
    /// that the cause is printed once and always escaped.
    #[error("invalid run metadata: {0}")]
    Json(String),
    #[error(
        "run metadata schema is `{}`, expected `{RUN_METADATA_SCHEMA}`",
        one_line(found)
    )]
    Schema { found: String },
}

/// Control characters written as escapes, so that text from the file
/// cannot break the one-line error or drive the terminal.
fn one_line(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

impl RunMetadata {
    pub fn new() -> RunMetadata {
        RunMetadata {
            schema: RUN_METADATA_SCHEMA.to_owned(),
            ..RunMetadata::default()
        }
    }

    pub fn from_json(text: &str) -> Result<RunMetadata, MetadataError> {
        let res: RunMetadata = serde_json::from_str(text)
            .map_err(|err| MetadataError::Json(one_line(&err.to_string())))?;
        if res.schema != RUN_METADATA_SCHEMA {
            return Err(MetadataError::Schema { found: res.schema });
        }
        Ok(res)
    }

    pub fn to_json(&self) -> String {
        let mut res = serde_json::to_string_pretty(self).expect("plain data serialises");
        res.push('\n');
        res
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every finite float written to run metadata reads back as the same
    /// float (the fuzz pass found a latency that read back one unit off
    /// before serde_json's exactly rounded parsing was switched on).
    #[test]
    fn floats_read_back_exactly() {
        let mut state = 0x2026_1130_u64;
        let mut next = move || {
            // xorshift64: bit patterns from every exponent range.
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            f64::from_bits(state)
        };
        let mut checked = 0;
        while checked < 20_000 {
            let stats = LatencyStats {
                count: 1,
                mean: next(),
                p50: next(),
                p90: next(),
                p99: next(),
                min: next(),
                max: next(),
            };
            let values = [
                stats.mean, stats.p50, stats.p90, stats.p99, stats.min, stats.max,
            ];
            if values.iter().any(|v| !v.is_finite()) {
                continue;
            }
            let text = serde_json::to_string(&stats).unwrap();
            let back: LatencyStats = serde_json::from_str(&text).unwrap();
            assert_eq!(back, stats, "{text}");
            checked += 1;
        }
    }
}
