//! Tiny hand-made vocabularies in GGUF form, so the algorithms and error paths
//! are tested without any model file.

use gguf::GgufFile;
use tokenizer::{Tokenizer, TokenizerError};

/// A metadata value for the GGUF builder.
enum V<'a> {
    Str(&'a str),
    Bool(bool),
    U32(u32),
    Strs(&'a [&'a str]),
    F32s(&'a [f32]),
    I32s(&'a [i32]),
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// A GGUF v3 image with the given metadata and no tensors.
fn gguf(kvs: &[(&str, V)]) -> GgufFile {
    let mut b = b"GGUF".to_vec();
    b.extend_from_slice(&3u32.to_le_bytes());
    b.extend_from_slice(&0u64.to_le_bytes());
    b.extend_from_slice(&(kvs.len() as u64).to_le_bytes());
    for (key, v) in kvs {
        put_str(&mut b, key);
        let array_header = |b: &mut Vec<u8>, ty: u32, n: usize| {
            b.extend_from_slice(&9u32.to_le_bytes());
            b.extend_from_slice(&ty.to_le_bytes());
            b.extend_from_slice(&(n as u64).to_le_bytes());
        };
        match v {
            V::Str(s) => {
                b.extend_from_slice(&8u32.to_le_bytes());
                put_str(&mut b, s);
            }
            V::Bool(x) => {
                b.extend_from_slice(&7u32.to_le_bytes());
                b.push(u8::from(*x));
            }
            V::U32(x) => {
                b.extend_from_slice(&4u32.to_le_bytes());
                b.extend_from_slice(&x.to_le_bytes());
            }
            V::Strs(xs) => {
                array_header(&mut b, 8, xs.len());
                xs.iter().for_each(|s| put_str(&mut b, s));
            }
            V::F32s(xs) => {
                array_header(&mut b, 6, xs.len());
                xs.iter()
                    .for_each(|x| b.extend_from_slice(&x.to_le_bytes()));
            }
            V::I32s(xs) => {
                array_header(&mut b, 5, xs.len());
                xs.iter()
                    .for_each(|x| b.extend_from_slice(&x.to_le_bytes()));
            }
        }
    }
    GgufFile::from_bytes(b).expect("valid GGUF image")
}

const SPM_TOKENS: &[&str] = &[
    "<unk>", "<s>", "</s>", "▁", "a", "b", "ab", "▁a", "▁ab", "<0xC3>", "<0xA9>", "<ctl>",
];
const SPM_SCORES: &[f32] = &[
    0.0, 0.0, 0.0, -3.0, -3.0, -3.0, -1.0, -0.5, -2.0, 0.0, 0.0, 0.0,
];
const SPM_TYPES: &[i32] = &[2, 3, 3, 1, 1, 1, 1, 1, 1, 6, 6, 3];

fn spm(extra: Vec<(&'static str, V<'static>)>) -> Tokenizer {
    let mut kvs = vec![
        ("tokenizer.ggml.model", V::Str("llama")),
        ("tokenizer.ggml.tokens", V::Strs(SPM_TOKENS)),
        ("tokenizer.ggml.scores", V::F32s(SPM_SCORES)),
        ("tokenizer.ggml.token_type", V::I32s(SPM_TYPES)),
    ];
    kvs.extend(extra);
    Tokenizer::from_gguf(&gguf(&kvs)).expect("toy SPM loads")
}

#[test]
fn spm_merges_highest_score_first_with_space_prefix() {
    // Defaults for `llama`: BOS 1, add_bos, add_space_prefix.
    let tok = spm(vec![]);
    // " ab" → ▁ a b; "▁a" (-0.5) beats "ab" (-1.0), then "▁ab" forms.
    assert_eq!(tok.encode("ab", true, true), vec![1, 8]);
    assert_eq!(tok.encode("ab", false, true), vec![8]);
    // Without the space prefix, "ab" is the only pair.
    let tok = spm(vec![("tokenizer.ggml.add_space_prefix", V::Bool(false))]);
    assert_eq!(tok.encode("ab", false, true), vec![6]);
    assert_eq!(tok.encode("ba", false, true), vec![5, 4]);
}

#[test]
fn spm_falls_back_to_byte_tokens() {
    let tok = spm(vec![]);
    assert_eq!(tok.encode("é", true, true), vec![1, 3, 9, 10]);
    // Unknown bytes with no byte token become <unk>.
    assert_eq!(tok.encode("z", false, true), vec![3, 0]);
    assert_eq!(tok.token_bytes(9), [0xC3]);
    assert_eq!(tok.decode(&[3, 9, 10], false), "é");
    // As in llama.cpp, a skipped BOS keeps the next token's leading space.
    assert_eq!(tok.decode(&[1, 3, 9, 10], true), " é");
}

#[test]
fn spm_space_prefix_follows_special_tokens() {
    let tok = spm(vec![("tokenizer.ggml.add_bos_token", V::Bool(false))]);
    assert_eq!(tok.encode("a<ctl>a", true, true), vec![7, 11, 7]);
    // Not parsed: "<ctl>" is text, made of bytes with no tokens.
    let plain = tok.encode("a<ctl>", false, false);
    assert_eq!(plain.first(), Some(&7));
    assert!(!plain.contains(&11));
}

const BPE_TOKENS: &[&str] = &["<|end|>", "a", "b", "c", "Ġ", "ab", "abc", "Ġab", "Ġa"];
const BPE_MERGES: &[&str] = &["a b", "ab c", "Ġ ab", "Ġ a"];

fn bpe(pre: &'static str) -> Result<Tokenizer, TokenizerError> {
    let kvs = [
        ("tokenizer.ggml.model", V::Str("gpt2")),
        ("tokenizer.ggml.pre", V::Str(pre)),
        ("tokenizer.ggml.tokens", V::Strs(BPE_TOKENS)),
        (
            "tokenizer.ggml.token_type",
            V::I32s(&[3, 1, 1, 1, 1, 1, 1, 1, 1]),
        ),
        ("tokenizer.ggml.merges", V::Strs(BPE_MERGES)),
        ("tokenizer.ggml.eos_token_id", V::U32(0)),
    ];
    Tokenizer::from_gguf(&gguf(&kvs))
}

#[test]
fn bpe_merges_by_rank() {
    let tok = bpe("gpt-2").expect("toy BPE loads");
    // "abc" + " ab": "a b" (rank 0) before "Ġ a" (rank 3), so " ab" → Ġ + ab → Ġab.
    assert_eq!(tok.encode("abc ab", false, true), vec![6, 7]);
    assert_eq!(tok.encode("ba", false, true), vec![2, 1]);
    assert_eq!(tok.encode(" ab<|end|>", true, true), vec![7, 0]);
    assert_eq!(tok.decode(&[6, 7], false), "abc ab");
    assert!(tok.is_eog(0) && tok.is_control(0));
    // A byte with no token of its own is dropped, as llama.cpp drops it.
    assert_eq!(tok.encode("az", false, true), vec![1]);
}

#[test]
fn loading_errors_are_typed() {
    let no_model = gguf(&[("tokenizer.ggml.tokens", V::Strs(BPE_TOKENS))]);
    assert_eq!(
        Tokenizer::from_gguf(&no_model).expect_err("no model"),
        TokenizerError::MissingMetadata {
            key: "tokenizer.ggml.model"
        }
    );
    let bert = gguf(&[("tokenizer.ggml.model", V::Str("bert"))]);
    assert_eq!(
        Tokenizer::from_gguf(&bert).expect_err("bert"),
        TokenizerError::UnsupportedModel("bert".into())
    );
    assert_eq!(
        bpe("deepseek-llm").expect_err("unsupported pre"),
        TokenizerError::UnsupportedPreTokenizer("deepseek-llm".into())
    );
    let no_merges = gguf(&[
        ("tokenizer.ggml.model", V::Str("gpt2")),
        ("tokenizer.ggml.pre", V::Str("smollm")),
        ("tokenizer.ggml.tokens", V::Strs(BPE_TOKENS)),
    ]);
    assert_eq!(
        Tokenizer::from_gguf(&no_merges).expect_err("no merges"),
        TokenizerError::MissingMetadata {
            key: "tokenizer.ggml.merges"
        }
    );
    let short_scores = gguf(&[
        ("tokenizer.ggml.model", V::Str("llama")),
        ("tokenizer.ggml.tokens", V::Strs(SPM_TOKENS)),
        ("tokenizer.ggml.scores", V::F32s(&[0.0])),
    ]);
    assert!(matches!(
        Tokenizer::from_gguf(&short_scores),
        Err(TokenizerError::InvalidMetadata { .. })
    ));
}

#[test]
fn tokenizer_is_shareable_across_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Tokenizer>();
    assert_send_sync::<tokenizer::ChatTemplate>();
}
