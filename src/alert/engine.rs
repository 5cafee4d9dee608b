//! The alert state machine: diagnoses in, alert states and notifications out. Pure: no I/O, no
//! clock of its own (every call takes `now` as a `tokio::time::Instant` for timing and `at` as a
//! `jiff::Timestamp` for what people read).
//!
//! Per diagnosis id there is one alert: *pending* while its diagnosis is pending, *firing* once
//! it is active, *resolved* when the diagnosis is gone. The rules, after Alertmanager:
//!
//! - Changes are collected into one batch that is flushed `group_wait` after its first change
//!   (and never sooner than `group_interval` after the previous flush), as **one message per
//!   notifier**: alerts that start together arrive together. An alert that fires and resolves
//!   within the batch is never sent.
//! - A firing alert is re-sent every `repeat_interval` (not to Alertmanager, which repeats by
//!   itself and instead gets every firing alert re-pushed each `refresh` period).
//! - An inhibited or silenced alert is not sent, but is tracked and shown with the reason. When
//!   the silence or inhibition ends while it still fires, it is sent (again).
//! - A resolve goes to exactly the notifiers that were told the alert was firing, silenced or
//!   not; so an alert that fired and resolved while silenced sends nothing, and one that was
//!   announced is always closed.
//! - A firing alert whose diagnosis comes back *pending* stays firing: that is the classifier
//!   restarting its `for` timer (after a restart of honeyguide), not the failure going away.
//! - A missing diagnosis resolves a firing alert only if its rule was actually evaluated
//!   (`Evaluation::undetermined`): right after a restart a probe the rule reads may have no
//!   result yet, and a rule whose evaluation fails says nothing about the failure having ended.
//!
//! Notifications leave the engine through [`Engine::take_changes`] together with the alert rows
//! that changed, so the caller can commit both to the store in one transaction before anything
//! is delivered. A restart restores alerts from those rows ([`Engine::restore`]), and re-derives
//! whatever was decided but not yet flushed: a firing alert never announced, a resolve never
//! sent.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::spec::duration::after;

use super::notification::{AlertMessage, Content, MessageStatus, Notification, Purpose, Reason};
use super::route::Route;
use super::silence::Silences;
use crate::catalog::{Diagnosis, DiagnosisState, Severity};

/// Timing and routing, from `[alerting]` and `[[notifier]]`.
#[derive(Clone, Debug)]
pub struct Settings {
    /// How long to wait after the first change before sending, to group what starts together.
    pub group_wait: Duration,
    /// Minimum time between two flushes.
    pub group_interval: Duration,
    /// Re-send a firing alert this long after it was last sent.
    pub repeat_interval: Duration,
    /// How long a resolved alert stays in `/status`.
    pub keep_resolved: Duration,
    /// The notifiers that take alerts, in config order.
    pub targets: Vec<Target>,
}

/// The note on an alert resolved because a reload removed its rule.
pub const RETIRED_NOTE: &str = "resolved because its rule was removed from the catalog by a configuration reload, \
     not because the failure stopped";

/// One notifier as the engine sees it.
#[derive(Clone, Debug)]
pub struct Target {
    /// Its name.
    pub notifier: String,
    /// What it wants.
    pub route: Route,
    /// Whether it gets resolved messages.
    pub send_resolved: bool,
    /// Alertmanager only: re-push every firing alert this often; no repeat messages.
    pub refresh: Option<Duration>,
}

/// One run of the classifier: every diagnosis that currently holds.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Evaluation {
    /// The full current list.
    pub diagnoses: Vec<Diagnosis>,
    /// Ids of the rules that could not be evaluated (a probe they read has no result yet, or the
    /// evaluation failed): their missing diagnosis does not mean "not happening".
    pub undetermined: BTreeSet<String>,
    /// Ids of rules a configuration reload removed: their alerts resolve, with a note saying
    /// why, instead of waiting for a diagnosis that can no longer come.
    pub retired: BTreeSet<String>,
}

crate::closed_set! {
    /// Where an alert is in its life.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(rename_all = "snake_case")]
    pub enum AlertState {
        /// The diagnosis holds, but not yet for its `for` duration.
        Pending = "pending",
        /// The diagnosis is active.
        Firing = "firing",
        /// The diagnosis went away.
        Resolved = "resolved",
    }
}

/// An alert as persisted in the store.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StoredAlert {
    /// The facts, as of the last state change.
    pub content: Content,
    /// Its state.
    pub state: AlertState,
    /// When it started firing.
    pub fired_at: Option<Timestamp>,
    /// When it resolved.
    pub resolved_at: Option<Timestamp>,
    /// Notifiers told it is firing and not yet told it resolved.
    pub notified: BTreeSet<String>,
    /// When it was last sent as firing.
    pub last_notified: Option<Timestamp>,
}

/// An alert as readers see it.
#[derive(Clone, Debug, PartialEq)]
pub struct AlertView {
    /// The latest facts.
    pub content: Content,
    /// Its state.
    pub state: AlertState,
    /// When it started firing.
    pub fired_at: Option<Timestamp>,
    /// When it resolved.
    pub resolved_at: Option<Timestamp>,
    /// Silences holding it now.
    pub silenced_by: Vec<String>,
    /// The diagnosis inhibiting it now.
    pub inhibited_by: Option<String>,
    /// When it was last sent as firing.
    pub last_notified: Option<Timestamp>,
    /// Notifiers that were told it is firing.
    pub notified: Vec<String>,
    /// A change of it (firing, a repeat, its resolve) waits in the current batch and goes out
    /// with it (within `group_wait`). A firing alert neither notified nor queued is one that no
    /// notifier takes.
    pub queued: bool,
}

/// What the engine decided since the last [`Engine::take_changes`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Changes {
    /// Alerts whose persisted form changed.
    pub upserts: Vec<StoredAlert>,
    /// Alerts to forget.
    pub removed: Vec<String>,
    /// Messages to put in the outbox.
    pub notifications: Vec<Notification>,
}

impl Changes {
    /// Whether there is nothing to persist.
    pub fn is_empty(&self) -> bool {
        self.upserts.is_empty() && self.removed.is_empty() && self.notifications.is_empty()
    }

    /// Folds later changes into these (used when a commit has to be retried).
    pub fn merge(&mut self, later: Changes) {
        for alert in later.upserts {
            self.removed.retain(|id| *id != alert.content.id);
            self.upserts
                .retain(|old| old.content.id != alert.content.id);
            self.upserts.push(alert);
        }
        for id in later.removed {
            self.upserts.retain(|old| old.content.id != id);
            if !self.removed.contains(&id) {
                self.removed.push(id);
            }
        }
        self.notifications.extend(later.notifications);
    }
}

#[derive(Clone, Debug)]
struct Alert {
    content: Content,
    state: AlertState,
    fired_at: Option<Timestamp>,
    resolved_at: Option<Timestamp>,
    resolved_instant: Option<Instant>,
    silenced_by: Vec<String>,
    inhibited_by: Option<String>,
    /// Whether it was suppressed at the last sweep, to notice a silence or inhibition ending.
    suppressed: bool,
    notified: BTreeSet<String>,
    last_notified: Option<(Instant, Timestamp)>,
}

impl Alert {
    fn new(content: Content) -> Self {
        Self {
            content,
            state: AlertState::Pending,
            fired_at: None,
            resolved_at: None,
            resolved_instant: None,
            silenced_by: Vec::new(),
            inhibited_by: None,
            suppressed: false,
            notified: BTreeSet::new(),
            last_notified: None,
        }
    }

    fn is_suppressed(&self) -> bool {
        !self.silenced_by.is_empty() || self.inhibited_by.is_some()
    }

    fn stored(&self) -> StoredAlert {
        StoredAlert {
            content: self.content.clone(),
            state: self.state,
            fired_at: self.fired_at,
            resolved_at: self.resolved_at,
            notified: self.notified.clone(),
            last_notified: self.last_notified.map(|(_, at)| at),
        }
    }

    fn severity(&self) -> Severity {
        self.content.severity
    }
}

/// A change waiting to be sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Event {
    Fire(Reason),
    Resolve,
}

#[derive(Clone, Debug)]
struct Batch {
    flush_at: Instant,
    events: BTreeMap<String, Event>,
}

/// The state machine. See the module documentation for the rules.
#[derive(Debug)]
pub struct Engine {
    settings: Settings,
    alerts: BTreeMap<String, Alert>,
    batch: Option<Batch>,
    last_flush: Option<Instant>,
    /// Per target with `refresh`: when the next re-push is due.
    refresh_due: BTreeMap<String, Instant>,
    dirty: BTreeSet<String>,
    removed: BTreeSet<String>,
    outbox: Vec<Notification>,
    rng: fastrand::Rng,
}

impl Engine {
    /// An engine with no alerts.
    pub fn new(settings: Settings, now: Instant) -> Self {
        let refresh_due = settings
            .targets
            .iter()
            .filter_map(|target| {
                target
                    .refresh
                    .map(|every| (target.notifier.clone(), after(now, every)))
            })
            .collect();
        Self {
            settings,
            alerts: BTreeMap::new(),
            batch: None,
            last_flush: None,
            refresh_due,
            dirty: BTreeSet::new(),
            removed: BTreeSet::new(),
            outbox: Vec::new(),
            rng: fastrand::Rng::new(),
        }
    }

    /// An engine continuing from persisted alerts. Firing alerts never announced and resolves
    /// never sent are queued again; pending alerts are dropped (the classifier re-creates them).
    pub fn restore(
        settings: Settings,
        stored: Vec<StoredAlert>,
        now: Instant,
        at: Timestamp,
    ) -> Self {
        let mut engine = Self::new(settings, now);
        // Alertmanager may have timed alerts out while honeyguide was down: re-push at once.
        for due in engine.refresh_due.values_mut() {
            *due = now;
        }
        for row in stored {
            let id = row.content.id.clone();
            let mut alert = Alert::new(row.content);
            alert.state = row.state;
            alert.fired_at = row.fired_at;
            alert.resolved_at = row.resolved_at;
            alert.resolved_instant = row
                .resolved_at
                .map(|resolved| instant_of(resolved, now, at));
            alert.notified = row.notified;
            alert.last_notified = row
                .last_notified
                .map(|notified| (instant_of(notified, now, at), notified));
            match alert.state {
                AlertState::Pending => {
                    engine.removed.insert(id);
                    continue;
                }
                AlertState::Firing if alert.last_notified.is_none() => {
                    engine.alerts.insert(id.clone(), alert);
                    engine.queue(&id, Event::Fire(Reason::New), now);
                }
                AlertState::Resolved if !alert.notified.is_empty() => {
                    engine.alerts.insert(id.clone(), alert);
                    engine.queue(&id, Event::Resolve, now);
                }
                _ => {
                    engine.alerts.insert(id, alert);
                }
            }
        }
        engine
    }

    /// Takes new timing and notifiers (a reload). Alerts keep their state; a notifier that is
    /// no longer configured is told nothing more (not even the resolve of what it was told
    /// fires); a new one hears of alerts from their next change or repeat.
    pub fn reconfigure(&mut self, settings: Settings, now: Instant) {
        self.refresh_due.retain(|notifier, _| {
            settings
                .targets
                .iter()
                .any(|target| &target.notifier == notifier && target.refresh.is_some())
        });
        for target in &settings.targets {
            if let Some(every) = target.refresh {
                self.refresh_due
                    .entry(target.notifier.clone())
                    .or_insert(after(now, every));
            }
        }
        self.settings = settings;
    }

    /// Folds in one evaluation of the classifier, then does whatever time requires.
    pub fn observe(
        &mut self,
        evaluation: &Evaluation,
        silences: &Silences,
        now: Instant,
        at: Timestamp,
    ) {
        let mut present = BTreeSet::new();
        for diagnosis in &evaluation.diagnoses {
            present.insert(diagnosis.id.as_str());
            self.apply_diagnosis(diagnosis, now, at);
        }
        let absent: Vec<String> = self
            .alerts
            .keys()
            .filter(|id| !present.contains(id.as_str()))
            .cloned()
            .collect();
        for id in absent {
            let determined = !evaluation.undetermined.contains(&id);
            if evaluation.retired.contains(&id)
                && let Some(alert) = self.alerts.get_mut(&id)
                && alert.state == AlertState::Firing
            {
                alert.content.note = Some(RETIRED_NOTE.to_owned());
            }
            self.apply_absence(&id, determined, now, at);
        }
        self.tick(silences, now, at);
    }

    /// Does whatever time requires: silences starting or ending, repeats, Alertmanager
    /// re-pushes, flushing the batch, forgetting old resolved alerts.
    pub fn tick(&mut self, silences: &Silences, now: Instant, at: Timestamp) {
        self.sweep_suppression(silences, now, at);
        self.queue_repeats(now);
        if self
            .batch
            .as_ref()
            .is_some_and(|batch| batch.flush_at <= now)
        {
            self.flush(now, at);
        }
        self.refresh(now, at);
        self.forget_resolved(now);
    }

    /// When the engine next needs a [`Engine::tick`] (besides silences starting or ending,
    /// which the caller checks periodically).
    pub fn next_deadline(&self) -> Option<Instant> {
        let flush = self.batch.as_ref().map(|batch| batch.flush_at);
        let repeats = self.alerts.values().filter_map(|alert| {
            (alert.state == AlertState::Firing)
                .then_some(alert.last_notified)
                .flatten()
                .map(|(notified, _)| after(notified, self.settings.repeat_interval))
        });
        let forget = self.alerts.values().filter_map(|alert| {
            alert
                .resolved_instant
                .map(|resolved| after(resolved, self.settings.keep_resolved))
        });
        flush
            .into_iter()
            .chain(repeats)
            .chain(forget)
            .chain(self.refresh_due.values().copied())
            .min()
    }

    /// Everything decided since the last call: alert rows to persist and messages to enqueue.
    pub fn take_changes(&mut self) -> Changes {
        let upserts = std::mem::take(&mut self.dirty)
            .into_iter()
            .filter_map(|id| self.alerts.get(&id).map(Alert::stored))
            .collect();
        Changes {
            upserts,
            removed: std::mem::take(&mut self.removed).into_iter().collect(),
            notifications: std::mem::take(&mut self.outbox),
        }
    }

    /// Every alert, by id.
    pub fn view(&self) -> Vec<AlertView> {
        self.alerts
            .iter()
            .map(|(id, alert)| AlertView {
                content: alert.content.clone(),
                state: alert.state,
                fired_at: alert.fired_at,
                resolved_at: alert.resolved_at,
                silenced_by: alert.silenced_by.clone(),
                inhibited_by: alert.inhibited_by.clone(),
                last_notified: alert.last_notified.map(|(_, at)| at),
                notified: alert.notified.iter().cloned().collect(),
                queued: self.queued(id).is_some(),
            })
            .collect()
    }

    // === diagnoses ===

    fn apply_diagnosis(&mut self, diagnosis: &Diagnosis, now: Instant, at: Timestamp) {
        let id = diagnosis.id.clone();
        let content = Content::from_diagnosis(diagnosis);
        let active = diagnosis.state == DiagnosisState::Active;
        let alert = self
            .alerts
            .entry(id.clone())
            .or_insert_with(|| Alert::new(content.clone()));
        alert.inhibited_by = diagnosis.inhibited_by.clone();
        match (alert.state, active) {
            (AlertState::Pending, false) => alert.content = content,
            (AlertState::Pending, true) => {
                alert.content = content;
                alert.state = AlertState::Firing;
                alert.fired_at = Some(at);
                self.dirty.insert(id.clone());
                self.queue(&id, Event::Fire(Reason::New), now);
            }
            // Evidence changes with every evaluation; it is persisted with the next state
            // change rather than on every run, to keep disk writes to transitions.
            (AlertState::Firing, _) => alert.content = content,
            (AlertState::Resolved, _) => self.reopen(&id, content, active, now, at),
        }
    }

    /// A resolved alert whose diagnosis is back: a new episode.
    fn reopen(&mut self, id: &str, content: Content, active: bool, now: Instant, at: Timestamp) {
        // `content` comes from the new diagnosis, so a note from the last episode is gone.
        let resolve_queued = self.queued(id) == Some(Event::Resolve);
        let Some(alert) = self.alerts.get_mut(id) else {
            return;
        };
        alert.content = content;
        self.dirty.insert(id.to_owned());
        if !active {
            alert.state = AlertState::Pending;
            alert.resolved_at = None;
            alert.resolved_instant = None;
            // A queued resolve still goes out: receivers were told it fired, and it did stop.
            return;
        }
        alert.state = AlertState::Firing;
        alert.resolved_at = None;
        alert.resolved_instant = None;
        if resolve_queued {
            // It flapped within one batch: receivers still believe it fires, which is true.
            self.unqueue(id);
        } else {
            alert.fired_at = Some(at);
            alert.last_notified = None;
            self.queue(id, Event::Fire(Reason::New), now);
        }
    }

    fn apply_absence(&mut self, id: &str, determined: bool, now: Instant, at: Timestamp) {
        let fire_queued = matches!(self.queued(id), Some(Event::Fire(_)));
        let Some(alert) = self.alerts.get_mut(id) else {
            return;
        };
        alert.inhibited_by = None;
        match alert.state {
            AlertState::Pending => {
                self.alerts.remove(id);
                self.dirty.remove(id);
                self.removed.insert(id.to_owned());
                self.unqueue(id);
            }
            AlertState::Firing if determined => {
                alert.state = AlertState::Resolved;
                alert.resolved_at = Some(at);
                alert.resolved_instant = Some(now);
                self.dirty.insert(id.to_owned());
                let announced = !alert.notified.is_empty();
                if fire_queued && !announced {
                    // Fired and resolved within one batch: nobody needs to hear about it.
                    self.unqueue(id);
                } else if announced {
                    self.queue(id, Event::Resolve, now);
                }
            }
            AlertState::Firing | AlertState::Resolved => {}
        }
    }

    // === time ===

    fn sweep_suppression(&mut self, silences: &Silences, now: Instant, at: Timestamp) {
        let mut unsuppressed = Vec::new();
        for (id, alert) in &mut self.alerts {
            alert.silenced_by = if alert.state == AlertState::Resolved {
                Vec::new()
            } else {
                silences.matching(id, &alert.content.identity_labels(), at)
            };
            let suppressed = alert.is_suppressed();
            if alert.suppressed && !suppressed && alert.state == AlertState::Firing {
                unsuppressed.push(id.clone());
            }
            alert.suppressed = suppressed;
        }
        for id in unsuppressed {
            if self.queued(&id).is_none() {
                self.queue(&id, Event::Fire(Reason::Unsuppressed), now);
            }
        }
    }

    fn queue_repeats(&mut self, now: Instant) {
        let due: Vec<String> = self
            .alerts
            .iter()
            .filter(|(_, alert)| {
                alert.state == AlertState::Firing
                    && !alert.is_suppressed()
                    && alert.last_notified.is_some_and(|(notified, _)| {
                        now >= after(notified, self.settings.repeat_interval)
                    })
            })
            .map(|(id, _)| id.clone())
            .filter(|id| self.queued(id).is_none())
            .collect();
        for id in due {
            self.queue(&id, Event::Fire(Reason::Repeat), now);
        }
    }

    fn forget_resolved(&mut self, now: Instant) {
        let keep = self.settings.keep_resolved;
        let old: Vec<String> = self
            .alerts
            .iter()
            .filter(|(id, alert)| {
                alert.state == AlertState::Resolved
                    && alert.notified.is_empty()
                    && alert
                        .resolved_instant
                        .is_some_and(|resolved| now >= after(resolved, keep))
                    && self.queued(id).is_none()
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in old {
            self.alerts.remove(&id);
            self.dirty.remove(&id);
            self.removed.insert(id);
        }
    }

    // === batching ===

    fn queued(&self, id: &str) -> Option<Event> {
        self.batch.as_ref()?.events.get(id).copied()
    }

    fn unqueue(&mut self, id: &str) {
        if let Some(batch) = &mut self.batch {
            batch.events.remove(id);
            if batch.events.is_empty() {
                self.batch = None;
            }
        }
    }

    fn queue(&mut self, id: &str, event: Event, now: Instant) {
        let batch = self.batch.get_or_insert_with(|| {
            let wait = after(now, self.settings.group_wait);
            let spaced = self
                .last_flush
                .map_or(wait, |last| after(last, self.settings.group_interval));
            Batch {
                flush_at: wait.max(spaced),
                events: BTreeMap::new(),
            }
        });
        batch.events.insert(id.to_owned(), event);
    }

    /// Sends the batch: one message per notifier, holding every alert routed to it.
    fn flush(&mut self, now: Instant, at: Timestamp) {
        let Some(batch) = self.batch.take() else {
            return;
        };
        self.last_flush = Some(now);
        let mut sent_firing: BTreeSet<String> = BTreeSet::new();
        for target in &self.settings.targets {
            let mut firing = Vec::new();
            let mut resolved = Vec::new();
            for (id, event) in &batch.events {
                let Some(alert) = self.alerts.get_mut(id) else {
                    continue;
                };
                match *event {
                    Event::Fire(reason) => {
                        let wanted = alert.state == AlertState::Firing
                            && !alert.is_suppressed()
                            && target.route.matches(id, alert.severity())
                            && !(reason == Reason::Repeat && target.refresh.is_some());
                        if wanted {
                            alert.notified.insert(target.notifier.clone());
                            sent_firing.insert(id.clone());
                            firing.push(AlertMessage {
                                status: MessageStatus::Firing,
                                reason,
                                alert: alert.content.clone(),
                                ends_at: None,
                            });
                        }
                    }
                    Event::Resolve => {
                        if alert.state == AlertState::Resolved
                            && alert.notified.remove(&target.notifier)
                            && target.send_resolved
                        {
                            resolved.push(AlertMessage {
                                status: MessageStatus::Resolved,
                                reason: Reason::Resolved,
                                alert: alert.content.clone(),
                                ends_at: alert.resolved_at,
                            });
                        }
                    }
                }
            }
            firing.extend(resolved);
            if !firing.is_empty() {
                self.outbox.push(Notification {
                    id: super::notification::new_id(&mut self.rng),
                    notifier: target.notifier.clone(),
                    purpose: Purpose::Alerts,
                    created_at: at,
                    alerts: firing,
                });
            }
        }
        for id in batch.events.keys() {
            let Some(alert) = self.alerts.get_mut(id) else {
                continue;
            };
            if alert.state == AlertState::Resolved {
                // Notifiers removed from the config since it fired will never be told.
                alert.notified.clear();
            }
            if sent_firing.contains(id) {
                alert.last_notified = Some((now, at));
            }
            self.dirty.insert(id.clone());
        }
    }

    /// Re-pushes every firing alert Alertmanager knows about, so its `endsAt` never passes while
    /// the failure lasts.
    fn refresh(&mut self, now: Instant, at: Timestamp) {
        for target in &self.settings.targets {
            let Some(every) = target.refresh else {
                continue;
            };
            let due = self
                .refresh_due
                .entry(target.notifier.clone())
                .or_insert(after(now, every));
            if now < *due {
                continue;
            }
            *due = after(now, every);
            let alerts: Vec<AlertMessage> = self
                .alerts
                .values()
                .filter(|alert| {
                    alert.state == AlertState::Firing && alert.notified.contains(&target.notifier)
                })
                .map(|alert| AlertMessage {
                    status: MessageStatus::Firing,
                    reason: Reason::Refresh,
                    alert: alert.content.clone(),
                    ends_at: None,
                })
                .collect();
            if !alerts.is_empty() {
                self.outbox.push(Notification {
                    id: super::notification::new_id(&mut self.rng),
                    notifier: target.notifier.clone(),
                    purpose: Purpose::Refresh,
                    created_at: at,
                    alerts,
                });
            }
        }
    }
}

/// The monotonic instant that corresponds to wall-clock `then`, given that `now` is `at`.
fn instant_of(then: Timestamp, now: Instant, at: Timestamp) -> Instant {
    let ago = at.duration_since(then);
    match Duration::try_from(ago) {
        Ok(ago) => now.checked_sub(ago).unwrap_or(now),
        // `then` is in the future (the clock went back): treat it as now.
        Err(_) => now,
    }
}

#[cfg(test)]
mod tests;
