//! Tests of the streaming stop matcher.

use super::*;
use proptest::prelude::*;

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// Runs `pieces` through a matcher; returns (all emitted text, stopped).
fn run(stops: &[String], pieces: &[&str]) -> (String, bool) {
    let mut m = StopMatcher::new(stops);
    let mut out = String::new();
    for p in pieces {
        let o = m.push(p);
        out.push_str(&o.emit);
        if o.stopped {
            return (out, true);
        }
    }
    out.push_str(&m.finish());
    (out, false)
}

/// Reference: the text before the earliest-completing stop occurrence.
fn expected(stops: &[String], text: &str) -> (String, bool) {
    let best = stops
        .iter()
        .filter(|s| !s.is_empty())
        .filter_map(|s| text.find(s.as_str()).map(|at| (at + s.len(), at)))
        .min();
    match best {
        Some((_, at)) => (text[..at].to_string(), true),
        None => (text.to_string(), false),
    }
}

/// Splits `text` at the given char indices (sorted, deduplicated).
fn split_at_chars<'a>(text: &'a str, cuts: &[usize]) -> Vec<&'a str> {
    let bounds: Vec<usize> = text
        .char_indices()
        .map(|(i, _)| i)
        .chain([text.len()])
        .collect();
    let mut pieces = Vec::new();
    let mut last = 0;
    for &c in cuts {
        let b = bounds[c.min(bounds.len() - 1)];
        if b > last {
            pieces.push(&text[last..b]);
            last = b;
        }
    }
    pieces.push(&text[last..]);
    pieces
}

#[test]
fn stop_split_at_every_point_is_caught() {
    let stops = strings(&["</s>", "\n\nUser:"]);
    let text = "Hello there.\n\nUser: more text </s> after";
    let want = ("Hello there.".to_string(), true);
    let n = text.chars().count();
    for a in 0..=n {
        for b in a..=n {
            let pieces = split_at_chars(text, &[a, b]);
            assert_eq!(run(&stops, &pieces), want, "cuts {a} {b}");
        }
    }
    // One character per push.
    let chars: Vec<String> = text.chars().map(String::from).collect();
    let pieces: Vec<&str> = chars.iter().map(String::as_str).collect();
    assert_eq!(run(&stops, &pieces), want);
}

#[test]
fn emits_as_early_as_possible() {
    let mut m = StopMatcher::new(&strings(&["STOP"]));
    assert_eq!(m.push("abc S").emit, "abc ");
    assert_eq!(m.push("T").emit, "");
    // "STX" can no longer be a stop: all of it is released.
    assert_eq!(m.push("X").emit, "STX");
    assert_eq!(m.push("ST").emit, "");
    assert_eq!(m.finish(), "ST");
}

#[test]
fn holds_the_longest_suffix_that_could_start_a_stop() {
    // "aa" must be held whole: "aa" + "b" completes "aab".
    let mut m = StopMatcher::new(&strings(&["aab"]));
    assert_eq!(m.push("xaa").emit, "x");
    let o = m.push("b");
    assert_eq!(
        o,
        StopOutcome {
            emit: String::new(),
            stopped: true
        }
    );
    // Stop text and everything after it are never emitted.
    assert_eq!(m.push("more").emit, "");
    assert!(m.push("more").stopped);
    assert_eq!(m.finish(), "");
}

#[test]
fn empty_stops_are_ignored() {
    let stops = strings(&["", ""]);
    assert_eq!(run(&stops, &["ab", "c"]), ("abc".to_string(), false));
    let mut m = StopMatcher::new(&stops);
    assert_eq!(m.push("abc").emit, "abc");
}

#[test]
fn earliest_completing_stop_wins() {
    let stops = strings(&["abcd", "bc"]);
    assert_eq!(run(&stops, &["abcd"]), ("a".to_string(), true));
    assert_eq!(run(&stops, &["a", "b", "c", "d"]), ("a".to_string(), true));
    // Same end: the longer (earlier-starting) one.
    let stops = strings(&["xbc", "bc"]);
    assert_eq!(run(&stops, &["axbc"]), ("a".to_string(), true));
}

#[test]
fn never_splits_a_character() {
    // Holdback is measured in whole characters of a multi-byte stop.
    let stops = strings(&["日本語"]);
    let mut m = StopMatcher::new(&stops);
    let o = m.push("abc日本");
    assert_eq!(o.emit, "abc");
    let o = m.push("人");
    assert_eq!(o.emit, "日本人");
    assert_eq!(run(&stops, &["x日", "本", "語y"]), ("x".to_string(), true));
}

fn text_strategy() -> impl Strategy<Value = String> {
    // A tiny alphabet makes partial and overlapping matches common.
    prop::collection::vec(
        prop::sample::select(vec!['a', 'b', 'c', 'é', '日', '\n']),
        0..40,
    )
    .prop_map(|v| v.into_iter().collect())
}

proptest! {
    #[test]
    fn any_split_gives_text_up_to_first_stop(
        text in text_strategy(),
        stops in prop::collection::vec(text_strategy().prop_map(|s| s.chars().take(4).collect::<String>()), 0..4),
        mut cuts in prop::collection::vec(0usize..41, 0..8),
    ) {
        cuts.sort_unstable();
        let pieces = split_at_chars(&text, &cuts);
        let got = run(&stops, &pieces);
        prop_assert_eq!(got, expected(&stops, &text));
    }

    #[test]
    fn per_character_pushes_match_one_shot(
        text in text_strategy(),
        stops in prop::collection::vec(text_strategy().prop_map(|s| s.chars().take(3).collect::<String>()), 1..3),
    ) {
        let chars: Vec<String> = text.chars().map(String::from).collect();
        let pieces: Vec<&str> = chars.iter().map(String::as_str).collect();
        prop_assert_eq!(run(&stops, &pieces), run(&stops, &[text.as_str()]));
    }
}

#[test]
fn matched_names_the_stop_that_completed_first_across_pushes() {
    let mut m = StopMatcher::new(&strings(&["END", "ND!", "xyz"]));
    assert_eq!(m.matched(), None);
    let first = m.push("abc E");
    assert!(!first.stopped);
    assert_eq!(m.matched(), None);
    let second = m.push("ND! more");
    assert!(second.stopped);
    assert_eq!(first.emit + &second.emit, "abc ");
    assert_eq!(m.matched(), Some("END"));
}

#[test]
fn matched_is_none_when_no_stop_string_ended_the_stream() {
    let mut m = StopMatcher::new(&strings(&["STOP"]));
    let out = m.push("all good ST");
    assert_eq!(out.emit + &m.finish(), "all good ST");
    assert_eq!(m.matched(), None);
}
