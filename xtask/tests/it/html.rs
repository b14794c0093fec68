//! The HTML pages: `report.html` of the committed real device profiles and
//! the small CPU profile as `cargo xtask report` writes them,
//! `compare.html` as `cargo xtask compare` writes it, a sweep's
//! `index.html`, and a report with a 100,000-op device table; each opened
//! in headless Chromium (see `browser`) and its structure snapshotted.
//! The real CPU session's page is checked by `profile_local`.

#![allow(clippy::disallowed_methods)] // Runs the xtask binary.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::browser::{Expect, browser, check_page};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn xtask(args: &[&str]) {
    let output = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(args)
        .current_dir(repo())
        .output()
        .expect("the xtask binary runs");
    assert!(
        output.status.code().is_some_and(|it| it <= 1),
        "xtask {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The page's structure, one line per part: headings, tables (id, rows,
/// columns) and pictures, in page order. Numbers inside text are kept:
/// every input is a committed fixture.
pub(crate) fn outline(html: &str) -> String {
    let mut out = String::new();
    let mut rest = html;
    while let Some(start) = rest.find('<') {
        rest = &rest[start..];
        let end = rest.find('>').unwrap_or(rest.len());
        let tag = &rest[1..end];
        let name = tag.split([' ', '>']).next().unwrap_or("");
        let attr = |key: &str| {
            let needle = format!("{key}=\"");
            tag.find(&needle).map(|at| {
                let value = &tag[at + needle.len()..];
                value[..value.find('"').unwrap_or(value.len())].to_owned()
            })
        };
        match name {
            "h1" | "h2" | "h3" | "h4" => {
                let close = format!("</{name}>");
                let inner = &rest[end + 1..rest.find(&close).unwrap_or(end + 1)];
                let mut text = String::new();
                let mut in_tag = false;
                for c in inner.chars() {
                    match c {
                        '<' => in_tag = true,
                        '>' => in_tag = false,
                        c if !in_tag => text.push(c),
                        _ => {}
                    }
                }
                out.push_str(&format!("{name} {text}\n"));
            }
            "section" => {
                if let Some(id) = attr("id") {
                    out.push_str(&format!("section #{id}\n"));
                }
            }
            "div" if attr("class").as_deref() == Some("table") => {
                let head_end = rest.find("</thead>").unwrap_or(0);
                let columns: Vec<&str> = rest[..head_end]
                    .split("<th scope=\"col\">")
                    .skip(1)
                    .map(|it| &it[..it.find('<').unwrap_or(0)])
                    .collect();
                out.push_str(&format!(
                    "  table #{} rows={} [{}]\n",
                    attr("id").unwrap_or_default(),
                    attr("data-rows").unwrap_or_default(),
                    columns.join(", ")
                ));
            }
            "svg" => {
                if let Some(class) = attr("class") {
                    out.push_str(&format!("  picture {class}\n"));
                }
            }
            _ => {}
        }
        rest = &rest[end.min(rest.len())..];
        if rest.len() <= 1 {
            break;
        }
        rest = &rest[1..];
    }
    out
}

/// The page of a real local CPU session (`profile_local`): under the size
/// budget, with the workload's pictures and the op table, and every browser
/// check; its screenshot is the one in docs/.
pub(crate) fn check_session_page(run: &Path) {
    let page = run.join("report.html");
    let html = std::fs::read_to_string(&page).expect("report.html");
    assert!(html.len() < 2_000_000, "{} bytes", html.len());
    let outline = outline(&html);
    for part in [
        "section #summary",
        "section #serving",
        "table #serving-metrics",
        "picture plot serving-latency",
        "picture plot histogram",
        "picture plot latency",
        "table #ops-table",
        "section #reproduction",
    ] {
        assert!(outline.contains(part), "no {part} in\n{outline}");
    }
    let Some(browser) = browser() else { return };
    check_page(
        &browser,
        &page,
        &Expect {
            sort: Some(("ops-table", 4)),
            filter: Some(("ops-table", "jit")),
            pictures: 3,
            screenshot: Some("report-cpu"),
        },
    );
}

fn report(input: &str) -> (tempfile::TempDir, PathBuf, String) {
    let out = tempfile::tempdir().unwrap();
    xtask(&["report", input, "--out", out.path().to_str().unwrap()]);
    let page = out.path().join("report.html");
    let html = std::fs::read_to_string(&page).expect("report.html");
    (out, page, html)
}

#[test]
fn report_of_the_synthetic_tpu_profile() {
    let (_out, page, html) = report("fixtures/tpu-synth");
    insta::assert_snapshot!(outline(&html));
    let Some(browser) = browser() else { return };
    check_page(
        &browser,
        &page,
        &Expect {
            sort: Some(("device-tpu-0-ops", 4)),
            filter: Some(("ops-table", "scheduler")),
            pictures: 2,
            screenshot: None,
        },
    );
}

#[test]
fn report_of_the_real_two_chip_tpu_export() {
    let (_out, page, html) =
        report("fixtures/real-device/vllm-tpu-2026_01_11_21_26_41.trace.json.gz");
    insta::assert_snapshot!(outline(&html));
    assert!(html.len() < 2_000_000, "{} bytes", html.len());
    let Some(browser) = browser() else { return };
    check_page(
        &browser,
        &page,
        &Expect {
            sort: Some(("device-tpu-0-ops", 3)),
            filter: Some(("device-tpu-1-ops", "fusion")),
            pictures: 2,
            screenshot: Some("report-tpu"),
        },
    );
}

#[test]
fn report_of_the_real_mi300_profile() {
    let (_out, page, html) = report("fixtures/real-device/amd-mi300-jax-gemm.xplane.pb");
    insta::assert_snapshot!(outline(&html));
    let Some(browser) = browser() else { return };
    check_page(
        &browser,
        &page,
        &Expect {
            sort: Some(("ops-table", 3)),
            filter: None,
            pictures: 0,
            screenshot: None,
        },
    );
}

#[test]
fn compare_page() {
    let out = tempfile::tempdir().unwrap();
    xtask(&[
        "compare",
        "fixtures/jax-cpu-small",
        "fixtures/tpu-synth",
        "--out",
        out.path().to_str().unwrap(),
    ]);
    let page = out.path().join("compare.html");
    let html = std::fs::read_to_string(&page).expect("compare.html");
    insta::assert_snapshot!(outline(&html));
    let Some(browser) = browser() else { return };
    check_page(
        &browser,
        &page,
        &Expect {
            sort: Some(("compare-ops", 4)),
            filter: Some(("compare-ops", "scheduler")),
            pictures: 1,
            screenshot: Some("compare"),
        },
    );
}

#[test]
fn sweep_index_page() {
    let variant = |folder: &str, concurrency, p50, p99, rps| report_html::SweepVariant {
        folder: folder.to_owned(),
        workload: Some(report_html::VariantWorkload {
            requests: 48,
            concurrency,
            errors: 0,
            p50_ms: p50,
            p99_ms: p99,
            throughput_rps: rps,
        }),
        top_operation: Some("jit_jitted_run_model".to_owned()),
    };
    let html = report_html::render_index(&[
        variant("variant-0", 1, 110.0, 140.0, 8.9),
        variant("variant-1", 4, 160.0, 240.0, 24.5),
        variant("variant-2", 16, 420.0, 900.0, 37.0),
    ]);
    insta::assert_snapshot!(outline(&html));
    let out = tempfile::tempdir().unwrap();
    let page = out.path().join("index.html");
    std::fs::write(&page, &html).unwrap();
    let Some(browser) = browser() else { return };
    check_page(
        &browser,
        &page,
        &Expect {
            sort: Some(("variants", 5)),
            filter: None,
            pictures: 1,
            screenshot: Some("index"),
        },
    );
}

/// A run folder with the small CPU profile and the real py-spy capture of
/// `fixtures/pyspy`: one flamegraph per process, and a click on a box
/// zooms into it.
#[test]
fn report_with_py_spy_flamegraphs() {
    let run = tempfile::tempdir().unwrap();
    let traces = run
        .path()
        .join("artifacts/jax-profile/plugins/profile/2026_11_23_14_34_24");
    std::fs::create_dir_all(&traces).unwrap();
    std::fs::copy(
        repo().join("fixtures/jax-cpu-small/plugins/profile/2026_11_23_14_34_24/vm.trace.json.gz"),
        traces.join("vm.trace.json.gz"),
    )
    .unwrap();
    std::fs::create_dir_all(run.path().join("artifacts/py-spy")).unwrap();
    std::fs::copy(
        repo().join("fixtures/pyspy/scheduler.raw.txt"),
        run.path().join("artifacts/py-spy/profile.raw.txt"),
    )
    .unwrap();
    std::fs::create_dir_all(run.path().join("inputs")).unwrap();
    let mut meta = session_report::RunMetadata::new();
    meta.pyspy_raw = Some("artifacts/py-spy/profile.raw.txt".to_owned());
    std::fs::write(run.path().join("inputs/run_metadata.json"), meta.to_json()).unwrap();
    xtask(&["report", run.path().to_str().unwrap()]);
    let page = run.path().join("report.html");
    let html = std::fs::read_to_string(&page).unwrap();
    insta::assert_snapshot!(outline(&html));
    let Some(browser) = browser() else { return };
    check_page(
        &browser,
        &page,
        &Expect {
            sort: Some(("pyspy-processes", 3)),
            filter: None,
            pictures: 3,
            screenshot: Some("flamegraph"),
        },
    );
    crate::browser::check_flame_zoom(&browser, &page);
}

/// The checks can fail: a page that fetches an image is caught by its
/// request, and the same page under the reports' policy both by the
/// attempt (Chromium reports it, then blocks it) and by the console error
/// of the refused load.
#[test]
fn the_browser_checks_see_requests_and_errors() {
    let Some(browser) = browser() else { return };
    let out = tempfile::tempdir().unwrap();
    let fetching = out.path().join("fetching.html");
    std::fs::write(
        &fetching,
        "<!DOCTYPE html><title>t</title><img src=\"http://127.0.0.1:9/x.png\">",
    )
    .unwrap();
    let (_, requests) = crate::browser::errors_and_requests(&browser, &fetching);
    assert_eq!(requests, ["http://127.0.0.1:9/x.png"]);
    let guarded = out.path().join("guarded.html");
    std::fs::write(
        &guarded,
        format!(
            "<!DOCTYPE html><meta http-equiv=\"Content-Security-Policy\" content=\"{}\"><title>t</title><img src=\"http://127.0.0.1:9/x.png\">",
            report_html::content_security_policy()
        ),
    )
    .unwrap();
    let (errors, requests) = crate::browser::errors_and_requests(&browser, &guarded);
    assert_eq!(requests, ["http://127.0.0.1:9/x.png"]);
    assert!(
        errors
            .iter()
            .any(|it| it.contains("Content Security Policy")),
        "{errors:?}"
    );
}

/// A device plane of 100,000 ops: the page stays under 10 MB, and sorting
/// and filtering reach the rows that wait in the `<noscript>` block.
#[test]
fn a_hundred_thousand_op_device_table() {
    let html = big_page(100_000);
    assert!(html.len() < 10_000_000, "{} bytes", html.len());
    let out = tempfile::tempdir().unwrap();
    let page = out.path().join("report.html");
    std::fs::write(&page, &html).unwrap();
    let Some(browser) = browser() else { return };
    check_page(
        &browser,
        &page,
        &Expect {
            sort: Some(("device-tpu-0-ops", 4)),
            // Only the last op has this name.
            filter: Some(("device-tpu-0-ops", "fusion.99999")),
            pictures: 1,
            screenshot: None,
        },
    );
}

/// A report whose one device plane has `n` ops, every column filled: the
/// names (their number replaced by the op's index, so that each is
/// unique) and categories of the real two-chip TPU profile's ops, in turn;
/// the last op is `fusion.<n-1>`.
fn big_page(n: usize) -> String {
    use trace_device::{DeviceOp, DevicePlane, IdleAttribution, Peaks, Step};
    let (_out, _, _) = report("fixtures/real-device/vllm-tpu-2026_01_11_21_26_41.trace.json.gz");
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(_out.path().join("summary.json")).unwrap())
            .unwrap();
    let real: Vec<(String, String)> = summary["devices"][0]["ops"]
        .as_array()
        .unwrap()
        .iter()
        .map(|op| {
            let name = op["name"].as_str().unwrap();
            let base = name.rsplit_once('.').map_or(name, |it| it.0);
            (base.to_owned(), op["category"].as_str().unwrap().to_owned())
        })
        .collect();
    let ops: Vec<DeviceOp> = (0..n)
        .map(|idx| {
            let (name, category) = if idx + 1 == n {
                ("fusion", "loop fusion")
            } else {
                let it = &real[idx % real.len()];
                (it.0.as_str(), it.1.as_str())
            };
            // Self time from 1 µs to 1 ms; throughput from 1 GFLOP/s to
            // 500 TFLOP/s and 10 GB/s to 1.6 TB/s, spread evenly on a log
            // scale: below a v6e's peaks, as measured ops are.
            let spread = |k: usize, lo: f64, hi: f64| {
                let at = ((idx * k) % 1000) as f64 / 999.0;
                lo * (hi / lo).powf(at)
            };
            let self_ps = spread(7919, 1e6, 1e9) as i64;
            let count = (idx % 97) as u64 + 1;
            DeviceOp {
                name: format!("{name}.{idx}"),
                long_name: None,
                framework_op: String::new(),
                program_id: Some((idx % 7) as u64),
                category: category.to_owned(),
                count,
                total_ps: if idx % 50 == 0 { self_ps * 3 } else { self_ps },
                self_ps,
                flops: spread(104_729, 1.0, 5e5) * self_ps as f64 / 1e3,
                bytes_accessed: spread(1_299_709, 10.0, 1.6e3) * self_ps as f64 / 1e3,
            }
        })
        .collect();
    let steps: Vec<Step> = (0..1000)
        .map(|idx| Step {
            name: idx.to_string(),
            start_ps: idx * 2_000_000_000,
            duration_ps: 2_000_000_000,
            compute_ps: 1_500_000_000,
            program: Some("jit_jitted_run_model".to_owned()),
        })
        .collect();
    let busy = ops.iter().map(|it| it.self_ps).sum();
    let plane = DevicePlane {
        plane: "/device:TPU:0".to_owned(),
        peaks: Peaks {
            device_type: Some("TPU v6 lite".to_owned()),
            tflops_per_s: Some(918.0),
            hbm_gbytes_per_s: Some(1640.0),
        },
        device_clock: true,
        window_ps: busy * 2,
        busy_ps: busy,
        op_union_ps: busy,
        module_ps: busy,
        duty_active_ps: busy,
        duty_span_ps: busy * 2,
        ops,
        categories: Vec::new(),
        components: Vec::new(),
        modules: Vec::new(),
        steps,
        steps_from_line: true,
        out_of_order: 0,
        idle: IdleAttribution::default(),
    };
    let metadata = session_report::RunMetadata::new();
    let analysis = trace_analysis::Analyzer::new().finish();
    let devices = [plane];
    let input = session_report::ReportInput {
        metadata: &metadata,
        analysis: &analysis,
        source: "synthetic.xplane.pb".to_owned(),
        format: session_report::TraceFormat::XPlane,
        truncation: session_report::Truncation::None,
        planes: vec!["/device:TPU:0".to_owned()],
        files: Vec::new(),
        logdir: ".".to_owned(),
        perfetto_file: "synthetic.xplane.pb".to_owned(),
        full_trace: None,
        top_n: 15,
        pyspy: None,
        devices: &devices,
        step_plots: Vec::new(),
        serving: None,
        serving_plot: None,
    };
    report_html::render_report(&report_html::ReportPage {
        report: &input,
        latencies: None,
        serving_plot: None,
        flamegraphs: &[],
    })
}
