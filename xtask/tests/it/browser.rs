//! The report pages in a real browser: Debian's Chromium, headless, driven
//! over the DevTools protocol. [`check_page`] opens a page from `file://`
//! and checks what a reader relies on: no console error and no network
//! request; a click on a column header sorts the table and the filter
//! narrows it; every picture renders (its screenshot is not blank); and,
//! with JavaScript disabled, every table shows all of its rows.
//!
//! Without Chromium the tests that need it fail under CI (`CI=true`) and,
//! on a developer machine, say so in one line and check nothing else.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use headless_chrome::protocol::cdp::types::Event;
use headless_chrome::protocol::cdp::{Emulation, Network, Page};
use headless_chrome::{Browser, LaunchOptions, Tab};

/// Where Chromium is: `SGLPROF_CHROMIUM`, else the first `chromium` or
/// `chromium-browser` on `PATH`.
fn chromium() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("SGLPROF_CHROMIUM") {
        return Some(PathBuf::from(path));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| ["chromium", "chromium-browser"].map(|name| dir.join(name)))
        .find(|it| it.is_file())
}

/// A headless Chromium, or `None` (with one line on stderr) on a developer
/// machine without one. Under CI a missing browser fails the test.
pub(crate) fn browser() -> Option<Browser> {
    let Some(path) = chromium() else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "no Chromium: install Debian's chromium package (.ci/run does) or set SGLPROF_CHROMIUM"
        );
        eprintln!(
            "warning: browser checks skipped: no Chromium (apt-get install chromium, or set SGLPROF_CHROMIUM)"
        );
        return None;
    };
    // As root on a machine without network: no sandbox, no GPU, and none of
    // Chromium's own background connections.
    let args: Vec<&std::ffi::OsStr> = [
        "--disable-gpu",
        "--disable-quic",
        "--disable-component-update",
        "--no-default-browser-check",
        "--hide-scrollbars",
    ]
    .iter()
    .map(std::ffi::OsStr::new)
    .collect();
    let options = LaunchOptions::default_builder()
        .path(Some(path))
        .sandbox(false)
        .headless(true)
        .window_size(Some((1280, 1000)))
        .idle_browser_timeout(Duration::from_secs(300))
        .args(args)
        .build()
        .expect("launch options");
    Some(Browser::new(options).expect("Chromium starts"))
}

/// What the page reported while it loaded.
#[derive(Default, Debug)]
struct Seen {
    errors: Vec<String>,
    requests: Vec<String>,
}

fn url(path: &Path) -> String {
    let abs = std::fs::canonicalize(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    format!("file://{}", abs.display())
}

/// A new tab that records console errors, exceptions and requests, with
/// scripts on or off, at `path`.
fn open(browser: &Browser, path: &Path, scripts: bool) -> (Arc<Tab>, Arc<Mutex<Seen>>) {
    let tab = browser.new_tab().expect("a tab");
    tab.set_default_timeout(Duration::from_secs(60));
    let seen = Arc::new(Mutex::new(Seen::default()));
    let record = Arc::clone(&seen);
    let page_url = url(path);
    let own = page_url.clone();
    tab.add_event_listener(Arc::new(move |event: &Event| {
        let mut seen = record.lock().unwrap();
        match event {
            Event::LogEntryAdded(entry) if format!("{:?}", entry.params.entry.level) == "Error" => {
                seen.errors.push(entry.params.entry.text.clone());
            }
            Event::RuntimeConsoleAPICalled(call)
                if format!("{:?}", call.params.Type) == "Error" =>
            {
                seen.errors
                    .push(format!("console.error: {:?}", call.params.args));
            }
            Event::RuntimeExceptionThrown(thrown) => {
                seen.errors
                    .push(format!("exception: {:?}", thrown.params.exception_details));
            }
            Event::NetworkRequestWillBeSent(request) => {
                let target = &request.params.request.url;
                if target != &own {
                    seen.requests.push(target.clone());
                }
            }
            _ => {}
        }
    }))
    .expect("listener");
    tab.enable_log().expect("Log.enable");
    tab.enable_runtime().expect("Runtime.enable");
    let enable: Network::Enable = serde_json::from_value(serde_json::json!({})).unwrap();
    tab.call_method(enable).expect("Network.enable");
    if !scripts {
        tab.call_method(Emulation::SetScriptExecutionDisabled { value: true })
            .expect("scripts off");
    }
    tab.navigate_to(&page_url).expect("navigate");
    // Polled rather than `wait_until_navigated`, which misses a load that
    // ends before `Page.navigate` answers.
    let loaded = (0..600).any(|_| {
        let ready = tab
            .evaluate("document.readyState", false)
            .ok()
            .and_then(|it| it.value);
        let done = ready.as_ref().and_then(|it| it.as_str()) == Some("complete")
            && tab.get_url() == page_url;
        if !done {
            std::thread::sleep(Duration::from_millis(100));
        }
        done
    });
    assert!(loaded, "{page_url} did not load in 60 s");
    (tab, seen)
}

/// What a page did while it loaded and ran for a moment: console errors
/// and requests other than the page itself.
pub(crate) fn errors_and_requests(browser: &Browser, path: &Path) -> (Vec<String>, Vec<String>) {
    let (_tab, seen) = open(browser, path, true);
    std::thread::sleep(Duration::from_millis(500));
    let seen = seen.lock().unwrap();
    (seen.errors.clone(), seen.requests.clone())
}

/// The value of `expression`, evaluated in the page, as JSON.
fn eval(tab: &Tab, expression: &str) -> serde_json::Value {
    let res = tab.evaluate(expression, false).expect("evaluate");
    res.value
        .unwrap_or_else(|| panic!("{expression}: no value ({:?})", res.description))
}

/// The texts of column `col` (from 1) of the rows the table shows.
fn column(tab: &Tab, table: &str, col: usize) -> Vec<String> {
    let js = format!(
        "JSON.stringify(Array.from(document.querySelectorAll('#{table} table.data:not(.rest) tbody tr')).map(r => r.cells[{}].textContent))",
        col - 1
    );
    serde_json::from_str(eval(tab, &js).as_str().unwrap()).unwrap()
}

fn number(text: &str) -> f64 {
    let t: String = text
        .chars()
        .filter(|c| !matches!(c, ',' | '%' | '$' | ' '))
        .collect();
    t.parse().unwrap_or(f64::NEG_INFINITY)
}

/// Sorting: a click on the header of column `col` (numeric) puts the
/// largest value first, a second click the smallest.
fn check_sort(tab: &Tab, table: &str, col: usize) {
    let header = format!("#{table} table.data:not(.rest) thead th:nth-child({col})");
    tab.find_element(&header).unwrap().click().unwrap();
    let values: Vec<f64> = column(tab, table, col)
        .iter()
        .map(|it| number(it))
        .collect();
    assert!(
        values.windows(2).all(|w| w[0] >= w[1]),
        "{table} column {col} after one click: {values:?}"
    );
    let all = eval(
        tab,
        &format!("document.querySelector('{header}').getAttribute('aria-sort')"),
    );
    assert_eq!(all, "descending");
    tab.find_element(&header).unwrap().click().unwrap();
    let values: Vec<f64> = column(tab, table, col)
        .iter()
        .map(|it| number(it))
        .collect();
    assert!(
        values.windows(2).all(|w| w[0] <= w[1]),
        "{table} column {col} after two clicks: {values:?}"
    );
}

/// Filtering: typing `query` leaves only rows that contain it, fewer than
/// before; clearing it shows the first rows again.
fn check_filter(tab: &Tab, table: &str, query: &str) {
    let status = |tab: &Tab| {
        eval(
            tab,
            &format!("document.querySelector('#{table} .status').textContent"),
        )
        .as_str()
        .unwrap()
        .to_owned()
    };
    let before = status(tab);
    let input = tab
        .find_element(&format!("#{table} input[type=search]"))
        .unwrap();
    input.click().unwrap();
    tab.type_str(query).unwrap();
    let rows = eval(
        tab,
        &format!(
            "JSON.stringify(Array.from(document.querySelectorAll('#{table} table.data:not(.rest) tbody tr')).map(r => r.textContent.toLowerCase()))"
        ),
    );
    let rows: Vec<String> = serde_json::from_str(rows.as_str().unwrap()).unwrap();
    assert!(!rows.is_empty(), "{table}: no row matches {query:?}");
    assert!(
        rows.iter().all(|it| it.contains(&query.to_lowercase())),
        "{table} filtered by {query:?}: {rows:?}"
    );
    let after = status(tab);
    assert_ne!(before, after, "{table}: the filter changed nothing");
    assert!(after.contains("matching"), "{after}");
}

/// A screenshot of every picture of the page, each with some pixels that
/// are neither white nor near-white and at least two colours.
fn check_pictures(tab: &Tab) -> usize {
    let n = eval(tab, "document.querySelectorAll('svg.plot').length")
        .as_u64()
        .unwrap() as usize;
    for idx in 0..n {
        let rect = eval(
            tab,
            &format!(
                "(() => {{ const e = document.querySelectorAll('svg.plot')[{idx}]; e.scrollIntoView(); const r = e.getBoundingClientRect(); return JSON.stringify([r.x + scrollX, r.y + scrollY, r.width, r.height, e.getAttribute('class')]); }})()"
            ),
        );
        let (x, y, w, h, class): (f64, f64, f64, f64, String) =
            serde_json::from_str(rect.as_str().unwrap()).unwrap();
        assert!(w > 10.0 && h > 10.0, "{class}: {w}x{h}");
        let shot = tab
            .capture_screenshot(
                Page::CaptureScreenshotFormatOption::Png,
                None,
                Some(Page::Viewport {
                    x,
                    y,
                    width: w,
                    height: h,
                    scale: 1.0,
                }),
                true,
            )
            .expect("screenshot");
        let (inked, colours) = ink(&shot);
        assert!(
            inked > 0.005 && colours >= 2,
            "picture {idx} ({class}) looks blank: {:.2}% inked, {colours} colours",
            inked * 100.0
        );
    }
    n
}

/// The share of pixels of a PNG that are not near-white, and how many
/// distinct colours (counted up to 16) they have.
fn ink(png_bytes: &[u8]) -> (f64, usize) {
    let mut decoder = png::Decoder::new(std::io::Cursor::new(png_bytes));
    decoder.set_transformations(png::Transformations::normalize_to_color8());
    let mut reader = decoder.read_info().expect("a PNG");
    let mut buf = vec![0; reader.output_buffer_size().expect("size")];
    let info = reader.next_frame(&mut buf).expect("a frame");
    let channels = info.color_type.samples();
    let pixels = buf[..info.buffer_size()].chunks(channels);
    let (mut total, mut inked) = (0u64, 0u64);
    let mut colours: Vec<[u8; 3]> = Vec::new();
    for px in pixels {
        total += 1;
        let rgb = [px[0], px[1], px[2 % channels]];
        if rgb.iter().any(|c| *c < 235) {
            inked += 1;
            if colours.len() < 16 && !colours.contains(&rgb) {
                colours.push(rgb);
            }
        }
    }
    (inked as f64 / total.max(1) as f64, colours.len())
}

/// With scripts off: every table shows each of its rows (the first ones in
/// the table, the rest from its `<noscript>` block), and every picture is
/// in the page. Read through the DOM domain, which needs no page script.
fn check_without_scripts(browser: &Browser, path: &Path) {
    let (tab, seen) = open(browser, path, false);
    // Evaluated by the DevTools protocol, which runs even with the page's
    // scripts off: per table, its id, its rows, the rows in the page, and
    // whether its tools (which need the script) are displayed.
    let tables = eval(
        &tab,
        "JSON.stringify(Array.from(document.querySelectorAll('div.table')).map(t => [t.id, Number(t.dataset.rows), t.querySelectorAll('tbody tr').length, !!t.querySelector('.tools') && getComputedStyle(t.querySelector('.tools')).display !== 'none']))",
    );
    let tables: Vec<(String, usize, usize, bool)> =
        serde_json::from_str(tables.as_str().unwrap()).unwrap();
    assert!(!tables.is_empty(), "{}: no table", path.display());
    assert_eq!(
        eval(&tab, "document.documentElement.classList.contains('js')"),
        false,
        "the page's script ran"
    );
    for (id, rows, shown, tools) in tables {
        assert_eq!(shown, rows, "{id} without scripts");
        assert!(!tools, "{id}: its tools are shown without scripts");
    }
    let pictures = eval(&tab, "document.querySelectorAll('svg.plot').length");
    assert_eq!(
        pictures,
        eval(&tab, "document.querySelectorAll('svg').length")
    );
    let seen = seen.lock().unwrap();
    assert!(seen.requests.is_empty(), "requests: {:?}", seen.requests);
}

/// Zoom: a click on a flamegraph box below the root widens it to the
/// whole picture, boxes outside it are hidden, and "Reset zoom" restores
/// the widths.
pub(crate) fn check_flame_zoom(browser: &Browser, path: &Path) {
    let (tab, _) = open(browser, path, true);
    // The shallowest box narrower than the picture but wide enough to
    // click (the widest of them); its index among the first graph's boxes.
    let target = eval(
        &tab,
        "(() => { const gs = Array.from(document.querySelector('div.flame svg').querySelectorAll('g[data-w]')); let best = -1, depth = Infinity, w = 0; gs.forEach((g, i) => { const px = Number(g.querySelector('rect').getAttribute('width')); const d = Number(g.dataset.d); if (px > 60 && px < 1190 && (d < depth || (d === depth && px > w))) { best = i; depth = d; w = px; } }); return best; })()",
    );
    let target = target.as_i64().expect("a box to zoom into");
    assert!(target >= 0, "no box narrower than the picture");
    let rect = |what: &str| {
        let js = format!(
            "(() => {{ const gs = Array.from(document.querySelector('div.flame svg').querySelectorAll('g[data-w]')); const g = gs[{target}]; {what} }})()"
        );
        eval(&tab, &js)
    };
    let before = rect("return Number(g.querySelector('rect').getAttribute('width'));");
    let point = rect(
        "g.scrollIntoView(); const r = g.querySelector('rect').getBoundingClientRect(); return JSON.stringify([r.x + 2, r.y + r.height / 2]);",
    );
    let (x, y): (f64, f64) = serde_json::from_str(point.as_str().unwrap()).unwrap();
    tab.click_point(headless_chrome::browser::tab::point::Point { x, y })
        .expect("click");
    let after = rect("return Number(g.querySelector('rect').getAttribute('width'));");
    assert!(
        before.as_f64().unwrap() < 1190.0 && after.as_f64().unwrap() > 1199.0,
        "box width {before} before the click, {after} after"
    );
    let hidden = eval(
        &tab,
        "Array.from(document.querySelector('div.flame svg').querySelectorAll('g[data-w]')).filter(g => g.style.display === 'none').length",
    );
    assert!(
        hidden.as_u64().unwrap() > 0,
        "no box was hidden by the zoom"
    );
    tab.find_element("div.flame button.reset")
        .expect("a reset button")
        .click()
        .expect("reset");
    let reset = rect("return Number(g.querySelector('rect').getAttribute('width'));");
    assert!((reset.as_f64().unwrap() - before.as_f64().unwrap()).abs() < 0.05);
}

/// What [`check_page`] exercises on a page.
pub(crate) struct Expect<'a> {
    /// A table with a numeric column to sort: (table id, column from 1).
    pub sort: Option<(&'a str, usize)>,
    /// A table to filter and a word some but not all of its rows hold.
    pub filter: Option<(&'a str, &'a str)>,
    /// At least this many pictures.
    pub pictures: usize,
    /// Where to save a screenshot of the top of the page for docs/, when
    /// `SGLPROF_UPDATE_SCREENSHOTS` is set.
    pub screenshot: Option<&'a str>,
}

/// Every check of this module on the page at `path`.
pub(crate) fn check_page(browser: &Browser, path: &Path, expect: &Expect<'_>) {
    let started = std::time::Instant::now();
    let (tab, seen) = open(browser, path, true);
    let load_ms = eval(
        &tab,
        "performance.getEntriesByType('navigation')[0].loadEventEnd",
    );
    eprintln!(
        "{}: loaded in {load_ms} ms ({} ms with the tab)",
        path.display(),
        started.elapsed().as_millis()
    );
    let scripted = eval(&tab, "document.documentElement.classList.contains('js')");
    assert_eq!(scripted, true, "the page's scripts did not run");
    let pictures = check_pictures(&tab);
    assert!(
        pictures >= expect.pictures,
        "{pictures} pictures, expected {}",
        expect.pictures
    );
    eprintln!("pictures checked at {} ms", started.elapsed().as_millis());
    if let Some((table, col)) = expect.sort {
        check_sort(&tab, table, col);
    }
    eprintln!("sorted at {} ms", started.elapsed().as_millis());
    if let Some((table, query)) = expect.filter {
        check_filter(&tab, table, query);
    }
    eprintln!("filtered at {} ms", started.elapsed().as_millis());
    if let Some(name) = expect.screenshot
        && std::env::var_os("SGLPROF_UPDATE_SCREENSHOTS").is_some()
    {
        save_screenshot(browser, path, name);
    }
    {
        let seen = seen.lock().unwrap();
        assert!(seen.errors.is_empty(), "console errors: {:?}", seen.errors);
        assert!(seen.requests.is_empty(), "requests: {:?}", seen.requests);
    }
    check_without_scripts(browser, path);
}

/// The top of the page, at half size, as `docs/screenshots/<name>.png`.
fn save_screenshot(browser: &Browser, path: &Path, name: &str) {
    let (tab, _) = open(browser, path, true);
    // A viewport as tall as the picture, so that all of it is painted.
    let metrics: Emulation::SetDeviceMetricsOverride = serde_json::from_value(serde_json::json!({
        "width": 1280, "height": 2400, "deviceScaleFactor": 1, "mobile": false
    }))
    .unwrap();
    tab.call_method(metrics).expect("viewport");
    let shot = tab
        .capture_screenshot(
            Page::CaptureScreenshotFormatOption::Png,
            None,
            Some(Page::Viewport {
                x: 0.0,
                y: 0.0,
                width: 1280.0,
                height: 2400.0,
                scale: 0.5,
            }),
            true,
        )
        .expect("screenshot");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(format!("{name}.png")), shot).unwrap();
}
