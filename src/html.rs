//! HTML that is safe to show: escaping, the rule files' markdown, and links. Shared by the
//! status page and the email notifier, so both treat outside text the same way.
//!
//! Outside text (probe messages, banners, rule text, silence comments) is escaped where it is
//! written ([`escape`]). The recovery steps are markdown from the rule files; rule files are
//! ours, but neither the page nor an alert mail may become a way to run script because someone
//! pasted HTML into one, so [`push_markdown`] shows raw HTML (blocks and inline) as text, points
//! link targets other than web and mail addresses at `#`, and turns images into links: nothing
//! is loaded from elsewhere (on the page that is the content security policy's promise, in mail
//! a remote image is a tracking pixel at best).

use std::fmt;

use pulldown_cmark::{CowStr, Event, HeadingLevel, Options, Parser, Tag, TagEnd};

/// Escapes text for HTML element content and attribute values.
pub fn escape(text: &str) -> Escaped<'_> {
    Escaped(text)
}

/// Text that escapes itself as it is written.
pub struct Escaped<'a>(&'a str);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.0;
        while let Some(at) = rest.find(['&', '<', '>', '"', '\'']) {
            f.write_str(&rest[..at])?;
            f.write_str(match rest.as_bytes()[at] {
                b'&' => "&amp;",
                b'<' => "&lt;",
                b'>' => "&gt;",
                b'"' => "&quot;",
                _ => "&#39;",
            })?;
            rest = &rest[at + 1..];
        }
        f.write_str(rest)
    }
}

/// Where rendered markdown is shown, which decides what its links may point to and where its
/// headings sit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Medium {
    /// The status page: anchors and relative paths resolve against honeyguide itself, and the
    /// recovery steps sit under a diagnosis's `h3` title and its `h4` "Recovery".
    Page,
    /// An alert mail: a relative link leads nowhere, and the steps sit under the alert's `h2`
    /// title and the `h3` "What to do".
    Email,
}

impl Medium {
    /// How many levels a heading is pushed down, so a `#` heading sits below the headings
    /// around the rendered text.
    fn heading_shift(self) -> usize {
        match self {
            Medium::Page => 4,
            Medium::Email => 3,
        }
    }

    fn allows_relative_links(self) -> bool {
        match self {
            Medium::Page => true,
            Medium::Email => false,
        }
    }
}

/// Appends `markdown` (a rule's recovery steps) rendered as HTML for `medium` to `out`.
pub fn push_markdown(out: &mut String, markdown: &str, medium: Medium) {
    let options = Options::ENABLE_TABLES
        | Options::ENABLE_STRIKETHROUGH
        | Options::ENABLE_TASKLISTS
        | Options::ENABLE_FOOTNOTES;
    let events = Parser::new_ext(markdown, options).map(|event| sanitize(event, medium));
    pulldown_cmark::html::push_html(out, events);
}

/// Rewrites the events that could carry markup, script or a remote load into harmless ones.
fn sanitize(event: Event<'_>, medium: Medium) -> Event<'_> {
    match event {
        Event::Html(raw) | Event::InlineHtml(raw) => Event::Text(raw),
        // The text of a raw HTML block still needs a block around it.
        Event::Start(Tag::HtmlBlock) => Event::Start(Tag::Paragraph),
        Event::End(TagEnd::HtmlBlock) => Event::End(TagEnd::Paragraph),
        Event::Start(Tag::Heading { level, .. }) => Event::Start(Tag::Heading {
            level: demote(level, medium),
            id: None,
            classes: Vec::new(),
            attrs: Vec::new(),
        }),
        Event::End(TagEnd::Heading(level)) => Event::End(TagEnd::Heading(demote(level, medium))),
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
            dest_url: link_target(dest_url, medium),
            title,
            id,
        }),
        Event::End(TagEnd::Image) => Event::End(TagEnd::Link),
        other => other,
    }
}

fn demote(level: HeadingLevel, medium: Medium) -> HeadingLevel {
    HeadingLevel::try_from(level as usize + medium.heading_shift()).unwrap_or(HeadingLevel::H6)
}

/// `url` if it is a web or mail address, or (where `medium` allows) an anchor or a relative
/// path; `#` otherwise (`javascript:`, `data:`, ...).
fn link_target(url: CowStr<'_>, medium: Medium) -> CowStr<'_> {
    let allowed = match scheme(&url) {
        Some(_) => is_safe_link(&url),
        None => medium.allows_relative_links() && !is_protocol_relative(&url),
    };
    if allowed { url } else { CowStr::Borrowed("#") }
}

/// The scheme of `url` (what precedes its first `:`), if it has one: `docs/a:b`, `#x:y` and
/// `?q=a:b` are relative.
fn scheme(url: &str) -> Option<&str> {
    url.split_once(':')
        .map(|(scheme, _)| scheme)
        .filter(|scheme| !scheme.contains(['/', '?', '#']))
}

/// Whether `url` is protocol-relative (`//host/path`): it has no scheme but leaves for another
/// host, so it is external, not relative. Browsers read `\` as `/` and drop tabs and line
/// breaks, so `/\host` and `/<tab>/host` are the same.
fn is_protocol_relative(url: &str) -> bool {
    let mut leading = url
        .trim_start()
        .chars()
        .filter(|c| !matches!(c, '\t' | '\n' | '\r'));
    matches!(
        (leading.next(), leading.next()),
        (Some('/' | '\\'), Some('/' | '\\'))
    )
}

/// Whether `target` is an absolute `http`, `https` or `mailto` address: safe to make a link of
/// anywhere. Schemes are matched as browsers read them (case and surrounding blanks ignored),
/// against a list of allowed ones, so no spelling of `javascript:` gets through.
pub fn is_safe_link(target: &str) -> bool {
    scheme(target).is_some_and(|scheme| {
        ["http", "https", "mailto"]
            .iter()
            .any(|allowed| scheme.trim().eq_ignore_ascii_case(allowed))
    })
}

/// A reference such as a runbook: a link when it is a web or mail address, `<code>` otherwise
/// (rule files often name a section of a document that is not served anywhere).
pub fn link_or_code(target: &str) -> LinkOrCode<'_> {
    LinkOrCode(target)
}

/// See [`link_or_code`].
pub struct LinkOrCode<'a>(&'a str);

impl fmt::Display for LinkOrCode<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if is_safe_link(self.0) {
            write!(
                f,
                "<a href=\"{0}\" rel=\"noreferrer\">{0}</a>",
                escape(self.0.trim())
            )
        } else {
            write!(f, "<code>{}</code>", escape(self.0))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(markdown: &str, medium: Medium) -> String {
        let mut out = String::new();
        push_markdown(&mut out, markdown, medium);
        out
    }

    #[test]
    fn escape_covers_the_five_html_specials() {
        assert_eq!(
            escape("<script>alert('x')</script> & \"y\"").to_string(),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;y&quot;"
        );
        assert_eq!(escape("plain ünïcode").to_string(), "plain ünïcode");
    }

    /// Lists, code spans and fenced code come out as the HTML a reader expects.
    #[test]
    fn renders_the_markdown_recovery_steps_use() {
        let html = render(
            "1. Check `kubectl get nodes`.\n2. **Then** restart.\n\n```bash\nk3s-killall.sh\n```\n",
            Medium::Page,
        );
        assert_eq!(
            html,
            "<ol>\n<li>Check <code>kubectl get nodes</code>.</li>\n<li><strong>Then</strong> restart.</li>\n</ol>\n\
             <pre><code class=\"language-bash\">k3s-killall.sh\n</code></pre>\n"
        );
    }

    /// Raw HTML, as a block or inline, is shown as text, never passed through, on the page and
    /// in mail alike.
    #[test]
    fn raw_html_is_shown_as_text() {
        for medium in [Medium::Page, Medium::Email] {
            let html = render(
                "<script>alert(1)</script>\n\nRestart <b onclick=\"x()\">now</b>.\n",
                medium,
            );
            assert_eq!(
                html,
                "<p>&lt;script&gt;alert(1)&lt;/script&gt;\n</p>\n\
                 <p>Restart &lt;b onclick=\"x()\"&gt;now&lt;/b&gt;.</p>\n",
                "{medium:?}"
            );
        }
    }

    /// Script and data URLs in links and images are neutralised; web and mail links are kept;
    /// anchors and relative paths are kept on the page but not in mail, where they lead
    /// nowhere; images become links to themselves, so neither the page nor a mail loads
    /// anything from elsewhere.
    #[test]
    fn only_safe_link_targets_survive_and_images_are_never_loaded() {
        let links = "[a](javascript:alert(1)) [b]( JavaScript:x) [c](data:text/html,x) \
                     [d](https://status.example.com/) [e](#step-2) [f](docs/runbook.md) \
                     ![g](https://example.com/x.png) [h](mailto:oncall@example.com) \
                     ![i](javascript:alert(2))";
        for (medium, anchor, relative) in [
            (Medium::Page, "#step-2", "docs/runbook.md"),
            (Medium::Email, "#", "#"),
        ] {
            let html = render(links, medium);
            assert!(!html.to_lowercase().contains("javascript"), "{html}");
            assert!(!html.contains("data:"), "{html}");
            assert!(!html.contains("<img"), "{html}");
            for kept in [
                "<a href=\"#\">a</a>".to_owned(),
                "<a href=\"https://status.example.com/\">d</a>".to_owned(),
                format!("<a href=\"{anchor}\">e</a>"),
                format!("<a href=\"{relative}\">f</a>"),
                "<a href=\"https://example.com/x.png\">g</a>".to_owned(),
                "<a href=\"mailto:oncall@example.com\">h</a>".to_owned(),
                "<a href=\"#\">i</a>".to_owned(),
            ] {
                assert!(html.contains(&kept), "{medium:?}: {kept} in {html}");
            }
        }
    }

    /// A protocol-relative link (`//host`, or `/\host` as browsers read it) leaves honeyguide:
    /// it is external without a scheme, so it is neutralised, not kept as a relative path.
    #[test]
    fn protocol_relative_links_are_external_not_relative() {
        let links = "[a](//evil.example/x) [b](/\\evil.example) [c](< //evil.example/y>) \
                     [d](/docs/runbook.md) [e](docs/runbook.md)";
        let html = render(links, Medium::Page);
        assert!(!html.contains("evil.example"), "{html}");
        for kept in [
            "<a href=\"#\">a</a>",
            "<a href=\"#\">b</a>",
            "<a href=\"#\">c</a>",
            "<a href=\"/docs/runbook.md\">d</a>",
            "<a href=\"docs/runbook.md\">e</a>",
        ] {
            assert!(html.contains(kept), "{kept} in {html}");
        }
        assert!(!render(links, Medium::Email).contains("evil.example"));
    }

    /// A `#` heading in a rule's recovery text sits below the headings around it: the
    /// diagnosis's `h3` and `h4` on the page, the alert's `h2` and `h3` in mail.
    #[test]
    fn headings_are_demoted() {
        assert_eq!(render("# First\n", Medium::Page), "<h5>First</h5>\n");
        assert_eq!(render("### Deep\n", Medium::Page), "<h6>Deep</h6>\n");
        assert_eq!(render("# First\n", Medium::Email), "<h4>First</h4>\n");
    }

    #[test]
    fn safe_links_are_absolute_web_or_mail_addresses() {
        for safe in [
            "https://x.example/",
            "HTTP://x.example/",
            " https://x.example/",
            "mailto:a@b",
        ] {
            assert!(is_safe_link(safe), "{safe:?}");
        }
        for unsafe_ in [
            "javascript:alert(1)",
            " JavaScript:x",
            "java\tscript:x",
            "data:text/html,x",
            "vbscript:x",
            "#anchor",
            "docs/runbook.md",
            "16-failure-modes.md#neon-down",
            "",
        ] {
            assert!(!is_safe_link(unsafe_), "{unsafe_:?}");
        }
    }

    /// A runbook reference is a link only when it is a web or mail address; anything else is
    /// shown as code, escaped.
    #[test]
    fn references_are_links_or_code() {
        assert_eq!(
            link_or_code("https://runbooks.example/a?b=1&c=2").to_string(),
            "<a href=\"https://runbooks.example/a?b=1&amp;c=2\" rel=\"noreferrer\">\
             https://runbooks.example/a?b=1&amp;c=2</a>"
        );
        assert_eq!(
            link_or_code("16-failure-modes.md#x").to_string(),
            "<code>16-failure-modes.md#x</code>"
        );
        assert_eq!(
            link_or_code("javascript:alert(\"x\")").to_string(),
            "<code>javascript:alert(&quot;x&quot;)</code>"
        );
    }
}
