//! Time as the crate sees it: an injectable clock (so tests never sleep)
//! and capped exponential backoff with jitter.

use std::time::{Duration, SystemTime};

/// Wall-clock time and sleeping, injected so tests can run polls and
/// deadlines on virtual time.
#[async_trait::async_trait]
pub trait Clock: Send + Sync {
    fn now(&self) -> SystemTime;
    async fn sleep(&self, duration: Duration);
}

/// The real clock: `SystemTime::now` and `tokio::time::sleep`.
pub struct SystemClock;

#[async_trait::async_trait]
impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }

    async fn sleep(&self, duration: Duration) {
        tokio::time::sleep(duration).await;
    }
}

/// Real time that never waits: for dry runs, where nothing is polled.
pub struct NoWaitClock;

#[async_trait::async_trait]
impl Clock for NoWaitClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }

    async fn sleep(&self, _duration: Duration) {}
}

/// Capped exponential backoff: `initial * factor^attempt`, at most `max`,
/// then shortened by up to `jitter` (a fraction) at random so that many
/// clients do not retry in lockstep.
#[derive(Clone, Debug, PartialEq)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
    pub factor: u32,
    /// 0.0 = no jitter, 1.0 = anywhere between 0 and the full delay.
    pub jitter: f64,
}

impl Backoff {
    /// The delay before retry number `attempt` (0-based).
    pub fn delay(&self, attempt: u32) -> Duration {
        let factor = u64::from(self.factor.max(1));
        let scale = factor.saturating_pow(attempt.min(32)) as u128;
        let base_ms = (self.initial.as_millis().saturating_mul(scale)).min(self.max.as_millis());
        let jitter = self.jitter.clamp(0.0, 1.0);
        let keep = 1.0 - jitter * fastrand::f64();
        Duration::from_millis((base_ms as f64 * keep) as u64)
    }
}
