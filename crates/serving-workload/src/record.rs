//! `inputs/requests.jsonl`: one [`RequestRecord`] per line, one line per
//! request of the measured phase, in id (send) order.
//!
//! Every time is nanoseconds since the Unix epoch on the client's clock,
//! taken from one monotonic clock anchored once to the wall clock, so
//! times of one session never go backwards. The records hold what the
//! metrics need and nothing derived: a timeline tool can put each request
//! on a track (`slot`) and split it at its first token, and a comparison
//! can test any latency per request.

use serde::{Deserialize, Serialize};

/// The value of every record's `schema`; fields are added, never renamed.
pub const REQUEST_SCHEMA: &str = "sglprof.request/1";

/// One request as it was sent and answered.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RequestRecord {
    pub schema: String,
    /// The request's place in send order, from 0.
    pub id: u64,
    /// The dataset row it sent (`inputs/dataset.jsonl`); for the score
    /// mix, the request's place in the mix.
    pub row: u64,
    /// The part of a mix it belongs to (`single`, `small-batch`,
    /// `large-batch` for the score mix); absent for `/generate`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// The lowest concurrency slot free when it was sent, from 0: requests
    /// on one slot never overlap, and no more slots are used than the
    /// peak concurrency.
    pub slot: u32,
    /// When the arrival process made it due.
    pub due_ns: u64,
    /// When it was sent (after waiting for a concurrency slot when the
    /// load is capped).
    pub start_ns: u64,
    /// When the first chunk with generated text arrived (streamed answers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_token_ns: Option<u64>,
    /// When the answer was complete, or the request failed.
    pub end_ns: u64,
    /// The prompt's length as the dataset counts it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_len: Option<u32>,
    /// The tokens asked for (`max_new_tokens`); 0 for the score mix.
    pub output_len: u32,
    /// The server's `meta_info.prompt_tokens`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_tokens: Option<u32>,
    /// The server's last `meta_info.completion_tokens`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_tokens: Option<u32>,
    /// The server's `meta_info.cached_tokens` (prompt tokens the prefix
    /// cache held).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cached_tokens: Option<u32>,
    /// The server's own `meta_info.e2e_latency`, in nanoseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_e2e_ns: Option<u64>,
    /// The server's request id (`meta_info.id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rid: Option<String>,
    /// The streamed chunks that added tokens, the first one included: for
    /// each, microseconds since `start_ns` and `completion_tokens` after
    /// it. Empty for answers that were not streamed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub chunks: Vec<[u32; 2]>,
    /// Why it failed; absent when it succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl RequestRecord {
    pub fn ok(&self) -> bool {
        self.error.is_none()
    }

    /// Milliseconds from `start_ns` to `end_ns`.
    pub fn e2e_ms(&self) -> f64 {
        self.end_ns.saturating_sub(self.start_ns) as f64 / 1e6
    }

    /// Milliseconds from `start_ns` to the first token.
    pub fn ttft_ms(&self) -> Option<f64> {
        self.first_token_ns
            .map(|t| t.saturating_sub(self.start_ns) as f64 / 1e6)
    }
}

/// Why a records file could not be read. One line.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("line {line}: {detail}")]
pub struct RecordError {
    pub line: usize,
    pub detail: String,
}

/// The records of a `requests.jsonl` text, checked for their schema.
pub fn parse_records(text: &str) -> Result<Vec<RequestRecord>, RecordError> {
    let mut res = Vec::new();
    for (idx, line) in text.lines().enumerate() {
        if let Some(record) = parse_record_line(line, idx + 1)? {
            res.push(record);
        }
    }
    Ok(res)
}

/// One line of a `requests.jsonl` (its number from 1, for the error):
/// `None` for a blank line.
pub fn parse_record_line(line: &str, number: usize) -> Result<Option<RequestRecord>, RecordError> {
    if line.trim().is_empty() {
        return Ok(None);
    }
    let record: RequestRecord = serde_json::from_str(line).map_err(|err| RecordError {
        line: number,
        detail: err.to_string(),
    })?;
    if record.schema != REQUEST_SCHEMA {
        return Err(RecordError {
            line: number,
            detail: format!(
                "schema is {:?}, expected {REQUEST_SCHEMA:?}",
                record.schema.escape_debug().to_string()
            ),
        });
    }
    Ok(Some(record))
}

/// The records as JSON lines.
pub fn to_jsonl(records: &[RequestRecord]) -> String {
    let mut out = Vec::with_capacity(records.len() * 256);
    write_jsonl(records, &mut out).expect("writing into memory does not fail");
    String::from_utf8(out).expect("JSON is UTF-8")
}

/// The records as JSON lines, into `out` as they are serialised.
pub fn write_jsonl(records: &[RequestRecord], out: &mut dyn std::io::Write) -> std::io::Result<()> {
    for record in records {
        serde_json::to_writer(&mut *out, record)?;
        out.write_all(b"\n")?;
    }
    Ok(())
}
