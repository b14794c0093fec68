//! Upload, download, list and bucket setup against the emulator, including
//! the unhappy paths: checksum mismatch, interrupted upload, missing object,
//! missing bucket, differing local files.

use gcs_artifacts::{
    DownloadOptions, Error, GsUrl, Manifest, ManifestEntry, RunKind, UploadOptions,
    remote::RemoteFile,
};

use crate::{
    address, assert_same_tree, bucket, client, client_for, emulator, pseudo_random, sample_run,
    write,
};

fn upload_opts() -> UploadOptions {
    UploadOptions {
        overwrite: false,
        remote_files: Vec::new(),
        created_at: "2026-02-05T21:00:00Z".to_owned(),
    }
}

const KEEP: DownloadOptions = DownloadOptions { overwrite: false };

#[tokio::test]
async fn round_trip_is_byte_for_byte() {
    // 1 MiB threshold, so the 3 MiB trace goes by resumable upload and the
    // rest by multipart.
    let client = client_for(&emulator::shared().endpoint, 1 << 20).await;
    let bucket = bucket(&client, "roundtrip").await;
    let run = tempfile::tempdir().unwrap();
    sample_run(run.path(), 3 << 20);
    let addr = address(&bucket, "r1");

    let up = gcs_artifacts::upload_run(&client, run.path(), &addr, &upload_opts())
        .await
        .unwrap();
    assert_eq!(
        (up.uploaded, up.skipped, up.already_complete),
        (6, 0, false)
    );
    assert_eq!(
        up.url,
        format!("gs://{bucket}/sglang-profiles/manual/2026-02-05/r1/")
    );

    let dest = tempfile::tempdir().unwrap();
    let down =
        gcs_artifacts::download_run(&client, &GsUrl::parse(&up.url).unwrap(), dest.path(), KEEP)
            .await
            .unwrap();
    assert_eq!((down.downloaded, down.already_present), (6, 0));
    assert_same_tree(run.path(), dest.path());
    assert_eq!(
        down.manifest.metadata_field("model"),
        Some("Qwen/Qwen3-0.6B")
    );
    assert_eq!(down.manifest.total_bytes, down.bytes_downloaded);

    // The manifest is written next to the files, identical to the archived one.
    let local = std::fs::read(dest.path().join("manifest.json")).unwrap();
    let remote = client
        .read_bytes(&bucket, &addr.manifest_name())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(local, remote);
    let manifest = Manifest::from_json("local", &local).unwrap();
    let digest = gcs_artifacts::digest_file(&run.path().join("report.md")).unwrap();
    assert!(
        manifest
            .objects
            .contains(&ManifestEntry::new("report.md", &digest))
    );

    // Everything is in place: nothing moves the second time, either way.
    let again = gcs_artifacts::upload_run(&client, run.path(), &addr, &upload_opts())
        .await
        .unwrap();
    assert!(again.already_complete);
    let again =
        gcs_artifacts::download_run(&client, &GsUrl::parse(&up.url).unwrap(), dest.path(), KEEP)
            .await
            .unwrap();
    assert_eq!((again.downloaded, again.already_present), (0, 6));

    // A downloaded folder uploads as the same run.
    let same = gcs_artifacts::upload_run(&client, dest.path(), &addr, &upload_opts())
        .await
        .unwrap();
    assert!(same.already_complete);
}

#[tokio::test]
async fn large_files_take_the_resumable_path() {
    // At the client's default 16 MiB threshold, a 17 MiB file round-trips
    // through the emulator on port 80.
    let client = client().await;
    let bucket = bucket(&client, "resumable").await;
    let run = tempfile::tempdir().unwrap();
    write(run.path(), "big.xplane.pb", &pseudo_random(17 << 20, 3));
    let addr = address(&bucket, "big");
    gcs_artifacts::upload_run(&client, run.path(), &addr, &upload_opts())
        .await
        .unwrap();
    let dest = tempfile::tempdir().unwrap();
    gcs_artifacts::download_run(
        &client,
        &GsUrl::parse(&addr.url()).unwrap(),
        dest.path(),
        KEEP,
    )
    .await
    .unwrap();
    assert_same_tree(run.path(), dest.path());

    // Proof that the threshold decides the protocol: on an emulator that is
    // not on port 80 a resumable upload cannot reach the session URL (the
    // client's Host header drops the port), while single-shot uploads work.
    let high = client_for(&emulator::on_high_port().endpoint, 1 << 20).await;
    let high_bucket = bucket_on(&high, "high").await;
    let small = tempfile::tempdir().unwrap();
    write(small.path(), "small.bin", &pseudo_random(1000, 1));
    let addr = address(&high_bucket, "small");
    gcs_artifacts::upload_run(&high, small.path(), &addr, &upload_opts())
        .await
        .unwrap();
    let large = tempfile::tempdir().unwrap();
    write(large.path(), "large.bin", &pseudo_random((1 << 20) + 1, 2));
    let err = gcs_artifacts::upload_run(
        &high,
        large.path(),
        &address(&high_bucket, "large"),
        &upload_opts(),
    )
    .await
    .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.starts_with(&format!(
            "failed to upload gs://{high_bucket}/sglang-profiles/manual/2026-02-05/large/large.bin"
        )),
        "{msg}"
    );
    assert!(
        msg.contains("uploadType=resumable") && msg.contains("cannot connect"),
        "{msg}"
    );
}

async fn bucket_on(client: &gcs_artifacts::Client, name: &str) -> String {
    gcs_artifacts::create_bucket(client, "test-project", name, "US", "sglang-profiles")
        .await
        .unwrap();
    name.to_owned()
}

#[tokio::test]
async fn interrupted_upload_resumes_with_what_is_missing() {
    let client = client().await;
    let bucket = bucket(&client, "resume").await;
    let run = tempfile::tempdir().unwrap();
    sample_run(run.path(), 200_000);
    let addr = address(&bucket, "r2");

    // The first attempt died after two files: they are in the bucket, the
    // manifest is not.
    let bar = indicatif::ProgressBar::hidden();
    for rel in ["report.md", "artifacts/raw/host/with space.trace.json.gz"] {
        let path = run.path().join(rel);
        let digest = gcs_artifacts::digest_file(&path).unwrap();
        client
            .upload_file(&bucket, &addr.object_name(rel), &path, &digest, &bar)
            .await
            .unwrap();
    }
    let listing = gcs_artifacts::list_runs(&client, &bucket, "sglang-profiles")
        .await
        .unwrap();
    assert!(listing.runs.is_empty());
    assert_eq!(listing.incomplete, vec![addr.url()]);
    let err = gcs_artifacts::download_run(
        &client,
        &GsUrl::parse(&addr.url()).unwrap(),
        run.path(),
        KEEP,
    )
    .await
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "{} has no manifest.json: the run is incomplete or the address is wrong",
            addr.url()
        )
    );

    let up = gcs_artifacts::upload_run(&client, run.path(), &addr, &upload_opts())
        .await
        .unwrap();
    assert_eq!((up.uploaded, up.skipped), (4, 2));

    let listing = gcs_artifacts::list_runs(&client, &bucket, "sglang-profiles")
        .await
        .unwrap();
    assert!(listing.incomplete.is_empty());
    assert_eq!(listing.runs.len(), 1);
    let run_row = &listing.runs[0];
    assert_eq!(
        (
            run_row.run_id.as_str(),
            run_row.model.as_deref(),
            run_row.endpoint.as_deref(),
            run_row.objects
        ),
        ("r2", Some("Qwen/Qwen3-0.6B"), Some("/v1/score"), 6)
    );
}

#[tokio::test]
async fn checksum_mismatch_is_refused_and_leaves_nothing_behind() {
    let client = client().await;
    let bucket = bucket(&client, "mismatch").await;
    let run = tempfile::tempdir().unwrap();
    sample_run(run.path(), 10_000);
    let addr = address(&bucket, "r3");
    gcs_artifacts::upload_run(&client, run.path(), &addr, &upload_opts())
        .await
        .unwrap();

    // Someone replaced an object after the manifest was written.
    let name = addr.object_name("report.md");
    client
        .upload_bytes(&bucket, &name, b"# Tampered\n".to_vec())
        .await
        .unwrap();

    let dest = tempfile::tempdir().unwrap();
    let err = gcs_artifacts::download_run(
        &client,
        &GsUrl::parse(&addr.url()).unwrap(),
        dest.path(),
        KEEP,
    )
    .await
    .unwrap_err();
    let expected = gcs_artifacts::digest_file(&run.path().join("report.md"))
        .unwrap()
        .sha256;
    let actual = gcs_artifacts::digest_bytes(b"# Tampered\n").sha256;
    assert_eq!(
        err.to_string(),
        format!(
            "checksum mismatch for gs://{bucket}/{name}: expected sha256 {expected}, got {actual}"
        )
    );
    assert!(!dest.path().join("report.md").exists());
    let leftovers: Vec<_> = walk(dest.path())
        .into_iter()
        .filter(|p| p.ends_with(".sglprof-part"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // On upload, the service is told the crc32c and the stored object is
    // checked against it: a file that changed after hashing is refused.
    let path = run.path().join("summary.json");
    let stale = gcs_artifacts::digest_bytes(b"something else");
    let err = client
        .upload_file(
            &bucket,
            &addr.object_name("summary.json"),
            &path,
            &stale,
            &indicatif::ProgressBar::hidden(),
        )
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.starts_with(&format!(
            "failed to upload gs://{bucket}/{}: ",
            addr.object_name("summary.json")
        )),
        "{msg}"
    );
    assert!(msg.contains("checksum mismatch"), "{msg}");
}

fn walk(root: &std::path::Path) -> Vec<String> {
    let mut res = Vec::new();
    for entry in std::fs::read_dir(root).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            res.extend(walk(&path));
        } else {
            res.push(path.display().to_string());
        }
    }
    res
}

#[tokio::test]
async fn object_missing_from_the_bucket() {
    let client = client().await;
    let bucket = bucket(&client, "missing").await;
    let run = tempfile::tempdir().unwrap();
    sample_run(run.path(), 1000);
    let addr = address(&bucket, "r4");
    gcs_artifacts::upload_run(&client, run.path(), &addr, &upload_opts())
        .await
        .unwrap();

    // A manifest that lists an object nobody uploaded.
    let bytes = client
        .read_bytes(&bucket, &addr.manifest_name())
        .await
        .unwrap()
        .unwrap();
    let mut manifest = Manifest::from_json("x", &bytes).unwrap();
    manifest.objects.push(ManifestEntry::new(
        "ghost.bin",
        &gcs_artifacts::digest_bytes(b"boo"),
    ));
    client
        .upload_bytes(
            &bucket,
            &addr.manifest_name(),
            manifest.to_json().into_bytes(),
        )
        .await
        .unwrap();

    let dest = tempfile::tempdir().unwrap();
    let err = gcs_artifacts::download_run(
        &client,
        &GsUrl::parse(&addr.url()).unwrap(),
        dest.path(),
        KEEP,
    )
    .await
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "object gs://{bucket}/{} is listed in the manifest but does not exist (404)",
            addr.object_name("ghost.bin")
        )
    );

    // The same for a file the VM claims to have uploaded.
    let opts = UploadOptions {
        remote_files: vec![RemoteFile {
            path: "artifacts/raw/device/x.xplane.pb".to_owned(),
            size: 3,
            sha256: "0".repeat(64),
        }],
        ..upload_opts()
    };
    let err = gcs_artifacts::upload_run(&client, run.path(), &address(&bucket, "r4b"), &opts)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::MissingObject { .. }), "{err}");
}

#[tokio::test]
async fn bucket_that_does_not_exist() {
    let client = client().await;
    let endpoint = &emulator::shared().endpoint;
    let run = tempfile::tempdir().unwrap();
    sample_run(run.path(), 1000);
    let addr = address("no-such-bucket", "r5");
    let expected = format!("bucket no-such-bucket does not exist (404 from {endpoint})");

    let err = gcs_artifacts::upload_run(&client, run.path(), &addr, &upload_opts())
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), expected);
    let err = gcs_artifacts::download_run(
        &client,
        &GsUrl::parse(&addr.url()).unwrap(),
        run.path(),
        KEEP,
    )
    .await
    .unwrap_err();
    assert_eq!(err.to_string(), expected);
    let err = gcs_artifacts::list_runs(&client, "no-such-bucket", "sglang-profiles")
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), expected);
    let err = gcs_artifacts::set_lifecycle(&client, "no-such-bucket", "sglang-profiles")
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), expected);
}

#[tokio::test]
async fn differing_local_files_are_kept_unless_told() {
    let client = client().await;
    let bucket = bucket(&client, "local").await;
    let run = tempfile::tempdir().unwrap();
    sample_run(run.path(), 1000);
    let addr = address(&bucket, "r6");
    gcs_artifacts::upload_run(&client, run.path(), &addr, &upload_opts())
        .await
        .unwrap();
    let url = GsUrl::parse(&addr.url()).unwrap();

    let dest = tempfile::tempdir().unwrap();
    write(dest.path(), "report.md", b"my notes\n");
    let err = gcs_artifacts::download_run(&client, &url, dest.path(), KEEP)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::LocalFileDiffers { .. }), "{err}");
    assert!(err.to_string().starts_with(&format!(
        "refusing to overwrite {}",
        dest.path().join("report.md").display()
    )));
    // Nothing was written before the refusal.
    assert_eq!(walk(dest.path()).len(), 1);
    assert_eq!(
        std::fs::read(dest.path().join("report.md")).unwrap(),
        b"my notes\n"
    );

    let down = gcs_artifacts::download_run(
        &client,
        &url,
        dest.path(),
        DownloadOptions { overwrite: true },
    )
    .await
    .unwrap();
    assert_eq!(down.downloaded, 6);
    assert_same_tree(run.path(), dest.path());
}

#[tokio::test]
async fn a_run_id_is_not_silently_reused() {
    let client = client().await;
    let bucket = bucket(&client, "reuse").await;
    let run = tempfile::tempdir().unwrap();
    sample_run(run.path(), 1000);
    let addr = address(&bucket, "r7");
    gcs_artifacts::upload_run(&client, run.path(), &addr, &upload_opts())
        .await
        .unwrap();

    write(run.path(), "report.md", b"# Report, second edition\n");
    let err = gcs_artifacts::upload_run(&client, run.path(), &addr, &upload_opts())
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "{} is already archived with different content (manifest.json differs)",
            addr.url()
        )
    );

    let opts = UploadOptions {
        overwrite: true,
        ..upload_opts()
    };
    let up = gcs_artifacts::upload_run(&client, run.path(), &addr, &opts)
        .await
        .unwrap();
    assert_eq!((up.uploaded, up.skipped), (1, 5));
    let dest = tempfile::tempdir().unwrap();
    gcs_artifacts::download_run(
        &client,
        &GsUrl::parse(&addr.url()).unwrap(),
        dest.path(),
        KEEP,
    )
    .await
    .unwrap();
    assert_same_tree(run.path(), dest.path());
}

#[tokio::test]
async fn files_uploaded_by_the_vm_join_the_manifest() {
    let client = client().await;
    let bucket = bucket(&client, "vm").await;
    let addr = address(&bucket, "r8");

    // What the VM script does: upload the raw traces into the run folder and
    // print one line per file.
    let vm = tempfile::tempdir().unwrap();
    write(vm.path(), "device/t1v.xplane.pb", &pseudo_random(50_000, 5));
    let bar = indicatif::ProgressBar::hidden();
    let mut listing = String::from("Copying file://device/t1v.xplane.pb ...\n");
    for (rel, path) in gcs_artifacts::local_files(vm.path()).unwrap() {
        let digest = gcs_artifacts::digest_file(&path).unwrap();
        let name = addr.object_name(&format!("artifacts/raw/{rel}"));
        client
            .upload_file(&bucket, &name, &path, &digest, &bar)
            .await
            .unwrap();
        listing.push_str(&format!(
            "sglprof-file {} {} artifacts/raw/{rel}\n",
            digest.size, digest.sha256
        ));
    }

    // The laptop has everything else and writes the manifest.
    let run = tempfile::tempdir().unwrap();
    write(run.path(), "report.md", b"# Report\n");
    let opts = UploadOptions {
        remote_files: gcs_artifacts::remote::parse_vm_listing(&listing).unwrap(),
        ..upload_opts()
    };
    let up = gcs_artifacts::upload_run(&client, run.path(), &addr, &opts)
        .await
        .unwrap();
    assert_eq!(up.uploaded, 1);

    let dest = tempfile::tempdir().unwrap();
    let down = gcs_artifacts::download_run(
        &client,
        &GsUrl::parse(&addr.url()).unwrap(),
        dest.path(),
        KEEP,
    )
    .await
    .unwrap();
    assert_eq!(down.downloaded, 2);
    assert_eq!(
        std::fs::read(dest.path().join("artifacts/raw/device/t1v.xplane.pb")).unwrap(),
        std::fs::read(vm.path().join("device/t1v.xplane.pb")).unwrap()
    );
}

#[tokio::test]
async fn bucket_setup_and_listing_by_date() {
    let client = client().await;
    let bucket = bucket(&client, "setup").await;
    let err =
        gcs_artifacts::create_bucket(&client, "test-project", &bucket, "US", "sglang-profiles")
            .await
            .unwrap_err();
    assert!(matches!(err, Error::BucketExists { .. }), "{err}");
    gcs_artifacts::set_lifecycle(&client, &bucket, "sglang-profiles")
        .await
        .unwrap();

    for (kind, date, id) in [
        (RunKind::Nightly, "2026-02-04", "abc1234"),
        (RunKind::Manual, "2026-02-06", "z"),
    ] {
        let run = tempfile::tempdir().unwrap();
        write(run.path(), "report.md", id.as_bytes());
        let addr =
            gcs_artifacts::RunAddress::new(&bucket, "sglang-profiles", kind, date, id).unwrap();
        gcs_artifacts::upload_run(&client, run.path(), &addr, &upload_opts())
            .await
            .unwrap();
    }
    let listing = gcs_artifacts::list_runs(&client, &bucket, "sglang-profiles")
        .await
        .unwrap();
    let rows: Vec<_> = listing
        .runs
        .iter()
        .map(|r| (r.date.as_str(), r.kind.as_str(), r.model.is_none()))
        .collect();
    assert_eq!(
        rows,
        vec![
            ("2026-02-06", "manual", true),
            ("2026-02-04", "nightly", true)
        ]
    );
    let table = gcs_artifacts::render_listing(&listing).replace(&bucket, "BUCKET");
    insta::assert_snapshot!(table);
}
