//! Named baselines and the history listing against the emulator: promote a
//! run, fetch it back verified, refuse a tampered baseline, pick the last N
//! runs of a configuration.

use gcs_artifacts::{
    BaselineAddress, BaselineRecord, DownloadOptions, Error, GsUrl, RunAddress, RunFilter, RunKind,
    UploadOptions,
};

use crate::{address, assert_same_tree, bucket, client, sample_run, write};

fn upload_opts() -> UploadOptions {
    UploadOptions {
        overwrite: false,
        remote_files: Vec::new(),
        created_at: "2026-02-05T21:00:00Z".to_owned(),
    }
}

#[test]
fn baseline_addresses() {
    let addr = BaselineAddress::new(
        "b-1",
        "/sglang-profiles/",
        "Qwen/Qwen3-0.6B",
        "TPU v6e-1 (single chip)",
        "main",
    )
    .unwrap();
    assert_eq!(
        addr.folder(),
        "sglang-profiles/baselines/Qwen-Qwen3-0.6B/TPU-v6e-1-single-chip/main/"
    );
    assert_eq!(
        addr.url().to_string(),
        "gs://b-1/sglang-profiles/baselines/Qwen-Qwen3-0.6B/TPU-v6e-1-single-chip/main/"
    );
    assert_eq!(
        gcs_artifacts::slug("CPU (local, 2 cores)"),
        "CPU-local-2-cores"
    );
    assert_eq!(gcs_artifacts::slug("../"), "");
    for bad in ["", "a/b", "..", "x y"] {
        let err = BaselineAddress::new("b-1", "p", "m", "a", bad).unwrap_err();
        assert!(
            err.to_string().starts_with("invalid baseline name"),
            "{err}"
        );
    }
    assert!(BaselineAddress::new("b-1", "p", "///", "a", "main").is_err());
}

#[tokio::test]
async fn promote_then_fetch_verified() {
    let client = client().await;
    let bucket = bucket(&client, "baseline").await;
    let run = tempfile::tempdir().unwrap();
    sample_run(run.path(), 200_000);
    let source = address(&bucket, "r1");
    gcs_artifacts::upload_run(&client, run.path(), &source, &upload_opts())
        .await
        .unwrap();

    let addr = BaselineAddress::new(
        &bucket,
        "sglang-profiles",
        "Qwen/Qwen3-0.6B",
        "TPU v6e-1 (single chip)",
        "main",
    )
    .unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let url = GsUrl::parse(&source.url()).unwrap();
    let promoted =
        gcs_artifacts::promote(&client, &url, &addr, scratch.path(), "2026-02-06T08:00:00Z")
            .await
            .unwrap();
    assert_eq!(promoted.url, addr.url().to_string());
    assert_eq!(promoted.objects, 7); // the six files and baseline.json

    let back = tempfile::tempdir().unwrap();
    let got = gcs_artifacts::fetch_baseline(&client, &addr, back.path())
        .await
        .unwrap();
    assert_eq!(got.downloaded, 7);
    assert_eq!(got.manifest.run_id, "r1");
    assert_eq!(
        got.manifest.metadata_field("model"),
        Some("Qwen/Qwen3-0.6B")
    );
    let record: BaselineRecord =
        serde_json::from_slice(&std::fs::read(back.path().join("baseline.json")).unwrap()).unwrap();
    assert_eq!(record.source, source.url());
    std::fs::remove_file(back.path().join("baseline.json")).unwrap();
    std::fs::remove_file(back.path().join("manifest.json")).unwrap();
    assert_same_tree(run.path(), back.path());

    // A baseline object changed behind the manifest's back is refused and
    // leaves nothing half-written.
    client
        .upload_bytes(
            &bucket,
            &format!("{}report.md", addr.folder()),
            b"# tampered\n".to_vec(),
        )
        .await
        .unwrap();
    let again = tempfile::tempdir().unwrap();
    let err = gcs_artifacts::fetch_baseline(&client, &addr, again.path())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::ChecksumMismatch { .. }), "{err}");
    assert!(!again.path().join("report.md").exists());
    assert!(!again.path().join("manifest.json").exists());

    // A name nobody promoted.
    let missing = BaselineAddress::new(&bucket, "sglang-profiles", "m", "a", "nope").unwrap();
    let err = gcs_artifacts::fetch_baseline(&client, &missing, again.path())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NoManifest { .. }), "{err}");
    let _ = DownloadOptions { overwrite: false };
}

#[tokio::test]
async fn last_runs_of_one_configuration() {
    let client = client().await;
    let bucket = bucket(&client, "history").await;
    let upload = |date: &'static str, id: &'static str, kind: RunKind, model: &'static str| {
        let client = client.clone();
        let bucket = bucket.clone();
        async move {
            let run = tempfile::tempdir().unwrap();
            write(
                run.path(),
                "inputs/run_metadata.json",
                format!(
                    r#"{{"schema":"sglprof.run-metadata/1","model":"{model}","endpoint":"/v1/score","hardware":"TPU v6e-1"}}"#
                )
                .as_bytes(),
            );
            write(run.path(), "report.md", id.as_bytes());
            let addr = RunAddress::new(&bucket, "sglang-profiles", kind, date, id).unwrap();
            gcs_artifacts::upload_run(&client, run.path(), &addr, &upload_opts())
                .await
                .unwrap();
            addr.url()
        }
    };
    let n1 = upload("2026-02-01", "n1", RunKind::Nightly, "m").await;
    let n2 = upload("2026-02-02", "n2", RunKind::Nightly, "m").await;
    let n3 = upload("2026-02-03", "n3", RunKind::Nightly, "m").await;
    upload("2026-02-04", "other-model", RunKind::Nightly, "x").await;
    upload("2026-02-05", "manual", RunKind::Manual, "m").await;
    let filter = RunFilter {
        model: Some("m".to_owned()),
        hardware: Some("TPU v6e-1".to_owned()),
        endpoint: Some("/v1/score".to_owned()),
    };
    let urls = |runs: Vec<gcs_artifacts::RunSummary>| -> Vec<String> {
        runs.into_iter().map(|r| r.url).collect()
    };
    let got = gcs_artifacts::last_runs(
        &client,
        &bucket,
        "sglang-profiles",
        RunKind::Nightly,
        &filter,
        None,
        2,
    )
    .await
    .unwrap();
    assert_eq!(urls(got), [n3.clone(), n2.clone()]);
    // The candidate itself is never its own history.
    let got = gcs_artifacts::last_runs(
        &client,
        &bucket,
        "sglang-profiles",
        RunKind::Nightly,
        &filter,
        Some(&n3),
        5,
    )
    .await
    .unwrap();
    assert_eq!(urls(got), [n2, n1]);
}
