//! One failure vocabulary for every stage, and one retry policy.
//!
//! A [`Failure`] is decided where the error happens: transient (worth another try,
//! perhaps after a wait the source asked for, such as `Retry-After`), permanent (no
//! retry can help), or refused (the request asks for something that cannot be done).
//! The subscriber loop turns a transient failure into a nak after the stage's
//! [`RetryPolicy`] delay and any other into a dead letter; a stage that gives up on a
//! job (publishing `image.failed`) asks the policy whether attempts are left.

use std::time::Duration;

type Source = Box<dyn std::error::Error + Send + Sync>;

/// What kind of failure it is, which decides what happens next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// May pass later (timeouts, 408, 429, 5xx, NATS away); `after` is the source's own
    /// wait, when it named one.
    Transient { after: Option<Duration> },
    /// Will not pass (401, 403, 404, no picture in the answer, an unreadable event).
    Permanent,
    /// The request asks for something that cannot be done (an option a model lacks,
    /// a model without a key).
    Refused,
}

/// Why something did not happen, in words a user can act on (never a secret), with the
/// underlying error kept as its source.
#[derive(Debug, thiserror::Error)]
#[error("{reason}")]
pub struct Failure {
    pub kind: FailureKind,
    pub reason: String,
    #[source]
    source: Option<Source>,
}

impl Failure {
    pub fn transient(reason: impl Into<String>) -> Self {
        Self { kind: FailureKind::Transient { after: None }, reason: reason.into(), source: None }
    }

    pub fn permanent(reason: impl Into<String>) -> Self {
        Self { kind: FailureKind::Permanent, reason: reason.into(), source: None }
    }

    pub fn refused(reason: impl Into<String>) -> Self {
        Self { kind: FailureKind::Refused, reason: reason.into(), source: None }
    }

    /// The same failure, to be tried again no sooner than `after`.
    pub fn after(mut self, after: Option<Duration>) -> Self {
        if let FailureKind::Transient { after: wait } = &mut self.kind {
            *wait = after;
        }
        self
    }

    /// Keeps the error this failure came from.
    pub fn caused_by(mut self, source: impl Into<Source>) -> Self {
        self.source = Some(source.into());
        self
    }

    pub fn is_transient(&self) -> bool {
        matches!(self.kind, FailureKind::Transient { .. })
    }
}

/// How a stage spaces its retries: `base`, `2·base`, `4·base` ... up to `cap`, each
/// spread by ±`jitter` so that many jobs retrying at once do not arrive at once, and
/// never sooner than the source asked. `max_attempts` bounds the tries a stage spends on
/// one job's own failures (a provider, a mail server); NATS hiccups retry until healthy.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    pub base: Duration,
    pub cap: Duration,
    /// 0.2 spreads each delay over 80% to 120%.
    pub jitter: f64,
    pub max_attempts: u32,
}

impl RetryPolicy {
    /// The wait before delivery `attempt + 1`.
    pub fn delay(&self, attempt: u32, asked: Option<Duration>) -> Duration {
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1).min(20));
        let exponential = self.base.saturating_mul(factor).min(self.cap);
        let spread = 1.0 - self.jitter + 2.0 * self.jitter * fastrand::f64();
        exponential.mul_f64(spread).max(asked.unwrap_or_default())
    }

    /// Whether delivery `attempt` is the last this policy allows for a job's own failures.
    pub fn is_last(&self, attempt: u32) -> bool {
        attempt >= self.max_attempts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: RetryPolicy =
        RetryPolicy { base: Duration::from_secs(5), cap: Duration::from_secs(60), jitter: 0.2, max_attempts: 3 };

    #[test]
    fn delays_double_up_to_the_cap_within_the_jitter() {
        for (attempt, nominal) in [(1, 5.0), (2, 10.0), (3, 20.0), (4, 40.0), (5, 60.0), (30, 60.0)] {
            let delay = POLICY.delay(attempt, None).as_secs_f64();
            assert!(delay >= nominal * 0.8 && delay <= nominal * 1.2, "attempt {attempt}: {delay}");
        }
    }

    #[test]
    fn a_wait_the_source_asked_for_is_honoured() {
        assert!(POLICY.delay(1, Some(Duration::from_secs(30))) >= Duration::from_secs(30));
    }

    #[test]
    fn the_last_attempt_is_the_policys_max() {
        assert!(!POLICY.is_last(2));
        assert!(POLICY.is_last(3));
    }

    #[test]
    fn only_transient_failures_carry_a_wait() {
        let wait = Some(Duration::from_secs(7));
        assert_eq!(Failure::transient("busy").after(wait).kind, FailureKind::Transient { after: wait });
        assert_eq!(Failure::permanent("gone").after(wait).kind, FailureKind::Permanent);
    }
}
