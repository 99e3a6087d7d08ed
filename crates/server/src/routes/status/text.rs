//! Words and numbers as people read them on the page: HTML escaping,
//! UTC dates and `<time>` elements, durations in their two largest units,
//! and percentages that never round up to 100.

use serde_json::Value;

use super::history::DAY_MS;

/// Escapes text for HTML element content and attribute values.
pub(super) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A JSON value as text (`—` for null), escaped.
pub(super) fn cell(value: &Value) -> String {
    match value {
        Value::Null => "—".to_owned(),
        Value::String(s) => escape(s),
        other => escape(&other.to_string()),
    }
}

/// `YYYY-MM-DD` (UTC) of unix milliseconds.
pub(super) fn date(ms: i64) -> String {
    let (y, m, d) = billing::Timestamp::from_unix_millis(ms).utc_date();
    format!("{y:04}-{m:02}-{d:02}")
}

/// `<time>` of unix milliseconds, as `YYYY-MM-DD HH:MM UTC`.
pub(super) fn time_element(ms: i64) -> String {
    let of_day = ms.rem_euclid(DAY_MS) / 1000;
    let (h, m, s) = (of_day / 3600, of_day / 60 % 60, of_day % 60);
    let day = date(ms);
    format!("<time datetime=\"{day}T{h:02}:{m:02}:{s:02}Z\">{day} {h:02}:{m:02} UTC</time>")
}

/// A duration in the two largest units that matter: `45 s`, `11 min`,
/// `3 min 20 s`, `2 h 5 min`, `3 d 4 h`.
pub(super) fn human_duration(ms: i64) -> String {
    let s = ms.max(0) / 1000;
    let (d, h, m, sec) = (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60);
    let two = |a: i64, a_unit: &str, b: i64, b_unit: &str| {
        if b == 0 {
            format!("{a} {a_unit}")
        } else {
            format!("{a} {a_unit} {b} {b_unit}")
        }
    };
    if ms < 1000 {
        "under 1 s".to_owned()
    } else if s < 60 {
        format!("{s} s")
    } else if s < 600 {
        two(m, "min", sec, "s")
    } else if s < 3600 {
        format!("{m} min")
    } else if s < 86_400 {
        two(h, "h", m, "min")
    } else {
        two(d, "d", h, "h")
    }
}

/// A percentage as text with `decimals`, rounded down so that anything
/// short of 100 never reads as 100 (`100%` only when exactly 100).
pub(super) fn percent_text(value: f64, decimals: usize) -> String {
    if value >= 100.0 {
        return "100%".to_owned();
    }
    let scale = 10f64.powi(decimals as i32);
    let shown = (value.max(0.0) * scale).floor() / scale;
    format!("{shown:.decimals$}%")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_durations_and_percentages_read_well() {
        assert_eq!(date(0), "1970-01-01");
        assert_eq!(date(1_796_083_200_000), "2026-12-01");
        assert_eq!(date(951_782_400_000), "2000-02-29");
        assert_eq!(
            time_element(1_796_083_200_000 + 14 * 3_600_000 + 3 * 60_000 + 5_000),
            "<time datetime=\"2026-12-01T14:03:05Z\">2026-12-01 14:03 UTC</time>"
        );
        assert_eq!(human_duration(400), "under 1 s");
        assert_eq!(human_duration(45_000), "45 s");
        assert_eq!(human_duration(200_000), "3 min 20 s");
        assert_eq!(human_duration(660_000), "11 min");
        assert_eq!(human_duration(7_500_000), "2 h 5 min");
        assert_eq!(human_duration(3 * 86_400_000 + 4 * 3_600_000), "3 d 4 h");
        assert_eq!(percent_text(100.0, 2), "100%");
        assert_eq!(percent_text(99.999, 2), "99.99%");
        assert_eq!(percent_text(99.236, 1), "99.2%");
    }

    #[test]
    fn html_is_escaped() {
        assert_eq!(
            escape("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}
