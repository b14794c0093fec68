//! The profiling Job, built from the typed `k8s-openapi` structs.
//!
//! One [`JobConfig`] holds every site-specific value (namespace, image,
//! bucket, accelerator, topology, service account); [`build_job`] never
//! invents one. A config with one variant is a plain Job; with several it is
//! an Indexed Job whose pod `i` runs variant `i`.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{
    CSIVolumeSource, Capabilities, Container, EmptyDirVolumeSource, EnvVar, PodSpec,
    PodTemplateSpec, ResourceRequirements, SecurityContext, Toleration, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::Error;

/// The label every sglprof Job and pod carries, with the run id as value.
pub const RUN_LABEL: &str = "sglprof.dev/run-id";
/// The container's name in the pod.
pub const CONTAINER: &str = "sglprof";
/// Where the GCS FUSE volume is mounted in the container.
pub const BUCKET_MOUNT: &str = "/bucket";
/// Where the run folders are written in the container (an emptyDir).
pub const RUNS_MOUNT: &str = "/runs";

/// Everything the Job is made of.
#[derive(Clone, Debug, PartialEq)]
pub struct JobConfig {
    /// The Job's name, unique per run (see [`job_name`]).
    pub name: String,
    pub run_id: String,
    pub namespace: String,
    pub image: String,
    /// The Kubernetes service account bound to a Google service account
    /// through Workload Identity; it reads the models and writes the runs.
    pub service_account: String,
    /// The bucket mounted with GCS FUSE at [`BUCKET_MOUNT`].
    pub bucket: String,
    /// `cloud.google.com/gke-tpu-accelerator`, e.g. `tpu-v6e-slice`.
    pub accelerator: String,
    /// `cloud.google.com/gke-tpu-topology`, e.g. `1x1`.
    pub topology: String,
    /// `google.com/tpu` requested and limited per pod.
    pub tpu_chips: u32,
    /// Schedule on spot nodes (node selector and toleration).
    pub spot: bool,
    pub cpu: String,
    pub memory: String,
    /// Size limit of the in-memory `/dev/shm`; unbounded when `None`.
    pub shm_size: Option<String>,
    pub backoff_limit: i32,
    pub active_deadline_seconds: i64,
    pub ttl_seconds_after_finished: i32,
    /// Pods of an Indexed Job running at once.
    pub parallelism: i32,
    /// The container's arguments (after the image's entrypoint), one list
    /// per variant. Never empty.
    pub variants: Vec<Vec<String>>,
    pub env: Vec<(String, String)>,
}

/// A Job name from a run id: lowercase, `[a-z0-9-]`, at most 52 characters
/// (Indexed Job pods append `-<index>-<suffix>` to it and pod names must
/// stay within 63).
pub fn job_name(run_id: &str) -> String {
    let mut name: String = format!("sglprof-{run_id}")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    name.truncate(52);
    while name.ends_with('-') {
        name.pop();
    }
    name
}

fn quantity(text: &str) -> Quantity {
    Quantity(text.to_owned())
}

/// The Job for `config`.
pub fn build_job(config: &JobConfig) -> Result<Job, Error> {
    if config.variants.is_empty() {
        return Err(Error::Config("a job needs at least one variant".into()));
    }
    let labels = BTreeMap::from([
        ("app.kubernetes.io/name".to_owned(), "sglprof".to_owned()),
        (
            "app.kubernetes.io/managed-by".to_owned(),
            "sglprof".to_owned(),
        ),
        (RUN_LABEL.to_owned(), config.run_id.clone()),
    ]);
    // The GCS FUSE sidecar is injected only into pods that ask for it; its
    // limits of 0 let it use what the node has (large trace files).
    let annotations = BTreeMap::from([
        ("gke-gcsfuse/volumes".to_owned(), "true".to_owned()),
        ("gke-gcsfuse/cpu-limit".to_owned(), "0".to_owned()),
        ("gke-gcsfuse/memory-limit".to_owned(), "0".to_owned()),
        (
            "gke-gcsfuse/ephemeral-storage-limit".to_owned(),
            "0".to_owned(),
        ),
    ]);

    let mut node_selector = BTreeMap::from([
        (
            "cloud.google.com/gke-tpu-accelerator".to_owned(),
            config.accelerator.clone(),
        ),
        (
            "cloud.google.com/gke-tpu-topology".to_owned(),
            config.topology.clone(),
        ),
    ]);
    let mut tolerations = vec![Toleration {
        key: Some("google.com/tpu".into()),
        operator: Some("Exists".into()),
        effect: Some("NoSchedule".into()),
        ..Toleration::default()
    }];
    if config.spot {
        node_selector.insert("cloud.google.com/gke-spot".into(), "true".into());
        tolerations.push(Toleration {
            key: Some("cloud.google.com/gke-spot".into()),
            operator: Some("Equal".into()),
            value: Some("true".into()),
            effect: Some("NoSchedule".into()),
            ..Toleration::default()
        });
    }

    let resources = BTreeMap::from([
        (
            "google.com/tpu".to_owned(),
            quantity(&config.tpu_chips.to_string()),
        ),
        ("cpu".to_owned(), quantity(&config.cpu)),
        ("memory".to_owned(), quantity(&config.memory)),
    ]);

    let indexed = config.variants.len() > 1;
    let (command, args) = if indexed {
        (
            Some(vec!["/bin/sh".to_owned(), "-c".to_owned()]),
            Some(vec![index_script(&config.variants)]),
        )
    } else {
        (None, Some(config.variants[0].clone()))
    };
    let mut env: Vec<EnvVar> = config
        .env
        .iter()
        .map(|(name, value)| EnvVar {
            name: name.clone(),
            value: Some(value.clone()),
            ..EnvVar::default()
        })
        .collect();
    env.push(EnvVar {
        name: "SGLPROF_BUCKET".into(),
        value: Some(config.bucket.clone()),
        ..EnvVar::default()
    });

    let container = Container {
        name: CONTAINER.into(),
        image: Some(config.image.clone()),
        image_pull_policy: Some("IfNotPresent".into()),
        command,
        args,
        env: Some(env),
        working_dir: Some(RUNS_MOUNT.into()),
        resources: Some(ResourceRequirements {
            requests: Some(resources.clone()),
            limits: Some(resources),
            ..ResourceRequirements::default()
        }),
        // py-spy reads the memory of the server's processes.
        security_context: Some(SecurityContext {
            capabilities: Some(Capabilities {
                add: Some(vec!["SYS_PTRACE".into()]),
                drop: None,
            }),
            ..SecurityContext::default()
        }),
        volume_mounts: Some(vec![
            VolumeMount {
                name: "dshm".into(),
                mount_path: "/dev/shm".into(),
                ..VolumeMount::default()
            },
            VolumeMount {
                name: "bucket".into(),
                mount_path: BUCKET_MOUNT.into(),
                ..VolumeMount::default()
            },
            VolumeMount {
                name: "runs".into(),
                mount_path: RUNS_MOUNT.into(),
                ..VolumeMount::default()
            },
        ]),
        ..Container::default()
    };

    let volumes = vec![
        Volume {
            name: "dshm".into(),
            empty_dir: Some(EmptyDirVolumeSource {
                medium: Some("Memory".into()),
                size_limit: config.shm_size.as_deref().map(quantity),
            }),
            ..Volume::default()
        },
        Volume {
            name: "bucket".into(),
            csi: Some(CSIVolumeSource {
                driver: "gcsfuse.csi.storage.gke.io".into(),
                volume_attributes: Some(BTreeMap::from([
                    ("bucketName".to_owned(), config.bucket.clone()),
                    ("mountOptions".to_owned(), "implicit-dirs".to_owned()),
                ])),
                ..CSIVolumeSource::default()
            }),
            ..Volume::default()
        },
        Volume {
            name: "runs".into(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Volume::default()
        },
    ];

    let pod = PodSpec {
        restart_policy: Some("Never".into()),
        service_account_name: Some(config.service_account.clone()),
        node_selector: Some(node_selector),
        tolerations: Some(tolerations),
        containers: vec![container],
        volumes: Some(volumes),
        ..PodSpec::default()
    };

    let n = config.variants.len() as i32;
    Ok(Job {
        metadata: ObjectMeta {
            name: Some(config.name.clone()),
            namespace: Some(config.namespace.clone()),
            labels: Some(labels.clone()),
            ..ObjectMeta::default()
        },
        spec: Some(JobSpec {
            backoff_limit: Some(config.backoff_limit),
            active_deadline_seconds: Some(config.active_deadline_seconds),
            ttl_seconds_after_finished: Some(config.ttl_seconds_after_finished),
            completions: Some(n),
            parallelism: Some(if indexed {
                config.parallelism.clamp(1, n)
            } else {
                1
            }),
            completion_mode: Some(if indexed { "Indexed" } else { "NonIndexed" }.into()),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    annotations: Some(annotations),
                    ..ObjectMeta::default()
                }),
                spec: Some(pod),
            },
            ..JobSpec::default()
        }),
        status: None,
    })
}

/// The shell script of an Indexed Job's container: runs the entrypoint with
/// the arguments of variant `$JOB_COMPLETION_INDEX`.
fn index_script(variants: &[Vec<String>]) -> String {
    let mut script = String::from("case \"$JOB_COMPLETION_INDEX\" in\n");
    for (idx, args) in variants.iter().enumerate() {
        let words: Vec<String> = args.iter().map(|it| shell_quote(it)).collect();
        script.push_str(&format!(
            "  {idx}) exec {ENTRYPOINT} {} ;;\n",
            words.join(" ")
        ));
    }
    script.push_str("  *) echo \"no variant $JOB_COMPLETION_INDEX\" >&2; exit 2 ;;\nesac\n");
    script
}

/// The image's entrypoint (see [`crate::dockerfile`]).
pub const ENTRYPOINT: &str = "/usr/local/bin/sglprof";

/// Quotes a word for POSIX `sh` when it needs it.
pub fn shell_quote(word: &str) -> String {
    if !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@%+".contains(c))
    {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}

/// The Job as YAML, the form `kubectl apply -f` takes.
pub fn to_yaml(job: &Job) -> Result<String, Error> {
    serde_saphyr::to_string(job).map_err(|e| Error::Config(format!("cannot write YAML: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_names_are_dns_labels() {
        assert_eq!(
            job_name("20261130T210000Z-score"),
            "sglprof-20261130t210000z-score"
        );
        let long = job_name(&"x_".repeat(60));
        assert!(long.len() <= 52);
        assert!(!long.ends_with('-'));
    }

    #[test]
    fn quoting() {
        assert_eq!(shell_quote("--concurrency"), "--concurrency");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
        assert_eq!(shell_quote(""), "''");
    }
}
