//! Constrained vs unconstrained decode throughput on one engine, side by
//! side, at 1 and 16 streams, with the mask time per token.
//!
//! ```text
//! cargo run -p engine --example constrained_decode -- [model] [threads] [tokens]
//! ```
//!
//! Every stream generates exactly `tokens` tokens (default 96): the
//! unconstrained ones with `ignore_eos`, the constrained ones under a JSON
//! Schema that cannot close sooner (an array of at least 64 small objects),
//! so both runs do the same number of decode steps. Prints tokens/s of
//! each, their ratio, and the mean mask time (computed beside the forward
//! pass; it costs a step only when it outlasts the pass).

use std::time::Instant;

use engine::{ChatMessage, EngineConfig, EngineHandle, Event, GenerateRequest, SamplingParams};
use grammar::{Compiler, GrammarSpec};
use serde_json::json;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let model = args
        .get(1)
        .cloned()
        .unwrap_or_else(|| testkit::SMOLLM2.into());
    let threads: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(2);
    let tokens: usize = args.get(3).and_then(|a| a.parse().ok()).unwrap_or(96);
    let e = EngineHandle::start(
        &testkit::model_path(&model),
        EngineConfig {
            threads,
            ..EngineConfig::default()
        },
    )
    .expect("engine");
    let compiler = Compiler::for_tokenizer(e.tokenizer(), e.tokenizer().vocab_size()).unwrap();
    let grammar = compiler
        .compile(&GrammarSpec::JsonSchema {
            schema: json!({
                "type": "array",
                "minItems": 64,
                "items": {
                    "type": "object",
                    "properties": {"name": {"type": "string", "maxLength": 12}, "age": {"type": "integer"}},
                    "required": ["name", "age"],
                    "additionalProperties": false
                }
            }),
            strict: true,
        })
        .unwrap();
    let text = e
        .render_chat(
            &[ChatMessage::new(
                "user",
                "List people with their ages as JSON.",
            )],
            true,
        )
        // A base model (no chat template) gets the plain request.
        .unwrap_or_else(|_| "People with their ages, as JSON:\n".to_owned());
    let prompt = e.encode_prompt(&text);
    println!("model {model}, {threads} threads, {tokens} tokens per stream");
    println!("| streams | unconstrained tok/s | constrained tok/s | ratio | mask µs/token |");
    println!("|---|---|---|---|---|");
    for streams in [1usize, 16] {
        let run = |constrained: bool| {
            let before = e.stats();
            let start = Instant::now();
            let gens: Vec<_> = (0..streams)
                .map(|i| {
                    e.submit(GenerateRequest {
                        prompt: prompt.clone(),
                        params: SamplingParams {
                            seed: Some(i as u64),
                            ..SamplingParams::default()
                        },
                        max_tokens: Some(tokens),
                        ignore_eos: !constrained,
                        constraint: constrained.then(|| grammar.constraint()),
                        ..GenerateRequest::default()
                    })
                    .unwrap()
                })
                .collect();
            let mut generated = 0usize;
            for mut g in gens {
                while let Some(ev) = g.next_blocking() {
                    match ev {
                        Event::Token { .. } => generated += 1,
                        Event::Done { .. } => break,
                        Event::Failed { message } => panic!("{message}"),
                    }
                }
            }
            let secs = start.elapsed().as_secs_f64();
            let after = e.stats();
            let masks = after.masks - before.masks;
            let mask_us = if masks > 0 {
                (after.mask_nanos - before.mask_nanos) as f64 / masks as f64 / 1000.0
            } else {
                0.0
            };
            (generated as f64 / secs, mask_us, generated)
        };
        // Warm up, then alternate, best of two each.
        run(false);
        let (mut free, mut bound, mut mask) = (0f64, 0f64, 0f64);
        for _ in 0..2 {
            free = free.max(run(false).0);
            let (tps, us, n) = run(true);
            assert_eq!(n, streams * tokens, "constrained streams ended early");
            bound = bound.max(tps);
            mask = us;
        }
        println!(
            "| {streams} | {free:.1} | {bound:.1} | {:.2}× | {mask:.0} |",
            bound / free
        );
    }
}
