//! Silences: "do not notify about these alerts during this time", from `[[maintenance]]` windows
//! in `probes.toml` (one-off or weekly, in a time zone) or from the runtime API.
//!
//! A silence never hides an alert: the alert is still evaluated, still shown in `/status` with
//! the silence that holds it, and its state is still tracked, so that when the silence ends
//! while the alert fires, on-call hears about it (see `engine.rs`). Everything here is pure: the
//! current time is an argument.

use std::collections::BTreeMap;

use jiff::civil::{Time, Weekday};
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};

use super::route::Glob;

/// API silences held at once, expired ones kept for the record included: each is in memory,
/// in the store and in every `/status` and page.
pub const MAX_API_SILENCES: usize = 1000;
/// Longest `comment`, in characters.
pub const MAX_COMMENT_CHARS: usize = 2000;
/// Longest `created_by`, in characters.
pub const MAX_CREATED_BY_CHARS: usize = 200;
/// Alert patterns and label matchers of one silence, together.
pub const MAX_MATCHERS: usize = 32;
/// Longest pattern or label name, in characters.
pub const MAX_PATTERN_CHARS: usize = 256;

/// Which alerts a silence covers. Both parts must match; an empty part matches everything, and
/// config validation ensures at least one part is given.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Matchers {
    /// Alert id patterns; the id must match one of them.
    pub alerts: Vec<Glob>,
    /// Label patterns; every one must match the alert's label of that name. The alert's labels
    /// include `alertname` (its id) and `severity`.
    pub labels: BTreeMap<String, Glob>,
}

impl Matchers {
    /// The alert id patterns as written, for storing and showing.
    pub fn alert_patterns(&self) -> Vec<String> {
        self.alerts
            .iter()
            .map(|glob| glob.as_str().to_owned())
            .collect()
    }

    /// The label patterns as written, for storing and showing.
    pub fn label_patterns(&self) -> BTreeMap<String, String> {
        self.labels
            .iter()
            .map(|(name, glob)| (name.clone(), glob.as_str().to_owned()))
            .collect()
    }

    /// Whether an alert with this id and these labels is covered.
    pub fn matches(&self, id: &str, labels: &BTreeMap<String, String>) -> bool {
        let id_matches = self.alerts.is_empty() || self.alerts.iter().any(|glob| glob.matches(id));
        id_matches
            && self.labels.iter().all(|(name, glob)| {
                labels
                    .get(name)
                    .is_some_and(|value| glob.matches(value.as_str()))
            })
    }
}

/// A window that repeats every week on some days, in a time zone (so "11:30" stays 11:30 local
/// across daylight-saving changes).
#[derive(Clone, Debug, PartialEq)]
pub struct Weekly {
    /// Days the window starts on.
    pub days: Vec<Weekday>,
    /// Local start time.
    pub start: Time,
    /// Local end time; earlier than `start` means the next day (a window over midnight).
    pub end: Time,
    /// The zone `start` and `end` are in.
    pub timezone: TimeZone,
    /// The zone's name, for display.
    pub timezone_name: String,
}

impl Weekly {
    /// The occurrence containing `at`, if any, else the next one to start within eight days.
    pub fn occurrence(&self, at: Timestamp) -> Option<(Timestamp, Timestamp)> {
        let today = at.to_zoned(self.timezone.clone()).date();
        // Yesterday's occurrence may run over midnight into today.
        for offset in -1i64..=7 {
            let Ok(date) = today.checked_add(offset.days()) else {
                continue;
            };
            if !self.days.contains(&date.weekday()) {
                continue;
            }
            let Some((start, end)) = self.on(date) else {
                continue;
            };
            if at < end {
                return Some((start, end));
            }
        }
        None
    }

    fn on(&self, date: jiff::civil::Date) -> Option<(Timestamp, Timestamp)> {
        let start = date
            .to_datetime(self.start)
            .to_zoned(self.timezone.clone())
            .ok()?
            .timestamp();
        let end_date = if self.end > self.start {
            date
        } else {
            date.tomorrow().ok()?
        };
        let end = end_date
            .to_datetime(self.end)
            .to_zoned(self.timezone.clone())
            .ok()?
            .timestamp();
        Some((start, end))
    }
}

/// When a silence applies.
#[derive(Clone, Debug, PartialEq)]
pub enum Schedule {
    /// Once, from `start` to `end`.
    Once {
        /// Start (inclusive).
        start: Timestamp,
        /// End (exclusive).
        end: Timestamp,
    },
    /// Every week.
    Weekly(Weekly),
}

/// Where a silence came from.
#[derive(Clone, Debug, PartialEq)]
pub enum Origin {
    /// A `[[maintenance]]` window in `probes.toml`.
    Maintenance,
    /// `POST /api/silences`.
    Api {
        /// Who asked.
        created_by: String,
        /// When.
        created_at: Timestamp,
    },
}

/// One silence.
#[derive(Clone, Debug, PartialEq)]
pub struct Silence {
    /// The maintenance window's name, or the API silence's generated id.
    pub id: String,
    /// Config or API.
    pub origin: Origin,
    /// What it covers.
    pub matchers: Matchers,
    /// When.
    pub schedule: Schedule,
    /// Why.
    pub comment: String,
}

/// Where a silence is in time, at some instant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Will start at `start` (and end at `end`).
    Pending {
        /// Next start.
        start: Timestamp,
        /// Its end.
        end: Timestamp,
    },
    /// Silencing now, until `end`.
    Active {
        /// When this occurrence started.
        start: Timestamp,
        /// When it ends.
        end: Timestamp,
    },
    /// Over, for good.
    Expired {
        /// When it ended.
        end: Timestamp,
    },
}

impl Phase {
    /// `pending`, `active` or `expired`.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Pending { .. } => "pending",
            Phase::Active { .. } => "active",
            Phase::Expired { .. } => "expired",
        }
    }
}

impl Silence {
    /// Where this silence is at `at`.
    pub fn phase(&self, at: Timestamp) -> Phase {
        match &self.schedule {
            Schedule::Once { start, end } => {
                if at >= *end {
                    Phase::Expired { end: *end }
                } else if at >= *start {
                    Phase::Active {
                        start: *start,
                        end: *end,
                    }
                } else {
                    Phase::Pending {
                        start: *start,
                        end: *end,
                    }
                }
            }
            Schedule::Weekly(weekly) => match weekly.occurrence(at) {
                Some((start, end)) if start <= at => Phase::Active { start, end },
                Some((start, end)) => Phase::Pending { start, end },
                // Only when no day is configured, which validation forbids.
                None => Phase::Expired { end: at },
            },
        }
    }

    /// Whether this silence covers the alert at `at`.
    pub fn silences(&self, id: &str, labels: &BTreeMap<String, String>, at: Timestamp) -> bool {
        matches!(self.phase(at), Phase::Active { .. }) && self.matchers.matches(id, labels)
    }
}

/// There are already [`MAX_API_SILENCES`] API silences that have not expired.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "there are already {MAX_API_SILENCES} silences (the limit); expire some first \
     (DELETE /api/silences/{{id}})"
)]
pub struct Full;

/// Every silence in force or known: maintenance windows from the config, then API silences.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Silences {
    list: Vec<Silence>,
}

impl Silences {
    /// A set of silences.
    pub fn new(list: Vec<Silence>) -> Self {
        Self { list }
    }

    /// All of them, config first.
    pub fn all(&self) -> &[Silence] {
        &self.list
    }

    /// Ids of the silences covering the alert at `at`, in order.
    pub fn matching(
        &self,
        id: &str,
        labels: &BTreeMap<String, String>,
        at: Timestamp,
    ) -> Vec<String> {
        self.list
            .iter()
            .filter(|silence| silence.silences(id, labels, at))
            .map(|silence| silence.id.clone())
            .collect()
    }

    /// Adds one (an API silence).
    pub fn add(&mut self, silence: Silence) {
        self.list.push(silence);
    }

    /// Replaces the maintenance windows (a reload), keeping API silences.
    pub fn replace_maintenance(&mut self, maintenance: Vec<Silence>) {
        self.list
            .retain(|silence| !matches!(silence.origin, Origin::Maintenance));
        let api = std::mem::take(&mut self.list);
        self.list = maintenance;
        self.list.extend(api);
    }

    /// Whether another API silence may be added at `at` without holding more than
    /// [`MAX_API_SILENCES`]; when full, the expired silence that ended first makes way (its id
    /// is returned, to be deleted from the store). `Err` when every one still counts.
    pub fn make_room(&mut self, at: Timestamp) -> Result<Option<String>, Full> {
        let api = |silence: &Silence| matches!(silence.origin, Origin::Api { .. });
        if self.list.iter().filter(|silence| api(silence)).count() < MAX_API_SILENCES {
            return Ok(None);
        }
        let oldest_expired = self
            .list
            .iter()
            .enumerate()
            .filter(|(_, silence)| api(silence))
            .filter_map(|(index, silence)| match silence.phase(at) {
                Phase::Expired { end } => Some((end, index)),
                _ => None,
            })
            .min();
        match oldest_expired {
            Some((_, index)) => Ok(Some(self.list.remove(index).id)),
            None => Err(Full),
        }
    }

    /// A silence by id.
    pub fn get(&self, id: &str) -> Option<&Silence> {
        self.list.iter().find(|silence| silence.id == id)
    }

    /// Ends an API silence now (as Alertmanager does: expired, kept for the record). Returns the
    /// updated silence, or why not.
    pub fn expire(&mut self, id: &str, at: Timestamp) -> Result<Silence, ExpireError> {
        let silence = self
            .list
            .iter_mut()
            .find(|silence| silence.id == id)
            .ok_or(ExpireError::NotFound)?;
        match (&silence.origin, &mut silence.schedule) {
            (Origin::Maintenance, _) => Err(ExpireError::FromConfig),
            (Origin::Api { .. }, Schedule::Once { start, end }) => {
                if *end <= at {
                    return Err(ExpireError::AlreadyExpired);
                }
                *end = at;
                if *start > at {
                    *start = at;
                }
                Ok(silence.clone())
            }
            (Origin::Api { .. }, Schedule::Weekly(_)) => Err(ExpireError::FromConfig),
        }
    }

    /// Drops API silences that ended more than `keep` ago; returns their ids.
    pub fn prune(&mut self, at: Timestamp, keep: jiff::SignedDuration) -> Vec<String> {
        let mut dropped = Vec::new();
        self.list.retain(|silence| {
            let old = matches!(silence.origin, Origin::Api { .. })
                && matches!(silence.phase(at), Phase::Expired { end } if end.duration_until(at) > keep);
            if old {
                dropped.push(silence.id.clone());
            }
            !old
        });
        dropped
    }
}

/// Why a silence could not be expired.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ExpireError {
    /// No silence with that id.
    #[error("no silence with that id")]
    NotFound,
    /// A maintenance window: change `probes.toml` instead.
    #[error("this silence is a [[maintenance]] window from probes.toml; edit the file instead")]
    FromConfig,
    /// Already over.
    #[error("the silence has already expired")]
    AlreadyExpired,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn ts(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    fn thursday_lunch() -> Weekly {
        Weekly {
            days: vec![Weekday::Thursday],
            start: Time::constant(11, 30, 0, 0),
            end: Time::constant(13, 30, 0, 0),
            timezone: TimeZone::get("America/Los_Angeles").unwrap(),
            timezone_name: "America/Los_Angeles".into(),
        }
    }

    fn api_silence(id: usize, end: &str) -> Silence {
        Silence {
            id: format!("s{id}"),
            origin: Origin::Api {
                created_by: "ana".into(),
                created_at: ts("2026-07-01T00:00:00Z"),
            },
            matchers: Matchers::default(),
            schedule: Schedule::Once {
                start: ts("2026-07-01T00:00:00Z"),
                end: ts(end),
            },
            comment: String::new(),
        }
    }

    /// At the limit, the silence that expired first makes way; with none expired, it is full.
    #[test]
    fn the_api_silence_limit_drops_the_oldest_expired_first() {
        let now = ts("2026-07-02T12:00:00Z");
        let mut silences = Silences::new(
            (0..MAX_API_SILENCES)
                .map(|id| api_silence(id, "2026-07-03T00:00:00Z"))
                .collect(),
        );
        assert_eq!(silences.make_room(now), Err(Full));
        silences.list[7] = api_silence(7, "2026-07-02T11:00:00Z");
        silences.list[3] = api_silence(3, "2026-07-02T10:00:00Z");
        assert_eq!(silences.make_room(now), Ok(Some("s3".to_owned())));
        assert_eq!(silences.make_room(now), Ok(None));
        silences.add(api_silence(9999, "2026-07-03T00:00:00Z"));
        assert_eq!(silences.make_room(now), Ok(Some("s7".to_owned())));
    }

    #[test]
    fn matchers_need_an_id_match_and_every_label() {
        let matchers = Matchers {
            alerts: vec![Glob::new("origin-*")],
            labels: [("layer".to_owned(), Glob::new("origin"))].into(),
        };
        assert!(matchers.matches("origin-node-down", &labels(&[("layer", "origin")])));
        assert!(!matchers.matches("origin-node-down", &labels(&[("layer", "edge")])));
        assert!(!matchers.matches("origin-node-down", &labels(&[])));
        assert!(!matchers.matches("neon-down", &labels(&[("layer", "origin")])));
    }

    #[test]
    fn weekly_window_is_local_time_across_dst() {
        let weekly = thursday_lunch();
        // Thursday 2026-07-02, PDT (UTC-7): 11:30 local is 18:30 UTC.
        let (start, end) = weekly.occurrence(ts("2026-07-02T18:00:00Z")).unwrap();
        assert_eq!(start, ts("2026-07-02T18:30:00Z"));
        assert_eq!(end, ts("2026-07-02T20:30:00Z"));
        // Thursday 2026-12-03, PST (UTC-8): 11:30 local is 19:30 UTC.
        let (start, _) = weekly.occurrence(ts("2026-12-03T19:45:00Z")).unwrap();
        assert_eq!(start, ts("2026-12-03T19:30:00Z"));
    }

    #[test]
    fn weekly_silence_phases() {
        let silence = Silence {
            id: "b2-weekly".into(),
            origin: Origin::Maintenance,
            matchers: Matchers {
                alerts: vec![Glob::new("b2-*")],
                labels: BTreeMap::new(),
            },
            schedule: Schedule::Weekly(thursday_lunch()),
            comment: String::new(),
        };
        // Wednesday: pending until Thursday 11:30 local.
        assert_eq!(
            silence.phase(ts("2026-07-01T12:00:00Z")),
            Phase::Pending {
                start: ts("2026-07-02T18:30:00Z"),
                end: ts("2026-07-02T20:30:00Z")
            }
        );
        assert!(silence.silences("b2-outage", &labels(&[]), ts("2026-07-02T19:00:00Z")));
        assert!(!silence.silences("b2-outage", &labels(&[]), ts("2026-07-02T20:30:00Z")));
        assert!(!silence.silences("neon-down", &labels(&[]), ts("2026-07-02T19:00:00Z")));
    }

    #[test]
    fn weekly_window_over_midnight_covers_the_next_morning() {
        let weekly = Weekly {
            days: vec![Weekday::Sunday],
            start: Time::constant(23, 0, 0, 0),
            end: Time::constant(1, 0, 0, 0),
            timezone: TimeZone::UTC,
            timezone_name: "UTC".into(),
        };
        // Monday 2026-07-06 00:30 UTC is inside Sunday's 23:00-01:00 window.
        let (start, end) = weekly.occurrence(ts("2026-07-06T00:30:00Z")).unwrap();
        assert_eq!(start, ts("2026-07-05T23:00:00Z"));
        assert_eq!(end, ts("2026-07-06T01:00:00Z"));
    }

    #[test]
    fn api_silences_expire_and_are_pruned_later() {
        let mut silences = Silences::new(vec![Silence {
            id: "abc".into(),
            origin: Origin::Api {
                created_by: "ana".into(),
                created_at: ts("2026-07-01T10:00:00Z"),
            },
            matchers: Matchers::default(),
            schedule: Schedule::Once {
                start: ts("2026-07-01T10:00:00Z"),
                end: ts("2026-07-01T12:00:00Z"),
            },
            comment: "drain".into(),
        }]);
        let now = ts("2026-07-01T11:00:00Z");
        assert_eq!(silences.matching("x", &labels(&[]), now), vec!["abc"]);
        let expired = silences.expire("abc", now).unwrap();
        assert_eq!(expired.phase(now), Phase::Expired { end: now });
        assert_eq!(
            silences.expire("abc", now),
            Err(ExpireError::AlreadyExpired)
        );
        assert_eq!(silences.expire("zzz", now), Err(ExpireError::NotFound));
        let keep = jiff::SignedDuration::from_hours(24);
        assert!(silences.prune(ts("2026-07-02T10:00:00Z"), keep).is_empty());
        assert_eq!(
            silences.prune(ts("2026-07-02T12:00:00Z"), keep),
            vec!["abc"]
        );
        assert!(silences.all().is_empty());
    }
}
