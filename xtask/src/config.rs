//! `profile --config FILE`: a session's flags kept in a TOML file, so that
//! a configuration can be reviewed, committed and run again. Each key is a
//! long flag of `cargo xtask profile` without its dashes:
//!
//! ```toml
//! tpu = true
//! project = "demo"
//! accelerator-type = "v6e-1"
//! endpoint = "score"
//! py-spy = true
//! requests = 24
//! gcloud-flag = ["--tunnel-through-iap"]
//! ```
//!
//! The file's flags go in front of the command line's, so a flag given on
//! the command line wins. This module only rewrites the argument list
//! before clap parses it; clap checks the values exactly as it checks typed
//! flags, and the plan is built from the parsed flags as always.

use std::ffi::OsString;
use std::path::Path;

use anyhow::{Context, bail};

/// The subcommand that takes `--config`.
const SUBCOMMAND: &str = "profile";

/// `argv` with the flags of the `--config` file of `profile` spliced in
/// right after the subcommand; unchanged without `--config`.
pub fn expand(argv: Vec<OsString>, cli: &clap::Command) -> anyhow::Result<Vec<OsString>> {
    // The subcommand is the first word: a later `profile` may be a value.
    let sub_at = 1;
    if argv.get(sub_at).is_none_or(|a| a != SUBCOMMAND) {
        return Ok(argv);
    }
    let Some(path) = config_path(&argv[sub_at + 1..]) else {
        return Ok(argv);
    };
    let profile = cli
        .find_subcommand(SUBCOMMAND)
        .expect("the profile subcommand exists");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read the config file {}", path.display()))?;
    let flags = flags_of(&text, profile).with_context(|| format!("{}", path.display()))?;
    let mut res = argv[..=sub_at].to_vec();
    res.extend(flags.into_iter().map(OsString::from));
    res.extend(argv[sub_at + 1..].iter().cloned());
    Ok(res)
}

/// The value of `--config` among the subcommand's arguments.
fn config_path(args: &[OsString]) -> Option<std::path::PathBuf> {
    let mut words = args.iter();
    while let Some(word) = words.next() {
        if word == "--" {
            return None;
        }
        if word == "--config" {
            return words.next().map(|it| Path::new(it).to_path_buf());
        }
        if let Some(value) = word.to_str().and_then(|it| it.strip_prefix("--config=")) {
            return Some(value.into());
        }
    }
    None
}

/// Keys a config file may not hold.
fn refused(key: &str) -> Option<&'static str> {
    match key {
        "config" => Some("a config file cannot name another one"),
        "api-key" => Some(
            "a secret does not belong in a file that gets committed; \
             set SGLPROF_API_KEY in the environment",
        ),
        "help" | "version" => Some("not a setting"),
        _ => None,
    }
}

/// The command-line words for the keys of a config file, checked against
/// the flags `command` has.
fn flags_of(text: &str, command: &clap::Command) -> anyhow::Result<Vec<String>> {
    let table: toml::Table = text.parse().map_err(|err: toml::de::Error| {
        let message = err.message().trim_end_matches('\n');
        match err.span().map(|span| line_of(text, span.start)) {
            Some(line) => anyhow::anyhow!("line {line}: {message}"),
            None => anyhow::anyhow!("{message}"),
        }
    })?;
    let mut res = Vec::new();
    for (key, value) in &table {
        if let Some(why) = refused(key) {
            bail!("`{key}`: {why}");
        }
        let Some(arg) = command
            .get_arguments()
            .find(|arg| arg.get_long() == Some(key.as_str()))
        else {
            bail!("`{key}` is not a flag of `cargo xtask {SUBCOMMAND}` (see its --help)");
        };
        let flag = format!("--{key}");
        let action = arg.get_action();
        if !action.takes_values() {
            match value {
                toml::Value::Boolean(true) => res.push(flag),
                toml::Value::Boolean(false) => {}
                _ => bail!("`{key}` is a switch: write `{key} = true` or leave it out"),
            }
            continue;
        }
        let values = match value {
            toml::Value::Array(items) if matches!(action, clap::ArgAction::Append) => {
                items.iter().collect()
            }
            toml::Value::Array(_) => bail!("`{key}` takes one value, not a list"),
            other => vec![other],
        };
        for item in values {
            let word = match item {
                toml::Value::String(s) => s.clone(),
                toml::Value::Integer(n) => n.to_string(),
                toml::Value::Float(x) => x.to_string(),
                toml::Value::Boolean(_) => {
                    bail!("`{key}` takes a value, not true or false")
                }
                toml::Value::Datetime(_) | toml::Value::Array(_) | toml::Value::Table(_) => {
                    bail!("`{key}`: write a string or a number")
                }
            };
            // `--flag=value` keeps a value that starts with a dash a value.
            res.push(format!("{flag}={word}"));
        }
    }
    Ok(res)
}

/// The 1-based line of byte `offset` in `text`.
fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn command() -> clap::Command {
        clap::Command::new("profile")
            .arg(
                clap::Arg::new("tpu")
                    .long("tpu")
                    .action(clap::ArgAction::SetTrue),
            )
            .arg(clap::Arg::new("requests").long("requests"))
            .arg(clap::Arg::new("usd").long("usd-per-hour"))
            .arg(
                clap::Arg::new("gcloud_flags")
                    .long("gcloud-flag")
                    .action(clap::ArgAction::Append),
            )
            .arg(clap::Arg::new("api_key").long("api-key"))
    }

    fn words(text: &str) -> Result<Vec<String>, String> {
        flags_of(text, &command()).map_err(|err| format!("{err:#}"))
    }

    #[test]
    fn keys_become_flags_in_file_order() {
        let got = words(
            "requests = 24\ntpu = true\nusd-per-hour = 1.375\n\
             gcloud-flag = [\"--tunnel-through-iap\", \"--quiet\"]\n",
        );
        assert_eq!(
            got.unwrap(),
            [
                "--requests=24",
                "--tpu",
                "--usd-per-hour=1.375",
                "--gcloud-flag=--tunnel-through-iap",
                "--gcloud-flag=--quiet",
            ]
        );
        assert_eq!(words("tpu = false\n").unwrap(), Vec::<String>::new());
    }

    #[test]
    fn mistakes_are_named() {
        let cases = [
            (
                "reqests = 3",
                "`reqests` is not a flag of `cargo xtask profile`",
            ),
            ("api-key = \"k\"", "`api-key`: a secret does not belong"),
            (
                "config = \"a.toml\"",
                "`config`: a config file cannot name another one",
            ),
            ("tpu = 1", "`tpu` is a switch"),
            (
                "requests = [1, 2]",
                "`requests` takes one value, not a list",
            ),
            (
                "requests = true",
                "`requests` takes a value, not true or false",
            ),
            (
                "requests = 1979-05-27",
                "`requests`: write a string or a number",
            ),
            ("tpu = true\nrequests = \n", "line 2: "),
        ];
        for (text, expect) in cases {
            let err = words(text).unwrap_err();
            assert!(err.starts_with(expect), "{text:?}: {err}");
            assert!(!err.contains('\n'), "{text:?}: {err}");
        }
    }

    #[test]
    fn the_file_goes_before_the_command_line() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("s.toml");
        std::fs::write(&file, "requests = 24\n").unwrap();
        let cli = clap::Command::new("xtask")
            .subcommand(command().arg(clap::Arg::new("config").long("config")));
        let argv: Vec<OsString> = ["xtask", "profile", "--requests", "3", "--config"]
            .into_iter()
            .map(OsString::from)
            .chain([file.clone().into_os_string()])
            .collect();
        let got = expand(argv.clone(), &cli).unwrap();
        assert_eq!(
            got[..3],
            ["xtask", "profile", "--requests=24"].map(OsString::from)
        );
        assert_eq!(got[3..], argv[2..]);
        let plain: Vec<OsString> = ["xtask", "profile", "--tpu"].map(OsString::from).into();
        assert_eq!(expand(plain.clone(), &cli).unwrap(), plain);
        let missing = ["xtask", "profile", "--config=/nonexistent/s.toml"].map(OsString::from);
        let err = format!("{:#}", expand(missing.into(), &cli).unwrap_err());
        assert!(
            err.starts_with("cannot read the config file /nonexistent/s.toml: "),
            "{err}"
        );
    }
}
