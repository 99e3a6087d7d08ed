//! Unicode facts the pre-tokenizer needs: each code point's general-category
//! class (from a table generated for Unicode 15.1, the version llama.cpp b11434
//! was built with, so splits agree code point for code point) and the
//! `White_Space` property.

mod table;

/// The general category of a code point, collapsed to its major class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Category {
    /// Unassigned (`Cn`).
    Undefined,
    /// `\p{N}`: decimal digits, letter numbers, other numbers.
    Number,
    /// `\p{L}`.
    Letter,
    /// `\p{Z}`.
    Separator,
    /// `\p{M}`.
    Mark,
    /// `\p{P}`.
    Punctuation,
    /// `\p{S}`.
    Symbol,
    /// `\p{C}` other than unassigned: controls, format, private use, surrogates.
    Control,
}

/// The category class of `c`.
pub(crate) fn category(c: char) -> Category {
    let cp = u32::from(c);
    // `partition_point` gives the number of ranges starting at or before `cp`;
    // the table starts at 0, so it is at least 1.
    let idx = table::RANGES.partition_point(|&(start, _)| start <= cp);
    table::RANGES[idx.saturating_sub(1)].1
}

/// Unicode `White_Space` (the set llama.cpp treats as `\s`).
pub(crate) fn is_whitespace(c: char) -> bool {
    matches!(
        c,
        '\u{09}'..='\u{0D}'
            | ' '
            | '\u{85}'
            | '\u{A0}'
            | '\u{1680}'
            | '\u{2000}'..='\u{200A}'
            | '\u{2028}'
            | '\u{2029}'
            | '\u{202F}'
            | '\u{205F}'
            | '\u{3000}'
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn categories_of_known_code_points() {
        assert_eq!(category('a'), Category::Letter);
        assert_eq!(category('Z'), Category::Letter);
        assert_eq!(category('7'), Category::Number);
        assert_eq!(category('½'), Category::Number);
        assert_eq!(category('Ⅻ'), Category::Number);
        assert_eq!(category('中'), Category::Letter);
        assert_eq!(category(' '), Category::Separator);
        assert_eq!(category('\n'), Category::Control);
        assert_eq!(category('\u{301}'), Category::Mark);
        assert_eq!(category('!'), Category::Punctuation);
        assert_eq!(category('$'), Category::Symbol);
        assert_eq!(category('😀'), Category::Symbol);
        assert_eq!(category('\u{10FFFF}'), Category::Undefined);
        // Unicode 15.1 (CJK extension I) is a letter; Unicode 16 additions are not.
        assert_eq!(category('\u{2EBF0}'), Category::Letter);
        assert_eq!(category('\u{1C89}'), Category::Undefined);
    }

    #[test]
    fn whitespace_set() {
        for c in [
            ' ', '\t', '\n', '\r', '\u{0B}', '\u{0C}', '\u{A0}', '\u{3000}',
        ] {
            assert!(is_whitespace(c), "{c:?}");
        }
        for c in ['a', '\u{200B}', '\u{1C}', '_'] {
            assert!(!is_whitespace(c), "{c:?}");
        }
    }
}
