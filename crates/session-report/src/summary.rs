//! `summary.json`: the report's numbers for machines. The field names are a
//! contract (`schema` says which version); add fields, never rename them.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use trace_analysis::{Analysis, OpKind, OpStats, is_compilation, note_for};
use trace_model::{ps_to_ms, shown_name};

use crate::render::{ReportInput, TraceFormat, Truncation, traced_ms};

pub const SUMMARY_SCHEMA: &str = "sglprof.summary/1";

/// `self_ms` is null when the analysis could not compute self time exactly.
fn op_json(op: &OpStats, self_exact: bool) -> Value {
    json!({
        "name": shown_name(op.display_name()),
        "trace_name": shown_name(&op.name),
        "total_ms": ps_to_ms(op.total_ps),
        "count": op.count,
        "avg_ms": op.avg_ps() / 1e9,
        "max_ms": ps_to_ms(op.max_ps as i128),
        "self_ms": self_exact.then(|| ps_to_ms(op.self_ps)),
    })
}

/// Compilation inside the traced window: the heaviest compiler entry point
/// of the runtime ([`trace_analysis::is_compilation`], the rule `compare`
/// uses), with its count of programs and their time.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Compilation {
    pub operation: String,
    pub count: u64,
    pub total_ms: f64,
}

/// The compilation of an analysed trace; `None` when nothing compiled.
pub fn compilation(analysis: &Analysis) -> Option<Compilation> {
    analysis
        .ops
        .iter()
        .filter(|op| is_compilation(&op.name))
        .max_by(|a, b| {
            a.total_ps
                .cmp(&b.total_ps)
                .then_with(|| b.name.cmp(&a.name))
        })
        .map(|op| Compilation {
            operation: op.name.clone(),
            count: op.count,
            total_ms: ps_to_ms(op.total_ps),
        })
}

/// Renders `summary.json`, pretty-printed with a final newline.
pub fn render_summary_json(input: &ReportInput<'_>) -> String {
    let analysis = input.analysis;
    let phases: Map<String, Value> = analysis
        .phases
        .iter()
        .map(|it| (it.label(), json!(it.count)))
        .collect();
    let exact = analysis.self_time_exact;
    let top: Vec<Value> = analysis
        .ops
        .iter()
        .take(input.top_n)
        .map(|op| op_json(op, exact))
        .collect();
    let accel: Vec<Value> = analysis
        .accelerator_ops()
        .take(input.top_n)
        .map(|op| {
            let mut value = op_json(op, exact);
            value["kind"] = json!(match op.kind {
                OpKind::Xla { device: true } => "xla-device",
                OpKind::Xla { device: false } => "xla",
                OpKind::XlaModule => "xla-module",
                _ => "runtime",
            });
            value["note"] = json!(note_for(&op.name, op.kind));
            value
        })
        .collect();
    let (truncated, json_events, json_share) = match input.truncation {
        Truncation::None => (false, None, None),
        Truncation::XPlaneInstead {
            json_events,
            json_share,
        } => (true, Some(json_events), Some(json_share)),
        Truncation::Unrecoverable { json_events } => (true, Some(json_events), None),
    };
    let mut res = json!({
        "schema": crate::summary::SUMMARY_SCHEMA,
        "source": input.source,
        "format": match input.format {
            TraceFormat::ChromeJson => "chrome-json",
            TraceFormat::XPlane => "xplane",
        },
        "total_events": analysis.total_events,
        "operation_events": analysis.op_events,
        "unique_operations": analysis.unique_operations(),
        "traced_time_ms": traced_ms(analysis),
        "phases": phases,
        "truncated": truncated,
        "truncated_json_events": json_events,
        "json_share_of_session": json_share,
    });
    res["top_operations"] = Value::Array(top);
    res["xla_and_runtime_operations"] = Value::Array(accel);
    res["devices"] = crate::device::devices_json(input.devices);
    if let Some(full) = &input.full_trace {
        res["full_trace"] = json!({
            "source": full.source,
            "files": full.files,
            "events": full.events,
            "chunk_events": full.chunk_events,
        });
        if let Some(requests) = &full.requests {
            res["full_trace"]["requests"] = json!({
                "requests": requests.requests,
                "clock": requests.method,
                "client_minus_server_ns": requests.offset_ns,
                "uncertainty_ns": requests.uncertainty_ns,
                "slowest_waits": requests.waits.iter().map(|w| {
                    let ops = |ops: &[crate::WaitOp]| ops.iter().map(|op| json!({
                        "name": trace_model::shown_name(&op.name),
                        "self_ms": op.self_ms,
                        "events": op.count,
                    })).collect::<Vec<_>>();
                    json!({
                        "id": w.id,
                        "slot": w.slot,
                        "ttft_ms": w.ttft_ms,
                        "device": ops(&w.device),
                        "host": ops(&w.host),
                    })
                }).collect::<Vec<_>>(),
            });
        }
    }
    // Only a traced session knows what compiled; `null` then means nothing.
    if input.metadata.serving.as_ref().is_none_or(|s| s.traced) {
        res["compilation"] = json!(compilation(analysis).unwrap_or(Compilation {
            operation: String::new(),
            count: 0,
            total_ms: 0.0,
        }));
    }
    if let Some(serving) = &input.serving {
        res["serving"] = serde_json::to_value(serving).expect("plain data serialises");
    }
    if let Some(workload) = &input.metadata.workload {
        res["workload"] = serde_json::to_value(workload).expect("plain data serialises");
    }
    let mut text = serde_json::to_string_pretty(&res).expect("plain data serialises");
    text.push('\n');
    text
}
