//! A subcommand's long flags kept in a TOML file, so that a configuration
//! can be reviewed, committed and run again: each key is a long flag
//! without its dashes, and [`FlagFile::expand`] splices the file's flags
//! into the command line before clap parses it.
//!
//! ```toml
//! tpu = true
//! requests = 24
//! gcloud-flag = ["--tunnel-through-iap"]
//! ```
//!
//! The file's flags go in front of the command line's, so a flag given on
//! the command line wins: a value given twice takes the command line's
//! (for a command with `args_override_self`), a file's flag that conflicts
//! with one on the command line is dropped (`tpu = true` in the file,
//! `--local` on the command line), and `--no-<switch>` turns off a switch
//! the file (or an earlier word) set. Each value of the file is checked by
//! the flag's own parser first, so that a bad one is refused in one line
//! that names the file; clap then checks the merged list as it checks typed
//! flags. A file larger than [`MAX_BYTES`] is refused before it is read.
//!
//! It reads the one file and nothing else; it does not parse the command
//! line itself (clap does, after).

use std::ffi::OsString;
use std::io::Read;
use std::path::{Path, PathBuf};

/// The largest file read: a session's flags take a few hundred bytes.
pub const MAX_BYTES: u64 = 1 << 20;

/// Where a program takes a flag file, and what it refuses in one.
#[derive(Clone, Copy, Debug)]
pub struct FlagFile<'a> {
    /// The subcommand whose flags a file holds, the first word after the
    /// program (`profile`); other subcommands' command lines are left as
    /// they are.
    pub subcommand: &'a str,
    /// Its flag that names the file, without dashes (`config`).
    pub flag: &'a str,
    /// The command as messages show it (`cargo xtask profile`).
    pub shown: &'a str,
    /// Keys a file may not hold, with the reason (a secret's flag).
    pub refused: &'a [(&'a str, &'a str)],
}

/// Why a flag file was refused; each shows as one line naming the file.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read the config file {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: larger than {MAX_BYTES} bytes, which no config file needs", path.display())]
    TooLarge { path: PathBuf },
    #[error("{}: not UTF-8 text", path.display())]
    NotText { path: PathBuf },
    /// A key, a value or the TOML itself (`line 3: ...`, `` `key`: ... ``).
    #[error("{}: {message}", path.display())]
    Invalid { path: PathBuf, message: String },
}

impl FlagFile<'_> {
    /// `argv` with the flags of the file named by [`FlagFile::flag`]
    /// spliced in right after the subcommand and every `--no-<switch>`
    /// applied; unchanged for other subcommands. `cli` is the program's
    /// whole command.
    pub fn expand(&self, argv: Vec<OsString>, cli: &clap::Command) -> Result<Vec<OsString>, Error> {
        // The subcommand is the first word: a later one may be a value.
        let sub_at = 1;
        if argv.get(sub_at).is_none_or(|a| a != self.subcommand) {
            return Ok(argv);
        }
        let Some(sub) = cli.find_subcommand(self.subcommand) else {
            return Ok(argv);
        };
        let mut sub = sub.clone();
        sub.build();
        let given = &argv[sub_at + 1..];
        let mut res = argv[..=sub_at].to_vec();
        if let Some(path) = self.file_path(given) {
            let text = read_file(&path)?;
            let flags = self
                .flags_of(&text, &sub)
                .map_err(|message| Error::Invalid {
                    path: path.clone(),
                    message,
                })?;
            res.extend(
                flags
                    .into_iter()
                    .filter(|flag| !conflicts_with_given(&sub, flag, given))
                    .map(|flag| OsString::from(flag.word)),
            );
        }
        res.extend(given.iter().cloned());
        Ok(apply_negations(res, sub_at + 1, &sub))
    }

    /// The value of the file's flag among the subcommand's arguments.
    fn file_path(&self, args: &[OsString]) -> Option<PathBuf> {
        let long = format!("--{}", self.flag);
        let with_value = format!("{long}=");
        let mut words = args.iter();
        while let Some(word) = words.next() {
            if word == "--" {
                return None;
            }
            if word.to_str() == Some(long.as_str()) {
                return words.next().map(|it| Path::new(it).to_path_buf());
            }
            if let Some(value) = word.to_str().and_then(|it| it.strip_prefix(&with_value)) {
                return Some(value.into());
            }
        }
        None
    }

    /// Why a file may not hold `key`, if it may not.
    fn refused(&self, key: &str) -> Option<&str> {
        if key == self.flag {
            return Some("a config file cannot name another one");
        }
        if matches!(key, "help" | "version") {
            return Some("not a setting");
        }
        self.refused
            .iter()
            .find(|(name, _)| *name == key)
            .map(|(_, why)| *why)
    }

    /// The command-line words for the keys of a file, checked against the
    /// flags `command` has, each value by the flag's own parser.
    fn flags_of(&self, text: &str, command: &clap::Command) -> Result<Vec<FileFlag>, String> {
        let table: toml::Table = text.parse().map_err(|err: toml::de::Error| {
            let message = err.message().trim_end_matches('\n');
            match err.span().map(|span| line_of(text, span.start)) {
                Some(line) => format!("line {line}: {message}"),
                None => message.to_owned(),
            }
        })?;
        let mut res = Vec::new();
        for (key, value) in &table {
            if let Some(why) = self.refused(key) {
                return Err(format!("`{key}`: {why}"));
            }
            let Some(arg) = command
                .get_arguments()
                .find(|arg| arg.get_long() == Some(key.as_str()))
            else {
                return Err(format!(
                    "`{key}` is not a flag of `{}` (see its --help)",
                    self.shown
                ));
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
                    _ => {
                        return Err(format!(
                            "`{key}` is a switch: write `{key} = true` or leave it out"
                        ));
                    }
                }
                continue;
            }
            let values = match value {
                toml::Value::Array(items) if matches!(action, clap::ArgAction::Append) => {
                    items.iter().collect()
                }
                toml::Value::Array(_) => {
                    return Err(format!("`{key}` takes one value, not a list"));
                }
                other => vec![other],
            };
            for item in values {
                let word = match item {
                    toml::Value::String(s) => s.clone(),
                    toml::Value::Integer(n) => n.to_string(),
                    toml::Value::Float(x) => x.to_string(),
                    toml::Value::Boolean(_) => {
                        return Err(format!("`{key}` takes a value, not true or false"));
                    }
                    toml::Value::Datetime(_) | toml::Value::Array(_) | toml::Value::Table(_) => {
                        return Err(format!("`{key}`: write a string or a number"));
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
                    return Err(format!(
                        "`{}` and `{}` cannot be used together",
                        b.key, a.key
                    ));
                }
            }
        }
        Ok(res)
    }
}

/// The file's text, refused without reading more than [`MAX_BYTES`].
fn read_file(path: &Path) -> Result<String, Error> {
    let read = |source| Error::Read {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(read)?;
    let size = file.metadata().map_err(read)?.len();
    let too_large = || Error::TooLarge {
        path: path.to_path_buf(),
    };
    if size > MAX_BYTES {
        return Err(too_large());
    }
    let mut bytes = Vec::new();
    file.take(MAX_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(read)?;
    if bytes.len() as u64 > MAX_BYTES {
        return Err(too_large());
    }
    String::from_utf8(bytes).map_err(|_| Error::NotText {
        path: path.to_path_buf(),
    })
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

/// One word a file adds to the command line.
#[derive(Clone, Debug, PartialEq, Eq)]
struct FileFlag {
    /// The key: the flag's long name.
    key: String,
    /// `--key` or `--key=value`.
    word: String,
}

/// Checks `value` with the parser of `arg` (numbers, choices, ranges), as
/// clap will: a bad value is refused here, in one line, with its key.
fn check_value(arg: &clap::Arg, key: &str, value: &str) -> Result<(), String> {
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
            Err(format!(
                "`{key}`: {}",
                first.replacen("'--value", &format!("'--{key}"), 1)
            ))
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

    /// The xtask's settings, as a program would give them.
    const FILE: FlagFile<'static> = FlagFile {
        subcommand: "profile",
        flag: "config",
        shown: "cargo xtask profile",
        refused: &[(
            "api-key",
            "a secret does not belong in a file that gets committed",
        )],
    };

    fn expand(argv: Vec<OsString>, cli: &clap::Command) -> Result<Vec<OsString>, Error> {
        FILE.expand(argv, cli)
    }

    fn words(text: &str) -> Result<Vec<String>, String> {
        FILE.flags_of(text, &command())
            .map(|flags| flags.into_iter().map(|it| it.word).collect())
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
        let err = expand(missing.into(), &cli).unwrap_err();
        let err = format!("{err}: {}", std::error::Error::source(&err).unwrap());
        assert!(
            err.starts_with("cannot read the config file /nonexistent/s.toml: "),
            "{err}"
        );
    }

    fn expanded(file: &str, args: &[&str]) -> Result<Vec<String>, Error> {
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
        let err = expanded(&text, &[]).unwrap_err().to_string();
        assert!(
            err.ends_with(&format!(
                "s.toml: larger than {MAX_BYTES} bytes, which no config file needs"
            )),
            "{err}"
        );
    }
}
