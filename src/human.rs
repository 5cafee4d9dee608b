//! Durations and relative times in words, for people: the status page and the notifications say
//! "3h 12m" and "12m ago" the same way.

use jiff::{SignedDuration, Timestamp};

/// `45s`, `3m 12s`, `3h 12m`, `2d 4h`: the two largest units, from the first that is not zero,
/// leaving out a second unit that is zero (`1h`, not `1h 0m`). Negative durations (a clock that
/// went back) read as `0s`.
pub fn duration(duration: SignedDuration) -> String {
    let seconds = duration.as_secs().max(0);
    let units = [("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)];
    let parts: Vec<String> = units
        .iter()
        .scan(seconds, |left, (name, size)| {
            let value = *left / size;
            *left %= size;
            Some((value, *name))
        })
        .skip_while(|(value, _)| *value == 0)
        .take(2)
        .filter(|(value, _)| *value > 0)
        .map(|(value, name)| format!("{value}{name}"))
        .collect();
    if parts.is_empty() {
        "0s".to_owned()
    } else {
        parts.join(" ")
    }
}

/// `12m ago`: how long before `now` something happened.
pub fn ago(then: Timestamp, now: Timestamp) -> String {
    format!("{} ago", duration(now.duration_since(then)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_use_the_two_largest_units() {
        assert_eq!(duration(SignedDuration::from_secs(-3)), "0s");
        assert_eq!(duration(SignedDuration::from_secs(0)), "0s");
        assert_eq!(duration(SignedDuration::from_secs(45)), "45s");
        assert_eq!(duration(SignedDuration::from_secs(192)), "3m 12s");
        assert_eq!(duration(SignedDuration::from_secs(120)), "2m");
        assert_eq!(
            duration(SignedDuration::from_secs(3 * 3600 + 12 * 60 + 5)),
            "3h 12m"
        );
        assert_eq!(duration(SignedDuration::from_secs(3600 + 5)), "1h");
        assert_eq!(
            duration(SignedDuration::from_secs(2 * 86_400 + 4 * 3600 + 59)),
            "2d 4h"
        );
    }

    #[test]
    fn relative_times_count_back_from_now() {
        let now: Timestamp = "2025-06-01T12:00:00Z".parse().unwrap();
        let then: Timestamp = "2025-06-01T11:56:48Z".parse().unwrap();
        assert_eq!(ago(then, now), "3m 12s ago");
        assert_eq!(ago(now, then), "0s ago", "a clock that went back");
    }
}
