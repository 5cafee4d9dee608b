//! The alerting parts of the page from hand-made `/status` documents: what each card says about
//! notification, failing notifiers at the top, resolved alerts, silences.

use std::collections::BTreeMap;

use crate::server::page::render;
use crate::server::page::tests::{assert_in_order, diagnosis, probe, section, status};
use crate::server::status::{
    AlertStatus, DiagnosisStatus, NotifierStatus, SilenceStatus, Status, WeeklyStatus,
};

/// The alert of a diagnosis, firing and notified through `hook` three minutes ago.
fn alert_of(diagnosis: &DiagnosisStatus) -> AlertStatus {
    AlertStatus {
        id: diagnosis.id.clone(),
        title: diagnosis.title.clone(),
        state: "firing",
        severity: diagnosis.severity,
        since: diagnosis.since.clone(),
        fired_at: Some("2025-06-01T11:56:50Z".to_owned()),
        resolved_at: None,
        silenced_by: Vec::new(),
        inhibited_by: diagnosis.inhibited_by.clone(),
        last_notified: Some("2025-06-01T11:57:00Z".to_owned()),
        notified: vec!["hook".to_owned()],
        queued: false,
        summary: diagnosis.summary.clone(),
        recovery: diagnosis.recovery.clone(),
        runbook: diagnosis.runbook.clone(),
        evidence: diagnosis.probes.clone(),
        labels: diagnosis.labels.clone(),
        note: None,
    }
}

fn notifier(name: &str, kind: &'static str) -> NotifierStatus {
    NotifierStatus {
        name: name.to_owned(),
        kind,
        outbox_depth: 0,
        delivered: 4,
        failed: 0,
        expired: 0,
        last_error: None,
        failing: None,
        next_attempt_at: None,
        last_success_at: Some("2025-06-01T11:57:01Z".to_owned()),
    }
}

/// `hook` delivers; `mail` has never delivered and fails with a 535, permanently, retried in
/// 4m 30s (the document is from 12:00:00).
fn failing_mail() -> NotifierStatus {
    NotifierStatus {
        outbox_depth: 2,
        delivered: 0,
        failed: 7,
        last_error: Some(
            "smtp 127.0.0.1:465: permanent error (535): 5.7.8 <Authentication> failed".to_owned(),
        ),
        failing: Some("permanent"),
        next_attempt_at: Some("2025-06-01T12:04:30Z".to_owned()),
        last_success_at: None,
        ..notifier("mail", "email")
    }
}

/// `hook` fails for now (its receiver answers 503), retried in 12 s.
fn hook_down() -> NotifierStatus {
    NotifierStatus {
        outbox_depth: 1,
        failed: 2,
        last_error: Some("http://127.0.0.1:9/…: HTTP 503".to_owned()),
        failing: Some("temporary"),
        next_attempt_at: Some("2025-06-01T12:00:12Z".to_owned()),
        ..notifier("hook", "webhook")
    }
}

fn silence(id: &str, state: &'static str) -> SilenceStatus {
    SilenceStatus {
        id: id.to_owned(),
        source: "maintenance",
        state,
        starts_at: Some("2025-06-01T11:00:00Z".to_owned()),
        ends_at: "2025-06-01T13:00:00Z".to_owned(),
        alerts: vec!["neon-*".to_owned()],
        matchers: BTreeMap::new(),
        weekly: None,
        comment: String::new(),
        created_by: None,
        created_at: None,
    }
}

/// A document with one active critical diagnosis, its alert adjusted by `change`, and a
/// `hook` webhook.
fn one_alert(change: impl FnOnce(&mut AlertStatus)) -> Status {
    let root = diagnosis("neon-down", "critical", "active");
    let mut alert = alert_of(&root);
    change(&mut alert);
    let mut document = status(vec![root], vec![probe("db", Some(false), "refused")]);
    document.alerts.push(alert);
    document.notifiers.push(notifier("hook", "webhook"));
    document
}

/// The "notified" line of the card (or list item) of failure mode `id`.
fn notified_line(html: &str, id: &str) -> String {
    let card = section(html, &format!("id=\"d-{id}\""), "<h4>Evidence");
    section(card, "<p class=\"notified\">", "</p>").to_owned()
}

/// A notified alert says when and through which notifiers, each linked to its health.
#[test]
fn a_notified_alert_says_when_and_through_what() {
    let html = render(&one_alert(|_| {}));
    assert_eq!(
        notified_line(&html, "neon-down"),
        "<p class=\"notified\"><span class=\"badge ok\"><span aria-hidden=\"true\">✔</span> \
         Notified</span> <time datetime=\"2025-06-01T11:57:00Z\" \
         title=\"2025-06-01 11:57:00 UTC\">3m ago</time> via <a href=\"#n-hook\">hook</a>."
    );
}

/// An alert handed to a notifier that fails to deliver does not read as notified: the card
/// says delivery fails and on-call may not have it; the notifiers' section moves above the
/// diagnoses, names the error (escaped) and what waits; the header counts it.
#[test]
fn a_failing_notifier_is_at_the_top_and_on_the_cards_it_fails() {
    let mut document = one_alert(|alert| alert.notified.push("mail".to_owned()));
    document.notifiers.push(failing_mail());
    let html = render(&document);

    let line = notified_line(&html, "neon-down");
    assert!(
        line.contains("</span> Delivery failing</span> notified "),
        "{line}"
    );
    assert!(
        line.contains(
            "via <a href=\"#n-hook\">hook</a>, <a href=\"#n-mail\">mail</a>, but \
             <a href=\"#n-mail\">mail</a> cannot deliver: on-call may not have it."
        ),
        "{line}"
    );
    let notifiers = html.find("<section id=\"notifiers\"").unwrap();
    let diagnoses = html.find("<section id=\"diagnoses\"").unwrap();
    assert!(notifiers < diagnoses, "failing notifiers come first");
    let section = section(&html, "<section id=\"notifiers\"", "</section>");
    assert!(
        section.contains("<h2 id=\"notifiers-title\">Notifications are failing</h2>"),
        "{section}"
    );
    assert!(
        section.contains(
            "<p>1 of 2 notifier(s) cannot deliver: what they should send waits in the outbox \
             and is retried, and on-call may not have been told. 1 of them fail permanently: \
             the receiver refuses what honeyguide sends, so this alert path stays broken until \
             someone fixes the notifier.</p>"
        ),
        "{section}"
    );
    let mail = section.find("id=\"n-mail\"").unwrap();
    let hook = section.find("id=\"n-hook\"").unwrap();
    assert!(mail < hook, "the failing one first: {section}");
    assert!(
        section.contains(
            "<li id=\"n-mail\" class=\"fail\"><span class=\"badge fail\"><span \
             aria-hidden=\"true\">✖</span> Failing permanently</span> \
             <strong>mail</strong> <span class=\"quiet\">(email)</span>: <span class=\"message\">\
             smtp 127.0.0.1:465: permanent error (535): 5.7.8 &lt;Authentication&gt; failed\
             </span> The receiver refuses: this will not pass by itself. Fix the notifier's \
             credentials, URL or addresses; until then it is retried every 5m, next in \
             <time datetime=\"2025-06-01T12:04:30Z\">4m 30s</time>. \
             <span class=\"quiet counts\">2 waiting · never delivered · 0 delivered, \
             7 failed attempt(s), 0 given up</span>"
        ),
        "{section}"
    );
    assert!(
        html.contains("<a href=\"#notifiers\">1 notifier(s) failing</a>"),
        "{html}"
    );
}

/// With nothing else wrong, a failing notifier is the verdict: the page must not say "all
/// clear" while alerts cannot go out.
#[test]
fn a_failing_notifier_is_the_verdict_when_nothing_else_is_wrong() {
    let mut document = status(Vec::new(), vec![probe("a", Some(true), "ok")]);
    document.notifiers.push(failing_mail());
    let html = render(&document);
    assert!(
        html.contains("<title>Warning: notifications through mail failing · honeyguide</title>"),
        "{html}"
    );
}

/// A temporary failure reads as one that may pass: "Failing", retried with backoff, when.
#[test]
fn a_temporary_failure_says_it_is_retried_soon() {
    let mut document = one_alert(|_| {});
    document.notifiers[0] = hook_down();
    let html = render(&document);
    let section = section(&html, "<section id=\"notifiers\"", "</section>");
    assert!(
        section.contains(
            "</span> Failing</span> <strong>hook</strong> <span class=\"quiet\">(webhook)</span>: \
             <span class=\"message\">http://127.0.0.1:9/…: HTTP 503</span> It is retried with \
             backoff, next in <time datetime=\"2025-06-01T12:00:12Z\">12s</time>. "
        ),
        "{section}"
    );
    assert!(!section.contains("permanently"), "{section}");
}

/// When the notifiers are healthy they are listed at the end, after the silences.
#[test]
fn healthy_notifiers_are_listed_last() {
    let html = render(&one_alert(|_| {}));
    let silences = html.find("<section id=\"silences\"").unwrap();
    let notifiers = html.find("<section id=\"notifiers\" class=\"\"").unwrap();
    assert!(silences < notifiers);
    let section = section(&html, "<section id=\"notifiers\"", "</section>");
    assert!(
        section.contains(
            "<li id=\"n-hook\" class=\"ok\"><span class=\"badge ok\"><span aria-hidden=\"true\">\
             ✔</span> OK</span> <strong>hook</strong> <span class=\"quiet\">(webhook)</span> \
             <span class=\"quiet counts\">last delivered <time"
        ),
        "{section}"
    );
}

/// Each reason an alert is not notified is said in words: silenced (naming the silence, and
/// that it was notified before), inhibited (naming the cause), pending, waiting for its group,
/// no notifier taking it, no notifier at all.
#[test]
fn every_reason_for_not_notifying_is_said() {
    let silenced = render(&one_alert(|alert| {
        alert.silenced_by = vec!["db-upgrade".to_owned()];
    }));
    assert!(
        notified_line(&silenced, "neon-down").contains(
            "Not notified</span> silenced by <a href=\"#s-db-upgrade\">db-upgrade</a>. \
             Notified before it was held: <time"
        ),
        "{silenced}"
    );

    // The classifier confirmed it, the alert engine has not caught up yet.
    let catching_up = render(&one_alert(|alert| {
        alert.state = "pending";
        alert.last_notified = None;
        alert.notified.clear();
    }));
    assert!(
        notified_line(&catching_up, "neon-down")
            .contains("Not notified yet</span> pending: on-call is notified once it is confirmed."),
        "{catching_up}"
    );

    let mut confirming = status(
        vec![diagnosis("neon-down", "critical", "pending")],
        Vec::new(),
    );
    let mut alert = alert_of(&confirming.diagnoses[0]);
    alert.state = "pending";
    alert.last_notified = None;
    alert.notified.clear();
    confirming.alerts.push(alert);
    assert!(
        notified_line(&render(&confirming), "neon-down")
            .contains("Not notified yet</span> pending: on-call is notified once it is confirmed.")
    );

    let queued = render(&one_alert(|alert| {
        alert.last_notified = None;
        alert.notified.clear();
        alert.queued = true;
    }));
    assert!(
        notified_line(&queued, "neon-down")
            .contains("Notifying</span> goes out with its group in a moment."),
        "{queued}"
    );

    let unrouted = render(&one_alert(|alert| {
        alert.last_notified = None;
        alert.notified.clear();
    }));
    assert!(
        notified_line(&unrouted, "neon-down").contains(
            "Not notified</span> no <a href=\"#notifiers\">notifier</a> takes it (their \
             severities and alert patterns leave it out)."
        ),
        "{unrouted}"
    );

    let mut nobody = one_alert(|alert| {
        alert.last_notified = None;
        alert.notified.clear();
    });
    nobody.notifiers = vec![notifier("deadman", "heartbeat")];
    assert!(
        notified_line(&render(&nobody), "neon-down")
            .contains("Not notified</span> no notifier is configured."),
        "a heartbeat takes no alerts"
    );
}

/// A firing alert without a diagnosis (its rule cannot be evaluated now, or a scripted feed)
/// still gets a card, and counts for the verdict; an alert it inhibits sits under it, saying
/// who inhibits it.
#[test]
fn open_alerts_without_a_diagnosis_get_cards() {
    let cause = diagnosis("cf-global", "critical", "active");
    let mut edge = diagnosis("edge-5xx", "warning", "active");
    edge.inhibited_by = Some("cf-global".to_owned());
    let mut document = status(Vec::new(), Vec::new());
    document.alerts = vec![alert_of(&cause), alert_of(&edge)];
    document.alerts[1].notified.clear();
    document.alerts[1].last_notified = None;
    document.notifiers.push(notifier("hook", "webhook"));
    let html = render(&document);

    assert!(
        html.contains("<title>Critical: cf-global title · honeyguide</title>"),
        "{html}"
    );
    assert_eq!(html.matches("<article").count(), 1, "{html}");
    let card = section(&html, "<article", "</article>");
    let explained = section(card, "<li id=\"d-edge-5xx\">", "</li>");
    assert!(
        explained.contains(
            "Not notified</span> inhibited by <a href=\"#d-cf-global\">cf-global</a>, which \
             explains it."
        ),
        "{explained}"
    );
}

/// Resolved alerts are listed newest first with how long they lasted and whether on-call heard
/// of them (or still has a resolve coming).
#[test]
fn resolved_alerts_say_how_long_and_whether_on_call_heard() {
    let mut document = status(Vec::new(), Vec::new());
    let resolved = |id: &str, at: &str, notified: &[&str], ever: bool| AlertStatus {
        state: "resolved",
        resolved_at: Some(at.to_owned()),
        notified: notified.iter().map(|name| (*name).to_owned()).collect(),
        last_notified: ever.then(|| "2025-06-01T11:00:00Z".to_owned()),
        ..alert_of(&diagnosis(id, "warning", "active"))
    };
    document.alerts = vec![
        resolved("old", "2025-06-01T11:58:00Z", &[], true),
        resolved("new", "2025-06-01T11:59:30Z", &["hook"], true),
        resolved("quiet", "2025-06-01T11:57:48Z", &[], false),
    ];
    let html = render(&document);
    let list = section(&html, "<section id=\"resolved\"", "</section>");
    assert_in_order(list, &["d-new", "d-old", "d-quiet"]);
    assert!(
        list.contains(
            "resolved <time datetime=\"2025-06-01T11:59:30Z\" title=\"2025-06-01 11:59:30 UTC\">\
             30s ago</time> after 2m 42s; the resolve is still to go out via \
             <a href=\"#n-hook\">hook</a>"
        ),
        "{list}"
    );
    assert!(
        list.contains("after 1m 12s; on-call was notified"),
        "{list}"
    );
    assert!(
        list.contains("after 1m; on-call was never notified"),
        "{list}"
    );
    assert!(
        !html.contains("<article"),
        "resolved alerts are not cards: {html}"
    );
}

/// Without resolved alerts there is no such section.
#[test]
fn no_resolved_section_without_resolved_alerts() {
    let html = render(&one_alert(|_| {}));
    assert!(!html.contains("id=\"resolved\""), "{html}");
}

/// Silences: those in force first, what they cover in words, when, what they hold back now,
/// why and by whom, all escaped; an active one is counted in the header.
#[test]
fn silences_are_listed_with_what_they_hold_back() {
    let mut document = one_alert(|alert| alert.silenced_by = vec!["db-upgrade".to_owned()]);
    let mut weekly = silence("nightly", "pending");
    weekly.alerts.clear();
    weekly.matchers = BTreeMap::from([("layer".to_owned(), "db".to_owned())]);
    weekly.weekly = Some(WeeklyStatus {
        days: vec!["mon", "tue"],
        start: "02:00".to_owned(),
        end: "04:00".to_owned(),
        timezone: "Europe/Berlin".to_owned(),
    });
    let mut upgrade = silence("db-upgrade", "active");
    upgrade.source = "api";
    upgrade.comment = "Neon <major> upgrade".to_owned();
    upgrade.created_by = Some("ana".to_owned());
    document.silences = vec![silence("gone", "expired"), weekly, upgrade];
    let html = render(&document);

    assert!(
        html.contains("<a href=\"#silences\">1 silence(s) active</a>"),
        "{html}"
    );
    let list = section(&html, "<section id=\"silences\"", "</section>");
    assert_in_order(list, &["s-db-upgrade", "s-nightly", "s-gone"]);
    assert!(
        list.contains(
            "<strong>db-upgrade</strong> <span class=\"quiet\">(api)</span>: covers \
             <code>neon-*</code>; until <time datetime=\"2025-06-01T13:00:00Z\">2025-06-01 \
             13:00:00 UTC</time> · holding back <a href=\"#d-neon-down\">neon-down</a> · \
             Neon &lt;major&gt; upgrade · by ana</li>"
        ),
        "{list}"
    );
    assert!(
        list.contains(
            "covers every alert with <code>layer=db</code>; every mon, tue 02:00–04:00 \
             (Europe/Berlin); from <time"
        ),
        "{list}"
    );
    assert!(
        list.contains("Expired</span> <strong>gone</strong>"),
        "{list}"
    );
    assert!(list.contains("; ended <time"), "{list}");
}

/// Names that end up in attributes and links (notifier names, silence ids) are escaped too.
#[test]
fn names_from_config_and_the_api_are_escaped() {
    let hostile = "x\"><script>alert(1)</script>";
    let mut document = one_alert(|alert| {
        alert.silenced_by = vec![hostile.to_owned()];
        alert.notified = vec![hostile.to_owned()];
    });
    let mut window = silence(hostile, "active");
    window.comment = hostile.to_owned();
    document.silences.push(window);
    let mut broken = failing_mail();
    broken.name = hostile.to_owned();
    broken.last_error = Some(hostile.to_owned());
    document.notifiers.push(broken);
    let html = render(&document);
    assert_eq!(
        html.matches("<script").count(),
        1,
        "only the page's own script"
    );
    assert!(!html.contains("x\">"), "{html}");
}
