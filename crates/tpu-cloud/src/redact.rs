//! The one redaction rule for anything shown or kept: commands, scripts,
//! transcripts and server logs.
//!
//! [`redact`] hides what looks like a secret wherever it appears: the
//! credentials of a URL (`https://user:TOKEN@host` becomes
//! `https://<redacted>@host`), the value after `--api-key` (`--api-key K`,
//! `--api-key=K`) and `api_key=K` / `api_key='K'` / `"api_key": "K"` as
//! sglang-jax logs its server arguments. [`redact_with`] also hides given
//! values wherever they appear (a key the user passed, in any form).

use std::sync::LazyLock;

use regex::Regex;

/// What replaces a secret.
pub const MASK: &str = "<redacted>";

static URL_CREDENTIALS: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s@'\x22]+@").expect("a valid pattern")
});

static API_KEY_FLAG: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"(--api-key)(=|\s+)('[^']*'|"[^"]*"|[^\s'"]+)"#).expect("a valid pattern")
});

static API_KEY_ASSIGN: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"(?i)(\bapi[_-]?key["']?\s*[=:]\s*)('[^']*'|"[^"]*"|[^\s,)'"]+)"#)
        .expect("a valid pattern")
});

/// `text` with URL credentials and API key values masked.
pub fn redact(text: &str) -> String {
    let res = URL_CREDENTIALS.replace_all(text, |caps: &regex::Captures<'_>| {
        format!("{}{MASK}@", &caps[1])
    });
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

/// Whether `url` carries credentials (`scheme://user[:password]@...`).
pub fn url_has_credentials(url: &str) -> bool {
    URL_CREDENTIALS.is_match(url)
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
        assert!(url_has_credentials("https://u:p@h/x"));
        assert!(!url_has_credentials("https://h/x@y"));
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
