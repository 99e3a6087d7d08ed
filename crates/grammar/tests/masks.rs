//! Grammars over the real SmolLM2 vocabulary (BPE) and Gemma 3's
//! (SentencePiece): steering through the masks towards a target text ends
//! in exactly that text when the schema accepts it, end-of-generation is
//! allowed exactly where the grammar accepts, and text the schema refuses
//! cannot be spelled.

use std::sync::Arc;

use grammar::{Compiler, GrammarError, GrammarSpec};
use sampling::TokenConstraint;
use serde_json::json;
use tokenizer::Tokenizer;

fn tokenizer(name: &str) -> Arc<Tokenizer> {
    let file = gguf::GgufFile::open(testkit::model_path(name)).expect("model file");
    Arc::new(Tokenizer::from_gguf(&file).expect("tokenizer"))
}

fn allowed(mask: &[u32], id: u32) -> bool {
    mask.get(id as usize / 32)
        .is_some_and(|w| w & (1 << (id % 32)) != 0)
}

/// Steers the grammar towards `target`: at each step the longest allowed
/// token spelling the target's next bytes. Returns the text spelled and
/// whether end-of-generation was allowed at its end.
fn steer(tok: &Arc<Tokenizer>, spec: &GrammarSpec, target: &str) -> (String, bool) {
    let compiler = Compiler::for_tokenizer(tok, tok.vocab_size()).unwrap();
    let grammar = compiler.compile(spec).unwrap();
    let mut m = grammar.matcher();
    let mut mask = Vec::new();
    let mut out = Vec::<u8>::new();
    loop {
        m.compute_mask(&mut mask).unwrap();
        let rest = &target.as_bytes()[out.len()..];
        let best = (0..tok.vocab_size() as u32)
            .filter(|&id| allowed(&mask, id) && !tok.is_eog(id) && !tok.is_control(id))
            .filter(|&id| {
                let b = tok.token_bytes(id);
                !b.is_empty() && rest.starts_with(b)
            })
            .max_by_key(|&id| tok.token_bytes(id).len());
        let Some(id) = best else {
            let eos = tok.eog_ids().any(|id| allowed(&mask, id));
            return (String::from_utf8(out).unwrap(), eos);
        };
        out.extend_from_slice(tok.token_bytes(id));
        m.commit(id).unwrap();
        if m.is_finished() {
            return (String::from_utf8(out).unwrap(), true);
        }
    }
}

fn schema() -> GrammarSpec {
    GrammarSpec::JsonSchema {
        schema: json!({
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "days": {"type": "integer", "minimum": 1},
                "unit": {"enum": ["c", "f"]}
            },
            "required": ["city", "days", "unit"],
            "additionalProperties": false
        }),
        strict: true,
    }
}

#[test]
fn a_valid_object_is_spelled_whole_and_may_end_there() {
    for model in [testkit::SMOLLM2, testkit::GEMMA3] {
        let tok = tokenizer(model);
        let target = r#"{"city": "Paris ☀", "days": 3, "unit": "c"}"#;
        assert_eq!(
            steer(&tok, &schema(), target),
            (target.to_owned(), true),
            "{model}"
        );
    }
}

#[test]
fn text_the_schema_refuses_cannot_be_spelled() {
    let tok = tokenizer(testkit::SMOLLM2);
    // A wrong enum value: the mask stops the text before it, with no end allowed.
    let (got, eos) = steer(
        &tok,
        &schema(),
        r#"{"city": "Paris", "days": 3, "unit": "k"}"#,
    );
    assert_eq!(got, r#"{"city": "Paris", "days": 3, "unit": ""#);
    assert!(!eos);
    // A missing property: the object cannot close early.
    let (got, eos) = steer(&tok, &schema(), r#"{"city": "Paris"}"#);
    assert_eq!(got, r#"{"city": "Paris""#);
    assert!(!eos);
}

#[test]
fn json_object_and_lark_grammars() {
    let tok = tokenizer(testkit::SMOLLM2);
    let target = r#"{"a": [1, 2, {"b": null}]}"#;
    assert_eq!(
        steer(&tok, &GrammarSpec::JsonObject, target),
        (target.to_owned(), true)
    );
    let lark = GrammarSpec::Lark(
        "start: \"<tool_call>\" %json {\"type\": \"object\", \"properties\": {\"name\": {\"const\": \"f\"}}, \"required\": [\"name\"]} \"</tool_call>\"".into(),
    );
    let call = r#"<tool_call>{"name":"f"}</tool_call>"#;
    assert_eq!(steer(&tok, &lark, call), (call.to_owned(), true));
}

#[test]
fn bad_and_oversized_schemas_are_refused_with_their_place() {
    let tok = tokenizer(testkit::SMOLLM2);
    let compiler = Compiler::for_tokenizer(&tok, tok.vocab_size()).unwrap();
    let err = compiler
        .compile(&GrammarSpec::JsonSchema {
            schema: json!({"type": "object", "properties": {"x": {"type": "nope"}}}),
            strict: false,
        })
        .err()
        .unwrap();
    let GrammarError::Schema(fault) = err else {
        panic!("{err:?}")
    };
    assert_eq!(fault.path, "properties.x.type");
    // A schema over the grammar-size limit is refused, not compiled.
    let props: serde_json::Map<String, serde_json::Value> = (0..200)
        .map(|i| {
            (
                format!("p{i}"),
                json!({"type": "array", "items": {"type": "string", "maxLength": 5}}),
            )
        })
        .collect();
    let schema = json!({"type": "object", "properties": props});
    let small =
        Compiler::with_limits(tok.clone(), tok.vocab_size(), 1000, grammar::COMPILE_FUEL).unwrap();
    let big = small.compile(&GrammarSpec::JsonSchema {
        schema: schema.clone(),
        strict: false,
    });
    assert!(
        matches!(big, Err(GrammarError::Compile(_))),
        "{:?}",
        big.err()
    );
    // Under the default limits the same schema compiles.
    compiler
        .compile(&GrammarSpec::JsonSchema {
            schema,
            strict: false,
        })
        .unwrap();
}

#[test]
fn a_control_token_is_named_by_id_and_shown_only_when_asked() {
    // SmolLM2's `<|im_start|>` is a control token: text never spells it,
    // `<[ID]>` names it.
    let tok = tokenizer(testkit::SMOLLM2);
    let id = tok.token_to_id("<|im_start|>").expect("<|im_start|>");
    assert!(tok.is_control(id) && !tok.is_eog(id));
    let compiler = Compiler::for_tokenizer(&tok, tok.vocab_size()).unwrap();
    let named = compiler
        .compile(&GrammarSpec::Lark(format!("start: <[{id}]> \"x\"")))
        .unwrap();
    let spelt = compiler
        .compile(&GrammarSpec::Lark("start: \"<|im_start|>x\"".into()))
        .unwrap();
    let mut mask = Vec::new();
    let mut m = named.clone().showing(vec![id]).matcher();
    m.compute_mask(&mut mask).unwrap();
    let ids: Vec<u32> = (0..tok.vocab_size() as u32)
        .filter(|&i| allowed(&mask, i))
        .collect();
    assert_eq!(ids, [id]);
    assert!(m.shows(id));
    m.commit(id).unwrap();
    assert!(!named.matcher().shows(id));
    let mut m = spelt.matcher();
    m.compute_mask(&mut mask).unwrap();
    assert!(!allowed(&mask, id));
    assert!(allowed(&mask, tok.token_to_id("<").expect("<")));
}
