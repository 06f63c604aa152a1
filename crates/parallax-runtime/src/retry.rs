//! Bounded retry with jittered exponential backoff.

use std::time::Duration;

/// How often and how patiently to retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    /// Delay before the second attempt.
    pub base_delay: Duration,
    /// Upper bound of any delay.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self { max_attempts: 10, base_delay: Duration::from_millis(1), max_delay: Duration::from_millis(100) }
    }
}

impl RetryPolicy {
    /// The delay before attempt `attempt + 1` (attempt counts from 1): the
    /// exponential step with "full jitter", so retrying writers spread out.
    pub fn delay(&self, attempt: u32) -> Duration {
        let exp = self.base_delay.saturating_mul(1u32 << attempt.min(16)).min(self.max_delay);
        let nanos = u64::try_from(exp.as_nanos()).unwrap_or(u64::MAX);
        if nanos == 0 {
            return exp;
        }
        Duration::from_nanos(jitter() % nanos + nanos / 4)
    }
}

/// A cheap, non-cryptographic random number for jitter.
fn jitter() -> u64 {
    let bytes = uuid::Uuid::new_v4().into_bytes();
    u64::from_le_bytes(bytes[..8].try_into().expect("a uuid has 16 bytes"))
}

/// A loop's backoff after failures: grows while failures repeat, resets on success.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    policy: RetryPolicy,
    failures: u32,
}

impl Backoff {
    pub(crate) fn new(base: Duration, max: Duration) -> Self {
        Self { policy: RetryPolicy { max_attempts: u32::MAX, base_delay: base, max_delay: max }, failures: 0 }
    }

    pub(crate) fn failed(&mut self) -> Duration {
        self.failures = self.failures.saturating_add(1);
        self.policy.delay(self.failures)
    }

    pub(crate) fn succeeded(&mut self) {
        self.failures = 0;
    }
}
