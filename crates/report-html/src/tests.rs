//! The sweep index page, built from plain data: the table, the links to
//! each variant's report and the load-latency curve; and names from a
//! trace never become markup.

use crate::{SweepVariant, VariantWorkload, render_index};

fn variant(folder: &str, concurrency: u64, p50: f64, p99: f64, rps: f64) -> SweepVariant {
    SweepVariant {
        folder: folder.to_owned(),
        workload: Some(VariantWorkload {
            requests: 12,
            concurrency,
            errors: 0,
            p50_ms: p50,
            p99_ms: p99,
            throughput_rps: rps,
        }),
        top_operation: Some("<script>alert(1)</script>".to_owned()),
    }
}

#[test]
fn index_has_a_row_and_a_curve_point_per_variant() {
    let page = render_index(&[
        variant("variant-1", 4, 30.0, 55.5, 120.25),
        variant("variant-0", 1, 10.0, 12.0, 90.5),
    ]);
    assert!(page.starts_with("<!DOCTYPE html>"));
    assert!(page.contains(r#"<a href="variant-0/report.html">variant-0</a>"#));
    assert!(page.contains("<tr><td>variant-1<td>12<td>4<td>0<td>30.0<td>55.5<td>120.25<td>"));
    assert!(page.contains(r#"class="plot load-latency""#));
    // Two series (p50, p99) of two points each, in order of concurrency.
    assert_eq!(page.matches("<circle").count(), 4);
    assert!(
        page.find("variant-0: concurrency 1").unwrap()
            < page.find("variant-1: concurrency 4").unwrap()
    );
    assert!(!page.contains("<script>alert"));
    assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
}

#[test]
fn one_measured_variant_has_no_curve() {
    let mut lone = variant("variant-0", 1, 10.0, 12.0, 90.5);
    let page = render_index(std::slice::from_ref(&lone));
    assert!(!page.contains("load-latency"));
    lone.workload = None;
    let page = render_index(&[lone]);
    assert!(page.contains("<tr><td>variant-0<td><td><td><td><td><td><td>"));
}

/// The page's Serving Metrics show the cells `report.md` shows, from the
/// same `ServingReport`, and its pictures from the report's points.
#[test]
fn serving_section_shows_the_markdowns_cells() {
    let dist = |median: f64| session_report::Distribution {
        count: 2,
        mean: median,
        std: 0.5,
        median,
        min: median - 1.0,
        max: median + 1.0,
        percentiles: vec![(90.0, median + 0.4), (99.0, median + 0.49)],
    };
    let point = |id: u64, ttft: f64, e2e: f64| session_report::RequestPoint {
        id,
        start_s: id as f64 * 0.1,
        ttft_ms: Some(ttft),
        e2e_ms: Some(e2e),
        ok: true,
    };
    let report = session_report::ServingReport {
        load: session_report::ServingMetadata {
            percentiles: vec![90.0, 99.0],
            stream: true,
            ..session_report::ServingMetadata::default()
        },
        requests: 2,
        completed: 2,
        ttft_ms: Some(dist(120.0)),
        e2e_ms: Some(dist(450.0)),
        cache_hit_rate: Some(0.25),
        points: vec![point(0, 119.5, 449.0), point(1, 120.5, 451.0)],
        ..session_report::ServingReport::default()
    };
    let markdown = {
        let mut out = String::new();
        session_report::render_serving(&report, None, &mut out);
        out
    };
    let html = maud::Markup::into_string(crate::serving::serving_section(&report, None));
    for cell in ["120.49", "450.49", "25.0 %", "Successful requests"] {
        assert!(markdown.contains(cell), "{cell} not in the Markdown");
        assert!(html.contains(cell), "{cell} not in the page");
    }
    assert!(html.contains(r#"class="plot latency""#), "{html}");
    assert!(html.contains("histogram"), "{html}");
}
