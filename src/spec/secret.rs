//! Secrets: values that must never be printed.
//!
//! A [`Secret`] comes from `${ENV}` interpolation or from a `*_file` next to the key, and its
//! `Debug` and `Display` print a placeholder. It has no `Serialize`, so it cannot reach `/status`
//! or a notification by accident; code that needs the value calls [`Secret::expose`] at the one
//! place it is sent over the wire.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use super::{BuildContext, FieldError};

/// A credential or token; cheap to clone, never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Arc<str>);

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<Arc<str>>) -> Self {
        Self(value.into())
    }

    /// The value itself, for the one call that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Resolves a secret given inline (`key = "..."`, usually `${ENV}`) or as a file
/// (`key_file = "path"`, relative to the config file). At most one of the two may be set.
///
/// The file's trailing newline is dropped, since `echo secret > file` adds one.
pub fn resolve(
    key: &str,
    inline: Option<String>,
    file: Option<&Path>,
    cx: &BuildContext,
) -> Result<Option<Secret>, FieldError> {
    match (inline, file) {
        (Some(_), Some(_)) => Err(FieldError::new(
            key,
            format!("set at most one of `{key}` and `{key}_file`"),
        )),
        (Some(value), None) => Ok(Some(Secret::new(value))),
        (None, Some(path)) => {
            let file_key = format!("{key}_file");
            let text = cx.read_secret_file(&file_key, path).map_err(|error| {
                FieldError::new(
                    &file_key,
                    format!("cannot read {}: {error}", cx.path(path).display()),
                )
            })?;
            Ok(Some(Secret::new(
                text.expose().trim_end_matches(['\r', '\n']),
            )))
        }
        (None, None) => Ok(None),
    }
}

/// [`resolve`], where an empty value means no secret at all: what `${VAR:-}` gives when the
/// variable is unset, so that one configuration serves with and without a password.
pub fn resolve_optional(
    key: &str,
    inline: Option<String>,
    file: Option<&Path>,
    cx: &BuildContext,
) -> Result<Option<Secret>, FieldError> {
    Ok(resolve(key, inline, file, cx)?.filter(|secret| !secret.expose().is_empty()))
}

/// A name and its secret, both set: a user name and password, an access key ID and key.
#[derive(Clone, Debug)]
pub struct Credentials {
    /// The user name or key ID.
    pub name: String,
    /// The password or key.
    pub secret: Secret,
}

/// Pairs the value of `name_key` with the (already [`resolve`]d) secret of `secret_key`.
///
/// Empty values (what `${VAR:-}` gives when the variable is unset) mean "not set", so that one
/// configuration serves with and without credentials: both unset is no credentials, one without
/// the other is a mistake, reported on `name_key`.
pub fn credentials(
    name_key: &str,
    name: Option<String>,
    secret_key: &str,
    secret: Option<Secret>,
) -> Result<Option<Credentials>, FieldError> {
    let name = name.filter(|name| !name.is_empty());
    let secret = secret.filter(|secret| !secret.expose().is_empty());
    match (name, secret) {
        (None, None) => Ok(None),
        (Some(name), Some(secret)) => Ok(Some(Credentials { name, secret })),
        (Some(_), None) => Err(FieldError::new(
            name_key,
            format!(
                "`{name_key}` is set but `{secret_key}` (or `{secret_key}_file`) is empty or \
                 missing"
            ),
        )),
        (None, Some(_)) => Err(FieldError::new(
            name_key,
            format!("`{secret_key}` is set but `{name_key}` is empty or missing"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_hide_the_value() {
        let secret = Secret::new("hunter2");
        assert_eq!(format!("{secret:?} {secret}"), "Secret(***) ***");
        assert_eq!(secret.expose(), "hunter2");
    }

    #[test]
    fn empty_credentials_mean_none_and_half_credentials_are_errors() {
        let pair = |name: &str, secret: &str| {
            credentials(
                "username",
                Some(name.to_owned()),
                "password",
                Some(Secret::new(secret)),
            )
        };
        assert!(matches!(pair("", ""), Ok(None)));
        assert!(matches!(pair("me", "pw"), Ok(Some(Credentials { name, .. })) if name == "me"));
        let error = pair("me", "").unwrap_err();
        assert_eq!(error.key, "username");
        assert_eq!(
            error.message,
            "`username` is set but `password` (or `password_file`) is empty or missing"
        );
        assert_eq!(
            pair("", "pw").unwrap_err().message,
            "`password` is set but `username` is empty or missing"
        );
    }

    #[test]
    fn inline_and_file_together_is_an_error() {
        let error = resolve(
            "password",
            Some("x".into()),
            Some(Path::new("f")),
            &BuildContext::new("."),
        )
        .unwrap_err();
        assert_eq!(error.key, "password");
    }

    #[test]
    fn file_is_read_relative_to_the_config_and_trimmed() {
        let dir = std::env::temp_dir().join(format!("hg-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("pw"), "s3cret\n").unwrap();
        let cx = BuildContext::new(&dir);
        let secret = resolve("password", None, Some(Path::new("pw")), &cx)
            .unwrap()
            .unwrap();
        assert_eq!(secret.expose(), "s3cret");
        let missing = resolve("password", None, Some(Path::new("nope")), &cx).unwrap_err();
        assert_eq!(missing.key, "password_file");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
