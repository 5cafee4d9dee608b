//! The alert task: runs the [`Engine`] on the diagnoses the state task publishes, persists every
//! decision to the store *before* any delivery, wakes the notifiers' delivery loops, and owns the
//! silences (maintenance windows and API silences) and the delivery counters.
//!
//! It is a task of its own, not part of the state task, because it waits on the disk (each
//! transition is committed before it may be delivered) and has its own clocks (group wait,
//! repeats, silence windows, Alertmanager re-sends); the state task must never wait on either.
//! The two talk through `watch` channels, which never block the sender and always hold the
//! latest value: diagnoses in, an [`AlertsView`] out for `/status` and `/metrics`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use tokio::sync::{Notify, mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::engine::{Changes, Engine, Evaluation};
use super::route::Glob;
use super::silence::{ExpireError, Matchers, Origin, Phase, Schedule, Silence, Silences};
use super::{AlertsView, DeliveryResult, NotifierStats};
use crate::notify::dispatch::DeliveryReport;
use crate::store::{StoreHandle, StoredSilence};

/// How often silences are re-checked (they start and end by the clock, not by events).
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(1);
/// Expired API silences stay visible this long.
pub const KEEP_EXPIRED_SILENCES: SignedDuration = SignedDuration::from_hours(24);
/// How much of an API caller's text (a silence comment, its author) a log line quotes.
const LOGGED_TEXT_MAX: usize = 200;

/// A silence requested through the API, validated.
#[derive(Clone, Debug, PartialEq)]
pub struct NewSilence {
    /// What it covers (at least one part non-empty).
    pub matchers: Matchers,
    /// When it starts.
    pub starts_at: Timestamp,
    /// When it ends (after `starts_at`, in the future).
    pub ends_at: Timestamp,
    /// Why.
    pub comment: String,
    /// Who.
    pub created_by: String,
}

/// Why a silence request failed.
#[derive(Debug, thiserror::Error)]
pub enum SilenceError {
    /// Expiring failed.
    #[error(transparent)]
    Expire(#[from] ExpireError),
    /// It could not be persisted.
    #[error("{0}")]
    Store(#[from] crate::store::StoreError),
    /// The limit on API silences is reached.
    #[error(transparent)]
    Full(#[from] super::silence::Full),
    /// The alert task is gone.
    #[error("honeyguide is shutting down")]
    Closed,
}

enum Command {
    Add(NewSilence, oneshot::Sender<Result<Silence, SilenceError>>),
    Expire(String, oneshot::Sender<Result<Silence, SilenceError>>),
    List(oneshot::Sender<Vec<(Silence, Phase)>>),
    Reconfigure(Box<AlertReconfiguration>, oneshot::Sender<()>),
}

/// What a configuration reload hands the alert task.
#[derive(Debug)]
pub struct AlertReconfiguration {
    /// The engine's new timing and notifiers.
    pub settings: super::Settings,
    /// The new maintenance windows (API silences stay as they are).
    pub maintenance: Vec<Silence>,
    /// One wake-up per notifier with an outbox (kept notifiers keep theirs).
    pub wakes: BTreeMap<String, Arc<Notify>>,
    /// Every notifier, in config order, with its kind: a kept one keeps its counters.
    pub notifiers: Vec<(String, &'static str)>,
}

/// The way to the alert task, for the silences API.
#[derive(Clone, Debug)]
pub struct AlertHandle {
    commands: mpsc::Sender<Command>,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("alert::task::Command")
    }
}

impl AlertHandle {
    async fn ask<T>(
        &self,
        command: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, SilenceError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(command(reply))
            .await
            .map_err(|_| SilenceError::Closed)?;
        answer.await.map_err(|_| SilenceError::Closed)
    }

    /// Creates and persists a silence; returns it with its id.
    pub async fn add_silence(&self, silence: NewSilence) -> Result<Silence, SilenceError> {
        self.ask(|reply| Command::Add(silence, reply)).await?
    }

    /// Expires an API silence now.
    pub async fn expire_silence(&self, id: &str) -> Result<Silence, SilenceError> {
        let id = id.to_owned();
        self.ask(|reply| Command::Expire(id, reply)).await?
    }

    /// Every silence with its phase now.
    pub async fn silences(&self) -> Result<Vec<(Silence, Phase)>, SilenceError> {
        self.ask(Command::List).await
    }

    /// Puts new alerting settings, maintenance windows and notifiers in force (a reload);
    /// alert state, the outbox and API silences are kept.
    pub async fn reconfigure(
        &self,
        reconfiguration: AlertReconfiguration,
    ) -> Result<(), SilenceError> {
        self.ask(|reply| Command::Reconfigure(Box::new(reconfiguration), reply))
            .await
    }
}

/// What the alert task is built from.
#[derive(Debug)]
pub struct Wiring {
    /// The engine, restored or new.
    pub engine: Engine,
    /// Maintenance windows from the config.
    pub maintenance: Vec<Silence>,
    /// API silences from the store.
    pub stored_silences: Vec<StoredSilence>,
    /// The store.
    pub store: StoreHandle,
    /// Diagnoses from the state task.
    pub evaluations: watch::Receiver<Evaluation>,
    /// Delivery reports from the dispatchers and heartbeats.
    pub reports: mpsc::Receiver<DeliveryReport>,
    /// One wake-up per notifier that has an outbox.
    pub wakes: BTreeMap<String, Arc<Notify>>,
    /// Initial stats per notifier, in config order (depths from the store).
    pub stats: Vec<NotifierStats>,
}

/// The alert task. Build with [`AlertTask::new`], drive with [`AlertTask::run`].
pub struct AlertTask {
    engine: Engine,
    silences: Silences,
    store: StoreHandle,
    evaluations: watch::Receiver<Evaluation>,
    commands: mpsc::Receiver<Command>,
    reports: mpsc::Receiver<DeliveryReport>,
    view: watch::Sender<Arc<AlertsView>>,
    wakes: BTreeMap<String, Arc<Notify>>,
    stats: Vec<NotifierStats>,
    unsaved: Option<Changes>,
    store_failing: bool,
    rng: fastrand::Rng,
}

impl std::fmt::Debug for AlertTask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlertTask").finish_non_exhaustive()
    }
}

impl AlertTask {
    /// Builds the task; returns it, the handle for the API, and the view readers watch.
    pub fn new(wiring: Wiring) -> (Self, AlertHandle, watch::Receiver<Arc<AlertsView>>) {
        let (commands_tx, commands) = mpsc::channel(64);
        let mut list = wiring.maintenance;
        list.extend(
            within_bounds(wiring.stored_silences)
                .into_iter()
                .map(silence_from_stored),
        );
        let (view, view_rx) = watch::channel(Arc::new(AlertsView::default()));
        let mut task = Self {
            engine: wiring.engine,
            silences: Silences::new(list),
            store: wiring.store,
            evaluations: wiring.evaluations,
            commands,
            reports: wiring.reports,
            view,
            wakes: wiring.wakes,
            stats: wiring.stats,
            unsaved: None,
            store_failing: false,
            rng: fastrand::Rng::new(),
        };
        task.publish();
        (
            task,
            AlertHandle {
                commands: commands_tx,
            },
            view_rx,
        )
    }

    /// Runs until `stop`, then saves what is left.
    pub async fn run(mut self, stop: CancellationToken) {
        // Whatever a restore queued (an announcement or resolve not yet sent) goes out first.
        self.tick();
        self.persist().await;
        self.publish();
        let mut evaluations_open = true;
        loop {
            let sweep = Instant::now() + SWEEP_INTERVAL;
            let wake = self
                .engine
                .next_deadline()
                .map_or(sweep, |due| due.min(sweep));
            tokio::select! {
                () = stop.cancelled() => break,
                changed = self.evaluations.changed(), if evaluations_open => match changed {
                    Ok(()) => {
                        let evaluation = self.evaluations.borrow_and_update().clone();
                        self.engine.observe(&evaluation, &self.silences, Instant::now(), Timestamp::now());
                    }
                    Err(_) => evaluations_open = false,
                },
                Some(command) = self.commands.recv() => self.handle(command).await,
                Some(report) = self.reports.recv() => self.count(report),
                () = tokio::time::sleep_until(wake) => self.tick(),
            }
            self.persist().await;
            self.publish();
        }
        self.persist().await;
    }

    fn tick(&mut self) {
        let at = Timestamp::now();
        let pruned = self.silences.prune(at, KEEP_EXPIRED_SILENCES);
        if !pruned.is_empty() {
            let store = self.store.clone();
            tokio::spawn(async move {
                if let Err(error) = store.delete_silences(pruned).await {
                    tracing::debug!(%error, "could not forget expired silences");
                }
            });
        }
        self.engine.tick(&self.silences, Instant::now(), at);
    }

    /// Commits what the engine decided; only then may the dispatchers see it.
    async fn persist(&mut self) {
        let changes = self.engine.take_changes();
        let changes = match self.unsaved.take() {
            Some(mut earlier) => {
                earlier.merge(changes);
                earlier
            }
            None => changes,
        };
        if changes.is_empty() {
            return;
        }
        for notification in &changes.notifications {
            tracing::info!(
                notifier = %notification.notifier,
                notification.id = %notification.id,
                alerts = notification.alerts.len(),
                purpose = ?notification.purpose,
                "notification queued"
            );
        }
        match self.store.commit(changes.clone()).await {
            Ok(depths) => {
                if std::mem::take(&mut self.store_failing) {
                    tracing::info!("alert state saved again; held notifications are queued");
                }
                for (notifier, depth) in depths {
                    if let Some(stats) = self.stats.iter_mut().find(|stats| stats.name == notifier)
                    {
                        stats.outbox_depth = depth;
                    }
                    if let Some(wake) = self.wakes.get(&notifier) {
                        wake.notify_one();
                    }
                }
            }
            Err(error) => {
                // Nothing is delivered that is not stored; keep it and try again next round
                // (at least once a second), saying so once rather than every time.
                if !self.store_failing {
                    tracing::error!(%error, "cannot save alert state; notifications are held until it works");
                }
                self.store_failing = true;
                self.unsaved = Some(changes);
            }
        }
    }

    fn publish(&mut self) {
        let at = Timestamp::now();
        let view = AlertsView {
            alerts: self.engine.view(),
            silences: self
                .silences
                .all()
                .iter()
                .map(|silence| (silence.clone(), silence.phase(at)))
                .collect(),
            notifiers: self.stats.clone(),
        };
        self.view.send_if_modified(|current| {
            if current.alerts == view.alerts
                && current.silences == view.silences
                && current.notifiers == view.notifiers
            {
                return false;
            }
            *current = Arc::new(view);
            true
        });
    }

    fn count(&mut self, report: DeliveryReport) {
        if let Some(stats) = self
            .stats
            .iter_mut()
            .find(|stats| stats.name == report.notifier)
        {
            record(stats, report);
        }
    }

    async fn handle(&mut self, command: Command) {
        let at = Timestamp::now();
        match command {
            Command::Add(request, reply) => {
                let made_way = match self.silences.make_room(at) {
                    Ok(made_way) => made_way,
                    Err(full) => {
                        let _ = reply.send(Err(SilenceError::Full(full)));
                        return;
                    }
                };
                if let Some(id) = made_way
                    && let Err(error) = self.store.delete_silences(vec![id]).await
                {
                    tracing::debug!(%error, "could not forget an expired silence");
                }
                let stored = StoredSilence {
                    id: super::notification::new_id(&mut self.rng),
                    alerts: request
                        .matchers
                        .alerts
                        .iter()
                        .map(|glob| glob.as_str().to_owned())
                        .collect(),
                    labels: request
                        .matchers
                        .labels
                        .iter()
                        .map(|(name, glob)| (name.clone(), glob.as_str().to_owned()))
                        .collect(),
                    starts_at: request.starts_at,
                    ends_at: request.ends_at,
                    comment: request.comment,
                    created_by: request.created_by,
                    created_at: at,
                };
                let result = match self.store.save_silence(stored.clone()).await {
                    Ok(()) => {
                        let silence = silence_from_stored(stored);
                        // The comment and author come from an API caller: escaped and bounded,
                        // so they cannot forge log lines or drive the terminal reading them.
                        tracing::info!(
                            silence.id = %silence.id,
                            comment = %crate::text::one_line(&silence.comment, LOGGED_TEXT_MAX),
                            created_by = %crate::text::one_line(&stored_by(&silence), LOGGED_TEXT_MAX),
                            "silence created"
                        );
                        self.silences.add(silence.clone());
                        self.tick();
                        Ok(silence)
                    }
                    Err(error) => Err(SilenceError::Store(error)),
                };
                let _ = reply.send(result);
            }
            Command::Reconfigure(reconfiguration, reply) => {
                let AlertReconfiguration {
                    settings,
                    maintenance,
                    wakes,
                    notifiers,
                } = *reconfiguration;
                self.engine.reconfigure(settings, Instant::now());
                self.silences.replace_maintenance(maintenance);
                self.wakes = wakes;
                let mut old = std::mem::take(&mut self.stats);
                self.stats = notifiers
                    .into_iter()
                    .map(|(name, kind)| {
                        match old
                            .iter()
                            .position(|stats| stats.name == name && stats.kind == kind)
                        {
                            Some(index) => old.swap_remove(index),
                            None => NotifierStats::new(&name, kind),
                        }
                    })
                    .collect();
                self.tick();
                let _ = reply.send(());
            }
            Command::Expire(id, reply) => {
                let result = match self.silences.expire(&id, at) {
                    Ok(silence) => {
                        tracing::info!(silence.id = %id, "silence expired through the API");
                        let saved = self.store.save_silence(stored_from_silence(&silence)).await;
                        self.tick();
                        saved.map(|()| silence).map_err(SilenceError::Store)
                    }
                    Err(error) => Err(SilenceError::Expire(error)),
                };
                let _ = reply.send(result);
            }
            Command::List(reply) => {
                let list = self
                    .silences
                    .all()
                    .iter()
                    .map(|silence| (silence.clone(), silence.phase(at)))
                    .collect();
                let _ = reply.send(list);
            }
        }
    }
}

/// Silences stored by an older version may exceed today's bounds; holding them would let a
/// store that once grew too big exhaust memory at every start. Keeps the newest
/// [`MAX_API_SILENCES`], each comment cut to [`MAX_COMMENT_CHARS`].
fn within_bounds(mut stored: Vec<StoredSilence>) -> Vec<StoredSilence> {
    use super::silence::{MAX_API_SILENCES, MAX_COMMENT_CHARS};
    if stored.len() > MAX_API_SILENCES {
        stored.sort_by_key(|silence| std::cmp::Reverse(silence.created_at));
        stored.truncate(MAX_API_SILENCES);
    }
    for silence in &mut stored {
        if let Some((cut, _)) = silence.comment.char_indices().nth(MAX_COMMENT_CHARS) {
            silence.comment.truncate(cut);
            silence.comment.push('…');
        }
    }
    stored
}

/// Folds one delivery report into a notifier's health: a success clears the failure (and its
/// permanence), a failure says how it failed and when the next attempt is due.
fn record(stats: &mut NotifierStats, report: DeliveryReport) {
    *stats.results.entry(report.result).or_default() += 1;
    if let Some(depth) = report.depth {
        stats.outbox_depth = depth;
    }
    match report.result {
        DeliveryResult::Delivered => {
            stats.last_error = None;
            stats.failing = None;
            stats.next_attempt_at = None;
            stats.last_success_at = Some(report.at);
        }
        DeliveryResult::Failed => {
            stats.last_error = report.error;
            stats.failing = report.permanence;
            stats.next_attempt_at = report.retry_at;
        }
        // Given up on one notification: the loop goes on to the next one at once, so how the
        // notifier fails is still what its last attempt said.
        DeliveryResult::Expired => {
            stats.last_error = report.error;
            stats.next_attempt_at = None;
        }
    }
}

fn silence_from_stored(stored: StoredSilence) -> Silence {
    Silence {
        id: stored.id,
        origin: Origin::Api {
            created_by: stored.created_by,
            created_at: stored.created_at,
        },
        matchers: Matchers {
            alerts: stored.alerts.into_iter().map(Glob::new).collect(),
            labels: stored
                .labels
                .into_iter()
                .map(|(name, pattern)| (name, Glob::new(pattern)))
                .collect(),
        },
        schedule: Schedule::Once {
            start: stored.starts_at,
            end: stored.ends_at,
        },
        comment: stored.comment,
    }
}

fn stored_by(silence: &Silence) -> String {
    match &silence.origin {
        Origin::Api { created_by, .. } => created_by.clone(),
        Origin::Maintenance => String::new(),
    }
}

fn stored_from_silence(silence: &Silence) -> StoredSilence {
    let (created_by, created_at) = match &silence.origin {
        Origin::Api {
            created_by,
            created_at,
        } => (created_by.clone(), *created_at),
        Origin::Maintenance => (String::new(), Timestamp::UNIX_EPOCH),
    };
    let (starts_at, ends_at) = match &silence.schedule {
        Schedule::Once { start, end } => (*start, *end),
        Schedule::Weekly(_) => (Timestamp::UNIX_EPOCH, Timestamp::UNIX_EPOCH),
    };
    StoredSilence {
        id: silence.id.clone(),
        alerts: silence.matchers.alert_patterns(),
        labels: silence.matchers.label_patterns(),
        starts_at,
        ends_at,
        comment: silence.comment.clone(),
        created_by,
        created_at,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::Permanence;
    use crate::notify::NotifyError;

    /// A permanent failure shows as such with its next attempt; a later success clears the
    /// failure, its permanence and the next attempt.
    #[test]
    fn a_success_clears_a_permanent_failure() {
        let mut stats = NotifierStats::new("hook", "webhook");
        let refused = NotifyError::status("https://hooks.example/…", 401, "bad token");
        let failed = DeliveryReport::failed("hook", &refused, Some(Duration::from_secs(300)));
        let due = failed.retry_at;
        record(&mut stats, failed);
        assert_eq!(stats.failing, Some(Permanence::Permanent));
        assert_eq!(stats.next_attempt_at, due);
        assert_eq!(
            stats.last_error.as_deref(),
            Some("https://hooks.example/…: HTTP 401: bad token")
        );
        let down = NotifyError::status("https://hooks.example/…", 503, "");
        record(&mut stats, DeliveryReport::failed("hook", &down, None));
        assert_eq!(stats.failing, Some(Permanence::Temporary));

        record(&mut stats, DeliveryReport::delivered("hook", Some(0)));
        assert_eq!(stats.failing, None);
        assert_eq!(stats.next_attempt_at, None);
        assert_eq!(stats.last_error, None);
        assert!(stats.last_success_at.is_some());
        assert_eq!(stats.results[&DeliveryResult::Failed], 2);
    }
}
