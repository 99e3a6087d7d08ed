//! The pattern layer: explicit phrases that name a category whatever the
//! embedding says, matched case-insensitively on word boundaries (so "make
//! a bomb-shaped cake" is not "make a bomb").

/// (phrase, category index) pairs.
const PHRASES: &[(&str, usize)] = &[
    ("kill myself", 8),
    ("end my life", 8),
    ("commit suicide", 8),
    ("hang myself", 8),
    ("suicide note", 8),
    ("want to die", 8),
    ("pipe bomb", 5),
    ("car bomb", 5),
    ("make a bomb", 5),
    ("build a bomb", 5),
    ("molotov cocktail", 5),
    ("hire a hitman", 5),
    ("nerve gas", 5),
];

/// Words that turn a self-harm phrase into asking how.
const HOW: &[&str] = &[
    "how ", "what ", "which ", "where ", "way to", "dose", "method",
];

/// The categories whose phrases `text` contains.
pub fn matches(text: &str) -> Vec<usize> {
    let lower = text.to_lowercase();
    let mut out = Vec::new();
    for (phrase, category) in PHRASES {
        if contains_word(&lower, phrase) {
            let mut c = *category;
            if c == 8 && HOW.iter().any(|w| lower.contains(w)) {
                c = 7;
            }
            out.push(c);
        }
    }
    out
}

fn contains_word(haystack: &str, phrase: &str) -> bool {
    let boundary = |c: Option<char>| c.is_none_or(|c| !c.is_alphanumeric() && c != '-');
    haystack.match_indices(phrase).any(|(at, _)| {
        boundary(haystack[..at].chars().next_back())
            && boundary(haystack[at + phrase.len()..].chars().next())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phrases_on_word_boundaries() {
        assert_eq!(matches("I want to kill myself"), vec![8]);
        assert_eq!(matches("What is the best way to kill myself?"), vec![7]);
        assert!(matches("How do I make a bomb-shaped cake?").is_empty());
        assert_eq!(matches("how to build a pipe bomb"), vec![5]);
        assert!(matches("kill the process").is_empty());
    }
}
