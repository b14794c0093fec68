//! `compare.md` and the SVG bar chart of the largest changes.

use std::fmt::Write;

use crate::compare::{Comparison, OpComparison, OpVerdict, Verdict};

/// Operations shown in the bar chart.
pub const CHART_ROWS: usize = 15;

/// Renders one cell of the machine table.
type MachineCell = dyn Fn(&crate::MachineState) -> String;

/// Rows of the table of unchanged operations.
pub const SAME_ROWS: usize = 20;

/// A cell of compare.md and compare.html.
pub fn pct(change: Option<f64>) -> String {
    match change {
        Some(it) => format!("{:+.1}%", it * 100.0),
        None => "-".to_owned(),
    }
}

/// A cell of compare.md and compare.html.
pub fn num(value: Option<f64>) -> String {
    match value {
        Some(it) => format!("{it:.3}"),
        None => "-".to_owned(),
    }
}

/// A cell of compare.md and compare.html.
pub fn p_text(value: Option<f64>) -> String {
    match value {
        Some(it) if it < 1e-4 => format!("{it:.1e}"),
        Some(it) => format!("{it:.4}"),
        None => "-".to_owned(),
    }
}

/// A cell of compare.md and compare.html.
pub fn interval(ci: Option<[f64; 2]>) -> String {
    match ci {
        Some([lo, hi]) => format!("[{:+.1}%, {:+.1}%]", lo * 100.0, hi * 100.0),
        None => "-".to_owned(),
    }
}

/// Markdown table cells must not break the table.
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

fn op_table(rows: &[&OpComparison], out: &mut String) {
    out.push_str(
        "| Operation | Side | Verdict | Count (base → cand) | Median ms (base → cand) | Change in median | 95% CI | Total ms (base → cand) | Change in total | p | p adjusted |\n",
    );
    out.push_str("|---|---|---|---|---|---|---|---|---|---|---|\n");
    for row in rows {
        let few = if row.few_samples {
            " (few samples)"
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "| `{}` | {} | {}{} | {} → {} | {} → {} | {} | {} | {:.3} → {:.3} | {} | {} | {} |",
            cell(&row.name),
            row.side,
            row.verdict.as_str(),
            few,
            row.baseline_count,
            row.candidate_count,
            num(row.baseline_median_ms),
            num(row.candidate_median_ms),
            pct(row.change),
            interval(row.ci.median),
            row.baseline_total_ms,
            row.candidate_total_ms,
            pct(row.total_change),
            p_text(row.p_value),
            p_text(row.p_adjusted),
        );
    }
}

/// Renders `compare.md`: the verdict first, then the changed operations
/// (heaviest change first), added and removed ones, session numbers, the
/// heaviest unchanged operations, and the definitions. `chart` is the file
/// name of the SVG written next to it, if any.
pub fn render_markdown(cmp: &Comparison, chart: Option<&str>) -> String {
    let mut out = String::new();
    let headline = match cmp.verdict {
        Verdict::Regression => "**Regression**",
        Verdict::Improvement => "**Improvement**",
        Verdict::NoChange => "**No change**",
        Verdict::Inconclusive => "**Inconclusive**",
    };
    let _ = writeln!(out, "# Profile comparison\n");
    let _ = writeln!(
        out,
        "Verdict: {headline} (`{}`): {} slower, {} faster, {} same, {} added, {} removed operations.\n",
        cmp.verdict.as_str(),
        cmp.count(OpVerdict::Slower),
        cmp.count(OpVerdict::Faster),
        cmp.count(OpVerdict::Same),
        cmp.count(OpVerdict::Added),
        cmp.count(OpVerdict::Removed),
    );
    if cmp.verdict == Verdict::Inconclusive {
        let _ = writeln!(
            out,
            "> **Warning:** the operations and latencies alone say `{}`, but these two sessions cannot carry that verdict:\n>",
            cmp.changes_verdict.as_str()
        );
        for caveat in &cmp.caveats {
            let _ = writeln!(out, "> - {}", cell(caveat));
        }
        out.push_str(">\n> Re-run both sessions on a quiet machine, or judge the candidate against several runs (`--history N`).\n\n");
    } else if !cmp.caveats.is_empty() {
        out.push_str("Caveats (no change was seen, but a smaller one could hide behind them):\n\n");
        for caveat in &cmp.caveats {
            let _ = writeln!(out, "- {}", cell(caveat));
        }
        out.push('\n');
    }
    let _ = writeln!(out, "- Baseline: `{}`", cell(&cmp.baseline));
    let _ = writeln!(out, "- Candidate: `{}`", cell(&cmp.candidate));
    let _ = writeln!(
        out,
        "- Threshold: {:.1}% change in median duration; significance: Benjamini-Hochberg adjusted p < {}\n",
        cmp.threshold * 100.0,
        cmp.alpha
    );

    let changed: Vec<&OpComparison> = cmp
        .operations
        .iter()
        .filter(|it| matches!(it.verdict, OpVerdict::Slower | OpVerdict::Faster))
        .collect();
    out.push_str("## Changed operations\n\n");
    if changed.is_empty() {
        out.push_str("No operation changed significantly by more than the threshold.\n\n");
    } else {
        op_table(&changed, &mut out);
        out.push('\n');
    }
    if let Some(chart) = chart {
        let _ = writeln!(
            out,
            "![Largest changes in total time]({chart})\n\nThe chart shows the {CHART_ROWS} operations whose total time changed most, as the change in median duration.\n"
        );
    }

    let held: Vec<&OpComparison> = cmp
        .operations
        .iter()
        .filter(|it| it.not_flagged.is_some())
        .collect();
    if !held.is_empty() {
        let _ = writeln!(
            out,
            "{} operations changed significantly by more than the threshold but are not flagged:\n",
            held.len()
        );
        for row in held.iter().take(SAME_ROWS) {
            let _ = writeln!(
                out,
                "- `{}` ({} in median): {}",
                cell(&row.name),
                pct(row.change),
                row.not_flagged.as_deref().unwrap_or("")
            );
        }
        out.push('\n');
    }

    let one_side: Vec<&OpComparison> = cmp
        .operations
        .iter()
        .filter(|it| matches!(it.verdict, OpVerdict::Added | OpVerdict::Removed))
        .collect();
    if !one_side.is_empty() {
        out.push_str("## Added and removed operations\n\n");
        out.push_str("| Operation | Side | Verdict | Count | Total ms |\n|---|---|---|---|---|\n");
        for row in one_side {
            let (count, total) = if row.verdict == OpVerdict::Added {
                (row.candidate_count, row.candidate_total_ms)
            } else {
                (row.baseline_count, row.baseline_total_ms)
            };
            let few = if row.few_samples {
                " (few samples)"
            } else {
                ""
            };
            let _ = writeln!(
                out,
                "| `{}` | {} | {}{few} | {count} | {total:.3} |",
                cell(&row.name),
                row.side,
                row.verdict.as_str()
            );
        }
        out.push('\n');
    }

    if !cmp.latency.is_empty() {
        out.push_str("## Request latency\n\n");
        out.push_str("Tested per request like an operation; p50 is the median.\n\n");
        out.push_str("| Latency | Verdict | Requests (base → cand) | p50 ms | p90 ms | p99 ms | Change in p50 | 95% CI | Change in p90 | 95% CI | p | p adjusted |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n");
        for row in &cmp.latency {
            let few = if row.few_samples {
                " (few samples)"
            } else {
                ""
            };
            let _ = writeln!(
                out,
                "| {} | {}{few} | {} → {} | {:.1} → {:.1} | {:.1} → {:.1} | {:.1} → {:.1} | {} | {} | {} | {} | {} | {} |",
                cell(&row.name),
                row.verdict.as_str(),
                row.baseline_count,
                row.candidate_count,
                row.baseline_ms[0],
                row.candidate_ms[0],
                row.baseline_ms[1],
                row.candidate_ms[1],
                row.baseline_ms[2],
                row.candidate_ms[2],
                pct(row.change),
                interval(row.ci_median),
                pct(row.p90_change),
                interval(row.ci_p90),
                p_text(row.p_value),
                p_text(row.p_adjusted),
            );
        }
        out.push('\n');
    }

    if cmp.baseline_machine.is_some()
        || cmp.candidate_machine.is_some()
        || !cmp.shifts.is_empty()
        || cmp.baseline_compilation.is_some()
        || cmp.candidate_compilation.is_some()
    {
        out.push_str("## Machine, compilation and whole-session shift\n\n");
        if cmp.baseline_machine.is_some() || cmp.candidate_machine.is_some() {
            out.push_str("| During the profiled window | Baseline | Candidate |\n|---|---|---|\n");
            let show = |m: &Option<crate::MachineState>,
                        f: &dyn Fn(&crate::MachineState) -> String| {
                m.as_ref().map_or("not recorded".to_owned(), f)
            };
            let rows: [(&str, &MachineCell); 7] = [
                ("Other processes, cores", &|m| {
                    format!("{:.2} of {}", m.others_cores, m.cores)
                }),
                ("Busiest other processes", &|m| {
                    cell(&m.busiest_others.join(", "))
                }),
                ("CPU steal", &|m| format!("{:.1}%", m.steal_share * 100.0)),
                ("CPU of this session, cores", &|m| {
                    format!("{:.2}", m.session_cores)
                }),
                ("Major page faults of this session", &|m| {
                    m.session_major_faults.to_string()
                }),
                ("Load average (1 min)", &|m| format!("{:.2}", m.load_avg_1m)),
                ("Quiet before the window", &|m| {
                    if m.quiet_before {
                        "yes".into()
                    } else {
                        "no".into()
                    }
                }),
            ];
            for (label, f) in rows {
                let _ = writeln!(
                    out,
                    "| {label} | {} | {} |",
                    show(&cmp.baseline_machine, f),
                    show(&cmp.candidate_machine, f)
                );
            }
            out.push('\n');
        }
        if cmp.baseline_compilation.is_some() || cmp.candidate_compilation.is_some() {
            let show = |c: &Option<crate::Compilation>| match c {
                Some(c) => format!(
                    "{} programs in {:.0} ms (`{}`)",
                    c.count,
                    c.total_ms,
                    cell(&c.operation)
                ),
                None => "none".to_owned(),
            };
            let _ = writeln!(
                out,
                "- Compilation inside the profiled window: baseline {}, candidate {}.",
                show(&cmp.baseline_compilation),
                show(&cmp.candidate_compilation)
            );
        }
        for shift in &cmp.shifts {
            let _ = writeln!(
                out,
                "- The {} side moved by {} as a whole (median change in median over {} operations with at least 9 occurrences on both sides); its operations spread by ±{:.1}% around that, so one of them is flagged only beyond {} to {} (relative to the whole side).",
                shift.side,
                pct(Some(shift.change)),
                shift.operations,
                shift.spread.exp_m1() * 100.0,
                pct(Some(shift.smallest_visible().1)),
                pct(Some(shift.smallest_visible().0)),
            );
        }
        out.push('\n');
    }

    out.push_str("## Session numbers\n\n");
    if cmp.session.is_empty() {
        out.push_str("Neither device step time, device categories, request latency nor throughput is available on both sides.\n\n");
    } else {
        out.push_str(
            "One value per side, so no test: shown for reading, not part of the verdict.\n\n",
        );
        out.push_str("| Metric | Baseline | Candidate | Change |\n|---|---|---|---|\n");
        for row in &cmp.session {
            let _ = writeln!(
                out,
                "| {} | {:.3} | {:.3} | {} |",
                cell(&row.metric),
                row.baseline,
                row.candidate,
                pct(Some(row.change).filter(|it| it.is_finite()))
            );
        }
        out.push('\n');
    }
    if !cmp.notes.is_empty() {
        out.push_str("Not compared:\n\n");
        for note in &cmp.notes {
            let _ = writeln!(out, "- {}", cell(note));
        }
        out.push('\n');
    }

    let same: Vec<&OpComparison> = cmp
        .operations
        .iter()
        .filter(|it| it.verdict == OpVerdict::Same)
        .take(SAME_ROWS)
        .collect();
    if !same.is_empty() {
        let _ = writeln!(
            out,
            "## Unchanged operations (the {} with the largest change in total)\n",
            same.len()
        );
        op_table(&same, &mut out);
        out.push('\n');
    }
    let few = cmp.operations.iter().filter(|it| it.few_samples).count();
    if few > 0 {
        let _ = writeln!(
            out,
            "{few} operations have fewer than 9 occurrences on a side (marked \"few samples\"): their tests can detect only large, consistent changes.\n"
        );
    }

    out.push_str("## Definitions\n\n");
    let _ = writeln!(
        out,
        "- Each operation (complete events and matched begin/end pairs, grouped by exact name) contributes one duration per occurrence on each side.\n\
         - p: two-sided Mann-Whitney U test of the two sets of durations (exact distribution without ties when the smaller side has at most 8 occurrences, else the normal approximation with tie and continuity corrections).\n\
         - p adjusted: Benjamini-Hochberg over all {} tested operations, which bounds the expected share of false alarms among the flagged ones.\n\
         - Change in median: candidate median / baseline median - 1; the verdict uses it. Change in total likewise with total times.\n\
         - 95% CI: block bootstrap of the change in median: each side's occurrences in order of start time cut into {} runs, whole runs resampled ({} times, seed {}).\n\
         - slower/faster: adjusted p < {} and |change in median| > {:.1}% with the whole 95% CI beyond it, the total moved the same way by at least {:.1}% of the baseline's traced time, and a host operation's median by at least {} ms; added/removed: the operation ran on one side only; same: otherwise.",
        cmp.operations
            .iter()
            .filter(|it| it.p_value.is_some())
            .count(),
        cmp.bootstrap_blocks,
        cmp.bootstrap_resamples,
        cmp.bootstrap_seed,
        cmp.alpha,
        cmp.threshold * 100.0,
        cmp.min_share * 100.0,
        cmp.host_floor_ms,
    );
    out
}

/// A horizontal bar chart of the change in median of the [`CHART_ROWS`]
/// compared operations with the largest change in total time. `None` when
/// no operation was compared on both sides.
pub fn render_chart(cmp: &Comparison) -> Option<String> {
    report_plot::change_chart(&chart_bars(cmp), cmp.threshold)
}

/// The bars of [`render_chart`], for a page that draws the same chart.
pub fn chart_bars(cmp: &Comparison) -> Vec<report_plot::ChangeBar> {
    cmp.operations
        .iter()
        .filter_map(|row| {
            Some(report_plot::ChangeBar {
                name: row.name.clone(),
                change: row.change?,
                kind: match row.verdict {
                    OpVerdict::Slower => report_plot::Change::Slower,
                    OpVerdict::Faster => report_plot::Change::Faster,
                    _ => report_plot::Change::Same,
                },
                verdict: row.verdict.as_str().to_owned(),
            })
        })
        .take(CHART_ROWS)
        .collect()
}
