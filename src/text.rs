//! Text from outside made safe for one line: probe messages, notifier errors and logged values
//! that quote what a server, a receiver or an API caller said.
//!
//! A message is shown in a `check` table row, a log line, a `/status` field and the page; a raw
//! newline breaks the first two, and an ANSI escape or a carriage return can rewrite what an
//! operator's terminal shows. So control characters are escaped (never dropped: `\n`, `\r`,
//! `\t`, `\x1b`, `\u{2028}`, so what the peer really sent stays visible) and the length is bounded
//! with an ellipsis, because a peer decides how much it says.

/// Longest message, in characters, that [`one_line`] is usually given as its bound: probe
/// messages and notifier errors.
pub const MESSAGE_MAX: usize = 512;

/// `text` on one line: control and line-separator characters escaped, at most `max` characters
/// (the last one `…` when it was cut). An escape is never cut in half.
pub fn one_line(text: &str, max: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max.saturating_mul(4)));
    let mut length = 0;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        let piece = escape(c);
        let piece_length = piece.chars().count();
        // Room for the piece, and for an ellipsis if more follows.
        let room = if chars.peek().is_some() {
            max.saturating_sub(1)
        } else {
            max
        };
        if length + piece_length > room {
            out.push('…');
            return out;
        }
        out.push_str(&piece);
        length += piece_length;
    }
    out
}

/// The start of raw bytes a peer sent, as a quoted one-line excerpt: printable ASCII as is,
/// everything else escaped (`"HTTP/1.1 400 Bad Request\r\n…"`), at most `max` bytes of it.
pub fn excerpt(bytes: &[u8], max: usize) -> String {
    let mut out = String::from("\"");
    for &byte in bytes.iter().take(max) {
        match byte {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            0x20..=0x7e => out.push(char::from(byte)),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            other => out.push_str(&format!("\\x{other:02x}")),
        }
    }
    out.push('"');
    if bytes.len() > max {
        out.push('…');
    }
    out
}

fn escape(c: char) -> std::borrow::Cow<'static, str> {
    use std::borrow::Cow;
    match c {
        '\n' => Cow::Borrowed("\\n"),
        '\r' => Cow::Borrowed("\\r"),
        '\t' => Cow::Borrowed("\\t"),
        // C0 controls and DEL as \xNN, the way a terminal escape is usually written (`\x1b`).
        c if c.is_ascii_control() => Cow::Owned(format!("\\x{:02x}", u32::from(c))),
        // C1 controls, the Unicode line and paragraph separators, and the bidirectional
        // overrides that make a line display as something else than it says.
        c if c.is_control()
            || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}') =>
        {
            Cow::Owned(format!("\\u{{{:x}}}", u32::from(c)))
        }
        c => {
            let mut text = String::with_capacity(4);
            text.push(c);
            Cow::Owned(text)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_not_dropped() {
        assert_eq!(
            one_line("line one\nline two\r\n\x1b[31mred\x1b[0m\ttab\0", 100),
            "line one\\nline two\\r\\n\\x1b[31mred\\x1b[0m\\ttab\\x00"
        );
        assert_eq!(
            one_line("a\u{2028}b\u{9b}c\u{202e}d", 100),
            "a\\u{2028}b\\u{9b}c\\u{202e}d"
        );
        assert_eq!(
            one_line("plain text, ünïcödé · ok", 100),
            "plain text, ünïcödé · ok"
        );
    }

    #[test]
    fn long_text_is_cut_with_an_ellipsis_within_the_bound() {
        assert_eq!(one_line("abcdef", 6), "abcdef");
        assert_eq!(one_line("abcdefg", 6), "abcde…");
        let cut = one_line(&"x".repeat(10_000), MESSAGE_MAX);
        assert_eq!(cut.chars().count(), MESSAGE_MAX);
        assert!(cut.ends_with('…'));
        // An escape does not fit: it is left out whole, not cut in half.
        assert_eq!(one_line("abc\x1bdef", 6), "abc…");
    }

    #[test]
    fn excerpts_quote_bytes_escaped_and_bounded() {
        assert_eq!(
            excerpt(b"HTTP/1.1 400 Bad Request\r\n", 64),
            "\"HTTP/1.1 400 Bad Request\\r\\n\""
        );
        assert_eq!(
            excerpt(b"\x1b[31m\"q\"\xff", 64),
            "\"\\x1b[31m\\\"q\\\"\\xff\""
        );
        assert_eq!(excerpt(b"abcdef", 3), "\"abc\"…");
    }
}
