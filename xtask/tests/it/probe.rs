//! The second hostile probe's cases that need no server: secrets in a git
//! URL (a query token, a password with quotes) are printed nowhere and
//! reach the VM as a file; a `--config` file is named in every error about
//! it, its switches can be turned off on the command line, and a huge one
//! is refused by its size before it is read; the VM image follows the
//! accelerator's family. Every run here is a dry run or a refusal: nothing
//! is created and no server starts.

#![allow(clippy::disallowed_methods)] // Runs the xtask binary.

use std::path::Path;
use std::process::{Command, Output};

fn xtask(cwd: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(args)
        .current_dir(cwd)
        .env_remove("SGLPROF_API_KEY")
        .env_remove("CLOUDSDK_CORE_PROJECT")
        .output()
        .expect("the xtask binary runs")
}

fn text(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr)
}

#[test]
fn secrets_in_a_git_url_are_printed_nowhere_and_reach_the_vm_as_a_file() {
    let dir = tempfile::tempdir().unwrap();
    for url in [
        "https://host/o/r.git?access_token=TOK",
        "https://bob:pa'ss\"TOK@host/o/r.git",
        "https://host/o/r.git#TOK",
    ] {
        let out = xtask(
            dir.path(),
            &[
                "profile",
                "--tpu",
                "--dry-run",
                "--project",
                "demo",
                "--sglang-jax-git",
                url,
                "--sglang-jax-commit",
                "a18802ac",
            ],
        );
        let all = text(&out);
        assert!(out.status.success(), "{url}: {all}");
        assert!(!all.contains("TOK"), "{url}: {all}");
        // The URL goes to the VM by scp from a file, and the install script
        // reads it there.
        assert!(all.contains(":sglprof/secret-git-url"), "{all}");
        assert!(
            all.contains("git clone --quiet \"$(cat sglprof/secret-git-url)\""),
            "{all}"
        );
    }
}

#[test]
fn config_files_are_named_in_their_errors_and_the_command_line_wins() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("session.toml");
    let config = file.to_str().unwrap();

    // A bad value: one line, naming the file and the key.
    std::fs::write(&file, "requests = 1.5\n").unwrap();
    let out = xtask(
        dir.path(),
        &["profile", "--config", config, "--tpu", "--dry-run"],
    );
    assert!(!out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!(
            "error: {config}: `requests`: invalid value '1.5' for '--requests <REQUESTS>': invalid digit found in string\n"
        )
    );

    // A switch of the file, turned off on the command line: `tpu = true`
    // with `--no-tpu --k8s` is the Kubernetes dry run, not the TPU one.
    std::fs::write(&file, "tpu = true\ndry-run = true\n").unwrap();
    let out = xtask(
        dir.path(),
        &["profile", "--config", config, "--no-tpu", "--k8s"],
    );
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("kind: Job"), "{stdout}");
    assert!(!text(&out).contains("tpu.googleapis.com"), "{}", text(&out));
    // Without it, the file's switch holds.
    let out = xtask(dir.path(), &["profile", "--config", config]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("gcloud compute tpus tpu-vm"));
}

/// The probe's 36 MB file of unknown keys used 922 MB before it was
/// refused; now it is refused by its size, unread. The command runs with
/// its data segment limited to 128 MiB, so reading and parsing the file
/// would end it with an allocation failure instead of the one line.
#[test]
fn a_huge_config_file_is_refused_by_its_size_with_little_memory() {
    use std::os::unix::process::CommandExt;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("huge.toml");
    let line = "unknown-key-of-some-length = \"and a value to go with it\"\n";
    let text = line.repeat(36_000_000 / line.len());
    std::fs::write(&file, text).unwrap();
    let config = file.to_str().unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_xtask"));
    command
        .args(["profile", "--config", config, "--tpu", "--dry-run"])
        .current_dir(dir.path());
    // SAFETY: setrlimit is async-signal-safe and touches only the child.
    unsafe {
        command.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: 128 << 20,
                rlim_max: 128 << 20,
            };
            if libc::setrlimit(libc::RLIMIT_DATA, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = command.output().unwrap();
    assert!(!out.status.success());
    assert_eq!(out.status.code(), Some(1), "{:?}", out.status);
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!("error: {config}: larger than 1048576 bytes, which no config file needs\n")
    );
}

/// The VM image follows the accelerator's family (Google's table), and a
/// family nobody knows is refused unless the image is named.
#[test]
fn the_runtime_version_follows_the_accelerator_family() {
    let dir = tempfile::tempdir().unwrap();
    for (accelerator, image) in [
        ("v6e-1", "v2-alpha-tpuv6e"),
        ("v5p-16", "v2-alpha-tpuv5"),
        ("v5litepod-8", "v2-alpha-tpuv5-lite"),
        ("v4-8", "tpu-ubuntu2204-base"),
    ] {
        let out = xtask(
            dir.path(),
            &[
                "profile",
                "--tpu",
                "--dry-run",
                "--project",
                "demo",
                "--accelerator-type",
                accelerator,
            ],
        );
        let all = text(&out);
        assert!(out.status.success(), "{all}");
        assert!(
            all.contains(&format!("\"runtimeVersion\":\"{image}\"")),
            "{accelerator}: {all}"
        );
    }
    let unknown = [
        "profile",
        "--tpu",
        "--dry-run",
        "--project",
        "demo",
        "--accelerator-type",
        "v9z-8",
    ];
    let out = xtask(dir.path(), &unknown);
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "error: no runtime version is known for accelerator type `v9z-8` (known families: v6e, v5p, v5e, v4, v3, v2): \
         give one with --runtime-version (see `gcloud compute tpus tpu-vm versions list`)\n"
    );
    let mut named = unknown.to_vec();
    named.extend(["--runtime-version", "v2-alpha-tpu9z"]);
    let out = xtask(dir.path(), &named);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("\"runtimeVersion\":\"v2-alpha-tpu9z\""));
}
