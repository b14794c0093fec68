//! What it takes to run each supported sglang-jax release off a TPU VM:
//! the jax pin, the pins that override the wheel's requirements, the CPU
//! shim's switches, and the tiny model it can serve. The local host
//! installs and launches from this table, on either device.

use profile_session::plan::Device;

use super::EnvError;

/// The sglang-jax release used when `--sglang-jax-version` is not given.
pub const DEFAULT_VERSION: &str = profile_session::plan::defaults::SGLANG_JAX_VERSION;

/// What it takes to run one sglang-jax release on this machine.
#[derive(Clone, Debug, PartialEq)]
pub struct Flavor {
    pub version: &'static str,
    /// Replaces the wheel's `jax[tpu]` requirement on a CPU; its version is
    /// the jax of `--device tpu` too ([`Flavor::jax_requirement`]).
    pub jax_cpu: &'static str,
    /// Pins that override what the wheel's requirements would resolve to.
    pub extra_pins: &'static [&'static str],
    /// The release declares a newer Python than the one here and needs the
    /// shim's syntax backport.
    pub ignore_requires_python: bool,
    /// Switches of `python/cpu_shim/sitecustomize.py`.
    pub shim_env: &'static [(&'static str, &'static str)],
    /// `--arch` of `python/make_tiny_model.py`, plus its size flags.
    pub model_args: &'static [&'static str],
    pub model_name: &'static str,
}

pub const FLAVORS: &[Flavor] = &[
    Flavor {
        version: "0.0.1.post1",
        jax_cpu: "jax[cpu]==0.6.2",
        extra_pins: &[],
        ignore_requires_python: false,
        // SGLJAX_HOST_TABLES: the scheduler's slot tables in NumPy, so a
        // varied workload does not compile a program per prompt length.
        shim_env: &[("SGLJAX_CPU_SHIM", "1"), ("SGLJAX_HOST_TABLES", "1")],
        // Qwen3ForCausalLM is broken in this release; QWen (v1) works.
        model_args: &["--arch", "qwen1", "--heads", "2", "--ffn", "512"],
        model_name: "tiny-qwen1",
    },
    Flavor {
        version: "0.0.2",
        jax_cpu: "jax[cpu]==0.8.0",
        // flax 0.12.6 fails at start-up with an eager-sharding error.
        extra_pins: &["flax==0.12.0"],
        ignore_requires_python: true,
        shim_env: &[
            ("SGLJAX_CPU_SHIM", "1"),
            ("SGLJAX_PY311_BACKPORT", "1"),
            ("SGLJAX_NATIVE_PYTREE_FIX", "1"),
            ("SGLJAX_SAMPLER_FIX", "1"),
        ],
        model_args: &["--arch", "qwen3", "--heads", "4", "--ffn", "128"],
        model_name: "tiny-qwen3",
    },
];

/// Shim switches for what only a CPU lacks or only a CPU may change (the
/// Pallas KV-cache write, the scheduler's tables in host memory, the
/// non-TPU sampling path). The others fix Python 3.11 syntax and flax
/// registration, which a TPU server on the same Python needs as well.
const CPU_ONLY_SWITCHES: &[&str] = &[
    "SGLJAX_CPU_SHIM",
    "SGLJAX_HOST_TABLES",
    "SGLJAX_SAMPLER_FIX",
];

impl Flavor {
    /// The jax requirement on `device`: the CPU pin with the `[tpu]` extra
    /// (libtpu) instead of `[cpu]`, so both devices run the same jax.
    pub fn jax_requirement(&self, device: Device) -> String {
        match device {
            Device::Cpu => self.jax_cpu.to_owned(),
            Device::Tpu => self.jax_cpu.replacen("jax[cpu]", "jax[tpu]", 1),
        }
    }

    /// The shim's switches a server on `device` needs.
    pub fn shim_env_for(&self, device: Device) -> Vec<(&'static str, &'static str)> {
        self.shim_env
            .iter()
            .filter(|(var, _)| device == Device::Cpu || !CPU_ONLY_SWITCHES.contains(var))
            .copied()
            .collect()
    }
}

/// The flavor of `version`, or the versions that have one.
pub fn flavor(version: &str) -> Result<&'static Flavor, EnvError> {
    FLAVORS
        .iter()
        .find(|f| f.version == version)
        .ok_or_else(|| EnvError::UnknownVersion {
            version: version.to_owned(),
            known: FLAVORS
                .iter()
                .map(|f| f.version)
                .collect::<Vec<_>>()
                .join(", "),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tpu_env_has_the_same_jax_and_no_cpu_patch() {
        for flavor in FLAVORS {
            let cpu = flavor.jax_requirement(Device::Cpu);
            let tpu = flavor.jax_requirement(Device::Tpu);
            assert!(cpu.starts_with("jax[cpu]=="), "{cpu}");
            assert_eq!(tpu, cpu.replace("[cpu]", "[tpu]"));
            assert_eq!(flavor.shim_env_for(Device::Cpu), flavor.shim_env);
        }
        let tpu = |version| {
            let vars: Vec<&str> = flavor(version)
                .unwrap()
                .shim_env_for(Device::Tpu)
                .iter()
                .map(|(var, _)| *var)
                .collect();
            vars
        };
        assert!(tpu("0.0.1.post1").is_empty());
        assert_eq!(
            tpu("0.0.2"),
            ["SGLJAX_PY311_BACKPORT", "SGLJAX_NATIVE_PYTREE_FIX"]
        );
    }

    #[test]
    fn unknown_version_names_the_known_ones() {
        let err = flavor("9.9").unwrap_err().to_string();
        assert!(
            err.contains("0.0.1.post1") && err.contains("0.0.2"),
            "{err}"
        );
    }
}
