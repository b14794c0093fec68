//! Test doubles: a token provider that hands out a fixed token, a virtual
//! clock that never sleeps, and a client wired to both.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tpu_cloud::{Backoff, ClientConfig, Clock, Timing, TpuClient};

pub const TOKEN: &str = "fake-token";

/// Hands out `fake-token` and counts the requests.
#[derive(Default)]
pub struct FakeTokens {
    pub calls: AtomicU32,
    pub fail: Option<fn() -> gcp_auth::Error>,
}

#[async_trait::async_trait]
impl gcp_auth::TokenProvider for FakeTokens {
    async fn token(&self, scopes: &[&str]) -> Result<Arc<gcp_auth::Token>, gcp_auth::Error> {
        assert_eq!(scopes, [tpu_cloud::SCOPE]);
        self.calls.fetch_add(1, Ordering::Relaxed);
        if let Some(fail) = self.fail {
            return Err(fail());
        }
        let json = format!(r#"{{"access_token":"{TOKEN}","expires_in":3600}}"#);
        Ok(Arc::new(serde_json::from_str(&json).unwrap()))
    }

    async fn project_id(&self) -> Result<Arc<str>, gcp_auth::Error> {
        Ok("test-project".into())
    }
}

/// Virtual time: starts at 2026-02-05T18:48:19Z, and `sleep` moves it
/// forward at once (yielding so that cancellation can happen).
pub struct VirtualClock {
    now: Mutex<SystemTime>,
    pub sleeps: Mutex<Vec<Duration>>,
}

impl VirtualClock {
    pub fn new() -> Arc<VirtualClock> {
        Arc::new(VirtualClock {
            now: Mutex::new(UNIX_EPOCH + Duration::from_secs(1_770_317_299)),
            sleeps: Mutex::default(),
        })
    }

    pub fn sleeps(&self) -> Vec<Duration> {
        self.sleeps.lock().unwrap().clone()
    }
}

#[async_trait::async_trait]
impl Clock for VirtualClock {
    fn now(&self) -> SystemTime {
        *self.now.lock().unwrap()
    }

    async fn sleep(&self, duration: Duration) {
        *self.now.lock().unwrap() += duration;
        self.sleeps.lock().unwrap().push(duration);
        tokio::task::yield_now().await;
    }
}

/// Production shapes, test sizes: polls every 5 s of virtual time,
/// retries after 1, 2, 4 ... s with jitter, 4 attempts.
pub fn timing() -> Timing {
    let mut res = Timing::production();
    res.max_attempts = 4;
    // Polls without jitter, so that counts of polls are exact.
    res.poll.jitter = 0.0;
    res.request_timeout = Duration::from_secs(5);
    res.retry = Backoff {
        initial: Duration::from_secs(1),
        max: Duration::from_secs(8),
        factor: 2,
        jitter: 0.5,
    };
    res
}

pub fn client(base_url: &str, clock: Arc<VirtualClock>) -> (TpuClient, Arc<FakeTokens>) {
    client_with(base_url, clock, timing())
}

pub fn client_with(
    base_url: &str,
    clock: Arc<VirtualClock>,
    timing: Timing,
) -> (TpuClient, Arc<FakeTokens>) {
    let tokens = Arc::new(FakeTokens::default());
    let config = ClientConfig {
        base_url: base_url.to_owned(),
        timing,
    };
    let client = TpuClient::new(config, tokens.clone(), clock).unwrap();
    (client, tokens)
}
