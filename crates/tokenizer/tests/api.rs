//! Special-token facts and decoding against the real model files. Expected ids
//! are what llama.cpp b11434 prints when loading the same GGUFs
//! (`llama-tokenize -lv 4`: BOS/EOS/EOT/EOG lines, special tokens cache size).

mod common;

use std::time::Instant;

#[test]
fn smollm2_special_tokens() {
    let Some((_, tok)) = common::load(common::SMOLLM2) else {
        return;
    };
    assert_eq!(tok.vocab_size(), 49152);
    assert_eq!(tok.bos_id(), Some(1));
    assert_eq!(tok.eos_id(), Some(2));
    assert_eq!(tok.bos_token(), Some("<|im_start|>"));
    assert_eq!(tok.eos_token(), Some("<|im_end|>"));
    assert!(!tok.add_bos());
    // llama.cpp: EOG = 0 '<|endoftext|>', 2 '<|im_end|>', 4 '<reponame>' (FIM repo).
    assert_eq!(tok.eog_ids().collect::<Vec<_>>(), vec![0, 2, 4]);
    assert!(tok.is_eog(2) && !tok.is_eog(1) && !tok.is_eog(198));
    assert!(tok.is_control(1) && tok.is_control(16) && !tok.is_control(17));
    assert_eq!(tok.token_to_id("<|im_end|>"), Some(2));
    assert_eq!(tok.token_to_id("Ġthe"), Some(260));
    assert_eq!(tok.token_to_id("no such token"), None);
    assert_eq!(tok.id_to_token(198), Some("Ċ"));
    assert!(tok
        .chat_template()
        .is_some_and(|t| t.contains("<|im_start|>")));
}

#[test]
fn gemma3_special_tokens() {
    let Some((_, tok)) = common::load(common::GEMMA3) else {
        return;
    };
    assert_eq!(tok.vocab_size(), 262144);
    assert_eq!(tok.bos_id(), Some(2));
    assert_eq!(tok.eos_id(), Some(1));
    assert_eq!(tok.bos_token(), Some("<bos>"));
    assert!(tok.add_bos());
    // llama.cpp: EOG = 1 '<eos>', 106 '<end_of_turn>', 212 '</s>'.
    assert_eq!(tok.eog_ids().collect::<Vec<_>>(), vec![1, 106, 212]);
    assert_eq!(tok.token_to_id("<end_of_turn>"), Some(106));
    assert!(tok.is_control(106) && !tok.is_control(107));
    // Byte tokens decode to their byte; `▁` to a space; controls to their text.
    assert_eq!(tok.token_bytes(248), b"\n");
    let hello = tok.encode(" Hello", false, false);
    assert_eq!(tok.token_bytes(hello[0]), b" Hello");
    assert_eq!(tok.token_bytes(106), b"<end_of_turn>");
    assert_eq!(tok.token_bytes(u32::MAX), b"");
}

#[test]
fn gemma3_has_no_chat_template() {
    let Some((_, tok)) = common::load(common::GEMMA3) else {
        return;
    };
    assert_eq!(tok.chat_template(), None);
    let err = tok.load_chat_template().expect_err("no template");
    assert_eq!(err, tokenizer::TokenizerError::NoChatTemplate);
    assert!(
        err.to_string().contains("model has no chat template"),
        "{err}"
    );
    assert_eq!(err.kind(), tokenizer::ErrorKind::InvalidRequest);
}

#[test]
fn bos_follows_add_special_and_model_flag() {
    if let Some((_, tok)) = common::load(common::GEMMA3) {
        assert_eq!(tok.encode("Hi", true, true).first(), Some(&2));
        assert_ne!(tok.encode("Hi", false, true).first(), Some(&2));
        assert_eq!(tok.encode("", true, true), vec![2]);
        assert_eq!(tok.encode("", false, true), Vec::<u32>::new());
    }
    if let Some((_, tok)) = common::load(common::SMOLLM2) {
        // SmolLM2's add_bos_token is false: no BOS even when asked for specials.
        assert_eq!(tok.encode("Hi", true, true), tok.encode("Hi", false, true));
        assert_eq!(tok.encode("", true, true), Vec::<u32>::new());
    }
}

#[test]
fn special_tokens_parse_only_when_asked() {
    let Some((_, tok)) = common::load(common::SMOLLM2) else {
        return;
    };
    let text = "<|im_start|>user\nhi<|im_end|>";
    let parsed = tok.encode(text, false, true);
    assert_eq!(parsed.first(), Some(&1));
    assert_eq!(parsed.last(), Some(&2));
    let plain = tok.encode(text, false, false);
    assert!(!plain.contains(&1) && !plain.contains(&2), "{plain:?}");
    assert_eq!(tok.decode(&plain, false), text);
    assert_eq!(tok.decode(&parsed, false), text);
    assert_eq!(tok.decode(&parsed, true), "user\nhi");
}

#[test]
fn decode_skips_gemma_bos_and_controls_when_asked() {
    let Some((_, tok)) = common::load(common::GEMMA3) else {
        return;
    };
    let ids = tok.encode(
        "<start_of_turn>user\nHello, world!<end_of_turn>",
        true,
        true,
    );
    assert_eq!(ids[0], 2);
    assert_eq!(tok.decode(&ids, true), "user\nHello, world!");
    assert_eq!(
        tok.decode(&ids, false),
        "<bos><start_of_turn>user\nHello, world!<end_of_turn>"
    );
}

#[test]
fn encoding_and_loading_are_fast() {
    let text = std::fs::read_to_string(common::fixtures_dir().join("gemma3-270m.json"))
        .expect("fixture readable");
    let text: String = text.chars().take(4096).collect();
    for file in [common::SMOLLM2, common::GEMMA3] {
        let Some(path) = common::model_path(file) else {
            continue;
        };
        let f = gguf::GgufFile::open(&path).expect("model opens");
        let t0 = Instant::now();
        let tok = tokenizer::Tokenizer::from_gguf(&f).expect("tokenizer loads");
        let load = t0.elapsed();
        let t1 = Instant::now();
        let n = tok.encode(&text, true, true).len();
        let encode = t1.elapsed();
        println!("{file}: from_gguf {load:?}, encode 4 KiB ({n} tokens) {encode:?}");
        // Generous bounds (shared 2-core CI machines): they catch pathological
        // regressions, not small slowdowns.
        assert!(load.as_millis() < 3000, "from_gguf took {load:?}");
        assert!(encode.as_millis() < 200, "encode took {encode:?}");
    }
}
