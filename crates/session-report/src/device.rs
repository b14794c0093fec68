//! The device section of `report.md` and the `devices` array of
//! `summary.json`, from the device view of `trace-device`.

use serde_json::{Value, json};
use trace_analysis::OpKind;
use trace_device::{COMPONENT_RULES, DeviceOp, DevicePlane, step_stats};
use trace_model::{Ps, ps_to_ms};

use crate::format::{Table, cell, code, count, fixed, ms, percent};
use crate::render::ReportInput;

fn ms_of(ps: Ps) -> f64 {
    ps_to_ms(i128::from(ps))
}

fn ms_cell(ps: Ps) -> String {
    ms(i128::from(ps))
}

fn opt(value: Option<f64>, decimals: usize) -> String {
    value.map_or_else(|| "n/a".to_owned(), |it| fixed(it, decimals))
}

/// `## Device Activity`: one subsection per device plane, and a summed view
/// when there are several.
pub(crate) fn section(input: &ReportInput<'_>, out: &mut String) {
    if input.devices.is_empty() {
        return;
    }
    out.push_str("## Device Activity\n\n");
    out.push_str("Device time is taken from the device clock (`device_offset_ps`, `device_duration_ps`) when the events carry it, else from the trace's timestamps. Definitions are at the end of this section.\n\n");
    let mut table = Table::new(&[
        "Device",
        "Type",
        "Window (ms)",
        "Busy (ms)",
        "Idle (ms)",
        "Idle",
        "Duty cycle in modules",
        "Steps",
    ]);
    for plane in input.devices {
        table.row(vec![
            code(&plane.plane),
            plane
                .peaks
                .device_type
                .as_deref()
                .map_or_else(|| "unknown".to_owned(), cell),
            ms_cell(plane.window_ps),
            ms_cell(plane.busy_ps),
            ms_cell(plane.idle_ps()),
            percent(plane.idle_ps(), plane.window_ps),
            plane.module_duty_cycle().map_or_else(
                || "n/a".to_owned(),
                |it| format!("{}%", fixed(it * 100.0, 1)),
            ),
            count(plane.steps.len() as u64),
        ]);
    }
    if input.devices.len() > 1 {
        let sum = |f: fn(&DevicePlane) -> Ps| input.devices.iter().map(f).sum::<Ps>();
        let (window, busy) = (sum(|it| it.window_ps), sum(|it| it.busy_ps));
        table.row(vec![
            "**All devices**".to_owned(),
            String::new(),
            ms_cell(window),
            ms_cell(busy),
            ms_cell(window - busy),
            percent(window - busy, window),
            String::new(),
            count(input.devices.iter().map(|it| it.steps.len() as u64).sum()),
        ]);
    }
    table.render(out);
    out.push('\n');
    if input.devices.len() > 1 {
        summed_categories(input.devices, out);
    }
    for (idx, plane) in input.devices.iter().enumerate() {
        plane_section(input, plane, input.step_plots.get(idx), out);
    }
    definitions(out);
}

fn summed_categories(devices: &[DevicePlane], out: &mut String) {
    let mut rows: Vec<(String, u64, Ps)> = Vec::new();
    for category in devices.iter().flat_map(|it| &it.categories) {
        match rows.iter_mut().find(|it| it.0 == category.name) {
            Some(row) => {
                row.1 += category.count;
                row.2 += category.self_ps;
            }
            None => rows.push((category.name.clone(), category.count, category.self_ps)),
        }
    }
    rows.sort_by(|a, b| (b.2, &a.0).cmp(&(a.2, &b.0)));
    let busy: Ps = devices.iter().map(|it| it.busy_ps).sum();
    out.push_str("### All Devices: HLO Categories\n\n");
    let mut table = Table::new(&["Category", "Ops run", "Self (ms)", "Share of busy"]);
    for (name, n, self_ps) in rows {
        table.row(vec![
            category_name(&name),
            count(n),
            ms_cell(self_ps),
            percent(self_ps, busy),
        ]);
    }
    table.render(out);
    out.push('\n');
}

fn category_name(name: &str) -> String {
    if name.is_empty() {
        "(none)".to_owned()
    } else {
        cell(name)
    }
}

fn plane_section(
    input: &ReportInput<'_>,
    plane: &DevicePlane,
    plot: Option<&String>,
    out: &mut String,
) {
    out.push_str(&format!("### {}\n\n", code(&plane.plane)));
    let peaks = &plane.peaks;
    let mut facts = vec![format!(
        "Window {} ms, busy {} ms, idle {} ms ({} of the window)",
        ms_cell(plane.window_ps),
        ms_cell(plane.busy_ps),
        ms_cell(plane.idle_ps()),
        percent(plane.idle_ps(), plane.window_ps)
    )];
    if let (Some(f), Some(b)) = (peaks.tflops_per_s, peaks.hbm_gbytes_per_s) {
        facts.push(format!(
            "peaks {} TFLOP/s and {} GB/s HBM (ridge point {} FLOP/byte)",
            fixed(f, 1),
            fixed(b, 1),
            opt(peaks.ridge_point(), 1)
        ));
    }
    if plane.out_of_order > 0 {
        facts.push(format!(
            "{} ops started before an earlier op of their line, so self times are approximate",
            count(plane.out_of_order)
        ));
    }
    out.push_str(&format!("{}.\n\n", facts.join("; ")));

    if let Some(stats) = step_stats(&plane.steps) {
        out.push_str("#### Steps\n\n");
        out.push_str(if plane.steps_from_line {
            "From the device's `Steps` line.\n\n"
        } else {
            "The device has no `Steps` line: each XLA module execution is a step, from its start to the next one's.\n\n"
        });
        let mut table = Table::new(&[
            "Steps",
            "Mean (ms)",
            "p50 (ms)",
            "p90 (ms)",
            "Min (ms)",
            "Max (ms)",
            "Stdev (ms)",
            "Compute (ms)",
            "Idle (ms)",
        ]);
        let compute: Ps = plane.steps.iter().map(|it| it.compute_ps).sum();
        let idle: Ps = plane.steps.iter().map(|it| it.idle_ps()).sum();
        table.row(vec![
            count(stats.count as u64),
            fixed(stats.mean_ps / 1e9, 3),
            fixed(stats.p50_ps as f64 / 1e9, 3),
            fixed(stats.p90_ps as f64 / 1e9, 3),
            fixed(stats.min_ps as f64 / 1e9, 3),
            fixed(stats.max_ps as f64 / 1e9, 3),
            fixed(stats.stdev_ps / 1e9, 3),
            ms_cell(compute),
            ms_cell(idle),
        ]);
        table.render(out);
        out.push('\n');
        let mut programs: Vec<(&str, usize, Ps)> = Vec::new();
        for step in &plane.steps {
            let name = step.program.as_deref().unwrap_or("(unknown)");
            match programs.iter_mut().find(|it| it.0 == name) {
                Some(row) => {
                    row.1 += 1;
                    row.2 += step.duration_ps;
                }
                None => programs.push((name, 1, step.duration_ps)),
            }
        }
        if programs.len() > 1 {
            let mut table = Table::new(&["Program", "Steps", "Mean step (ms)"]);
            for (name, n, total) in programs {
                table.row(vec![
                    code(name),
                    count(n as u64),
                    fixed(total as f64 / n as f64 / 1e9, 3),
                ]);
            }
            table.render(out);
            out.push('\n');
        }
        if let Some(file) = plot {
            out.push_str(&format!(
                "Step time per step, device compute and idle, coloured by program: [{file}]({file}).\n\n"
            ));
        }
    }

    if !plane.categories.is_empty() {
        out.push_str("#### HLO Categories\n\n");
        let mut table = Table::new(&["Category", "Ops run", "Self (ms)", "Share of busy"]);
        for category in &plane.categories {
            table.row(vec![
                category_name(&category.name),
                count(category.count),
                ms_cell(category.self_ps),
                percent(category.self_ps, plane.busy_ps),
            ]);
        }
        table.render(out);
        out.push('\n');
    }

    if !plane.ops.is_empty() {
        out.push_str("#### Device Operations and Roofline\n\n");
        let mut table = Table::new(&[
            "Operation",
            "Program",
            "Category",
            "Count",
            "Self (ms)",
            "Total (ms)",
            "GFLOP/s",
            "GB/s",
            "FLOP/byte",
            "Bound",
        ]);
        for op in plane.ops.iter().take(input.top_n) {
            table.row(vec![
                code(&op.name),
                op.program_id.map_or_else(String::new, |it| it.to_string()),
                category_name(&op.category),
                count(op.count),
                ms_cell(op.self_ps),
                ms_cell(op.total_ps),
                opt(op.gflops_per_s(), 1),
                opt(op.gbytes_per_s(), 1),
                opt(op.intensity(), 1),
                op.bound(peaks).unwrap_or("n/a").to_owned(),
            ]);
        }
        table.render(out);
        out.push_str(&format!(
            "\n{} distinct operations; the full list is in `summary.json`.\n\n",
            count(plane.ops.len() as u64)
        ));
    }

    out.push_str("#### Components\n\n");
    let mut table = Table::new(&["Component", "Ops run", "Self (ms)", "Share of busy"]);
    for component in plane.components.iter().filter(|it| it.count > 0) {
        table.row(vec![
            component.name.to_owned(),
            count(component.count),
            ms_cell(component.self_ps),
            percent(component.self_ps, plane.busy_ps),
        ]);
    }
    table.render(out);
    out.push('\n');

    if plane.idle.gaps > 0 {
        out.push_str("#### Why Was the Device Idle\n\n");
        out.push_str(&format!(
            "{} gaps between program executions, {} ms in all. For each host thread, the innermost host event running during the gaps:\n\n",
            count(plane.idle.gaps),
            ms_cell(plane.idle.gap_ps)
        ));
        let mut table = Table::new(&[
            "Host thread",
            "Function",
            "Overlap (ms)",
            "Share of gaps",
            "Gaps",
        ]);
        for row in plane.idle.rows.iter().take(input.top_n) {
            table.row(vec![
                cell(&row.thread),
                code(&row.function),
                ms_cell(row.overlap_ps),
                percent(row.overlap_ps, plane.idle.gap_ps),
                count(row.gaps),
            ]);
        }
        table.render(out);
        out.push('\n');
    }
}

/// The definitions under the section, in inline Markdown (`**`, backticks).
pub const DEVICE_DEFINITIONS: [&str; 7] = [
    "**Self time** of a device op: its duration minus its direct children's on the same `XLA Ops` line (a `while` op keeps only its loop overhead). **Busy**: Σ op self time.",
    "**Window**: first start to last end over the `Steps` and `XLA Ops` lines. **Idle** = window − busy, xprof's IDLE row.",
    "**Duty cycle in modules**: Σ durations of top-level ops ÷ Σ durations of XLA module executions.",
    "**Step**: an event of the `Steps` line; its compute is the self time of the ops of its group, its idle the rest. Percentiles are nearest-rank; the standard deviation is the population one.",
    "**GFLOP/s, GB/s**: Σ `flops` and Σ `bytes_accessed` over an op's executions ÷ its self time. **FLOP/byte**: their ratio. **Bound**: `compute` at or above the plane's ridge point (peak FLOP/s ÷ peak HBM bytes/s), else `memory`.",
    "**Why was the device idle**: gaps are the times between one module execution's end and the next one's start (host clock); each host thread's innermost event is charged its overlap with the gaps.",
    "Unlike xprof, ops are counted per HLO op and program: xprof's framework-op view counts a framework op's occurrences as the maximum over its HLO ops, and its host rows (host IDLE) are not reported here.",
];

fn definitions(out: &mut String) {
    out.push_str("### Device Definitions\n\n");
    for line in DEVICE_DEFINITIONS {
        out.push_str(&format!("- {line}\n"));
    }
    out.push_str("\nComponents are assigned by the first rule whose words appear in the op's framework op path, name or category:\n\n");
    let mut table = Table::new(&["Component", "Words"]);
    for rule in COMPONENT_RULES {
        table.row(vec![
            rule.component.to_owned(),
            rule.needles
                .iter()
                .map(|it| code(it))
                .collect::<Vec<_>>()
                .join(", "),
        ]);
    }
    table.row(vec!["other".to_owned(), "no rule matched".to_owned()]);
    table.render(out);
    out.push('\n');
}

/// Device ops merged over the planes by (name, program), heaviest self time
/// first.
fn merged_ops(devices: &[DevicePlane]) -> Vec<DeviceOp> {
    let mut res: Vec<DeviceOp> = Vec::new();
    for op in devices.iter().flat_map(|it| &it.ops) {
        match res
            .iter_mut()
            .find(|it| it.name == op.name && it.program_id == op.program_id)
        {
            Some(acc) => {
                acc.count += op.count;
                acc.total_ps += op.total_ps;
                acc.self_ps += op.self_ps;
            }
            None => res.push(op.clone()),
        }
    }
    res.sort_by(|a, b| (b.self_ps, &a.name).cmp(&(a.self_ps, &b.name)));
    res
}

/// The "TPU/XLA Operations" tables from device self time when the trace has
/// device planes: device ops, host runtime calls, XLA modules. Returns false
/// (writing nothing) without device planes.
pub(crate) fn operations(input: &ReportInput<'_>, out: &mut String) -> bool {
    if input.devices.is_empty() {
        return false;
    }
    out.push_str("### TPU/XLA Operations\n\n");
    let busy: Ps = input.devices.iter().map(|it| it.busy_ps).sum();
    let mut table = Table::new(&[
        "Operation",
        "Program",
        "Framework op",
        "Self (ms)",
        "Count",
        "Share of device busy",
    ]);
    for op in merged_ops(input.devices).iter().take(input.top_n) {
        table.row(vec![
            code(&op.name),
            op.program_id.map_or_else(String::new, |it| it.to_string()),
            if op.framework_op.is_empty() {
                String::new()
            } else {
                code(&op.framework_op)
            },
            ms_cell(op.self_ps),
            count(op.count),
            percent(op.self_ps, busy),
        ]);
    }
    table.render(out);
    out.push_str(&format!(
        "\nDevice self time summed over {} device plane(s); modules and host runtime calls are listed apart.\n\n",
        input.devices.len()
    ));

    out.push_str("### Host Runtime Calls\n\n");
    let runtime: Vec<_> = input
        .analysis
        .ops
        .iter()
        .filter(|it| it.kind == OpKind::Runtime)
        .take(input.top_n)
        .collect();
    if runtime.is_empty() {
        out.push_str("No PjRt/TPU runtime events were traced.\n\n");
    } else {
        let mut table = Table::new(&["Call", "Total (ms)", "Count"]);
        for op in runtime {
            table.row(vec![
                cell(op.display_name()),
                ms(op.total_ps),
                count(op.count),
            ]);
        }
        table.render(out);
        out.push('\n');
    }

    out.push_str("### XLA Modules\n\n");
    let mut table = Table::new(&["Device", "Module", "Program", "Executions", "Total (ms)"]);
    for plane in input.devices {
        for module in &plane.modules {
            table.row(vec![
                code(&plane.plane),
                code(&module.name),
                module
                    .program_id
                    .map_or_else(String::new, |it| it.to_string()),
                count(module.count),
                ms_cell(module.total_ps),
            ]);
        }
    }
    table.render(out);
    out.push('\n');
    true
}

fn op_json(op: &DeviceOp, plane: &DevicePlane) -> Value {
    json!({
        "name": op.name,
        "framework_op": op.framework_op,
        "program_id": op.program_id,
        "category": op.category,
        "count": op.count,
        "total_ms": ms_of(op.total_ps),
        "self_ms": ms_of(op.self_ps),
        "flops": op.flops,
        "bytes_accessed": op.bytes_accessed,
        "gflops_per_s": op.gflops_per_s(),
        "gbytes_per_s": op.gbytes_per_s(),
        "intensity": op.intensity(),
        "bound": op.bound(&plane.peaks),
    })
}

/// `summary.json`'s `devices`: one object per device plane.
pub(crate) fn devices_json(devices: &[DevicePlane]) -> Value {
    Value::Array(devices.iter().map(plane_json).collect())
}

fn plane_json(plane: &DevicePlane) -> Value {
    let stats = step_stats(&plane.steps);
    let steps = json!({
        "source": if plane.steps_from_line { "steps-line" } else { "modules" },
        "count": plane.steps.len(),
        "mean_ms": stats.as_ref().map(|it| it.mean_ps / 1e9),
        "p50_ms": stats.as_ref().map(|it| ms_of(it.p50_ps)),
        "p90_ms": stats.as_ref().map(|it| ms_of(it.p90_ps)),
        "min_ms": stats.as_ref().map(|it| ms_of(it.min_ps)),
        "max_ms": stats.as_ref().map(|it| ms_of(it.max_ps)),
        "stdev_ms": stats.as_ref().map(|it| it.stdev_ps / 1e9),
        "per_step": plane.steps.iter().map(|step| json!({
            "name": step.name,
            "start_ms": ms_of(step.start_ps),
            "duration_ms": ms_of(step.duration_ps),
            "compute_ms": ms_of(step.compute_ps),
            "idle_ms": ms_of(step.idle_ps()),
            "program": step.program,
        })).collect::<Vec<_>>(),
    });
    json!({
        "plane": plane.plane,
        "device_type": plane.peaks.device_type,
        "peak_teraflops_per_second": plane.peaks.tflops_per_s,
        "peak_hbm_bw_gigabytes_per_second": plane.peaks.hbm_gbytes_per_s,
        "ridge_point_flops_per_byte": plane.peaks.ridge_point(),
        "device_clock": plane.device_clock,
        "window_ms": ms_of(plane.window_ps),
        "busy_ms": ms_of(plane.busy_ps),
        "idle_ms": ms_of(plane.idle_ps()),
        "idle_fraction": plane.idle_fraction(),
        "module_duty_cycle": plane.module_duty_cycle(),
        "out_of_order_ops": plane.out_of_order,
        "steps": steps,
        "categories": plane.categories.iter().map(|it| json!({
            "name": it.name, "count": it.count, "self_ms": ms_of(it.self_ps),
        })).collect::<Vec<_>>(),
        "ops": plane.ops.iter().map(|op| op_json(op, plane)).collect::<Vec<_>>(),
        "modules": plane.modules.iter().map(|it| json!({
            "name": it.name, "program_id": it.program_id, "count": it.count, "total_ms": ms_of(it.total_ps),
        })).collect::<Vec<_>>(),
        "components": plane.components.iter().map(|it| json!({
            "name": it.name, "count": it.count, "self_ms": ms_of(it.self_ps),
        })).collect::<Vec<_>>(),
        "idle_attribution": {
            "gaps": plane.idle.gaps,
            "gap_ms": ms_of(plane.idle.gap_ps),
            "rows": plane.idle.rows.iter().map(|it| json!({
                "thread": it.thread, "function": it.function,
                "overlap_ms": ms_of(it.overlap_ps), "gaps": it.gaps,
            })).collect::<Vec<_>>(),
        },
    })
}

/// The file name of a plane's step plot: `/device:TPU:0` -> `steps-tpu-0.svg`.
pub fn plot_file_name(plane: &str) -> String {
    let tail = plane.strip_prefix("/device:").unwrap_or(plane);
    let slug: String = tail
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    format!("steps-{slug}.svg")
}

/// The SVG step plot of a plane, or `None` without steps.
pub fn step_plot(plane: &DevicePlane) -> Option<String> {
    report_plot::steps_svg(plane)
}
