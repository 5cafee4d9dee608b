//! The timeline engine: probe results on a simulated clock, through the real [`Classifier`].
//!
//! `honeyguide test` (a rule file's examples) and `honeyguide replay` (the results the store
//! recorded) are the same thing with different inputs: a sequence of results, each at its
//! time, folded into probe views and classified exactly as the state task does it
//! ([`ProbeView::record`], [`Classifier::probe_changed`], [`Classifier::evaluate`] with the
//! result's instant and wall-clock time). Between results, the engine evaluates when the daemon
//! would: when a pending diagnosis comes due ([`Classifier::next_deadline`]) and, if some rule
//! depends on time, every [`TIME_DEPENDENT_PERIOD`]. Nothing waits: the clock jumps from one
//! moment to the next, so a week of `for` costs what its evaluations cost.
//!
//! At one moment, the results of that moment are applied before the rules are evaluated: a
//! probe that recovers exactly when a `for` elapses resolves the diagnosis rather than
//! confirming it first. Results of one moment are applied together (the daemon's probes
//! report at staggered offsets, so coincidences here are artefacts of round numbers).
//!
//! Every change of a diagnosis (pending, active, resolved) is kept as a [`Transition`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use tokio::time::Instant;

use crate::probe::{Kind, ProbeResult};
use crate::view::ProbeView;

use super::{
    Catalog, Classifier, Diagnosis, RuleStatus, TIME_DEPENDENT_PERIOD, Transition, transitions,
};

/// A probe as the timeline needs it: what it is and how often it runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TimelineProbe {
    /// Its name (`probes["name"]` in rules).
    pub name: String,
    /// Its kind, for the healthy default of its results.
    pub kind: Kind,
    /// How often it reports.
    pub interval: Duration,
    /// Its timeout: how long a run that timed out took.
    pub timeout: Duration,
}

/// One result at its time: an input of the timeline.
#[derive(Clone, Debug, PartialEq)]
pub struct TimedResult {
    /// The probe's name.
    pub probe: String,
    /// When the run finished.
    pub at: Timestamp,
    /// What it found.
    pub result: ProbeResult,
}

/// A rule that could not be evaluated at some moment, with why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleFailure {
    /// The failure mode's id.
    pub mode: String,
    /// The evaluation error.
    pub message: String,
}

/// Probe views and a classifier on a simulated clock.
#[derive(Debug)]
pub struct Timeline {
    views: Vec<Arc<ProbeView>>,
    by_name: HashMap<String, usize>,
    classifier: Classifier,
    /// The simulated clock's zero, as an instant and a wall-clock time.
    origin: (Instant, Timestamp),
    /// The latest moment evaluated.
    now: Timestamp,
    /// When the rules were last evaluated without new results (for time-dependent rules).
    last_evaluation: Option<Timestamp>,
    diagnoses: Arc<[Diagnosis]>,
    transitions: Vec<Transition>,
}

impl Timeline {
    /// A timeline of `catalog` over `probes` (none has reported yet), its clock at `start`.
    pub fn new(catalog: Arc<Catalog>, probes: &[TimelineProbe], start: Timestamp) -> Self {
        let views = probes
            .iter()
            .map(|probe| {
                Arc::new(ProbeView::new(
                    &probe.name,
                    probe.kind,
                    String::new(),
                    Default::default(),
                    probe.interval,
                    probe.timeout,
                ))
            })
            .collect();
        let by_name = probes
            .iter()
            .enumerate()
            .map(|(index, probe)| (probe.name.clone(), index))
            .collect();
        let classifier = Classifier::new(catalog, probes.iter().map(|probe| probe.name.as_str()));
        let diagnoses = classifier.diagnoses();
        Self {
            views,
            by_name,
            classifier,
            origin: (Instant::now(), start),
            now: start,
            last_evaluation: None,
            diagnoses,
            transitions: Vec::new(),
        }
    }

    /// The index of the probe named `name`, for [`Timeline::apply`].
    pub fn probe(&self, name: &str) -> Option<usize> {
        self.by_name.get(name).copied()
    }

    /// The latest moment the timeline has reached.
    pub fn now(&self) -> Timestamp {
        self.now
    }

    /// Runs the evaluations due before `at`, then records `results` (probe index, result), all
    /// finished at `at`, and evaluates. A moment before the latest one is taken as the latest
    /// (the store may hold results a few milliseconds out of order).
    pub fn apply(
        &mut self,
        at: Timestamp,
        results: impl IntoIterator<Item = (usize, ProbeResult)>,
    ) {
        let at = at.max(self.now);
        self.catch_up(at);
        let instant = self.instant(at);
        for (probe, result) in results {
            let Some(view) = self.views.get_mut(probe) else {
                continue;
            };
            Arc::make_mut(view).record(result, instant, at);
            self.classifier.probe_changed(probe);
        }
        self.evaluate(at);
    }

    /// Runs the evaluations due before `at`, then evaluates at `at`: the diagnoses as they are
    /// at that moment.
    pub fn advance_to(&mut self, at: Timestamp) {
        let at = at.max(self.now);
        self.catch_up(at);
        self.evaluate(at);
    }

    /// The current diagnoses: root causes first (the classifier's order).
    pub fn diagnoses(&self) -> &[Diagnosis] {
        &self.diagnoses
    }

    /// The rules whose latest evaluation failed.
    pub fn rule_failures(&self) -> Vec<RuleFailure> {
        self.classifier
            .stats()
            .filter(|(_, stats)| stats.status == RuleStatus::Error)
            .map(|(mode, stats)| RuleFailure {
                mode: mode.id.clone(),
                message: stats.last_error.clone().unwrap_or_default(),
            })
            .collect()
    }

    /// Every rule that failed to evaluate at some point: id, how often, the last message.
    pub fn rule_errors(&self) -> Vec<(String, u64, String)> {
        self.classifier
            .stats()
            .filter(|(_, stats)| stats.errors > 0)
            .map(|(mode, stats)| {
                (
                    mode.id.clone(),
                    stats.errors,
                    stats.last_error.clone().unwrap_or_default(),
                )
            })
            .collect()
    }

    /// Every change of a diagnosis so far, in time order.
    pub fn transitions(&self) -> &[Transition] {
        &self.transitions
    }

    /// The simulated instant of wall-clock time `at` (never before the origin).
    fn instant(&self, at: Timestamp) -> Instant {
        let offset = Duration::try_from(at.duration_since(self.origin.1)).unwrap_or_default();
        crate::spec::duration::after(self.origin.0, offset)
    }

    /// The wall-clock time of simulated instant `at`.
    fn wall(&self, at: Instant) -> Timestamp {
        let offset = at.saturating_duration_since(self.origin.0);
        SignedDuration::try_from(offset)
            .ok()
            .and_then(|offset| self.origin.1.checked_add(offset).ok())
            .unwrap_or(Timestamp::MAX)
    }

    /// Evaluates at every moment the daemon would before `to`: pending diagnoses coming due,
    /// and the period of time-dependent rules.
    fn catch_up(&mut self, to: Timestamp) {
        while let Some(next) = self.next_evaluation().filter(|next| *next < to) {
            self.evaluate(next);
        }
    }

    /// The next moment something can change without a new result, after the latest one.
    fn next_evaluation(&self) -> Option<Timestamp> {
        let deadline = self
            .classifier
            .next_deadline()
            .map(|deadline| self.wall(deadline));
        let tick = self
            .classifier
            .has_time_dependent_rules()
            .then(|| {
                let last = self.last_evaluation.unwrap_or(self.now);
                SignedDuration::try_from(TIME_DEPENDENT_PERIOD)
                    .ok()
                    .and_then(|period| last.checked_add(period).ok())
            })
            .flatten();
        [deadline, tick]
            .into_iter()
            .flatten()
            .filter(|next| *next > self.now)
            .min()
    }

    fn evaluate(&mut self, at: Timestamp) {
        let instant = self.instant(at);
        // The classifier logs what the daemon's operator should know (diagnoses, rules that
        // fail to evaluate); here the timeline's caller reports them itself.
        let diagnoses =
            tracing::subscriber::with_default(tracing::subscriber::NoSubscriber::default(), || {
                self.classifier.evaluate(&self.views, instant, at)
            });
        if !Arc::ptr_eq(&diagnoses, &self.diagnoses) {
            self.transitions
                .extend(transitions(&self.diagnoses, &diagnoses, at));
            self.diagnoses = diagnoses;
        }
        self.now = at;
        self.last_evaluation = Some(at);
    }
}
