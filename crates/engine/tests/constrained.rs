//! Constrained decoding in the engine on the real default model: every
//! sequence of a continuous batch samples only what its grammar allows
//! (each its own grammar), ends where the grammar is complete, and ends
//! with `Length` when `max_tokens` comes first. The masks are computed
//! beside the forward pass and counted in the engine's stats.

use engine::{
    ChatMessage, EngineConfig, EngineHandle, Event, FinishReason, GenerateRequest, SamplingParams,
};
use grammar::{Compiler, GrammarSpec};
use serde_json::{json, Value};

fn start() -> EngineHandle {
    EngineHandle::start(
        &testkit::model_path(testkit::SMOLLM2),
        EngineConfig {
            threads: 2,
            ..EngineConfig::default()
        },
    )
    .unwrap()
}

fn run(gen: engine::Generation) -> (String, FinishReason) {
    let mut gen = gen;
    let mut text = String::new();
    while let Some(ev) = gen.next_blocking() {
        match ev {
            Event::Token { text: t, .. } => text.push_str(&t),
            Event::Done {
                text: t, reason, ..
            } => {
                text.push_str(&t);
                return (text, reason);
            }
            Event::Failed { message } => panic!("failed: {message}"),
        }
    }
    panic!("no Done");
}

fn prompt(e: &EngineHandle, user: &str) -> Vec<u32> {
    let text = e
        .render_chat(&[ChatMessage::new("user", user)], true)
        .unwrap();
    e.encode_prompt(&text)
}

#[test]
fn a_batch_of_constrained_and_free_sequences() {
    let e = start();
    let compiler = Compiler::for_tokenizer(e.tokenizer(), e.tokenizer().vocab_size()).unwrap();
    let person = compiler
        .compile(&GrammarSpec::JsonSchema {
            schema: json!({
                "type": "object",
                "properties": {
                    "name": {"type": "string", "maxLength": 20},
                    "age": {"type": "integer"},
                    "pets": {"type": "array", "items": {"enum": ["cat", "dog"]}, "maxItems": 3}
                },
                "required": ["name", "age", "pets"],
                "additionalProperties": false
            }),
            strict: true,
        })
        .unwrap();
    let colour = compiler
        .compile(&GrammarSpec::JsonSchema {
            schema: json!({"enum": ["red", "green", "blue"]}),
            strict: false,
        })
        .unwrap();
    let before = e.stats().masks;
    let mut gens = Vec::new();
    for seed in 0..4u64 {
        let grammar = if seed % 2 == 0 { &person } else { &colour };
        gens.push((
            seed,
            e.submit(GenerateRequest {
                prompt: prompt(&e, "Describe a person as JSON."),
                params: SamplingParams {
                    seed: Some(seed),
                    ..SamplingParams::default()
                },
                max_tokens: Some(200),
                constraint: Some(grammar.constraint()),
                ..GenerateRequest::default()
            })
            .unwrap(),
        ));
    }
    // An unconstrained neighbour in the same batch is left alone.
    let free = e
        .submit(GenerateRequest {
            prompt: prompt(&e, "Say hello."),
            params: SamplingParams::greedy(),
            max_tokens: Some(8),
            ..GenerateRequest::default()
        })
        .unwrap();
    for (seed, gen) in gens {
        let (text, reason) = run(gen);
        assert_eq!(reason, FinishReason::Stop, "{text}");
        let value: Value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("{text}"));
        if seed % 2 == 0 {
            let o = value.as_object().unwrap();
            assert_eq!(o.len(), 3, "{text}");
            assert!(o["name"].is_string() && o["age"].is_i64() && o["pets"].is_array());
        } else {
            assert!(
                ["red", "green", "blue"].contains(&value.as_str().unwrap()),
                "{text}"
            );
        }
    }
    let (free_text, _) = run(free);
    assert!(!free_text.is_empty());
    assert!(e.stats().masks > before);
}

#[test]
fn max_tokens_before_the_json_closes_is_length() {
    let e = start();
    let compiler = Compiler::for_tokenizer(e.tokenizer(), e.tokenizer().vocab_size()).unwrap();
    let any = compiler.compile(&GrammarSpec::JsonObject).unwrap();
    let (text, reason) = run(e
        .submit(GenerateRequest {
            prompt: prompt(&e, "Give me a big JSON object about France."),
            params: SamplingParams::greedy(),
            max_tokens: Some(5),
            constraint: Some(any.constraint()),
            ..GenerateRequest::default()
        })
        .unwrap());
    assert_eq!(reason, FinishReason::Length, "{text}");
    assert!(text.starts_with('{'), "{text}");
    assert!(serde_json::from_str::<Value>(&text).is_err());
}
