//! One section per host when a JAX run holds the traces of several hosts
//! (the workers of a multi-host TPU slice, or a rehearsal's simulated
//! workers): each host's file is analysed with the same choice of file as
//! the main report, and summarised in a table row and its heaviest
//! operations.

use std::path::Path;

use trace_analysis::{Analysis, OpKind, OpStats};
use trace_model::HostTraces;

use crate::Error;
use crate::analyse::{Chosen, choose};

/// Rows of each host's operations table.
const TOP: usize = 5;

/// The summary of one host.
pub(crate) struct HostSummary {
    host: String,
    source: String,
    events: u64,
    op_events: u64,
    traced_ps: i128,
    /// Executions of the model (`run_model` operations).
    model_runs: u64,
    top: Vec<OpStats>,
}

impl HostSummary {
    fn new(host: &str, chosen: &Chosen, out_dir: &Path) -> HostSummary {
        let analysis: &Analysis = &chosen.analysis;
        let model_runs = analysis
            .ops
            .iter()
            .find(|op| op.name.contains("run_model"))
            .map_or(0, |op| op.count);
        let mut top: Vec<&OpStats> = analysis
            .ops
            .iter()
            .filter(|op| matches!(op.kind, OpKind::Xla { .. }))
            .collect();
        if top.is_empty() {
            top = analysis.ops.iter().collect();
        }
        top.sort_by(|a, b| b.self_ps.cmp(&a.self_ps).then_with(|| a.name.cmp(&b.name)));
        HostSummary {
            host: host.to_owned(),
            source: crate::shown(&chosen.source, out_dir),
            events: analysis.total_events,
            op_events: analysis.op_events,
            traced_ps: i128::from(analysis.traced_time_ps()),
            model_runs,
            top: top.into_iter().take(TOP).cloned().collect(),
        }
    }
}

/// Every host of the run, `main` (already analysed for the report) among
/// them; empty for a run of one host.
pub(crate) fn summarise(
    hosts: &[HostTraces],
    main: (&str, &Chosen),
    prefer_xplane: bool,
    out_dir: &Path,
) -> Result<Vec<HostSummary>, Error> {
    if hosts.len() < 2 {
        return Ok(Vec::new());
    }
    let mut res = Vec::new();
    for host in hosts {
        if host.host == main.0 {
            res.push(HostSummary::new(&host.host, main.1, out_dir));
        } else {
            let chosen = choose(host, prefer_xplane)?;
            res.push(HostSummary::new(&host.host, &chosen, out_dir));
        }
    }
    Ok(res)
}

/// Milliseconds with two decimals, from exact picoseconds.
fn ms(ps: i128) -> String {
    let hundredths = ps / 10_000_000;
    format!("{}.{:02}", hundredths / 100, hundredths % 100)
}

/// A table cell: pipes escaped, on one line.
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

/// The `## Hosts` section.
pub(crate) fn render(hosts: &[HostSummary]) -> String {
    let mut out = String::from("## Hosts\n\n");
    out.push_str(&format!(
        "The run holds the traces of {} hosts; the sections above analyse the first. \
         Each host's file is summarised here (operations by self time, XLA operations when there are any).\n\n",
        hosts.len()
    ));
    out.push_str(
        "| Host | File | Events | Operation events | Traced time (ms) | Model executions |\n",
    );
    out.push_str("|---|---|---:|---:|---:|---:|\n");
    for host in hosts {
        out.push_str(&format!(
            "| {} | `{}` | {} | {} | {} | {} |\n",
            cell(&host.host),
            cell(&host.source),
            host.events,
            host.op_events,
            ms(host.traced_ps),
            host.model_runs
        ));
    }
    for host in hosts {
        out.push_str(&format!("\n### Host {}\n\n", cell(&host.host)));
        out.push_str("| Operation | Count | Total (ms) | Self (ms) |\n|---|---:|---:|---:|\n");
        for op in &host.top {
            out.push_str(&format!(
                "| `{}` | {} | {} | {} |\n",
                cell(&op.name),
                op.count,
                ms(op.total_ps),
                ms(op.self_ps)
            ));
        }
    }
    out.push('\n');
    out
}

/// `markdown` with `section` before its "How to View Traces" (or at the
/// end when it has none).
pub(crate) fn insert(markdown: &str, section: &str) -> String {
    match markdown.find("## How to View Traces") {
        Some(at) => format!("{}{section}{}", &markdown[..at], &markdown[at..]),
        None => format!("{markdown}\n{section}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn milliseconds_from_picoseconds() {
        assert_eq!(ms(0), "0.00");
        assert_eq!(ms(1_234_567_890_123), "1234.56");
        assert_eq!(ms(9_999_999), "0.00");
    }

    #[test]
    fn section_goes_before_the_viewing_help() {
        let md = "# R\n\n## Trace Files\n\n## How to View Traces\n\nx\n";
        let res = insert(md, "## Hosts\n\n");
        assert!(res.find("## Hosts").unwrap() < res.find("## How to View").unwrap());
        assert_eq!(insert("# R\n", "## Hosts\n"), "# R\n\n## Hosts\n");
    }
}
