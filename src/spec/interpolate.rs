//! `${VAR}` interpolation of string values in configuration files.
//!
//! Interpolation runs on the parsed TOML tree, value by value, never on the raw text: a value can
//! then never break the TOML syntax, error positions stay exact, and a secret that arrives through
//! the environment is never echoed by a syntax error that quotes a source line.
//!
//! Forms: `${NAME}` (an error if unset), `${NAME:-default}` (the default when unset or empty) and
//! `$$` for a literal `$`.
//!
//! Every value taken from the environment is marked on the [`ErrorSink`] ([`Tainted`]), with
//! the span and key it was written at, and no error of the load quotes it (`port = "${PASSWORD}"` by mistake reads "the
//! value from `${PASSWORD}` is not valid here: expected u16").

use std::borrow::Cow;

use toml::Spanned;
use toml::de::DeValue;

use super::Secret;
use super::source::{ErrorSink, Tainted};

/// Looks up one environment variable; tests pass a closure instead of mutating the process env.
pub type Lookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Replaces `${...}` in every string of `value`, recording an error for each unresolvable one.
pub fn interpolate_tree(
    value: &mut Spanned<DeValue<'_>>,
    key: &str,
    lookup: Lookup<'_>,
    sink: &mut ErrorSink<'_>,
) {
    let span = value.span();
    match value.get_mut() {
        DeValue::String(text) => {
            if !text.contains('$') {
                return;
            }
            match interpolate_tracked(text, lookup) {
                Ok((replaced, taken)) => {
                    *text = Cow::Owned(replaced);
                    for (name, value) in taken {
                        sink.taint(Tainted {
                            span: Some(span.clone()),
                            key: key.to_owned(),
                            origin: format!("`${{{name}}}`"),
                            value: Secret::new(value),
                        });
                    }
                }
                Err(message) => sink.push(&span, key, message),
            }
        }
        DeValue::Array(items) => {
            for (index, item) in items.iter_mut().enumerate() {
                // Name `[[probe]]`-style entries by their `name` when they have one.
                let name = item
                    .get_ref()
                    .get("name")
                    .and_then(|name| name.get_ref().as_str())
                    .map_or_else(|| index.to_string(), str::to_owned);
                interpolate_tree(item, &format!("{key}[{name}]"), lookup, sink);
            }
        }
        DeValue::Table(table) => {
            for (name, item) in table.iter_mut() {
                let child = if key.is_empty() {
                    name.get_ref().to_string()
                } else {
                    format!("{key}.{}", name.get_ref())
                };
                interpolate_tree(item, &child, lookup, sink);
            }
        }
        DeValue::Integer(_) | DeValue::Float(_) | DeValue::Boolean(_) | DeValue::Datetime(_) => {}
    }
}

/// Interpolates one string.
///
/// The error names the variable but never its value.
pub fn interpolate(text: &str, lookup: Lookup<'_>) -> Result<String, String> {
    interpolate_tracked(text, lookup).map(|(out, _)| out)
}

/// [`interpolate`], also returning each variable taken from the environment with its value:
/// the values no error may quote (defaults are written in the file, and may be quoted).
fn interpolate_tracked(
    text: &str,
    lookup: Lookup<'_>,
) -> Result<(String, Vec<(String, String)>), String> {
    let mut taken = Vec::new();
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(dollar) = rest.find('$') {
        out.push_str(&rest[..dollar]);
        let after = &rest[dollar + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body) = after.strip_prefix('{') {
            let close = body
                .find('}')
                .ok_or_else(|| "unterminated `${` in value".to_owned())?;
            let (value, from_environment) = expand(&body[..close], lookup)?;
            if let Some(name) = from_environment {
                taken.push((name.to_owned(), value.clone()));
            }
            out.push_str(&value);
            rest = &body[close + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok((out, taken))
}

/// The value of one `${...}`, and the variable's name when the value came from it.
fn expand<'e>(
    expression: &'e str,
    lookup: Lookup<'_>,
) -> Result<(String, Option<&'e str>), String> {
    let (name, default) = match expression.split_once(":-") {
        Some((name, default)) => (name, Some(default)),
        None => (expression, None),
    };
    if !is_variable_name(name) {
        return Err(format!(
            "`${{{name}}}` is not a valid environment variable name"
        ));
    }
    match (lookup(name).filter(|value| !value.is_empty()), default) {
        (Some(value), _) => Ok((value, Some(name))),
        (None, Some(default)) => Ok((default.to_owned(), None)),
        (None, None) => Err(format!(
            "environment variable `{name}` is not set (write `${{{name}:-default}}` for a default)"
        )),
    }
}

fn is_variable_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|first| first.is_ascii_alphabetic() || first == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "HOST" => Some("db.internal".to_owned()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn expands_set_variables_and_defaults() {
        assert_eq!(
            interpolate("pg://${HOST}:5432", &env).as_deref(),
            Ok("pg://db.internal:5432")
        );
        assert_eq!(
            interpolate("${NOPE:-10.0.0.1}", &env).as_deref(),
            Ok("10.0.0.1")
        );
        assert_eq!(interpolate("${EMPTY:-x}", &env).as_deref(), Ok("x"));
        assert_eq!(interpolate("${NOPE:-}", &env).as_deref(), Ok(""));
    }

    #[test]
    fn dollar_dollar_is_a_literal_dollar() {
        assert_eq!(
            interpolate("pa$$word $x", &env).as_deref(),
            Ok("pa$word $x")
        );
    }

    #[test]
    fn unset_variable_is_an_error_naming_it() {
        let error = interpolate("${SECRET_TOKEN}", &env).unwrap_err();
        assert!(error.contains("`SECRET_TOKEN` is not set"), "{error}");
    }

    #[test]
    fn malformed_references_are_errors() {
        assert!(interpolate("${HOST", &env).is_err());
        assert!(interpolate("${1BAD}", &env).is_err());
    }
}
