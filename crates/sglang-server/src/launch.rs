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
    pub extra_args: Vec<String>,
    pub env: Vec<(String, String)>,
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
