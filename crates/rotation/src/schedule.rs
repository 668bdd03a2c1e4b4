//! Rotation schedules and the computation of the next due time.
//!
//! Named schedules repeat from an anchor instant, all in UTC: `daily` and `weekly` add whole
//! days, while `monthly`, `quarterly` and `yearly` add calendar months and keep the anchor's day
//! of month and time of day. When the anchor's day does not exist in a month (the 31st in
//! April, the 29th of February in a common year), that month's occurrence falls on its last
//! day. The next month goes back to the anchor's day, so the schedule never drifts: monthly on
//! Jan 31 gives Feb 29 (2028), Mar 31, Apr 30, May 31. A cron expression (croner syntax,
//! evaluated in UTC) ignores the anchor.
//!
//! Jitter is not applied here: see [`jitter_offset`].

use std::fmt;
use std::str::FromStr;

use time::{Date, Duration, Month, OffsetDateTime, PrimitiveDateTime};

/// When a secret rotates.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Schedule {
    /// Every day at the anchor's time of day.
    Daily,
    /// Every 7 days from the anchor.
    Weekly,
    /// Every calendar month on the anchor's day (clamped to the month's last day).
    Monthly,
    /// Every 3 calendar months on the anchor's day (clamped).
    Quarterly,
    /// Every year on the anchor's month and day (Feb 29 falls on Feb 28 in common years).
    Yearly,
    /// A cron expression in UTC, as accepted by the `croner` crate (5 or 6 fields, aliases such
    /// as `@weekly`, `L` for the last day of the month).
    Cron(String),
}

/// Errors of schedule parsing and evaluation.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ScheduleError {
    /// The text is neither a named schedule nor a valid cron expression.
    #[error(
        "invalid schedule {text:?}: expected daily, weekly, monthly, quarterly, yearly or a cron expression ({reason})"
    )]
    Invalid {
        /// The schedule as written.
        text: String,
        /// The cron parser's complaint.
        reason: String,
    },
    /// The schedule has no occurrence after the given instant (a cron expression naming a past
    /// year, for example) or it lies beyond the supported date range.
    #[error(
        "schedule {0:?} has no occurrence after the given time; choose a schedule that repeats"
    )]
    NoOccurrence(String),
}

impl FromStr for Schedule {
    type Err = ScheduleError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let trimmed = text.trim();
        Ok(match trimmed {
            "daily" => Schedule::Daily,
            "weekly" => Schedule::Weekly,
            "monthly" => Schedule::Monthly,
            "quarterly" => Schedule::Quarterly,
            "yearly" => Schedule::Yearly,
            _ => {
                parse_cron(trimmed)?;
                Schedule::Cron(trimmed.to_owned())
            }
        })
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Schedule::Daily => "daily",
            Schedule::Weekly => "weekly",
            Schedule::Monthly => "monthly",
            Schedule::Quarterly => "quarterly",
            Schedule::Yearly => "yearly",
            Schedule::Cron(expression) => expression,
        })
    }
}

impl serde::Serialize for Schedule {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Schedule {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl Schedule {
    /// Returns the first occurrence strictly after `after`, counting from `anchor` (ignored by
    /// cron expressions). Before the anchor, the anchor itself is the next occurrence.
    pub fn next_after(
        &self,
        anchor: OffsetDateTime,
        after: OffsetDateTime,
    ) -> Result<OffsetDateTime, ScheduleError> {
        let anchor = anchor.to_offset(time::UtcOffset::UTC);
        let after = after.to_offset(time::UtcOffset::UTC);
        let next = match self {
            Schedule::Daily => next_fixed(anchor, after, Duration::days(1)),
            Schedule::Weekly => next_fixed(anchor, after, Duration::weeks(1)),
            Schedule::Monthly => next_calendar(anchor, after, 1),
            Schedule::Quarterly => next_calendar(anchor, after, 3),
            Schedule::Yearly => next_calendar(anchor, after, 12),
            Schedule::Cron(expression) => next_cron(expression, after),
        };
        next.ok_or_else(|| ScheduleError::NoOccurrence(self.to_string()))
    }
}

fn next_fixed(
    anchor: OffsetDateTime,
    after: OffsetDateTime,
    period: Duration,
) -> Option<OffsetDateTime> {
    if after < anchor {
        return Some(anchor);
    }
    let periods = (after - anchor).whole_seconds() / period.whole_seconds() + 1;
    anchor.checked_add(period.checked_mul(i32::try_from(periods).ok()?)?)
}

fn next_calendar(
    anchor: OffsetDateTime,
    after: OffsetDateTime,
    step_months: i64,
) -> Option<OffsetDateTime> {
    let anchor_index = month_index(anchor.date());
    let after_index = month_index(after.date());

    // Start one step before the month of `after`, since the clamped occurrence in that month
    // may lie before or after it; at most three candidates are needed.
    let mut step = ((after_index - anchor_index) / step_months - 1).max(0);
    loop {
        let candidate = occurrence(anchor, anchor_index + step * step_months)?;
        if candidate > after {
            return Some(candidate);
        }
        step += 1;
    }
}

/// Months since year 0, so that adding months is integer arithmetic.
fn month_index(date: Date) -> i64 {
    i64::from(date.year()) * 12 + i64::from(u8::from(date.month())) - 1
}

fn occurrence(anchor: OffsetDateTime, index: i64) -> Option<OffsetDateTime> {
    let year = i32::try_from(index.div_euclid(12)).ok()?;
    let month = Month::try_from(u8::try_from(index.rem_euclid(12) + 1).ok()?).ok()?;
    let day = anchor.day().min(month.length(year));
    let date = Date::from_calendar_date(year, month, day).ok()?;
    Some(PrimitiveDateTime::new(date, anchor.time()).assume_utc())
}

fn parse_cron(expression: &str) -> Result<croner::Cron, ScheduleError> {
    croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Optional)
        .build()
        .parse(expression)
        .map_err(|error| ScheduleError::Invalid {
            text: expression.to_owned(),
            reason: error.to_string(),
        })
}

fn next_cron(expression: &str, after: OffsetDateTime) -> Option<OffsetDateTime> {
    let cron = parse_cron(expression).ok()?;
    let start = chrono::DateTime::<chrono::Utc>::from_timestamp(after.unix_timestamp(), 0)?;
    let next = cron.find_next_occurrence(&start, false).ok()?;
    OffsetDateTime::from_unix_timestamp(next.timestamp()).ok()
}

/// Returns a delay in `[0, window)` derived from the path alone, so that secrets sharing a
/// schedule spread over the window, and each path keeps the same offset across restarts and
/// processes. A zero window gives zero.
pub fn jitter_offset(path: &str, window: Duration) -> Duration {
    let window_secs = window.whole_seconds();
    if window_secs <= 0 {
        return Duration::ZERO;
    }
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, path.as_bytes());
    let mut first = [0_u8; 8];
    first.copy_from_slice(&digest.as_ref()[..8]);
    let offset = u64::from_be_bytes(first) % window_secs.unsigned_abs();
    Duration::seconds(i64::try_from(offset).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn occurrences(
        schedule: &Schedule,
        anchor: OffsetDateTime,
        count: usize,
    ) -> Vec<OffsetDateTime> {
        let mut out = Vec::new();
        let mut after = anchor - Duration::seconds(1);
        for _ in 0..count {
            let next = schedule
                .next_after(anchor, after)
                .expect("schedule repeats");
            out.push(next);
            after = next;
        }
        out
    }

    #[test]
    fn monthly_on_31st_clamps_to_month_end() {
        let anchor = datetime!(2028-01-31 09:30 UTC);
        let got = occurrences(&Schedule::Monthly, anchor, 14);
        let expected = [
            datetime!(2028-01-31 09:30 UTC),
            datetime!(2028-02-29 09:30 UTC),
            datetime!(2028-03-31 09:30 UTC),
            datetime!(2028-04-30 09:30 UTC),
            datetime!(2028-05-31 09:30 UTC),
            datetime!(2028-06-30 09:30 UTC),
            datetime!(2028-07-31 09:30 UTC),
            datetime!(2028-08-31 09:30 UTC),
            datetime!(2028-09-30 09:30 UTC),
            datetime!(2028-10-31 09:30 UTC),
            datetime!(2028-11-30 09:30 UTC),
            datetime!(2028-12-31 09:30 UTC),
            datetime!(2029-01-31 09:30 UTC),
            datetime!(2029-02-28 09:30 UTC),
        ];
        assert_eq!(got, expected);
    }

    #[test]
    fn monthly_from_mid_month_instant() {
        let anchor = datetime!(2028-01-31 00:00 UTC);
        let next = Schedule::Monthly
            .next_after(anchor, datetime!(2028-03-15 12:00 UTC))
            .expect("next");
        assert_eq!(next, datetime!(2028-03-31 00:00 UTC));

        // Exactly at an occurrence, the next one is a month later.
        let next = Schedule::Monthly
            .next_after(anchor, datetime!(2028-02-29 00:00 UTC))
            .expect("next");
        assert_eq!(next, datetime!(2028-03-31 00:00 UTC));
    }

    #[test]
    fn yearly_on_leap_day_uses_feb_28() {
        let anchor = datetime!(2028-02-29 00:00 UTC);
        let got = occurrences(&Schedule::Yearly, anchor, 5);
        assert_eq!(got[1], datetime!(2029-02-28 00:00 UTC));
        assert_eq!(got[3], datetime!(2031-02-28 00:00 UTC));
        assert_eq!(got[4], datetime!(2032-02-29 00:00 UTC));
    }

    #[test]
    fn quarterly_steps_three_months() {
        let anchor = datetime!(2027-11-30 06:00 UTC);
        let got = occurrences(&Schedule::Quarterly, anchor, 4);
        assert_eq!(
            got,
            [
                datetime!(2027-11-30 06:00 UTC),
                datetime!(2028-02-29 06:00 UTC),
                datetime!(2028-05-30 06:00 UTC),
                datetime!(2028-08-30 06:00 UTC),
            ]
        );
    }

    #[test]
    fn daily_and_weekly_keep_time_of_day() {
        let anchor = datetime!(2028-02-28 23:00 UTC);
        let daily = occurrences(&Schedule::Daily, anchor, 3);
        assert_eq!(daily[1], datetime!(2028-02-29 23:00 UTC));
        assert_eq!(daily[2], datetime!(2028-03-01 23:00 UTC));

        let weekly = Schedule::Weekly
            .next_after(anchor, datetime!(2028-03-01 00:00 UTC))
            .expect("next");
        assert_eq!(weekly, datetime!(2028-03-06 23:00 UTC));
    }

    #[test]
    fn before_anchor_next_is_anchor() {
        let anchor = datetime!(2028-05-01 00:00 UTC);
        for schedule in [Schedule::Daily, Schedule::Monthly, Schedule::Yearly] {
            let next = schedule
                .next_after(anchor, datetime!(2027-01-01 00:00 UTC))
                .expect("next");
            assert_eq!(next, anchor, "{schedule}");
        }
    }

    #[test]
    fn cron_last_day_of_month() {
        let schedule: Schedule = "0 3 L * *".parse().expect("valid cron");
        let next = schedule
            .next_after(
                datetime!(2000-01-01 00:00 UTC),
                datetime!(2028-02-10 00:00 UTC),
            )
            .expect("next");
        assert_eq!(next, datetime!(2028-02-29 03:00 UTC));
    }

    #[test]
    fn invalid_schedule_names_the_text() {
        let error = "every tuesday".parse::<Schedule>().expect_err("invalid");
        assert!(error.to_string().contains("every tuesday"), "{error}");
    }

    #[test]
    fn schedule_round_trips_through_serde() {
        let schedule: Schedule = serde_json::from_str("\"*/15 * * * *\"").expect("parse");
        assert_eq!(schedule, Schedule::Cron("*/15 * * * *".to_owned()));
        assert_eq!(
            serde_json::to_string(&Schedule::Monthly).expect("json"),
            "\"monthly\""
        );
    }

    #[test]
    fn jitter_is_stable_and_bounded() {
        let window = Duration::hours(1);
        let first = jitter_offset("team/app/openai", window);
        assert_eq!(first, jitter_offset("team/app/openai", window));
        assert!(first < window);
        assert_eq!(
            jitter_offset("team/app/openai", Duration::ZERO),
            Duration::ZERO
        );

        let distinct: std::collections::HashSet<i64> = (0..1000)
            .map(|i| jitter_offset(&format!("team/app/key{i}"), window).whole_seconds())
            .collect();
        assert!(
            distinct.len() > 700,
            "only {} distinct offsets",
            distinct.len()
        );
    }
}
