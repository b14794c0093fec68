//! The Job manifest and the Dockerfile: snapshots and the elements GKE needs.
#![allow(clippy::disallowed_methods)] // Runs the pod's script with sh.

use k8s_job::{ImageConfig, build_job, render_dockerfile, to_yaml};
use serde_json::Value;

use crate::{args, config};

#[test]
fn plain_job_yaml() {
    let job = build_job(&config(vec![args(&[
        "profile",
        "--local",
        "--endpoint",
        "score",
        "--py-spy",
    ])]))
    .unwrap();
    insta::assert_snapshot!(to_yaml(&job).unwrap());
}

#[test]
fn plain_job_has_every_element() {
    let job = build_job(&config(vec![args(&["profile"])])).unwrap();
    let v: Value = serde_json::to_value(&job).unwrap();
    let spec = &v["spec"];
    assert_eq!(spec["backoffLimit"], 0);
    assert_eq!(spec["activeDeadlineSeconds"], 3600);
    assert_eq!(spec["ttlSecondsAfterFinished"], 86400);
    assert_eq!(spec["completionMode"], "NonIndexed");
    let pod = &spec["template"]["spec"];
    assert_eq!(
        spec["template"]["metadata"]["annotations"]["gke-gcsfuse/volumes"],
        "true"
    );
    assert_eq!(
        pod["nodeSelector"]["cloud.google.com/gke-tpu-accelerator"],
        "tpu-v6e-slice"
    );
    assert_eq!(
        pod["nodeSelector"]["cloud.google.com/gke-tpu-topology"],
        "1x1"
    );
    assert_eq!(pod["nodeSelector"]["cloud.google.com/gke-spot"], "true");
    assert_eq!(pod["serviceAccountName"], "sglprof-runner");
    assert_eq!(pod["restartPolicy"], "Never");
    let tolerations = pod["tolerations"].as_array().unwrap();
    assert!(
        tolerations
            .iter()
            .any(|t| t["key"] == "cloud.google.com/gke-spot")
    );
    assert!(
        tolerations
            .iter()
            .any(|t| t["key"] == "google.com/tpu" && t["operator"] == "Exists")
    );
    let container = &pod["containers"][0];
    assert_eq!(container["resources"]["requests"]["google.com/tpu"], "1");
    assert_eq!(container["resources"]["limits"]["google.com/tpu"], "1");
    assert_eq!(
        container["securityContext"]["capabilities"]["add"][0],
        "SYS_PTRACE"
    );
    let volumes = pod["volumes"].as_array().unwrap();
    let shm = volumes.iter().find(|v| v["name"] == "dshm").unwrap();
    assert_eq!(shm["emptyDir"]["medium"], "Memory");
    let bucket = volumes.iter().find(|v| v["name"] == "bucket").unwrap();
    assert_eq!(bucket["csi"]["driver"], "gcsfuse.csi.storage.gke.io");
    assert_eq!(
        bucket["csi"]["volumeAttributes"]["bucketName"],
        "example-bucket"
    );
    let mounts = container["volumeMounts"].as_array().unwrap();
    assert!(mounts.iter().any(|m| m["mountPath"] == "/dev/shm"));
}

#[test]
fn no_spot_means_no_spot_selector() {
    let mut cfg = config(vec![args(&["profile"])]);
    cfg.spot = false;
    let v = serde_json::to_value(build_job(&cfg).unwrap()).unwrap();
    let pod = &v["spec"]["template"]["spec"];
    assert!(
        pod["nodeSelector"]
            .get("cloud.google.com/gke-spot")
            .is_none()
    );
    assert_eq!(pod["tolerations"].as_array().unwrap().len(), 1);
}

#[test]
fn sweep_is_one_indexed_job() {
    let axes = vec![profile_session::sweep::parse_axis("concurrency=1,4,16").unwrap()];
    let variants: Vec<Vec<String>> = profile_session::sweep::variants(&axes)
        .unwrap()
        .iter()
        .map(|variant| {
            let mut words = args(&["profile", "--local", "--out"]);
            words.push(format!(
                "/runs/{}",
                profile_session::sweep::variant_slug(variant)
            ));
            for (flag, value) in variant {
                words.push(format!("--{flag}"));
                words.push(value.clone());
            }
            words
        })
        .collect();
    let job = build_job(&config(variants)).unwrap();
    let v = serde_json::to_value(&job).unwrap();
    assert_eq!(v["spec"]["completionMode"], "Indexed");
    assert_eq!(v["spec"]["completions"], 3);
    assert_eq!(v["spec"]["parallelism"], 2);
    let script = v["spec"]["template"]["spec"]["containers"][0]["args"][0]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(script.contains("2) exec /usr/local/bin/sglprof profile --local --out /runs/concurrency-16 --concurrency 16 ;;"), "{script}");
    insta::assert_snapshot!(to_yaml(&job).unwrap());
}

#[test]
fn the_script_runs_the_variant_of_its_index() {
    // The shell script is executed by a real sh with the entrypoint replaced
    // by echo: index 1 must run exactly variant 1's words.
    let variants = vec![args(&["a", "it's"]), args(&["b", "two words", "$HOME"])];
    let job = build_job(&config(variants)).unwrap();
    let script = job.spec.unwrap().template.spec.unwrap().containers[0]
        .args
        .clone()
        .unwrap()
        .remove(0)
        .replace(k8s_job::job::ENTRYPOINT, "printf '%s|'");
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(&script)
        .env("JOB_COMPLETION_INDEX", "1")
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "b|two words|$HOME|");
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(&script)
        .env("JOB_COMPLETION_INDEX", "7")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn dockerfile() {
    let text = render_dockerfile(&ImageConfig {
        rust_image: "rust:1.95-slim-bookworm".into(),
        python_image: "python:3.12-slim-bookworm".into(),
        sglang_jax_version: "0.0.1.post1".into(),
        device: "tpu".into(),
    });
    insta::assert_snapshot!(text);
}

#[test]
fn empty_variants_are_refused() {
    let err = build_job(&config(Vec::new())).unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid job: a job needs at least one variant"
    );
}
