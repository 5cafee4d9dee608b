//! The page rendered from hand-made `/status` documents: escaping, order, and what each state
//! says in words.

use std::collections::BTreeMap;

use super::*;
use crate::server::status::{
    DiagnosisStatus, EvidenceStatus, HistoryStatus, ProbeStatus, ReloadStatusView, Status,
};

pub(super) const NOW: &str = "2025-06-01T12:00:00Z";

pub(super) fn status(diagnoses: Vec<DiagnosisStatus>, probes: Vec<ProbeStatus>) -> Status {
    Status {
        generated_at: NOW.to_owned(),
        started_at: "2025-06-01T09:00:00Z".to_owned(),
        vantage: "outside-fra".to_owned(),
        version: "0.1.0",
        diagnoses,
        probes,
        rules: Vec::new(),
        alerts: Vec::new(),
        silences: Vec::new(),
        notifiers: Vec::new(),
        reload: ReloadStatusView {
            successful: true,
            loaded_at: "2025-06-01T09:00:00Z".to_owned(),
            attempted_at: None,
            error: None,
            not_applied: Vec::new(),
            reloads: 0,
        },
        warnings: Vec::new(),
    }
}

pub(super) fn probe(name: &str, ok: Option<bool>, message: &str) -> ProbeStatus {
    ProbeStatus {
        name: name.to_owned(),
        kind: "http",
        target: format!("http://{name}.example/"),
        labels: BTreeMap::new(),
        interval_seconds: 30.0,
        timeout_seconds: 10.0,
        ok,
        error: (ok == Some(false)).then_some("connect"),
        message: ok.map(|_| message.to_owned()),
        duration_seconds: ok.map(|_| 0.042),
        checked_at: ok.map(|_| "2025-06-01T11:59:55Z".to_owned()),
        consecutive_failures: u64::from(ok == Some(false)) * 3,
        last_ok_at: None,
        uptime_24h: ok.map(|ok| if ok { 1.0 } else { 0.98765 }),
        phases: Vec::new(),
        observations: BTreeMap::new(),
        history: vec![
            HistoryStatus {
                ok: true,
                duration_seconds: 0.02,
                checked_at: "2025-06-01T11:59:25Z".to_owned(),
            },
            HistoryStatus {
                ok: ok.unwrap_or(true),
                duration_seconds: 0.042,
                checked_at: "2025-06-01T11:59:55Z".to_owned(),
            },
        ],
    }
}

pub(super) fn diagnosis(id: &str, severity: &'static str, state: &'static str) -> DiagnosisStatus {
    DiagnosisStatus {
        id: id.to_owned(),
        title: format!("{id} title"),
        severity,
        state,
        since: "2025-06-01T11:56:48Z".to_owned(),
        probes: vec![
            EvidenceStatus {
                probe: "origin-1".to_owned(),
                ok: true,
                message: "200 OK".to_owned(),
            },
            EvidenceStatus {
                probe: "origin-2".to_owned(),
                ok: false,
                message: "connection refused".to_owned(),
            },
        ],
        summary: format!("{id} symptom"),
        recovery: format!("1. Run `fix {id}`.\n2. Check again."),
        runbook: Some(format!("16-failure-modes.md#{id}")),
        inhibited_by: None,
        labels: BTreeMap::from([("component".to_owned(), "cluster".to_owned())]),
    }
}

/// Markup a target sends back (a message, a header, a banner) is shown as text everywhere the
/// page repeats it: the probe row, the evidence of a diagnosis, the tab title.
#[test]
fn markup_from_targets_is_escaped_everywhere() {
    let hostile = "<script>alert('x')</script><img src=x onerror=alert(1)>";
    let mut root = diagnosis("one-node-down", "warning", "active");
    root.probes[1].message = hostile.to_owned();
    root.title = format!("node {hostile}");
    let mut failing = probe("origin-2", Some(false), hostile);
    failing.target = format!("http://\"{hostile}");
    let html = render(&status(vec![root], vec![failing]));

    assert_eq!(
        html.matches("<script").count(),
        1,
        "only the page's own script"
    );
    assert!(!html.contains("<img"), "{html}");
    let escaped =
        "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;";
    // The tab title, the verdict, the diagnosis title, its evidence, the row's target and message.
    assert_eq!(html.matches(escaped).count(), 6, "{html}");
    assert!(html.contains(&format!("http://&quot;{escaped}")), "{html}");
}

/// A diagnosis shows its title, severity and state in words, since when (absolute and
/// relative), its failing evidence before the passing, and its recovery rendered from markdown.
#[test]
fn a_diagnosis_shows_evidence_and_rendered_recovery() {
    let html = render(&status(
        vec![diagnosis("one-node-down", "warning", "active")],
        vec![probe("origin-1", Some(true), "200 OK")],
    ));
    let article = section(&html, "<article", "</article>");
    assert!(article.contains("one-node-down title"), "{article}");
    assert!(article.contains("</span> Warning</span>"), "{article}");
    assert!(article.contains("</span> Active</span>"), "{article}");
    assert!(
        article.contains(
            "Since <time datetime=\"2025-06-01T11:56:48Z\">2025-06-01 11:56:48 UTC</time> \
             (3m 12s ago)"
        ),
        "{article}"
    );
    let failing = article.find("connection refused").unwrap();
    let passing = article.find("200 OK").unwrap();
    assert!(failing < passing, "failing evidence first");
    assert!(
        article.contains(
            "<div class=\"recovery\"><ol>\n<li>Run <code>fix one-node-down</code>.</li>\n\
             <li>Check again.</li>\n</ol>\n</div>"
        ),
        "{article}"
    );
    assert!(
        article.contains("Runbook: <code>16-failure-modes.md#one-node-down</code>"),
        "{article}"
    );
}

/// Raw HTML in a rule's recovery text is shown as text, not passed through.
#[test]
fn recovery_markdown_does_not_pass_raw_html() {
    let mut root = diagnosis("one-node-down", "warning", "active");
    root.recovery =
        "Restart it.\n\n<script>alert(1)</script>\n\n<a href=\"javascript:x\">x</a>".into();
    let html = render(&status(vec![root], Vec::new()));
    let recovery = section(&html, "<div class=\"recovery\">", "</div>");
    assert!(!recovery.contains("<script"), "{recovery}");
    assert!(!recovery.contains("<a "), "{recovery}");
    assert!(
        recovery.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{recovery}"
    );
}

/// Diagnoses explained by a root cause are listed inside its card, smaller, marked as not
/// notified, and not as cards of their own; the verdict names the worst active root cause.
#[test]
fn inhibited_diagnoses_sit_under_their_root_cause() {
    let root = diagnosis("two-nodes-down", "critical", "active");
    let mut explained = diagnosis("api-crashloop", "warning", "active");
    explained.inhibited_by = Some("two-nodes-down".to_owned());
    let pending = diagnosis("redis-down", "critical", "pending");
    let html = render(&status(vec![root, pending, explained], Vec::new()));

    assert_eq!(html.matches("<article").count(), 2, "{html}");
    let root_card = section(
        &html,
        "<article class=\"diagnosis critical active\"",
        "</article>",
    );
    let inner = section(root_card, "<div class=\"explained\">", "</ul></div>");
    assert!(inner.contains("Also explained by this"), "{inner}");
    assert!(
        inner.contains(
            "Not notified</span> inhibited by <a href=\"#d-two-nodes-down\">two-nodes-down</a>, \
             which explains it."
        ),
        "{inner}"
    );
    assert!(inner.contains("api-crashloop title"), "{inner}");
    assert!(inner.contains("active, since"), "{inner}");
    let verdict = section(&html, "<h1", "</h1>");
    assert!(verdict.contains("class=\"verdict critical\""), "{verdict}");
    assert!(
        verdict.contains("Critical</span> <span>two-nodes-down title (and 1 more)"),
        "{verdict}"
    );
    let pending_card = section(
        &html,
        "<article class=\"diagnosis critical pending\"",
        "</article>",
    );
    assert!(
        pending_card.contains("Pending, not yet confirmed"),
        "{pending_card}"
    );
}

/// Only pending diagnoses: the verdict says a failure mode is being confirmed.
#[test]
fn a_pending_diagnosis_is_confirming() {
    let html = render(&status(
        vec![diagnosis("one-node-down", "warning", "pending")],
        Vec::new(),
    ));
    assert!(
        html.contains("<title>Confirming: one-node-down title · honeyguide</title>"),
        "{html}"
    );
}

/// Without a diagnosis the verdict tells failing probes apart from all clear.
#[test]
fn the_verdict_without_diagnoses() {
    let failing = render(&status(
        Vec::new(),
        vec![
            probe("a", Some(true), "ok"),
            probe("b", Some(false), "refused"),
        ],
    ));
    assert!(
        failing.contains("<title>Failing: 1 of 2 probes failing; no known failure mode matches"),
        "{failing}"
    );
    assert!(
        failing.contains("No known failure mode is happening. 1 probe(s) failing"),
        "{failing}"
    );
    let clear = render(&status(Vec::new(), vec![probe("a", Some(true), "ok")]));
    assert!(
        clear.contains("<title>All clear: all 1 probes passing"),
        "{clear}"
    );
    let starting = render(&status(Vec::new(), vec![probe("a", None, "")]));
    assert!(
        starting.contains("<title>Starting: waiting for the first results"),
        "{starting}"
    );
}

/// Probe rows: failing first, the state in words, latency, uptime rounded down, the error class
/// and message, and a sparkline whose label says what the bars show.
#[test]
fn probe_rows_put_failures_first_and_say_everything_in_words() {
    let html = render(&status(
        Vec::new(),
        vec![
            probe("a-passing", Some(true), "200 OK"),
            probe("b-waiting", None, ""),
            probe("c-failing", Some(false), "connection refused"),
        ],
    ));
    let rows = section(&html, "<tbody>", "</tbody>");
    assert_in_order(rows, &["p-c-failing", "p-b-waiting", "p-a-passing"]);
    let failing = section(rows, "<tr id=\"p-c-failing\"", "</tr>");
    assert!(
        failing.contains("</span> Fail</span> <span class=\"quiet streak\">3 in a row</span>"),
        "{failing}"
    );
    assert!(
        failing.contains("<td data-label=\"Latency\">42 ms</td>"),
        "{failing}"
    );
    assert!(
        failing.contains("<td data-label=\"Uptime 24h\">98.76 %</td>"),
        "{failing}"
    );
    assert!(
        failing.contains("title=\"2025-06-01 11:59:55 UTC\">5s ago</time>"),
        "{failing}"
    );
    assert!(
        failing.contains(
            "<code class=\"class\">connect</code> <span class=\"message\">connection refused</span>"
        ),
        "{failing}"
    );
    assert!(
        failing.contains("aria-label=\"last 2 runs: 1 passed, 1 failed; slowest 42 ms\""),
        "{failing}"
    );
    assert!(
        failing.contains(
            "<path class=\"ok\" d=\"M0 10.5h4v9.5h-4z\"/><path class=\"fail\" d=\"M6 0.0h4v20.0h-4z\"/></svg>"
        ),
        "{failing}"
    );
    let waiting = section(rows, "<tr id=\"p-b-waiting\"", "</tr>");
    assert!(waiting.contains("No result"), "{waiting}");
    assert!(waiting.contains("not yet"), "{waiting}");
}

/// Past [`PASSING_ROWS`] passing probes, the rest are counted instead of listed; failing ones
/// are always listed, even at the end of the config.
#[test]
fn a_huge_config_lists_every_failure_but_not_every_passing_probe() {
    let mut probes: Vec<ProbeStatus> = (0..PASSING_ROWS + 7)
        .map(|i| probe(&format!("ok-{i}"), Some(true), "200 OK"))
        .collect();
    probes.push(probe("last-failing", Some(false), "refused"));
    let html = render(&status(Vec::new(), probes));
    let rows = section(&html, "<tbody>", "</tbody>");
    assert_eq!(rows.matches("<tr ").count(), PASSING_ROWS + 1);
    assert!(
        rows.starts_with("<tbody><tr id=\"p-last-failing\""),
        "{rows}"
    );
    assert!(
        html.contains("</table><p class=\"quiet\">7 more passing probes are not listed here"),
        "{html}"
    );
}

/// A result much older than the interval is flagged: the page would otherwise show stale data as
/// current.
#[test]
fn a_late_result_is_flagged() {
    let mut late = probe("late", Some(true), "200 OK");
    late.checked_at = Some("2025-06-01T11:58:00Z".to_owned());
    let html = render(&status(Vec::new(), vec![late]));
    assert!(
        html.contains("2m ago</time> <span class=\"badge warning\">"),
        "{html}"
    );
    assert!(html.contains("</span> Late</span>"), "{html}");
}

/// Rules that fail to evaluate are listed: their failure modes cannot be recognised.
#[test]
fn rules_failing_to_evaluate_are_listed() {
    let mut document = status(Vec::new(), Vec::new());
    document.rules.push(RuleEvaluationStatus {
        id: "typo".to_owned(),
        severity: "warning",
        status: "error",
        evaluations: 4,
        errors: 3,
        last_error: Some("no such key: <x>".to_owned()),
        last_error_at: Some("2025-06-01T11:59:59Z".to_owned()),
    });
    let html = render(&document);
    let rules = section(&html, "<section id=\"rules\"", "</section>");
    assert!(
        rules.contains("<code>typo</code>: no such key: &lt;x&gt; <span class=\"quiet\">(3 of 4 evaluations failed, last <time"),
        "{rules}"
    );
}

/// The policy names the hashes of exactly the style and script the page inlines.
#[test]
fn the_content_security_policy_allows_the_inline_style_and_script() {
    let html = render(&status(Vec::new(), Vec::new()));
    let policy = content_security_policy();
    let inline = |open: &str, close: &str| section(&html, open, close)[open.len()..].to_owned();
    let style = inline("<style>", "</style>");
    let script = inline("<script>", "</script>");
    assert!(
        policy.contains(&format!("style-src '{}'", sha256_source(&style))),
        "{policy}"
    );
    assert!(
        policy.contains(&format!("script-src '{}'", sha256_source(&script))),
        "{policy}"
    );
    assert!(policy.starts_with("default-src 'none';"), "{policy}");
}

#[test]
fn latencies_and_shares_read_naturally() {
    assert_eq!(format_seconds(0.00042), "0.4 ms");
    assert_eq!(format_seconds(0.0424), "42 ms");
    assert_eq!(format_seconds(1.254), "1.25 s");
    assert_eq!(format_uptime(1.0), "100 %");
    assert_eq!(format_uptime(0.999_99), "99.99 %");
    assert_eq!(format_uptime(0.0), "0.00 %");
}

/// Asserts that each of `needles` occurs in `html`, in this order.
pub(super) fn assert_in_order(html: &str, needles: &[&str]) {
    let at: Vec<usize> = needles
        .iter()
        .map(|needle| {
            html.find(needle)
                .unwrap_or_else(|| panic!("no {needle} in {html}"))
        })
        .collect();
    assert!(
        at.windows(2).all(|pair| pair[0] < pair[1]),
        "not in the order {needles:?}: {html}"
    );
}

/// The part of `html` from the first `open` to the next `close` (inclusive of `open`).
pub(super) fn section<'a>(html: &'a str, open: &str, close: &str) -> &'a str {
    let start = html
        .find(open)
        .unwrap_or_else(|| panic!("no {open} in {html}"));
    let end = html[start..]
        .find(close)
        .unwrap_or_else(|| panic!("no {close} after {open} in {html}"));
    &html[start..start + end]
}

/// Warnings about the rules (an `inhibits` naming a mode that is not loaded) are listed at the
/// end of the page as `validate` prints them, escaped.
#[test]
fn rule_warnings_are_listed() {
    let mut document = status(Vec::new(), vec![probe("origin-1", Some(true), "200 OK")]);
    assert!(!render(&document).contains("rule-warnings"));
    document
        .warnings
        .push(crate::server::status::WarningStatus {
            kind: "inhibits_unloaded",
            file: "alerts/all-nodes-down.toml".to_owned(),
            line: Some(12),
            column: Some(14),
            key: Some("inhibits[0]".to_owned()),
            message: "`<two-nodes-down>` is not loaded, so this entry inhibits nothing".to_owned(),
            text:
                "alerts/all-nodes-down.toml:12:14: inhibits[0]: `<two-nodes-down>` is not loaded, \
               so this entry inhibits nothing"
                    .to_owned(),
        });
    let html = render(&document);
    assert!(html.contains("<h2 id=\"rule-warnings-title\">Warnings about the rules</h2>"));
    assert!(
        html.contains(
            "<li><code>alerts/all-nodes-down.toml:12:14: inhibits[0]: `&lt;two-nodes-down&gt;` \
             is not loaded, so this entry inhibits nothing</code></li>"
        ),
        "{html}"
    );
}
