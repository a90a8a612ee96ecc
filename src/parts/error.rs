//! The error of every part operation (publish, ack, key-value, objects), with a kind
//! callers match. Setting the parts up (connecting, creating streams) has its own error,
//! `bus::SetupError`, beside the code that does it.

use crate::failure::Failure;

type Source = Box<dyn std::error::Error + Send + Sync>;

/// What a caller can do about a failed operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartErrorKind {
    /// NATS away, a timeout, a cluster without a leader: the same call may pass later.
    RetryLater,
    /// No retry can help (an entry this build cannot read).
    GiveUp,
    /// What the call names is not there (a bucket not created yet, an entry gone).
    NotFound,
    /// Another writer came first and the call's premise no longer holds.
    Conflict,
}

/// A part operation that failed: what was being done, its kind, and the client's error.
#[derive(Debug, thiserror::Error)]
#[error("{doing}: {source}")]
pub struct PartError {
    kind: PartErrorKind,
    /// What was being done, as a phrase: "publishing to image.generated".
    doing: String,
    #[source]
    source: Source,
}

impl PartError {
    pub fn new(kind: PartErrorKind, doing: impl Into<String>, source: impl Into<Source>) -> Self {
        Self { kind, doing: doing.into(), source: source.into() }
    }

    pub fn retry_later(doing: impl Into<String>, source: impl Into<Source>) -> Self {
        Self::new(PartErrorKind::RetryLater, doing, source)
    }

    pub fn give_up(doing: impl Into<String>, source: impl Into<Source>) -> Self {
        Self::new(PartErrorKind::GiveUp, doing, source)
    }

    pub fn kind(&self) -> PartErrorKind {
        self.kind
    }
}

impl From<PartError> for Failure {
    /// A part that may answer later makes a transient failure; one that never will, a
    /// permanent one.
    fn from(error: PartError) -> Self {
        let reason = error.to_string();
        let failure = match error.kind {
            PartErrorKind::GiveUp => Failure::permanent(reason),
            PartErrorKind::RetryLater | PartErrorKind::NotFound | PartErrorKind::Conflict => Failure::transient(reason),
        };
        failure.caused_by(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_error_no_retry_can_help_makes_a_permanent_failure() {
        let failure = |kind| Failure::from(PartError::new(kind, "reading job-1", "no"));
        assert!(!failure(PartErrorKind::GiveUp).is_transient());
        for kind in [PartErrorKind::RetryLater, PartErrorKind::NotFound, PartErrorKind::Conflict] {
            assert!(failure(kind).is_transient(), "{kind:?}");
        }
        assert_eq!(failure(PartErrorKind::GiveUp).reason, "reading job-1: no");
    }
}
