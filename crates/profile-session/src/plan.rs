//! What a run will do, as plain data: built by the command line (whose
//! flags may come from a `--config` file), printed by a dry run, checked
//! against what the host can do, and turned back into the one command line
//! that reproduces it. It is serialisable, so a driver can record it.

use serde::{Deserialize, Serialize};
use sglang_server::StartProfile;
use tpu_cloud::script::sh_quote;

/// The profiled endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Endpoint {
    Generate,
    Score,
}

impl Endpoint {
    pub fn path(self) -> &'static str {
        match self {
            Endpoint::Generate => "/generate",
            Endpoint::Score => "/v1/score",
        }
    }
    /// The word of `--endpoint` and of run ids.
    pub fn slug(self) -> &'static str {
        match self {
            Endpoint::Generate => "generate",
            Endpoint::Score => "score",
        }
    }
}

/// Where the server runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HostKind {
    Local,
    Tpu,
}

impl HostKind {
    pub fn flag(self) -> &'static str {
        match self {
            HostKind::Local => "--local",
            HostKind::Tpu => "--tpu",
        }
    }
}

/// A flag the plan asks for that its host cannot honour.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum PlanError {
    #[error("{flag} is not supported with {host}: {why}")]
    Unsupported {
        flag: &'static str,
        host: &'static str,
        why: &'static str,
    },
    #[error("{flag} needs the newer profiling API, which sglang-jax {version} lacks{why}")]
    ServerLacks {
        flag: &'static str,
        version: String,
        why: &'static str,
    },
    #[error(
        "--endpoint score cannot run on sglang-jax {version}: POST /v1/score kills its server \
         (its log-probability path fails under jit); use --sglang-jax-version 0.0.1.post1 or \
         --endpoint generate"
    )]
    ScoreBroken { version: String },
}

/// Everything about a session that does not depend on where the server
/// runs. Host drivers keep their own settings (a TPU's zone, say) and hand
/// their flags to [`Plan::reproduction`] as words.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Plan {
    pub host: HostKind,
    pub endpoint: Endpoint,
    /// Profiled requests; for `score`, rounded up to whole rounds of three.
    pub requests: usize,
    pub concurrency: usize,
    pub max_new_tokens: u32,
    pub stream: bool,
    pub prompt: String,
    /// Requests sent before the profile starts, in the workload's shape.
    pub warmup: usize,
    pub num_steps: Option<u32>,
    pub host_tracer_level: u32,
    pub python_tracer_level: Option<u32>,
    /// Start the trace at this forward pass (the later profiling API).
    #[serde(default)]
    pub start_step: Option<u64>,
    /// Trace prefill and decode into separate folders (the later API).
    #[serde(default)]
    pub profile_by_stage: bool,
    pub sglang_jax_version: String,
    pub model_path: Option<String>,
    pub py_spy: bool,
    /// The serving load: dataset, arrivals, cap, metrics settings.
    #[serde(default)]
    pub load: crate::LoadSpec,
    /// Never serialised: a plan printed or saved holds no secret.
    #[serde(skip)]
    pub api_key: Option<String>,
}

impl Plan {
    /// Refuses, in one line, a flag this plan's host cannot honour. Every
    /// other flag means the same on every host.
    pub fn check(&self) -> Result<(), PlanError> {
        // Nothing is refused today: --py-spy on a TPU VM is installed there
        // and recorded beside the server (`crate::pyspy`).
        Ok(())
    }

    /// Refuses, in one line, a profiling option the installed server
    /// `version` does not have. sglang-jax 0.0.x has neither `start_step`
    /// nor `profile_by_stage`, and reads `python_tracer_level` by
    /// truthiness, so an explicit 0 would silently mean the default (on).
    /// The score workload is refused on 0.0.2, whose `/v1/score` takes the
    /// server down on every device (`python/README.md` says where).
    pub fn check_server(&self, version: &str) -> Result<(), PlanError> {
        if !version.starts_with("0.0.") {
            return Ok(());
        }
        let release = version.split(['+', '-']).next().unwrap_or(version);
        if self.endpoint == Endpoint::Score && (release == "0.0.2" || release.starts_with("0.0.2."))
        {
            return Err(PlanError::ScoreBroken {
                version: version.to_owned(),
            });
        }
        let lacks = |flag, why| {
            Err(PlanError::ServerLacks {
                flag,
                version: version.to_owned(),
                why,
            })
        };
        if self.start_step.is_some() {
            return lacks("--start-step", "");
        }
        if self.profile_by_stage {
            return lacks("--profile-by-stage", "");
        }
        if self.python_tracer_level == Some(0) {
            return lacks(
                "--python-tracer-level 0",
                " (it would ignore 0 and trace Python anyway)",
            );
        }
        Ok(())
    }

    /// The `/start_profile` body for a server writing into `output_dir`.
    pub fn start_profile(&self, output_dir: String) -> StartProfile {
        StartProfile {
            output_dir: Some(output_dir),
            num_steps: self.num_steps,
            host_tracer_level: Some(self.host_tracer_level),
            python_tracer_level: self.python_tracer_level,
            start_step: self.start_step,
            profile_by_stage: self.profile_by_stage.then_some(true),
            ..StartProfile::default()
        }
    }

    /// The plan as JSON, as a dry run prints it.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a plan always serialises")
    }

    /// The command line that runs this plan again: `cargo xtask profile`,
    /// the host flag, `host_flags` (already words, e.g. `--zone`, `us-east5-b`)
    /// and every setting of the plan, each word shell-quoted. Credentials
    /// never appear: an API key is named by its environment variable, and
    /// the caller passes URLs through [`crate::redact::url`].
    pub fn reproduction(&self, host_flags: &[String]) -> String {
        let mut words: Vec<String> = vec!["cargo".into(), "xtask".into(), "profile".into()];
        words.push(self.host.flag().into());
        words.extend(host_flags.iter().cloned());
        let mut flag = |name: &str, value: String| {
            words.push(name.to_owned());
            words.push(value);
        };
        flag("--sglang-jax-version", self.sglang_jax_version.clone());
        if let Some(model) = &self.model_path {
            flag("--model-path", model.clone());
        }
        flag("--endpoint", self.endpoint.slug().into());
        flag("--requests", self.requests.to_string());
        flag("--concurrency", self.concurrency.to_string());
        flag("--warmup", self.warmup.to_string());
        flag("--host-tracer-level", self.host_tracer_level.to_string());
        if let Some(level) = self.python_tracer_level {
            flag("--python-tracer-level", level.to_string());
        }
        if let Some(n) = self.num_steps {
            flag("--num-steps", n.to_string());
        }
        if let Some(n) = self.start_step {
            flag("--start-step", n.to_string());
        }
        if self.endpoint == Endpoint::Generate {
            flag("--max-new-tokens", self.max_new_tokens.to_string());
            flag("--prompt", self.prompt.clone());
            if self.stream {
                words.push("--stream".into());
            }
        }
        if self.profile_by_stage {
            words.push("--profile-by-stage".into());
        }
        if self.py_spy {
            words.push("--py-spy".into());
        }
        words.extend(self.load.to_args());
        let mut line = words
            .iter()
            .map(|w| sh_quote(w))
            .collect::<Vec<_>>()
            .join(" ");
        if self.api_key.is_some() {
            // The key itself stays in the user's environment.
            line = format!("SGLPROF_API_KEY=\"$SGLPROF_API_KEY\" {line}");
        }
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn plan(host: HostKind) -> Plan {
        Plan {
            host,
            endpoint: Endpoint::Generate,
            requests: 12,
            concurrency: 4,
            max_new_tokens: 32,
            stream: true,
            prompt: "it's a test".into(),
            warmup: 8,
            num_steps: None,
            host_tracer_level: 2,
            python_tracer_level: Some(0),
            start_step: None,
            profile_by_stage: false,
            sglang_jax_version: "0.0.2".into(),
            model_path: None,
            py_spy: false,
            load: crate::LoadSpec::default(),
            api_key: Some("s3cret".into()),
        }
    }

    #[test]
    fn every_flag_is_reproduced_on_every_host() {
        for (host, extra) in [
            (HostKind::Local, vec![]),
            (
                HostKind::Tpu,
                vec!["--zone".to_owned(), "us-east5-b".to_owned()],
            ),
        ] {
            let line = plan(host).reproduction(&extra);
            for needle in [
                "--max-new-tokens 32",
                "--prompt 'it'\\''s a test'",
                "--python-tracer-level 0",
                "--stream",
                "--warmup 8",
                "--sglang-jax-version 0.0.2",
                host.flag(),
            ] {
                assert!(line.contains(needle), "{needle} missing from {line}");
            }
            assert!(!line.contains("s3cret"), "{line}");
            assert!(line.starts_with("SGLPROF_API_KEY=\"$SGLPROF_API_KEY\" cargo xtask profile"));
        }
    }

    #[test]
    fn later_profiling_options_are_refused_on_old_servers() {
        let mut plan = plan(HostKind::Local);
        assert_eq!(
            plan.check_server("0.0.2").unwrap_err().to_string(),
            "--python-tracer-level 0 needs the newer profiling API, which sglang-jax 0.0.2 lacks (it would ignore 0 and trace Python anyway)"
        );
        plan.check_server("0.1.0").unwrap();
        plan.python_tracer_level = None;
        plan.check_server("0.0.1.post1").unwrap();
        plan.start_step = Some(3);
        assert_eq!(
            plan.check_server("0.0.1.post1").unwrap_err().to_string(),
            "--start-step needs the newer profiling API, which sglang-jax 0.0.1.post1 lacks"
        );
        assert_eq!(plan.start_profile("d".into()).start_step, Some(3));
        plan.start_step = None;
        plan.profile_by_stage = true;
        assert!(plan.check_server("0.0.2").is_err());
        assert_eq!(plan.start_profile("d".into()).profile_by_stage, Some(true));
    }

    #[test]
    fn the_score_workload_is_refused_on_a_server_whose_score_crashes() {
        let mut plan = plan(HostKind::Local);
        plan.python_tracer_level = None;
        plan.endpoint = Endpoint::Score;
        for version in ["0.0.2", "0.0.2.post1"] {
            assert_eq!(
                plan.check_server(version).unwrap_err(),
                PlanError::ScoreBroken {
                    version: version.to_owned()
                }
            );
        }
        for version in ["0.0.1.post1", "0.0.20", "0.1.0"] {
            plan.check_server(version).unwrap();
        }
        plan.endpoint = Endpoint::Generate;
        plan.check_server("0.0.2").unwrap();
    }

    #[test]
    fn a_printed_plan_holds_no_secret() {
        let text = plan(HostKind::Tpu).to_json();
        assert!(!text.contains("s3cret"), "{text}");
        assert!(text.contains("\"max_new_tokens\": 32"), "{text}");
    }

    #[test]
    fn every_host_honours_py_spy() {
        for host in [HostKind::Local, HostKind::Tpu] {
            let mut plan = plan(host);
            plan.py_spy = true;
            plan.check().unwrap();
            assert!(plan.reproduction(&[]).contains(" --py-spy"));
        }
    }
}
