//! Every command sglprof generates runs: each script `tpu-cloud` sends to a
//! VM (install, launch, checks, helpers, the wait for traces) and the
//! report's Reproduction blocks that `profile_session::manual` renders pass
//! `shellcheck` (Debian's package; `.ci/run` installs it). Without it the
//! test says so in one line, and fails under `CI=true`.
//!
//! [`rendered`] is the one list: a host's own blocks (its Setup Commands
//! and Cleanup) are added there.

#![allow(clippy::disallowed_methods)] // Runs shellcheck.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};

use profile_session::manual::ManualSteps;
use sglang_server::StartProfile;
use tpu_cloud::script::{
    CpuInstall, InstallSpec, LaunchSpec, PackageSource, alive_script, helper_start_script,
    helper_stop_script, install_script, launch_script, server_pid_script, stop_script,
    wait_for_traces_script,
};

/// Every generated script and command block, by a name for the failure
/// message: what runs on a VM, and what a reader copies from a report.
fn rendered() -> Vec<(String, String)> {
    let mut res: Vec<(String, String)> = Vec::new();
    let sources = [
        PackageSource::PyPi {
            version: Some("0.0.2".to_owned()),
        },
        PackageSource::PyPi { version: None },
        PackageSource::Git {
            url: "https://github.com/sgl-project/sglang-jax".to_owned(),
            commit: "a18802ac".to_owned(),
        },
        PackageSource::Git {
            url: "https://host/o/r.git?access_token=TOK".to_owned(),
            commit: "a18802ac".to_owned(),
        },
    ];
    let cpus = [
        None,
        Some(CpuInstall {
            jax_cpu: "jax[cpu]==0.6.2".to_owned(),
            extra_pins: vec!["flax==0.12.0".to_owned()],
            ignore_requires_python: true,
        }),
    ];
    for (i, source) in sources.iter().enumerate() {
        for (j, cpu) in cpus.iter().enumerate() {
            let spec = InstallSpec {
                source: source.clone(),
                extra_packages: vec![profile_session::pyspy::PACKAGE.to_owned()],
                cpu: cpu.clone(),
            };
            res.push((format!("install script {i}.{j}"), install_script(&spec)));
        }
    }
    let launch = LaunchSpec {
        python_args: [
            "-m",
            "sgl_jax.launch_server",
            "--model-path",
            "Qwen/Qwen3-8B",
            "--port",
            "30000",
            "--api-key",
            "k3y",
            "--chunked-prefill-size=2048",
        ]
        .map(str::to_owned)
        .into(),
        env: BTreeMap::from([
            (
                "JAX_COMPILATION_CACHE_DIR".to_owned(),
                "/tmp/jit cache".to_owned(),
            ),
            ("HF_HOME".to_owned(), "sglprof/hf cache".to_owned()),
        ]),
    };
    res.push(("launch script".to_owned(), launch_script(&launch)));
    res.push(("alive script".to_owned(), alive_script()));
    res.push(("stop script".to_owned(), stop_script()));
    res.push(("server pid script".to_owned(), server_pid_script()));
    let record = profile_session::pyspy::record_args(1234, "raw", "sglprof/py-spy/raw.txt");
    res.push((
        "helper start script".to_owned(),
        helper_start_script("py-spy-raw", "py-spy", &record, true),
    ));
    res.push((
        "helper start script without ptrace".to_owned(),
        helper_start_script(
            "helper",
            "python",
            &["-c".to_owned(), "pass".to_owned()],
            false,
        ),
    ));
    res.push((
        "helper stop script".to_owned(),
        helper_stop_script("py-spy-raw", 20),
    ));
    res.push((
        "wait for traces script".to_owned(),
        wait_for_traces_script("/tmp/sglprof profile", 600),
    ));

    // The report's Reproduction: the workflow of every endpoint, with and
    // without an API key, rendered as the report shows it.
    for (endpoint, api_key) in [("/generate", false), ("/v1/score", true)] {
        let profile = StartProfile {
            output_dir: Some("/tmp/sglprof's profile".into()),
            num_steps: Some(5),
            ..StartProfile::default()
        };
        let steps = ManualSteps {
            setup: Vec::new(),
            workflow: ManualSteps::http_workflow(
                "http://127.0.0.1:30000",
                endpoint,
                &profile,
                4,
                api_key,
                true,
            ),
            download: Vec::new(),
            cleanup: Vec::new(),
        };
        res.push((
            format!("Profiling Workflow of {endpoint}"),
            steps.render().join("\n") + "\n",
        ));
    }
    res
}

/// shellcheck's findings on `script` (as bash), or `None` when it is
/// clean.
fn shellcheck(script: &str) -> Option<String> {
    let mut child = Command::new("shellcheck")
        .args(["--shell=bash", "--format=gcc", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("shellcheck runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    if out.status.success() {
        return None;
    }
    Some(String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr))
}

#[test]
fn every_generated_script_and_block_passes_shellcheck() {
    if !crate::outputs::have_tool("shellcheck", "shellcheck") {
        return;
    }
    let mut failures = Vec::new();
    for (name, script) in rendered() {
        assert!(!script.contains("TOK"), "{name} holds a secret");
        if let Some(findings) = shellcheck(&script) {
            let numbered: String = script
                .lines()
                .enumerate()
                .map(|(i, line)| format!("{:4} {line}\n", i + 1))
                .collect();
            failures.push(format!("{name}:\n{findings}\n{numbered}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
