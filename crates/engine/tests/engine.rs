//! The engine's behaviour through its public handle, on the real default model:
//! batching, stop strings, limits, cancellation, validation, logprobs, seeds.

use std::sync::OnceLock;

use engine::{
    ChatMessage, EngineConfig, EngineError, EngineHandle, Event, FinishReason, GenerateRequest,
    SamplingParams, TokenLogprobs, Usage,
};

fn smol() -> &'static EngineHandle {
    static E: OnceLock<EngineHandle> = OnceLock::new();
    E.get_or_init(|| start_engine(testkit::SMOLLM2))
}

/// An engine of its own on catalog model `name`, with two threads.
fn start_engine(name: &str) -> EngineHandle {
    let path = testkit::model_path(name);
    EngineHandle::start(
        &path,
        EngineConfig {
            threads: 2,
            ..EngineConfig::default()
        },
    )
    .unwrap()
}

#[derive(Debug)]
struct Outcome {
    ids: Vec<u32>,
    text: String,
    reason: FinishReason,
    usage: Usage,
    logprobs: Vec<TokenLogprobs>,
}

fn collect(mut gen: engine::Generation) -> Outcome {
    let (mut ids, mut text, mut logprobs) = (Vec::new(), String::new(), Vec::new());
    while let Some(ev) = gen.next_blocking() {
        match ev {
            Event::Token {
                id,
                text: t,
                logprobs: lp,
            } => {
                ids.push(id);
                text.push_str(&t);
                logprobs.extend(lp);
            }
            Event::Done {
                text: t,
                reason,
                usage,
                ..
            } => {
                text.push_str(&t);
                return Outcome {
                    ids,
                    text,
                    reason,
                    usage,
                    logprobs,
                };
            }
            Event::Failed { message } => panic!("generation failed: {message}"),
        }
    }
    panic!("stream ended without Done");
}

fn greedy(prompt: &str, max_tokens: usize) -> GenerateRequest {
    greedy_on(smol(), prompt, max_tokens)
}

fn greedy_on(e: &EngineHandle, prompt: &str, max_tokens: usize) -> GenerateRequest {
    GenerateRequest {
        prompt: e.encode_prompt(prompt),
        params: SamplingParams {
            temperature: 0.0,
            ..SamplingParams::default()
        },
        max_tokens: Some(max_tokens),
        ..GenerateRequest::default()
    }
}

fn run(req: GenerateRequest) -> Outcome {
    collect(smol().submit(req).unwrap())
}

#[test]
fn concurrent_requests_equal_solo_runs() {
    let prompts = [
        "The capital of France is",
        "def fibonacci(n):",
        "Once upon a time, in a land far",
    ];
    let solo: Vec<Outcome> = prompts.iter().map(|p| run(greedy(p, 24))).collect();
    let gens: Vec<_> = prompts
        .iter()
        .map(|p| smol().submit(greedy(p, 24)).unwrap())
        .collect();
    let together: Vec<Outcome> = gens.into_iter().map(collect).collect();
    for (a, b) in solo.iter().zip(&together) {
        assert_eq!(a.ids, b.ids, "batched generation differs from a solo run");
        assert_eq!(a.text, b.text);
    }
}

/// Issue 6's check: a greedy request gives the same tokens alone and inside
/// a batch of sixteen mixed requests (other prompts and lengths, sampled
/// ones, a stop string, logprobs, one dropped after its first token). A
/// decode step of sixteen sequences runs the several-row kernels at their
/// widest; no row of it may come out different from a step of its own.
fn greedy_requests_in_a_batch_of_sixteen_equal_their_solo_runs(e: &EngineHandle) {
    let greedy_prompts = [
        "The capital of France is",
        "def fibonacci(n):",
        "Once upon a time, in a land far",
        "The three primary colours are",
        "Water boils at",
        "My favourite fruit is",
        "To make a cup of tea,",
        "The quick brown fox",
    ];
    let max_tokens = |i: usize| 12 + 3 * i;
    let solo: Vec<Outcome> = greedy_prompts
        .iter()
        .enumerate()
        .map(|(i, p)| collect(e.submit(greedy_on(e, p, max_tokens(i))).unwrap()))
        .collect();
    let mut batch: Vec<(Option<usize>, GenerateRequest)> = Vec::new();
    for (i, p) in greedy_prompts.iter().enumerate() {
        batch.push((Some(i), greedy_on(e, p, max_tokens(i))));
        let other = match i % 4 {
            0 => GenerateRequest {
                params: SamplingParams {
                    temperature: 0.9,
                    seed: Some(i as u64),
                    ..SamplingParams::default()
                },
                ..greedy_on(e, "Write a short poem about the sea.", 40)
            },
            1 => GenerateRequest {
                stop: vec![".".into()],
                ..greedy_on(e, "List three animals", 30)
            },
            2 => GenerateRequest {
                logprobs: Some(3),
                ..greedy_on(e, "In 1492, Columbus", 20)
            },
            _ => GenerateRequest {
                ignore_eos: true,
                ..greedy_on(e, "Count: one, two, three,", 48)
            },
        };
        batch.push((None, other));
    }
    assert_eq!(batch.len(), 16);
    let mut gens: Vec<(Option<usize>, engine::Generation)> = batch
        .into_iter()
        .map(|(i, req)| (i, e.submit(req).unwrap()))
        .collect();
    // One of the others walks away after its first token, so the batch
    // shrinks while the rest decode.
    let (_, mut quitter) = gens.remove(3);
    assert!(matches!(quitter.next_blocking(), Some(Event::Token { .. })));
    drop(quitter);
    for (i, g) in gens {
        let out = collect(g);
        if let Some(i) = i {
            assert_eq!(
                out.ids, solo[i].ids,
                "{:?}: batched tokens differ from its solo run",
                greedy_prompts[i]
            );
            assert_eq!(out.text, solo[i].text);
        }
    }
}

#[test]
fn smollm2_greedy_requests_in_a_batch_of_sixteen_mixed_requests_equal_their_solo_runs() {
    greedy_requests_in_a_batch_of_sixteen_equal_their_solo_runs(smol());
}

/// Gemma's formats (Q5_0, Q4_K, Q6_K and its Q8_0 head) through the same check.
#[test]
fn gemma3_greedy_requests_in_a_batch_of_sixteen_mixed_requests_equal_their_solo_runs() {
    let e = start_engine(testkit::GEMMA3);
    greedy_requests_in_a_batch_of_sixteen_equal_their_solo_runs(&e);
}

#[test]
fn max_tokens_ends_with_length_and_exact_usage() {
    let req = GenerateRequest {
        ignore_eos: true,
        ..greedy("Count: one, two, three,", 7)
    };
    let prompt_len = req.prompt.len();
    let out = run(req);
    assert_eq!(out.reason, FinishReason::Length);
    assert_eq!(out.ids.len(), 7);
    assert_eq!(
        out.usage,
        Usage {
            prompt_tokens: prompt_len,
            completion_tokens: 7,
            cached_tokens: 0,
        }
    );
    assert_eq!(out.text, smol().tokenizer().decode(&out.ids, true));
}

#[test]
fn stop_string_ends_generation_and_is_not_emitted() {
    let full = run(GenerateRequest {
        ignore_eos: true,
        ..greedy("The capital of France is", 40)
    });
    // Pick a stop string from the middle of the unconstrained output.
    let chars: Vec<char> = full.text.chars().collect();
    assert!(chars.len() > 12, "need some output to cut: {:?}", full.text);
    let stop: String = chars[8..11].iter().collect();
    let expected = &full.text[..full.text.find(&stop).unwrap()];
    let out = run(GenerateRequest {
        stop: vec![stop.clone()],
        ignore_eos: true,
        ..greedy("The capital of France is", 40)
    });
    assert_eq!(out.reason, FinishReason::Stop);
    assert_eq!(out.text, expected, "stop {stop:?}");
    assert!(!out.text.contains(&stop));
}

#[test]
fn eos_ends_a_chat_reply_with_stop() {
    let msgs = [ChatMessage {
        role: "user".into(),
        content: "Say hello.".into(),
    }];
    let text = smol().render_chat(&msgs, true).unwrap();
    assert!(text.ends_with("<|im_start|>assistant\n"), "{text:?}");
    let out = run(GenerateRequest {
        prompt: smol().encode_prompt(&text),
        params: SamplingParams {
            temperature: 0.0,
            ..SamplingParams::default()
        },
        max_tokens: Some(200),
        ..GenerateRequest::default()
    });
    assert_eq!(out.reason, FinishReason::Stop, "reply: {:?}", out.text);
    assert!(smol().tokenizer().is_eog(*out.ids.last().unwrap()));
    assert!(!out.text.contains("<|im_end|>"));
    assert!(!out.text.trim().is_empty());
}

#[test]
fn same_seed_same_text_and_sampling_varies_with_seed() {
    let req = |seed| GenerateRequest {
        params: SamplingParams {
            temperature: 1.0,
            seed: Some(seed),
            ..SamplingParams::default()
        },
        ignore_eos: true,
        ..greedy("My favourite animal is", 24)
    };
    let a = run(req(7));
    let b = run(req(7));
    assert_eq!(a.ids, b.ids);
    let others: Vec<Vec<u32>> = (100..104).map(|s| run(req(s)).ids).collect();
    assert!(
        others.iter().any(|o| *o != a.ids),
        "four other seeds all gave the same tokens"
    );
}

#[test]
fn logprobs_come_from_the_distribution() {
    let out = run(GenerateRequest {
        logprobs: Some(3),
        ignore_eos: true,
        ..greedy("1, 2, 3, 4,", 6)
    });
    assert_eq!(out.logprobs.len(), out.ids.len());
    for (lp, &id) in out.logprobs.iter().zip(&out.ids) {
        assert_eq!(lp.top.len(), 3);
        assert!(lp.top.windows(2).all(|w| w[0].1 >= w[1].1));
        // Greedy: the chosen token is the most likely one.
        assert_eq!(lp.top[0].0, id);
        assert!((lp.top[0].1 - lp.chosen_logprob).abs() < 1e-6);
        assert!(lp.chosen_logprob <= 0.0);
    }
}

#[test]
fn a_dropped_generation_is_cancelled_and_its_blocks_freed() {
    // An engine of its own, so other tests' work does not move the counters.
    let e = start_engine(testkit::SMOLLM2);
    let long = || GenerateRequest {
        prompt: e.encode_prompt("Tell me a very long story."),
        params: SamplingParams::greedy(),
        max_tokens: Some(4000),
        ignore_eos: true,
        ..GenerateRequest::default()
    };
    for _ in 0..4 {
        let mut g = e.submit(long()).unwrap();
        // Read one token, then walk away.
        assert!(matches!(g.next_blocking(), Some(Event::Token { .. })));
        drop(g);
    }
    // The engine notices at its next step; wait for it, boundedly.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while e.stats().cancelled < 4 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let stats = e.stats();
    assert_eq!(stats.cancelled, 4, "{stats:?}");
    assert_eq!(stats.running, 0, "{stats:?}");
    // Full blocks they computed may stay cached (prefix cache), unreferenced.
    assert_eq!(stats.kv_used_blocks(), 0, "{stats:?}");
    assert_eq!(
        stats.kv_free_blocks + stats.kv_cached_blocks,
        stats.kv_total_blocks,
        "every block back in the pool: {stats:?}"
    );
    // And the engine still serves.
    let out = collect(
        e.submit(GenerateRequest {
            max_tokens: Some(5),
            ..long()
        })
        .unwrap(),
    );
    assert_eq!(out.ids.len(), 5);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while e.stats().finished < 1 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(e.stats().finished, 1);
}

#[test]
fn invalid_requests_are_refused_up_front() {
    let e = smol();
    let n_ctx = e.info().context_length;
    let err = |r: GenerateRequest| e.submit(r).err().expect("should be refused");
    assert!(matches!(
        err(GenerateRequest::default()),
        EngineError::InvalidRequest(_)
    ));
    assert!(matches!(
        err(GenerateRequest {
            prompt: vec![1, 999_999],
            ..greedy("x", 1)
        }),
        EngineError::InvalidRequest(_)
    ));
    assert!(matches!(
        err(GenerateRequest {
            prompt: vec![1; n_ctx],
            ..greedy("x", 1)
        }),
        EngineError::ContextLengthExceeded { .. }
    ));
    // No token asked for: counted, not run, ended at its length at once.
    let nothing = run(greedy("The sky is", 0));
    assert!(nothing.ids.is_empty() && nothing.text.is_empty());
    assert_eq!(nothing.reason, FinishReason::Length);
    assert_eq!(nothing.usage.completion_tokens, 0);
    assert_eq!(
        nothing.usage.prompt_tokens,
        e.encode_prompt("The sky is").len()
    );
    let bad = GenerateRequest {
        params: SamplingParams {
            temperature: -1.0,
            ..SamplingParams::default()
        },
        ..greedy("x", 1)
    };
    assert!(matches!(err(bad), EngineError::Sampling(_)));
    for e in [
        EngineError::InvalidRequest(String::new()),
        EngineError::ContextLengthExceeded {
            prompt: 1,
            requested: 1,
            n_ctx: 1,
        },
    ] {
        assert_eq!(e.kind(), engine::ErrorKind::InvalidRequest);
    }
}

#[test]
fn a_model_without_chat_template_refuses_chat_but_completes() {
    let g = start_engine(testkit::GEMMA3);
    assert!(!g.info().has_chat_template);
    let msgs = [ChatMessage {
        role: "user".into(),
        content: "hi".into(),
    }];
    let err = g.render_chat(&msgs, true).unwrap_err();
    assert!(matches!(err, EngineError::NoChatTemplate(_)));
    assert!(err.to_string().contains("no chat template"));
    let out = collect(
        g.submit(GenerateRequest {
            prompt: g.encode_prompt("The capital of France is"),
            params: SamplingParams::greedy(),
            max_tokens: Some(8),
            ..GenerateRequest::default()
        })
        .unwrap(),
    );
    assert_eq!(out.usage.completion_tokens, out.ids.len());
    assert!(!out.text.trim().is_empty());
    assert_eq!(out.text, g.tokenizer().decode(&out.ids, true));
}

#[test]
fn a_corrupt_model_file_is_a_clear_error() {
    let dir = std::env::temp_dir().join(format!("parlance-corrupt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let src = std::fs::read(testkit::model_path(testkit::SMOLLM2)).unwrap();
    let truncated = dir.join("truncated.gguf");
    std::fs::write(&truncated, &src[..src.len() / 2]).unwrap();
    let err = EngineHandle::start(&truncated, EngineConfig::default())
        .err()
        .expect("refused");
    assert!(err.to_string().contains("truncated"), "{err}");
    let garbage = dir.join("garbage.gguf");
    std::fs::write(&garbage, b"definitely not a model").unwrap();
    let err = EngineHandle::start(&garbage, EngineConfig::default())
        .err()
        .expect("refused");
    assert!(err.to_string().contains("not a GGUF"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn latency_histograms_count_first_and_later_tokens() {
    // Its own engine: the shared one's counters move with other tests.
    let engine = start_engine(testkit::SMOLLM2);
    let before = engine.stats();
    assert_eq!(before.time_to_first_token.count, 0);
    let mut req = greedy("The capital of France is", 6);
    req.ignore_eos = true;
    let out = collect(engine.submit(req).unwrap());
    assert_eq!(out.usage.completion_tokens, 6);
    let after = engine.stats();
    assert_eq!(after.time_to_first_token.count, 1);
    assert_eq!(after.inter_token_latency.count, 5);
    assert!(after.time_to_first_token.sum_micros > 0);
    let buckets = after.inter_token_latency.cumulative;
    assert!(buckets.windows(2).all(|w| w[0] <= w[1]));
    assert!(*buckets.last().unwrap() <= 5);
}
