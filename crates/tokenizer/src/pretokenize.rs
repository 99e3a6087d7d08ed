//! BPE pre-tokenizers: split a text fragment into the words that merges run
//! inside. Reproduces llama.cpp's splitting for the GPT-2 regex
//! `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`
//! (llama.cpp runs a hand-written matcher for it, which this mirrors, not a
//! regex engine), for the `smollm` family the `\p{N}` split before it that
//! puts every digit in a word of its own, and llama.cpp's Llama 3 and Qwen 2
//! matchers (`llama-bpe`, `qwen2` and the names that share them, and
//! `qwen35`: Qwen 2's with combining marks counted as letters).

use crate::error::TokenizerError;
use crate::unicode::{category, is_whitespace, Category};

/// Which split a BPE vocabulary's `tokenizer.ggml.pre` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PreTokenizer {
    /// The GPT-2 regex alone.
    Gpt2,
    /// Each `\p{N}` code point isolated first, then the GPT-2 regex
    /// (SmolLM, StarCoder, Command-R and others).
    DigitsThenGpt2,
    /// Llama 3's regex: case-insensitive contractions,
    /// `[^\r\n\p{L}\p{N}]?\p{L}+`, numbers in runs of at most three digits,
    /// ` ?[^\s\p{L}\p{N}]+[\r\n]*`, `\s*[\r\n]+`, `\s+(?!\S)`, `\s+`.
    Llama3,
    /// Qwen 2's regex: Llama 3's with every digit a word of its own.
    Qwen2,
    /// Qwen 3.5's regex: Qwen 2's with `[\p{L}\p{M}]+` for `\p{L}+` and
    /// combining marks left out of the punctuation run
    /// (` ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*`).
    Qwen35,
    /// Mistral's Tekken regex: words of capitalised or upper-case letters
    /// (`[^\r\n\p{L}\p{N}]?` + `[Lu…]*[Ll…]+` or `[Lu…]+[Ll…]*`), each
    /// digit alone, ` ?[^\s\p{L}\p{N}]+[\r\n/]*`, then Llama 3's whitespace
    /// rules; as llama.cpp runs it, upper case is any letter but a-z and
    /// lower case any letter but A-Z.
    Tekken,
    /// GPT-4o's regex (Phi-4 mini): Tekken's with case-insensitive
    /// contractions ending a word and numbers in runs of at most three digits.
    Gpt4o,
}

impl PreTokenizer {
    /// The split for a `tokenizer.ggml.pre` name and whether llama.cpp cleans
    /// spaces around punctuation when decoding that vocabulary.
    pub(crate) fn from_name(name: &str) -> Result<(Self, bool), TokenizerError> {
        use PreTokenizer::*;
        let found = match name {
            "smollm" | "command-r" => (DigitsThenGpt2, false),
            "starcoder" | "refact" | "codeshell" | "exaone" | "minerva-7b" | "mellum2" => {
                (DigitsThenGpt2, true)
            }
            "gpt-2" | "phi-2" | "jina-es" | "jina-de" | "gigachat" | "jina-v2-es"
            | "jina-v2-de" | "a.x-4.0" | "mellum" | "modern-bert" | "mpt" | "olmo" | "jais"
            | "exaone4" => (Gpt2, true),
            "trillion" | "granite-docling" => (Gpt2, false),
            "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "pixtral" | "smollm3" => {
                (Llama3, false)
            }
            "qwen2" | "deepseek-r1-qwen" => (Qwen2, false),
            "qwen35" => (Qwen35, false),
            "tekken" => (Tekken, false),
            "gpt-4o" | "llama4" => (Gpt4o, false),
            other => return Err(TokenizerError::UnsupportedPreTokenizer(other.to_string())),
        };
        Ok(found)
    }

    /// Splits `text` into words, returned as byte ranges of `text` in order;
    /// together they cover `text` exactly.
    pub(crate) fn split(self, text: &str) -> Vec<(usize, usize)> {
        let chars: Vec<(usize, char)> = text.char_indices().collect();
        let mut words = Vec::new();
        let mut push = |lo: usize, hi: usize| {
            if lo < hi {
                let start = chars[lo].0;
                let end = chars.get(hi).map_or(text.len(), |&(b, _)| b);
                words.push((start, end));
            }
        };
        match self {
            PreTokenizer::Gpt2 => gpt2_split(&chars, 0, chars.len(), &mut push),
            PreTokenizer::DigitsThenGpt2 => {
                let mut lo = 0;
                for (i, &(_, c)) in chars.iter().enumerate() {
                    if category(c) == Category::Number {
                        gpt2_split(&chars, lo, i, &mut push);
                        push(i, i + 1);
                        lo = i + 1;
                    }
                }
                gpt2_split(&chars, lo, chars.len(), &mut push);
            }
            PreTokenizer::Llama3 => llama3_split(&chars, 3, false, &mut push),
            PreTokenizer::Qwen2 => llama3_split(&chars, 1, false, &mut push),
            PreTokenizer::Qwen35 => llama3_split(&chars, 1, true, &mut push),
            PreTokenizer::Tekken => cased_split(&chars, 1, false, &mut push),
            PreTokenizer::Gpt4o => cased_split(&chars, 3, true, &mut push),
        }
        words
    }

    /// Whether a word that is itself a vocabulary token is taken whole,
    /// before any merge (llama.cpp's `ignore_merges`, set for Llama 3).
    pub(crate) fn ignores_merges(self) -> bool {
        matches!(self, PreTokenizer::Llama3 | PreTokenizer::Tekken)
    }

    /// Whether the vocabulary adds BOS when its GGUF does not say
    /// (llama.cpp's default for Llama 3's and Tekken's pre-tokenizers).
    pub(crate) fn adds_bos_by_default(self) -> bool {
        matches!(self, PreTokenizer::Llama3 | PreTokenizer::Tekken)
    }
}

/// What the GPT-2 matcher needs to know of one code point.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Class {
    /// Outside the segment being split.
    Outside,
    Letter,
    Number,
    Space,
    /// Anything else (`[^\s\p{L}\p{N}]`).
    Other,
}

fn class_of(c: char) -> Class {
    // llama.cpp checks whitespace before the letter/number classes never
    // overlap it, so the order here does not matter.
    if is_whitespace(c) {
        return Class::Space;
    }
    match category(c) {
        Category::Letter => Class::Letter,
        Category::Number => Class::Number,
        _ => Class::Other,
    }
}

/// Splits the code points `chars[lo..hi]`, calling `push(a, b)` for each word
/// `chars[a..b]`.
fn gpt2_split(chars: &[(usize, char)], lo: usize, hi: usize, push: &mut impl FnMut(usize, usize)) {
    let ch = |p: usize| (lo <= p && p < hi).then(|| chars[p].1);
    let class = |p: usize| ch(p).map_or(Class::Outside, class_of);
    let mut pos = lo;
    while pos < hi {
        let start = pos;
        let c = chars[pos].1;
        // 's 't 're 've 'm 'll 'd (lower case only, as the regex says).
        if c == '\'' {
            let (n1, n2) = (ch(pos + 1), ch(pos + 2));
            let len = match (n1, n2) {
                (Some('s' | 't' | 'm' | 'd'), _) => 2,
                (Some('r' | 'v'), Some('e')) | (Some('l'), Some('l')) => 3,
                _ => 0,
            };
            if len > 0 {
                pos += len;
                push(start, pos);
                continue;
            }
        }
        // An optional leading space joins a following letter, number or other run.
        let lead = usize::from(c == ' ');
        let run_class = class(pos + lead);
        if matches!(run_class, Class::Letter | Class::Number | Class::Other) {
            pos += lead;
            while class(pos) == run_class {
                pos += 1;
            }
            push(start, pos);
            continue;
        }
        let mut n_ws = 0;
        while class(pos + n_ws) == Class::Space {
            n_ws += 1;
        }
        if n_ws > 1 && ch(pos + n_ws).is_some() {
            // \s+(?!\S): leave the last space to lead the next word.
            pos += n_ws - 1;
        } else if n_ws > 0 {
            pos += n_ws;
        } else {
            pos += 1;
        }
        push(start, pos);
    }
}

/// Splits `chars` as llama.cpp's hand-written Llama 3 matcher does, with
/// numbers in runs of at most `max_digits` (3 for Llama 3, 1 for Qwen 2),
/// combining marks taken as letters when `marks_are_letters` (Qwen 3.5),
/// calling `push(a, b)` for each word `chars[a..b]`.
fn llama3_split(
    chars: &[(usize, char)],
    max_digits: usize,
    marks_are_letters: bool,
    push: &mut impl FnMut(usize, usize),
) {
    let end = chars.len();
    let ch = |p: usize| (p < end).then(|| chars[p].1);
    // Qwen 3.5's `[\p{L}\p{M}]+` and `[^\s\p{L}\p{M}\p{N}]`: a mark acts
    // as a letter in every rule.
    let class = |p: usize| match ch(p) {
        None => Class::Outside,
        Some(c) if marks_are_letters && category(c) == Category::Mark => Class::Letter,
        Some(c) => class_of(c),
    };
    let lower = |p: usize| ch(p).map(|c| c.to_ascii_lowercase());
    let is_crlf = |c: Option<char>| matches!(c, Some('\r' | '\n'));
    let mut prev = 0;
    let mut add = |to: usize, push: &mut dyn FnMut(usize, usize)| {
        if prev < to {
            push(prev, to);
        }
        prev = to;
    };
    let mut pos = 0;
    while pos < end {
        let c = chars[pos].1;
        let cls = class(pos);
        // (?i:'s|'t|'re|'ve|'m|'ll|'d)
        if c == '\'' && pos + 1 < end {
            let n1 = lower(pos + 1);
            if matches!(n1, Some('s' | 't' | 'm' | 'd')) {
                pos += 2;
                add(pos, push);
                continue;
            }
            if pos + 2 < end {
                let n2 = lower(pos + 2);
                if matches!(
                    (n1, n2),
                    (Some('r'), Some('e')) | (Some('v'), Some('e')) | (Some('l'), Some('l'))
                ) {
                    pos += 3;
                    add(pos, push);
                    continue;
                }
            }
        }
        // [^\r\n\p{L}\p{N}]?\p{L}+
        if !(c == '\r' || c == '\n' || cls == Class::Number)
            && (cls == Class::Letter || class(pos + 1) == Class::Letter)
        {
            pos += 1;
            while class(pos) == Class::Letter {
                pos += 1;
            }
            add(pos, push);
            continue;
        }
        // \p{N}{1,max_digits}
        if cls == Class::Number {
            let mut ini = pos;
            while class(pos) == Class::Number {
                pos += 1;
                if pos - ini >= max_digits {
                    add(pos, push);
                    ini = pos;
                }
            }
            add(pos, push);
            continue;
        }
        // <space>?[^\s\p{L}\p{N}]+[\r\n]*
        let other = |k: Class| k == Class::Other;
        let mut k2 = if c == ' ' { class(pos + 1) } else { cls };
        if other(k2) {
            pos += usize::from(c == ' ');
            while other(k2) {
                pos += 1;
                k2 = class(pos);
            }
            while is_crlf(ch(pos)) {
                pos += 1;
            }
            add(pos, push);
            continue;
        }
        let mut n_ws = 0;
        let mut last_crlf_end = 0;
        while class(pos + n_ws) == Class::Space {
            if is_crlf(ch(pos + n_ws)) {
                last_crlf_end = pos + n_ws + 1;
            }
            n_ws += 1;
        }
        // \s*[\r\n]+
        if last_crlf_end > 0 {
            pos = last_crlf_end;
            add(pos, push);
            continue;
        }
        // \s+(?!\S)
        if n_ws > 1 && ch(pos + n_ws).is_some() {
            pos += n_ws - 1;
            add(pos, push);
            continue;
        }
        // \s+
        if n_ws > 0 {
            pos += n_ws;
            add(pos, push);
            continue;
        }
        // No match: the code point alone.
        pos += 1;
        add(pos, push);
    }
}

/// Splits `chars` by the Tekken / GPT-4o regex as llama.cpp's std::regex
/// fallback runs it (over "collapsed" text: ASCII as itself, any other
/// letter one placeholder that is both upper and lower case), numbers in
/// runs of at most `max_digits`, with GPT-4o's contractions when
/// `contractions`; calls `push(a, b)` for each word `chars[a..b]`.
fn cased_split(
    chars: &[(usize, char)],
    max_digits: usize,
    contractions: bool,
    push: &mut impl FnMut(usize, usize),
) {
    let end = chars.len();
    let ch = |p: usize| (p < end).then(|| chars[p].1);
    let class = |p: usize| ch(p).map_or(Class::Outside, class_of);
    // `(?=[\p{L}])[^a-z]` and `(?=[\p{L}])[^A-Z]`.
    let upper =
        |p: usize| class(p) == Class::Letter && !ch(p).is_some_and(|c| c.is_ascii_lowercase());
    let lower =
        |p: usize| class(p) == Class::Letter && !ch(p).is_some_and(|c| c.is_ascii_uppercase());
    let run = |mut p: usize, f: &dyn Fn(usize) -> bool| {
        while f(p) {
            p += 1;
        }
        p
    };
    // `(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?` at `p`.
    let contraction = |p: usize| -> usize {
        if !contractions || ch(p) != Some('\'') {
            return 0;
        }
        let l = |q: usize| ch(q).map(|c| c.to_ascii_lowercase());
        match (l(p + 1), l(p + 2)) {
            (Some('s' | 't' | 'm' | 'd'), _) => 2,
            (Some('r'), Some('e')) | (Some('v'), Some('e')) | (Some('l'), Some('l')) => 3,
            _ => 0,
        }
    };
    let is_crlf = |c: Option<char>| matches!(c, Some('\r' | '\n'));
    let mut pos = 0;
    while pos < end {
        let start = pos;
        let c = chars[pos].1;
        let cls = class(pos);
        // The optional `[^\r\n\p{L}\p{N}]` before a word: tried first.
        let prefixes: &[usize] =
            if c != '\r' && c != '\n' && !matches!(cls, Class::Letter | Class::Number) {
                &[1, 0]
            } else {
                &[0]
            };
        // Alternative 1: upper* lower+ (greedy upper, backing off).
        let word1 = prefixes.iter().find_map(|&k| {
            let q = pos + k;
            let u = run(q, &upper);
            (q..=u).rev().find(|&m| lower(m)).map(|m| run(m, &lower))
        });
        // Alternative 2: upper+ lower*.
        let word = word1.or_else(|| {
            prefixes.iter().find_map(|&k| {
                let q = pos + k;
                let u = run(q, &upper);
                (u > q).then(|| run(u, &lower))
            })
        });
        if let Some(w) = word {
            pos = w + contraction(w);
            push(start, pos);
            continue;
        }
        // \p{N}{1,max_digits}
        if cls == Class::Number {
            while class(pos) == Class::Number && pos - start < max_digits {
                pos += 1;
            }
            push(start, pos);
            continue;
        }
        // <space>?[^\s\p{L}\p{N}]+[\r\n/]*
        let lead = usize::from(c == ' ');
        if class(pos + lead) == Class::Other {
            pos = run(pos + lead, &|p| class(p) == Class::Other);
            while matches!(ch(pos), Some('\r' | '\n' | '/')) {
                pos += 1;
            }
            push(start, pos);
            continue;
        }
        let n_ws = run(pos, &|p| class(p) == Class::Space) - pos;
        let last_crlf_end = (pos..pos + n_ws)
            .rev()
            .find(|&p| is_crlf(ch(p)))
            .map(|p| p + 1);
        pos = if let Some(e) = last_crlf_end {
            // \s*[\r\n]+
            e
        } else if n_ws > 1 && ch(pos + n_ws).is_some() {
            // \s+(?!\S)
            pos + n_ws - 1
        } else if n_ws > 0 {
            pos + n_ws
        } else {
            pos + 1
        };
        push(start, pos);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(pre: PreTokenizer, text: &str) -> Vec<&str> {
        pre.split(text)
            .into_iter()
            .map(|(a, b)| &text[a..b])
            .collect()
    }

    #[test]
    fn gpt2_words() {
        let w = words(PreTokenizer::Gpt2, "Hello world's  fine!! 42x\n\n  y");
        assert_eq!(
            w,
            vec!["Hello", " world", "'s", " ", " fine", "!!", " 42", "x", "\n\n ", " y"]
        );
    }

    #[test]
    fn llama3_and_qwen2_words() {
        let w = words(PreTokenizer::Llama3, "Hello WORLD'S  12345 x\n\n  y!!\n");
        assert_eq!(
            w,
            vec!["Hello", " WORLD", "'S", " ", " ", "123", "45", " x", "\n\n", " ", " y", "!!\n"]
        );
        let w = words(PreTokenizer::Qwen2, "a 123");
        assert_eq!(w, vec!["a", " ", "1", "2", "3"]);
    }

    #[test]
    fn qwen35_keeps_combining_marks_in_words() {
        // "cafe" + U+0301 (combining acute), a lone mark after a space, and
        // a mark after punctuation.
        let text = "cafe\u{301}s x \u{301}a !\u{301}";
        let w = words(PreTokenizer::Qwen35, text);
        assert_eq!(w, vec!["cafe\u{301}s", " x", " \u{301}a", " !", "\u{301}"]);
        let w = words(PreTokenizer::Qwen2, text);
        assert_eq!(
            w,
            vec!["cafe", "\u{301}s", " x", " \u{301}", "a", " !\u{301}"]
        );
    }

    #[test]
    fn tekken_and_gpt4o_words() {
        let w = words(
            PreTokenizer::Tekken,
            "HELLOworld helloWorld ÉCOLEs éA 12 a/b/\n",
        );
        assert_eq!(
            w,
            vec![
                "HELLOworld",
                " hello",
                "World",
                " ÉCOLEs",
                " é",
                "A",
                " ",
                "1",
                "2",
                " a",
                "/b",
                "/\n"
            ]
        );
        let w = words(PreTokenizer::Gpt4o, "DON'T we'Re 12345");
        assert_eq!(w, vec!["DON'T", " we'Re", " ", "123", "45"]);
    }

    #[test]
    fn smollm_isolates_digits() {
        let w = words(PreTokenizer::DigitsThenGpt2, "x 123 3.5");
        assert_eq!(w, vec!["x", " ", "1", "2", "3", " ", "3", ".", "5"]);
    }

    #[test]
    fn upper_case_contractions_are_not_split() {
        let w = words(PreTokenizer::Gpt2, "DON'T it's");
        assert_eq!(w, vec!["DON", "'", "T", " it", "'s"]);
    }

    #[test]
    fn trailing_spaces_stay_together() {
        assert_eq!(words(PreTokenizer::Gpt2, "a   "), vec!["a", "   "]);
        assert_eq!(words(PreTokenizer::Gpt2, ""), Vec::<&str>::new());
    }
}
