//! The toolkit every probe kind and notifier builds its runtime form with, from its own keys:
//! where a value came from and the located error that says so ([`source`]), `${ENV}`
//! interpolation ([`interpolate`]), secrets that cannot be printed ([`secret`]), durations with
//! their ranges ([`duration`]), and the [`BuildContext`] a `Spec::build` gets.
//!
//! A leaf below the kinds: it knows no kind, no notifier and no section of `probes.toml`, so the
//! arrows run one way (the file's assembler, [`crate::config`], calls into the kinds, and the
//! kinds call into this).

pub mod duration;
pub mod interpolate;
pub mod secret;
pub mod source;

use std::any::{Any, TypeId};
use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use serde::de::DeserializeOwned;
use toml::Spanned;
use toml::de::DeValue;

pub use duration::HumanDuration;
pub use secret::Secret;
pub use source::{ConfigError, ConfigErrors, ErrorSink, Source};

/// A problem with one key of a probe (or other section), found while building its runtime form.
/// The loader turns it into a [`ConfigError`] with the key's position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// The key, relative to the section (`url`, `password_file`, `headers.Host`).
    pub key: String,
    /// What is wrong.
    pub message: String,
}

impl FieldError {
    /// A problem with `key`.
    pub fn new(key: &str, message: impl Into<String>) -> Self {
        Self {
            key: key.to_owned(),
            message: message.into(),
        }
    }
}

/// What building a probe or a notifier may need besides its own keys.
#[derive(Debug)]
pub struct BuildContext {
    /// Directory of the config file; relative paths (`*_file`, CA files) are resolved from here.
    pub base_dir: PathBuf,
    roots: OnceLock<Arc<rustls::RootCertStore>>,
    /// Things the kinds build once per load and share, by type (see [`BuildContext::shared`]).
    shared: Mutex<HashMap<TypeId, Box<dyn Any + Send + Sync>>>,
    /// The contents of every `*_file` secret read, by key, so that no error quotes them.
    file_secrets: Mutex<Vec<(String, Secret)>>,
    /// The variables of [`BUILD_ENV`] this load saw.
    env: HashMap<&'static str, String>,
}

/// The environment variables a kind reads by itself when it is built, rather than through a
/// `${VAR}` in `probes.toml`: the API server address a pod is given (the `kubernetes` kind's
/// in-cluster default). Read through the load's lookup, like `${VAR}`, so a test can give them.
pub const BUILD_ENV: &[&str] = &["KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT"];

impl BuildContext {
    /// A context resolving relative paths from `base_dir`.
    pub fn new(base_dir: impl Into<PathBuf>) -> Self {
        Self {
            base_dir: base_dir.into(),
            roots: OnceLock::new(),
            shared: Mutex::new(HashMap::new()),
            file_secrets: Mutex::new(Vec::new()),
            env: HashMap::new(),
        }
    }

    /// Takes the variables of [`BUILD_ENV`] from `lookup`, the load's environment.
    #[must_use]
    pub fn with_env(mut self, lookup: interpolate::Lookup<'_>) -> Self {
        self.env = BUILD_ENV
            .iter()
            .filter_map(|name| lookup(name).map(|value| (*name, value)))
            .collect();
        self
    }

    /// The value of `name`, one of [`BUILD_ENV`], in this load's environment.
    pub fn env(&self, name: &str) -> Option<&str> {
        self.env.get(name).map(String::as_str)
    }

    /// Reads the secret file `path` (relative to the config file) given for `key`
    /// (`password_file`), remembering its contents so that no error of this load quotes them.
    pub fn read_secret_file(&self, key: &str, path: &Path) -> std::io::Result<Secret> {
        let text = std::fs::read_to_string(self.path(path))?;
        let secret = Secret::new(text);
        self.file_secrets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push((key.to_owned(), secret.clone()));
        Ok(secret)
    }

    /// What [`BuildContext::read_secret_file`] read, by key.
    pub fn file_secrets(&self) -> Vec<(String, Secret)> {
        self.file_secrets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The one `T` of this load, made by `make` the first time it is asked for: something every
    /// probe can share (the system resolver), built once instead of once per probe. The
    /// toolkit keeps it without knowing what it is, so it needs nothing of the kinds.
    pub fn shared<T: Clone + Send + Sync + 'static>(&self, make: impl FnOnce() -> T) -> T {
        let mut shared = self
            .shared
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(value) = shared
            .get(&TypeId::of::<T>())
            .and_then(|value| value.downcast_ref::<T>())
        {
            return value.clone();
        }
        let value = make();
        shared.insert(TypeId::of::<T>(), Box::new(value.clone()));
        value
    }

    /// The system's trusted roots, loaded once per config load and shared by every probe.
    pub fn system_roots(&self) -> Arc<rustls::RootCertStore> {
        self.roots
            .get_or_init(|| Arc::new(crate::tls::system_roots()))
            .clone()
    }

    /// Resolves a path relative to the config file.
    pub fn path(&self, path: &Path) -> PathBuf {
        self.base_dir.join(path)
    }
}

/// Collects the [`FieldError`]s of one `Spec::build`, so that every bad key is reported, not only
/// the first: each fallible step is [`kept`](FieldErrors::keep) and the build ends with
/// [`finish`](FieldErrors::finish).
#[derive(Debug, Default)]
pub struct FieldErrors(Vec<FieldError>);

impl FieldErrors {
    /// No errors yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The value of `result`, or `None` with its error recorded.
    pub fn keep<T>(&mut self, result: Result<T, FieldError>) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(error) => {
                self.0.push(error);
                None
            }
        }
    }

    /// [`FieldErrors::keep`] for a step that reports several errors at once.
    pub fn keep_all<T>(&mut self, result: Result<T, Vec<FieldError>>) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(errors) => {
                self.0.extend(errors);
                None
            }
        }
    }

    /// Records a problem.
    pub fn push(&mut self, error: FieldError) {
        self.0.push(error);
    }

    /// Records a problem with `key`.
    pub fn at(&mut self, key: &str, message: impl Into<String>) {
        self.0.push(FieldError::new(key, message));
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Every error recorded, in order.
    pub fn into_vec(self) -> Vec<FieldError> {
        self.0
    }

    /// `build()` when nothing was recorded, else every error. `build` returns `None` only when
    /// a value it needs was not kept, which means an error was recorded.
    pub fn finish<T>(self, build: impl FnOnce() -> Option<T>) -> Result<T, Vec<FieldError>> {
        if !self.0.is_empty() {
            return Err(self.0);
        }
        build().ok_or_else(|| {
            vec![FieldError::new(
                "",
                "internal error: a value was missing without an error (please report it)",
            )]
        })
    }
}

/// Keeping a step's value, or recording its error: `parse(x).kept(&mut errors)` reads as "the
/// parsed value, if there is one; its error goes with the others".
pub trait Keep<T> {
    /// The value, or `None` with the error recorded in `errors`.
    fn kept(self, errors: &mut FieldErrors) -> Option<T>;

    /// For a step whose error is a message about `key`.
    fn kept_at(self, key: &str, errors: &mut FieldErrors) -> Option<T>
    where
        Self: Sized;
}

impl<T> Keep<T> for Result<T, FieldError> {
    fn kept(self, errors: &mut FieldErrors) -> Option<T> {
        errors.keep(self)
    }

    fn kept_at(self, key: &str, errors: &mut FieldErrors) -> Option<T> {
        errors.keep(self.map_err(|error| FieldError::new(key, error.message)))
    }
}

impl<T> Keep<T> for Result<T, String> {
    fn kept(self, errors: &mut FieldErrors) -> Option<T> {
        self.kept_at("", errors)
    }

    fn kept_at(self, key: &str, errors: &mut FieldErrors) -> Option<T> {
        errors.keep(self.map_err(|message| FieldError::new(key, message)))
    }
}

/// A fingerprint of one configuration entry as it stands after interpolation: its keys and
/// values (not their positions, so editing another entry of the file changes nothing), and the
/// contents of every file a `*_file` key names (a rotated secret or CA file is a change). A
/// reload compares fingerprints to tell unchanged probes and notifiers (kept running) from
/// changed ones (restarted). `extra` folds in what the entry inherits (defaults).
pub fn fingerprint(value: &DeValue<'_>, cx: &BuildContext, extra: &impl std::hash::Hash) -> u64 {
    use std::hash::Hasher;
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    hash_value(value, "", cx, &mut hasher);
    extra.hash(&mut hasher);
    hasher.finish()
}

fn hash_value(
    value: &DeValue<'_>,
    key: &str,
    cx: &BuildContext,
    hasher: &mut impl std::hash::Hasher,
) {
    use std::hash::Hash;
    match value {
        DeValue::String(text) => {
            text.as_ref().hash(hasher);
            if key.ends_with("_file") {
                // Unreadable files hash as absent; the load reports them anyway.
                std::fs::read(cx.path(Path::new(text.as_ref())))
                    .ok()
                    .hash(hasher);
            }
        }
        DeValue::Integer(integer) => format!("{integer:?}").hash(hasher),
        DeValue::Float(float) => format!("{float:?}").hash(hasher),
        DeValue::Boolean(flag) => flag.hash(hasher),
        DeValue::Datetime(datetime) => datetime.to_string().hash(hasher),
        DeValue::Array(items) => {
            items.len().hash(hasher);
            for item in items {
                hash_value(item.get_ref(), key, cx, hasher);
            }
        }
        DeValue::Table(table) => {
            let mut entries: Vec<_> = table.iter().collect();
            entries.sort_by(|a, b| a.0.get_ref().cmp(b.0.get_ref()));
            entries.len().hash(hasher);
            for (name, item) in entries {
                name.get_ref().hash(hasher);
                hash_value(item.get_ref(), name.get_ref(), cx, hasher);
            }
        }
    }
}

/// A URL's scheme for an error message: `ftp`, or `another scheme` when it is not a short
/// word (`hunter2:password@host` parses with the scheme `hunter2`).
pub fn shown_scheme(scheme: &str) -> String {
    let known = [
        "ftp",
        "ws",
        "wss",
        "file",
        "mailto",
        "redis",
        "rediss",
        "postgres",
        "postgresql",
        "smtp",
        "smtps",
        "tcp",
        "udp",
        "tls",
        "s3",
        "data",
        "javascript",
    ];
    if known.contains(&scheme) {
        format!("`{scheme}://`")
    } else {
        "another scheme".to_owned()
    }
}

/// One kind's own keys of a `[[probe]]` or `[[notifier]]` entry, as the loader hands them over.
#[derive(Debug)]
pub struct Section<'i> {
    /// The keys (the entry's common keys already taken out).
    pub value: Spanned<DeValue<'i>>,
    /// `probe[name]`, for messages.
    pub label: String,
    /// Keys valid in the same table but not the kind's own (`name`, `interval`, ...), for
    /// "did you mean" hints.
    pub common_keys: &'static [&'static str],
}

/// Deserializes a kind's own keys into its `Spec` and builds the runtime form, turning
/// [`FieldError`]s into located [`ConfigError`]s. Used by [`crate::probe::build`] and
/// [`crate::notify::build`].
pub fn build_section<S, P>(
    section: Section<'_>,
    cx: &BuildContext,
    sink: &mut ErrorSink<'_>,
    build: impl FnOnce(S, &BuildContext) -> Result<P, Vec<FieldError>>,
) -> Option<P>
where
    S: DeserializeOwned,
{
    let Section {
        value,
        label,
        common_keys,
    } = section;
    let label = label.as_str();
    let whole = value.span();
    let key_spans: BTreeMap<String, Range<usize>> = match value.get_ref() {
        DeValue::Table(table) => table
            .iter()
            .map(|(key, item)| (key.get_ref().to_string(), item.span()))
            .collect(),
        _ => BTreeMap::new(),
    };
    let spec: S = sink.deserialize_with_hints(value, label, common_keys)?;
    match build(spec, cx) {
        Ok(built) => Some(built),
        Err(errors) => {
            for error in errors {
                // Point at the key itself, or at its `_file` twin when the secret came from there.
                let head = error.key.split(['.', '[']).next().unwrap_or_default();
                let span = key_spans
                    .get(head)
                    .or_else(|| key_spans.get(&format!("{head}_file")))
                    .or_else(|| {
                        head.strip_suffix("_file")
                            .and_then(|bare| key_spans.get(bare))
                    })
                    .cloned()
                    .unwrap_or_else(|| whole.clone());
                sink.push(&span, &format!("{label}.{}", error.key), error.message);
            }
            None
        }
    }
}
