//! Integration tests of the artifact store against a real GCS emulator on
//! loopback (see `emulator.rs`). Each test uses its own bucket.

mod baseline;
mod emulator;
mod store;

use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};

use gcs_artifacts::{Auth, Client, ClientConfig, DEFAULT_RESUMABLE_THRESHOLD, RunAddress, RunKind};

/// A client for `endpoint` as the tests use it: anonymous, no retries.
async fn client_for(endpoint: &str, resumable_threshold: usize) -> Client {
    Client::new(ClientConfig {
        endpoint: endpoint.to_owned(),
        auth: Auth::Anonymous,
        max_attempts: 1,
        resumable_threshold,
        concurrency: 4,
        progress: false,
    })
    .await
    .unwrap()
}

async fn client() -> Client {
    client_for(&emulator::shared().endpoint, DEFAULT_RESUMABLE_THRESHOLD).await
}

/// A fresh bucket on the shared emulator.
async fn bucket(client: &Client, tag: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let name = format!("t-{tag}-{}", N.fetch_add(1, Ordering::Relaxed));
    gcs_artifacts::create_bucket(client, "test-project", &name, "US-EAST5", "sglang-profiles")
        .await
        .unwrap();
    name
}

fn address(bucket: &str, run_id: &str) -> RunAddress {
    RunAddress::new(
        bucket,
        "sglang-profiles",
        RunKind::Manual,
        "2026-02-05",
        run_id,
    )
    .unwrap()
}

/// Deterministic bytes that do not compress or repeat trivially.
fn pseudo_random(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

fn write(root: &Path, rel: &str, bytes: &[u8]) {
    let path = root.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

/// A small run folder in the shape the session drivers write.
fn sample_run(root: &Path, big: usize) {
    write(
        root,
        "inputs/run_metadata.json",
        br#"{"schema":"sglprof.run-metadata/1","run_id":"r1","model":"Qwen/Qwen3-0.6B","endpoint":"/v1/score","hardware":"TPU v6e-1 (single chip)"}"#,
    );
    write(root, "report.md", b"# Report\n\nnothing to see\n");
    write(root, "summary.json", b"{}\n");
    write(root, "logs/empty.log", b"");
    write(
        root,
        "artifacts/raw/host/plugins/profile/2026_02_05_20_15_30/t1v-n-1-w-0.xplane.pb",
        &pseudo_random(big, 7),
    );
    write(
        root,
        "artifacts/raw/host/with space.trace.json.gz",
        &pseudo_random(70_001, 9),
    );
}

/// Every file under `a` exists under `b` with the same bytes, and the other
/// way round.
fn assert_same_tree(a: &Path, b: &Path) {
    let list = |root: &Path| -> Vec<(String, Vec<u8>)> {
        gcs_artifacts::local_files(root)
            .unwrap()
            .into_iter()
            .map(|(rel, path)| (rel, std::fs::read(path).unwrap()))
            .collect()
    };
    let (la, lb) = (list(a), list(b));
    assert_eq!(
        la.iter().map(|x| &x.0).collect::<Vec<_>>(),
        lb.iter().map(|x| &x.0).collect::<Vec<_>>()
    );
    for ((name, x), (_, y)) in la.iter().zip(&lb) {
        assert!(x == y, "{name} differs after the round trip");
    }
}
