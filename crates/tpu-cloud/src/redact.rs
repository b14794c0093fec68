//! The one redaction rule for anything shown or kept: commands, scripts,
//! transcripts, server logs, plans and reports.
//!
//! [`url`] masks what a URL may carry as a secret: the user information of
//! its authority, whatever its characters (`https://user:p'w@host` becomes
//! `https://<redacted>@host`), and every value of its query and fragment
//! (`?access_token=T` becomes `?access_token=<redacted>`). [`redact`] does
//! the same to every URL inside a text, and masks the value after
//! `--api-key` (`--api-key K`, `--api-key=K`) and `api_key=K` /
//! `api_key='K'` / `"api_key": "K"` as sglang-jax logs its server
//! arguments. [`redact_with`] also hides given values wherever they appear
//! (a key the user passed, in any form). A value that [`url`] would change
//! is a secret: it reaches a VM as a file ([`url_has_secret`]).

use std::sync::LazyLock;

use regex::Regex;

/// What replaces a secret.
pub const MASK: &str = "<redacted>";

/// The start of a URL: its scheme and `://`.
static URL_START: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?i)\b[a-z][a-z0-9+.-]*://").expect("a valid pattern"));

static API_KEY_FLAG: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"(--api-key)(=|\s+)('[^']*'|"[^"]*"|[^\s'"]+)"#).expect("a valid pattern")
});

static API_KEY_ASSIGN: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"(?i)(\bapi[_-]?key["']?\s*[=:]\s*)('[^']*'|"[^"]*"|[^\s,)'"]+)"#)
        .expect("a valid pattern")
});

/// `url` with its user information and every query and fragment value
/// masked. The authority ends at the first `/`, `?` or `#` after the
/// scheme, as RFC 3986 and git read it; the user information is all of it
/// up to its last `@`, whatever the characters (quotes, spaces, `:`).
/// Text that is not a URL is returned unchanged.
pub fn url(url: &str) -> String {
    let Some(start) = URL_START.find(url).filter(|it| it.start() == 0) else {
        return url.to_owned();
    };
    let mut out = String::with_capacity(url.len());
    out.push_str(start.as_str());
    let rest = &url[start.end()..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    push_authority(&mut out, &rest[..authority_end]);
    push_tail(&mut out, &rest[authority_end..], &|_| false);
    out
}

/// Whether `url` carries anything [`url`] masks: such a URL is a secret.
pub fn url_has_secret(text: &str) -> bool {
    url(text) != text
}

/// The authority with its user information masked.
fn push_authority(out: &mut String, authority: &str) {
    match authority.rfind('@') {
        Some(at) if at > 0 => {
            out.push_str(MASK);
            out.push_str(&authority[at..]);
        }
        _ => out.push_str(authority),
    }
}

/// The path as it is, then the query and the fragment with each value
/// masked: `name=value` keeps its name, a bare value goes whole. `ends`
/// tells where a URL inside a text stops; the tail is consumed up to the
/// first such character, and the rest pushed unchanged.
fn push_tail(out: &mut String, tail: &str, ends: &dyn Fn(char) -> bool) -> usize {
    let end = tail.find(ends).unwrap_or(tail.len());
    let tail = &tail[..end];
    let path_end = tail.find(['?', '#']).unwrap_or(tail.len());
    out.push_str(&tail[..path_end]);
    let mut rest = &tail[path_end..];
    while let Some(sep) = rest.chars().next() {
        out.push(sep);
        rest = &rest[1..];
        // The fragment runs to the end; the query stops at the fragment.
        let part_end = if sep == '?' {
            rest.find('#').unwrap_or(rest.len())
        } else {
            rest.len()
        };
        let part = &rest[..part_end];
        for (i, param) in part.split('&').enumerate() {
            if i > 0 {
                out.push('&');
            }
            match param.split_once('=') {
                Some((name, value)) if !value.is_empty() => {
                    out.push_str(name);
                    out.push('=');
                    out.push_str(MASK);
                }
                Some((name, _)) => {
                    out.push_str(name);
                    out.push('=');
                }
                None if param.is_empty() => {}
                None => out.push_str(MASK),
            }
        }
        rest = &rest[part_end..];
    }
    end
}

/// Every URL of `text` masked as [`url`] does. Inside a text, the
/// authority still runs to the first `/`, `?`, `#` or white space (so a
/// password with quotes, as a shell-quoted word shows it, is masked whole),
/// and the rest of a URL ends at white space, a quote or an angle bracket.
fn redact_urls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut done = 0;
    for start in URL_START.find_iter(text) {
        if start.start() < done {
            continue;
        }
        out.push_str(&text[done..start.end()]);
        let rest = &text[start.end()..];
        let authority_end = rest
            .find(|c: char| matches!(c, '/' | '?' | '#') || c.is_whitespace())
            .unwrap_or(rest.len());
        push_authority(&mut out, &rest[..authority_end]);
        let ends = |c: char| c.is_whitespace() || matches!(c, '\'' | '"' | '<' | '>' | '`');
        let used = push_tail(&mut out, &rest[authority_end..], &ends);
        done = start.end() + authority_end + used;
    }
    out.push_str(&text[done..]);
    out
}

/// `text` with URL credentials, URL query and fragment values, and API key
/// values masked.
pub fn redact(text: &str) -> String {
    let res = redact_urls(text);
    let res = API_KEY_FLAG.replace_all(&res, |caps: &regex::Captures<'_>| {
        if is_reference(&caps[3]) {
            return caps[0].to_owned();
        }
        format!("{}{}{MASK}", &caps[1], &caps[2])
    });
    let res = API_KEY_ASSIGN.replace_all(&res, |caps: &regex::Captures<'_>| {
        if is_reference(&caps[2]) {
            return caps[0].to_owned();
        }
        format!("{}{MASK}", &caps[1])
    });
    res.into_owned()
}

/// A shell variable (`"$NAME"`, `$(cat file)`) names a secret without
/// holding it; showing it is harmless and helps a reader.
fn is_reference(value: &str) -> bool {
    value
        .trim_matches(|c| c == '"' || c == '\'')
        .starts_with('$')
}

/// [`redact`], and every non-empty value of `secrets` masked wherever it
/// appears.
pub fn redact_with(text: &str, secrets: &[&str]) -> String {
    let mut res = text.to_owned();
    for secret in secrets.iter().filter(|s| s.len() >= 2) {
        res = res.replace(secret, MASK);
    }
    redact(&res)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_credentials() {
        assert_eq!(
            redact("git clone https://bob:ghp_abc123@github.com/o/r.git x"),
            "git clone https://<redacted>@github.com/o/r.git x"
        );
        assert_eq!(
            redact("'https://ghp_abc123@github.com/o/r'"),
            "'https://<redacted>@github.com/o/r'"
        );
        assert_eq!(
            redact("https://github.com/o/r.git"),
            "https://github.com/o/r.git"
        );
        assert!(url_has_secret("https://u:p@h/x"));
        assert!(!url_has_secret("https://h/x@y"));
        assert!(!url_has_secret(
            "https://github.com/sgl-project/sglang-jax.git"
        ));
    }

    /// The hostile probe's cases: a token in the query or the fragment, and
    /// user information with quotes, as a value and inside shell-quoted
    /// text.
    #[test]
    fn queries_fragments_and_any_user_information() {
        let cases = [
            (
                "https://host/o/r.git?access_token=TOK",
                "https://host/o/r.git?access_token=<redacted>",
            ),
            (
                "https://host/o/r.git?a=1&private_token=TOK#frag",
                "https://host/o/r.git?a=<redacted>&private_token=<redacted>#<redacted>",
            ),
            (
                "https://host/r#token=TOK",
                "https://host/r#token=<redacted>",
            ),
            ("https://host/r?TOK", "https://host/r?<redacted>"),
            (
                r#"https://bob:p'a"s$(id)`x`:w@host/o/r.git"#,
                "https://<redacted>@host/o/r.git",
            ),
            ("https://u:p@ss@host/r", "https://<redacted>@host/r"),
            ("https://h/x@y", "https://h/x@y"),
            ("not a url", "not a url"),
        ];
        for (given, want) in cases {
            assert_eq!(url(given), want, "{given}");
            assert!(!url(given).contains("TOK"));
        }
        // In text: shell-quoted (a quote becomes '\''), in parentheses, twice.
        let quoted = crate::script::sh_quote("https://bob:pa'ss@host/o/r.git?access_token=TOK");
        assert_eq!(
            redact(&format!("git clone {quoted} x")),
            "git clone 'https://<redacted>@host/o/r.git?access_token=<redacted>' x"
        );
        assert_eq!(
            redact("Args(url='https://h/r?token=TOK', b=https://u:p@h2/x)"),
            "Args(url='https://h/r?token=<redacted>', b=https://<redacted>@h2/x)"
        );
    }

    #[test]
    fn api_keys() {
        assert_eq!(
            redact("python -m x --api-key s3cr3t --port 1"),
            "python -m x --api-key <redacted> --port 1"
        );
        assert_eq!(redact("--api-key='a b'"), "--api-key=<redacted>");
        assert_eq!(
            redact("ServerArgs(model_path='m', api_key='s3cr3t', port=1)"),
            "ServerArgs(model_path='m', api_key=<redacted>, port=1)"
        );
        assert_eq!(
            redact(r#"{"api_key": "s3cr3t"}"#),
            r#"{"api_key": <redacted>}"#
        );
        assert_eq!(
            redact(r#"--api-key "$SGLPROF_API_KEY""#),
            r#"--api-key "$SGLPROF_API_KEY""#
        );
        assert_eq!(
            redact(r#"api_key="$SGLPROF_API_KEY""#),
            r#"api_key="$SGLPROF_API_KEY""#
        );
        assert_eq!(
            redact_with("key is s3cr3t.", &["s3cr3t"]),
            "key is <redacted>."
        );
    }
}
