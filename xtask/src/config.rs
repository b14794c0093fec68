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
//! the command line wins: a value given twice takes the command line's, a
//! file's flag that conflicts with one on the command line is dropped
//! (`tpu = true` in the file, `--local` on the command line), and
//! `--no-<switch>` turns off a switch the file (or an earlier word) set
//! (`--no-tpu`, `--no-py-spy`). This module only rewrites the argument list
//! before clap parses it. Each value of the file is checked by the flag's
//! own parser first, so that a bad one is refused in one line that names
//! the file; clap then checks the merged list as it checks typed flags,
//! and the plan is built from the parsed flags as always. A file larger
//! than [`MAX_BYTES`] is refused before it is read.

use std::ffi::OsString;
use std::io::Read;
use std::path::Path;

use anyhow::{Context, bail};

/// The subcommand that takes `--config`.
const SUBCOMMAND: &str = "profile";

/// The largest config file read: a session's flags take a few hundred
/// bytes.
pub const MAX_BYTES: u64 = 1 << 20;

/// `argv` with the flags of the `--config` file of `profile` spliced in
/// right after the subcommand and every `--no-<switch>` applied; unchanged
/// for other subcommands.
pub fn expand(argv: Vec<OsString>, cli: &clap::Command) -> anyhow::Result<Vec<OsString>> {
    // The subcommand is the first word: a later `profile` may be a value.
    let sub_at = 1;
    if argv.get(sub_at).is_none_or(|a| a != SUBCOMMAND) {
        return Ok(argv);
    }
    let mut profile = cli
        .find_subcommand(SUBCOMMAND)
        .expect("the profile subcommand exists")
        .clone();
    profile.build();
    let given = &argv[sub_at + 1..];
    let mut res = argv[..=sub_at].to_vec();
    if let Some(path) = config_path(given) {
        let text = read_config(&path)?;
        let flags = flags_of(&text, &profile).with_context(|| format!("{}", path.display()))?;
        res.extend(
            flags
                .into_iter()
                .filter(|flag| !conflicts_with_given(&profile, flag, given))
                .map(|flag| OsString::from(flag.word)),
        );
    }
    res.extend(given.iter().cloned());
    Ok(apply_negations(res, sub_at + 1, &profile))
}

/// The file's text, refused without reading more than [`MAX_BYTES`].
fn read_config(path: &Path) -> anyhow::Result<String> {
    let context = || format!("cannot read the config file {}", path.display());
    let file = std::fs::File::open(path).with_context(context)?;
    let size = file.metadata().with_context(context)?.len();
    let too_large = || {
        anyhow::anyhow!(
            "{}: larger than {MAX_BYTES} bytes, which no config file needs",
            path.display()
        )
    };
    if size > MAX_BYTES {
        return Err(too_large());
    }
    let mut bytes = Vec::new();
    file.take(MAX_BYTES + 1)
        .read_to_end(&mut bytes)
        .with_context(context)?;
    if bytes.len() as u64 > MAX_BYTES {
        return Err(too_large());
    }
    String::from_utf8(bytes).map_err(|_| anyhow::anyhow!("{}: not UTF-8 text", path.display()))
}

/// Whether a flag of the file conflicts with a flag given on the command
/// line (either declares the conflict), so that the command line's wins.
fn conflicts_with_given(command: &clap::Command, flag: &FileFlag, given: &[OsString]) -> bool {
    let Some(arg) = find_long(command, &flag.key) else {
        return false;
    };
    let given_args: Vec<&clap::Arg> = given
        .iter()
        .filter_map(|word| word.to_str()?.strip_prefix("--"))
        .filter_map(|word| find_long(command, word.split('=').next().unwrap_or(word)))
        .collect();
    given_args.iter().any(|other| {
        command
            .get_arg_conflicts_with(arg)
            .iter()
            .any(|it| it.get_id() == other.get_id())
            || command
                .get_arg_conflicts_with(other)
                .iter()
                .any(|it| it.get_id() == arg.get_id())
    })
}

fn find_long<'a>(command: &'a clap::Command, long: &str) -> Option<&'a clap::Arg> {
    command
        .get_arguments()
        .find(|arg| arg.get_long() == Some(long))
}

/// `argv` where each `--no-<switch>` (from `from` on) removes every
/// earlier `--<switch>` and is itself removed; `--no-<word>` for a word
/// that is not a switch of `command` stays for clap to refuse.
fn apply_negations(argv: Vec<OsString>, from: usize, command: &clap::Command) -> Vec<OsString> {
    let mut res: Vec<OsString> = Vec::with_capacity(argv.len());
    for (i, word) in argv.into_iter().enumerate() {
        let negated = word
            .to_str()
            .and_then(|it| it.strip_prefix("--no-"))
            .filter(|_| i >= from)
            .and_then(|name| find_long(command, name))
            .filter(|arg| !arg.get_action().takes_values())
            .and_then(|arg| arg.get_long())
            .map(|long| format!("--{long}"));
        if res.iter().any(|it| it == "--") {
            res.push(word);
            continue;
        }
        match negated {
            Some(flag) => res.retain(|it| it.to_str() != Some(flag.as_str())),
            None => res.push(word),
        }
    }
    res
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

/// One word a config file adds to the command line.
#[derive(Clone, Debug, PartialEq, Eq)]
struct FileFlag {
    /// The key: the flag's long name.
    key: String,
    /// `--key` or `--key=value`.
    word: String,
}

/// The command-line words for the keys of a config file, checked against
/// the flags `command` has, each value by the flag's own parser.
fn flags_of(text: &str, command: &clap::Command) -> anyhow::Result<Vec<FileFlag>> {
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
                toml::Value::Boolean(true) => res.push(FileFlag {
                    key: key.clone(),
                    word: flag,
                }),
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
            check_value(arg, key, &word)?;
            // `--flag=value` keeps a value that starts with a dash a value.
            res.push(FileFlag {
                key: key.clone(),
                word: format!("{flag}={word}"),
            });
        }
    }
    for (i, a) in res.iter().enumerate() {
        for b in &res[..i] {
            let conflict = |x: &FileFlag, y: &FileFlag| {
                find_long(command, &x.key).is_some_and(|x| {
                    command
                        .get_arg_conflicts_with(x)
                        .iter()
                        .any(|it| it.get_long() == Some(y.key.as_str()))
                })
            };
            if conflict(a, b) || conflict(b, a) {
                bail!("`{}` and `{}` cannot be used together", b.key, a.key);
            }
        }
    }
    Ok(res)
}

/// Checks `value` with the parser of `arg` (numbers, choices, ranges), as
/// clap will: a bad value is refused here, in one line, with its key.
fn check_value(arg: &clap::Arg, key: &str, value: &str) -> anyhow::Result<()> {
    // A lone copy of the flag's parser (the flag itself names others, in
    // its conflicts and requirements), under a fixed name.
    let mut probe = clap::Arg::new("value")
        .long("value")
        .value_parser(arg.get_value_parser().clone())
        .allow_hyphen_values(true);
    if let Some(names) = arg.get_value_names() {
        probe = probe.value_names(names.iter().cloned());
    }
    let res = clap::Command::new("config")
        .color(clap::ColorChoice::Never)
        .arg(probe)
        .try_get_matches_from([OsString::from("config"), format!("--value={value}").into()]);
    match res {
        Ok(_) => Ok(()),
        Err(err) => {
            let text = err.to_string();
            let first = text.lines().next().unwrap_or_default();
            let first = first.strip_prefix("error: ").unwrap_or(first);
            bail!(
                "`{key}`: {}",
                first.replacen("'--value", &format!("'--{key}"), 1)
            )
        }
    }
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
            .arg(
                clap::Arg::new("local")
                    .long("local")
                    .action(clap::ArgAction::SetTrue)
                    .conflicts_with("tpu"),
            )
            .arg(
                clap::Arg::new("requests")
                    .long("requests")
                    .value_parser(clap::value_parser!(usize)),
            )
            .arg(
                clap::Arg::new("usd")
                    .long("usd-per-hour")
                    .value_parser(clap::value_parser!(f64)),
            )
            .arg(
                clap::Arg::new("gcloud_flags")
                    .long("gcloud-flag")
                    .action(clap::ArgAction::Append),
            )
            .arg(clap::Arg::new("api_key").long("api-key"))
    }

    fn words(text: &str) -> Result<Vec<String>, String> {
        flags_of(text, &command())
            .map(|flags| flags.into_iter().map(|it| it.word).collect())
            .map_err(|err| format!("{err:#}"))
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
            (
                "requests = 1.5",
                "`requests`: invalid value '1.5' for '--requests <value>': invalid digit found in string",
            ),
            (
                "requests = -3",
                "`requests`: invalid value '-3' for '--requests <value>'",
            ),
            (
                "tpu = true\nlocal = true",
                "`tpu` and `local` cannot be used together",
            ),
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

    fn expanded(file: &str, args: &[&str]) -> anyhow::Result<Vec<String>> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.toml");
        std::fs::write(&path, file).unwrap();
        let cli = clap::Command::new("xtask")
            .subcommand(command().arg(clap::Arg::new("config").long("config")));
        let argv: Vec<OsString> = ["xtask", "profile", "--config", path.to_str().unwrap()]
            .iter()
            .chain(args)
            .map(OsString::from)
            .collect();
        let got = expand(argv, &cli)?;
        Ok(got[2..]
            .iter()
            .map(|it| it.to_string_lossy().into_owned())
            .filter(|it| it != "--config" && !it.ends_with("s.toml"))
            .collect())
    }

    #[test]
    fn the_command_line_turns_off_a_switch_of_the_file() {
        assert_eq!(expanded("tpu = true\n", &[]).unwrap(), ["--tpu"]);
        assert_eq!(expanded("tpu = true\n", &["--no-tpu"]).unwrap(), [""; 0]);
        // A flag that conflicts with the file's switch replaces it.
        assert_eq!(expanded("tpu = true\n", &["--local"]).unwrap(), ["--local"]);
        // Turned on again after --no-: the last word wins.
        assert_eq!(
            expanded("tpu = true\n", &["--no-tpu", "--tpu"]).unwrap(),
            ["--tpu"]
        );
        // Not a switch: left for clap to refuse.
        assert_eq!(expanded("", &["--no-requests"]).unwrap(), ["--no-requests"]);
    }

    #[test]
    fn a_huge_file_is_refused_by_its_size() {
        let text = "x = 1\n".repeat((MAX_BYTES as usize) / 6 + 1);
        let err = format!("{:#}", expanded(&text, &[]).unwrap_err());
        assert!(
            err.ends_with(&format!(
                "s.toml: larger than {MAX_BYTES} bytes, which no config file needs"
            )),
            "{err}"
        );
    }
}
