//! OpenAI's rate-limit response headers, formatted as OpenAI formats them.
//!
//! Durations follow Go's `time.Duration` text at millisecond precision, as
//! OpenAI's do: `0s`, `20ms`, `1s`, `17.28s`, `6m0s`, `1h2m3.5s`.

use std::time::Duration;

use crate::bucket::{Decision, Snapshot};

/// The six `x-ratelimit-*` headers for a snapshot.
pub fn ratelimit_headers(snapshot: &Snapshot) -> Vec<(&'static str, String)> {
    vec![
        (
            "x-ratelimit-limit-requests",
            snapshot.limit_requests.to_string(),
        ),
        (
            "x-ratelimit-limit-tokens",
            snapshot.limit_tokens.to_string(),
        ),
        (
            "x-ratelimit-remaining-requests",
            snapshot.remaining_requests.to_string(),
        ),
        (
            "x-ratelimit-remaining-tokens",
            snapshot.remaining_tokens.to_string(),
        ),
        (
            "x-ratelimit-reset-requests",
            format_duration(snapshot.reset_requests),
        ),
        (
            "x-ratelimit-reset-tokens",
            format_duration(snapshot.reset_tokens),
        ),
    ]
}

/// `retry-after` (whole seconds, rounded up, at least 1) and `retry-after-ms`.
pub fn retry_headers(retry_after: Duration) -> Vec<(&'static str, String)> {
    let ms = ceil_millis(retry_after).max(1);
    vec![
        ("retry-after", ms.div_ceil(1_000).to_string()),
        ("retry-after-ms", ms.to_string()),
    ]
}

/// Every header a decision calls for: the six always, the retry pair when limited.
pub fn decision_headers(decision: &Decision) -> Vec<(&'static str, String)> {
    let mut headers = ratelimit_headers(decision.snapshot());
    if let Decision::Limited { retry_after, .. } = decision {
        headers.extend(retry_headers(*retry_after));
    }
    headers
}

/// A duration in OpenAI's (Go's) style, rounded up to the millisecond.
pub fn format_duration(duration: Duration) -> String {
    let ms = ceil_millis(duration);
    if ms == 0 {
        return "0s".to_owned();
    }
    if ms < 1_000 {
        return format!("{ms}ms");
    }
    let hours = ms / 3_600_000;
    let minutes = ms / 60_000 % 60;
    let seconds = ms / 1_000 % 60;
    let frac = ms % 1_000;
    let mut out = String::new();
    if hours > 0 {
        out.push_str(&format!("{hours}h"));
    }
    if hours > 0 || minutes > 0 {
        out.push_str(&format!("{minutes}m"));
    }
    out.push_str(&seconds.to_string());
    if frac > 0 {
        let digits = format!("{frac:03}");
        out.push('.');
        out.push_str(digits.trim_end_matches('0'));
    }
    out.push('s');
    out
}

/// Whole milliseconds, any fraction rounded up.
fn ceil_millis(duration: Duration) -> u64 {
    let nanos = duration.as_nanos().div_ceil(1_000_000);
    u64::try_from(nanos).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_openai() {
        let cases = [
            (0, "0s"),
            (20, "20ms"),
            (999, "999ms"),
            (1_000, "1s"),
            (17_280, "17.28s"),
            (59_500, "59.5s"),
            (60_000, "1m0s"),
            (360_000, "6m0s"),
            (90_005, "1m30.005s"),
            (3_723_500, "1h2m3.5s"),
            (3_600_000, "1h0m0s"),
        ];
        for (ms, text) in cases {
            assert_eq!(format_duration(Duration::from_millis(ms)), text, "{ms} ms");
        }
        assert_eq!(format_duration(Duration::from_micros(1)), "1ms");
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        let h = retry_headers(Duration::from_millis(1_200));
        assert_eq!(
            h,
            vec![
                ("retry-after", "2".into()),
                ("retry-after-ms", "1200".into())
            ]
        );
        let h = retry_headers(Duration::from_millis(20));
        assert_eq!(
            h,
            vec![("retry-after", "1".into()), ("retry-after-ms", "20".into())]
        );
        let h = retry_headers(Duration::from_secs(3));
        assert_eq!(h[0], ("retry-after", "3".into()));
    }

    #[test]
    fn decision_headers_add_retry_only_when_limited() {
        let snapshot = Snapshot {
            limit_requests: 60,
            limit_tokens: 150_000,
            remaining_requests: 59,
            remaining_tokens: 149_984,
            reset_requests: Duration::from_secs(1),
            reset_tokens: Duration::from_millis(6),
        };
        let allowed = decision_headers(&Decision::Allowed(snapshot));
        assert_eq!(
            allowed,
            vec![
                ("x-ratelimit-limit-requests", "60".into()),
                ("x-ratelimit-limit-tokens", "150000".into()),
                ("x-ratelimit-remaining-requests", "59".into()),
                ("x-ratelimit-remaining-tokens", "149984".into()),
                ("x-ratelimit-reset-requests", "1s".into()),
                ("x-ratelimit-reset-tokens", "6ms".into()),
            ]
        );
        let limited = decision_headers(&Decision::Limited {
            retry_after: Duration::from_millis(250),
            snapshot,
        });
        assert_eq!(limited.len(), 8);
        assert_eq!(limited[6], ("retry-after", "1".into()));
        assert_eq!(limited[7], ("retry-after-ms", "250".into()));
    }
}
