//! Number and Markdown formatting shared by the report sections.

/// Milliseconds with two decimals and thousands separators: `2,923.78`.
/// Rounds the exact picosecond count half away from zero, so no float
/// error can flip the last digit.
pub fn ms(ps: i128) -> String {
    const PS_PER_HUNDREDTH: u128 = 10_000_000;
    let abs = ps.unsigned_abs();
    // In u64 when it fits: a u128 division is many times slower, and a
    // report formats thousands of these.
    let hundredths = match u64::try_from(abs)
        .ok()
        .and_then(|it| it.checked_add(PS_PER_HUNDREDTH as u64 / 2))
    {
        Some(rounded) => u128::from(rounded / PS_PER_HUNDREDTH as u64),
        None => (abs + PS_PER_HUNDREDTH / 2) / PS_PER_HUNDREDTH,
    };
    let mut res = String::with_capacity(24);
    if ps < 0 && hundredths > 0 {
        res.push('-');
    }
    push_grouped(&mut res, hundredths / 100);
    let cents = (hundredths % 100) as u8;
    res.push('.');
    res.push(char::from(b'0' + cents / 10));
    res.push(char::from(b'0' + cents % 10));
    res
}

/// A count with thousands separators: `2,848`.
pub fn count(n: u64) -> String {
    let mut res = String::with_capacity(26);
    push_grouped(&mut res, u128::from(n));
    res
}

/// Appends `n` with thousands separators.
fn push_grouped(out: &mut String, n: u128) {
    push_grouped_digits(out, itoa::Buffer::new().format(n));
}

/// Appends the digits `int` with thousands separators.
fn push_grouped_digits(out: &mut String, int: &str) {
    for (idx, ch) in int.chars().enumerate() {
        if idx > 0 && (int.len() - idx).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
}

/// `value` with `decimals` decimals and thousands separators.
pub fn fixed(value: f64, decimals: usize) -> String {
    let text = format!("{:.*}", decimals, value);
    let (sign, digits) = match text.strip_prefix('-') {
        Some(rest) => ("-", rest),
        None => ("", text.as_str()),
    };
    let (int, frac) = match digits.split_once('.') {
        Some((int, frac)) => (int, Some(frac)),
        None => (digits, None),
    };
    // "-0.00" reads oddly in a table; show zero without a sign.
    let sign =
        if int.bytes().all(|b| b == b'0') && frac.is_none_or(|f| f.bytes().all(|b| b == b'0')) {
            ""
        } else {
            sign
        };
    match frac {
        Some(frac) => format!("{sign}{}.{frac}", group(int)),
        None => format!("{sign}{}", group(int)),
    }
}

/// `part` as a share of `whole` with one decimal and a `%` (`38.1%`),
/// `n/a` when `whole` is not positive.
pub fn percent(part: i64, whole: i64) -> String {
    if whole > 0 {
        format!("{}%", fixed(part as f64 * 100.0 / whole as f64, 1))
    } else {
        "n/a".to_owned()
    }
}

/// A workload's row of the Workload Latency table: requests, concurrency,
/// errors, mean, p50, p90, p99 and max latency (ms), throughput (req/s).
pub fn workload_cells(part: &crate::WorkloadSummary) -> [String; 9] {
    [
        count(part.requests),
        count(part.concurrency),
        count(part.errors),
        fixed(part.latency_ms.mean, 2),
        fixed(part.latency_ms.p50, 2),
        fixed(part.latency_ms.p90, 2),
        fixed(part.latency_ms.p99, 2),
        fixed(part.latency_ms.max, 2),
        fixed(part.throughput_rps, 2),
    ]
}

fn group(int: &str) -> String {
    let mut res = String::with_capacity(int.len() + int.len() / 3);
    push_grouped_digits(&mut res, int);
    res
}

/// Bytes as the seed shows file sizes: `4.9 MB`, `87 KB`, `512 B`
/// (decimal units).
pub fn bytes(n: u64) -> String {
    const UNITS: [(&str, f64); 3] = [("GB", 1e9), ("MB", 1e6), ("KB", 1e3)];
    for (unit, size) in UNITS {
        if n as f64 >= size {
            let value = n as f64 / size;
            return if value >= 100.0 {
                format!("{value:.0} {unit}")
            } else {
                format!("{value:.1} {unit}")
            };
        }
    }
    format!("{n} B")
}

/// Escapes text from a trace (an operation or file name) for a Markdown
/// table cell, so that it shows as written: no HTML (`<unknown>`), link,
/// emphasis, code span, entity or column break, and one line. An `_`
/// between two letters or digits cannot start emphasis and is left alone,
/// so `jit_generate` stays readable in the raw Markdown.
pub fn cell(text: &str) -> String {
    // A name beyond a few kilobytes is shown shortened, with its length
    // and hash (`trace_model::shown_name`).
    let text = trace_model::shown_name(text);
    let chars: Vec<char> = text.chars().collect();
    let mut res = String::with_capacity(text.len());
    for (idx, &c) in chars.iter().enumerate() {
        match c {
            '\\' | '|' | '<' | '>' | '[' | ']' | '*' | '`' | '~' | '&' => {
                res.push('\\');
                res.push(c);
            }
            '_' => {
                let word = |at: Option<&char>| at.is_some_and(|it| it.is_alphanumeric());
                let inner = idx > 0 && word(chars.get(idx - 1)) && word(chars.get(idx + 1));
                if !inner {
                    res.push('\\');
                }
                res.push('_');
            }
            c if c.is_control() => res.push(' '),
            c => res.push(c),
        }
    }
    res
}

/// Inline code that shows `text` as written: the fence is one backtick
/// longer than the longest run of backticks inside, and line breaks become
/// spaces (a code span cannot hold them).
pub fn code(text: &str) -> String {
    let text: String = trace_model::shown_name(text)
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let mut longest = 0;
    let mut run = 0;
    for c in text.chars() {
        run = if c == '`' { run + 1 } else { 0 };
        longest = longest.max(run);
    }
    if longest == 0 {
        return format!("`{text}`");
    }
    let fence = "`".repeat(longest + 1);
    format!("{fence} {text} {fence}")
}

/// [`code`] inside a table cell: a `|` would end the cell even in code.
pub fn code_cell(text: &str) -> String {
    code(text).replace('|', "\\|")
}

/// `text` as one word of a POSIX shell command line (bash for control
/// characters): unchanged when it holds only safe characters, else quoted
/// so that nothing in it is expanded, split or run, and no line of it can
/// end the Markdown code block it is shown in.
pub fn shell_word(text: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || "_-./:@%+=,".contains(c);
    if !text.is_empty() && text.chars().all(safe) {
        return text.to_owned();
    }
    if text.chars().any(char::is_control) {
        let mut res = String::from("$'");
        for c in text.chars() {
            match c {
                '\\' => res.push_str("\\\\"),
                '\'' => res.push_str("\\'"),
                c if u32::from(c) < 0x80 && c.is_control() => {
                    res.push_str(&format!("\\x{:02x}", u32::from(c)));
                }
                c if c.is_control() => res.push_str(&format!("\\u{:04x}", u32::from(c))),
                c => res.push(c),
            }
        }
        res.push('\'');
        return res;
    }
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// A GitHub-flavoured Markdown table.
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(header: &[&str]) -> Table {
        Table {
            header: header.iter().map(|it| it.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn render(&self, out: &mut String) {
        let line = |cells: &[String]| format!("| {} |\n", cells.join(" | "));
        out.push_str(&line(&self.header));
        let rule: Vec<String> = self
            .header
            .iter()
            .map(|it| "-".repeat(it.chars().count().max(3)))
            .collect();
        out.push_str(&format!("|{}|\n", rule.join("|")));
        for row in &self.rows {
            out.push_str(&line(row));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        assert_eq!(ms(2_923_780_000_000), "2,923.78");
        assert_eq!(ms(1_254_455_000_000), "1,254.46");
        assert_eq!(ms(0), "0.00");
        assert_eq!(ms(-1), "0.00");
        assert_eq!(ms(-15_000_000), "-0.02");
        assert_eq!(ms(-4_999_999), "0.00");
        assert_eq!(ms(1_000_000_000_000_000), "1,000,000.00");
        // Beyond u64: the u128 path, rounded the same way.
        assert_eq!(ms(i128::from(u64::MAX) * 10), "184,467,440,737.10");
        assert_eq!(ms(-i128::from(u64::MAX) * 10), "-184,467,440,737.10");
        assert_eq!(count(0), "0");
        assert_eq!(count(999), "999");
        assert_eq!(count(1000), "1,000");
        assert_eq!(count(u64::MAX), "18,446,744,073,709,551,615");
        assert_eq!(count(2848), "2,848");
        assert_eq!(count(283_235), "283,235");
        assert_eq!(count(7), "7");
        assert_eq!(fixed(-1234.5, 1), "-1,234.5");
        assert_eq!(bytes(4_900_000), "4.9 MB");
        assert_eq!(bytes(187_000_000), "187 MB");
        assert_eq!(bytes(512), "512 B");
        assert_eq!(cell("a|b"), "a\\|b");
    }

    #[test]
    fn names_are_shown_as_written() {
        assert_eq!(cell("jit_jitted_run_model"), "jit_jitted_run_model");
        assert_eq!(cell("<unknown> acquire"), "\\<unknown\\> acquire");
        assert_eq!(
            cell("__init__ [x](javascript:1) *b* `c` &amp;\nnext"),
            "\\_\\_init\\_\\_ \\[x\\](javascript:1) \\*b\\* \\`c\\` \\&amp; next"
        );
        assert_eq!(code("a`b"), "`` a`b ``");
        assert_eq!(code("a``b\nc"), "``` a``b c ```");
        assert_eq!(code_cell("x|y"), "`x\\|y`");
    }
}
