//! Calendars: a cron expression read in a time zone, parsed once, and when it fires next.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use croner::parser::{CronParser, Seconds, Year};
use croner::Cron;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{Error, Result};

/// What the scheduler does for an environment when its time comes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ScheduledJob {
    /// Its time to live ended: destroy it.
    Ttl,
    /// Its deploy calendar fired: apply it.
    Deploy,
    /// Its destroy calendar fired: destroy it.
    Destroy,
    /// Its drift calendar fired: plan it, to see whether it drifted.
    Drift,
}

impl ScheduledJob {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ttl => "ttl",
            Self::Deploy => "deploy",
            Self::Destroy => "destroy",
            Self::Drift => "drift",
        }
    }
}

/// Longest cron expression or time zone name accepted.
const MAX_TEXT: usize = 100;

/// A calendar as a client writes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CalendarInput {
    /// Five fields, minute to weekday (`0 20 * * 1-5`: weekdays at 20:00), each within
    /// its range, or a nickname such as `@daily`; one that never fires (`0 0 30 2 *`)
    /// is refused.
    #[schema(example = "0 20 * * 1-5", max_length = 100)]
    pub cron: String,
    /// An IANA time zone the expression is read in; `UTC` when left out.
    #[serde(default = "utc")]
    #[schema(schema_with = time_zones)]
    pub time_zone: String,
}

fn utc() -> String {
    "UTC".into()
}

/// Every IANA time zone name the calendars read.
fn time_zones() -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .enum_values(Some(chrono_tz::TZ_VARIANTS.iter().map(|zone| zone.name())))
        .default(Some(serde_json::Value::from("UTC")))
        .description(Some(
            "An IANA time zone the expression is read in; `UTC` when left out.",
        ))
        .build()
}

/// A cron expression and its time zone, both checked.
#[derive(Debug, Clone)]
pub struct Calendar {
    cron: Cron,
    time_zone: Tz,
    input: CalendarInput,
}

impl Calendar {
    /// Parses the expression (minute granularity, no seconds or years) and the zone.
    pub fn parse(input: CalendarInput) -> Result<Self> {
        if input.cron.len() > MAX_TEXT || input.time_zone.len() > MAX_TEXT {
            return Err(Error::invalid(format!(
                "a cron expression and a time zone have at most {MAX_TEXT} characters"
            )));
        }
        let cron = CronParser::builder()
            .seconds(Seconds::Disallowed)
            .year(Year::Disallowed)
            .build()
            .parse(&input.cron)
            .map_err(|e| {
                Error::invalid(format!(
                    "cron {:?} is not a five-field cron expression: {e}",
                    input.cron
                ))
            })?;
        let time_zone: Tz = input.time_zone.parse().map_err(|_| {
            Error::invalid(format!(
                "time_zone {:?} is not an IANA time zone such as Europe/Berlin or UTC",
                input.time_zone
            ))
        })?;
        Ok(Self {
            cron,
            time_zone,
            input,
        })
    }

    /// The first time the calendar fires strictly after `time`; `None` if it never does
    /// again.
    pub fn next_after(&self, time: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = time.with_timezone(&self.time_zone);
        self.cron
            .find_next_occurrence(&local, false)
            .ok()
            .map(|next| next.with_timezone(&Utc))
    }

    pub fn input(&self) -> &CalendarInput {
        &self.input
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn calendar(cron: &str, time_zone: &str) -> Result<Calendar> {
        Calendar::parse(CalendarInput {
            cron: cron.into(),
            time_zone: time_zone.into(),
        })
    }

    #[test]
    fn a_weekday_evening_in_berlin_is_read_in_berlin_time() {
        let weekdays = calendar("0 20 * * 1-5", "Europe/Berlin").unwrap();
        // Friday 2026-12-04 20:30 in Berlin (19:30 UTC): the next is Monday 20:00 CET.
        let friday_evening = Utc.with_ymd_and_hms(2026, 12, 4, 19, 30, 0).unwrap();
        assert_eq!(
            weekdays.next_after(friday_evening),
            Some(Utc.with_ymd_and_hms(2026, 12, 7, 19, 0, 0).unwrap())
        );
    }

    #[test]
    fn the_next_run_is_strictly_later() {
        let hourly = calendar("0 * * * *", "UTC").unwrap();
        let on_the_hour = Utc.with_ymd_and_hms(2026, 12, 1, 10, 0, 0).unwrap();
        assert_eq!(
            hourly.next_after(on_the_hour),
            Some(Utc.with_ymd_and_hms(2026, 12, 1, 11, 0, 0).unwrap())
        );
    }

    #[test]
    fn bad_expressions_and_zones_are_refused_with_the_reason() {
        for (cron, zone, says) in [
            ("0 20 * *", "UTC", "five-field"),
            ("0 0 20 * * 1-5", "UTC", "five-field"),
            ("61 * * * *", "UTC", "five-field"),
            ("0 8 * * *", "Mars/Olympus", "IANA time zone"),
        ] {
            let error = calendar(cron, zone).unwrap_err().to_string();
            assert!(error.contains(says), "{cron} {zone}: {error}");
        }
        let long = "1,".repeat(60) + "2 * * * *";
        assert!(calendar(&long, "UTC").is_err());
    }

    #[test]
    fn a_calendar_that_never_fires_says_so() {
        let february_30 = calendar("0 0 30 2 *", "UTC").unwrap();
        assert_eq!(february_30.next_after(Utc::now()), None);
    }
}
