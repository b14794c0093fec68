//! `cargo xtask compare` on archived runs: `gs://` run folders, a named
//! baseline (`--baseline`, after `artifacts promote`) and the history rule
//! (`--history N`), through the real command line against the real GCS
//! emulator the gcs-artifacts tests use (the same harness file).

#![allow(clippy::disallowed_methods)] // Runs the xtask binary.

use std::path::Path;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

use crate::compare::{read_json, slowed_copy, small};

#[path = "../../../crates/gcs-artifacts/tests/it/emulator.rs"]
#[allow(dead_code)]
mod emulator;

const MODEL: &str = "Qwen/Qwen3-0.6B";
const HARDWARE: &str = "CPU (local, 2 cores)";

/// The xtask with the emulator's endpoint and no credentials.
fn xtask(args: &[&str]) -> Output {
    let output = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(args)
        .env("SGLPROF_GCS_ENDPOINT", &emulator::shared().endpoint)
        .env_remove("SGLPROF_BUCKET")
        .output()
        .expect("the xtask binary runs");
    eprintln!("{}", String::from_utf8_lossy(&output.stderr));
    output
}

fn ok(output: &Output) {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A fresh bucket, made by `artifacts bucket create`.
fn bucket(tag: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let name = format!(
        "cmp-{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    );
    ok(&xtask(&[
        "artifacts",
        "bucket",
        "create",
        "--bucket",
        &name,
        "--location",
        "US-EAST5",
        "--project",
        "test-project",
        "--gcs-anonymous",
    ]));
    name
}

/// A run folder around a JAX profile folder (`profile`): the profile under
/// artifacts/jax-profile and run metadata naming the configuration.
fn run_folder(dest: &Path, profile: &Path, run_id: &str, date: &str) {
    let jax = dest.join("artifacts/jax-profile");
    for entry in walk(profile) {
        let rel = entry.strip_prefix(profile).unwrap();
        if rel.starts_with("plugins") {
            let to = jax.join(rel);
            std::fs::create_dir_all(to.parent().unwrap()).unwrap();
            std::fs::copy(&entry, to).unwrap();
        }
    }
    std::fs::create_dir_all(dest.join("inputs")).unwrap();
    let meta = serde_json::json!({
        "schema": "sglprof.run-metadata/1",
        "run_id": run_id,
        "date": date,
        "model": MODEL,
        "hardware": HARDWARE,
        "endpoint": "/generate",
    });
    std::fs::write(dest.join("inputs/run_metadata.json"), meta.to_string()).unwrap();
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut res = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            res.extend(walk(&path));
        } else {
            res.push(path);
        }
    }
    res
}

/// Uploads `run` as `kind`; returns its `gs://` address.
fn upload(run: &Path, bucket: &str, kind: &str, run_id: &str, date: &str) -> String {
    ok(&xtask(&[
        "artifacts",
        "upload",
        run.to_str().unwrap(),
        "--bucket",
        bucket,
        "--kind",
        kind,
        "--date",
        date,
        "--run-id",
        run_id,
        "--gcs-anonymous",
    ]));
    format!("gs://{bucket}/sglang-profiles/{kind}/{date}/{run_id}/")
}

fn compare(args: &[&str], out: &Path) -> (Option<i32>, serde_json::Value) {
    let mut all = vec!["compare"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--out", out.to_str().unwrap(), "--gcs-anonymous"]);
    let output = xtask(&all);
    let json = if out.join("compare.json").is_file() {
        read_json(&out.join("compare.json"))
    } else {
        serde_json::Value::Null
    };
    (output.status.code(), json)
}

fn flagged(json: &serde_json::Value) -> Vec<(String, String)> {
    json["operations"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|op| op["verdict"] != "same")
        .map(|op| {
            (
                op["name"].as_str().unwrap().to_owned(),
                op["verdict"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[test]
fn gs_run_folders_and_a_named_baseline() {
    let bucket = bucket("named");
    let dir = tempfile::tempdir().unwrap();
    let (base, slow) = (dir.path().join("base"), dir.path().join("slow"));
    run_folder(&base, &small(), "20261201T0100Z-generate", "2026-12-01");
    let slowed = dir.path().join("slowed-profile");
    let target = slowed_copy(&slowed);
    run_folder(&slow, &slowed, "20261201T0200Z-generate", "2026-12-01");
    let base_url = upload(
        &base,
        &bucket,
        "manual",
        "20261201T0100Z-generate",
        "2026-12-01",
    );
    let slow_url = upload(
        &slow,
        &bucket,
        "manual",
        "20261201T0200Z-generate",
        "2026-12-01",
    );

    // Two archived runs, fetched verified.
    let out = tempfile::tempdir().unwrap();
    let (code, json) = compare(&[&base_url, &base_url], out.path());
    assert_eq!(code, Some(0), "{json}");
    assert_eq!(json["verdict"], "no_change");
    assert_eq!(json["baseline"], base_url.as_str());
    let (code, json) = compare(&[&base_url, &slow_url], out.path());
    assert_eq!(code, Some(1), "{json}");
    assert_eq!(flagged(&json), [(target.clone(), "slower".to_owned())]);

    // Promoted as `main`, then found from the candidate's model and
    // hardware alone.
    ok(&xtask(&[
        "artifacts",
        "promote",
        &base_url,
        "--as",
        "main",
        "--gcs-anonymous",
    ]));
    let bucket_flag = ["--bucket", bucket.as_str()];
    let mut args = vec!["--baseline", "main", slow.to_str().unwrap()];
    args.extend_from_slice(&bucket_flag);
    let (code, json) = compare(&args, out.path());
    assert_eq!(code, Some(1), "{json}");
    assert_eq!(
        json["baseline"],
        format!("gs://{bucket}/sglang-profiles/baselines/Qwen-Qwen3-0.6B/CPU-local-2-cores/main/")
    );
    assert_eq!(flagged(&json), [(target, "slower".to_owned())]);
    let mut args = vec!["--baseline", "main", base.to_str().unwrap()];
    args.extend_from_slice(&bucket_flag);
    let (code, json) = compare(&args, out.path());
    assert_eq!((code, &json["verdict"]), (Some(0), &"no_change".into()));

    // A baseline that was never promoted: one line, exit 2, nothing written.
    let out2 = tempfile::tempdir().unwrap();
    let mut args = vec!["--baseline", "nightly-best", base.to_str().unwrap()];
    args.extend_from_slice(&bucket_flag);
    let (code, json) = compare(&args, out2.path());
    assert_eq!(code, Some(2));
    assert!(json.is_null());
}

/// `compare --history 3 RUN --bucket BUCKET` and `more`.
fn history<'a>(run: &'a Path, bucket: &'a str, more: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["--history", "3", run.to_str().unwrap(), "--bucket", bucket];
    args.extend_from_slice(more);
    args
}

#[test]
fn history_of_archived_nightly_runs() {
    let bucket = bucket("history");
    let dir = tempfile::tempdir().unwrap();
    for night in 1..=3 {
        let run = dir.path().join(format!("night{night}"));
        let id = format!("2026112{night}T0300Z-generate");
        let date = format!("2026-11-2{night}");
        run_folder(&run, &small(), &id, &date);
        upload(&run, &bucket, "nightly", &id, &date);
    }
    // A manual run of the same configuration is not part of the history.
    let slowed = dir.path().join("slowed-profile");
    let target = slowed_copy(&slowed);
    let manual = dir.path().join("manual");
    run_folder(&manual, &slowed, "20261130T0900Z-generate", "2026-11-30");
    upload(
        &manual,
        &bucket,
        "manual",
        "20261130T0900Z-generate",
        "2026-11-30",
    );

    let cand = dir.path().join("cand");
    run_folder(&cand, &slowed, "20261201T0300Z-generate", "2026-12-01");
    let out = tempfile::tempdir().unwrap();
    let (code, json) = compare(&history(&cand, &bucket, &[]), out.path());
    assert_eq!(code, Some(1), "{json}");
    let baseline = json["baseline"].as_str().unwrap();
    assert!(baseline.starts_with("history of 3 runs: "), "{baseline}");
    assert!(!baseline.contains("/manual/"), "{baseline}");
    assert!(
        flagged(&json).contains(&(target, "slower".to_owned())),
        "{json}"
    );

    let same = dir.path().join("same");
    run_folder(&same, &small(), "20261201T0400Z-generate", "2026-12-01");
    let (code, json) = compare(&history(&same, &bucket, &[]), out.path());
    assert_eq!(
        (code, &json["verdict"]),
        (Some(0), &"no_change".into()),
        "{json}"
    );

    // Another model has no history here.
    let (code, _) = compare(
        &history(&same, &bucket, &["--model", "other/model"]),
        tempfile::tempdir().unwrap().path(),
    );
    assert_eq!(code, Some(2));
}
