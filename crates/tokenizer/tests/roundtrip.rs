//! Property tests on the real vocabularies: decoding what was encoded gives
//! the text back, and `token_bytes` of each id concatenate to the decoded text.

mod common;

use std::sync::OnceLock;

use proptest::prelude::*;
use tokenizer::Tokenizer;

fn smollm() -> Option<&'static Tokenizer> {
    static TOK: OnceLock<Option<Tokenizer>> = OnceLock::new();
    TOK.get_or_init(|| common::load(common::SMOLLM2).map(|(_, t)| t))
        .as_ref()
}

fn gemma() -> Option<&'static Tokenizer> {
    static TOK: OnceLock<Option<Tokenizer>> = OnceLock::new();
    TOK.get_or_init(|| common::load(common::GEMMA3).map(|(_, t)| t))
        .as_ref()
}

/// Text mixing ASCII, whitespace runs, digits, specials' texts and any Unicode.
fn text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        "[a-zA-Z]{1,8}",
        "[ \t\r\n]{1,6}",
        "[0-9]{1,6}",
        "['.,!?;:()<>|_-]{1,3}",
        Just("<|im_start|>".to_string()),
        Just("<end_of_turn>".to_string()),
        Just("'s".to_string()),
        any::<String>(),
        "\\PC{1,6}",
    ];
    prop::collection::vec(piece, 0..12).prop_map(|v| v.concat())
}

fn check(tok: &Tokenizer, s: &str, parse_special: bool) -> Result<(), TestCaseError> {
    let ids = tok.encode(s, false, parse_special);
    prop_assert_eq!(tok.decode(&ids, false), s);
    let joined: Vec<u8> = ids
        .iter()
        .flat_map(|&id| tok.token_bytes(id).to_vec())
        .collect();
    prop_assert_eq!(joined, s.as_bytes());
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn smollm2_round_trips(s in text(), parse_special in any::<bool>()) {
        if let Some(tok) = smollm() {
            check(tok, &s, parse_special)?;
        }
    }

    #[test]
    fn gemma3_round_trips(s in text(), parse_special in any::<bool>()) {
        if let Some(tok) = gemma() {
            check(tok, &s, parse_special)?;
        }
    }
}
