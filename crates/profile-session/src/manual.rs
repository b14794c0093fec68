//! The session as commands a reader can run by hand, in the sections of
//! the reference profiling document: Setup Commands, Profiling Workflow,
//! Cleanup and Related Documentation. Drivers fill the host-specific
//! setup and cleanup; the HTTP workflow is rendered here from the values
//! the session used (the `/start_profile` body, the endpoint, the request
//! bodies it saved in `inputs/`, one JSON per line). Secrets stay in the
//! environment: the API key is `$SGLPROF_API_KEY`.

use sglang_server::StartProfile;
use tpu_cloud::script::sh_quote;

/// The lines of the report's Reproduction block, by section.
#[derive(Clone, Debug, Default)]
pub struct ManualSteps {
    pub setup: Vec<String>,
    pub workflow: Vec<String>,
    pub download: Vec<String>,
    pub cleanup: Vec<String>,
}

/// Where to read more; the same for every host.
pub const RELATED: [&str; 3] = [
    "https://github.com/sgl-project/sglang-jax (the server and its profiling API)",
    "docs/ARCHITECTURE.md (how sglprof runs a session)",
    "docs/metrics.md (every number of the report)",
];

impl ManualSteps {
    /// The workflow against a server at `base_url`, run in the run folder:
    /// the warmup bodies (`inputs/warmup-bodies.jsonl`, when there was a
    /// `warmup`), the profile start, the profiled bodies
    /// (`inputs/bodies.jsonl`) and the stop, one request at a time (the
    /// session sent them `concurrency` at a time).
    pub fn http_workflow(
        base_url: &str,
        endpoint: &str,
        profile: &StartProfile,
        concurrency: usize,
        api_key: bool,
        warmup: bool,
    ) -> Vec<String> {
        let auth = if api_key {
            " -H \"Authorization: Bearer $SGLPROF_API_KEY\""
        } else {
            ""
        };
        let post = |path: &str| {
            format!(
                "curl -sS -X POST {}{auth} -H 'Content-Type: application/json'",
                sh_quote(&format!("{base_url}{path}"))
            )
        };
        let each = |file: &str| {
            format!(
                "while IFS= read -r body; do {} -d \"$body\"; done < {file}",
                post(endpoint)
            )
        };
        let body = serde_json::to_string(profile).unwrap_or_default();
        let mut res = Vec::new();
        if warmup {
            res.push(each("inputs/warmup-bodies.jsonl"));
        }
        res.extend([
            format!("{} -d {}", post("/start_profile"), sh_quote(&body)),
            format!(
                "# sglprof sent these {concurrency} at a time; one at a time gives other batch shapes"
            ),
            each("inputs/bodies.jsonl"),
            format!("{} -d '{{}}'", post("/stop_profile")),
        ]);
        res
    }

    /// The sections as lines of one shell block, each headed by a comment.
    pub fn render(&self) -> Vec<String> {
        let mut res = Vec::new();
        let mut section = |title: &str, lines: &[String]| {
            if lines.is_empty() {
                return;
            }
            if !res.is_empty() {
                res.push(String::new());
            }
            res.push(format!("# {title}"));
            res.extend(lines.iter().cloned());
        };
        section("Setup Commands", &self.setup);
        let mut workflow = self.workflow.clone();
        workflow.extend(self.download.iter().cloned());
        section("Profiling Workflow", &workflow);
        section("Cleanup", &self.cleanup);
        let related: Vec<String> = RELATED.iter().map(|it| format!("#   {it}")).collect();
        section("Related Documentation", &related);
        res
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_in_the_reference_order_without_secrets() {
        let profile = StartProfile {
            output_dir: Some("/tmp/p".into()),
            num_steps: Some(5),
            ..StartProfile::default()
        };
        let steps = ManualSteps {
            setup: vec!["python -m sglang.launch_server --api-key \"$SGLPROF_API_KEY\" &".into()],
            workflow: ManualSteps::http_workflow(
                "http://127.0.0.1:30000",
                "/generate",
                &profile,
                4,
                true,
                true,
            ),
            download: vec![],
            cleanup: vec!["kill %1".into()],
        };
        let lines = steps.render();
        let titles: Vec<&String> = lines
            .iter()
            .filter(|l| l.starts_with("# ") && !l.starts_with("#  ") && !l.starts_with("# sglprof"))
            .collect();
        assert_eq!(
            titles,
            [
                "# Setup Commands",
                "# Profiling Workflow",
                "# Cleanup",
                "# Related Documentation"
            ]
        );
        let text = lines.join("\n");
        assert!(
            text.contains("curl -sS -X POST http://127.0.0.1:30000/start_profile -H \"Authorization: Bearer $SGLPROF_API_KEY\" -H 'Content-Type: application/json' -d '{\"output_dir\":\"/tmp/p\",\"num_steps\":5}'"),
            "{text}"
        );
        assert!(
            text.contains("done < inputs/bodies.jsonl")
                && text.contains("done < inputs/warmup-bodies.jsonl"),
            "{text}"
        );
        assert!(text.contains("4 at a time"), "{text}");
    }
}
