//! Integration tests of the k8s-job crate: the manifest and Dockerfile
//! snapshots, and the runner against a fake Kubernetes API on loopback.

mod fake;
mod manifest;
mod runner;

use k8s_job::JobConfig;

/// A config with every site-specific value set to an obviously fake one.
pub fn config(variants: Vec<Vec<String>>) -> JobConfig {
    JobConfig {
        name: k8s_job::job_name("20261130T210000Z-score"),
        run_id: "20261130T210000Z-score".into(),
        namespace: "profiling".into(),
        image: "registry.example/sglprof:test".into(),
        service_account: "sglprof-runner".into(),
        bucket: "example-bucket".into(),
        accelerator: "tpu-v6e-slice".into(),
        topology: "1x1".into(),
        tpu_chips: 1,
        spot: true,
        cpu: "40".into(),
        memory: "150Gi".into(),
        shm_size: Some("64Gi".into()),
        backoff_limit: 0,
        active_deadline_seconds: 3600,
        ttl_seconds_after_finished: 86400,
        parallelism: 2,
        variants,
        env: vec![("SGLPROF_K8S".into(), "1".into())],
    }
}

pub fn args(words: &[&str]) -> Vec<String> {
    words.iter().map(|it| (*it).to_owned()).collect()
}
