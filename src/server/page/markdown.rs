//! The recovery steps of a diagnosis: markdown from the rule files, rendered to HTML.
//!
//! Rule files are ours, but the page must not become a way to run script because someone pasted
//! HTML into one: raw HTML (blocks and inline) is shown as text, link and image targets other
//! than `http(s):`, `mailto:`, anchors and relative paths become `#`, and images are shown as
//! links (the page loads nothing but itself). Headings are demoted below the diagnosis's own.

use pulldown_cmark::{CowStr, Event, HeadingLevel, Options, Parser, Tag, TagEnd};

/// How many levels a heading in the recovery text is pushed down: the diagnosis title is an
/// `h3` and "Recovery" an `h4`, so a `#` heading becomes an `h5`.
const HEADING_SHIFT: usize = 4;

/// Appends `markdown` rendered as HTML to `out`.
pub fn push_html(out: &mut String, markdown: &str) {
    let options = Options::ENABLE_TABLES
        | Options::ENABLE_STRIKETHROUGH
        | Options::ENABLE_TASKLISTS
        | Options::ENABLE_FOOTNOTES;
    let events = Parser::new_ext(markdown, options).map(sanitize);
    pulldown_cmark::html::push_html(out, events);
}

/// Rewrites the events that could carry markup or script into harmless ones.
fn sanitize(event: Event<'_>) -> Event<'_> {
    match event {
        Event::Html(raw) | Event::InlineHtml(raw) => Event::Text(raw),
        // The text of a raw HTML block still needs a block around it.
        Event::Start(Tag::HtmlBlock) => Event::Start(Tag::Paragraph),
        Event::End(TagEnd::HtmlBlock) => Event::End(TagEnd::Paragraph),
        Event::Start(Tag::Heading { level, .. }) => Event::Start(Tag::Heading {
            level: demote(level),
            id: None,
            classes: Vec::new(),
            attrs: Vec::new(),
        }),
        Event::End(TagEnd::Heading(level)) => Event::End(TagEnd::Heading(demote(level))),
        Event::Start(Tag::Link {
            link_type,
            dest_url,
            title,
            id,
        })
        | Event::Start(Tag::Image {
            link_type,
            dest_url,
            title,
            id,
        }) => Event::Start(Tag::Link {
            link_type,
            dest_url: safe_url(dest_url),
            title,
            id,
        }),
        Event::End(TagEnd::Image) => Event::End(TagEnd::Link),
        other => other,
    }
}

fn demote(level: HeadingLevel) -> HeadingLevel {
    HeadingLevel::try_from(level as usize + HEADING_SHIFT).unwrap_or(HeadingLevel::H6)
}

/// `url` if it is a web or mail link, an anchor or a relative path; `#` otherwise (`javascript:`,
/// `data:`, ...).
fn safe_url(url: CowStr<'_>) -> CowStr<'_> {
    let scheme = url
        .split_once(':')
        .map(|(scheme, _)| scheme)
        .filter(|scheme| !scheme.contains(['/', '?', '#']));
    match scheme {
        None => url,
        Some(scheme)
            if ["http", "https", "mailto"]
                .iter()
                .any(|allowed| scheme.trim().eq_ignore_ascii_case(allowed)) =>
        {
            url
        }
        Some(_) => CowStr::Borrowed("#"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(markdown: &str) -> String {
        let mut out = String::new();
        push_html(&mut out, markdown);
        out
    }

    /// Lists, code spans and fenced code come out as the HTML a reader expects.
    #[test]
    fn renders_the_markdown_recovery_steps_use() {
        let html = render(
            "1. Check `kubectl get nodes`.\n2. **Then** restart.\n\n```bash\nk3s-killall.sh\n```\n",
        );
        assert_eq!(
            html,
            "<ol>\n<li>Check <code>kubectl get nodes</code>.</li>\n<li><strong>Then</strong> restart.</li>\n</ol>\n\
             <pre><code class=\"language-bash\">k3s-killall.sh\n</code></pre>\n"
        );
    }

    /// Raw HTML, as a block or inline, is shown as text, never passed through.
    #[test]
    fn raw_html_is_shown_as_text() {
        let html = render("<script>alert(1)</script>\n\nRestart <b onclick=\"x()\">now</b>.\n");
        assert!(!html.contains("<script"), "{html}");
        assert!(!html.contains("<b "), "{html}");
        assert_eq!(
            html,
            "<p>&lt;script&gt;alert(1)&lt;/script&gt;\n</p>\n\
             <p>Restart &lt;b onclick=\"x()\"&gt;now&lt;/b&gt;.</p>\n"
        );
    }

    /// Script and data URLs in links and images are neutralised; web links, anchors and relative
    /// paths are kept; images become links so the page loads nothing from elsewhere.
    #[test]
    fn only_safe_link_targets_survive() {
        let html = render(
            "[a](javascript:alert(1)) [b]( JavaScript:x) [c](data:text/html,x) \
             [d](https://status.example.com/) [e](#step-2) [f](docs/runbook.md) \
             ![g](https://example.com/x.png)",
        );
        assert!(!html.to_lowercase().contains("javascript"), "{html}");
        assert!(!html.contains("data:"), "{html}");
        assert!(
            html.contains("<a href=\"https://status.example.com/\">d</a>"),
            "{html}"
        );
        assert!(html.contains("<a href=\"#step-2\">e</a>"), "{html}");
        assert!(html.contains("<a href=\"docs/runbook.md\">f</a>"), "{html}");
        assert!(
            html.contains("<a href=\"https://example.com/x.png\">g</a>"),
            "{html}"
        );
        assert!(!html.contains("<img"), "{html}");
    }

    /// A `#` heading in a rule's recovery text sits below the diagnosis title (`h3`).
    #[test]
    fn headings_are_demoted() {
        assert_eq!(render("# First\n"), "<h5>First</h5>\n");
        assert_eq!(render("### Deep\n"), "<h6>Deep</h6>\n");
    }
}
