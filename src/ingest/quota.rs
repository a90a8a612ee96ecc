//! `jobs_per_day`: how many jobs a key may queue in a day, the day starting at 00:00 in
//! `[server] timezone`. Each job takes a numbered slot (`<key>.<day>.<n>`), created
//! only when absent, in a bucket every ingest shares: two ingests can never both take
//! the last one, and nothing needs to be reset at midnight (the next day's slots are
//! other keys; old ones expire with the bucket's two-day age).

use std::collections::HashMap;
use std::num::NonZeroU64;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use time::OffsetDateTime;

use crate::parts::{KeyValue, PartError};

use crate::clock::Today;
pub use crate::clock::{Clock, system_clock};

/// A key's quota after asking for one more job.
#[derive(Debug, PartialEq)]
pub(super) enum Quota {
    Taken,
    /// None left until `resets_at` (the next 00:00 in the zone).
    Exceeded {
        resets_at: OffsetDateTime,
    },
}

pub(super) struct Quotas {
    slots: Arc<dyn KeyValue>,
    zone: jiff::tz::TimeZone,
    clock: Clock,
    /// The slot each key's day is known to have reached, so that a job usually costs one
    /// write, not one per job already queued that day.
    reached: Mutex<HashMap<String, u64>>,
}

impl Quotas {
    pub(super) fn new(slots: Arc<dyn KeyValue>, zone: jiff::tz::TimeZone, clock: Clock) -> Self {
        Self { slots, zone, clock, reached: Mutex::default() }
    }

    /// What time it is by this part's clock.
    pub(super) fn now(&self) -> OffsetDateTime {
        (self.clock)()
    }

    /// Takes one of `per_day` jobs of key `name` for today, if one is left.
    pub(super) async fn take(&self, name: &str, per_day: NonZeroU64) -> Result<Quota, PartError> {
        let today = Today::at((self.clock)(), &self.zone);
        let prefix = format!("{name}.{}", today.day);
        let mut slot = self.reached.lock().expect("not poisoned").get(&prefix).copied().unwrap_or(1);
        while slot <= per_day.get() {
            if self.slots.create(&format!("{prefix}.{slot}"), Bytes::new()).await? {
                self.remember(prefix, slot + 1);
                return Ok(Quota::Taken);
            }
            slot += 1;
        }
        self.remember(prefix, slot);
        Ok(Quota::Exceeded { resets_at: today.day_ends })
    }

    fn remember(&self, prefix: String, slot: u64) {
        let mut reached = self.reached.lock().expect("not poisoned");
        // Yesterday's entries are of no use any more: keep the map to today's.
        let today = prefix.rsplit_once('.').map(|(_, day)| day.to_string()).unwrap_or_default();
        reached.retain(|known, _| known.ends_with(&today));
        reached.insert(prefix, slot);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicI64, Ordering};

    use time::macros::datetime;

    use super::*;
    use crate::contract::QUOTA_BUCKET;
    use crate::parts::memory::MemoryKv;

    /// Quotas on a memory bucket, in `zone`, with a clock the test moves.
    fn quotas(zone: &str, now: OffsetDateTime) -> (Quotas, Arc<AtomicI64>) {
        let at = Arc::new(AtomicI64::new(now.unix_timestamp()));
        let clock_at = at.clone();
        let clock: Clock =
            Arc::new(move || OffsetDateTime::from_unix_timestamp(clock_at.load(Ordering::SeqCst)).unwrap());
        let zone = jiff::tz::TimeZone::get(zone).unwrap();
        (Quotas::new(Arc::new(MemoryKv::new(QUOTA_BUCKET)), zone, clock), at)
    }

    #[tokio::test]
    async fn a_key_gets_its_jobs_per_day_and_then_waits_for_midnight_in_shanghai() {
        // 23:30 in Shanghai (UTC+8) on 7 December.
        let (quotas, clock) = quotas("Asia/Shanghai", datetime!(2026-12-07 15:30 UTC));
        let two = NonZeroU64::new(2).unwrap();
        assert_eq!(quotas.take("design", two).await.unwrap(), Quota::Taken);
        assert_eq!(quotas.take("design", two).await.unwrap(), Quota::Taken);
        let midnight = datetime!(2026-12-07 16:00 UTC);
        assert_eq!(quotas.take("design", two).await.unwrap(), Quota::Exceeded { resets_at: midnight });
        // Another key has its own count.
        assert_eq!(quotas.take("ops", two).await.unwrap(), Quota::Taken);
        // One second past midnight there (still 7 December in UTC): a new day.
        clock.store(midnight.unix_timestamp() + 1, Ordering::SeqCst);
        assert_eq!(quotas.take("design", two).await.unwrap(), Quota::Taken);
    }

    #[tokio::test]
    async fn in_utc_the_day_turns_at_utc_midnight() {
        let (quotas, clock) = quotas("UTC", datetime!(2026-12-07 23:59:59 UTC));
        let one = NonZeroU64::new(1).unwrap();
        assert_eq!(quotas.take("design", one).await.unwrap(), Quota::Taken);
        let refused = quotas.take("design", one).await.unwrap();
        assert_eq!(refused, Quota::Exceeded { resets_at: datetime!(2026-12-08 00:00 UTC) });
        clock.store(datetime!(2026-12-08 00:00 UTC).unix_timestamp(), Ordering::SeqCst);
        assert_eq!(quotas.take("design", one).await.unwrap(), Quota::Taken);
    }

    #[tokio::test]
    async fn two_ingests_sharing_the_bucket_never_pass_the_quota_together() {
        let slots: Arc<dyn KeyValue> = Arc::new(MemoryKv::new(QUOTA_BUCKET));
        let clock: Clock = Arc::new(|| datetime!(2026-12-07 12:00 UTC));
        let first = Quotas::new(slots.clone(), jiff::tz::TimeZone::UTC, clock.clone());
        let second = Quotas::new(slots, jiff::tz::TimeZone::UTC, clock);
        let three = NonZeroU64::new(3).unwrap();
        let mut taken = 0;
        for _ in 0..4 {
            for quotas in [&first, &second] {
                if quotas.take("design", three).await.unwrap() == Quota::Taken {
                    taken += 1;
                }
            }
        }
        assert_eq!(taken, 3);
    }
}
