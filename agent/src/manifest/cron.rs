//! Cron schedules as a CronJob reads them: five fields (minute, hour, day of month, month, day
//! of week, with names, ranges, steps and lists) or a macro (`@hourly`, `@daily`, `@weekly`,
//! `@monthly`, `@yearly`), parsed by `croner`, in a time zone from the IANA database (the
//! system's, else the one built in; the node's own zone when none is named, as
//! kube-controller-manager's).
//!
//! Times are stepped as Kubernetes' cron library steps them: a schedule fires at every minute
//! whose wall-clock time in its zone matches. So when clocks go back, a time in the repeated hour
//! fires in both, and when they go forward, a time in the skipped hour does not fire that day.
//! Pure functions of data.

use std::str::FromStr;

use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};
use jiff::Timestamp;
use jiff::civil::Date;
use jiff::tz::TimeZone;

/// A schedule that does not parse, or a time zone that is not known.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error("cannot use TZ or CRON_TZ in schedule, use timeZone field instead")]
    TimeZoneInSchedule,
    #[error("{0}")]
    Unparseable(String),
    #[error("timeZone must be nil or non-empty string")]
    EmptyTimeZone,
    #[error("timeZone must be an explicit time zone as defined in https://www.iana.org/time-zones")]
    LocalTimeZone,
    #[error("unknown time zone {0}")]
    UnknownTimeZone(String),
}

/// A parsed schedule in its time zone.
#[derive(Debug, Clone)]
pub struct Schedule {
    cron: Cron,
    tz: TimeZone,
    /// Whether the CronJob named its zone (else the node's own counts).
    named: bool,
}

/// How far ahead a schedule is searched before it is taken never to fire (`0 0 30 2 *`).
const HORIZON_SECONDS: i64 = 5 * 366 * 86_400;

/// The names cron fields may use (which contain letters that are operators elsewhere).
const NAMES: [&str; 19] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC", "SUN",
    "MON", "TUE", "WED", "THU", "FRI", "SAT",
];

/// Parses a schedule's five fields or macro, as Kubernetes' cron library reads them: what it
/// refuses is refused here too, with its words.
pub fn parse_schedule(schedule: &str) -> Result<Cron, ScheduleError> {
    if schedule.contains("TZ") {
        return Err(ScheduleError::TimeZoneInSchedule);
    }
    let trimmed = schedule.trim();
    let unparseable = |m: String| Err(ScheduleError::Unparseable(m));
    let fields: Vec<String> = match trimmed.to_ascii_lowercase().as_str() {
        "@yearly" | "@annually" => ["0", "0", "1", "1", "*"].map(String::from).to_vec(),
        "@monthly" => ["0", "0", "1", "*", "*"].map(String::from).to_vec(),
        "@weekly" => ["0", "0", "*", "*", "0"].map(String::from).to_vec(),
        "@daily" | "@midnight" => ["0", "0", "*", "*", "*"].map(String::from).to_vec(),
        "@hourly" => ["0", "*", "*", "*", "*"].map(String::from).to_vec(),
        d if d.starts_with("@every") => {
            return unparseable(
                "@every is not supported by Flotilla yet: give the times as five fields".into(),
            );
        }
        d if d.starts_with('@') => {
            return unparseable(format!("unrecognized descriptor: {trimmed}"));
        }
        _ => trimmed.split_whitespace().map(String::from).collect(),
    };
    if fields.len() != 5 {
        return unparseable(format!(
            "expected exactly 5 fields, found {}: [{}]",
            fields.len(),
            fields.join(" ")
        ));
    }
    // Quartz-style last, weekday and nth operators are not standard cron.
    for f in &fields {
        let mut bare = f.to_ascii_uppercase();
        for n in NAMES {
            bare = bare.replace(n, "");
        }
        if bare.contains(['L', 'W', '#']) {
            return unparseable(format!("failed to parse int from {f}"));
        }
    }
    // `?` and `*/1` are `*` (so day of month and day of week combine as cron's do).
    let fields: Vec<&str> = fields
        .iter()
        .map(|f| {
            if f == "?" || f == "*/1" {
                "*"
            } else {
                f.as_str()
            }
        })
        .collect();
    CronParser::builder()
        .seconds(Seconds::Disallowed)
        .year(Year::Disallowed)
        .build()
        .parse(&fields.join(" "))
        .map_err(|e| ScheduleError::Unparseable(e.to_string()))
}

/// The time zone a CronJob names (`None`: the node's own).
pub fn time_zone(name: Option<&str>) -> Result<TimeZone, ScheduleError> {
    let Some(name) = name else {
        return Ok(TimeZone::system());
    };
    if name.is_empty() {
        return Err(ScheduleError::EmptyTimeZone);
    }
    if name.eq_ignore_ascii_case("local") {
        return Err(ScheduleError::LocalTimeZone);
    }
    let unknown = || ScheduleError::UnknownTimeZone(name.to_string());
    let part_ok = |p: &str| {
        !p.is_empty()
            && p != "."
            && p != ".."
            && !p.starts_with('-')
            && p.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_+".contains(c))
    };
    if !name.split('/').all(part_ok) {
        return Err(unknown());
    }
    TimeZone::get(name).map_err(|_| unknown())
}

/// What a CronJob missed between its earliest time and now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Missed {
    /// The latest scheduled time in (earliest, now].
    pub most_recent: Option<Timestamp>,
    /// About how many times were missed (Kubernetes' estimate: the first interval fitted into
    /// the time since the first missed one).
    pub count: i64,
}

impl Schedule {
    pub fn new(schedule: &str, time_zone_name: Option<&str>) -> Result<Schedule, ScheduleError> {
        Ok(Schedule {
            cron: parse_schedule(schedule)?,
            tz: time_zone(time_zone_name)?,
            named: time_zone_name.is_some(),
        })
    }

    /// Whether the wall-clock minute `t` falls on matches.
    fn matches(&self, t: Timestamp) -> bool {
        let dt = self.tz.to_datetime(t);
        let p = &self.cron.pattern;
        let ok = |r: Result<bool, croner::errors::CronError>| r.unwrap_or(false);
        ok(p.month_match(dt.month() as u32))
            && ok(p.day_match(i32::from(dt.year()), dt.month() as u32, dt.day() as u32))
            && ok(p.hour_match(dt.hour() as u32))
            && ok(p.minute_match(dt.minute() as u32))
    }

    /// The first instant of a local day (after a gap at midnight, the first instant there is).
    fn start_of(&self, d: Date) -> Option<Timestamp> {
        self.tz
            .to_ambiguous_timestamp(d.at(0, 0, 0, 0))
            .compatible()
            .ok()
    }

    /// The first scheduled time after `t` (strictly), or `None` when the schedule never fires.
    pub fn next_after(&self, t: Timestamp) -> Option<Timestamp> {
        let minute = |s: i64| Timestamp::from_second(s).ok();
        let mut s = t.as_second().div_euclid(60) * 60 + 60;
        let limit = s + HORIZON_SECONDS;
        while s < limit {
            let at = minute(s)?;
            let dt = self.tz.to_datetime(at);
            let p = &self.cron.pattern;
            let ok = |r: Result<bool, croner::errors::CronError>| r.unwrap_or(false);
            // Skip whole months and days in local time, hours and minutes in absolute time.
            let skip_to = if !ok(p.month_match(dt.month() as u32)) {
                let first = dt
                    .date()
                    .first_of_month()
                    .checked_add(jiff::Span::new().months(1));
                first.ok().and_then(|d| self.start_of(d))
            } else if !ok(p.day_match(i32::from(dt.year()), dt.month() as u32, dt.day() as u32)) {
                dt.date().tomorrow().ok().and_then(|d| self.start_of(d))
            } else if !ok(p.hour_match(dt.hour() as u32)) {
                minute(s + 60 * (60 - i64::from(dt.minute())))
            } else if !ok(p.minute_match(dt.minute() as u32)) {
                minute(s + 60)
            } else {
                return Some(at);
            };
            // Always forwards, by a whole minute at least.
            s = skip_to.map_or(s + 60, |n| (n.as_second().div_euclid(60) * 60).max(s + 60));
        }
        None
    }

    /// The most recent scheduled time in `(earliest, now]`, as Kubernetes' controller finds it.
    pub fn missed(&self, earliest: Timestamp, now: Timestamp) -> Missed {
        let none = Missed {
            most_recent: None,
            count: 0,
        };
        let Some(t1) = self.next_after(earliest).filter(|t| *t <= now) else {
            return none;
        };
        let Some(t2) = self.next_after(t1).filter(|t| *t <= now) else {
            return Missed {
                most_recent: Some(t1),
                count: 1,
            };
        };
        let interval = (t2.as_second() - t1.as_second()).max(60);
        let count = (now.as_second() - t1.as_second()) / interval + 1;
        // Search back from now in widening windows (an irregular schedule may have gaps).
        let mut window = interval;
        loop {
            let from = (now.as_second() - window).max(t1.as_second());
            let mut last = None;
            let mut t = Timestamp::from_second(from - 1).unwrap_or(t1);
            while let Some(n) = self.next_after(t).filter(|n| *n <= now) {
                last = Some(n);
                t = n;
            }
            if last.is_some() || from == t1.as_second() {
                return Missed {
                    most_recent: last.or(Some(t1)),
                    count,
                };
            }
            window = window.saturating_mul(2);
        }
    }

    /// `t` as RFC 3339 in the zone the CronJob names (`Z` for UTC, and when it names none, as
    /// Kubernetes), as the scheduled-timestamp annotation carries it.
    pub fn local_rfc3339(&self, t: Timestamp) -> String {
        let tz = if self.named {
            self.tz.clone()
        } else {
            TimeZone::UTC
        };
        let z = t.to_zoned(tz);
        if z.offset().seconds() == 0 {
            z.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
        } else {
            z.strftime("%Y-%m-%dT%H:%M:%S%:z").to_string()
        }
    }

    /// Whether the schedule fires at `t` (a whole minute).
    pub fn fires_at(&self, t: Timestamp) -> bool {
        t.as_second().rem_euclid(60) == 0 && self.matches(t)
    }
}

impl FromStr for Schedule {
    type Err = ScheduleError;

    /// A schedule in UTC.
    fn from_str(s: &str) -> Result<Schedule, ScheduleError> {
        Schedule::new(s, Some("UTC"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn nexts(s: &Schedule, from: &str, n: usize) -> Vec<String> {
        let mut t = ts(from);
        (0..n)
            .map(|_| {
                t = s.next_after(t).unwrap();
                t.to_string()
            })
            .collect()
    }

    #[test]
    fn fields_macros_and_names() {
        let every = Schedule::new("*/1 * * * *", Some("UTC")).unwrap();
        assert_eq!(
            nexts(&every, "2026-12-04T10:00:30Z", 2),
            ["2026-12-04T10:01:00Z", "2026-12-04T10:02:00Z"]
        );
        assert_eq!(
            nexts(&every, "2026-12-04T10:01:00Z", 1),
            ["2026-12-04T10:02:00Z"],
            "strictly after"
        );
        let hourly: Schedule = "@hourly".parse().unwrap();
        assert_eq!(
            nexts(&hourly, "2026-12-04T10:00:00Z", 2),
            ["2026-12-04T11:00:00Z", "2026-12-04T12:00:00Z"]
        );
        let weekdays: Schedule = "0 9 * * MON-FRI".parse().unwrap();
        // 2026-12-04 is a Friday.
        assert_eq!(
            nexts(&weekdays, "2026-12-04T10:00:00Z", 2),
            ["2026-12-07T09:00:00Z", "2026-12-08T09:00:00Z"]
        );
        // Day of month and day of week both given: either matches (as cron).
        let either: Schedule = "0 0 13 * 5".parse().unwrap();
        assert_eq!(
            nexts(&either, "2026-12-04T10:00:00Z", 2),
            ["2026-12-11T00:00:00Z", "2026-12-13T00:00:00Z"]
        );
        let yearly: Schedule = "@yearly".parse().unwrap();
        assert_eq!(
            nexts(&yearly, "2026-12-04T10:00:00Z", 1),
            ["2027-01-01T00:00:00Z"]
        );
        let midnight: Schedule = "@midnight".parse().unwrap();
        assert_eq!(
            nexts(&midnight, "2026-12-04T10:00:00Z", 1),
            ["2026-12-05T00:00:00Z"]
        );
        // `*/1` is `*`: with a day of week given, days of month do not widen it.
        let mondays: Schedule = "0 0 */1 * MON".parse().unwrap();
        assert_eq!(
            nexts(&mondays, "2026-12-04T10:00:00Z", 2),
            ["2026-12-07T00:00:00Z", "2026-12-14T00:00:00Z"]
        );
        let never: Schedule = "0 0 30 2 *".parse().unwrap();
        assert_eq!(never.next_after(ts("2026-12-04T10:00:00Z")), None);
    }

    #[test]
    fn bad_schedules_and_zones_say_why() {
        for bad in [
            "bad",
            "* * * * * *",
            "61 * * * *",
            "@every 5m",
            "",
            "0 0 L * *",
            "0 0 * * 5#3",
            "@fortnightly",
        ] {
            assert!(
                matches!(parse_schedule(bad), Err(ScheduleError::Unparseable(_))),
                "{bad:?}"
            );
        }
        assert_eq!(
            parse_schedule("bad").unwrap_err().to_string(),
            "expected exactly 5 fields, found 1: [bad]"
        );
        assert_eq!(
            parse_schedule("CRON_TZ=UTC 0 * * * *")
                .unwrap_err()
                .to_string(),
            "cannot use TZ or CRON_TZ in schedule, use timeZone field instead"
        );
        assert_eq!(
            time_zone(Some("Mars/Olympus")).unwrap_err().to_string(),
            "unknown time zone Mars/Olympus"
        );
        assert_eq!(
            time_zone(Some("../etc/passwd")).unwrap_err(),
            ScheduleError::UnknownTimeZone("../etc/passwd".into())
        );
        assert_eq!(
            time_zone(Some("Local")).unwrap_err(),
            ScheduleError::LocalTimeZone
        );
        assert_eq!(
            time_zone(Some("")).unwrap_err(),
            ScheduleError::EmptyTimeZone
        );
        assert!(time_zone(Some("Europe/Berlin")).is_ok());
        assert!(time_zone(Some("Etc/UTC")).is_ok());
    }

    #[test]
    fn time_zones_shift_the_wall_clock() {
        let tokyo = Schedule::new("0 9 * * *", Some("Asia/Tokyo")).unwrap();
        assert_eq!(
            nexts(&tokyo, "2026-12-04T10:00:00Z", 1),
            ["2026-12-05T00:00:00Z"]
        );
        let india = Schedule::new("0 * * * *", Some("Asia/Kolkata")).unwrap();
        assert_eq!(
            nexts(&india, "2026-12-04T10:00:00Z", 2),
            ["2026-12-04T10:30:00Z", "2026-12-04T11:30:00Z"],
            "a half-hour offset: local hours start at :30 UTC"
        );
        assert_eq!(
            tokyo.local_rfc3339(ts("2026-12-05T00:00:00Z")),
            "2026-12-05T09:00:00+09:00"
        );
        let utc: Schedule = "0 9 * * *".parse().unwrap();
        assert_eq!(
            utc.local_rfc3339(ts("2026-12-05T09:00:00Z")),
            "2026-12-05T09:00:00Z"
        );
    }

    #[test]
    fn daylight_saving_repeats_and_skips_wall_clock_times() {
        // New York: 2026-03-08 02:00 EST -> 03:00 EDT; 2026-11-01 02:00 EDT -> 01:00 EST.
        let skipped = Schedule::new("30 2 * * *", Some("America/New_York")).unwrap();
        assert_eq!(
            nexts(&skipped, "2026-03-07T12:00:00Z", 2),
            ["2026-03-09T06:30:00Z", "2026-03-10T06:30:00Z"],
            "02:30 does not exist on the 8th"
        );
        let halves = Schedule::new("*/30 * * * *", Some("America/New_York")).unwrap();
        assert_eq!(
            nexts(&halves, "2026-11-01T04:50:00Z", 6),
            [
                "2026-11-01T05:00:00Z", // 01:00 EDT
                "2026-11-01T05:30:00Z", // 01:30 EDT
                "2026-11-01T06:00:00Z", // 01:00 EST
                "2026-11-01T06:30:00Z", // 01:30 EST
                "2026-11-01T07:00:00Z", // 02:00 EST
                "2026-11-01T07:30:00Z",
            ],
            "the repeated hour fires twice"
        );
        let berlin = Schedule::new("0 3 * * *", Some("Europe/Berlin")).unwrap();
        assert_eq!(
            nexts(&berlin, "2026-03-28T12:00:00Z", 2),
            ["2026-03-29T01:00:00Z", "2026-03-30T01:00:00Z"],
            "03:00 after the jump is summer time (UTC+2)"
        );
    }

    #[test]
    fn missed_times_as_the_controller_counts_them() {
        let every = Schedule::new("* * * * *", Some("UTC")).unwrap();
        let m = every.missed(ts("2026-12-04T10:00:00Z"), ts("2026-12-04T10:00:59Z"));
        assert_eq!(m.most_recent, None);
        let m = every.missed(ts("2026-12-04T10:00:00Z"), ts("2026-12-04T10:01:05Z"));
        assert_eq!(m.most_recent, Some(ts("2026-12-04T10:01:00Z")));
        assert_eq!(m.count, 1);
        // A day down: the latest is the one to run, and there were too many to run them all.
        let m = every.missed(ts("2026-12-03T10:00:00Z"), ts("2026-12-04T10:00:30Z"));
        assert_eq!(m.most_recent, Some(ts("2026-12-04T10:00:00Z")));
        assert_eq!(m.count, 1440);
        // An irregular schedule (Sunday and Wednesday) over weeks.
        let irregular: Schedule = "0 12 * * 0,3".parse().unwrap();
        let m = irregular.missed(ts("2026-11-01T00:00:00Z"), ts("2026-12-04T10:00:00Z"));
        assert_eq!(
            m.most_recent,
            Some(ts("2026-12-02T12:00:00Z")),
            "a Wednesday"
        );
        assert!(m.count > 5);
    }
}
