//! What alerting adds to the page: the failure modes as cards (from the diagnoses and the
//! alerts still open without one), whether on-call was notified of each or why not, what
//! resolved lately, the silences and the notifiers' health.
//!
//! "Notified" means the alert went into a notifier's outbox; whether it arrived depends on that
//! notifier, so a card notified through a failing notifier says so, and the notifiers' section
//! names the error, whether it will pass by itself (temporary) or the receiver refuses until
//! someone fixes the notifier (permanent), and when it is tried again.

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};

use jiff::Timestamp;

use super::{Page, TimeStyle, badge, class, parse_time, severity_rank};
use crate::alert::Permanence;
use crate::html::escape;
use crate::human;
use crate::notify::NotifierKind;
use crate::notify::dispatch::BACKOFF_MAX;
use crate::server::status::{AlertStatus, EvidenceStatus, NotifierStatus, SilenceStatus, Status};

/// A failure mode as the page shows it: from the classifier's diagnosis when there is one, else
/// from its alert (a firing alert stays open while its rule cannot be evaluated, and a daemon
/// fed scripted diagnoses has alerts only), with the alert that says how it was notified.
pub(super) struct Card<'a> {
    pub(super) id: &'a str,
    pub(super) title: &'a str,
    pub(super) severity: &'static str,
    /// `active` or `pending`.
    pub(super) state: &'static str,
    pub(super) since: &'a str,
    pub(super) evidence: &'a [EvidenceStatus],
    pub(super) summary: &'a str,
    pub(super) recovery: &'a str,
    pub(super) runbook: &'a str,
    pub(super) inhibited_by: Option<&'a str>,
    pub(super) labels: &'a BTreeMap<String, String>,
    pub(super) alert: Option<&'a AlertStatus>,
}

impl<'a> Card<'a> {
    /// Every diagnosis, and every alert still open without one; root causes first, then active
    /// before pending, by severity (the diagnoses' own order where those agree).
    pub(super) fn all(status: &'a Status) -> Vec<Self> {
        let alerts: BTreeMap<&str, &AlertStatus> = status
            .alerts
            .iter()
            .map(|alert| (alert.id.as_str(), alert))
            .collect();
        let mut cards: Vec<Card> = status
            .diagnoses
            .iter()
            .map(|diagnosis| {
                let alert = alerts.get(diagnosis.id.as_str()).copied();
                Card {
                    id: &diagnosis.id,
                    title: &diagnosis.title,
                    severity: diagnosis.severity,
                    // After a restart the rule's `for` starts over, but the alert keeps firing.
                    state: if diagnosis.state == "active" || alert.is_some_and(is_firing) {
                        "active"
                    } else {
                        "pending"
                    },
                    since: &diagnosis.since,
                    evidence: &diagnosis.probes,
                    summary: &diagnosis.summary,
                    recovery: &diagnosis.recovery,
                    runbook: diagnosis.runbook.as_deref().unwrap_or_default(),
                    inhibited_by: diagnosis.inhibited_by.as_deref(),
                    labels: &diagnosis.labels,
                    alert,
                }
            })
            .collect();
        let diagnosed: Vec<&str> = cards.iter().map(|card| card.id).collect();
        let undiagnosed = status
            .alerts
            .iter()
            .filter(|alert| alert.state != "resolved" && !diagnosed.contains(&alert.id.as_str()));
        cards.extend(undiagnosed.map(|alert| Card {
            id: &alert.id,
            title: &alert.title,
            severity: alert.severity,
            state: if is_firing(alert) {
                "active"
            } else {
                "pending"
            },
            since: &alert.since,
            evidence: &alert.evidence,
            summary: &alert.summary,
            recovery: &alert.recovery,
            runbook: alert.runbook.as_deref().unwrap_or_default(),
            inhibited_by: alert.inhibited_by.as_deref(),
            labels: &alert.labels,
            alert: Some(alert),
        }));
        cards.sort_by_key(|card| {
            (
                card.inhibited_by.is_some(),
                card.state != "active",
                severity_rank(card.severity),
            )
        });
        cards
    }
}

fn is_firing(alert: &AlertStatus) -> bool {
    alert.state == "firing"
}

/// Whether on-call was notified of a failure mode, or why not.
enum Notice<'a> {
    /// A silence or an inhibition holds it back.
    Held {
        silenced_by: &'a [String],
        inhibited_by: Option<&'a str>,
        earlier: Option<&'a AlertStatus>,
    },
    /// Not confirmed yet: notified once it is.
    Pending,
    /// In the outbox of these notifiers; `failing` are those failing to deliver.
    Notified {
        alert: &'a AlertStatus,
        failing: Vec<&'a str>,
    },
    /// Waiting in the batch: goes out within `group_wait`.
    Sending,
    /// No notifier that takes alerts is configured.
    NoNotifier,
    /// Notifiers exist, but none takes this alert (severities, alert patterns).
    NotRouted,
}

impl Page<'_> {
    /// Notifiers failing to deliver now, in config order.
    pub(super) fn failing_notifiers(&self) -> impl Iterator<Item = &NotifierStatus> {
        self.status
            .notifiers
            .iter()
            .filter(|notifier| notifier.last_error.is_some())
    }

    fn notice<'c>(&'c self, card: &Card<'c>) -> Option<Notice<'c>> {
        let alert = card.alert;
        let silenced_by = alert.map_or(&[][..], |alert| &alert.silenced_by[..]);
        let inhibited_by = card
            .inhibited_by
            .or_else(|| alert.and_then(|alert| alert.inhibited_by.as_deref()));
        if !silenced_by.is_empty() || inhibited_by.is_some() {
            return Some(Notice::Held {
                silenced_by,
                inhibited_by,
                earlier: alert.filter(|alert| alert.last_notified.is_some()),
            });
        }
        if card.state == "pending" || alert.is_some_and(|alert| alert.state == "pending") {
            return Some(Notice::Pending);
        }
        // Until the alert task reports, there is nothing to say.
        let alert = alert?;
        if alert.last_notified.is_some() && !alert.notified.is_empty() {
            let failing = alert
                .notified
                .iter()
                .filter(|name| {
                    self.failing_notifiers()
                        .any(|notifier| &notifier.name == *name)
                })
                .map(String::as_str)
                .collect();
            return Some(Notice::Notified { alert, failing });
        }
        if alert.queued {
            return Some(Notice::Sending);
        }
        let takes_alerts =
            |notifier: &NotifierStatus| notifier.kind != NotifierKind::Heartbeat.as_str();
        if self.status.notifiers.iter().any(takes_alerts) {
            Some(Notice::NotRouted)
        } else {
            Some(Notice::NoNotifier)
        }
    }

    /// One line on a card: notified (and whether delivery fails), or why not.
    pub(super) fn write_notified(&self, out: &mut String, card: &Card) -> fmt::Result {
        let Some(notice) = self.notice(card) else {
            return Ok(());
        };
        out.push_str("<p class=\"notified\">");
        match notice {
            Notice::Held {
                silenced_by,
                inhibited_by,
                earlier,
            } => {
                let held = if silenced_by.is_empty() {
                    "quiet"
                } else {
                    "silenced"
                };
                write!(out, "{} ", badge(held, "Not notified"))?;
                if !silenced_by.is_empty() {
                    out.push_str("silenced by ");
                    write_links(out, "s", silenced_by.iter().map(String::as_str))?;
                }
                if let Some(cause) = inhibited_by {
                    if !silenced_by.is_empty() {
                        out.push_str(" and ");
                    }
                    out.push_str("inhibited by ");
                    write_links(out, "d", [cause])?;
                    out.push_str(", which explains it");
                }
                out.push('.');
                if let Some(alert) = earlier {
                    out.push_str(" Notified before it was held: ");
                    self.write_when_and_how(out, alert)?;
                    out.push('.');
                }
            }
            Notice::Pending => write!(
                out,
                "{} pending: on-call is notified once it is confirmed.",
                badge("pending", "Not notified yet")
            )?,
            Notice::Notified { alert, failing } if failing.is_empty() => {
                write!(out, "{} ", badge("ok", "Notified"))?;
                self.write_when_and_how(out, alert)?;
                out.push('.');
            }
            Notice::Notified { alert, failing } => {
                write!(out, "{} notified ", badge("fail", "Delivery failing"))?;
                self.write_when_and_how(out, alert)?;
                out.push_str(", but ");
                write_links(out, "n", failing.iter().copied())?;
                out.push_str(" cannot deliver: on-call may not have it.");
            }
            Notice::Sending => write!(
                out,
                "{} goes out with its group in a moment.",
                badge("pending", "Notifying")
            )?,
            Notice::NoNotifier => write!(
                out,
                "{} no notifier is configured.",
                badge("warning", "Not notified")
            )?,
            Notice::NotRouted => write!(
                out,
                "{} no <a href=\"#notifiers\">notifier</a> takes it (their severities and \
                 alert patterns leave it out).",
                badge("warning", "Not notified")
            )?,
        }
        out.push_str("</p>");
        Ok(())
    }

    /// `3m ago via hook, mail`
    fn write_when_and_how(&self, out: &mut String, alert: &AlertStatus) -> fmt::Result {
        if let Some(at) = &alert.last_notified {
            write!(out, "{} ", self.time(at, TimeStyle::Relative))?;
        }
        if !alert.notified.is_empty() {
            out.push_str("via ");
            write_links(out, "n", alert.notified.iter().map(String::as_str))?;
        }
        Ok(())
    }

    // --- resolved ---

    /// Alerts that resolved lately (kept for `keep_resolved`), newest first, and whether
    /// on-call heard of them. Nothing when there are none.
    pub(super) fn write_resolved(&self, out: &mut String) -> fmt::Result {
        let mut resolved: Vec<(&AlertStatus, Option<Timestamp>)> = self
            .status
            .alerts
            .iter()
            .filter(|alert| alert.state == "resolved")
            .map(|alert| (alert, alert.resolved_at.as_deref().and_then(parse_time)))
            .collect();
        if resolved.is_empty() {
            return Ok(());
        }
        resolved.sort_by_key(|(_, at)| std::cmp::Reverse(*at));
        out.push_str(
            "<section id=\"resolved\" aria-labelledby=\"resolved-title\">\
             <h2 id=\"resolved-title\">Resolved lately</h2><ul class=\"resolved\">",
        );
        for (alert, resolved_at) in resolved {
            write!(
                out,
                "<li id=\"d-{}\">{} <strong>{}</strong> <span class=\"quiet\">",
                escape(&alert.id),
                badge("ok", "Resolved"),
                escape(&alert.title),
            )?;
            if let Some(at) = &alert.resolved_at {
                write!(out, "resolved {}", self.time(at, TimeStyle::Relative))?;
            }
            if let (Some(end), Some(start)) = (resolved_at, parse_time(&alert.since)) {
                write!(out, " after {}", human::duration(end.duration_since(start)))?;
            }
            if !alert.notified.is_empty() {
                out.push_str("; the resolve is still to go out via ");
                write_links(out, "n", alert.notified.iter().map(String::as_str))?;
            } else if alert.last_notified.is_some() {
                out.push_str("; on-call was notified");
            } else {
                out.push_str("; on-call was never notified");
            }
            out.push_str("</span></li>");
        }
        out.push_str("</ul></section>");
        Ok(())
    }

    // --- silences ---

    /// Every silence and maintenance window: those in force first, with what they hold back.
    pub(super) fn write_silences(&self, out: &mut String) -> fmt::Result {
        out.push_str(
            "<section id=\"silences\" aria-labelledby=\"silences-title\">\
             <h2 id=\"silences-title\">Silences and maintenance windows</h2>",
        );
        let mut silences: Vec<&SilenceStatus> = self.status.silences.iter().collect();
        if silences.is_empty() {
            out.push_str("<p class=\"none\">None.</p></section>");
            return Ok(());
        }
        silences.sort_by_key(|silence| match silence.state {
            "active" => 0,
            "pending" => 1,
            _ => 2,
        });
        out.push_str("<ul class=\"silences\">");
        for silence in silences {
            self.write_silence(out, silence)?;
        }
        out.push_str("</ul></section>");
        Ok(())
    }

    fn write_silence(&self, out: &mut String, silence: &SilenceStatus) -> fmt::Result {
        let state = match silence.state {
            "active" => badge("silenced", "Active"),
            "pending" => badge("pending", "Scheduled"),
            _ => badge("quiet", "Expired"),
        };
        write!(
            out,
            "<li id=\"s-{id}\" class=\"{}\">{state} <strong>{id}</strong> \
             <span class=\"quiet\">({})</span>: covers ",
            class(silence.state),
            escape(silence.source),
            id = escape(&silence.id),
        )?;
        write_covers(out, silence)?;
        if let Some(weekly) = &silence.weekly {
            write!(
                out,
                "; every {} {}–{} ({})",
                escape(&weekly.days.join(", ")),
                escape(&weekly.start),
                escape(&weekly.end),
                escape(&weekly.timezone)
            )?;
        }
        match (silence.state, &silence.starts_at) {
            ("active", _) => write!(
                out,
                "; until {}",
                self.time(&silence.ends_at, TimeStyle::Absolute)
            )?,
            ("pending", Some(start)) => write!(
                out,
                "; from {} until {}",
                self.time(start, TimeStyle::Absolute),
                self.time(&silence.ends_at, TimeStyle::Absolute)
            )?,
            _ => write!(
                out,
                "; ended {}",
                self.time(&silence.ends_at, TimeStyle::Relative)
            )?,
        }
        let holding: Vec<&str> = self
            .status
            .alerts
            .iter()
            .filter(|alert| alert.silenced_by.contains(&silence.id))
            .map(|alert| alert.id.as_str())
            .collect();
        if !holding.is_empty() {
            out.push_str(" · holding back ");
            write_links(out, "d", holding)?;
        }
        if !silence.comment.is_empty() {
            write!(out, " · {}", escape(&silence.comment))?;
        }
        if let Some(by) = &silence.created_by {
            write!(out, " · by {}", escape(by))?;
        }
        out.push_str("</li>");
        Ok(())
    }

    // --- notifiers ---

    /// Each notifier's delivery health, failing ones first. Placed at the top of the page while
    /// one fails.
    pub(super) fn write_notifiers(&self, out: &mut String) -> fmt::Result {
        let notifiers = &self.status.notifiers;
        let failing = self.failing_notifiers().count();
        write!(
            out,
            "<section id=\"notifiers\" class=\"{}\" aria-labelledby=\"notifiers-title\">\
             <h2 id=\"notifiers-title\">{}</h2>",
            if failing > 0 { "alarm" } else { "" },
            if failing > 0 {
                "Notifications are failing"
            } else {
                "Notifiers"
            },
        )?;
        if notifiers.is_empty() {
            out.push_str(
                "<p class=\"none\">None configured: alerts are shown here, and nobody is \
                 notified.</p></section>",
            );
            return Ok(());
        }
        if failing > 0 {
            write!(
                out,
                "<p>{failing} of {} notifier(s) cannot deliver: what they should send waits in \
                 the outbox and is retried, and on-call may not have been told.",
                notifiers.len()
            )?;
            let permanent = self
                .failing_notifiers()
                .filter(|notifier| is_permanent(notifier))
                .count();
            if permanent > 0 {
                write!(
                    out,
                    " {permanent} of them fail permanently: the receiver refuses what honeyguide \
                     sends, so this alert path stays broken until someone fixes the notifier."
                )?;
            }
            out.push_str("</p>");
        }
        out.push_str("<ul class=\"notifiers\">");
        let (broken, fine): (Vec<&NotifierStatus>, Vec<&NotifierStatus>) = notifiers
            .iter()
            .partition(|notifier| notifier.last_error.is_some());
        for notifier in broken.into_iter().chain(fine) {
            self.write_notifier(out, notifier)?;
        }
        out.push_str("</ul></section>");
        Ok(())
    }

    fn write_notifier(&self, out: &mut String, notifier: &NotifierStatus) -> fmt::Result {
        let (state_class, state) = match (&notifier.last_error, &notifier.last_success_at) {
            (Some(_), _) if is_permanent(notifier) => {
                ("fail", badge("fail", "Failing permanently"))
            }
            (Some(_), _) => ("fail", badge("fail", "Failing")),
            (None, Some(_)) => ("ok", badge("ok", "OK")),
            (None, None) => ("quiet", badge("quiet", "Nothing sent yet")),
        };
        write!(
            out,
            "<li id=\"n-{name}\" class=\"{state_class}\">{state} <strong>{name}</strong> \
             <span class=\"quiet\">({})</span>",
            escape(notifier.kind),
            name = escape(&notifier.name),
        )?;
        if let Some(error) = &notifier.last_error {
            write!(out, ": <span class=\"message\">{}</span>", escape(error))?;
            self.write_retry(out, notifier)?;
        }
        out.push_str(" <span class=\"quiet counts\">");
        if notifier.outbox_depth > 0 {
            write!(out, "{} waiting · ", notifier.outbox_depth)?;
        }
        match &notifier.last_success_at {
            Some(at) => write!(out, "last delivered {}", self.time(at, TimeStyle::Relative))?,
            None => out.push_str("never delivered"),
        }
        write!(
            out,
            " · {} delivered, {} failed attempt(s), {} given up</span></li>",
            notifier.delivered, notifier.failed, notifier.expired
        )
    }

    /// What a failure means for on-call, and when it is tried again: a permanent one will not
    /// pass by itself.
    fn write_retry(&self, out: &mut String, notifier: &NotifierStatus) -> fmt::Result {
        let permanent = is_permanent(notifier);
        out.push_str(if permanent {
            " The receiver refuses: this will not pass by itself. Fix the notifier's \
             credentials, URL or addresses; until then it is"
        } else {
            " It is"
        });
        if notifier.kind == NotifierKind::Heartbeat.as_str() {
            out.push_str(" tried again at its next interval");
        } else if permanent {
            let every = human::duration(
                jiff::SignedDuration::try_from(BACKOFF_MAX).unwrap_or(jiff::SignedDuration::MAX),
            );
            write!(out, " retried every {every}")?;
        } else {
            out.push_str(" retried with backoff");
        }
        if let Some(at) = &notifier.next_attempt_at {
            let due = parse_time(at)
                .map(|due| human::duration(due.duration_since(self.now)))
                .unwrap_or_default();
            write!(
                out,
                ", next in <time datetime=\"{at}\">{due}</time>",
                at = escape(at)
            )?;
        }
        out.push('.');
        Ok(())
    }
}

fn is_permanent(notifier: &NotifierStatus) -> bool {
    notifier.failing == Some(Permanence::Permanent.as_str())
}

/// `names` as links to their entries on the page (`#{prefix}-{name}`), comma-separated.
fn write_links<'n>(
    out: &mut String,
    prefix: &str,
    names: impl IntoIterator<Item = &'n str>,
) -> fmt::Result {
    for (i, name) in names.into_iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        write!(
            out,
            "<a href=\"#{prefix}-{name}\">{name}</a>",
            name = escape(name)
        )?;
    }
    Ok(())
}

/// What a silence covers: alerts whose id matches one of its patterns (every alert without
/// any) and whose labels match all of its label patterns.
fn write_covers(out: &mut String, silence: &SilenceStatus) -> fmt::Result {
    if silence.alerts.is_empty() {
        out.push_str("every alert");
    }
    write_codes(out, silence.alerts.iter().map(String::as_str))?;
    if !silence.matchers.is_empty() {
        out.push_str(" with ");
        let labels: Vec<String> = silence
            .matchers
            .iter()
            .map(|(name, value)| format!("{name}={value}"))
            .collect();
        write_codes(out, labels.iter().map(String::as_str))?;
    }
    Ok(())
}

/// `texts` as `<code>`, comma-separated.
fn write_codes<'t>(out: &mut String, texts: impl IntoIterator<Item = &'t str>) -> fmt::Result {
    for (i, text) in texts.into_iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        write!(out, "<code>{}</code>", escape(text))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
