//! Where each byte of a decoded TOML string was written in the file.
//!
//! A rule's `when` expression is a TOML string, and CEL reports positions inside the decoded
//! string. To point an operator at the right line and column of the file, every decoded byte is
//! mapped back to the raw text, through the quotes, escapes and line-ending backslashes of TOML's
//! four string forms. When the mapping cannot be trusted (it does not reproduce the value TOML
//! decoded), every position falls back to the start of the value: less precise, never wrong.

use std::ops::Range;

/// For each byte of a decoded string value, the byte offset in the file it came from.
#[derive(Clone, Debug)]
pub(crate) struct StringMap {
    /// One entry per decoded byte, plus one for the end of the string (its closing quote).
    offsets: Vec<usize>,
}

impl StringMap {
    /// Maps `decoded`, the value TOML produced from the raw text at `span` of `file_text`.
    pub(crate) fn new(file_text: &str, span: &Range<usize>, decoded: &str) -> Self {
        let raw = file_text.get(span.clone()).unwrap_or_default();
        match decode(raw) {
            Some((text, offsets)) if text == decoded => Self {
                offsets: offsets.into_iter().map(|at| span.start + at).collect(),
            },
            _ => Self {
                offsets: vec![span.start; decoded.len() + 1],
            },
        }
    }

    /// The file offset of byte `offset` of the decoded string (the end of the string if past it).
    pub(crate) fn file_offset(&self, offset: usize) -> usize {
        self.offsets
            .get(offset)
            .or(self.offsets.last())
            .copied()
            .unwrap_or_default()
    }
}

/// Decodes a raw TOML string value, returning the text and, per decoded byte, its raw offset.
/// `None` for anything that is not a well-formed string (TOML already accepted it, so that means
/// a form this decoder does not know, and the caller falls back).
fn decode(raw: &str) -> Option<(String, Vec<usize>)> {
    let (delimiter, multiline, literal) = if raw.starts_with("\"\"\"") {
        ("\"\"\"", true, false)
    } else if raw.starts_with("'''") {
        ("'''", true, true)
    } else if raw.starts_with('"') {
        ("\"", false, false)
    } else if raw.starts_with('\'') {
        ("'", false, true)
    } else {
        return None;
    };
    let end = raw.len().checked_sub(delimiter.len())?;
    let body = raw.get(..end)?;
    let mut at = delimiter.len();
    if multiline {
        // TOML trims a newline immediately following the opening delimiter.
        if body.get(at..)?.starts_with("\r\n") {
            at += 2;
        } else if body.get(at..)?.starts_with('\n') {
            at += 1;
        }
    }
    let mut text = String::new();
    let mut offsets = Vec::new();
    while at < end {
        let rest = body.get(at..)?;
        let first = rest.chars().next()?;
        if literal || first != '\\' {
            push(&mut text, &mut offsets, first, at);
            at += first.len_utf8();
            continue;
        }
        let escape = rest.get(1..)?.chars().next()?;
        let (decoded, length) = match escape {
            'b' => ('\u{8}', 2),
            't' => ('\t', 2),
            'n' => ('\n', 2),
            'f' => ('\u{c}', 2),
            'r' => ('\r', 2),
            'e' => ('\u{1b}', 2),
            '"' => ('"', 2),
            '\\' => ('\\', 2),
            'x' => (hex(rest.get(2..4)?)?, 4),
            'u' => (hex(rest.get(2..6)?)?, 6),
            'U' => (hex(rest.get(2..10)?)?, 10),
            // A line-ending backslash swallows the newline and all whitespace after it.
            _ if multiline && escape.is_whitespace() => {
                let tail = rest.get(1..)?;
                at += 1 + tail
                    .find(|c: char| !c.is_whitespace())
                    .unwrap_or(tail.len());
                continue;
            }
            _ => return None,
        };
        push(&mut text, &mut offsets, decoded, at);
        at += length;
    }
    offsets.push(end);
    Some((text, offsets))
}

fn push(text: &mut String, offsets: &mut Vec<usize>, decoded: char, at: usize) {
    text.push(decoded);
    offsets.extend(std::iter::repeat_n(at, decoded.len_utf8()));
}

fn hex(digits: &str) -> Option<char> {
    u32::from_str_radix(digits, 16)
        .ok()
        .and_then(char::from_u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Maps `value` as written in `toml`, checking the decoded text round-trips.
    fn map(toml: &str, decoded: &str) -> (StringMap, usize) {
        let start = toml.find('=').unwrap() + 2;
        let span = start..toml.trim_end().len();
        let map = StringMap::new(toml, &span, decoded);
        (map, start)
    }

    #[test]
    fn basic_strings_skip_the_quote_and_escapes() {
        let toml = r#"when = "a\"b\u00e9c""#;
        let (map, start) = map(toml, "a\"béc");
        assert_eq!(map.file_offset(0), start + 1);
        assert_eq!(
            map.file_offset(1),
            start + 2,
            "the escaped quote starts at its backslash"
        );
        assert_eq!(map.file_offset(2), start + 4);
        assert_eq!(
            map.file_offset(3),
            start + 5,
            "é (two bytes) comes from \\u00e9"
        );
        assert_eq!(map.file_offset(4), start + 5);
        assert_eq!(map.file_offset(5), start + 11);
    }

    #[test]
    fn multiline_literal_strings_trim_the_first_newline() {
        let toml = "when = '''\n  a &&\n  b'''";
        let (map, start) = map(toml, "  a &&\n  b");
        assert_eq!(
            map.file_offset(2),
            start + 6,
            "`a` on the second line of the file"
        );
        assert_eq!(map.file_offset(9), toml.rfind('b').unwrap());
    }

    #[test]
    fn multiline_basic_strings_follow_line_ending_backslashes() {
        let toml = "when = \"\"\"\na && \\\n    b\"\"\"";
        let (map, _) = map(toml, "a && b");
        assert_eq!(map.file_offset(5), toml.rfind('b').unwrap());
    }

    #[test]
    fn a_mismatch_falls_back_to_the_start_of_the_value() {
        let toml = "when = \"abc\"";
        let (map, start) = map(toml, "something else");
        assert_eq!(map.file_offset(3), start);
    }
}
