//! `compare.html`: the verdict, the compare chart and every compared
//! operation in one sortable table, from the same [`Comparison`] as
//! `compare.md`.

use maud::html;
use profile_compare::render::{interval, num, p_text, pct};
use profile_compare::{CHART_ROWS, Comparison, OpVerdict, Verdict, chart_bars};

use crate::page::{Align, DataTable, document, facts, figure};

/// Renders `compare.html`.
pub fn render_compare(cmp: &Comparison) -> String {
    let title = "Profile comparison";
    let headline = match cmp.verdict {
        Verdict::Regression => "Regression",
        Verdict::Improvement => "Improvement",
        Verdict::NoChange => "No change",
        Verdict::Inconclusive => "Inconclusive",
    };
    let chart = report_plot::change_chart(&chart_bars(cmp), cmp.threshold);
    let header = html! {
        h1 { (title) ": " span.verdict.(cmp.verdict.as_str()) { (headline) } }
        (facts(&[
            ("Baseline", cmp.baseline.clone()),
            ("Candidate", cmp.candidate.clone()),
            ("Threshold", format!("{:.1}% change in median duration; Benjamini-Hochberg adjusted p < {}", cmp.threshold * 100.0, cmp.alpha)),
        ]))
    };
    let few = |row: bool| if row { " (few samples)" } else { "" };
    let rows = cmp
        .operations
        .iter()
        .map(|row| {
            vec![
                row.name.clone(),
                row.side.clone(),
                format!("{}{}", row.verdict.as_str(), few(row.few_samples)),
                row.baseline_count.to_string(),
                row.candidate_count.to_string(),
                num(row.baseline_median_ms),
                num(row.candidate_median_ms),
                pct(row.change),
                interval(row.ci.median),
                format!("{:.3}", row.baseline_total_ms),
                format!("{:.3}", row.candidate_total_ms),
                pct(row.total_change),
                p_text(row.p_value),
                p_text(row.p_adjusted),
            ]
        })
        .collect();
    let content = html! {
        section #verdict {
            h2 { "Verdict" }
            p {
                (cmp.count(OpVerdict::Slower)) " slower, " (cmp.count(OpVerdict::Faster)) " faster, "
                (cmp.count(OpVerdict::Same)) " same, " (cmp.count(OpVerdict::Added)) " added, "
                (cmp.count(OpVerdict::Removed)) " removed operations."
            }
            @if cmp.verdict == Verdict::Inconclusive {
                div.warn {
                    p { "The operations and latencies alone say " code { (cmp.changes_verdict.as_str()) } ", but these two sessions cannot carry that verdict:" }
                    ul { @for caveat in &cmp.caveats { li { (caveat) } } }
                    p { "Re-run both sessions on a quiet machine, or judge the candidate against several runs (" code { "--history N" } ")." }
                }
            } @else if !cmp.caveats.is_empty() {
                p { "Caveats (no change was seen, but a smaller one could hide behind them):" }
                ul { @for caveat in &cmp.caveats { li { (caveat) } } }
            }
            @if let Some(svg) = &chart {
                (figure(svg, Some(&format!("The {CHART_ROWS} operations whose total time changed most, as the change in their median duration: red slower, green faster, grey neither."))))
            }
        }
        section #operations {
            h2 { "Operations" }
            p { "Every operation of both sides, largest change in total time first; click a column to sort, type to filter." }
            (DataTable {
                id: "compare-ops",
                columns: &[
                    ("Operation", Align::Code),
                    ("Side", Align::Left),
                    ("Verdict", Align::Left),
                    ("Count (base)", Align::Right),
                    ("Count (cand)", Align::Right),
                    ("Median ms (base)", Align::Right),
                    ("Median ms (cand)", Align::Right),
                    ("Change in median", Align::Right),
                    ("95% CI", Align::Right),
                    ("Total ms (base)", Align::Right),
                    ("Total ms (cand)", Align::Right),
                    ("Change in total", Align::Right),
                    ("p", Align::Right),
                    ("p adjusted", Align::Right),
                ],
                rows,
            })
        }
        @if !cmp.latency.is_empty() {
            section #latency {
                h2 { "Request Latency" }
                (DataTable {
                    id: "compare-latency",
                    columns: &[("Latency", Align::Left), ("Verdict", Align::Left), ("Requests (base → cand)", Align::Left), ("p50 ms", Align::Left), ("p90 ms", Align::Left), ("p99 ms", Align::Left), ("Change in p50", Align::Right), ("95% CI", Align::Right), ("p adjusted", Align::Right)],
                    rows: cmp.latency.iter().map(|row| vec![
                        row.name.clone(),
                        format!("{}{}", row.verdict.as_str(), few(row.few_samples)),
                        format!("{} → {}", row.baseline_count, row.candidate_count),
                        format!("{:.1} → {:.1}", row.baseline_ms[0], row.candidate_ms[0]),
                        format!("{:.1} → {:.1}", row.baseline_ms[1], row.candidate_ms[1]),
                        format!("{:.1} → {:.1}", row.baseline_ms[2], row.candidate_ms[2]),
                        pct(row.change),
                        interval(row.ci_median),
                        p_text(row.p_adjusted),
                    ]).collect(),
                })
            }
        }
        section #session {
            h2 { "Session Numbers" }
            @if cmp.session.is_empty() {
                p { "Neither device step time, device categories, request latency nor throughput is available on both sides." }
            } @else {
                p { "One value per side, so no test: shown for reading, not part of the verdict." }
                (DataTable {
                    id: "compare-session",
                    columns: &[("Metric", Align::Left), ("Baseline", Align::Right), ("Candidate", Align::Right), ("Change", Align::Right)],
                    rows: cmp.session.iter().map(|row| vec![
                        row.metric.clone(),
                        format!("{:.3}", row.baseline),
                        format!("{:.3}", row.candidate),
                        pct(Some(row.change).filter(|it| it.is_finite())),
                    ]).collect(),
                })
            }
            @if !cmp.notes.is_empty() {
                p { "Not compared:" }
                ul { @for note in &cmp.notes { li { (note) } } }
            }
            p.note { "The definitions of every column are in " a href="compare.md" { "compare.md" } " (Definitions) and docs/metrics.md." }
        }
    };
    document(
        title,
        header,
        &[
            ("verdict", "Verdict"),
            ("operations", "Operations"),
            ("session", "Session numbers"),
        ],
        content,
    )
}
