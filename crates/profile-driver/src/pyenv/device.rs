//! `--device` of the local session: the accelerator the server uses on the
//! machine sglprof runs on, which is a laptop's CPU for `profile --local` and
//! a GKE TPU node's chips for the pod of `profile --k8s`.
//!
//! A TPU is "visible" when the PCI bus lists a Google TPU (the rule JAX
//! applies before it loads libtpu: vendor `0x1ae0` and a known TPU device
//! id) and this process can open it: `/dev/accel*` (v4, v5e) or a numbered
//! `/dev/vfio/N` (v5p, v6e). A container sees every chip of its node in
//! sysfs but only the device nodes of the chips it was given, so the chips
//! counted are the device nodes.
//!
//! [`launch_spec`] is the server command of each device. On the CPU: the
//! shim on `PYTHONPATH` with the flavor's switches, `JAX_PLATFORMS=cpu`,
//! JAX's persistent compilation cache in the sglprof cache,
//! the native attention backend and the small precompile and memory limits
//! a CPU can afford. On a TPU: the server as a TPU VM session starts it
//! (its own attention backend, precompile and memory defaults), without
//! `JAX_PLATFORMS` and without the shim's CPU patches.

use std::path::Path;

use profile_session::plan::Device;
use sglang_server::{LaunchSpec, Precompile, PrecompileFlags};

use super::{EnvError, LocalEnv};

/// The TPU chips this process can use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TpuChips {
    /// `v6e`, from the PCI device id.
    pub generation: &'static str,
    pub chips: usize,
}

impl TpuChips {
    /// The run metadata's `hardware`: `TPU v6e (local, 1 chip)`.
    pub fn hardware_label(&self) -> String {
        let plural = if self.chips == 1 { "" } else { "s" };
        format!(
            "TPU {} (local, {} chip{plural})",
            self.generation, self.chips
        )
    }
}

const GOOGLE_PCI_VENDOR: &str = "0x1ae0";

/// PCI device ids of TPU chips and their generation.
const TPU_PCI_DEVICES: &[(&str, &str)] = &[
    ("0x0027", "v3"),
    ("0x005e", "v4"),
    ("0x0062", "v5p"),
    ("0x0063", "v5e"),
    ("0x006f", "v6e"),
    ("0x0076", "tpu7x"),
];

/// The TPU chips visible under `sys` (a sysfs root) and `dev` (a /dev
/// root), or the one-line reason there are none usable.
pub fn probe_tpu(sys: &Path, dev: &Path) -> Result<TpuChips, EnvError> {
    let mut generation = None;
    let mut on_bus = 0usize;
    let devices = sys.join("bus/pci/devices");
    for entry in std::fs::read_dir(&devices).into_iter().flatten().flatten() {
        let read = |name: &str| std::fs::read_to_string(entry.path().join(name)).ok();
        if read("vendor").as_deref().map(str::trim) != Some(GOOGLE_PCI_VENDOR) {
            continue;
        }
        let id = read("device").unwrap_or_default();
        if let Some((_, name)) = TPU_PCI_DEVICES.iter().find(|(it, _)| *it == id.trim()) {
            generation = Some(*name);
            on_bus += 1;
        }
    }
    let Some(generation) = generation else {
        return Err(EnvError::NoTpu(format!(
            "no TPU is visible on this machine (no Google TPU under {}); \
             run on a TPU VM or a GKE TPU node, or use --device cpu",
            devices.display()
        )));
    };
    let names = |dir: &Path| -> Vec<String> {
        std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect()
    };
    let accel = names(dev)
        .iter()
        .filter(|n| n.strip_prefix("accel").is_some_and(all_digits))
        .count();
    let vfio = names(&dev.join("vfio"))
        .iter()
        .filter(|n| all_digits(n))
        .count();
    let chips = accel + vfio;
    if chips == 0 {
        return Err(EnvError::NoTpu(format!(
            "this machine has {on_bus} TPU {generation} chip(s) but this process \
             can open none (no {0}/accel* or {0}/vfio/N); a pod needs a google.com/tpu limit",
            dev.display()
        )));
    }
    Ok(TpuChips { generation, chips })
}

fn all_digits(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit())
}

/// The TPU of this machine, or the refusal of `--device tpu`.
pub fn require_tpu() -> Result<TpuChips, EnvError> {
    probe_tpu(Path::new("/sys"), Path::new("/dev"))
}

/// The `launch_server` command of a local session on `env.device`.
pub fn launch_spec(
    env: &LocalEnv,
    model_path: &str,
    port: u16,
    api_key: Option<String>,
) -> LaunchSpec {
    let mut vars: Vec<(String, String)> = Vec::new();
    if env.device == Device::Cpu {
        vars.push(("JAX_PLATFORMS".into(), "cpu".into()));
        // Compiled shapes are kept between starts; the cache key covers the
        // program, jax and its flags, so a change compiles afresh.
        vars.push((
            "JAX_COMPILATION_CACHE_DIR".into(),
            env.compile_cache.display().to_string(),
        ));
    }
    vars.push(("HF_HUB_OFFLINE".into(), "1".into()));
    vars.push(("TRANSFORMERS_OFFLINE".into(), "1".into()));
    let switches = env.flavor.shim_env_for(env.device);
    if !switches.is_empty() {
        vars.push(("PYTHONPATH".into(), env.shim_dir.display().to_string()));
    }
    vars.extend(
        switches
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    let mut spec = LaunchSpec {
        python: env.python.clone(),
        model_path: model_path.to_owned(),
        host: "127.0.0.1".to_owned(),
        port,
        tp_size: 1,
        dtype: None,
        device: Some(env.device.name().to_owned()),
        attention_backend: None,
        precompile: None,
        api_key,
        multi_node: None,
        extra_args: Vec::new(),
        env: vars,
    };
    if env.device == Device::Cpu {
        spec.attention_backend = Some("native".to_owned());
        spec.precompile = Some(Precompile {
            token_paddings: vec![64, 128, 256, 512],
            bs_paddings: vec![1, 2, 4, 8],
            flags: PrecompileFlags::for_version(env.flavor.version),
        });
        spec.extra_args.extend(
            [
                "--max-total-tokens",
                "4096",
                "--max-running-requests",
                "8",
                "--max-prefill-tokens",
                "512",
                "--chunked-prefill-size",
                "512",
                "--mem-fraction-static",
                "0.1",
            ]
            .map(str::to_owned),
        );
    }
    spec.extra_args
        .extend(["--log-level", "info"].map(str::to_owned));
    spec
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pci(sys: &Path, slot: &str, vendor: &str, device: &str) {
        let dir = sys.join("bus/pci/devices").join(slot);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("vendor"), format!("{vendor}\n")).unwrap();
        std::fs::write(dir.join("device"), format!("{device}\n")).unwrap();
    }

    #[test]
    fn a_tpu_needs_the_bus_and_a_device_node() {
        let root = tempfile::tempdir().unwrap();
        let (sys, dev) = (root.path().join("sys"), root.path().join("dev"));
        std::fs::create_dir_all(dev.join("vfio")).unwrap();
        pci(&sys, "0000:00:04.0", "0x8086", "0x006f");
        let err = probe_tpu(&sys, &dev).unwrap_err().to_string();
        assert!(
            err.starts_with("--device tpu: no TPU is visible on this machine"),
            "{err}"
        );
        assert!(!err.contains('\n'));

        // A node's chips in sysfs, none given to this container.
        for slot in ["0000:00:05.0", "0000:00:06.0"] {
            pci(&sys, slot, "0x1ae0", "0x006f");
        }
        std::fs::write(dev.join("vfio/vfio"), "").unwrap();
        let err = probe_tpu(&sys, &dev).unwrap_err().to_string();
        assert!(
            err.contains("has 2 TPU v6e chip(s) but this process can open none"),
            "{err}"
        );

        std::fs::write(dev.join("vfio/0"), "").unwrap();
        let tpu = probe_tpu(&sys, &dev).unwrap();
        assert_eq!(
            tpu,
            TpuChips {
                generation: "v6e",
                chips: 1
            }
        );
        assert_eq!(tpu.hardware_label(), "TPU v6e (local, 1 chip)");
    }

    /// The launch command and environment of each device, side by side.
    #[test]
    fn launch_per_device() {
        let flavor = super::super::flavor("0.0.1.post1").unwrap();
        let launch = |device| {
            let venv = std::path::PathBuf::from("/cache/venv");
            let env = LocalEnv {
                flavor,
                device,
                python: venv.join("bin/python"),
                py_spy: venv.join("bin/py-spy"),
                venv,
                model_dir: "/cache/models/tiny".into(),
                shim_dir: "/src/python/cpu_shim".into(),
                compile_cache: "/cache/jax-compilation-cache/venv".into(),
                versions: Default::default(),
            };
            let spec = launch_spec(&env, "/cache/models/tiny", 30000, None);
            // One variable or one flag per line.
            let mut lines: Vec<String> = spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
            let mut line = spec.python.display().to_string();
            for word in spec.argv() {
                if word.starts_with("--") {
                    lines.push(std::mem::replace(&mut line, format!("  {word}")));
                } else {
                    line = format!("{line} {word}");
                }
            }
            lines.push(line);
            lines.join(" \\\n")
        };
        insta::assert_snapshot!("launch_cpu", launch(Device::Cpu));
        insta::assert_snapshot!("launch_tpu", launch(Device::Tpu));
    }

    #[test]
    fn accel_nodes_count_as_chips() {
        let root = tempfile::tempdir().unwrap();
        let (sys, dev) = (root.path().join("sys"), root.path().join("dev"));
        pci(&sys, "0000:00:04.0", "0x1ae0", "0x0063");
        std::fs::create_dir_all(&dev).unwrap();
        for name in ["accel0", "accel1", "accel2", "accel3", "accelerometer"] {
            std::fs::write(dev.join(name), "").unwrap();
        }
        let tpu = probe_tpu(&sys, &dev).unwrap();
        assert_eq!(tpu.hardware_label(), "TPU v5e (local, 4 chips)");
    }
}
