//! Where a configuration value came from, and the error type that says so.
//!
//! Every problem found while loading `probes.toml` becomes a [`ConfigError`] that names the file,
//! the line and column, and the key, so an operator can jump straight to it. Loading collects all
//! of them before giving up ([`ErrorSink`]), because fixing a config one error per restart is
//! miserable.

use std::fmt;
use std::io::Read as _;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use toml::Spanned;
use toml::de::{DeValue, ValueDeserializer};

use super::Secret;

/// One problem in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file the problem is in.
    pub file: PathBuf,
    /// 1-based line of the offending key or value.
    pub line: usize,
    /// 1-based column of the offending key or value.
    pub column: usize,
    /// Dotted path of the key, e.g. `probe[edge-api].timeout`; empty for syntax errors.
    pub key: String,
    /// What is wrong, lowercase, without a trailing period.
    pub message: String,
}

impl ConfigError {
    /// A file (or directory) that could not be read at all: no line or key to point at.
    pub fn unreadable(path: &Path, error: &std::io::Error) -> Self {
        Self {
            file: path.to_owned(),
            line: 0,
            column: 0,
            key: String::new(),
            message: format!("cannot read: {error}"),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.file.display(), self.line, self.column)?;
        if !self.key.is_empty() {
            write!(f, "{}: ", self.key)?;
        }
        f.write_str(&self.message)
    }
}

/// Every problem found in one load, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, error) in self.0.iter().enumerate() {
            if index > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// The text of one configuration file, with what is needed to turn byte offsets into lines.
#[derive(Debug)]
pub struct Source {
    path: PathBuf,
    text: String,
    line_starts: Vec<usize>,
}

impl Source {
    /// Wraps already-read text; `path` is used only for messages and relative paths.
    pub fn new(path: impl Into<PathBuf>, text: String) -> Self {
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(index, _)| index + 1))
            .collect();
        Self {
            path: path.into(),
            text,
            line_starts,
        }
    }

    /// Reads `path`, refusing a file longer than `limit` bytes (when given) and pointing at the
    /// first byte that is not UTF-8, so neither a huge file nor a stray Latin-1 byte is
    /// reported without a position.
    pub fn read(path: &Path, limit: Option<u64>) -> Result<Self, ConfigError> {
        let unreadable = |error: std::io::Error| ConfigError::unreadable(path, &error);
        let file = std::fs::File::open(path).map_err(unreadable)?;
        let mut bytes = Vec::new();
        match limit {
            Some(limit) => {
                file.take(limit.saturating_add(1))
                    .read_to_end(&mut bytes)
                    .map_err(unreadable)?;
                if u64::try_from(bytes.len()).unwrap_or(u64::MAX) > limit {
                    let size = std::fs::metadata(path).map_or(0, |metadata| metadata.len());
                    return Err(ConfigError {
                        file: path.to_owned(),
                        line: 1,
                        column: 1,
                        key: String::new(),
                        message: format!(
                            "the file is {} bytes, over the limit of {limit} bytes",
                            size.max(limit + 1)
                        ),
                    });
                }
            }
            None => {
                let mut file = file;
                file.read_to_end(&mut bytes).map_err(unreadable)?;
            }
        }
        match String::from_utf8(bytes) {
            Ok(text) => Ok(Self::new(path, text)),
            Err(error) => {
                let bytes = error.as_bytes();
                let valid = error.utf8_error().valid_up_to();
                let prefix = String::from_utf8_lossy(&bytes[..valid]);
                let line = prefix.matches('\n').count() + 1;
                let column = prefix
                    .rsplit('\n')
                    .next()
                    .map_or(0, |last| last.chars().count())
                    + 1;
                Err(ConfigError {
                    file: path.to_owned(),
                    line,
                    column,
                    key: String::new(),
                    message: format!(
                        "not valid UTF-8 (byte 0x{:02x} here); save the file as UTF-8",
                        bytes.get(valid).copied().unwrap_or_default()
                    ),
                })
            }
        }
    }

    /// A TOML syntax error, located; a duplicate key is named (TOML only says "duplicate key").
    pub fn syntax_error(&self, error: &toml::de::Error) -> ConfigError {
        let span = error.span().unwrap_or(0..0);
        let message = error.message().trim_end();
        let name = self
            .text
            .get(span.clone())
            .map(|key| key.trim().trim_matches(['"', '\'']))
            .filter(|key| !key.is_empty() && !key.contains('\n'));
        match name {
            Some(key) if message == "duplicate key" => self.error(
                &span,
                key,
                format!("duplicate key `{key}`: it is already set above"),
            ),
            _ => self.error(&span, "", message),
        }
    }

    /// The file this text was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The whole text.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// 1-based line and column of a byte offset.
    pub fn locate(&self, offset: usize) -> (usize, usize) {
        let line_index = match self.line_starts.binary_search(&offset) {
            Ok(index) => index,
            Err(index) => index.saturating_sub(1),
        };
        let line_start = self.line_starts.get(line_index).copied().unwrap_or(0);
        let column = self
            .text
            .get(line_start..offset.min(self.text.len()))
            .map_or(1, |prefix| prefix.chars().count() + 1);
        (line_index + 1, column)
    }

    /// Builds an error located at `span`.
    pub fn error(&self, span: &Range<usize>, key: &str, message: impl Into<String>) -> ConfigError {
        let (line, column) = self.locate(span.start);
        ConfigError {
            file: self.path.clone(),
            line,
            column,
            key: key.to_owned(),
            message: message.into(),
        }
    }
}

/// Collects errors during one load so that all of them can be reported at once.
#[derive(Debug)]
pub struct ErrorSink<'a> {
    source: &'a Source,
    errors: Vec<ConfigError>,
    tainted: Vec<Tainted>,
}

impl<'a> ErrorSink<'a> {
    /// Starts an empty collection for `source`.
    pub fn new(source: &'a Source) -> Self {
        Self {
            source,
            errors: Vec::new(),
            tainted: Vec::new(),
        }
    }

    /// Marks a value no error may quote (see [`Tainted`]).
    pub fn taint(&mut self, tainted: Tainted) {
        self.tainted.push(tainted);
    }

    /// The file being loaded.
    pub fn source(&self) -> &'a Source {
        self.source
    }

    /// Records a problem at `span`.
    pub fn push(&mut self, span: &Range<usize>, key: &str, message: impl Into<String>) {
        let mut message = self.redact(message.into());
        // At the value itself, a message may quote a piece of it too short to recognise
        // anywhere else (humantime's `unknown time unit "xq"`).
        for tainted in self.tainted.iter().filter(|tainted| tainted.is_at(span)) {
            if let Some(redacted) = tainted.redact_pieces(&message) {
                message = redacted;
            }
        }
        self.errors.push(self.source.error(span, key, message));
    }

    /// Records a problem already located (a syntax error).
    pub fn push_error(&mut self, mut error: ConfigError) {
        error.message = self.redact(error.message);
        self.errors.push(error);
    }

    /// `message` without any tainted value in it.
    fn redact(&self, mut message: String) -> String {
        for tainted in &self.tainted {
            if let Some(redacted) = tainted.redact(&message) {
                message = redacted;
            }
        }
        message
    }

    /// Whether anything was recorded.
    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }

    /// How many problems were recorded so far (to tell whether a step added any).
    pub fn len(&self) -> usize {
        self.errors.len()
    }

    /// Deserializes one TOML value into `T`; on failure records the error at the value's own
    /// position (or the position serde pointed at) and returns `None`.
    pub fn deserialize<T: DeserializeOwned>(
        &mut self,
        value: Spanned<DeValue<'_>>,
        key: &str,
    ) -> Option<T> {
        self.deserialize_with_hints(value, key, &[])
    }

    /// [`ErrorSink::deserialize`], also suggesting `also_valid` keys (valid elsewhere in the same
    /// table) when an unknown key looks like a typo of one of them.
    pub fn deserialize_with_hints<T: DeserializeOwned>(
        &mut self,
        value: Spanned<DeValue<'_>>,
        key: &str,
        also_valid: &[&str],
    ) -> Option<T> {
        let fallback = value.span();
        let mut keys = Vec::new();
        index_keys(&value, key, &mut keys);
        match T::deserialize(ValueDeserializer::from(value)) {
            Ok(parsed) => Some(parsed),
            Err(error) => {
                let span = error.span().unwrap_or(fallback);
                let key = innermost_key(&keys, span.start).unwrap_or(key);
                let message = with_typo_hint(error.message().trim_end(), also_valid);
                self.push(&span, key, message);
                None
            }
        }
    }

    /// Ends the load: `Ok(value)` when nothing was recorded.
    pub fn finish<T>(mut self, value: T) -> Result<T, ConfigErrors> {
        if self.errors.is_empty() {
            return Ok(value);
        }
        // Values tainted after an error was recorded (the contents of `*_file`s, known once
        // the section is built) are taken out too.
        let mut errors = std::mem::take(&mut self.errors);
        for error in &mut errors {
            error.message = self.redact(std::mem::take(&mut error.message));
        }
        errors.sort_by_key(|error| (error.line, error.column));
        Err(ConfigErrors(errors))
    }
}

// === values no error may quote ===

/// A value that came from outside the file (`${ENV}`, or the contents of a `*_file`), which no
/// error may quote: a port written as `"${SMTP_PASSWORD}"` by mistake must not print the
/// password in its type error.
#[derive(Clone, Debug)]
pub struct Tainted {
    /// Where it was written, for `${ENV}` (`None` for a file's contents).
    pub span: Option<Range<usize>>,
    /// The key it is the value of (`notifier[mail].port`, `password_file`).
    pub key: String,
    /// Where it came from, as errors name it: `` `${SMTP_PASSWORD}` `` or `` `password_file` ``.
    pub origin: String,
    /// The value itself (a [`Secret`], so that not even `Debug` of the sink shows it).
    pub value: Secret,
}

impl Tainted {
    /// Whether an error at `span` is at this value.
    fn is_at(&self, span: &Range<usize>) -> bool {
        self.span
            .as_ref()
            .is_some_and(|own| own.contains(&span.start))
    }

    /// `message` replaced when something it quotes (in backticks or double quotes) is a piece
    /// of this value; `None` otherwise.
    fn redact_pieces(&self, message: &str) -> Option<String> {
        let value = self.value.expose();
        let quotes_a_piece = ['`', '"'].into_iter().any(|quote| {
            message
                .split(quote)
                .skip(1)
                .step_by(2)
                .any(|quoted| !quoted.trim().is_empty() && value.contains(quoted))
        });
        quotes_a_piece.then(|| format!("the value from {} is not valid here", self.origin))
    }

    /// `message` without this value: the value's mentions replaced by where it came from, or,
    /// when it is quoted in a form that cannot be cut out, the whole message replaced by one
    /// that says only what was expected. `None` when the message does not mention it.
    fn redact(&self, message: &str) -> Option<String> {
        let value = self.value.expose().trim();
        if value.is_empty() || !mentions(message, value) {
            return None;
        }
        let replacement = format!("the value from {}", self.origin);
        // serde's own wording: `invalid type: string "hunter2", expected u16`.
        let from_serde = ["invalid type:", "invalid value:", "unknown variant"]
            .iter()
            .any(|start| message.starts_with(start));
        if !from_serde {
            let escaped = value.escape_debug().to_string();
            let mut out = message.to_owned();
            for form in [
                format!("`{value}`"),
                format!("\"{escaped}\""),
                format!("'{value}'"),
                value.to_owned(),
                escaped,
            ] {
                if form.chars().count() >= 4 || form.starts_with(['`', '"', '\'']) {
                    out = out.replace(&form, &replacement);
                }
            }
            if !mentions(&out, value) {
                return Some(out);
            }
        }
        let expected = message
            .rfind("expected ")
            .map(|at| &message[at..])
            .filter(|tail| !mentions(tail, value))
            .map_or_else(String::new, |tail| format!(": {tail}"));
        Some(format!("{replacement} is not valid here{expected}"))
    }
}

/// Whether `text` quotes `value`, or a good part of it: a short value only when quoted (`0`
/// is in many messages), a longer one anywhere, and any eight characters of a long one (a
/// message may quote a piece, such as a URL's path).
fn mentions(text: &str, value: &str) -> bool {
    let escaped = value.escape_debug().to_string();
    let quoted = [
        format!("`{value}`"),
        format!("\"{escaped}\""),
        format!("'{value}'"),
    ];
    if quoted.iter().any(|form| text.contains(form.as_str())) {
        return true;
    }
    let chars: Vec<char> = value.chars().collect();
    if chars.len() < 4 {
        return false;
    }
    if text.contains(value) || text.contains(escaped.as_str()) {
        return true;
    }
    // Windows that are a plain lowercase word (`password`) are in many messages by chance.
    chars.len() > 8
        && chars.windows(8).any(|window| {
            !window
                .iter()
                .all(|c| c.is_ascii_lowercase() || *c == '_' || c.is_whitespace())
                && text.contains(window.iter().collect::<String>().as_str())
        })
}

/// Appends "did you mean `x`?" to serde's unknown-field message when the unknown key is a near
/// miss of a valid one (`timout` for `timeout`).
pub(crate) fn with_typo_hint(message: &str, also_valid: &[&str]) -> String {
    let Some(unknown) = message
        .strip_prefix("unknown field `")
        .and_then(|rest| rest.split('`').next())
    else {
        return message.to_owned();
    };
    // serde lists the valid keys as `a`, `b`, ... after "expected".
    let listed = message
        .split_once("expected")
        .map(|(_, list)| list.split('`').skip(1).step_by(2).collect::<Vec<_>>())
        .unwrap_or_default();
    let best = listed
        .iter()
        .chain(also_valid)
        .map(|candidate| (edit_distance(unknown, candidate), *candidate))
        .filter(|(distance, _)| *distance <= 2)
        .min();
    match best {
        Some((_, candidate)) => format!("{message}; did you mean `{candidate}`?"),
        None => message.to_owned(),
    }
}

/// `; did you mean `x`?` when `unknown` is a near miss of one of `candidates`, else nothing.
/// A near miss is at most two edits away, or a third of the name for longer names
/// (`uptime_in_secnds` for `uptime_seconds`).
pub(crate) fn did_you_mean(unknown: &str, candidates: &[&str]) -> String {
    let allowed = (unknown.chars().count() / 3).max(2);
    candidates
        .iter()
        .map(|candidate| (edit_distance(unknown, candidate), *candidate))
        .filter(|(distance, _)| *distance <= allowed)
        .min()
        .map(|(_, candidate)| format!("; did you mean `{candidate}`?"))
        .unwrap_or_default()
}

/// Levenshtein distance, for typo hints on short keys.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != *cb);
            current.push(substitution.min(previous[j + 1] + 1).min(current[j] + 1));
        }
        previous = current;
    }
    previous[b.len()]
}

/// Records, for every key under `value`, its dotted path and the byte range from the key to the
/// end of its value, so a serde error position can be turned back into a key path.
fn index_keys(value: &Spanned<DeValue<'_>>, path: &str, out: &mut Vec<(String, Range<usize>)>) {
    match value.get_ref() {
        DeValue::Table(table) => {
            for (name, item) in table.iter() {
                let child = format!("{path}.{}", name.get_ref());
                let range = name.span().start.min(item.span().start)..item.span().end;
                out.push((child.clone(), range));
                index_keys(item, &child, out);
            }
        }
        DeValue::Array(items) => {
            for (index, item) in items.iter().enumerate() {
                let child = format!("{path}[{index}]");
                out.push((child.clone(), item.span()));
                index_keys(item, &child, out);
            }
        }
        _ => {}
    }
}

/// The deepest indexed key whose range holds `offset`.
fn innermost_key(keys: &[(String, Range<usize>)], offset: usize) -> Option<&str> {
    keys.iter()
        .filter(|(_, range)| range.contains(&offset))
        .min_by_key(|(_, range)| range.len())
        .map(|(path, _)| path.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_close_to_a_valid_one_get_a_hint() {
        assert_eq!(
            with_typo_hint(
                "unknown field `timout`, expected `url` or `method`",
                &["timeout"]
            ),
            "unknown field `timout`, expected `url` or `method`; did you mean `timeout`?"
        );
        assert_eq!(
            with_typo_hint("unknown field `metod`, expected `url` or `method`", &[]),
            "unknown field `metod`, expected `url` or `method`; did you mean `method`?"
        );
        assert_eq!(
            with_typo_hint("unknown field `colour`, expected `url`", &["timeout"]),
            "unknown field `colour`, expected `url`"
        );
    }

    fn tainted(value: &str) -> Tainted {
        Tainted {
            span: Some(10..20),
            key: "notifier[mail].port".to_owned(),
            origin: "`${PW}`".to_owned(),
            value: Secret::new(value),
        }
    }

    /// A tainted value is cut out of every message that quotes it, whole, escaped or in part;
    /// a short one only where it is quoted, since `0` is in many messages.
    #[test]
    fn tainted_values_are_never_quoted() {
        let pw = tainted("hunter2\"x");
        assert_eq!(
            pw.redact("invalid type: string \"hunter2\\\"x\", expected u16")
                .as_deref(),
            Some("the value from `${PW}` is not valid here: expected u16")
        );
        assert_eq!(
            pw.redact("`hunter2\"x` is not a host name").as_deref(),
            Some("the value from `${PW}` is not a host name")
        );
        let hook = tainted("hooks.slack.com/services/T000/B000/XXXXSECRET");
        assert_eq!(
            hook.redact("cannot reach B000/XXXXSECRET").as_deref(),
            Some("the value from `${PW}` is not valid here")
        );
        assert_eq!(hook.redact("not a URL: relative URL without a base"), None);
        let short = tainted("0");
        assert_eq!(short.redact("must be at least 10ms"), None);
        assert_eq!(
            short.redact("`0` is not a day").as_deref(),
            Some("the value from `${PW}` is not a day")
        );
        assert_eq!(
            tainted("password1").redact("set `password` or `password_file`"),
            None
        );
        let duration = tainted("9xq");
        assert_eq!(
            duration
                .redact_pieces("unknown time unit \"xq\", supported units: ns, us")
                .as_deref(),
            Some("the value from `${PW}` is not valid here")
        );
        assert_eq!(duration.redact_pieces("must be at least `1s`"), None);
    }

    /// Any error quoting a tainted value is redacted, wherever it is; the contents of a file
    /// tainted after the error was recorded are cut out when the load finishes.
    #[test]
    fn the_sink_redacts_and_names_where_a_value_came_from() {
        let source = Source::new("probes.toml", " ".repeat(40));
        let mut sink = ErrorSink::new(&source);
        sink.taint(tainted("s3cret-value"));
        sink.push(&(12..14), "notifier[mail].port", "must be at least 1");
        sink.push(
            &(12..14),
            "notifier[mail].port",
            "invalid type: string \"s3cret-value\", expected u16",
        );
        sink.push(&(30..31), "other", "`s3cret-value` was seen here");
        sink.push(&(32..33), "third", "cannot parse: f1le-s3cret is bad");
        sink.taint(Tainted {
            span: None,
            key: "dsn_file".to_owned(),
            origin: "`dsn_file`".to_owned(),
            value: Secret::new("f1le-s3cret\n"),
        });
        let errors: Vec<String> = sink
            .finish(())
            .unwrap_err()
            .0
            .iter()
            .map(|error| format!("{}: {}", error.key, error.message))
            .collect();
        assert_eq!(
            errors,
            [
                "notifier[mail].port: must be at least 1",
                "notifier[mail].port: the value from `${PW}` is not valid here: expected u16",
                "other: the value from `${PW}` was seen here",
                "third: cannot parse: the value from `dsn_file` is bad",
            ]
        );
    }

    #[test]
    fn locate_counts_lines_and_columns_from_one() {
        let source = Source::new("p.toml", "a = 1\nbb = 2\n".to_owned());
        assert_eq!(source.locate(0), (1, 1));
        assert_eq!(source.locate(6), (2, 1));
        assert_eq!(source.locate(8), (2, 3));
    }

    #[test]
    fn display_names_file_line_column_and_key() {
        let source = Source::new("probes.toml", "x\ny = 2\n".to_owned());
        let error = source.error(&(2..3), "probe[a].timeout", "bad duration");
        assert_eq!(
            error.to_string(),
            "probes.toml:2:1: probe[a].timeout: bad duration"
        );
    }
}
