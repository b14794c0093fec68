//! Checks on the repository itself, run as ordinary tests so that
//! `cargo test --workspace` is the one command: formatting, a `//!` doc at the
//! top of every Rust file, no ignored or should-panic tests, and no paths of
//! a developer's machine in tracked files.

#![allow(clippy::disallowed_methods)] // Runs the xtask binary, git and cargo.

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Every file git tracks or would track (untracked but not ignored).
fn files() -> Vec<PathBuf> {
    let output = Command::new("git")
        .args([
            "ls-files",
            "--cached",
            "--others",
            "--exclude-standard",
            "-z",
        ])
        .current_dir(repo())
        .output()
        .expect("git runs");
    assert!(output.status.success());
    output
        .stdout
        .split(|&b| b == 0)
        .filter(|it| !it.is_empty())
        .map(|it| repo().join(String::from_utf8_lossy(it).as_ref()))
        .filter(|it| it.is_file())
        .collect()
}

fn rust_files() -> Vec<PathBuf> {
    files()
        .into_iter()
        .filter(|it| it.extension().is_some_and(|e| e == "rs"))
        .collect()
}

#[test]
fn formatting() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let output = Command::new(cargo)
        .args(["fmt", "--all", "--", "--check"])
        .current_dir(repo())
        .output()
        .expect("cargo fmt runs");
    assert!(
        output.status.success(),
        "run `cargo fmt --all`:\n{}",
        String::from_utf8_lossy(&output.stdout)
    );
}

#[test]
fn every_rust_file_starts_with_a_module_doc() {
    let missing: Vec<String> = rust_files()
        .into_iter()
        .filter(|path| {
            let text = std::fs::read_to_string(path).unwrap();
            let first = text.lines().find(|it| !it.trim().is_empty()).unwrap_or("");
            !first.starts_with("//!")
        })
        .map(|it| it.strip_prefix(repo()).unwrap().display().to_string())
        .collect();
    assert!(
        missing.is_empty(),
        "files without a `//!` doc: {missing:#?}"
    );
}

#[test]
fn no_ignored_or_should_panic_tests() {
    let ignore = ["#[", "ignore]"].concat();
    let should_panic = ["#[", "should_panic"].concat();
    let offenders: Vec<String> = rust_files()
        .into_iter()
        .filter(|path| {
            let text = std::fs::read_to_string(path).unwrap();
            text.contains(&ignore) || text.contains(&should_panic)
        })
        .map(|it| it.strip_prefix(repo()).unwrap().display().to_string())
        .collect();
    assert!(
        offenders.is_empty(),
        "ignored or should_panic tests in {offenders:#?}"
    );
}

/// An error's cause is printed once: anyhow's `{:#}` appends every
/// `source`, so a message that also formats its source prints it twice.
#[test]
fn error_messages_do_not_repeat_their_source() {
    let mut offenders = Vec::new();
    for path in rust_files() {
        let text = std::fs::read_to_string(&path).unwrap();
        for (i, line) in text.lines().enumerate() {
            let next = text.lines().nth(i + 1).unwrap_or("");
            let formats_field_0 = (line.contains("{0}") || line.contains(".0"))
                && (next.contains("#[source]") || next.contains("#[from]"));
            if line.trim_start().starts_with("#[error(")
                && (line.contains("{source") || formats_field_0)
            {
                let name = path.strip_prefix(repo()).unwrap().display().to_string();
                offenders.push(format!("{name}:{}", i + 1));
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "error messages that format their source: {offenders:#?}"
    );
}

#[test]
fn no_machine_paths() {
    // No tracked file may name this checkout's own location or the root
    // user's home folder (where the sglprof cache lives on CI). The parent
    // folder is not a needle: a clone in /tmp would flag every `/tmp/...`.
    let checkout = repo().display().to_string() + "/";
    let needles = [checkout, ["/ro", "ot/"].concat()];
    let offenders: Vec<String> = files()
        .into_iter()
        .filter(|path| {
            let Ok(text) = std::fs::read_to_string(path) else {
                return false;
            };
            needles.iter().any(|needle| text.contains(needle.as_str()))
        })
        .map(|it| it.strip_prefix(repo()).unwrap().display().to_string())
        .collect();
    assert!(offenders.is_empty(), "machine paths in {offenders:#?}");
}

/// Every file sglprof writes gets the permissions the umask gives, and only
/// files holding a secret are private: a temporary file created outside the
/// tests (tempfile makes them 0600) sets its permissions within the few
/// lines before its creation, or says that it holds a secret.
#[test]
fn temporary_files_follow_the_umask_unless_they_hold_a_secret() {
    let mut offenders = Vec::new();
    for path in rust_files() {
        let rel = path.strip_prefix(repo()).unwrap();
        if rel.components().any(|c| c.as_os_str() == "tests")
            || rel.to_string_lossy().ends_with("tests.rs")
        {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        // Unit tests at the end of a file are tests too.
        let code = text.split("#[cfg(test)]\nmod tests").next().unwrap();
        let lines: Vec<&str> = code.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let creates = line.contains(".tempfile_in(")
                || line.contains(".tempfile()")
                || line.contains("NamedTempFile::new");
            if !creates {
                continue;
            }
            let before = &lines[i.saturating_sub(8)..=i];
            let ok = before
                .iter()
                .any(|l| l.contains(".permissions(") || l.to_lowercase().contains("secret"));
            if !ok {
                offenders.push(format!("{}:{}", rel.display(), i + 1));
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "temporary files created 0600 without a secret: {offenders:#?}"
    );
}

/// docs/ARCHITECTURE.md says the xtask's modules import one another in
/// one direction only: a module reaches the modules it declares and those
/// it names through `crate::...` paths, and none reaches one that reaches
/// it.
#[test]
fn xtask_modules_form_no_cycle() {
    use std::collections::{BTreeMap, BTreeSet};
    let src = repo().join("xtask/src");
    let mut modules = BTreeSet::new();
    for entry in std::fs::read_dir(&src).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "rs") {
            modules.insert(path.file_stem().unwrap().to_string_lossy().into_owned());
        }
    }
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for module in &modules {
        let text = std::fs::read_to_string(src.join(format!("{module}.rs"))).unwrap();
        let targets = edges.entry(module.clone()).or_default();
        for (at, _) in text.match_indices("crate::") {
            let name: String = text[at + 7..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if modules.contains(&name) && &name != module {
                targets.insert(name);
            }
        }
        for line in text.lines() {
            if let Some(name) = line.strip_prefix("mod ").and_then(|l| l.strip_suffix(';')) {
                targets.insert(name.to_owned());
            }
        }
    }
    // Every module is declared somewhere below `main`.
    let declared: BTreeSet<&String> = edges.values().flatten().collect();
    assert_eq!(declared.len() + 1, modules.len(), "{edges:?}");
    // Depth-first search; a module met again while on the stack closes a
    // cycle.
    fn visit(
        node: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        stack: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) {
        if done.contains(node) {
            return;
        }
        if let Some(at) = stack.iter().position(|it| it == node) {
            panic!("module cycle: {} -> {node}", stack[at..].join(" -> "));
        }
        stack.push(node.to_owned());
        for next in edges.get(node).into_iter().flatten() {
            visit(next, edges, stack, done);
        }
        stack.pop();
        done.insert(node.to_owned());
    }
    let mut done = BTreeSet::new();
    for module in &modules {
        visit(module, &edges, &mut Vec::new(), &mut done);
    }
}

/// The most lines `xtask/src` may have, counted as `wc -l` counts them
/// (its unit tests included). Issue 19 wants the xtask a command line
/// (clap definitions, the config-file merge, printing, the dev tools) of
/// at most 2,500 lines, product logic living in the crates where a Rust
/// user reaches it: the benchmark groups are `sglprof-bench`'s, the
/// held server's folder and standard-input watch `profile_driver::serve`'s,
/// the config file's merge `flag-file`'s. What is left (2,341 lines when
/// this was written) is flags, their conversion into the crates' typed
/// options, the walk of every `profile` flag through clap, and printing.
const XTASK_MAX_LINES: usize = 2_500;

#[test]
fn xtask_stays_a_command_line() {
    let mut sizes: Vec<(usize, PathBuf)> = rust_files()
        .into_iter()
        .filter(|it| it.starts_with(repo().join("xtask/src")))
        .map(|it| {
            let text = std::fs::read(&it).unwrap();
            (text.iter().filter(|&&b| b == b'\n').count(), it)
        })
        .collect();
    assert!(sizes.len() > 10, "{sizes:?}");
    let total: usize = sizes.iter().map(|it| it.0).sum();
    sizes.sort();
    let largest: Vec<String> = (sizes.iter().rev().take(3))
        .map(|(n, path)| format!("{} ({n})", path.strip_prefix(repo()).unwrap().display()))
        .collect();
    assert!(
        total <= XTASK_MAX_LINES,
        "xtask/src has {total} lines, more than {XTASK_MAX_LINES}: move product logic into the \
         crates (largest: {})",
        largest.join(", ")
    );
}
