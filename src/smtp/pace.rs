//! How fast mail goes out: at once, until a server says "too fast" (421/450/451, or QQ's
//! and 163's "550 ... frequency limited"). Then each mail waits a gap after the one
//! before, doubling with every such reply (up to a minute) and shrinking again with every
//! mail accepted, until mail flows freely again.

use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;

/// The first gap after a "too fast".
const FIRST_GAP: Duration = Duration::from_secs(2);
/// The longest gap between two mails.
const LONGEST_GAP: Duration = Duration::from_secs(60);
/// A gap below this is no gap.
const SHORTEST_GAP: Duration = Duration::from_millis(100);

#[derive(Default)]
pub struct Pace {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    gap: Duration,
    /// When the latest mail was let go (or will be).
    last: Option<Instant>,
}

impl Pace {
    /// Waits for this mail's turn.
    pub(crate) async fn wait(&self) {
        let turn = {
            let mut state = self.state.lock().await;
            let now = Instant::now();
            let turn = match state.last {
                Some(last) if !state.gap.is_zero() => (last + state.gap).max(now),
                _ => now,
            };
            state.last = Some(turn);
            turn
        };
        tokio::time::sleep_until(turn).await;
    }

    /// A server said "too fast": the gap doubles.
    pub(crate) async fn slow_down(&self) {
        let mut state = self.state.lock().await;
        state.gap = (state.gap * 2).clamp(FIRST_GAP, LONGEST_GAP);
        tracing::warn!(gap_seconds = state.gap.as_secs_f64(), "the mail server asks to send slower");
    }

    /// A mail was accepted: the gap shrinks by a quarter.
    pub(crate) async fn speed_up(&self) {
        let mut state = self.state.lock().await;
        state.gap = state.gap * 3 / 4;
        if state.gap < SHORTEST_GAP {
            state.gap = Duration::ZERO;
        }
    }

    #[cfg(test)]
    async fn gap(&self) -> Duration {
        self.state.lock().await.gap
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn too_fast_spaces_mails_out_more_each_time_and_accepted_mails_bring_the_pace_back() {
        let pace = Pace::default();
        let start = Instant::now();
        for _ in 0..3 {
            pace.wait().await;
        }
        assert_eq!(start.elapsed(), Duration::ZERO, "no gap before any server complained");

        pace.slow_down().await;
        pace.slow_down().await;
        assert_eq!(pace.gap().await, 2 * FIRST_GAP);
        let before = Instant::now();
        pace.wait().await;
        pace.wait().await;
        assert_eq!(before.elapsed(), 2 * 2 * FIRST_GAP, "each mail waits the gap after the one before");
        for _ in 0..10 {
            pace.slow_down().await;
        }
        assert_eq!(pace.gap().await, LONGEST_GAP);

        for _ in 0..30 {
            pace.speed_up().await;
        }
        assert_eq!(pace.gap().await, Duration::ZERO, "mail flows freely again");
    }
}
