//! What time it is (the system clock, or a test's), and which day and month that is in a
//! zone: quota days and budget periods start at 00:00 in `[server] timezone`.

use std::sync::Arc;

use time::OffsetDateTime;

use crate::contract::spend::Period;

/// What time it is: the system clock, or a test's.
pub type Clock = Arc<dyn Fn() -> OffsetDateTime + Send + Sync>;

/// The system clock.
pub fn system_clock() -> Clock {
    Arc::new(OffsetDateTime::now_utc)
}

/// Today in a zone: the day and month it belongs to, and when each ends.
#[derive(Debug, Clone, PartialEq)]
pub struct Today {
    /// `2026-12-07`
    pub day: String,
    /// `2026-12`
    pub month: String,
    pub day_ends: OffsetDateTime,
    pub month_starts: OffsetDateTime,
    pub month_ends: OffsetDateTime,
}

impl Today {
    /// The day and month `now` falls in, in `zone`.
    pub fn at(now: OffsetDateTime, zone: &jiff::tz::TimeZone) -> Self {
        let instant = jiff::Timestamp::new(now.unix_timestamp(), 0).expect("the clock is in range");
        let date = instant.to_zoned(zone.clone()).date();
        let start = |date: jiff::civil::Date| {
            date.to_zoned(zone.clone())
                .ok()
                .and_then(|start| OffsetDateTime::from_unix_timestamp(start.timestamp().as_second()).ok())
        };
        let tomorrow = date.tomorrow().expect("not the end of time");
        let next_month = date.first_of_month().checked_add(jiff::Span::new().months(1)).expect("not the end of time");
        Self {
            day: date.to_string(),
            month: date.strftime("%Y-%m").to_string(),
            day_ends: start(tomorrow).unwrap_or(now + time::Duration::DAY),
            month_starts: start(date.first_of_month()).unwrap_or(now),
            month_ends: start(next_month).unwrap_or(now + time::Duration::days(31)),
        }
    }

    pub fn ends(&self, period: Period) -> OffsetDateTime {
        match period {
            Period::Day => self.day_ends,
            Period::Month => self.month_ends,
        }
    }

    /// The day or month `period` names now.
    pub fn name(&self, period: Period) -> &str {
        match period {
            Period::Day => &self.day,
            Period::Month => &self.month,
        }
    }
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    #[test]
    fn a_month_and_a_day_end_at_midnight_in_the_zone() {
        let shanghai = jiff::tz::TimeZone::get("Asia/Shanghai").unwrap();
        // 30 November 16:30 UTC is already 1 December in Shanghai.
        let today = Today::at(datetime!(2026-11-30 16:30 UTC), &shanghai);
        assert_eq!((today.day.as_str(), today.month.as_str()), ("2026-12-01", "2026-12"));
        assert_eq!(today.day_ends, datetime!(2026-12-01 16:00 UTC));
        assert_eq!(today.month_ends, datetime!(2026-12-31 16:00 UTC));
    }
}
