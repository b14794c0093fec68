//! Snapshots of what leaves the machine: the exact gcloud argv, the remote
//! scripts, and the dry-run transcript of a whole TPU session.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use tpu_cloud::gcloud::{
    Gcloud, Target, Worker, scp_from_argv, scp_to_argv, ssh_argv, tunnel_argv,
};
use tpu_cloud::lease::{self, Deadlines, NodeRequest};
use tpu_cloud::remote::Remote;
use tpu_cloud::script::{self, InstallSpec, LaunchSpec, PackageSource};
use tpu_cloud::state::Ledger;
use tpu_cloud::{ClientConfig, Location, TpuClient, Transcript};

use crate::support::{VirtualClock, timing};

fn target() -> Target {
    Target {
        project: "sglang-jax-tests-1769450780".to_owned(),
        zone: "us-east5-b".to_owned(),
        node: "sglprof-20260205-184819".to_owned(),
        extra_flags: Vec::new(),
    }
}

fn launch() -> LaunchSpec {
    let python_args = [
        "-m",
        "sgl_jax.launch_server",
        "--model-path",
        "TinyLlama/TinyLlama-1.1B-Chat-v1.0",
        "--host",
        "127.0.0.1",
        "--port",
        "30000",
        "--tp-size",
        "1",
        "--chat-template",
        "{% if x %}it's {{ x }}{% endif %}",
    ];
    LaunchSpec {
        python_args: python_args.map(str::to_owned).into(),
        env: BTreeMap::from([
            ("HF_HOME".to_owned(), "/tmp/hf cache".to_owned()),
            ("JAX_PLATFORMS".to_owned(), "tpu".to_owned()),
        ]),
    }
}

fn lines(argv: &[String]) -> String {
    argv.iter()
        .map(|a| format!("[{a}]"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn gcloud_argv() {
    let t = target();
    let ssh = ssh_argv(&t, Worker::All, "echo \"it's $HOME\"");
    insta::assert_snapshot!("ssh_all_workers", lines(&ssh));
    let scp = scp_from_argv(
        &t,
        0,
        "/tmp/sglprof-profile/run 1",
        Path::new("runs/r1/profile"),
        true,
    );
    insta::assert_snapshot!("scp_from_vm", lines(&scp));
    let up = scp_to_argv(
        &t,
        Path::new("patches/fix.patch"),
        "sglprof/fix.patch",
        false,
    );
    insta::assert_snapshot!("scp_to_vm", lines(&up));
    let tunnel = tunnel_argv(
        &Target {
            extra_flags: vec!["--tunnel-through-iap".to_owned()],
            ..t
        },
        41234,
        30000,
    );
    insta::assert_snapshot!("ssh_tunnel", lines(&tunnel));
}

#[test]
fn install_script_from_pypi() {
    let spec = InstallSpec {
        source: PackageSource::PyPi {
            version: Some("0.0.2".to_owned()),
        },
        extra_packages: vec![],
        cpu: None,
    };
    insta::assert_snapshot!(script::install_script(&spec));
}

#[test]
fn install_script_from_git() {
    let spec = InstallSpec {
        source: PackageSource::Git {
            url: "https://github.com/alexshires/sglang-jax.git".to_owned(),
            commit: "a18802ac38d209eacea09e040969262926781b80".to_owned(),
        },
        extra_packages: vec!["py-spy==0.4.3".to_owned()],
        cpu: None,
    };
    insta::assert_snapshot!(script::install_script(&spec));
}

#[test]
fn launch_and_wait_scripts() {
    insta::assert_snapshot!("launch_script", script::launch_script(&launch()));
    insta::assert_snapshot!(
        "wait_for_traces_script",
        script::wait_for_traces_script("/tmp/sglprof-profile/r1", 600)
    );
    insta::assert_snapshot!(
        "remote_command",
        script::remote_command("echo 'a b' \"$HOME\"")
    );
}

/// A whole `profile --tpu` session rehearsed without credentials: every
/// API call and every gcloud argv, in order; nothing is sent or run.
#[tokio::test]
async fn dry_run_session() {
    let transcript = Transcript::new();
    let config = ClientConfig {
        base_url: tpu_cloud::GOOGLE_API_URL.to_owned(),
        timing: timing(),
    };
    let client = TpuClient::dry_run(config, VirtualClock::new(), transcript.clone());
    let t = target();
    let req = NodeRequest {
        location: Location::new(&t.project, &t.zone),
        node_id: t.node.clone(),
        run_id: "20260205T184819Z_generate_tinyllama".to_owned(),
        accelerator_type: "v6e-1".to_owned(),
        runtime_version: "v6e-ubuntu-2404".to_owned(),
        provisioning: tpu_cloud::Provisioning::OnDemand,
        queued: false,
        queued_valid_for: None,
        labels: BTreeMap::new(),
        metadata: BTreeMap::new(),
        network: tpu_cloud::api::NetworkConfig {
            enable_external_ips: true,
            ..Default::default()
        },
        service_account: None,
        deadlines: Deadlines::production(),
    };
    let mut ledger = Ledger::in_memory(req.planned_state());
    let remote = Arc::new(Remote::new(Gcloud::dry_run(transcript.clone()), t));
    let leased = lease::with_node(
        &client,
        &req,
        &mut ledger,
        false,
        std::future::pending(),
        |_| {
            let remote = remote.clone();
            async move {
                let install = InstallSpec {
                    source: PackageSource::PyPi {
                        version: Some("0.0.2".to_owned()),
                    },
                    extra_packages: vec![],
                    cpu: None,
                };
                remote.install(&install).await?;
                remote.launch(&launch()).await?;
                let _tunnel = remote.tunnel(41234, 30000)?;
                remote.ensure_alive().await?;
                remote
                    .wait_for_traces("/tmp/sglprof-profile/r1", 600)
                    .await?;
                remote
                    .fetch(
                        "/tmp/sglprof-profile/r1",
                        Path::new("runs/r1/profile"),
                        true,
                    )
                    .await?;
                remote
                    .fetch_log(Path::new("runs/r1/logs/server.log"))
                    .await?;
                Ok::<_, tpu_cloud::Error>(())
            }
        },
    )
    .await;
    leased.outcome.unwrap();
    leased.release.unwrap().unwrap();
    let text = transcript.lines();
    insta::assert_snapshot!(text.join("\n"));
}

/// `--api-key` and a git URL with a token: neither reaches the dry-run
/// output nor any gcloud argv (issue 13, item 2). They travel as files.
#[tokio::test]
async fn dry_run_shows_no_secret() {
    let transcript = Transcript::new();
    let remote = Remote::new(Gcloud::dry_run(transcript.clone()), target());
    let url = "https://bob:ghp_T0KEN42@github.com/o/sglang-jax.git";
    let install = InstallSpec {
        source: PackageSource::Git {
            url: url.to_owned(),
            commit: "a18802ac".to_owned(),
        },
        extra_packages: vec![],
        cpu: None,
    };
    remote.install(&install).await.unwrap();
    let mut spec = launch();
    spec.python_args
        .extend(["--api-key".to_owned(), "k3y-s3cr3t".to_owned()]);
    remote.launch(&spec).await.unwrap();
    let text = transcript.lines().join("\n");
    for secret in ["ghp_T0KEN42", "k3y-s3cr3t"] {
        assert!(!text.contains(secret), "{secret} shown:\n{text}");
    }
    assert!(text.contains(script::REMOTE_GIT_URL), "{text}");
    assert!(text.contains(script::REMOTE_API_KEY), "{text}");
    assert!(!install.source.describe().contains("ghp_T0KEN42"));
    assert!(!script::install_script(&install).contains("ghp_T0KEN42"));
}
