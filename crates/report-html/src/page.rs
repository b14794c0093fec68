//! What every page shares: the document around the content (its Content
//! Security Policy, inline style and scripts), the data table with its
//! tools, figures, and inline Markdown of constant text.

use base64::Engine as _;
use maud::{DOCTYPE, Escaper, Markup, PreEscaped, Render, html};
use sha2::{Digest, Sha256};
use std::fmt::Write as _;

const CSS: &str = include_str!("assets/page.css");
/// Runs first, in the head: marks the document as scripted, so that the
/// style can hide the rows the table script pages in, before layout.
const EARLY_JS: &str = include_str!("assets/early.js");
const JS: &str = include_str!("assets/page.js");

/// Rows of a table shown before the reader asks for more.
pub const FIRST_ROWS: usize = 25;

fn sha256_source(script: &str) -> String {
    let digest = Sha256::digest(script.as_bytes());
    format!(
        "'sha256-{}'",
        base64::engine::general_purpose::STANDARD.encode(digest)
    )
}

/// The page's Content Security Policy: nothing is fetched (no script,
/// style, image, font, frame or connection from anywhere, the page's own
/// folder included); only the inline style and the two inline scripts,
/// by hash, run.
pub fn content_security_policy() -> String {
    format!(
        "default-src 'none'; style-src 'unsafe-inline'; script-src {} {}; base-uri 'none'; form-action 'none'",
        sha256_source(EARLY_JS),
        sha256_source(JS)
    )
}

/// A whole page: `title`, a header band (`header`), a table of contents
/// (`toc`: anchor and label) and the content.
pub fn document(title: &str, header: Markup, toc: &[(&str, &str)], content: Markup) -> String {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta http-equiv="Content-Security-Policy" content=(content_security_policy());
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="generator" content="sglprof";
                title { (title) }
                style { (PreEscaped(CSS)) }
                script { (PreEscaped(EARLY_JS)) }
            }
            body {
                header.page {
                    (header)
                    @if !toc.is_empty() {
                        nav.toc {
                            @for (anchor, label) in toc {
                                a href={ "#" (anchor) } { (label) }
                            }
                        }
                    }
                }
                main { (content) }
                script { (PreEscaped(JS)) }
            }
        }
    }
    .into_string()
}

/// How a column's cells align.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Align {
    Left,
    /// Numbers: right-aligned.
    Right,
    /// Names shown as code.
    Code,
}

/// A table with every row: the first [`FIRST_ROWS`] in the page, the rest
/// in a `<noscript>` table right below (shown as is without JavaScript;
/// with it, read on demand by the table script, which sorts, filters and
/// pages all of them).
pub struct DataTable<'a> {
    pub id: &'a str,
    pub columns: &'a [(&'a str, Align)],
    pub rows: Vec<Vec<String>>,
}

/// Rows as HTML with the optional end tags left out (`<tr><td>a<td>b`),
/// which keeps a 100,000-row table small; every cell is escaped.
struct Rows<'a>(&'a [Vec<String>]);

impl Render for Rows<'_> {
    fn render_to(&self, buffer: &mut String) {
        for row in self.0 {
            buffer.push_str("<tr>");
            for cell in row {
                buffer.push_str("<td>");
                let _ = Escaper::new(buffer).write_str(cell);
            }
        }
    }
}

impl Render for DataTable<'_> {
    fn render_to(&self, buffer: &mut String) {
        let first = self.rows.len().min(FIRST_ROWS);
        let head = html! {
            thead { tr { @for (name, _) in self.columns { th scope="col" { (name) } } } }
        };
        let mut style = String::new();
        for (idx, (_, align)) in self.columns.iter().enumerate() {
            let rule = match align {
                Align::Left => continue,
                Align::Right => "text-align:right;white-space:nowrap",
                Align::Code => "font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12.5px",
            };
            let _ = write!(style, "#{} td:nth-child({}){{{rule}}}", self.id, idx + 1);
        }
        let markup = html! {
            div.table #(self.id) data-rows=(self.rows.len()) data-limit=(FIRST_ROWS) {
                @if !style.is_empty() { style { (PreEscaped(&style)) } }
                @if self.rows.len() > 10 {
                    div.tools {
                        input type="search" placeholder={ "Filter " (self.rows.len()) " rows" } aria-label="Filter rows";
                        span.status {}
                        button.more type="button" hidden { "Show more" }
                        button.all type="button" hidden { "Show all" }
                    }
                }
                table.data {
                    (head)
                    tbody { (Rows(&self.rows[..first])) }
                }
                @if self.rows.len() > first {
                    noscript {
                        table.data.rest {
                            (head)
                            tbody { (Rows(&self.rows[first..])) }
                        }
                    }
                }
            }
        };
        markup.render_to(buffer);
    }
}

/// A picture with a caption; `svg` is inlined as it is.
pub fn figure(svg: &str, caption: Option<&str>) -> Markup {
    html! {
        div.figure {
            (PreEscaped(svg))
            @if let Some(caption) = caption { div.caption { (caption) } }
        }
    }
}

/// A key-value table of a few rows.
pub fn facts(rows: &[(&str, String)]) -> Markup {
    html! {
        table.meta {
            @for (key, value) in rows { tr { th scope="row" { (key) } td { (value) } } }
        }
    }
}

/// One headline number.
pub fn card(value: &str, key: &str) -> Markup {
    html! { div.card { div.v { (value) } div.k { (key) } } }
}

/// Constant text with `**strong**` and `` `code` `` marks, as the
/// definitions of the Markdown report are written.
pub fn inline_md(text: &str) -> Markup {
    let mut out = String::new();
    let (mut strong, mut code) = (false, false);
    let mut rest = text;
    while !rest.is_empty() {
        if !code && rest.starts_with("**") {
            out.push_str(if strong { "</strong>" } else { "<strong>" });
            strong = !strong;
            rest = &rest[2..];
        } else if rest.starts_with('`') {
            out.push_str(if code { "</code>" } else { "<code>" });
            code = !code;
            rest = &rest[1..];
        } else {
            let end = rest
                .char_indices()
                .skip(1)
                .find(|(_, c)| *c == '`' || *c == '*')
                .map_or(rest.len(), |(idx, _)| idx);
            let _ = Escaper::new(&mut out).write_str(&rest[..end]);
            rest = &rest[end..];
        }
    }
    if code {
        out.push_str("</code>");
    }
    if strong {
        out.push_str("</strong>");
    }
    PreEscaped(out)
}

/// A block of shell lines with a button that copies them.
pub fn copy_block(id: &str, text: &str) -> Markup {
    html! {
        div.repro {
            pre #(id) { (text) }
            button.copy.js-only type="button" data-copy=(id) { "Copy" }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_marks_and_escapes() {
        assert_eq!(
            inline_md("**Self**: a `b<c>` and *x").into_string(),
            "<strong>Self</strong>: a <code>b&lt;c&gt;</code> and *x"
        );
    }

    #[test]
    fn rows_leave_out_end_tags_and_escape() {
        let mut out = String::new();
        Rows(&[vec!["<a>".to_owned(), "1,234".to_owned()]]).render_to(&mut out);
        assert_eq!(out, "<tr><td>&lt;a&gt;<td>1,234");
    }

    #[test]
    fn the_policy_names_both_scripts() {
        let csp = content_security_policy();
        assert!(csp.starts_with("default-src 'none';"));
        assert_eq!(csp.matches("'sha256-").count(), 2);
    }
}
