//! The human status page at `/`: the same facts as `/status`, rendered as HTML on the server.
//!
//! Everything that came from a target (messages, banners, headers) is escaped, and so is the text
//! of the rules (the recovery steps are shown as preformatted markdown, not rendered); the page
//! has no scripts of its own beyond a meta refresh. Diagnoses come first: on-call opens the page
//! to learn what is wrong and what to do.

use std::fmt::Write as _;

use super::status::{AlertStatus, DiagnosisStatus, ProbeStatus, Status};

/// Renders the page.
pub fn render(status: &Status) -> String {
    let mut html = String::with_capacity(4096 + status.probes.len() * 256);
    html.push_str(concat!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">",
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">",
        "<meta http-equiv=\"refresh\" content=\"15\">",
        "<title>honeyguide</title></head><body>",
        "<h1>honeyguide</h1>",
    ));
    if status.diagnoses.is_empty() {
        html.push_str("<p>No known failure mode recognised.</p>");
    }
    for diagnosis in &status.diagnoses {
        write_diagnosis(&mut html, diagnosis);
    }
    write_alerts(&mut html, status);
    html.push_str(concat!(
        "<h2>Probes</h2><table><thead><tr>",
        "<th>probe</th><th>state</th><th>latency</th><th>message</th>",
        "</tr></thead><tbody>"
    ));
    for probe in &status.probes {
        write_row(&mut html, probe);
    }
    html.push_str("</tbody></table></body></html>\n");
    html
}

fn write_diagnosis(html: &mut String, diagnosis: &DiagnosisStatus) {
    let note = match &diagnosis.inhibited_by {
        Some(cause) => format!(" (explained by {})", escape(cause)),
        None => String::new(),
    };
    let _ = write!(
        html,
        "<section><h2>{} {}: {}{note}</h2><p>since {}. {}</p><ul>",
        escape(diagnosis.severity),
        escape(diagnosis.state),
        escape(&diagnosis.title),
        escape(&diagnosis.since),
        escape(&diagnosis.summary),
    );
    for evidence in &diagnosis.probes {
        let _ = write!(
            html,
            "<li>{} {}: {}</li>",
            escape(&evidence.probe),
            if evidence.ok { "up" } else { "down" },
            escape(&evidence.message),
        );
    }
    let _ = write!(
        html,
        "</ul><pre>{}</pre><p>Runbook: {}</p></section>",
        escape(&diagnosis.recovery),
        escape(&diagnosis.runbook),
    );
}

/// The alerts: their state and, for alerts not notified, why not.
fn write_alerts(html: &mut String, status: &Status) {
    html.push_str("<h2>Alerts</h2>");
    if status.alerts.is_empty() {
        html.push_str("<p>No alerts.</p>");
        return;
    }
    html.push_str(
        "<table><thead><tr><th>alert</th><th>state</th><th>severity</th><th>since</th>\
         <th>notified</th></tr></thead><tbody>",
    );
    for alert in &status.alerts {
        let _ = write!(
            html,
            "<tr><td>{} <small>({})</small></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&alert.title),
            escape(&alert.id),
            alert.state,
            alert.severity,
            escape(&alert.since),
            escape(&held_by(alert)),
        );
    }
    html.push_str("</tbody></table>");
}

fn held_by(alert: &AlertStatus) -> String {
    if let Some(inhibitor) = &alert.inhibited_by {
        return format!("no: inhibited by {inhibitor}");
    }
    if !alert.silenced_by.is_empty() {
        return format!("no: silenced by {}", alert.silenced_by.join(", "));
    }
    match &alert.last_notified {
        Some(at) => format!("last {at}"),
        None => "not yet".to_owned(),
    }
}

fn write_row(html: &mut String, probe: &ProbeStatus) {
    let state = match probe.ok {
        Some(true) => "up",
        Some(false) => "down",
        None => "pending",
    };
    let latency = probe
        .duration_seconds
        .map(|seconds| format!("{:.0} ms", seconds * 1000.0))
        .unwrap_or_default();
    let _ = write!(
        html,
        "<tr><td>{}</td><td>{state}</td><td>{latency}</td><td>{}</td></tr>",
        escape(&probe.name),
        escape(probe.message.as_deref().unwrap_or("")),
    );
}

/// Escapes text for HTML element content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_from_targets() {
        assert_eq!(
            escape("<script>alert('x')</script> & \"y\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;y&quot;"
        );
    }
}
