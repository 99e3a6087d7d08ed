//! Time to first token with a shared ~1,000-token system prompt: the first
//! request computes it, the second (another user turn) finds its blocks in
//! the prefix cache. Runs once with the prefix cache on and once off, and
//! prints the times (a measurement, not a test).
//!
//! `cargo run -p engine --release --example prefix_ttft [-- <model.gguf or ""> [threads] [on|off]]`
//! (default: the test SmolLM2 file, one thread per core).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use engine::{ChatMessage, EngineConfig, EngineHandle, Event, GenerateRequest, SamplingParams};

fn system_prompt() -> String {
    let topics = [
        "opening hours",
        "membership cards",
        "borrowing limits",
        "late fees",
        "the children's corner",
        "quiet study rooms",
        "printing and copying",
        "inter-library loans",
        "the local history archive",
        "accessibility",
    ];
    let mut s = String::from(
        "You are the assistant of the city library. Follow every rule below exactly.\n",
    );
    for i in 0..28 {
        let t = topics[i % topics.len()];
        s.push_str(&format!(
            "Rule {}: when a visitor asks about {t}, answer in at most three sentences, \
             cite the desk to visit, and offer a follow-up.\n",
            i + 1
        ));
    }
    s
}

/// Seconds from submission to the first token, and the prompt's cached tokens.
fn ttft(e: &EngineHandle, prompt: Vec<u32>) -> (Duration, usize) {
    let t0 = Instant::now();
    let mut g = e
        .submit(GenerateRequest {
            prompt,
            params: SamplingParams::greedy(),
            max_tokens: Some(4),
            ignore_eos: true,
            ..GenerateRequest::default()
        })
        .expect("request accepted");
    let mut first = None;
    while let Some(ev) = g.next_blocking() {
        match ev {
            Event::Token { .. } => {
                first.get_or_insert_with(|| t0.elapsed());
            }
            Event::Done { usage, .. } => {
                return (first.expect("a token before Done"), usage.cached_tokens)
            }
            Event::Failed { message } => panic!("generation failed: {message}"),
        }
    }
    panic!("stream ended without Done")
}

fn main() {
    let mut args = std::env::args().skip(1);
    let path = args
        .next()
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| testkit::model_path(testkit::SMOLLM2));
    let threads = args.next().and_then(|t| t.parse().ok()).unwrap_or(0);
    let modes: &[bool] = match args.next().as_deref() {
        Some("on") => &[true],
        Some("off") => &[false],
        _ => &[true, false],
    };
    let system = system_prompt();
    for &prefix_cache in modes {
        let e = EngineHandle::start(
            &path,
            EngineConfig {
                threads,
                prefix_cache,
                ..EngineConfig::default()
            },
        )
        .expect("model loads");
        let prompt = |user: &str| {
            let msgs = [
                ChatMessage::new("system", system.as_str()),
                ChatMessage::new("user", user),
            ];
            e.encode_prompt(&e.render_chat(&msgs, true).expect("chat template"))
        };
        let (a, b) = (
            prompt("When is the library open?"),
            prompt("Can I print a document?"),
        );
        let (t1, c1) = ttft(&e, a.clone());
        let (t2, c2) = ttft(&e, b.clone());
        println!(
            "prefix_cache={prefix_cache}: first {} tokens TTFT {:.0} ms (cached {c1}); \
             second {} tokens TTFT {:.0} ms (cached {c2}); second/first {:.1}%",
            a.len(),
            t1.as_secs_f64() * 1e3,
            b.len(),
            t2.as_secs_f64() * 1e3,
            100.0 * t2.as_secs_f64() / t1.as_secs_f64()
        );
    }
}
