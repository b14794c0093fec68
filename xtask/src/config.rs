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
//! (`--no-tpu`, `--no-py-spy`). The `flag-file` crate rewrites the
//! argument list before clap parses it, each value checked by the flag's
//! own parser; the plan is then built from the parsed flags as always.

/// `profile --config FILE`, and the key no file may hold.
const FILE: flag_file::FlagFile<'static> = flag_file::FlagFile {
    subcommand: "profile",
    flag: "config",
    shown: "cargo xtask profile",
    refused: &[(
        "api-key",
        "a secret does not belong in a file that gets committed; \
         set SGLPROF_API_KEY in the environment",
    )],
};

/// `argv` with the flags of `profile`'s `--config` file spliced in right
/// after the subcommand and every `--no-<switch>` applied; unchanged for
/// other subcommands.
pub fn expand(
    argv: Vec<std::ffi::OsString>,
    cli: &clap::Command,
) -> Result<Vec<std::ffi::OsString>, flag_file::Error> {
    FILE.expand(argv, cli)
}
