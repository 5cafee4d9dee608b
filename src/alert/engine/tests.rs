//! The alert state machine, driven with paused tokio time.
//!
//! Each test feeds diagnoses and advances time in one-second steps (as the alert task does),
//! and asserts the messages that would have been enqueued, one line per notification:
//! `notifier: firing:new a, resolved b`.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use jiff::Timestamp;
use tokio::time::Instant;

use super::*;
use crate::alert::route::Glob;
use crate::alert::silence::{Matchers, Origin, Schedule, Silence};
use crate::catalog::{Evidence, Severity};

const SECOND: Duration = Duration::from_secs(1);

fn target(name: &str) -> Target {
    Target {
        notifier: name.into(),
        route: Route::default(),
        send_resolved: true,
        refresh: None,
    }
}

/// A notifier that takes critical alerts only.
fn pager() -> Target {
    let mut pager = target("pager");
    pager.route = Route {
        severities: vec![Severity::Critical],
        alerts: vec![],
    };
    pager
}

fn settings(targets: Vec<Target>) -> Settings {
    Settings {
        group_wait: Duration::from_secs(10),
        group_interval: Duration::from_secs(60),
        repeat_interval: Duration::from_secs(4 * 3600),
        keep_resolved: Duration::from_secs(3600),
        targets,
    }
}

/// An engine, the silences it sees, and a clock mapping paused `Instant`s to timestamps.
struct Harness {
    engine: Engine,
    silences: Silences,
    start: Instant,
    epoch: Timestamp,
    sent: Vec<Notification>,
    removed: Vec<String>,
    diagnoses: Vec<Diagnosis>,
    undetermined: BTreeSet<String>,
    retired: BTreeSet<String>,
}

impl Harness {
    fn new(settings: Settings) -> Self {
        Self {
            engine: Engine::new(settings, Instant::now()),
            silences: Silences::default(),
            start: Instant::now(),
            epoch: "2026-07-02T10:00:00Z".parse().unwrap(),
            sent: Vec::new(),
            removed: Vec::new(),
            diagnoses: Vec::new(),
            undetermined: BTreeSet::new(),
            retired: BTreeSet::new(),
        }
    }

    fn at(&self) -> Timestamp {
        let elapsed = Instant::now() - self.start;
        self.epoch
            .checked_add(jiff::SignedDuration::try_from(elapsed).unwrap())
            .unwrap()
    }

    /// The classifier now reports `diagnoses` (and keeps reporting them on every second).
    fn report(&mut self, diagnoses: Vec<Diagnosis>) {
        self.diagnoses = diagnoses;
        self.evaluate();
    }

    fn evaluate(&mut self) {
        let evaluation = Evaluation {
            diagnoses: self.diagnoses.clone(),
            undetermined: self.undetermined.clone(),
            retired: self.retired.clone(),
        };
        let (now, at) = (Instant::now(), self.at());
        self.engine.observe(&evaluation, &self.silences, now, at);
        self.collect();
    }

    /// Lets `duration` pass, evaluating and ticking every second like the real tasks.
    async fn advance(&mut self, duration: Duration) {
        let steps = duration.as_secs();
        for _ in 0..steps {
            tokio::time::advance(SECOND).await;
            self.evaluate();
        }
    }

    fn collect(&mut self) {
        let changes = self.engine.take_changes();
        self.sent.extend(changes.notifications);
        self.removed.extend(changes.removed);
    }

    /// One evaluation, returning what the engine decided (instead of collecting it).
    fn step(&mut self, diagnoses: Vec<Diagnosis>) -> Changes {
        let evaluation = Evaluation {
            diagnoses,
            undetermined: BTreeSet::new(),
            retired: BTreeSet::new(),
        };
        let (now, at) = (Instant::now(), self.at());
        self.engine.observe(&evaluation, &self.silences, now, at);
        self.engine.take_changes()
    }

    /// The messages sent since the last call, one line each.
    fn sent(&mut self) -> Vec<String> {
        std::mem::take(&mut self.sent)
            .iter()
            .map(|notification| {
                let alerts: Vec<String> = notification
                    .alerts
                    .iter()
                    .map(|message| {
                        let reason = match message.reason {
                            Reason::New => "new",
                            Reason::Repeat => "repeat",
                            Reason::Unsuppressed => "unsuppressed",
                            Reason::Resolved => "",
                            Reason::Refresh => "refresh",
                            Reason::Test => "test",
                        };
                        match message.status {
                            MessageStatus::Firing => {
                                format!("firing:{reason} {}", message.alert.id)
                            }
                            MessageStatus::Resolved => format!("resolved {}", message.alert.id),
                        }
                    })
                    .collect();
                format!("{}: {}", notification.notifier, alerts.join(", "))
            })
            .collect()
    }

    fn alert(&self, id: &str) -> AlertView {
        self.engine
            .view()
            .into_iter()
            .find(|alert| alert.content.id == id)
            .unwrap_or_else(|| panic!("no alert {id}"))
    }
}

fn diagnosis(id: &str, state: DiagnosisState) -> Diagnosis {
    Diagnosis {
        id: id.into(),
        title: format!("{id} title"),
        severity: Severity::Critical,
        state,
        since: "2026-07-02T09:59:00Z".parse().unwrap(),
        since_instant: Instant::now(),
        evidence: vec![Evidence {
            probe: "db-pooler".into(),
            ok: false,
            message: "connect: connection refused".into(),
        }],
        summary: "API requests fail".into(),
        recovery: "Restart it.".into(),
        runbook: "https://runbooks.example".into(),
        labels: BTreeMap::new(),
        inhibited_by: None,
    }
}

fn active(id: &str) -> Diagnosis {
    diagnosis(id, DiagnosisState::Active)
}

fn pending(id: &str) -> Diagnosis {
    diagnosis(id, DiagnosisState::Pending)
}

fn silence(id: &str, pattern: &str, start: Timestamp, end: Timestamp) -> Silence {
    Silence {
        id: id.into(),
        origin: Origin::Maintenance,
        matchers: Matchers {
            alerts: vec![Glob::new(pattern)],
            labels: BTreeMap::new(),
        },
        schedule: Schedule::Once { start, end },
        comment: String::new(),
    }
}

/// Pending, then firing, then resolved: exactly two messages, the firing one after group wait.
#[tokio::test(start_paused = true)]
async fn fire_then_resolve_sends_exactly_two_messages() {
    let mut h = Harness::new(settings(vec![target("email")]));
    h.report(vec![pending("neon-down")]);
    assert_eq!(h.alert("neon-down").state, AlertState::Pending);
    h.advance(Duration::from_secs(60)).await;
    assert!(h.sent().is_empty(), "pending alerts are not sent");

    h.report(vec![active("neon-down")]);
    assert_eq!(h.alert("neon-down").state, AlertState::Firing);
    h.advance(Duration::from_secs(9)).await;
    assert!(h.sent().is_empty(), "held for group wait");
    assert!(h.alert("neon-down").queued, "waiting in the batch");
    h.advance(SECOND).await;
    assert_eq!(h.sent(), ["email: firing:new neon-down"]);
    assert!(h.alert("neon-down").last_notified.is_some());
    assert!(!h.alert("neon-down").queued);

    h.advance(Duration::from_secs(120)).await;
    h.report(vec![]);
    assert_eq!(h.alert("neon-down").state, AlertState::Resolved);
    h.advance(Duration::from_secs(10)).await;
    assert_eq!(h.sent(), ["email: resolved neon-down"]);
    h.advance(Duration::from_secs(600)).await;
    assert!(h.sent().is_empty());
}

/// A diagnosis that goes away while pending leaves no trace.
#[tokio::test(start_paused = true)]
async fn pending_that_goes_away_sends_nothing_and_is_forgotten() {
    let mut h = Harness::new(settings(vec![target("email")]));
    h.report(vec![pending("neon-down")]);
    h.advance(Duration::from_secs(30)).await;
    h.report(vec![]);
    h.advance(Duration::from_secs(60)).await;
    assert!(h.sent().is_empty());
    assert!(h.engine.view().is_empty());
}

/// Alerts that start within group wait of each other arrive as one message per notifier.
#[tokio::test(start_paused = true)]
async fn alerts_starting_together_are_grouped_into_one_message_per_notifier() {
    let mut h = Harness::new(settings(vec![target("email"), target("webhook")]));
    h.report(vec![active("cf-global")]);
    h.advance(Duration::from_secs(3)).await;
    h.report(vec![active("cf-global"), active("edge-5xx")]);
    h.advance(Duration::from_secs(4)).await;
    h.report(vec![
        active("cf-global"),
        active("edge-5xx"),
        active("dns-fail"),
    ]);
    h.advance(Duration::from_secs(3)).await;
    assert_eq!(
        h.sent(),
        [
            "email: firing:new cf-global, firing:new dns-fail, firing:new edge-5xx",
            "webhook: firing:new cf-global, firing:new dns-fail, firing:new edge-5xx",
        ]
    );
}

/// After a message, the next one waits for group interval, collecting what happened meanwhile.
#[tokio::test(start_paused = true)]
async fn later_changes_wait_for_group_interval() {
    let mut h = Harness::new(settings(vec![target("email")]));
    h.report(vec![active("a")]);
    h.advance(Duration::from_secs(10)).await;
    assert_eq!(h.sent(), ["email: firing:new a"]);
    h.advance(Duration::from_secs(5)).await;
    h.report(vec![active("a"), active("b")]);
    h.advance(Duration::from_secs(20)).await;
    h.report(vec![active("b"), active("c")]);
    // 60 s after the first flush (t = 70), not 10 s after `b` started (t = 25).
    h.advance(Duration::from_secs(34)).await;
    assert!(h.sent().is_empty());
    h.advance(Duration::from_secs(1)).await;
    assert_eq!(h.sent(), ["email: firing:new b, firing:new c, resolved a"]);
}

/// An alert that fires and resolves within group wait is never sent (Alertmanager semantics).
#[tokio::test(start_paused = true)]
async fn fire_and_resolve_within_group_wait_sends_nothing() {
    let mut h = Harness::new(settings(vec![target("email")]));
    h.report(vec![active("blip")]);
    h.advance(Duration::from_secs(4)).await;
    h.report(vec![]);
    h.advance(Duration::from_secs(120)).await;
    assert!(h.sent().is_empty());
    assert_eq!(h.alert("blip").state, AlertState::Resolved);
}

/// A firing alert is re-sent every repeat interval, and not before.
#[tokio::test(start_paused = true)]
async fn a_firing_alert_is_repeated_after_the_repeat_interval() {
    let mut settings = settings(vec![target("email")]);
    settings.repeat_interval = Duration::from_secs(3600);
    let mut h = Harness::new(settings);
    h.report(vec![active("neon-down")]);
    h.advance(Duration::from_secs(10)).await;
    assert_eq!(h.sent(), ["email: firing:new neon-down"]);
    h.advance(Duration::from_secs(3599)).await;
    assert!(h.sent().is_empty());
    // Due at 3600 s after the first message, sent group wait later.
    h.advance(Duration::from_secs(11)).await;
    assert_eq!(h.sent(), ["email: firing:repeat neon-down"]);
    h.advance(Duration::from_secs(3610)).await;
    assert_eq!(h.sent(), ["email: firing:repeat neon-down"]);
}

/// An inhibited alert is not sent but shows who inhibits it; when the inhibition ends while it
/// still fires, it is sent.
#[tokio::test(start_paused = true)]
async fn inhibited_alerts_are_held_and_sent_when_the_inhibition_ends() {
    let mut h = Harness::new(settings(vec![target("email")]));
    let mut edge = active("edge-5xx");
    edge.inhibited_by = Some("cf-global".into());
    h.report(vec![active("cf-global"), edge.clone()]);
    h.advance(Duration::from_secs(10)).await;
    assert_eq!(h.sent(), ["email: firing:new cf-global"]);
    assert_eq!(
        h.alert("edge-5xx").inhibited_by.as_deref(),
        Some("cf-global")
    );
    assert_eq!(h.alert("edge-5xx").state, AlertState::Firing);

    // Cloudflare recovers; the edge problem remains and is now news.
    h.report(vec![active("edge-5xx")]);
    h.advance(Duration::from_secs(60)).await;
    assert_eq!(
        h.sent(),
        ["email: firing:unsuppressed edge-5xx, resolved cf-global"]
    );
    assert_eq!(h.alert("edge-5xx").inhibited_by, None);
}

/// A silence holds an alert (shown with the silence's name); when it expires while the alert
/// still fires, the alert is sent.
#[tokio::test(start_paused = true)]
async fn a_silence_suppresses_and_its_expiry_renotifies() {
    let mut h = Harness::new(settings(vec![target("email")]));
    let start = h.at();
    let end = start
        .checked_add(jiff::SignedDuration::from_mins(30))
        .unwrap();
    h.silences = Silences::new(vec![silence("node-drain", "origin-*", start, end)]);
    h.report(vec![active("origin-node-down")]);
    h.advance(Duration::from_secs(29 * 60)).await;
    assert!(h.sent().is_empty());
    assert_eq!(h.alert("origin-node-down").silenced_by, ["node-drain"]);

    h.advance(Duration::from_secs(60)).await;
    assert_eq!(
        h.alert("origin-node-down").silenced_by,
        Vec::<String>::new()
    );
    h.advance(Duration::from_secs(10)).await;
    assert_eq!(h.sent(), ["email: firing:unsuppressed origin-node-down"]);
}

/// An alert that fires and resolves entirely inside a silence sends nothing at all.
#[tokio::test(start_paused = true)]
async fn fired_and_resolved_while_silenced_sends_nothing() {
    let mut h = Harness::new(settings(vec![target("email")]));
    let start = h.at();
    let end = start
        .checked_add(jiff::SignedDuration::from_hours(2))
        .unwrap();
    h.silences = Silences::new(vec![silence("k3s-upgrade", "*", start, end)]);
    h.report(vec![active("origin-node-down")]);
    h.advance(Duration::from_secs(600)).await;
    h.report(vec![]);
    h.advance(Duration::from_secs(3 * 3600)).await;
    assert!(h.sent().is_empty());
}

/// An alert announced before a silence started still gets its resolve: a receiver told
/// "firing" is always told "resolved".
#[tokio::test(start_paused = true)]
async fn an_announced_alert_resolving_under_a_silence_still_sends_its_resolve() {
    let mut h = Harness::new(settings(vec![target("email")]));
    h.report(vec![active("neon-down")]);
    h.advance(Duration::from_secs(10)).await;
    assert_eq!(h.sent(), ["email: firing:new neon-down"]);
    let start = h.at();
    let end = start
        .checked_add(jiff::SignedDuration::from_hours(1))
        .unwrap();
    h.silences = Silences::new(vec![silence("oops", "neon-*", start, end)]);
    h.advance(Duration::from_secs(60)).await;
    h.report(vec![]);
    h.advance(Duration::from_secs(60)).await;
    assert_eq!(h.sent(), ["email: resolved neon-down"]);
}

/// Routes filter by severity and id; send_resolved = false drops resolves for that notifier.
#[tokio::test(start_paused = true)]
async fn routes_pick_alerts_by_severity_and_id() {
    let mut pager = pager();
    pager.send_resolved = false;
    let mut workers = target("workers");
    workers.route = Route {
        severities: vec![],
        alerts: vec![Glob::new("worker-*")],
    };
    let mut h = Harness::new(settings(vec![pager, workers, target("all")]));
    let mut warning = active("worker-stalled");
    warning.severity = Severity::Warning;
    h.report(vec![active("neon-down"), warning]);
    h.advance(Duration::from_secs(10)).await;
    assert_eq!(
        h.sent(),
        [
            "pager: firing:new neon-down",
            "workers: firing:new worker-stalled",
            "all: firing:new neon-down, firing:new worker-stalled",
        ]
    );
    h.report(vec![]);
    h.advance(Duration::from_secs(60)).await;
    assert_eq!(
        h.sent(),
        [
            "workers: resolved worker-stalled",
            "all: resolved neon-down, resolved worker-stalled",
        ]
    );
}

/// An alert no notifier takes fires all the same, and the view tells it apart from one waiting
/// for its batch: neither notified nor queued.
#[tokio::test(start_paused = true)]
async fn an_alert_no_notifier_takes_is_neither_notified_nor_queued() {
    let mut h = Harness::new(settings(vec![pager()]));
    let mut warning = active("worker-stalled");
    warning.severity = Severity::Warning;
    h.report(vec![warning]);
    assert!(h.alert("worker-stalled").queued);
    h.advance(Duration::from_secs(10)).await;
    assert!(h.sent().is_empty());
    let alert = h.alert("worker-stalled");
    assert_eq!(alert.state, AlertState::Firing);
    assert!(!alert.queued);
    assert!(alert.notified.is_empty() && alert.last_notified.is_none());
}

/// Alertmanager gets no repeats; instead every firing alert it was told about is re-pushed each
/// refresh period, and the resolve goes out as usual.
#[tokio::test(start_paused = true)]
async fn alertmanager_targets_get_refreshes_instead_of_repeats() {
    let mut am = target("am");
    am.refresh = Some(Duration::from_secs(60));
    let mut settings = settings(vec![am, target("email")]);
    settings.repeat_interval = Duration::from_secs(120);
    let mut h = Harness::new(settings);
    h.report(vec![active("neon-down")]);
    h.advance(Duration::from_secs(10)).await;
    assert_eq!(
        h.sent(),
        ["am: firing:new neon-down", "email: firing:new neon-down"]
    );
    h.advance(Duration::from_secs(50)).await;
    assert_eq!(h.sent(), ["am: firing:refresh neon-down"]);
    h.advance(Duration::from_secs(60)).await;
    assert_eq!(h.sent(), ["am: firing:refresh neon-down"]);
    h.advance(Duration::from_secs(20)).await;
    assert_eq!(h.sent(), ["email: firing:repeat neon-down"]);
    h.report(vec![]);
    h.advance(Duration::from_secs(60)).await;
    assert_eq!(
        h.sent(),
        ["am: resolved neon-down", "email: resolved neon-down"]
    );
    h.advance(Duration::from_secs(300)).await;
    assert!(h.sent().is_empty(), "nothing firing, nothing to refresh");
}

/// A firing alert whose diagnosis comes back pending (the classifier's `for` timer restarting
/// after a restart) stays firing; and while its rule cannot be evaluated (no result yet for a
/// probe it reads, or a failing evaluation), its absence resolves nothing.
#[tokio::test(start_paused = true)]
async fn restored_state_survives_a_restart_without_spurious_resolves() {
    let mut h = Harness::new(settings(vec![target("email")]));
    h.report(vec![active("neon-down")]);
    h.advance(Duration::from_secs(10)).await;
    assert_eq!(h.sent(), ["email: firing:new neon-down"]);
    let stored = h.engine.view();
    assert_eq!(stored.len(), 1);
    let rows: Vec<StoredAlert> = vec![StoredAlert {
        content: stored[0].content.clone(),
        state: stored[0].state,
        fired_at: stored[0].fired_at,
        resolved_at: None,
        notified: stored[0].notified.iter().cloned().collect(),
        last_notified: stored[0].last_notified,
    }];

    // "Restart": a new engine from the stored rows, a classifier that has not seen every probe.
    h.engine = Engine::restore(
        settings(vec![target("email")]),
        rows,
        Instant::now(),
        h.at(),
    );
    h.undetermined = BTreeSet::from(["neon-down".to_owned()]);
    h.report(vec![]);
    h.advance(Duration::from_secs(30)).await;
    assert_eq!(h.alert("neon-down").state, AlertState::Firing);
    h.undetermined.clear();
    h.report(vec![pending("neon-down")]);
    h.advance(Duration::from_secs(30)).await;
    assert_eq!(h.alert("neon-down").state, AlertState::Firing);
    assert!(h.sent().is_empty(), "nothing is announced twice");
    h.report(vec![]);
    h.advance(Duration::from_secs(10)).await;
    assert_eq!(h.sent(), ["email: resolved neon-down"]);
}

/// What was decided but not flushed before a crash is re-derived after restart: a firing alert
/// never announced is announced, a resolve never sent is sent.
#[tokio::test(start_paused = true)]
async fn restore_requeues_what_was_decided_but_not_sent() {
    let mut h = Harness::new(settings(vec![target("email")]));
    let unannounced = h.step(vec![active("neon-down")]).upserts;
    assert_eq!(unannounced.len(), 1);
    assert!(unannounced[0].notified.is_empty());

    let mut resolved = unannounced[0].clone();
    resolved.content.id = "redis-down".into();
    resolved.state = AlertState::Resolved;
    resolved.resolved_at = Some(h.at());
    resolved.notified = ["email".to_owned()].into();
    resolved.last_notified = Some(h.at());

    h.engine = Engine::restore(
        settings(vec![target("email")]),
        vec![unannounced[0].clone(), resolved],
        Instant::now(),
        h.at(),
    );
    h.diagnoses = vec![active("neon-down")];
    h.advance(Duration::from_secs(10)).await;
    assert_eq!(
        h.sent(),
        ["email: firing:new neon-down, resolved redis-down"]
    );
}

/// The engine's persisted rows change on transitions and notifications, not on every
/// evaluation: disk writes stay proportional to what happens.
#[tokio::test(start_paused = true)]
async fn persistence_follows_transitions_not_evaluations() {
    let mut h = Harness::new(settings(vec![target("email")]));
    assert!(h.step(vec![pending("neon-down")]).upserts.is_empty());
    let fired = h.step(vec![active("neon-down")]);
    assert_eq!(fired.upserts.len(), 1);
    assert!(fired.notifications.is_empty(), "held for group wait");
    for _ in 0..9 {
        tokio::time::advance(SECOND).await;
        assert!(h.step(vec![active("neon-down")]).is_empty());
    }
    tokio::time::advance(SECOND).await;
    let flushed = h.step(vec![active("neon-down")]);
    assert_eq!(flushed.notifications.len(), 1);
    assert_eq!(
        flushed.upserts.len(),
        1,
        "notified and last_notified recorded"
    );
    assert_eq!(flushed.upserts[0].notified, ["email".to_owned()].into());
    tokio::time::advance(SECOND).await;
    assert!(h.step(vec![active("neon-down")]).is_empty());
}

/// Resolved alerts stay visible for keep_resolved, then are forgotten.
#[tokio::test(start_paused = true)]
async fn resolved_alerts_are_forgotten_after_keep_resolved() {
    let mut settings = settings(vec![target("email")]);
    settings.keep_resolved = Duration::from_secs(600);
    let mut h = Harness::new(settings);
    h.report(vec![active("neon-down")]);
    h.advance(Duration::from_secs(20)).await;
    h.report(vec![]);
    h.advance(Duration::from_secs(599)).await;
    assert_eq!(h.alert("neon-down").state, AlertState::Resolved);
    h.advance(Duration::from_secs(2)).await;
    assert!(h.engine.view().is_empty());
    assert_eq!(h.removed, ["neon-down"]);
}

/// A resolved alert whose diagnosis comes back is a new episode, announced again.
#[tokio::test(start_paused = true)]
async fn an_alert_that_comes_back_after_resolving_is_announced_again() {
    let mut h = Harness::new(settings(vec![target("email")]));
    h.report(vec![active("neon-down")]);
    h.advance(Duration::from_secs(10)).await;
    h.report(vec![]);
    h.advance(Duration::from_secs(60)).await;
    h.report(vec![active("neon-down")]);
    h.advance(Duration::from_secs(60)).await;
    assert_eq!(
        h.sent(),
        [
            "email: firing:new neon-down",
            "email: resolved neon-down",
            "email: firing:new neon-down",
        ]
    );
}

/// After a restart, firing alerts Alertmanager was told about are re-pushed at once (it may
/// have timed them out meanwhile), not one refresh period later.
#[tokio::test(start_paused = true)]
async fn a_restart_re_pushes_to_alertmanager_at_once() {
    let mut am = target("am");
    am.refresh = Some(Duration::from_secs(60));
    let mut h = Harness::new(settings(vec![am.clone()]));
    let row = StoredAlert {
        content: Content::from_diagnosis(&active("neon-down")),
        state: AlertState::Firing,
        fired_at: Some(h.at()),
        resolved_at: None,
        notified: ["am".to_owned()].into(),
        last_notified: Some(h.at()),
    };
    h.engine = Engine::restore(settings(vec![am]), vec![row], Instant::now(), h.at());
    h.report(vec![active("neon-down")]);
    assert_eq!(h.sent(), ["am: firing:refresh neon-down"]);
}

/// Every timing at the largest value `validate` accepts, and far beyond (`Duration::MAX`,
/// which `Instant + Duration` cannot hold): the engine keeps working and never panics.
#[tokio::test(start_paused = true)]
async fn timings_at_and_beyond_the_configured_maxima_do_not_panic() {
    use crate::spec::duration;
    let maxima = Settings {
        group_wait: duration::GROUP_WAIT.max,
        group_interval: duration::GROUP_INTERVAL.max,
        repeat_interval: duration::REPEAT_INTERVAL.max,
        keep_resolved: duration::KEEP_RESOLVED.max,
        targets: vec![Target {
            refresh: Some(duration::RESEND_INTERVAL.max),
            ..target("am")
        }],
    };
    let mut h = Harness::new(maxima);
    h.report(vec![active("neon-down")]);
    assert!(h.engine.next_deadline().is_some());
    tokio::time::advance(duration::GROUP_WAIT.max).await;
    h.evaluate();
    // The refresh is due at the same instant (both are an hour).
    assert_eq!(
        h.sent(),
        ["am: firing:new neon-down", "am: firing:refresh neon-down"]
    );

    let beyond = Settings {
        group_wait: Duration::MAX,
        group_interval: Duration::MAX,
        repeat_interval: Duration::MAX,
        keep_resolved: Duration::MAX,
        targets: vec![Target {
            refresh: Some(Duration::MAX),
            ..target("am")
        }],
    };
    let mut h = Harness::new(beyond);
    h.report(vec![active("neon-down")]);
    let due = h.engine.next_deadline().unwrap();
    assert!(due > Instant::now() + Duration::from_secs(365 * 86_400));
    h.advance(Duration::from_secs(5)).await;
    h.report(vec![]);
    h.advance(Duration::from_secs(5)).await;
    h.engine.tick(&h.silences, Instant::now(), h.at());
    assert!(
        h.sent().is_empty(),
        "a batch due in 30 years is not sent now"
    );
}
