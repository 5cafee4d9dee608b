//! Replay: the results the store recorded, through a given set of rules, compared with what
//! the running rules did.
//!
//! The recorded results go through the same [`Timeline`] engine as a rule file's examples, in
//! the order they finished, so "what would these rules have said" is answered by the daemon's
//! own semantics. Rules are stateful (`for`, `failure_ratio`, `consecutive_failures`), so the
//! replay starts [`warm_up`] before the window: a failure already going on when the window
//! opens is then not reported as starting there. Only changes inside the window are compared.
//!
//! The running rules' changes are the daemon's own record (its state task writes every
//! pending, active and resolved). Per failure mode, a replayed change matches a recorded one of
//! the same kind within [`TOLERANCE`] (the daemon confirms a `for` on its one-second tick, and
//! handles a result a few milliseconds after it finished); the rest are the differences.
//! Differences also come from the daemon's own life: after a restart its rules start over.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

use crate::probe::ProbeResult;
use crate::view::HISTORY_LEN;

use super::timeline::{TimedResult, Timeline, TimelineProbe};
use super::{Catalog, Change, Transition};

/// How far apart a replayed and a recorded change may be and still be the same change.
pub const TOLERANCE: Duration = Duration::from_secs(5);

/// The most changes listed per failure mode and side; the rest are counted.
const LISTED: usize = 20;

/// The longest warm-up: a day of results before the window is more history than any rule of
/// the shipped catalog reads.
const MAX_WARM_UP: Duration = Duration::from_secs(86_400);

/// How long before the window the replay starts: the longest `for` of `catalog`, plus the
/// history a rule can read (the last [`HISTORY_LEN`] runs of the slowest probe), at most a day.
pub fn warm_up(catalog: &Catalog, probes: &[TimelineProbe]) -> Duration {
    let longest_for = catalog
        .modes()
        .iter()
        .map(|mode| mode.for_duration)
        .max()
        .unwrap_or_default();
    let slowest = probes
        .iter()
        .map(|probe| probe.interval)
        .max()
        .unwrap_or_default();
    let history = slowest.saturating_mul(u32::try_from(HISTORY_LEN).unwrap_or(u32::MAX));
    longest_for.saturating_add(history).min(MAX_WARM_UP)
}

/// A replay in progress: recorded results are pushed in time order.
#[derive(Debug)]
pub struct Replay {
    timeline: Timeline,
    /// The window compared: from, to.
    window: (Timestamp, Timestamp),
    /// Results that finished at the same millisecond, applied together.
    batch: Option<(Timestamp, Vec<(usize, ProbeResult)>)>,
    results: u64,
    probes_seen: BTreeSet<String>,
    unknown_probes: BTreeSet<String>,
}

impl Replay {
    /// A replay of `catalog` over `probes` for the window `from`..`to`; results from `start`
    /// (before `from`, see [`warm_up`]) are applied too.
    pub fn new(
        catalog: Arc<Catalog>,
        probes: &[TimelineProbe],
        start: Timestamp,
        from: Timestamp,
        to: Timestamp,
    ) -> Self {
        Self {
            timeline: Timeline::new(catalog, probes, start.min(from)),
            window: (from, to),
            batch: None,
            results: 0,
            probes_seen: BTreeSet::new(),
            unknown_probes: BTreeSet::new(),
        }
    }

    /// Applies one recorded result (results come in the order they finished). A result of a
    /// probe the config no longer has is counted and left out.
    pub fn push(&mut self, run: TimedResult) {
        let Some(probe) = self.timeline.probe(&run.probe) else {
            self.unknown_probes.insert(run.probe);
            return;
        };
        self.results += 1;
        if !self.probes_seen.contains(&run.probe) {
            self.probes_seen.insert(run.probe);
        }
        match &mut self.batch {
            Some((at, batch)) if *at == run.at => batch.push((probe, run.result)),
            _ => {
                self.flush();
                self.batch = Some((run.at, vec![(probe, run.result)]));
            }
        }
    }

    fn flush(&mut self) {
        if let Some((at, batch)) = self.batch.take() {
            self.timeline.apply(at, batch);
        }
    }

    /// Runs the clock to the end of the window and says what happened in it.
    pub fn finish(mut self) -> Replayed {
        self.flush();
        let (from, to) = self.window;
        self.timeline.advance_to(to);
        Replayed {
            from,
            to,
            results: self.results,
            probes: self.probes_seen.len(),
            unknown_probes: self.unknown_probes.into_iter().collect(),
            rule_errors: self.timeline.rule_errors(),
            transitions: self
                .timeline
                .transitions()
                .iter()
                .filter(|transition| transition.at >= from && transition.at <= to)
                .cloned()
                .collect(),
        }
    }
}

/// What a replay found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Replayed {
    /// The window: from.
    pub from: Timestamp,
    /// The window: to.
    pub to: Timestamp,
    /// Results replayed (warm-up included).
    pub results: u64,
    /// Probes they came from.
    pub probes: usize,
    /// Probes the store has results of but the config does not.
    pub unknown_probes: Vec<String>,
    /// Rules that failed to evaluate at some point: id, how often, the last message.
    pub rule_errors: Vec<(String, u64, String)>,
    /// The given rules' changes inside the window, in time order.
    pub transitions: Vec<Transition>,
}

/// One failure mode, replayed and as it ran.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModeReport {
    /// The failure mode's id.
    pub mode: String,
    /// Its `for` in the given rules; `None` when the given rules do not have it.
    pub for_duration: Option<Duration>,
    /// Its changes in the replay.
    pub replayed: Vec<Transition>,
    /// Its changes as the running rules recorded them.
    pub recorded: Vec<Transition>,
    /// Replayed changes the running rules did not make.
    pub only_replayed: Vec<Transition>,
    /// Recorded changes the replay did not make.
    pub only_recorded: Vec<Transition>,
}

impl ModeReport {
    /// Whether the replay did what the running rules did.
    pub fn is_same(&self) -> bool {
        self.only_replayed.is_empty() && self.only_recorded.is_empty()
    }
}

/// The whole comparison, as `honeyguide replay` prints it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    /// What was replayed.
    pub replayed: Replayed,
    /// Every failure mode with a change on either side, in catalog order, then those only the
    /// running rules had.
    pub modes: Vec<ModeReport>,
    /// Failure modes of the given rules without a change on either side.
    pub quiet: usize,
}

/// Compares `replayed` with the running rules' `recorded` changes in the same window.
pub fn compare(catalog: &Catalog, replayed: Replayed, recorded: &[Transition]) -> Report {
    let mut ids: Vec<String> = catalog.modes().iter().map(|mode| mode.id.clone()).collect();
    for transition in recorded {
        if !ids.contains(&transition.mode) {
            ids.push(transition.mode.clone());
        }
    }
    let (from, to) = (replayed.from, replayed.to);
    let mut modes = Vec::new();
    let mut quiet = 0;
    for id in ids {
        let of = |transitions: &[Transition]| -> Vec<Transition> {
            transitions
                .iter()
                .filter(|transition| transition.mode == id)
                .filter(|transition| transition.at >= from && transition.at <= to)
                .cloned()
                .collect()
        };
        let mine = of(&replayed.transitions);
        let theirs = of(recorded);
        if mine.is_empty() && theirs.is_empty() {
            quiet += 1;
            continue;
        }
        let (only_replayed, only_recorded) = unmatched(&mine, &theirs);
        modes.push(ModeReport {
            for_duration: catalog.get(&id).map(|mode| mode.for_duration),
            mode: id,
            replayed: mine,
            recorded: theirs,
            only_replayed,
            only_recorded,
        });
    }
    Report {
        replayed,
        modes,
        quiet,
    }
}

/// The changes of `left` with no counterpart of the same kind in `right` within
/// [`TOLERANCE`], and the other way round (each change matches at most once, earliest first).
fn unmatched(left: &[Transition], right: &[Transition]) -> (Vec<Transition>, Vec<Transition>) {
    let tolerance = SignedDuration::try_from(TOLERANCE).unwrap_or(SignedDuration::ZERO);
    let mut taken = vec![false; right.len()];
    let mut only_left = Vec::new();
    for change in left {
        let found = right.iter().enumerate().position(|(index, other)| {
            !taken[index]
                && other.change == change.change
                && other.at.duration_since(change.at).abs() <= tolerance
        });
        match found {
            Some(index) => taken[index] = true,
            None => only_left.push(change.clone()),
        }
    }
    let only_right = right
        .iter()
        .zip(&taken)
        .filter(|(_, taken)| !**taken)
        .map(|(change, _)| change.clone())
        .collect();
    (only_left, only_right)
}

/// `1 probe`, `2 probes`.
fn count(number: u64, noun: &str) -> String {
    if number == 1 {
        format!("1 {noun}")
    } else {
        format!("{number} {noun}s")
    }
}

/// `2026-07-01T10:00:03Z`: to the second, which is what a probe interval resolves.
fn time(at: Timestamp) -> String {
    at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// `pending 2026-07-01T10:00:03Z, active ...`, at most [`LISTED`] of them.
fn changes(transitions: &[Transition]) -> String {
    if transitions.is_empty() {
        return "no change".to_owned();
    }
    let mut listed: Vec<String> = transitions
        .iter()
        .take(LISTED)
        .map(|transition| format!("{} {}", transition.change.as_str(), time(transition.at)))
        .collect();
    if transitions.len() > LISTED {
        listed.push(format!("and {} more", transitions.len() - LISTED));
    }
    listed.join(", ")
}

impl fmt::Display for ModeReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rule = match self.for_duration {
            Some(for_duration) => format!("for {}", humantime::format_duration(for_duration)),
            None => "not in the given rules".to_owned(),
        };
        if self.is_same() {
            writeln!(f, "{} ({rule}): the same as the running rules", self.mode)?;
            return write!(f, "  {}", changes(&self.replayed));
        }
        writeln!(f, "{} ({rule}): differs from the running rules", self.mode)?;
        writeln!(f, "  replayed: {}", changes(&self.replayed))?;
        write!(f, "  running:  {}", changes(&self.recorded))?;
        for transition in self.only_replayed.iter().take(LISTED) {
            let what = match transition.change {
                Change::Resolved => "resolved",
                Change::Pending => "gone pending",
                Change::Active => "gone active",
            };
            write!(
                f,
                "\n  + would have {what} at {}; the running rules did not",
                time(transition.at)
            )?;
        }
        for transition in self.only_recorded.iter().take(LISTED) {
            let what = match transition.change {
                Change::Resolved => "resolved",
                Change::Pending => "went pending",
                Change::Active => "went active",
            };
            write!(
                f,
                "\n  - the running rules {what} at {}; replayed, it would not have",
                time(transition.at)
            )?;
        }
        Ok(())
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let replayed = &self.replayed;
        let span = replayed.to.duration_since(replayed.from).unsigned_abs();
        writeln!(
            f,
            "replay of {} to {} ({}): {} of {}",
            time(replayed.from),
            time(replayed.to),
            humantime::format_duration(Duration::from_secs(span.as_secs())),
            count(replayed.results, "result"),
            count(replayed.probes as u64, "probe"),
        )?;
        if !replayed.unknown_probes.is_empty() {
            writeln!(
                f,
                "not replayed: results of probes the config does not have: {}",
                replayed.unknown_probes.join(", ")
            )?;
        }
        for (mode, errors, message) in &replayed.rule_errors {
            writeln!(
                f,
                "{mode}: failed to evaluate {errors} time(s) in the replay, last: {message}"
            )?;
        }
        for mode in &self.modes {
            writeln!(f, "{mode}")?;
        }
        let differ = self.modes.iter().filter(|mode| !mode.is_same()).count();
        write!(
            f,
            "{} changed: {} the same as the running rules, {differ} different; {} without a \
             change",
            count(self.modes.len() as u64, "failure mode"),
            self.modes.len() - differ,
            self.quiet
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::parse;
    use crate::probe::{ErrorClass, Kind, Observations};
    use crate::spec::Source;

    fn catalog(for_duration: &str) -> Arc<Catalog> {
        let text = format!(
            "id = \"web-down\"\ntitle = \"t\"\nseverity = \"critical\"\nwhen = '!probes.web.ok'\n\
             for = \"{for_duration}\"\nsymptom = \"s\"\nrecovery = \"r\"\n"
        );
        let kinds = [("web".to_owned(), Kind::Http)].into_iter().collect();
        Arc::new(parse(&[Source::new("alerts/web-down.toml", text)], &kinds).unwrap())
    }

    fn probes() -> Vec<TimelineProbe> {
        vec![TimelineProbe {
            name: "web".to_owned(),
            kind: Kind::Http,
            interval: Duration::from_secs(10),
            timeout: Duration::from_secs(5),
        }]
    }

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + seconds).unwrap()
    }

    fn result(probe: &str, seconds: i64, ok: bool) -> TimedResult {
        TimedResult {
            probe: probe.to_owned(),
            at: at(seconds),
            result: ProbeResult {
                ok,
                error: (!ok).then_some(ErrorClass::Connect),
                message: String::new(),
                observations: Observations::new(),
                duration: Duration::from_millis(5),
                phases: Vec::new(),
            },
        }
    }

    fn transition(change: Change, seconds: i64) -> Transition {
        Transition {
            mode: "web-down".to_owned(),
            change,
            at: at(seconds),
        }
    }

    /// Down from 0s to 60s, every 10s; replayed from -100s with the window from `from`.
    fn replay(for_duration: &str, from: i64) -> Replayed {
        let catalog = catalog(for_duration);
        let mut replay = Replay::new(catalog, &probes(), at(-100), at(from), at(200));
        for seconds in (-100..=200).step_by(10) {
            replay.push(result("web", seconds, !(0..60).contains(&seconds)));
        }
        replay.push(result("gone", 5, true));
        replay.finish()
    }

    /// The recorded results go through the classifier on their own times: pending, active
    /// after `for`, resolved; a probe the config no longer has is counted, not replayed.
    #[test]
    fn recorded_results_are_replayed_on_their_times() {
        let replayed = replay("20s", -50);
        assert_eq!(
            replayed.transitions,
            [
                transition(Change::Pending, 0),
                transition(Change::Active, 20),
                transition(Change::Resolved, 60),
            ]
        );
        assert_eq!(replayed.results, 31);
        assert_eq!(replayed.unknown_probes, ["gone"]);
    }

    /// The warm-up builds the state the window opens with, and only changes in the window are
    /// reported: a failure going on at its start does not start there.
    #[test]
    fn changes_before_the_window_are_not_reported() {
        assert_eq!(
            replay("20s", 30).transitions,
            [transition(Change::Resolved, 60)]
        );
        let probes = probes();
        assert_eq!(
            warm_up(&catalog("20s"), &probes),
            Duration::from_secs(20 + 100 * 10)
        );
    }

    /// Per failure mode, replayed and recorded changes of one kind within the tolerance are
    /// the same; the rest are differences, said both ways; a mode only the running rules had
    /// is listed as not in the given rules.
    #[test]
    fn the_comparison_names_every_difference() {
        let catalog = catalog("1m");
        let replayed = replay("1m", -50);
        assert_eq!(
            replayed.transitions,
            [
                transition(Change::Pending, 0),
                transition(Change::Resolved, 60)
            ]
        );
        let recorded = [
            transition(Change::Pending, 0),
            transition(Change::Active, 20),
            transition(Change::Resolved, 63),
            Transition {
                mode: "old-rule".to_owned(),
                change: Change::Pending,
                at: at(5),
            },
        ];
        let report = compare(&catalog, replayed, &recorded);
        assert_eq!(report.modes.len(), 2);
        let web = &report.modes[0];
        assert_eq!(web.only_replayed, []);
        assert_eq!(web.only_recorded, [transition(Change::Active, 20)]);
        assert_eq!(report.modes[1].for_duration, None);
        let text = report.to_string();
        assert!(
            text.contains(
                "web-down (for 1m): differs from the running rules\n\
                 \x20 replayed: pending 2027-01-15T08:00:00Z, resolved 2027-01-15T08:01:00Z\n\
                 \x20 running:  pending 2027-01-15T08:00:00Z, active 2027-01-15T08:00:20Z, \
                 resolved 2027-01-15T08:01:03Z\n\
                 \x20 - the running rules went active at 2027-01-15T08:00:20Z; replayed, it \
                 would not have\n\
                 old-rule (not in the given rules): differs from the running rules\n"
            ),
            "{text}"
        );
        assert!(
            text.ends_with(
                "2 failure modes changed: 0 the same as the running rules, 2 different; 0 \
                 without a change"
            ),
            "{text}"
        );
    }
}
