//! The TPU VM image (the runtime version, `gcloud ... --version`) that
//! goes with each accelerator family, from Google's table of TPU software
//! versions for JAX and PyTorch.
//!
//! The runtime version is the VM's operating system and drivers; JAX
//! itself is installed by sglprof. An image built for one family does not
//! fit another, so the version follows the accelerator type rather than a
//! single default, and a family this table does not know is refused
//! unless the caller names a version.

/// `(family, runtime version)`, as Google's table of TPU software versions
/// gives them: Trillium (v6e) `v2-alpha-tpuv6e`, v5p `v2-alpha-tpuv5`,
/// v5e `v2-alpha-tpuv5-lite`, v4 and older `tpu-ubuntu2204-base`.
pub const RUNTIME_VERSIONS: [(&str, &str); 6] = [
    ("v6e", "v2-alpha-tpuv6e"),
    ("v5p", "v2-alpha-tpuv5"),
    ("v5e", "v2-alpha-tpuv5-lite"),
    ("v4", "tpu-ubuntu2204-base"),
    ("v3", "tpu-ubuntu2204-base"),
    ("v2", "tpu-ubuntu2204-base"),
];

/// The family of an accelerator type: `v6e-8` is `v6e`, `v5litepod-4`
/// (the API's name for v5e slices) and `v5e-4` are `v5e`.
pub fn family(accelerator_type: &str) -> &str {
    let family = accelerator_type
        .rsplit_once('-')
        .map_or(accelerator_type, |(family, _)| family);
    match family {
        "v5litepod" => "v5e",
        other => other,
    }
}

/// The runtime version Google gives for the family of `accelerator_type`,
/// or `None` for a family the table does not know.
pub fn default_runtime_version(accelerator_type: &str) -> Option<&'static str> {
    let family = family(accelerator_type);
    RUNTIME_VERSIONS
        .iter()
        .find(|(known, _)| *known == family)
        .map(|(_, version)| *version)
}

/// `explicit` when given, else [`default_runtime_version`]; an unknown
/// family without an explicit version is an error that says what to do.
pub fn runtime_version(
    accelerator_type: &str,
    explicit: Option<&str>,
) -> Result<String, crate::Error> {
    if let Some(version) = explicit {
        return Ok(version.to_owned());
    }
    default_runtime_version(accelerator_type)
        .map(str::to_owned)
        .ok_or_else(|| crate::Error::UnknownAccelerator {
            accelerator_type: accelerator_type.to_owned(),
            known: RUNTIME_VERSIONS
                .iter()
                .map(|(family, _)| *family)
                .collect::<Vec<_>>()
                .join(", "),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_family_gets_its_own_image() {
        let cases = [
            ("v6e-1", "v2-alpha-tpuv6e"),
            ("v6e-256", "v2-alpha-tpuv6e"),
            ("v5p-16", "v2-alpha-tpuv5"),
            ("v5litepod-8", "v2-alpha-tpuv5-lite"),
            ("v5e-4", "v2-alpha-tpuv5-lite"),
            ("v4-8", "tpu-ubuntu2204-base"),
            ("v3-32", "tpu-ubuntu2204-base"),
            ("v2-8", "tpu-ubuntu2204-base"),
        ];
        for (accelerator, want) in cases {
            assert_eq!(
                runtime_version(accelerator, None).unwrap(),
                want,
                "{accelerator}"
            );
        }
        assert_eq!(
            runtime_version("v5p-16", Some("v2-alpha-tpuv5-custom")).unwrap(),
            "v2-alpha-tpuv5-custom"
        );
    }

    #[test]
    fn an_unknown_family_needs_an_explicit_version() {
        let err = runtime_version("v9z-3", None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "no runtime version is known for accelerator type `v9z-3` (known families: \
             v6e, v5p, v5e, v4, v3, v2): give one with --runtime-version (see \
             `gcloud compute tpus tpu-vm versions list`)"
        );
        assert_eq!(runtime_version("v9z-3", Some("x")).unwrap(), "x");
    }
}
