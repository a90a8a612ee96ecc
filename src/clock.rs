//! What time it is: the system clock, or a test's (quota days, budget periods).

use std::sync::Arc;

use time::OffsetDateTime;

/// What time it is: the system clock, or a test's.
pub type Clock = Arc<dyn Fn() -> OffsetDateTime + Send + Sync>;

/// The system clock.
pub fn system_clock() -> Clock {
    Arc::new(OffsetDateTime::now_utc)
}
