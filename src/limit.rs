//! An optional per-minute limit: mail providers and free model tiers throttle bursts.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;

const WINDOW: Duration = Duration::from_secs(60);

/// Lets at most `per_minute` calls start in any 60-second window (0: no limit).
pub(crate) struct RateLimit {
    per_minute: usize,
    started: Mutex<VecDeque<Instant>>,
}

impl RateLimit {
    pub(crate) fn per_minute(per_minute: u32) -> Self {
        Self { per_minute: per_minute as usize, started: Mutex::new(VecDeque::new()) }
    }

    /// Waits until another call may start, and counts it.
    pub(crate) async fn acquire(&self) {
        while let Err(wait) = self.try_acquire().await {
            tokio::time::sleep(wait).await;
        }
    }

    /// Counts a call if one may start now; otherwise says how long until one may.
    pub(crate) async fn try_acquire(&self) -> Result<(), Duration> {
        if self.per_minute == 0 {
            return Ok(());
        }
        let mut started = self.started.lock().await;
        let now = Instant::now();
        while started.front().is_some_and(|&t| now.duration_since(t) >= WINDOW) {
            started.pop_front();
        }
        if started.len() < self.per_minute {
            started.push_back(now);
            return Ok(());
        }
        Err(WINDOW - now.duration_since(started[0]))
    }

    /// Whether no call was counted in the last minute (the limit may be forgotten).
    pub(crate) async fn is_idle(&self) -> bool {
        let started = self.started.lock().await;
        started.back().is_none_or(|&t| t.elapsed() >= WINDOW)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_third_send_in_a_minute_waits_for_the_first_to_leave_the_window() {
        let limit = RateLimit::per_minute(2);
        let start = Instant::now();
        limit.acquire().await;
        tokio::time::advance(Duration::from_secs(10)).await;
        limit.acquire().await;
        assert_eq!(start.elapsed(), Duration::from_secs(10));
        limit.acquire().await;
        assert_eq!(start.elapsed(), WINDOW, "waited until the first send was a minute old");
    }

    #[tokio::test(start_paused = true)]
    async fn zero_means_no_limit() {
        let limit = RateLimit::per_minute(0);
        let start = Instant::now();
        for _ in 0..1000 {
            limit.acquire().await;
        }
        assert_eq!(start.elapsed(), Duration::ZERO);
    }
}
