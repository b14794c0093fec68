//! The launch command line, as a snapshot.

use sglang_server::{LaunchSpec, MultiNode, Precompile, PrecompileFlags};

fn spec(flags: PrecompileFlags) -> LaunchSpec {
    LaunchSpec {
        python: "venv/bin/python".into(),
        model_path: "models/tiny qwen".into(),
        host: "127.0.0.1".into(),
        port: 30000,
        tp_size: 1,
        dtype: Some("bfloat16".into()),
        device: Some("cpu".into()),
        attention_backend: Some("native".into()),
        precompile: Some(Precompile {
            token_paddings: vec![64, 128],
            bs_paddings: vec![1, 2],
            flags,
        }),
        api_key: Some("s3cret".into()),
        multi_node: None,
        extra_args: vec!["--mem-fraction-static".into(), "0.1".into()],
        env: vec![("JAX_PLATFORMS".into(), "cpu".into())],
    }
}

#[test]
fn argv_for_0_0_1() {
    insta::assert_debug_snapshot!(spec(PrecompileFlags::for_version("0.0.1.post1")).argv());
}

#[test]
fn argv_for_0_0_2() {
    insta::assert_debug_snapshot!(spec(PrecompileFlags::for_version("0.0.2")).argv());
}

#[test]
fn shell_line_quotes_and_hides_the_key() {
    let line = spec(PrecompileFlags::Plain).shell_line();
    assert!(line.starts_with("JAX_PLATFORMS=cpu venv/bin/python -m sgl_jax.launch_server --model-path 'models/tiny qwen'"), "{line}");
    assert!(
        line.contains("--api-key \"$SGLPROF_API_KEY\"") && !line.contains("s3cret"),
        "{line}"
    );
}

/// A two-host slice: each host gets the same `--nnodes` and
/// `--dist-init-addr` (host 0) and its own `--node-rank`.
#[test]
fn argv_for_a_two_host_slice() {
    let specs = spec(PrecompileFlags::Plain).per_node(2, "10.0.0.2:20000");
    assert_eq!(specs.len(), 2);
    assert_eq!(
        specs[1].multi_node,
        Some(MultiNode {
            nnodes: 2,
            node_rank: 1,
            dist_init_addr: "10.0.0.2:20000".to_owned(),
        })
    );
    let argvs: Vec<Vec<String>> = specs.iter().map(LaunchSpec::argv).collect();
    insta::assert_debug_snapshot!(argvs);
    // One host: unchanged, no multi-node flags.
    let single = spec(PrecompileFlags::Plain).per_node(1, "10.0.0.2:20000");
    assert!(!single[0].argv().iter().any(|a| a == "--nnodes"));
}
