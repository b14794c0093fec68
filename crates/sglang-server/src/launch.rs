//! The `python -m sgl_jax.launch_server` command line.

use std::path::PathBuf;

/// How a server is launched. [`LaunchSpec::argv`] renders the arguments that
/// follow the Python interpreter; `env` is added to the inherited
/// environment.
#[derive(Clone, Debug, PartialEq)]
pub struct LaunchSpec {
    /// The interpreter of the environment sglang-jax is installed in.
    pub python: PathBuf,
    /// A local folder or a model hub name, passed through as is.
    pub model_path: String,
    pub host: String,
    pub port: u16,
    pub tp_size: u32,
    /// `bfloat16`, `float32`...; the server's default (`auto`) when unset.
    pub dtype: Option<String>,
    /// `cpu` or `tpu`; sglang-jax asserts it agrees with `JAX_PLATFORMS`.
    pub device: Option<String>,
    pub attention_backend: Option<String>,
    pub precompile: Option<Precompile>,
    pub api_key: Option<String>,
    /// One host of a multi-host slice; `None` for a single host.
    pub multi_node: Option<MultiNode>,
    pub extra_args: Vec<String>,
    pub env: Vec<(String, String)>,
}

/// The flags sglang-jax's launcher takes to run one model across hosts:
/// every host runs the launcher with the same `nnodes` and
/// `dist_init_addr` (host 0's address; `jax.distributed.initialize`
/// listens there and the schedulers talk over ZMQ on the next ports) and
/// its own `node_rank`. `tp_size` must be a multiple of `nnodes`.
///
/// Whether this runs on CPU was not established: the local stand-in of a
/// slice runs one independent server per worker instead.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MultiNode {
    pub nnodes: u32,
    pub node_rank: u32,
    /// `HOST:PORT` of node 0.
    pub dist_init_addr: String,
}

/// Shapes compiled before the server starts serving.
#[derive(Clone, Debug, PartialEq)]
pub struct Precompile {
    pub token_paddings: Vec<u32>,
    pub bs_paddings: Vec<u32>,
    pub flags: PrecompileFlags,
}

/// The precompile flags were renamed between releases.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PrecompileFlags {
    /// 0.0.1.x: `--jax-precompile-prefill-token-paddings`,
    /// `--jax-precompile-decode-bs-paddings`.
    JaxPrefixed,
    /// 0.0.2 and later: `--precompile-token-paddings`,
    /// `--precompile-bs-paddings`.
    Plain,
}

impl PrecompileFlags {
    /// The flag names a given sglang-jax version understands.
    pub fn for_version(version: &str) -> PrecompileFlags {
        if version.starts_with("0.0.1") {
            PrecompileFlags::JaxPrefixed
        } else {
            PrecompileFlags::Plain
        }
    }
}

impl LaunchSpec {
    /// This spec for each of the `nnodes` hosts of a slice whose node 0 is
    /// reached at `dist_init_addr`, rank 0 first. One host gives the spec
    /// unchanged.
    pub fn per_node(&self, nnodes: u32, dist_init_addr: &str) -> Vec<LaunchSpec> {
        if nnodes <= 1 {
            return vec![self.clone()];
        }
        (0..nnodes)
            .map(|node_rank| LaunchSpec {
                multi_node: Some(MultiNode {
                    nnodes,
                    node_rank,
                    dist_init_addr: dist_init_addr.to_owned(),
                }),
                ..self.clone()
            })
            .collect()
    }

    /// The arguments after the interpreter, starting with `-m`.
    pub fn argv(&self) -> Vec<String> {
        let mut res: Vec<String> = vec!["-m".into(), "sgl_jax.launch_server".into()];
        let mut flag = |name: &str, value: String| {
            res.push(name.to_owned());
            res.push(value);
        };
        flag("--model-path", self.model_path.clone());
        flag("--host", self.host.clone());
        flag("--port", self.port.to_string());
        flag("--tp-size", self.tp_size.to_string());
        if let Some(dtype) = &self.dtype {
            flag("--dtype", dtype.clone());
        }
        if let Some(device) = &self.device {
            flag("--device", device.clone());
        }
        if let Some(backend) = &self.attention_backend {
            flag("--attention-backend", backend.clone());
        }
        if let Some(key) = &self.api_key {
            flag("--api-key", key.clone());
        }
        if let Some(multi) = &self.multi_node {
            flag("--nnodes", multi.nnodes.to_string());
            flag("--node-rank", multi.node_rank.to_string());
            flag("--dist-init-addr", multi.dist_init_addr.clone());
        }
        if let Some(precompile) = &self.precompile {
            let (tokens, batches) = match precompile.flags {
                PrecompileFlags::JaxPrefixed => (
                    "--jax-precompile-prefill-token-paddings",
                    "--jax-precompile-decode-bs-paddings",
                ),
                PrecompileFlags::Plain => {
                    ("--precompile-token-paddings", "--precompile-bs-paddings")
                }
            };
            for (name, values) in [
                (tokens, &precompile.token_paddings),
                (batches, &precompile.bs_paddings),
            ] {
                if !values.is_empty() {
                    res.push(name.to_owned());
                    res.extend(values.iter().map(u32::to_string));
                }
            }
        }
        res.extend(self.extra_args.iter().cloned());
        res
    }

    /// The whole command as one shell line, for reproduction notes. The API
    /// key is replaced by `$SGLPROF_API_KEY`.
    pub fn shell_line(&self) -> String {
        let mut words: Vec<String> = self
            .env
            .iter()
            .map(|(k, v)| format!("{k}={}", shell_quote(v)))
            .collect();
        words.push(shell_quote(&self.python.display().to_string()));
        let argv = self.argv();
        let mut redact_next = false;
        for arg in argv {
            if redact_next {
                words.push("\"$SGLPROF_API_KEY\"".to_owned());
                redact_next = false;
                continue;
            }
            redact_next = arg == "--api-key";
            words.push(shell_quote(&arg));
        }
        words.join(" ")
    }
}

/// Quotes a word for a POSIX shell when it needs it.
pub(crate) fn shell_quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=,@%+".contains(c));
    if plain {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}
