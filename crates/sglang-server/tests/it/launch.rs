//! The launch command line, as a snapshot.

use sglang_server::{LaunchSpec, Precompile, PrecompileFlags};

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
