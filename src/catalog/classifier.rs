//! The classifier: turns probe views into diagnoses, cheaply and without I/O.
//!
//! The state task owns one [`Classifier`]. It calls [`Classifier::probe_changed`] for every
//! result it folds in, and [`Classifier::evaluate`] when it wants the diagnoses (after a batch
//! of results, and on a timer: [`Classifier::next_deadline`] says when a pending diagnosis comes
//! due). A rule is re-evaluated only when one of the probes it reads has changed, or on every
//! call when its expression depends on time (`now`, `seconds_since_ok()`); confirming a `for`
//! duration needs no evaluation at all. With 10,000 probes reporting 1,000 results a second,
//! the cost is proportional to the rules those results touch, not to the size of the catalog.
//!
//! A rule is *unknown* until every probe it reads has a result, and then never fires. A rule
//! whose evaluation fails (a missing observation, a `null` where a number was expected) does
//! not fire either: the failure is counted in its [`RuleStats`] and logged once per distinct
//! message, not once per evaluation.
//!
//! Inhibition is applied here, from *active* diagnoses only: an inhibited diagnosis stays in the
//! list with [`Diagnosis::inhibited_by`] set, so `/status` can show the root cause first and
//! the alert engine knows not to notify it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use tokio::time::Instant;

use crate::spec::duration::after;
use crate::view::ProbeView;

use super::{Catalog, Diagnosis, DiagnosisState, Evidence, FailureMode};

/// How often rules that depend on time are re-evaluated without a new result. `now` has a
/// resolution of one second, and time-based thresholds are minutes: evaluating them more often
/// would only cost CPU when results arrive by the thousand.
pub const TIME_DEPENDENT_PERIOD: Duration = Duration::from_secs(1);

/// Whether one of the probes `mode` holds on (`hold_while_failing`) failed its latest run;
/// `views` are the rule's probes, in the order of [`FailureMode::probes`].
fn holds(mode: &FailureMode, views: &[Arc<ProbeView>]) -> bool {
    mode.hold_while_failing.iter().any(|name| {
        mode.probes()
            .iter()
            .position(|probe| probe == name)
            .and_then(|position| views.get(position))
            .and_then(|view| view.latest.as_ref())
            .is_some_and(|latest| !latest.result.ok)
    })
}

/// What a rule's latest evaluation found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RuleStatus {
    /// A probe the rule reads has no result yet (or the rule was never evaluated).
    #[default]
    Unknown,
    /// The expression is false.
    Clear,
    /// The expression is true: the failure mode is pending or active.
    Holding,
    /// The evaluation failed; see [`RuleStats::last_error`].
    Error,
    /// A probe named in `hold_while_failing` failed its latest run and the expression does not
    /// hold: the rule may lack the data to say so, and its diagnosis is kept as it was.
    Held,
}

impl RuleStatus {
    /// The name used in JSON and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            RuleStatus::Unknown => "unknown",
            RuleStatus::Clear => "clear",
            RuleStatus::Holding => "holding",
            RuleStatus::Error => "error",
            RuleStatus::Held => "held",
        }
    }
}

/// Per-rule evaluation counters, for `/status` and metrics.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RuleStats {
    /// The latest evaluation's outcome.
    pub status: RuleStatus,
    /// Evaluations with every probe known.
    pub evaluations: u64,
    /// Evaluations that failed.
    pub errors: u64,
    /// The latest failure's message (kept after the rule recovers).
    pub last_error: Option<String>,
    /// When the latest failure happened.
    pub last_error_at: Option<Timestamp>,
}

/// The classifier's state for one rule.
#[derive(Debug)]
struct RuleState {
    /// Index of each probe the rule reads in the state's probe list; `None` for a probe this
    /// daemon does not run (the rule then stays unknown).
    probes: Vec<Option<usize>>,
    diagnosis: Option<Diagnosis>,
    stats: RuleStats,
}

/// Evaluates the catalog's rules against probe views and keeps the current diagnoses.
#[derive(Debug)]
pub struct Classifier {
    catalog: Arc<Catalog>,
    rules: Vec<RuleState>,
    /// Probe index -> the rules that read it.
    by_probe: Vec<Vec<usize>>,
    /// Rules re-evaluated every [`TIME_DEPENDENT_PERIOD`] even without new results.
    time_dependent: Vec<usize>,
    /// When the time-dependent rules last ran.
    time_dependent_at: Option<Instant>,
    /// Rule index -> the rules whose `inhibits` names it.
    inhibitors: Vec<Vec<usize>>,
    /// Rules to re-evaluate at the next call, without duplicates.
    dirty: Vec<usize>,
    is_dirty: Vec<bool>,
    /// Rules holding a pending diagnosis.
    pending: Vec<usize>,
    diagnoses: Arc<[Diagnosis]>,
}

impl Classifier {
    /// A classifier for `catalog` over the probes named `probe_names`, in the order of the
    /// views later passed to [`Classifier::evaluate`] (the config order). Every rule starts
    /// dirty, so the first evaluation sees whatever results already exist.
    pub fn new<'a>(catalog: Arc<Catalog>, probe_names: impl IntoIterator<Item = &'a str>) -> Self {
        let probes: HashMap<&str, usize> = probe_names
            .into_iter()
            .enumerate()
            .map(|(index, name)| (name, index))
            .collect();
        let ids: HashMap<&str, usize> = catalog
            .modes
            .iter()
            .enumerate()
            .map(|(index, mode)| (mode.id.as_str(), index))
            .collect();
        let mut by_probe = vec![Vec::new(); probes.len()];
        let mut inhibitors = vec![Vec::new(); catalog.modes.len()];
        let mut rules = Vec::with_capacity(catalog.modes.len());
        let mut time_dependent = Vec::new();
        for (index, mode) in catalog.modes.iter().enumerate() {
            let read: Vec<Option<usize>> = mode
                .probes()
                .iter()
                .map(|probe| probes.get(probe.as_str()).copied())
                .collect();
            for probe in read.iter().flatten() {
                by_probe[*probe].push(index);
            }
            if mode.is_time_dependent() {
                time_dependent.push(index);
            }
            for inhibited in &mode.inhibits {
                if let Some(&target) = ids.get(inhibited.as_str()) {
                    inhibitors[target].push(index);
                }
            }
            rules.push(RuleState {
                probes: read,
                diagnosis: None,
                stats: RuleStats::default(),
            });
        }
        let count = rules.len();
        Self {
            catalog,
            rules,
            by_probe,
            time_dependent,
            time_dependent_at: None,
            inhibitors,
            dirty: (0..count).collect(),
            is_dirty: vec![true; count],
            pending: Vec::new(),
            diagnoses: Arc::from(Vec::new()),
        }
    }

    /// The classifier for a new `catalog` over new probes (a reload), keeping what this one
    /// knows of every rule that is still there, by id: its diagnosis (with its `since`, so a
    /// pending `for` keeps counting and an active diagnosis stays active, its title, severity,
    /// recovery and labels taken from the new rule) and its counters. Every rule is evaluated
    /// again at the next [`Classifier::evaluate`], so a changed `when` decides at once.
    #[must_use]
    pub fn reconfigured<'a>(
        mut self,
        catalog: Arc<Catalog>,
        probe_names: impl IntoIterator<Item = &'a str>,
    ) -> Self {
        let mut old: HashMap<String, RuleState> = self
            .catalog
            .modes
            .iter()
            .map(|mode| mode.id.clone())
            .zip(std::mem::take(&mut self.rules))
            .collect();
        let mut new = Classifier::new(catalog, probe_names);
        for (index, mode) in new.catalog.modes.iter().enumerate() {
            let Some(previous) = old.remove(&mode.id) else {
                continue;
            };
            let rule = &mut new.rules[index];
            rule.stats = previous.stats;
            rule.diagnosis = previous.diagnosis.map(|diagnosis| Diagnosis {
                title: mode.title.clone(),
                severity: mode.severity,
                summary: mode.symptom.clone(),
                recovery: mode.recovery.clone(),
                runbook: mode.runbook.clone(),
                labels: mode.labels.clone(),
                inhibited_by: None,
                ..diagnosis
            });
            if rule
                .diagnosis
                .as_ref()
                .is_some_and(|diagnosis| diagnosis.state == DiagnosisState::Pending)
            {
                new.pending.push(index);
            }
        }
        new.rebuild();
        new
    }

    /// Notes that probe `probe` (its index in the probe list) has a new result: the rules that
    /// read it are re-evaluated at the next [`Classifier::evaluate`].
    pub fn probe_changed(&mut self, probe: usize) {
        let Some(rules) = self.by_probe.get(probe) else {
            return;
        };
        for &rule in rules {
            if !self.is_dirty[rule] {
                self.is_dirty[rule] = true;
                self.dirty.push(rule);
            }
        }
    }

    /// Re-evaluates the rules whose probes changed (and the time-dependent ones, at most every
    /// [`TIME_DEPENDENT_PERIOD`]), confirms
    /// pending diagnoses whose `for` has elapsed, applies inhibition, and returns the current
    /// diagnoses: root causes first, then active before pending, by severity, oldest first.
    /// The returned list is shared and only rebuilt when something changed.
    pub fn evaluate(
        &mut self,
        probes: &[Arc<ProbeView>],
        now: Instant,
        wall: Timestamp,
    ) -> Arc<[Diagnosis]> {
        let mut to_run = std::mem::take(&mut self.dirty);
        let time_is_due = self
            .time_dependent_at
            .is_none_or(|at| now >= at + TIME_DEPENDENT_PERIOD);
        if time_is_due && !self.time_dependent.is_empty() {
            self.time_dependent_at = Some(now);
            for &rule in &self.time_dependent {
                if !self.is_dirty[rule] {
                    to_run.push(rule);
                }
            }
        }
        let mut changed = false;
        for &rule in &to_run {
            self.is_dirty[rule] = false;
            changed |= self.run(rule, probes, now, wall);
        }
        to_run.clear();
        self.dirty = to_run;
        changed |= self.confirm_pending(now);
        if changed {
            self.rebuild();
        }
        self.diagnoses.clone()
    }

    /// The diagnoses as of the last [`Classifier::evaluate`].
    pub fn diagnoses(&self) -> Arc<[Diagnosis]> {
        self.diagnoses.clone()
    }

    /// When the earliest pending diagnosis will have held for its `for` duration: the state
    /// task should evaluate by then even if no result arrives.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.pending
            .iter()
            .filter_map(|&rule| {
                // A held rule is not confirmed at its deadline (it would wake the state task in a
                // loop); the result that lifts the hold re-evaluates it.
                if self.rules[rule].stats.status == RuleStatus::Held {
                    return None;
                }
                let diagnosis = self.rules[rule].diagnosis.as_ref()?;
                Some(after(
                    diagnosis.since_instant,
                    self.catalog.modes[rule].for_duration,
                ))
            })
            .min()
    }

    /// Whether some rule depends on time and should be evaluated periodically even without new
    /// results.
    pub fn has_time_dependent_rules(&self) -> bool {
        !self.time_dependent.is_empty()
    }

    /// Every failure mode with its evaluation counters, in catalog order.
    pub fn stats(&self) -> impl Iterator<Item = (&FailureMode, &RuleStats)> {
        self.catalog
            .modes
            .iter()
            .zip(self.rules.iter().map(|rule| &rule.stats))
    }

    /// The catalog this classifier evaluates.
    pub fn catalog(&self) -> &Arc<Catalog> {
        &self.catalog
    }

    /// Evaluates one rule; returns whether its diagnosis changed.
    fn run(
        &mut self,
        index: usize,
        probes: &[Arc<ProbeView>],
        now: Instant,
        wall: Timestamp,
    ) -> bool {
        let mode = &self.catalog.modes[index];
        let rule = &mut self.rules[index];
        let views: Option<Vec<Arc<ProbeView>>> = rule
            .probes
            .iter()
            .map(|probe| probe.and_then(|probe| probes.get(probe)).cloned())
            .collect();
        let previous = rule.stats.status;
        let held = views.as_deref().is_some_and(|views| holds(mode, views));
        let outcome = match &views {
            Some(views) => self
                .catalog
                .evaluator
                .evaluate(&mode.expression, views, now, wall),
            None => Ok(None),
        };
        let status = match outcome {
            Ok(None) => RuleStatus::Unknown,
            Ok(Some(true)) => RuleStatus::Holding,
            Ok(Some(false)) => RuleStatus::Clear,
            Err(message) => {
                // Log a failure when it starts or its message changes, not on every evaluation.
                if previous != RuleStatus::Error
                    || rule.stats.last_error.as_deref() != Some(message.as_str())
                {
                    tracing::warn!(
                        rule = %mode.id,
                        error = %message,
                        "rule evaluation failed; the failure mode is not diagnosed until it evaluates again"
                    );
                }
                rule.stats.errors += 1;
                rule.stats.last_error = Some(message);
                rule.stats.last_error_at = Some(wall);
                RuleStatus::Error
            }
        };
        // A data source that cannot be read says nothing: what holds may still be diagnosed,
        // but what was diagnosed is not resolved on its silence.
        if held && status != RuleStatus::Holding {
            if previous != RuleStatus::Held {
                tracing::info!(rule = %mode.id, "a probe the rule holds on failed: diagnosis kept");
            }
            rule.stats.status = RuleStatus::Held;
            return false;
        }
        if previous == RuleStatus::Error && status != RuleStatus::Error {
            tracing::info!(rule = %mode.id, "rule evaluates again");
        }
        if status != RuleStatus::Unknown {
            rule.stats.evaluations += 1;
        }
        rule.stats.status = status;

        match (status, views) {
            (RuleStatus::Holding, Some(views)) => {
                let evidence = evidence(&views);
                match &mut rule.diagnosis {
                    Some(diagnosis) if diagnosis.evidence == evidence => false,
                    Some(diagnosis) => {
                        diagnosis.evidence = evidence;
                        true
                    }
                    None => {
                        let state = if mode.for_duration.is_zero() {
                            tracing::info!(diagnosis = %mode.id, "failure mode diagnosed");
                            DiagnosisState::Active
                        } else {
                            self.pending.push(index);
                            DiagnosisState::Pending
                        };
                        rule.diagnosis = Some(diagnose(mode, state, now, wall, evidence));
                        true
                    }
                }
            }
            _ => {
                let Some(diagnosis) = rule.diagnosis.take() else {
                    return false;
                };
                if diagnosis.state == DiagnosisState::Active {
                    tracing::info!(diagnosis = %mode.id, "failure mode no longer diagnosed");
                }
                self.pending.retain(|&pending| pending != index);
                true
            }
        }
    }

    /// Promotes pending diagnoses that have held for their `for`; returns whether any did.
    fn confirm_pending(&mut self, now: Instant) -> bool {
        let modes = &self.catalog.modes;
        let rules = &mut self.rules;
        let before = self.pending.len();
        self.pending.retain(|&index| {
            let rule = &mut rules[index];
            // A held rule stays pending: it has no data to confirm the failure with.
            if rule.stats.status == RuleStatus::Held {
                return true;
            }
            let Some(diagnosis) = rule.diagnosis.as_mut() else {
                return false;
            };
            if now < after(diagnosis.since_instant, modes[index].for_duration) {
                return true;
            }
            diagnosis.state = DiagnosisState::Active;
            tracing::info!(diagnosis = %modes[index].id, "failure mode diagnosed");
            false
        });
        self.pending.len() != before
    }

    /// Rebuilds the shared list: inhibition, then root causes first.
    fn rebuild(&mut self) {
        let active = |rule: usize| {
            self.rules[rule]
                .diagnosis
                .as_ref()
                .is_some_and(|diagnosis| diagnosis.state == DiagnosisState::Active)
        };
        let is_inhibited = |rule: usize| self.inhibitors[rule].iter().any(|&other| active(other));
        let mut diagnoses: Vec<Diagnosis> = Vec::new();
        for (index, rule) in self.rules.iter().enumerate() {
            let Some(diagnosis) = &rule.diagnosis else {
                continue;
            };
            // Prefer an inhibitor that is not itself inhibited: it is the root cause to show.
            let inhibitor = self.inhibitors[index]
                .iter()
                .copied()
                .filter(|&other| active(other))
                .min_by_key(|&other| {
                    let mode = &self.catalog.modes[other];
                    (is_inhibited(other), mode.severity, mode.id.as_str())
                });
            let mut diagnosis = diagnosis.clone();
            diagnosis.inhibited_by = inhibitor.map(|other| self.catalog.modes[other].id.clone());
            diagnoses.push(diagnosis);
        }
        diagnoses.sort_by(|a, b| {
            let key = |d: &Diagnosis| {
                (
                    d.inhibited_by.is_some(),
                    d.state != DiagnosisState::Active,
                    d.severity,
                    d.since,
                )
            };
            key(a).cmp(&key(b)).then_with(|| a.id.cmp(&b.id))
        });
        self.diagnoses = Arc::from(diagnoses);
    }
}

fn diagnose(
    mode: &FailureMode,
    state: DiagnosisState,
    now: Instant,
    wall: Timestamp,
    evidence: Vec<Evidence>,
) -> Diagnosis {
    Diagnosis {
        id: mode.id.clone(),
        title: mode.title.clone(),
        severity: mode.severity,
        state,
        since: wall,
        since_instant: now,
        evidence,
        summary: mode.symptom.clone(),
        recovery: mode.recovery.clone(),
        runbook: mode.runbook.clone(),
        labels: mode.labels.clone(),
        inhibited_by: None,
    }
}

fn evidence(views: &[Arc<ProbeView>]) -> Vec<Evidence> {
    views
        .iter()
        .map(|view| {
            let latest = view.latest.as_ref();
            Evidence {
                probe: view.name.clone(),
                ok: latest.is_some_and(|checked| checked.result.ok),
                message: latest.map_or_else(String::new, |checked| checked.result.message.clone()),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use super::*;
    use crate::catalog::{ProbeKinds, Severity};
    use crate::probe::{ErrorClass, Kind, ProbeResult};
    use crate::spec::Source;

    /// Three probes, some rules, and the classifier over them, driven like the state task does.
    struct Fixture {
        views: Vec<Arc<ProbeView>>,
        classifier: Classifier,
    }

    const PROBES: [&str; 3] = ["a", "b", "c"];

    impl Fixture {
        /// `rules` are (id, extra TOML lines) with `when` among the extra lines.
        fn new(rules: &[(&str, &str)]) -> Self {
            let sources: Vec<Source> = rules
                .iter()
                .map(|(id, extra)| {
                    Source::new(
                        format!("alerts/{id}.toml"),
                        format!(
                            "id = \"{id}\"\ntitle = \"{id} title\"\nseverity = \"warning\"\n\
                             symptom = \"{id} symptom\"\nrecovery = \"{id} recovery\"\n\
                             runbook = \"#{id}\"\n{extra}\n"
                        ),
                    )
                })
                .collect();
            // `c` is a DNS probe, whose per-resolver map lets a path nest arbitrarily deep.
            let kinds: ProbeKinds = PROBES
                .iter()
                .map(|name| {
                    let kind = if *name == "c" { Kind::Dns } else { Kind::Http };
                    ((*name).to_owned(), kind)
                })
                .collect();
            let catalog = Arc::new(crate::catalog::parse(&sources, &kinds).unwrap());
            let views = PROBES
                .iter()
                .map(|name| {
                    Arc::new(ProbeView::new(
                        name,
                        Kind::Http,
                        String::new(),
                        BTreeMap::new(),
                        Duration::from_secs(30),
                        Duration::from_secs(10),
                    ))
                })
                .collect();
            let classifier = Classifier::new(catalog, PROBES);
            Self { views, classifier }
        }

        fn report(&mut self, probe: &str, result: ProbeResult) {
            let index = PROBES.iter().position(|name| *name == probe).unwrap();
            Arc::make_mut(&mut self.views[index]).record(result, Instant::now(), Timestamp::now());
            self.classifier.probe_changed(index);
        }

        fn evaluate(&mut self) -> Arc<[Diagnosis]> {
            self.classifier
                .evaluate(&self.views, Instant::now(), Timestamp::now())
        }

        /// (id, state, inhibited_by) of every diagnosis, in list order.
        fn summary(&mut self) -> Vec<(String, &'static str, Option<String>)> {
            self.evaluate()
                .iter()
                .map(|d| (d.id.clone(), d.state.as_str(), d.inhibited_by.clone()))
                .collect()
        }

        fn stats(&self, id: &str) -> RuleStats {
            self.classifier
                .stats()
                .find(|(mode, _)| mode.id == id)
                .map(|(_, stats)| stats.clone())
                .unwrap()
        }
    }

    fn ok() -> ProbeResult {
        ProbeResult {
            ok: true,
            error: None,
            message: "200 OK".to_owned(),
            observations: BTreeMap::new(),
            duration: Duration::from_millis(50),
            phases: Vec::new(),
        }
    }

    fn failed() -> ProbeResult {
        ProbeResult {
            ok: false,
            error: Some(ErrorClass::Connect),
            message: "connection refused".to_owned(),
            observations: BTreeMap::new(),
            duration: Duration::from_millis(5),
            phases: Vec::new(),
        }
    }

    fn active(id: &str) -> (String, &'static str, Option<String>) {
        (id.to_owned(), "active", None)
    }

    /// A rule is unknown, not firing, until every probe it reads has a result.
    #[tokio::test(start_paused = true)]
    async fn a_rule_is_unknown_until_its_probes_report() {
        let mut fixture = Fixture::new(&[("both-down", "when = '!probes.a.ok && !probes.b.ok'")]);
        fixture.report("a", failed());
        assert!(fixture.evaluate().is_empty());
        assert_eq!(fixture.stats("both-down").status, RuleStatus::Unknown);
        assert_eq!(fixture.stats("both-down").evaluations, 0);

        fixture.report("b", failed());
        assert_eq!(fixture.summary(), [active("both-down")]);
        let diagnosis = &fixture.evaluate()[0];
        assert_eq!(diagnosis.title, "both-down title");
        assert_eq!(diagnosis.severity, Severity::Warning);
        assert_eq!(diagnosis.summary, "both-down symptom");
        assert_eq!(diagnosis.recovery, "both-down recovery");
        assert_eq!(diagnosis.runbook, "#both-down");
        assert_eq!(
            diagnosis.evidence,
            [
                Evidence {
                    probe: "a".to_owned(),
                    ok: false,
                    message: "connection refused".to_owned()
                },
                Evidence {
                    probe: "b".to_owned(),
                    ok: false,
                    message: "connection refused".to_owned()
                },
            ]
        );
    }

    /// Only the rules reading a changed probe are evaluated again.
    #[tokio::test(start_paused = true)]
    async fn only_rules_reading_a_changed_probe_are_evaluated() {
        let mut fixture = Fixture::new(&[
            ("a-down", "when = '!probes.a.ok'"),
            ("b-down", "when = '!probes.b.ok'"),
        ]);
        fixture.report("a", ok());
        fixture.report("b", ok());
        fixture.evaluate();
        for _ in 0..3 {
            fixture.report("a", failed());
            fixture.evaluate();
        }
        fixture.evaluate();
        assert_eq!(fixture.stats("a-down").evaluations, 4);
        assert_eq!(fixture.stats("b-down").evaluations, 1);
        assert_eq!(fixture.summary(), [active("a-down")]);
        fixture.report("a", ok());
        assert!(
            fixture.evaluate().is_empty(),
            "resolved once the rule no longer holds"
        );
    }

    /// A diagnosis is pending until its rule has held for `for`, then active, without needing
    /// a new result; `since` is when it started holding.
    #[tokio::test(start_paused = true)]
    async fn for_keeps_a_diagnosis_pending_until_it_has_held_long_enough() {
        let mut fixture = Fixture::new(&[("a-down", "when = '!probes.a.ok'\nfor = \"2m\"")]);
        fixture.report("a", failed());
        let started = Instant::now();
        assert_eq!(fixture.summary(), [("a-down".to_owned(), "pending", None)]);
        assert_eq!(
            fixture.classifier.next_deadline(),
            Some(started + Duration::from_secs(120))
        );

        tokio::time::advance(Duration::from_secs(119)).await;
        assert_eq!(fixture.summary()[0].1, "pending");
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(fixture.summary(), [active("a-down")]);
        assert_eq!(fixture.evaluate()[0].since_instant, started);
        assert_eq!(fixture.classifier.next_deadline(), None);
    }

    /// A `for` at the longest `validate` accepts, and one no instant can hold (which the loader
    /// rejects, set here behind its back): the deadline saturates and nothing panics.
    #[tokio::test(start_paused = true)]
    async fn for_at_and_beyond_its_maximum_does_not_panic() {
        let mut fixture = Fixture::new(&[("a-down", "when = '!probes.a.ok'\nfor = \"7d\"")]);
        fixture.report("a", failed());
        let started = Instant::now();
        assert_eq!(fixture.summary()[0].1, "pending");
        assert_eq!(
            fixture.classifier.next_deadline(),
            Some(started + crate::spec::duration::RULE_FOR.max)
        );

        let mut catalog = crate::catalog::parse(
            &[Source::new(
                "alerts/a-down.toml",
                "id = \"a-down\"\ntitle = \"t\"\nseverity = \"warning\"\nsymptom = \"s\"\n\
                 recovery = \"r\"\nrunbook = \"#r\"\nwhen = '!probes.a.ok'\n"
                    .to_owned(),
            )],
            &PROBES
                .iter()
                .map(|name| ((*name).to_owned(), Kind::Http))
                .collect(),
        )
        .unwrap();
        catalog.modes[0].for_duration = Duration::MAX;
        fixture.classifier = Classifier::new(Arc::new(catalog), PROBES);
        fixture.classifier.probe_changed(0);
        assert_eq!(fixture.summary()[0].1, "pending");
        assert!(
            fixture.classifier.next_deadline().unwrap() > started + Duration::from_secs(86_400)
        );
        tokio::time::advance(Duration::from_secs(3600)).await;
        assert_eq!(fixture.summary()[0].1, "pending");
    }

    /// An expression as deep as the loader allows is evaluated on a thread with the stack of
    /// a runtime worker (2 MiB), where the classifier runs.
    #[test]
    fn an_expression_at_the_depth_limit_evaluates_on_a_worker_stack() {
        // An arithmetic chain, the construct that costs the most stack per level.
        let sum = " + 1".repeat(crate::catalog::expr::MAX_DEPTH - 6);
        let when = format!("when = '!probes.a.ok && probes.a.consecutive_failures{sum} > 0'");
        let mut fixture = Fixture::new(&[("a-down", when.as_str())]);
        std::thread::scope(|scope| {
            std::thread::Builder::new()
                .stack_size(2 * 1024 * 1024)
                .spawn_scoped(scope, || {
                    fixture.report("a", failed());
                    fixture.evaluate();
                    assert_eq!(fixture.stats("a-down").evaluations, 1);
                })
                .unwrap()
                .join()
                .unwrap();
        });
    }

    /// A rule that stops holding while pending starts over.
    #[tokio::test(start_paused = true)]
    async fn a_pending_diagnosis_that_clears_starts_over() {
        let mut fixture = Fixture::new(&[("a-down", "when = '!probes.a.ok'\nfor = \"1m\"")]);
        fixture.report("a", failed());
        fixture.evaluate();
        tokio::time::advance(Duration::from_secs(50)).await;
        fixture.report("a", ok());
        assert!(fixture.evaluate().is_empty());
        fixture.report("a", failed());
        fixture.evaluate();
        tokio::time::advance(Duration::from_secs(50)).await;
        assert_eq!(
            fixture.summary()[0].1,
            "pending",
            "the clock restarted at the new failure"
        );
    }

    /// While a probe named in `hold_while_failing` fails, a diagnosis is not resolved on its
    /// silence: an active one stays, a pending one is kept but not confirmed (and sets no
    /// deadline) unless the expression itself holds; when the probe answers again, the rule is
    /// judged on its data.
    #[tokio::test(start_paused = true)]
    async fn a_failing_data_source_holds_the_diagnosis() {
        let rule = "when = '!probes.b.ok || (probes.a.ok && probes.a.duration_seconds > 1.0)'\n\
                    hold_while_failing = [\"a\"]";
        let mut fixture = Fixture::new(&[("a-slow", rule)]);
        fixture.report("a", ok());
        fixture.report("b", failed());
        assert_eq!(fixture.summary(), [active("a-slow")]);
        // The data source fails: what was diagnosed stays, nothing resolves.
        fixture.report("a", failed());
        fixture.report("b", ok());
        assert_eq!(fixture.summary(), [active("a-slow")]);
        assert_eq!(fixture.stats("a-slow").status, RuleStatus::Held);
        // It answers again, and the rule is judged on what it says.
        fixture.report("a", ok());
        assert!(fixture.summary().is_empty());
        // While held, what the expression still says holds is diagnosed (here: `b` fails).
        fixture.report("a", failed());
        fixture.report("b", failed());
        assert_eq!(fixture.summary(), [active("a-slow")]);

        let mut fixture = Fixture::new(&[(
            "a-down",
            "when = '!probes.b.ok && probes.a.ok'\nfor = \"1m\"\nhold_while_failing = [\"a\"]",
        )]);
        fixture.report("a", ok());
        fixture.report("b", failed());
        fixture.evaluate();
        fixture.report("a", failed());
        fixture.evaluate();
        assert_eq!(
            fixture.classifier.next_deadline(),
            None,
            "no deadline while held"
        );
        tokio::time::advance(Duration::from_secs(120)).await;
        assert_eq!(
            fixture.summary()[0].1,
            "pending",
            "not confirmed while held"
        );
        fixture.report("a", ok());
        assert_eq!(
            fixture.summary()[0].1,
            "active",
            "confirmed once the data is back"
        );
    }

    /// A rule that depends on time is evaluated on every pass, even without new results.
    #[tokio::test(start_paused = true)]
    async fn time_dependent_rules_are_evaluated_without_new_results() {
        let mut fixture = Fixture::new(&[(
            "a-down-long",
            "when = 'probes.a.seconds_since_ok() >= 300.0'",
        )]);
        fixture.report("a", ok());
        fixture.report("a", failed());
        assert!(fixture.evaluate().is_empty());
        tokio::time::advance(Duration::from_secs(299)).await;
        assert!(fixture.evaluate().is_empty());
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(fixture.summary(), [active("a-down-long")]);
    }

    /// Time-dependent rules run at most once per period however often the classifier is
    /// asked, so a burst of results does not multiply their cost.
    #[tokio::test(start_paused = true)]
    async fn time_dependent_rules_run_at_most_once_per_period() {
        let mut fixture = Fixture::new(&[("a-old", "when = 'probes.a.seconds_since_ok() > 60.0'")]);
        fixture.report("a", ok());
        for _ in 0..5 {
            fixture.evaluate();
        }
        assert_eq!(fixture.stats("a-old").evaluations, 1);
        tokio::time::advance(TIME_DEPENDENT_PERIOD).await;
        fixture.evaluate();
        fixture.evaluate();
        assert_eq!(fixture.stats("a-old").evaluations, 2);
    }

    /// A runtime error does not fire the rule; it is counted with its message, and the rule
    /// recovers when the data allows.
    #[tokio::test(start_paused = true)]
    async fn a_runtime_error_is_counted_and_does_not_fire() {
        let mut fixture =
            Fixture::new(&[("a-5xx", "when = 'probes.a.observations.status >= 500'")]);
        fixture.report("a", failed());
        assert!(fixture.evaluate().is_empty());
        fixture.report("a", failed());
        fixture.evaluate();
        let stats = fixture.stats("a-5xx");
        assert_eq!(stats.status, RuleStatus::Error);
        assert_eq!(stats.errors, 2);
        assert_eq!(stats.last_error.as_deref(), Some("no such key: status"));

        let mut result = failed();
        result.observations.insert("status".to_owned(), 502.into());
        fixture.report("a", result);
        assert_eq!(fixture.summary(), [active("a-5xx")]);
        let stats = fixture.stats("a-5xx");
        assert_eq!(stats.status, RuleStatus::Holding);
        assert_eq!(stats.errors, 2, "the last error is kept for /status");
    }

    /// An active diagnosis inhibits the ones it names: they stay listed, after the root cause,
    /// with `inhibited_by` set; a pending one inhibits nothing.
    #[tokio::test(start_paused = true)]
    async fn active_diagnoses_inhibit_the_modes_they_name() {
        let mut fixture = Fixture::new(&[
            (
                "all-down",
                "when = '!probes.a.ok && !probes.b.ok'\nfor = \"1m\"\ninhibits = [\"a-down\"]",
            ),
            ("a-down", "when = '!probes.a.ok'"),
        ]);
        fixture.report("a", failed());
        fixture.report("b", failed());
        assert_eq!(
            fixture.summary(),
            [active("a-down"), ("all-down".to_owned(), "pending", None),],
            "a pending diagnosis inhibits nothing"
        );
        tokio::time::advance(Duration::from_secs(60)).await;
        assert_eq!(
            fixture.summary(),
            [
                active("all-down"),
                ("a-down".to_owned(), "active", Some("all-down".to_owned())),
            ]
        );
        fixture.report("b", ok());
        assert_eq!(
            fixture.summary(),
            [active("a-down")],
            "inhibition ends with its cause"
        );
    }

    /// With several active inhibitors, the one not itself inhibited is named: the root cause.
    #[tokio::test(start_paused = true)]
    async fn the_root_cause_is_named_as_the_inhibitor() {
        let mut fixture = Fixture::new(&[
            (
                "everything-down",
                "when = '!probes.a.ok && !probes.b.ok && !probes.c.ok'\n\
                 inhibits = [\"two-down\", \"a-down\"]",
            ),
            (
                "two-down",
                "when = '!probes.a.ok && !probes.b.ok'\ninhibits = [\"a-down\"]",
            ),
            ("a-down", "when = '!probes.a.ok'"),
        ]);
        for probe in PROBES {
            fixture.report(probe, failed());
        }
        assert_eq!(
            fixture.summary(),
            [
                active("everything-down"),
                (
                    "a-down".to_owned(),
                    "active",
                    Some("everything-down".to_owned())
                ),
                (
                    "two-down".to_owned(),
                    "active",
                    Some("everything-down".to_owned())
                ),
            ]
        );
    }

    /// Evidence follows the probes' latest results while the diagnosis holds.
    #[tokio::test(start_paused = true)]
    async fn evidence_follows_the_latest_results() {
        let mut fixture =
            Fixture::new(&[("a-flaps", "when = 'probes.a.failure_ratio(4) >= 0.25'")]);
        fixture.report("a", failed());
        let evidence = fixture.evaluate()[0].evidence.clone();
        assert_eq!(
            (evidence[0].ok, evidence[0].message.as_str()),
            (false, "connection refused")
        );
        fixture.report("a", ok());
        let evidence = fixture.evaluate()[0].evidence.clone();
        assert_eq!(
            (evidence[0].ok, evidence[0].message.as_str()),
            (true, "200 OK")
        );
        for _ in 0..2 {
            fixture.report("a", ok());
        }
        assert_eq!(
            fixture.summary(),
            [active("a-flaps")],
            "1 failure in the last 4 runs"
        );
        fixture.report("a", ok());
        assert!(
            fixture.evaluate().is_empty(),
            "no failure in the last 4 runs"
        );
    }
}
