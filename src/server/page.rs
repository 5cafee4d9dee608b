//! The human status page at `/`: the same facts as `/status`, rendered as HTML on the server.
//!
//! It is built from the `/status` view types and nothing else, so the page and the JSON cannot
//! disagree. The reader is on call, maybe at 3 a.m., maybe on a phone: the worst news comes
//! first (a one-line verdict, then each failure mode with its evidence, recovery steps and
//! whether on-call was notified or why not, the modes it explains tucked beneath it), then what
//! resolved lately, every probe (failing ones first), silences and notifiers. A notifier that
//! fails to deliver moves to the top: on-call must know when alerts are not reaching them.
//! Every state is said in words as well as colour.
//!
//! Safety: everything that came from a target (messages, banners, headers) or from config is
//! escaped where it is written; the recovery steps are markdown from the rule files, rendered
//! without raw HTML ([`crate::html`]). The page is one request (styles inline) and works without
//! JavaScript (a `<noscript>` meta refresh); with it, a small script refreshes the page in
//! place and says loudly when honeyguide stops answering. [`content_security_policy`] allows
//! exactly that style and that script.

use std::fmt::{self, Write as _};

use base64::Engine as _;
use jiff::Timestamp;
use sha2::{Digest as _, Sha256};

mod alerting;

use crate::html::{self, Medium, escape};
use crate::human;

use super::status::{EvidenceStatus, HistoryStatus, ProbeStatus, RuleEvaluationStatus, Status};
use alerting::Card;

/// The page's styles, inlined so the page is a single request.
const STYLE: &str = include_str!("page/style.css");
/// Refreshes the page in place; the page works without it.
const SCRIPT: &str = include_str!("page/refresh.js");
/// How often the page refreshes itself, with or without JavaScript.
const REFRESH_SECONDS: u32 = 15;
/// Passing probes listed at most. Failing probes and those without a result are always listed;
/// beyond this many passing ones the page would grow to megabytes nobody reads on a phone, and
/// `/status` has every probe.
const PASSING_ROWS: usize = 500;

/// Renders the page.
pub fn render(status: &Status) -> String {
    let page = Page {
        status,
        cards: Card::all(status),
        now: parse_time(&status.generated_at).unwrap_or_else(Timestamp::now),
    };
    let mut html = String::with_capacity(16 * 1024 + status.probes.len() * 1536);
    // Writing into a String cannot fail.
    let _ = page.write(&mut html);
    html
}

/// The `Content-Security-Policy` the page is served with: its own inline style and script (by
/// hash) and `fetch` to itself, nothing else. Should escaping ever miss something, an injected
/// script or stylesheet would still not run.
pub fn content_security_policy() -> String {
    format!(
        "default-src 'none'; style-src '{}'; script-src '{}'; connect-src 'self'; \
         img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        sha256_source(STYLE),
        sha256_source(SCRIPT),
    )
}

fn sha256_source(text: &str) -> String {
    let digest = Sha256::digest(text.as_bytes());
    format!(
        "sha256-{}",
        base64::engine::general_purpose::STANDARD.encode(digest)
    )
}

// === the page ===

struct Page<'a> {
    status: &'a Status,
    /// The failure modes to show, from the diagnoses and the open alerts, worst first.
    cards: Vec<Card<'a>>,
    /// When the document was made: relative times are counted from here.
    now: Timestamp,
}

impl Page<'_> {
    fn write(&self, out: &mut String) -> fmt::Result {
        let verdict = Verdict::of(self);
        self.write_head(out, &verdict)?;
        write!(
            out,
            "<body data-refresh=\"{REFRESH_SECONDS}\"><p id=\"stale\" role=\"alert\" hidden></p>\
             <div id=\"page\">"
        )?;
        self.write_header(out, &verdict)?;
        out.push_str("<main>");
        self.write_reload(out)?;
        let notifiers_failing = self.failing_notifiers().next().is_some();
        if notifiers_failing {
            self.write_notifiers(out)?;
        }
        self.write_diagnoses(out)?;
        self.write_resolved(out)?;
        self.write_rule_errors(out)?;
        self.write_probes(out)?;
        self.write_silences(out)?;
        if !notifiers_failing {
            self.write_notifiers(out)?;
        }
        self.write_rule_warnings(out)?;
        out.push_str("</main>");
        self.write_footer(out)?;
        writeln!(out, "</div><script>{SCRIPT}</script></body></html>")
    }

    fn write_head(&self, out: &mut String, verdict: &Verdict) -> fmt::Result {
        write!(
            out,
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
             <meta name=\"color-scheme\" content=\"light dark\">\
             <noscript><meta http-equiv=\"refresh\" content=\"{REFRESH_SECONDS}\"></noscript>\
             <title>{}: {} · honeyguide</title><style>{STYLE}</style></head>",
            verdict.level.label(),
            escape(&verdict.headline),
        )
    }

    /// The verdict: one line that says how bad things are, in words and colour.
    fn write_header(&self, out: &mut String, verdict: &Verdict) -> fmt::Result {
        let counts = ProbeCounts::of(&self.status.probes);
        write!(
            out,
            "<header class=\"top\"><p class=\"brand\">honeyguide · seen from {}</p>\
             <h1 class=\"verdict {}\">{} <span>{}</span></h1><p class=\"summary\">",
            escape(&self.status.vantage),
            verdict.level.class(),
            badge(verdict.level.class(), verdict.level.label()),
            escape(&verdict.headline),
        )?;
        counts.write(out)?;
        let active_silences = self
            .status
            .silences
            .iter()
            .filter(|silence| silence.state == "active")
            .count();
        if active_silences > 0 {
            write!(
                out,
                " · <a href=\"#silences\">{active_silences} silence(s) active</a>"
            )?;
        }
        let failing_notifiers = self.failing_notifiers().count();
        if failing_notifiers > 0 {
            write!(
                out,
                " · <a href=\"#notifiers\">{failing_notifiers} notifier(s) failing</a>"
            )?;
        }
        write!(
            out,
            " · updated {}</p></header>",
            self.time(&self.status.generated_at, TimeStyle::Absolute)
        )
    }

    // --- diagnoses ---

    fn write_diagnoses(&self, out: &mut String) -> fmt::Result {
        out.push_str(
            "<section id=\"diagnoses\" aria-labelledby=\"diagnoses-title\">\
             <h2 id=\"diagnoses-title\">What is wrong</h2>",
        );
        let cards = &self.cards;
        if cards.is_empty() {
            out.push_str("<p class=\"none\">No known failure mode is happening.");
            let failing = ProbeCounts::of(&self.status.probes).failing;
            if failing > 0 {
                write!(
                    out,
                    " {failing} probe(s) failing all the same: <a href=\"#probes\">see below</a>."
                )?;
            }
            out.push_str("</p>");
        }
        for root in cards.iter().filter(|card| card.inhibited_by.is_none()) {
            let explained: Vec<&Card> = cards
                .iter()
                .filter(|other| other.inhibited_by == Some(root.id))
                .collect();
            self.write_card(out, root, &explained)?;
        }
        // An inhibitor is always an active diagnosis, so this is empty unless the classifier
        // and this page disagree; show such failure modes rather than lose them.
        let orphans: Vec<&Card> = cards
            .iter()
            .filter(|card| {
                card.inhibited_by.is_some_and(|cause| {
                    !cards
                        .iter()
                        .any(|root| root.id == cause && root.inhibited_by.is_none())
                })
            })
            .collect();
        if !orphans.is_empty() {
            self.write_explained(out, &orphans)?;
        }
        out.push_str("</section>");
        Ok(())
    }

    fn write_card(&self, out: &mut String, card: &Card, explained: &[&Card]) -> fmt::Result {
        write!(
            out,
            "<article class=\"diagnosis {severity} {state}\" id=\"d-{id}\" \
             aria-labelledby=\"d-{id}-title\"><header><p class=\"tags\">{} {}</p>\
             <h3 id=\"d-{id}-title\">{}</h3><p class=\"since\">Since {}</p></header>\
             <p class=\"symptom\">{}</p>",
            badge(card.severity, severity_label(card.severity)),
            state_badge(card.state),
            escape(card.title),
            self.time(card.since, TimeStyle::Both),
            escape(card.summary),
            severity = class(card.severity),
            state = class(card.state),
            id = escape(card.id),
        )?;
        self.write_notified(out, card)?;
        out.push_str("<h4>Evidence</h4>");
        write_evidence(out, card.evidence)?;
        out.push_str("<h4>Recovery</h4><div class=\"recovery\">");
        html::push_markdown(out, card.recovery, Medium::Page);
        out.push_str("</div><p class=\"runbook\">");
        if !card.runbook.is_empty() {
            write!(out, "Runbook: {} · ", html::link_or_code(card.runbook))?;
        }
        write!(out, "id <code>{}</code>", escape(card.id))?;
        for (key, value) in card.labels {
            write!(out, " · {}={}", escape(key), escape(value))?;
        }
        out.push_str("</p>");
        if !explained.is_empty() {
            self.write_explained(out, explained)?;
        }
        out.push_str("</article>");
        Ok(())
    }

    /// Failure modes explained by another (inhibited): shown small, with why they are not
    /// notified.
    fn write_explained(&self, out: &mut String, explained: &[&Card]) -> fmt::Result {
        out.push_str("<div class=\"explained\"><h4>Also explained by this</h4><ul>");
        for card in explained {
            write!(
                out,
                "<li id=\"d-{}\">{} <strong>{}</strong> <span class=\"quiet\">{}, since {}</span>",
                escape(card.id),
                badge(card.severity, severity_label(card.severity)),
                escape(card.title),
                state_label(card.state),
                self.time(card.since, TimeStyle::Relative),
            )?;
            self.write_notified(out, card)?;
            write_evidence(out, card.evidence)?;
            out.push_str("</li>");
        }
        out.push_str("</ul></div>");
        Ok(())
    }

    // --- rules that cannot be evaluated ---

    /// A rule that fails to evaluate is a blind spot: its failure mode cannot be recognised.
    /// A failed reload, at the top: the running configuration is not the one on disk, and
    /// whoever edited it must know. Settings a reload could not apply are said there too.
    fn write_reload(&self, out: &mut String) -> fmt::Result {
        let reload = &self.status.reload;
        if let Some(error) = reload.error.as_deref().filter(|_| !reload.successful) {
            out.push_str(
                "<section id=\"reload\" aria-labelledby=\"reload-title\">\
                 <h2 id=\"reload-title\">The new configuration was not loaded</h2>",
            );
            write!(
                out,
                "<p>{} The last reload",
                badge("warning", "Reload failed"),
            )?;
            if let Some(at) = &reload.attempted_at {
                write!(out, " ({})", self.time(at, TimeStyle::Relative))?;
            }
            write!(
                out,
                " found problems, so the configuration loaded {} stays in force. \
                 Fix them and reload again (<code>honeyguide validate</code> checks first):</p>\
                 <pre>{}</pre></section>",
                self.time(&reload.loaded_at, TimeStyle::Relative),
                escape(error),
            )?;
        } else if !reload.not_applied.is_empty() {
            out.push_str(
                "<section id=\"reload\" aria-labelledby=\"reload-title\">\
                 <h2 id=\"reload-title\">Changes waiting for a restart</h2><p>The last reload \
                 applied everything but these settings, which only a restart changes:</p><ul>",
            );
            for setting in &reload.not_applied {
                write!(out, "<li>{}</li>", escape(setting))?;
            }
            out.push_str("</ul></section>");
        }
        Ok(())
    }

    fn write_rule_errors(&self, out: &mut String) -> fmt::Result {
        let broken: Vec<&RuleEvaluationStatus> = self
            .status
            .rules
            .iter()
            .filter(|rule| rule.status == "error")
            .collect();
        if broken.is_empty() {
            return Ok(());
        }
        out.push_str(
            "<section id=\"rules\" aria-labelledby=\"rules-title\">\
             <h2 id=\"rules-title\">Rules that cannot be evaluated</h2>\
             <p>These failure modes cannot be recognised until their rule is fixed.</p><ul>",
        );
        for rule in broken {
            write!(
                out,
                "<li>{} <code>{}</code>: {} <span class=\"quiet\">({} of {} evaluations failed",
                badge("warning", "Rule error"),
                escape(&rule.id),
                escape(rule.last_error.as_deref().unwrap_or("unknown error")),
                rule.errors,
                rule.evaluations,
            )?;
            if let Some(at) = &rule.last_error_at {
                write!(out, ", last {}", self.time(at, TimeStyle::Relative))?;
            }
            out.push_str(")</span></li>");
        }
        out.push_str("</ul></section>");
        Ok(())
    }

    /// What the rule loader said without failing: entries it did not load, `inhibits` and
    /// examples naming failure modes that are not loaded. Not urgent, so at the end.
    fn write_rule_warnings(&self, out: &mut String) -> fmt::Result {
        if self.status.warnings.is_empty() {
            return Ok(());
        }
        out.push_str(
            "<section id=\"rule-warnings\" aria-labelledby=\"rule-warnings-title\">\
             <h2 id=\"rule-warnings-title\">Warnings about the rules</h2>\
             <p>The rules loaded, but these are worth a look.</p><ul>",
        );
        for warning in &self.status.warnings {
            write!(out, "<li><code>{}</code></li>", escape(&warning.text))?;
        }
        out.push_str("</ul></section>");
        Ok(())
    }

    // --- probes ---

    fn write_probes(&self, out: &mut String) -> fmt::Result {
        out.push_str(
            "<section id=\"probes\" aria-labelledby=\"probes-title\">\
             <h2 id=\"probes-title\">Probes</h2><p class=\"summary\">",
        );
        ProbeCounts::of(&self.status.probes).write(out)?;
        out.push_str(
            "</p><table class=\"probes\"><thead><tr><th scope=\"col\">Probe</th>\
             <th scope=\"col\">State</th><th scope=\"col\">Latency</th>\
             <th scope=\"col\">Recent runs</th><th scope=\"col\">Uptime 24h</th>\
             <th scope=\"col\">Checked</th><th scope=\"col\">Result</th></tr></thead><tbody>",
        );
        let mut probes: Vec<&ProbeStatus> = self.status.probes.iter().collect();
        // Failing first, then those without a result, then passing; config order within each.
        probes.sort_by_key(|probe| match probe.ok {
            Some(false) => 0,
            None => 1,
            Some(true) => 2,
        });
        let listed = probes.len().min(
            probes
                .iter()
                .position(|probe| probe.ok == Some(true))
                .map_or(usize::MAX, |first_passing| first_passing + PASSING_ROWS),
        );
        for probe in &probes[..listed] {
            self.write_probe(out, probe)?;
        }
        out.push_str("</tbody></table>");
        let unlisted = probes.len() - listed;
        if unlisted > 0 {
            write!(
                out,
                "<p class=\"quiet\">{unlisted} more passing probes are not listed here; \
                 <a href=\"/status\">/status</a> has every probe.</p>"
            )?;
        }
        out.push_str("</section>");
        Ok(())
    }

    fn write_probe(&self, out: &mut String, probe: &ProbeStatus) -> fmt::Result {
        let state = ProbeState::of(probe);
        write!(
            out,
            "<tr id=\"p-{name}\" class=\"{}\"><th scope=\"row\"><span class=\"name\">{name}</span> \
             <span class=\"target\">{} · {}</span></th><td data-label=\"State\">{}",
            state.class(),
            escape(probe.kind),
            escape(&probe.target),
            badge(state.class(), state.label()),
            name = escape(&probe.name),
        )?;
        if probe.consecutive_failures > 1 {
            write!(
                out,
                " <span class=\"quiet streak\">{} in a row</span>",
                probe.consecutive_failures
            )?;
        }
        write!(
            out,
            "</td><td data-label=\"Latency\">{}</td><td data-label=\"Recent runs\">",
            probe
                .duration_seconds
                .map_or_else(|| "–".to_owned(), format_seconds)
        )?;
        write_sparkline(out, &probe.history)?;
        write!(
            out,
            "</td><td data-label=\"Uptime 24h\">{}</td><td data-label=\"Checked\">",
            probe
                .uptime_24h
                .map_or_else(|| "–".to_owned(), format_uptime)
        )?;
        match &probe.checked_at {
            Some(at) => write!(out, "{}", self.time(at, TimeStyle::Relative))?,
            None => out.push_str("not yet"),
        }
        if self.is_late(probe) {
            write!(out, " {}", badge("warning", "Late"))?;
        }
        out.push_str("</td><td data-label=\"Result\">");
        if let Some(error) = probe.error {
            write!(out, "<code class=\"class\">{}</code> ", escape(error))?;
        }
        write!(
            out,
            "<span class=\"message\">{}</span></td></tr>",
            escape(probe.message.as_deref().unwrap_or(""))
        )
    }

    /// Whether a probe's latest result is older than two intervals and a timeout: the scheduler
    /// is behind or stuck, so what the page shows for it is stale.
    fn is_late(&self, probe: &ProbeStatus) -> bool {
        let Some(checked) = probe.checked_at.as_deref().and_then(parse_time) else {
            return false;
        };
        let allowed = 2.0 * probe.interval_seconds + probe.timeout_seconds + 5.0;
        self.now.duration_since(checked).as_secs_f64() > allowed
    }

    fn write_footer(&self, out: &mut String) -> fmt::Result {
        write!(
            out,
            "<footer><p>honeyguide {} · running since {} · refreshes every {REFRESH_SECONDS} s · \
             <a href=\"/status\">/status</a> (the same as JSON) · \
             <a href=\"/metrics\">/metrics</a></p></footer>",
            escape(self.status.version),
            self.time(&self.status.started_at, TimeStyle::Both),
        )
    }

    fn time<'t>(&self, at: &'t str, style: TimeStyle) -> TimeHtml<'t> {
        TimeHtml {
            at,
            parsed: parse_time(at),
            now: self.now,
            style,
        }
    }
}

// === the verdict ===

/// How bad things are, for the header and the tab title.
struct Verdict {
    level: Level,
    headline: String,
}

#[derive(Clone, Copy)]
enum Level {
    Critical,
    Warning,
    Info,
    /// A failure mode holds but is not confirmed yet.
    Pending,
    /// Probes fail but no failure mode explains it.
    Unexplained,
    /// No probe has a result yet.
    Starting,
    /// Nothing is configured to be probed.
    Idle,
    Ok,
}

impl Level {
    fn class(self) -> &'static str {
        match self {
            Level::Critical => "critical",
            Level::Warning | Level::Unexplained => "warning",
            Level::Info => "info",
            Level::Pending => "pending",
            Level::Starting | Level::Idle => "quiet",
            Level::Ok => "ok",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Level::Critical => "Critical",
            Level::Warning => "Warning",
            Level::Info => "Info",
            Level::Pending => "Confirming",
            Level::Unexplained => "Failing",
            Level::Starting => "Starting",
            Level::Idle => "Idle",
            Level::Ok => "All clear",
        }
    }
}

impl Verdict {
    fn of(page: &Page) -> Self {
        let roots: Vec<&Card> = page
            .cards
            .iter()
            .filter(|card| card.inhibited_by.is_none())
            .collect();
        let more = |shown: usize| match roots.len().saturating_sub(shown) {
            0 => String::new(),
            n => format!(" (and {n} more)"),
        };
        let worst_active = roots
            .iter()
            .filter(|card| card.state == "active")
            .min_by_key(|card| severity_rank(card.severity));
        if let Some(worst) = worst_active {
            let level = match worst.severity {
                "critical" => Level::Critical,
                "warning" => Level::Warning,
                _ => Level::Info,
            };
            return Self {
                level,
                headline: format!("{}{}", worst.title, more(1)),
            };
        }
        if let Some(first) = roots.first() {
            return Self {
                level: Level::Pending,
                headline: format!("{}{}", first.title, more(1)),
            };
        }
        let failing_notifiers: Vec<&str> = page
            .failing_notifiers()
            .map(|notifier| notifier.name.as_str())
            .collect();
        if !failing_notifiers.is_empty() {
            return Self {
                level: Level::Warning,
                headline: format!(
                    "notifications through {} failing",
                    failing_notifiers.join(", ")
                ),
            };
        }
        let counts = ProbeCounts::of(&page.status.probes);
        let (level, headline) = if counts.total == 0 {
            (Level::Idle, "no probes configured".to_owned())
        } else if counts.failing > 0 {
            (
                Level::Unexplained,
                format!(
                    "{} of {} probes failing; no known failure mode matches",
                    counts.failing, counts.total
                ),
            )
        } else if counts.passing == 0 {
            (Level::Starting, "waiting for the first results".to_owned())
        } else {
            (Level::Ok, format!("all {} probes passing", counts.passing))
        };
        Self { level, headline }
    }
}

/// Probes by state.
struct ProbeCounts {
    total: usize,
    failing: usize,
    passing: usize,
    waiting: usize,
}

impl ProbeCounts {
    fn of(probes: &[ProbeStatus]) -> Self {
        let count = |ok: Option<bool>| probes.iter().filter(|probe| probe.ok == ok).count();
        Self {
            total: probes.len(),
            failing: count(Some(false)),
            passing: count(Some(true)),
            waiting: count(None),
        }
    }

    fn write(&self, out: &mut String) -> fmt::Result {
        write!(out, "{} of {} probes failing", self.failing, self.total)?;
        if self.waiting > 0 {
            write!(out, ", {} without a result yet", self.waiting)?;
        }
        Ok(())
    }
}

// === probes ===

#[derive(Clone, Copy)]
enum ProbeState {
    Passing,
    Failing,
    Waiting,
}

impl ProbeState {
    fn of(probe: &ProbeStatus) -> Self {
        match probe.ok {
            Some(true) => ProbeState::Passing,
            Some(false) => ProbeState::Failing,
            None => ProbeState::Waiting,
        }
    }

    fn class(self) -> &'static str {
        match self {
            ProbeState::Passing => "ok",
            ProbeState::Failing => "fail",
            ProbeState::Waiting => "quiet",
        }
    }

    fn label(self) -> &'static str {
        match self {
            ProbeState::Passing => "OK",
            ProbeState::Failing => "Fail",
            ProbeState::Waiting => "No result",
        }
    }
}

/// The probes a diagnosis rests on, failing ones first.
fn write_evidence(out: &mut String, evidence: &[EvidenceStatus]) -> fmt::Result {
    out.push_str("<ul class=\"evidence\">");
    let failing = evidence.iter().filter(|probe| !probe.ok);
    let passing = evidence.iter().filter(|probe| probe.ok);
    for probe in failing.chain(passing) {
        let (class, label) = if probe.ok {
            ("ok", "OK")
        } else {
            ("fail", "Fail")
        };
        write!(
            out,
            "<li class=\"{class}\">{} <a href=\"#p-{name}\">{name}</a> \
             <span class=\"message\">{}</span></li>",
            badge(class, label),
            escape(&probe.message),
            name = escape(&probe.probe),
        )?;
    }
    out.push_str("</ul>");
    Ok(())
}

/// Width of one run's bar in the sparkline, and the gap after it, in pixels.
const SPARK_BAR: usize = 4;
const SPARK_GAP: usize = 2;
const SPARK_HEIGHT: f64 = 20.0;

/// The recent runs as an inline SVG, oldest first: a passing run is a green bar as tall as its
/// duration (relative to the slowest shown), a failed run a full-height red bar, so failures
/// stand out by shape as well as colour. The label says the same in words.
fn write_sparkline(out: &mut String, history: &[HistoryStatus]) -> fmt::Result {
    if history.is_empty() {
        out.push_str("<span class=\"quiet\">no runs yet</span>");
        return Ok(());
    }
    let failures = history.iter().filter(|run| !run.ok).count();
    let slowest = history
        .iter()
        .map(|run| run.duration_seconds)
        .fold(0.0_f64, f64::max);
    let width = history.len() * (SPARK_BAR + SPARK_GAP) - SPARK_GAP;
    let label = format!(
        "last {} runs: {} passed, {failures} failed; slowest {}",
        history.len(),
        history.len() - failures,
        format_seconds(slowest)
    );
    write!(
        out,
        "<svg class=\"spark\" width=\"{width}\" height=\"{SPARK_HEIGHT}\" \
         viewBox=\"0 0 {width} {SPARK_HEIGHT}\" role=\"img\" aria-label=\"{label}\">\
         <title>{label}</title>"
    )?;
    // One path per colour keeps a row's sparkline to a few hundred bytes.
    let (mut passed, mut failed) = (String::new(), String::new());
    for (i, run) in history.iter().enumerate() {
        let (path, height) = if run.ok {
            let share = if slowest > 0.0 {
                run.duration_seconds / slowest
            } else {
                0.0
            };
            (&mut passed, (share * SPARK_HEIGHT).clamp(2.0, SPARK_HEIGHT))
        } else {
            (&mut failed, SPARK_HEIGHT)
        };
        write!(
            path,
            "M{} {:.1}h{SPARK_BAR}v{height:.1}h-{SPARK_BAR}z",
            i * (SPARK_BAR + SPARK_GAP),
            SPARK_HEIGHT - height,
        )?;
    }
    for (class, path) in [("ok", passed), ("fail", failed)] {
        if !path.is_empty() {
            write!(out, "<path class=\"{class}\" d=\"{path}\"/>")?;
        }
    }
    out.push_str("</svg>");
    Ok(())
}

// === small pieces ===

/// A labelled state: a coloured pill with a glyph and a word, so no state is colour alone.
fn badge<'a>(class_name: &'a str, label: &'a str) -> Badge<'a> {
    Badge { class_name, label }
}

struct Badge<'a> {
    class_name: &'a str,
    label: &'a str,
}

impl fmt::Display for Badge<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let glyph = match self.class_name {
            "critical" | "fail" => "✖",
            "warning" => "▲",
            "info" => "ℹ",
            "ok" => "✔",
            "pending" => "◔",
            "active" => "●",
            // A pause sign that common fonts have (U+23F8 is missing from many).
            "silenced" => "‖",
            _ => "•",
        };
        write!(
            f,
            "<span class=\"badge {}\"><span aria-hidden=\"true\">{glyph}</span> {}</span>",
            class(self.class_name),
            escape(self.label)
        )
    }
}

fn state_badge(state: &str) -> Badge<'_> {
    match state {
        "active" => badge("active", "Active"),
        _ => badge("pending", "Pending, not yet confirmed"),
    }
}

fn state_label(state: &str) -> &'static str {
    match state {
        "active" => "active",
        _ => "pending",
    }
}

fn severity_label(severity: &str) -> &'static str {
    match severity {
        "critical" => "Critical",
        "warning" => "Warning",
        _ => "Info",
    }
}

fn severity_rank(severity: &str) -> u8 {
    match severity {
        "critical" => 0,
        "warning" => 1,
        _ => 2,
    }
}

/// A CSS class name from a value of a closed set (severity, state); anything else is dropped,
/// so a class attribute never carries arbitrary text.
fn class(value: &str) -> &str {
    if value
        .chars()
        .all(|c| c.is_ascii_lowercase() || c == '-' || c == '_')
    {
        value
    } else {
        ""
    }
}

#[derive(Clone, Copy)]
enum TimeStyle {
    /// `3m 12s ago`, the exact time on hover.
    Relative,
    /// `2025-06-01 14:03:12 UTC`.
    Absolute,
    /// `2025-06-01 14:03:12 UTC (3m 12s ago)`.
    Both,
}

/// A `<time>` element for an RFC 3339 timestamp of the status document.
struct TimeHtml<'a> {
    at: &'a str,
    parsed: Option<Timestamp>,
    now: Timestamp,
    style: TimeStyle,
}

impl fmt::Display for TimeHtml<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some(at) = self.parsed else {
            return write!(f, "{}", escape(self.at));
        };
        let absolute = at.strftime("%Y-%m-%d %H:%M:%S UTC");
        let ago = human::ago(at, self.now);
        write!(f, "<time datetime=\"{}\"", escape(self.at))?;
        match self.style {
            TimeStyle::Relative => write!(f, " title=\"{absolute}\">{ago}</time>"),
            TimeStyle::Absolute => write!(f, ">{absolute}</time>"),
            TimeStyle::Both => write!(f, ">{absolute}</time> ({ago})"),
        }
    }
}

fn parse_time(text: &str) -> Option<Timestamp> {
    text.parse().ok()
}

/// `0.4 ms`, `45 ms`, `1.25 s`.
fn format_seconds(seconds: f64) -> String {
    let millis = seconds * 1000.0;
    if millis < 10.0 {
        format!("{millis:.1} ms")
    } else if millis < 1000.0 {
        format!("{millis:.0} ms")
    } else {
        format!("{seconds:.2} s")
    }
}

/// `100 %` only when nothing failed: a share is rounded down, so 99.999 % shows as `99.99 %`.
fn format_uptime(share: f64) -> String {
    if share >= 1.0 {
        "100 %".to_owned()
    } else {
        format!("{:.2} %", (share * 10_000.0).floor() / 100.0)
    }
}

#[cfg(test)]
mod tests;
