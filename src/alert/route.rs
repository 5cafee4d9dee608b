//! Which alerts go where: glob patterns over alert ids, and a notifier's route (severities and
//! ids it wants).
//!
//! Routing is deliberately flat (one filter per notifier, default: everything) rather than
//! Alertmanager's tree: with a handful of notifiers a tree adds nothing but surprises, and a
//! team that wants a tree already has one by pushing to Alertmanager.

use std::fmt;

use crate::catalog::Severity;

/// A shell-style pattern over an alert id or label value: `*` is any run of characters, `?` one
/// character, everything else is literal. `worker-*` matches `worker-stalled`; `neon-down`
/// matches only itself.
#[derive(Clone, PartialEq, Eq)]
pub struct Glob(String);

impl Glob {
    /// A pattern; every string is a valid one.
    pub fn new(pattern: impl Into<String>) -> Self {
        Self(pattern.into())
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `text` matches the whole pattern.
    pub fn matches(&self, text: &str) -> bool {
        let pattern: Vec<char> = self.0.chars().collect();
        let text: Vec<char> = text.chars().collect();
        glob_match(&pattern, &text)
    }
}

impl fmt::Debug for Glob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Glob({:?})", self.0)
    }
}

/// Iterative wildcard matching with one backtrack point: linear in practice, and no recursion
/// for a hostile pattern to blow up.
fn glob_match(pattern: &[char], text: &[char]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some('*') => {
                star = Some((p, t));
                p += 1;
            }
            Some('?') => {
                p += 1;
                t += 1;
            }
            Some(c) if *c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((star_p, star_t)) => {
                    p = star_p + 1;
                    t = star_t + 1;
                    star = Some((star_p, star_t + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|c| *c == '*')
}

/// What one notifier wants: alerts of these severities whose id matches one of these patterns.
/// An empty list means "all".
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Route {
    /// Severities to send; empty means every severity.
    pub severities: Vec<Severity>,
    /// Alert id patterns; empty means every alert.
    pub alerts: Vec<Glob>,
}

impl Route {
    /// Whether an alert with this id and severity goes to the notifier.
    pub fn matches(&self, id: &str, severity: Severity) -> bool {
        (self.severities.is_empty() || self.severities.contains(&severity))
            && (self.alerts.is_empty() || self.alerts.iter().any(|glob| glob.matches(id)))
    }
}

/// Parses a severity name as used in rule files and routes.
pub fn parse_severity(name: &str) -> Option<Severity> {
    [Severity::Critical, Severity::Warning, Severity::Info]
        .into_iter()
        .find(|severity| severity.as_str() == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(pattern: &str, text: &str, expected: bool) {
        assert_eq!(
            Glob::new(pattern).matches(text),
            expected,
            "{pattern} vs {text}"
        );
    }

    #[test]
    fn globs_match_whole_ids() {
        check("worker-*", "worker-stalled", true);
        check("worker-*", "worker-", true);
        check("worker-*", "the-worker-stalled", false);
        check("neon-down", "neon-down", true);
        check("neon-down", "neon-down-2", false);
        check("*-down", "neon-down", true);
        check("b?-outage", "b2-outage", true);
        check("*", "", true);
        check("a*b*c", "axxbyyc", true);
        check("a*b*c", "axxbyy", false);
        check("", "x", false);
    }

    #[test]
    fn empty_route_takes_everything_and_filters_combine() {
        assert!(Route::default().matches("anything", Severity::Info));
        let route = Route {
            severities: vec![Severity::Critical],
            alerts: vec![Glob::new("worker-*")],
        };
        assert!(route.matches("worker-stalled", Severity::Critical));
        assert!(!route.matches("worker-stalled", Severity::Warning));
        assert!(!route.matches("neon-down", Severity::Critical));
    }

    #[test]
    fn severities_parse_by_name() {
        assert_eq!(parse_severity("critical"), Some(Severity::Critical));
        assert_eq!(parse_severity("Critical"), None);
    }
}
