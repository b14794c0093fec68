//! Waiting until a server can serve, which is later than "answers /health".
//!
//! `/health` answers 200 as soon as uvicorn runs, before the model has
//! served anything. `/health_generate` answers 200 only after generating a
//! token, so it is the probe. Servers without it (404) are ready once their
//! log shows [`crate::READY_LOG_LINE`]. The wait is bounded and watches the
//! process, so a server that dies while starting fails at once.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::READY_LOG_LINE;
use crate::client::Client;
use crate::error::Error;
use crate::logtail::log_tail;
use crate::supervisor::Liveness;

#[derive(Clone, Debug)]
pub struct ReadyOptions {
    pub timeout: Duration,
    /// Pause between probes.
    pub poll: Duration,
    /// The server's log: used for the ready line, and quoted on timeout.
    pub server_log: Option<PathBuf>,
    /// With a log, also wait (up to this long after the probe succeeded) for
    /// the ready line, so sglang-jax's own warmup request is not mixed into
    /// what comes next.
    pub settle: Duration,
}

/// Polls until the server is ready; returns how long it took.
pub async fn wait_until_ready(
    client: &Client,
    options: &ReadyOptions,
    liveness: &dyn Liveness,
) -> Result<Duration, Error> {
    let started = Instant::now();
    let probe_timeout = options.poll.max(Duration::from_secs(25));
    let mut last = "no answer yet".to_owned();
    let mut probe_ok_at: Option<Instant> = None;
    loop {
        liveness.check("while starting")?;
        let log_says_ready = options
            .server_log
            .as_deref()
            .is_some_and(log_has_ready_line);
        if probe_ok_at.is_none() {
            match client
                .call(
                    reqwest::Method::GET,
                    "/health_generate",
                    None,
                    Some(probe_timeout),
                )
                .await
            {
                Ok(_) => probe_ok_at = Some(Instant::now()),
                Err(Error::Status { status: 404, .. }) if log_says_ready => {
                    return Ok(started.elapsed());
                }
                Err(Error::Status {
                    status: 401, body, ..
                }) => {
                    last = format!("HTTP 401 {body}");
                    // A wrong key will not fix itself.
                    return Err(not_ready(
                        client,
                        options,
                        started,
                        format!("{last} (check --api-key)"),
                    ));
                }
                Err(Error::Status { status, body, .. }) => last = format!("HTTP {status} {body}"),
                Err(Error::Transport { detail, .. }) => last = detail,
                Err(Error::Timeout { .. }) => last = "probe timed out".to_owned(),
                Err(err) => last = err.to_string(),
            }
        }
        if let Some(ok_at) = probe_ok_at
            && (options.server_log.is_none() || log_says_ready || ok_at.elapsed() >= options.settle)
        {
            return Ok(started.elapsed());
        }
        if started.elapsed() >= options.timeout {
            return Err(not_ready(client, options, started, last));
        }
        tokio::time::sleep(options.poll).await;
    }
}

fn not_ready(client: &Client, options: &ReadyOptions, started: Instant, last: String) -> Error {
    Error::NotReady {
        url: format!("{}/health_generate", client.base_url()),
        waited: started.elapsed(),
        last,
        log_tail: options.server_log.as_deref().map(|log| log_tail(log, 30)),
    }
}

fn log_has_ready_line(path: &std::path::Path) -> bool {
    // The line comes late in a short log; reading the tail is enough.
    log_tail(path, 400).contains(READY_LOG_LINE)
}
