//! Cron expressions, the five-field kind (`minute hour day-of-month month day-of-week`), in
//! UTC. Each field takes `*`, numbers, ranges `a-b`, lists `a,b` and steps `*/n` or `a-b/n`;
//! months and weekdays also take names (`jan`, `mon`). When both day fields are other than
//! `*`, a day matches if either does (as in Vixie cron, except that a field such as `*/2`
//! counts as restricted here); weekday 7 is Sunday, like 0.

use std::str::FromStr;

use time::{Duration, OffsetDateTime, Time};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cron {
    minutes: u64,
    hours: u64,
    days: u64,
    months: u64,
    weekdays: u64,
    days_restricted: bool,
    weekdays_restricted: bool,
}

/// Why an expression was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid cron expression: {0}")]
pub struct CronError(String);

const MONTHS: [&str; 12] = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"];
const WEEKDAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

/// Parses one field into a bit set of the values it allows within `min..=max`.
fn field(text: &str, min: u32, max: u32, names: &[&str], name_base: u32) -> Result<u64, CronError> {
    let value = |token: &str| -> Result<u32, CronError> {
        let lower = token.to_ascii_lowercase();
        if let Some(index) = names.iter().position(|name| *name == lower) {
            return Ok(index as u32 + name_base);
        }
        token.parse::<u32>().map_err(|_| CronError(format!("`{token}` is not a number")))
    };
    let mut bits = 0u64;
    for part in text.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((range, step)) => {
                let step = step.parse::<u32>().map_err(|_| CronError(format!("`{step}` is not a step")))?;
                if step == 0 {
                    return Err(CronError("a step must be at least 1".into()));
                }
                (range, step)
            }
            None => (part, 1),
        };
        let (start, end) = match range {
            "*" => (min, max),
            _ => match range.split_once('-') {
                Some((a, b)) => (value(a)?, value(b)?),
                None if part.contains('/') => (value(range)?, max),
                None => (value(range)?, value(range)?),
            },
        };
        if start < min || end > max || start > end {
            return Err(CronError(format!("`{part}` is outside {min}-{max}")));
        }
        let mut v = start;
        while v <= end {
            bits |= 1 << v;
            v += step;
        }
    }
    Ok(bits)
}

impl FromStr for Cron {
    type Err = CronError;

    fn from_str(expression: &str) -> Result<Self, Self::Err> {
        let fields: Vec<&str> = expression.split_whitespace().collect();
        let [minute, hour, day, month, weekday] = fields.as_slice() else {
            return Err(CronError(format!("expected 5 fields, found {}", fields.len())));
        };
        let mut weekdays = field(weekday, 0, 7, &WEEKDAYS, 0)?;
        if weekdays & (1 << 7) != 0 {
            weekdays = (weekdays | 1) & !(1 << 7);
        }
        Ok(Self {
            minutes: field(minute, 0, 59, &[], 0)?,
            hours: field(hour, 0, 23, &[], 0)?,
            days: field(day, 1, 31, &[], 0)?,
            months: field(month, 1, 12, &MONTHS, 1)?,
            weekdays,
            days_restricted: *day != "*",
            weekdays_restricted: *weekday != "*",
        })
    }
}

impl Cron {
    fn day_matches(&self, at: OffsetDateTime) -> bool {
        let day = self.days & (1 << at.day()) != 0;
        let weekday = self.weekdays & (1 << at.weekday().number_days_from_sunday()) != 0;
        match (self.days_restricted, self.weekdays_restricted) {
            (true, true) => day || weekday,
            (true, false) => day,
            (false, true) => weekday,
            (false, false) => true,
        }
    }

    /// The first minute strictly after `after` that the expression matches, within the next
    /// five years (an expression such as `0 0 30 2 *` never matches).
    pub fn next_after(&self, after: OffsetDateTime) -> Option<OffsetDateTime> {
        let start = after.replace_second(0).ok()?.replace_nanosecond(0).ok()? + Duration::minutes(1);
        let limit = start + Duration::days(5 * 366);
        let mut at = start;
        while at < limit {
            if self.months & (1 << u8::from(at.month())) == 0 {
                let (year, month) = if at.month() == time::Month::December {
                    (at.year() + 1, time::Month::January)
                } else {
                    (at.year(), at.month().next())
                };
                at = at
                    .replace_day(1)
                    .ok()?
                    .replace_time(Time::MIDNIGHT)
                    .replace_year(year)
                    .ok()?
                    .replace_month(month)
                    .ok()?;
                continue;
            }
            if !self.day_matches(at) {
                at = at.replace_time(Time::MIDNIGHT) + Duration::days(1);
                continue;
            }
            if self.hours & (1 << at.hour()) == 0 {
                at = at.replace_minute(0).ok()? + Duration::hours(1);
                continue;
            }
            if self.minutes & (1 << at.minute()) == 0 {
                at += Duration::minutes(1);
                continue;
            }
            return Some(at);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use time::macros::datetime;

    fn next(expression: &str, after: OffsetDateTime) -> OffsetDateTime {
        expression.parse::<Cron>().unwrap().next_after(after).unwrap()
    }

    #[test]
    fn common_expressions() {
        let t = datetime!(2026-11-24 01:06:20 UTC);
        assert_eq!(next("* * * * *", t), datetime!(2026-11-24 01:07 UTC));
        assert_eq!(next("*/15 * * * *", t), datetime!(2026-11-24 01:15 UTC));
        assert_eq!(next("0 3 * * *", t), datetime!(2026-11-24 03:00 UTC));
        assert_eq!(next("30 0 * * *", t), datetime!(2026-11-25 00:30 UTC));
        assert_eq!(next("0 0 1 * *", t), datetime!(2026-12-01 00:00 UTC));
        assert_eq!(next("0 0 1 jan *", t), datetime!(2027-01-01 00:00 UTC));
        assert_eq!(next("0 9 * * mon-fri", t), datetime!(2026-11-24 09:00 UTC));
        assert_eq!(next("0 9 * * sun", t), datetime!(2026-11-29 09:00 UTC));
        assert_eq!(next("0 9 * * 7", t), datetime!(2026-11-29 09:00 UTC));
        assert_eq!(next("0 0 29 2 *", t), datetime!(2028-02-29 00:00 UTC));
        assert_eq!(next("10-20/5 1 * * *", t), datetime!(2026-11-24 01:10 UTC));
        // Both day fields restricted: either matches (the 1st, or any Friday).
        assert_eq!(next("0 0 1 * fri", t), datetime!(2026-11-27 00:00 UTC));
        assert_eq!(next("0 0 31 dec *", datetime!(2026-12-31 00:00 UTC)), datetime!(2027-12-31 00:00 UTC));
        assert_eq!("0 0 30 2 *".parse::<Cron>().unwrap().next_after(t), None);
    }

    #[test]
    fn bad_expressions_are_refused() {
        for bad in [
            "",
            "* * * *",
            "* * * * * *",
            "60 * * * *",
            "* 24 * * *",
            "* * 0 * *",
            "* * * 13 *",
            "*/0 * * * *",
            "5-1 * * * *",
            "x * * * *",
            "* * * * funday",
        ] {
            assert!(bad.parse::<Cron>().is_err(), "{bad:?} should be refused");
        }
    }

    proptest! {
        #[test]
        fn the_next_time_matches_and_nothing_between_does(minute in 0u32..60, hour in 0u32..24, step in 1u32..30, offset in 0i64..100_000_000) {
            let expression = format!("{minute}/{step} {hour} * * *");
            let cron: Cron = expression.parse().unwrap();
            let after = datetime!(2026-01-01 00:00 UTC) + Duration::seconds(offset);
            let found = cron.next_after(after).unwrap();
            prop_assert!(found > after);
            prop_assert_eq!(found.hour() as u32, hour);
            prop_assert!(found.minute() as u32 >= minute && (found.minute() as u32 - minute).is_multiple_of(step));
            let mut probe = after.replace_second(0).unwrap().replace_nanosecond(0).unwrap() + Duration::minutes(1);
            while probe < found {
                let matches = probe.hour() as u32 == hour && probe.minute() as u32 >= minute && (probe.minute() as u32 - minute).is_multiple_of(step);
                prop_assert!(!matches, "{} matches before {}", probe, found);
                probe += Duration::minutes(1);
            }
        }
    }
}
