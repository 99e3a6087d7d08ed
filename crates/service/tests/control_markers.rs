//! Tool-call markers that are control tokens of the model's vocabulary
//! (Mistral's `[TOOL_CALLS]`/`[ARGS]`/`[CALL_ID]`, Granite's
//! `<|tool_call|>`): over a SentencePiece vocabulary built here that holds
//! them as control tokens (as Mistral's and Granite's GGUFs do), the
//! grammar admits the marker's token id where the marker goes and not its
//! spelling, the matcher asks the engine to show that token's text, and
//! the call reader reads a call out of the token stream's text. Without
//! `in_vocabulary` (a vocabulary with no such token) the marker is spelt.

use std::sync::Arc;

use api::Tool;
use engine::{TokenConstraint, Tokenizer};
use grammar::Compiler;
use serde_json::json;
use service::generation::tools::{self, read_whole_in, Family, Syntax, ToolMode};

/// Control tokens of the toy vocabulary, by id.
const UNK: u32 = 0;
const TOOL_CALLS: u32 = 3;
const ARGS: u32 = 4;
const CALL_ID: u32 = 5;
const TOOL_CALL: u32 = 6;
/// `▁`, a space.
const SPACE: u32 = 7;
/// The id of byte 0x00's `<0x00>` token; bytes follow in order.
const BYTE0: u32 = 8;

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// A GGUF v3 image of an SPM vocabulary: `<unk> <s> </s>`, the four
/// markers as control tokens, `▁`, and the 256 byte tokens.
fn vocabulary() -> Arc<Tokenizer> {
    let mut tokens: Vec<String> = [
        "<unk>",
        "<s>",
        "</s>",
        "[TOOL_CALLS]",
        "[ARGS]",
        "[CALL_ID]",
        "<|tool_call|>",
        "▁",
    ]
    .map(str::to_owned)
    .to_vec();
    let mut types: Vec<i32> = vec![2, 3, 3, 3, 3, 3, 3, 1];
    for b in 0..=255u8 {
        tokens.push(format!("<0x{b:02X}>"));
        types.push(6);
    }
    let mut b = b"GGUF".to_vec();
    b.extend_from_slice(&3u32.to_le_bytes());
    b.extend_from_slice(&0u64.to_le_bytes()); // no tensors
    b.extend_from_slice(&6u64.to_le_bytes()); // metadata entries
    let array = |b: &mut Vec<u8>, key: &str, ty: u32, n: usize| {
        put_str(b, key);
        b.extend_from_slice(&9u32.to_le_bytes());
        b.extend_from_slice(&ty.to_le_bytes());
        b.extend_from_slice(&(n as u64).to_le_bytes());
    };
    put_str(&mut b, "tokenizer.ggml.model");
    b.extend_from_slice(&8u32.to_le_bytes());
    put_str(&mut b, "llama");
    array(&mut b, "tokenizer.ggml.tokens", 8, tokens.len());
    tokens.iter().for_each(|t| put_str(&mut b, t));
    array(&mut b, "tokenizer.ggml.scores", 6, tokens.len());
    tokens
        .iter()
        .for_each(|_| b.extend_from_slice(&0f32.to_le_bytes()));
    array(&mut b, "tokenizer.ggml.token_type", 5, types.len());
    types
        .iter()
        .for_each(|t| b.extend_from_slice(&t.to_le_bytes()));
    for (key, value) in [
        ("tokenizer.ggml.bos_token_id", 1u32),
        ("tokenizer.ggml.eos_token_id", 2),
    ] {
        put_str(&mut b, key);
        b.extend_from_slice(&4u32.to_le_bytes());
        b.extend_from_slice(&value.to_le_bytes());
    }
    let file = gguf::GgufFile::from_bytes(b).expect("valid GGUF image");
    Arc::new(Tokenizer::from_gguf(&file).expect("toy SPM loads"))
}

fn weather() -> Vec<Tool> {
    vec![
        serde_json::from_value(json!({"type": "function", "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
            "required": ["city"], "additionalProperties": false},
        "strict": true}}))
        .expect("tool"),
    ]
}

/// Token ids spelling `text` byte by byte (a space as `▁`, the token the
/// trie keeps for it).
fn bytes(text: &str) -> Vec<u32> {
    text.bytes()
        .map(|b| {
            if b == b' ' {
                SPACE
            } else {
                BYTE0 + u32::from(b)
            }
        })
        .collect()
}

fn allowed(mask: &[u32], id: u32) -> bool {
    mask.get(id as usize / 32)
        .is_some_and(|w| w >> (id % 32) & 1 == 1)
}

/// The matcher of `syntax`'s grammar (calls required) for `tok`.
fn matcher(tok: &Arc<Tokenizer>, syntax: &Syntax, mode: ToolMode) -> Box<dyn TokenConstraint> {
    let (spec, _) = tools::grammar_spec_in(syntax, &weather(), &mode, true, None)
        .expect("grammar")
        .expect("a grammar with calls");
    let compiler = Compiler::new(tok.clone(), tok.vocab_size()).expect("compiler");
    let grammar = compiler
        .compile(&spec)
        .expect("compiles")
        .showing(syntax.control_tokens());
    Box::new(grammar.matcher())
}

/// Feeds `ids` through `m`, each one checked against the mask first;
/// the output's text as the engine writes it (control tokens the
/// matcher shows as their text, others as nothing).
fn spell(tok: &Tokenizer, m: &mut dyn TokenConstraint, ids: &[u32]) -> String {
    let mut mask = Vec::new();
    let mut text = Vec::new();
    for (i, &id) in ids.iter().enumerate() {
        m.compute_mask(&mut mask).expect("mask");
        assert!(allowed(&mask, id), "token {i} ({id}) refused");
        m.commit(id).expect("commit");
        if !tok.is_control(id) || m.shows(id) {
            text.extend_from_slice(tok.token_bytes(id));
        }
    }
    String::from_utf8(text).expect("utf-8")
}

fn syntax_of(template: &str, tok: &Tokenizer) -> Syntax {
    Syntax::of_template(template)
        .expect("a known syntax")
        .in_vocabulary(tok)
}

#[test]
fn mistral_markers_are_their_control_tokens_and_are_read() {
    let tok = vocabulary();
    assert!(tok.is_control(TOOL_CALLS) && tok.is_control(ARGS));
    let syntax = syntax_of(
        "{% if tools %}{{ tools }}{% endif %}[TOOL_CALLS]{{ name }}[ARGS]{{ arguments }}",
        &tok,
    );
    assert_eq!(syntax.family, Family::MistralArgs);
    assert_eq!(syntax.control_tokens(), vec![TOOL_CALLS, ARGS]);

    let mut m = matcher(&tok, &syntax, ToolMode::Required);
    let mut mask = Vec::new();
    m.compute_mask(&mut mask).unwrap();
    // The call opens with the control token, never with its spelling.
    assert!(allowed(&mask, TOOL_CALLS));
    assert!(!allowed(&mask, BYTE0 + u32::from(b'[')));
    assert!(!allowed(&mask, ARGS) && !allowed(&mask, UNK));

    let mut ids = vec![TOOL_CALLS];
    ids.extend(bytes("get_weather"));
    ids.push(ARGS);
    ids.extend(bytes("{\"city\": \"Paris\"}"));
    ids.push(TOOL_CALLS);
    ids.extend(bytes("get_weather"));
    ids.push(ARGS);
    ids.extend(bytes("{\"city\": \"Oslo\"}"));
    let mut m = matcher(&tok, &syntax, ToolMode::Required);
    let text = spell(&tok, m.as_mut(), &ids);
    assert!(m.shows(TOOL_CALLS) && m.shows(ARGS) && !m.shows(2));
    assert_eq!(
        text,
        "[TOOL_CALLS]get_weather[ARGS]{\"city\": \"Paris\"}[TOOL_CALLS]get_weather[ARGS]{\"city\": \"Oslo\"}"
    );
    let (content, calls) = read_whole_in(&syntax, &text);
    assert_eq!(content, None);
    let calls: Vec<(&str, &str)> = calls
        .iter()
        .map(|c| (c.function.name.as_str(), c.function.arguments.as_str()))
        .collect();
    assert_eq!(
        calls,
        [
            ("get_weather", "{\"city\": \"Paris\"}"),
            ("get_weather", "{\"city\": \"Oslo\"}")
        ]
    );
}

#[test]
fn call_ids_and_granite_markers_use_their_tokens_too() {
    let tok = vocabulary();
    let syntax = syntax_of(
        "{% if tools %}{% endif %}[TOOL_CALLS]{{ n }}[CALL_ID]{{ id }}[ARGS]{{ a }}",
        &tok,
    );
    assert_eq!(syntax.family, Family::MistralCallId);
    assert_eq!(syntax.control_tokens(), vec![TOOL_CALLS, ARGS, CALL_ID]);
    let mut ids = vec![TOOL_CALLS];
    ids.extend(bytes("get_weather"));
    ids.push(CALL_ID);
    ids.extend(bytes("a1b2c3d4e"));
    ids.push(ARGS);
    ids.extend(bytes("{\"city\": \"Paris\"}"));
    let mut m = matcher(&tok, &syntax, ToolMode::Required);
    let text = spell(&tok, m.as_mut(), &ids);
    let (_, calls) = read_whole_in(&syntax, &text);
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].function.arguments, "{\"city\": \"Paris\"}");

    let syntax = syntax_of("{% if tools %}<|tool_call|>{{ tools }}{% endif %}", &tok);
    assert_eq!(syntax.family, Family::Granite);
    assert_eq!(syntax.control_tokens(), vec![TOOL_CALL]);
    let mut ids = vec![TOOL_CALL];
    ids.extend(bytes(
        "[{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Rome\"}}]",
    ));
    // Under `auto`, text may not begin with the marker's spelling either.
    let mut m = matcher(&tok, &syntax, ToolMode::Auto);
    let mut mask = Vec::new();
    m.compute_mask(&mut mask).unwrap();
    assert!(allowed(&mask, BYTE0 + u32::from(b'H')) && allowed(&mask, TOOL_CALL));
    let text = spell(&tok, m.as_mut(), &ids);
    let (content, calls) = read_whole_in(&syntax, &text);
    assert_eq!(content, None);
    assert_eq!(calls[0].function.name, "get_weather");
    assert_eq!(calls[0].function.arguments, "{\"city\": \"Rome\"}");
}

#[test]
fn without_the_vocabulary_the_marker_is_spelt() {
    let tok = vocabulary();
    let syntax = Syntax::of_template("{% if tools %}{% endif %}[TOOL_CALLS]{{ n }}[ARGS]")
        .expect("a known syntax");
    assert!(syntax.control_tokens().is_empty());
    let mut m = matcher(&tok, &syntax, ToolMode::Required);
    let mut mask = Vec::new();
    m.compute_mask(&mut mask).unwrap();
    assert!(allowed(&mask, BYTE0 + u32::from(b'[')));
    assert!(!allowed(&mask, TOOL_CALLS));
    assert!(!m.shows(TOOL_CALLS));
}
