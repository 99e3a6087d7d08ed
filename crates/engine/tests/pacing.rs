//! Paced prefill (issue 21, smooth streams): while a sequence generates, a
//! long prompt arriving is read in chunks between its tokens. The chunking
//! must move nothing: the generating sequence and the new prompt give the
//! same tokens and log probabilities with pacing, without it, in tiny
//! fixed chunks, and (the prompt) alone.

use engine::{EngineConfig, EngineHandle, Event, GenerateRequest, SamplingParams, TokenLogprobs};

#[derive(Debug, Default, PartialEq)]
struct Outcome {
    ids: Vec<u32>,
    logprobs: Vec<TokenLogprobs>,
}

/// Reads a generation to its end, after what `so_far` already took.
fn collect(mut gen: engine::Generation, so_far: Outcome) -> Outcome {
    let Outcome {
        mut ids,
        mut logprobs,
    } = so_far;
    while let Some(ev) = gen.next_blocking() {
        match ev {
            Event::Token {
                id, logprobs: lp, ..
            } => {
                ids.push(id);
                logprobs.extend(lp);
            }
            Event::Done { .. } => return Outcome { ids, logprobs },
            Event::Failed { message } => panic!("generation failed: {message}"),
        }
    }
    panic!("stream ended without Done");
}

fn greedy(e: &EngineHandle, prompt: &str, max_tokens: usize) -> GenerateRequest {
    GenerateRequest {
        prompt: e.encode_prompt(prompt),
        params: SamplingParams {
            temperature: 0.0,
            ..SamplingParams::default()
        },
        max_tokens: Some(max_tokens),
        logprobs: Some(2),
        ignore_eos: true,
        ..GenerateRequest::default()
    }
}

/// A prompt of a few hundred tokens.
fn long_prompt() -> String {
    let para = "The lighthouse keeper climbed the spiral stairs each evening, \
                counting the steps, trimming the wick and polishing the great lens \
                until the beam swept clean across the dark water. ";
    format!(
        "{}Summarise the story above in one sentence:",
        para.repeat(8)
    )
}

/// A stream that is generating when the long prompt arrives: both outcomes
/// and the engine's paced steps.
fn stream_then_long_prompt(model: &str, config: EngineConfig) -> (Outcome, Outcome, u64) {
    let e = EngineHandle::start(&testkit::model_path(model), config).unwrap();
    let mut stream = e.submit(greedy(&e, "Count: one, two, three,", 40)).unwrap();
    // Wait until the stream is generating.
    let first = match stream.next_blocking() {
        Some(Event::Token { id, logprobs, .. }) => Outcome {
            ids: vec![id],
            logprobs: logprobs.into_iter().collect(),
        },
        other => panic!("expected a first token, got {other:?}"),
    };
    let prompt = e.submit(greedy(&e, &long_prompt(), 12)).unwrap();
    let long = collect(prompt, Outcome::default());
    let running = collect(stream, first);
    (running, long, e.stats().paced_steps)
}

fn same_tokens_with_and_without_pacing(model: &str) {
    let base = EngineConfig {
        threads: 2,
        ..EngineConfig::default()
    };
    let (stream, long, paced_steps) = stream_then_long_prompt(model, base.clone());
    assert!(
        paced_steps > 0,
        "the long prompt was not held back beside the generating stream"
    );
    let unpaced = EngineConfig {
        prefill_stall_ratio: 0.0,
        ..base.clone()
    };
    let (stream_u, long_u, paced_u) = stream_then_long_prompt(model, unpaced.clone());
    assert_eq!(paced_u, 0, "pacing off holds nothing back");
    let tiny = EngineConfig {
        step_tokens: 7,
        ..unpaced.clone()
    };
    let (stream_t, long_t, _) = stream_then_long_prompt(model, tiny);
    assert_eq!(stream, stream_u, "{model}: the stream differs with pacing");
    assert_eq!(long, long_u, "{model}: the long prompt differs with pacing");
    assert_eq!(
        stream, stream_t,
        "{model}: the stream differs in 7-token steps"
    );
    assert_eq!(
        long, long_t,
        "{model}: the long prompt differs in 7-token steps"
    );
    // And the long prompt alone.
    let e = EngineHandle::start(&testkit::model_path(model), unpaced).unwrap();
    let alone = collect(
        e.submit(greedy(&e, &long_prompt(), 12)).unwrap(),
        Outcome::default(),
    );
    assert_eq!(
        long, alone,
        "{model}: the long prompt differs from its solo run"
    );
}

#[test]
fn smollm2_paced_prefill_gives_the_same_tokens() {
    same_tokens_with_and_without_pacing(testkit::SMOLLM2);
}

#[test]
fn gemma3_paced_prefill_gives_the_same_tokens() {
    same_tokens_with_and_without_pacing(testkit::GEMMA3);
}
