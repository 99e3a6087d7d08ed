//! Prefix caching through the engine's public handle, on the real default
//! model: a repeated prompt is served from cached KV blocks with the same
//! output as without the cache, a shared system prompt hits only the shared
//! blocks, eviction under a small KV budget keeps outputs right and the block
//! counters consistent, and cancelling one of several sequences that share
//! blocks releases only its own references.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use engine::{
    ChatMessage, EngineConfig, EngineHandle, EngineStats, Event, GenerateRequest, SamplingParams,
    TokenLogprobs, Usage,
};

const BLOCK: usize = engine::kv::DEFAULT_BLOCK_SIZE;

fn start(prefix_cache: bool, kv_cache_tokens: usize) -> EngineHandle {
    EngineHandle::start(
        &testkit::model_path(testkit::SMOLLM2),
        EngineConfig {
            threads: 2,
            context_length: 2048,
            kv_cache_tokens,
            prefix_cache,
            ..EngineConfig::default()
        },
    )
    .unwrap()
}

/// An engine without prefix caching: the reference outputs.
fn uncached() -> &'static EngineHandle {
    static E: OnceLock<EngineHandle> = OnceLock::new();
    E.get_or_init(|| start(false, 4096))
}

#[derive(Debug)]
struct Outcome {
    ids: Vec<u32>,
    usage: Usage,
    logprobs: Vec<TokenLogprobs>,
}

fn collect(mut gen: engine::Generation) -> Outcome {
    let (mut ids, mut logprobs) = (Vec::new(), Vec::new());
    while let Some(ev) = gen.next_blocking() {
        match ev {
            Event::Token {
                id, logprobs: lp, ..
            } => {
                ids.push(id);
                logprobs.extend(lp);
            }
            Event::Done { usage, .. } => {
                return Outcome {
                    ids,
                    usage,
                    logprobs,
                }
            }
            Event::Failed { message } => panic!("generation failed: {message}"),
        }
    }
    panic!("stream ended without Done");
}

fn greedy(prompt: Vec<u32>, max_tokens: usize) -> GenerateRequest {
    GenerateRequest {
        prompt,
        params: SamplingParams::greedy(),
        max_tokens: Some(max_tokens),
        logprobs: Some(3),
        ignore_eos: true,
        ..GenerateRequest::default()
    }
}

fn run(e: &EngineHandle, req: GenerateRequest) -> Outcome {
    collect(e.submit(req).unwrap())
}

/// Polls the engine's counters until `ok` holds, boundedly.
fn wait_for(e: &EngineHandle, what: &str, ok: impl Fn(&EngineStats) -> bool) -> EngineStats {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let s = e.stats();
        if ok(&s) {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {s:?}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn assert_blocks_add_up(s: &EngineStats) {
    assert_eq!(
        s.kv_free_blocks + s.kv_used_blocks() + s.kv_cached_blocks,
        s.kv_total_blocks,
        "{s:?}"
    );
    assert!(
        s.kv_free_blocks + s.kv_cached_blocks <= s.kv_total_blocks,
        "{s:?}"
    );
}

/// Positions the cache can serve for a prompt whose first `shared` tokens are
/// cached: whole blocks only, and never the prompt's last token.
fn servable(shared: usize, prompt_len: usize) -> usize {
    (shared / BLOCK).min((prompt_len - 1) / BLOCK) * BLOCK
}

fn chat(e: &EngineHandle, system: &str, user: &str) -> Vec<u32> {
    let msgs = [
        ChatMessage::new("system", system),
        ChatMessage::new("user", user),
    ];
    e.encode_prompt(&e.render_chat(&msgs, true).unwrap())
}

/// How far below our top log probability the reference's token may lie at a
/// step where the two part: the engine's attention numerics follow llama.cpp
/// in choosing single precision for a pass with 64 or more rows of one
/// sequence and half precision for fewer, so a prompt of 64+ tokens prefilled
/// whole and the same prompt's short uncached tail differ in the last bits,
/// which can flip a near-tie (the same envelope as `greedy_agreement.rs`).
const NEAR_TIE: f32 = 0.35;

/// `out` equals `reference`, or parts from it only at a near-tie, after
/// which the two continue from different tokens and are not compared.
fn assert_same_up_to_near_tie(out: &Outcome, reference: &Outcome) {
    let Some(i) = out.ids.iter().zip(&reference.ids).position(|(a, b)| a != b) else {
        assert_eq!(out.ids.len(), reference.ids.len());
        return;
    };
    let top = &out.logprobs[i].top;
    let theirs = top.iter().find(|(id, _)| *id == reference.ids[i]);
    let gap = theirs.map(|(_, lp)| top[0].1 - lp);
    assert!(
        gap.is_some_and(|g| g <= NEAR_TIE),
        "outputs part at step {i} without a near-tie (gap {gap:?}):\n{:?}\n{:?}",
        out.logprobs[i],
        reference.logprobs[i]
    );
    eprintln!("outputs part at step {i} at a near-tie (gap {gap:?})");
}

fn common_prefix(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

#[test]
fn the_same_request_twice_is_served_from_cache_with_the_same_output() {
    let e = start(true, 2048);
    // Under 64 tokens, so the first prefill and the second's short tail take
    // the same attention numerics and the logprobs must match exactly.
    let prompt = e.encode_prompt(
        "The history of the printing press begins in the fifteenth century, when \
         Johannes Gutenberg combined movable metal type, oil-based ink and a \
         screw press adapted from wine making. Within fifty years",
    );
    assert!(
        (2 * BLOCK + 1..64).contains(&prompt.len()),
        "{}",
        prompt.len()
    );
    let first = run(&e, greedy(prompt.clone(), 16));
    let second = run(&e, greedy(prompt.clone(), 16));
    let reference = run(uncached(), greedy(prompt.clone(), 16));

    assert_eq!(first.usage.cached_tokens, 0);
    let expected = servable(prompt.len(), prompt.len());
    assert_eq!(second.usage.cached_tokens, expected);
    assert_eq!(second.usage.prompt_tokens, prompt.len());
    assert_eq!(reference.usage.cached_tokens, 0);

    assert_eq!(first.ids, reference.ids);
    assert_eq!(second.ids, first.ids, "a cache hit changed the output");
    assert_eq!(second.logprobs, first.logprobs);
    assert_eq!(second.logprobs, reference.logprobs);

    let s = wait_for(&e, "both finished", |s| s.finished == 2 && s.running == 0);
    assert_eq!(s.prefix_cache_lookups, 2);
    assert_eq!(s.prefix_cache_hit_tokens, expected as u64);
    assert_eq!(s.prefix_cache_hit_blocks, (expected / BLOCK) as u64);
    assert_eq!(s.kv_used_blocks(), 0);
    assert!(s.kv_cached_blocks >= expected / BLOCK, "{s:?}");
    assert_blocks_add_up(&s);
}

#[test]
fn requests_sharing_a_system_prompt_hit_only_the_shared_blocks() {
    let e = start(true, 2048);
    let system = "You are a careful assistant for a public library. Answer questions about \
                  opening hours, membership, borrowing limits, late fees and the catalogue. \
                  Be brief and polite, say when you do not know, and never invent a policy. \
                  Opening hours are nine to six on weekdays and ten to four on Saturdays.";
    let a = chat(&e, system, "When are you open on Saturday?");
    let b = chat(&e, system, "How many books can I borrow at once?");
    let shared = common_prefix(&a, &b);
    assert!(
        shared >= 4 * BLOCK,
        "the system prompt spans blocks: {shared}"
    );
    assert!(shared < a.len().min(b.len()));

    let first = run(&e, greedy(a.clone(), 12));
    assert_eq!(first.usage.cached_tokens, 0);
    let second = run(&e, greedy(b.clone(), 12));
    assert_eq!(second.usage.cached_tokens, servable(shared, b.len()));
    assert!(second.usage.cached_tokens < b.len());
    // The same for the first prompt again: now all of it is cached.
    let again = run(&e, greedy(a.clone(), 12));
    assert_eq!(again.usage.cached_tokens, servable(a.len(), a.len()));

    // These prompts are over 64 tokens: see `NEAR_TIE`.
    assert_same_up_to_near_tie(&second, &run(uncached(), greedy(b, 12)));
    assert_same_up_to_near_tie(&again, &first);
}

#[test]
fn eviction_under_a_small_kv_budget_keeps_outputs_and_counters_right() {
    // 12 blocks: four requests' worth, so cached blocks must be evicted.
    let e = start(true, 12 * BLOCK);
    let prompts: Vec<Vec<u32>> = [
        "Write a short poem about the sea and the ships that sail on it at night.",
        "Explain in simple words why the sky looks blue on a clear summer day.",
        "List three reasons why people enjoy walking in the mountains in autumn.",
        "Describe the smell of fresh bread in a small village bakery at dawn.",
        "Tell me how a bicycle gear works, as if I were ten years old today.",
        "Summarise the plot of a detective story set on a train in the snow.",
    ]
    .iter()
    .map(|p| e.encode_prompt(p))
    .collect();
    let reference: Vec<Vec<u32>> = prompts
        .iter()
        .map(|p| run(uncached(), greedy(p.clone(), 40)).ids)
        .collect();
    // Two rounds one by one (the second finds some prefixes evicted, others
    // cached), then all at once: admitted at two blocks each, six sequences
    // growing to four cannot all fit, so some are preempted and recomputed
    // (from their cached blocks where these survived).
    for round in 0..2 {
        for (p, want) in prompts.iter().zip(&reference) {
            let out = run(&e, greedy(p.clone(), 40));
            assert_eq!(&out.ids, want, "round {round}: output changed");
        }
    }
    let gens: Vec<_> = prompts
        .iter()
        .map(|p| e.submit(greedy(p.clone(), 40)).unwrap())
        .collect();
    for (g, want) in gens.into_iter().zip(&reference) {
        assert_eq!(&collect(g).ids, want, "batched run: output changed");
    }
    let s = wait_for(&e, "all finished", |s| s.finished == 18 && s.running == 0);
    assert!(s.kv_evictions > 0, "a small budget must evict: {s:?}");
    assert!(s.prefix_cache_hit_blocks > 0, "{s:?}");
    assert!(s.preempted > 0, "the batch must outgrow the cache: {s:?}");
    assert_eq!(s.kv_used_blocks(), 0, "{s:?}");
    assert_eq!(s.kv_total_blocks, 12);
    assert_blocks_add_up(&s);
}

#[test]
fn cancelling_a_sequence_that_shares_blocks_frees_only_its_own_references() {
    let e = start(true, 2048);
    let system = "You are a travel guide for the old town. Mention the cathedral, the river \
                  walk, the covered market and the castle on the hill, with their opening \
                  times, and suggest a route that avoids the steep streets for older visitors.";
    let base = chat(&e, system, "Where should I start?");
    let warm = run(&e, greedy(base.clone(), 2));
    assert_eq!(warm.usage.cached_tokens, 0);
    let long = |user: &str| GenerateRequest {
        max_tokens: Some(1500),
        ..greedy(chat(&e, system, user), 1)
    };
    let (rb, rc) = (
        long("Is the castle worth a visit?"),
        long("Where can I eat near the market?"),
    );
    let shared = common_prefix(&base, &rb.prompt).min(common_prefix(&base, &rc.prompt));
    let shared_blocks = servable(shared, rb.prompt.len().min(rc.prompt.len())) / BLOCK;
    assert!(shared_blocks >= 3, "{shared_blocks}");
    let mut b = e.submit(rb).unwrap();
    let mut c = e.submit(rc).unwrap();
    for g in [&mut b, &mut c] {
        assert!(matches!(g.next_blocking(), Some(Event::Token { .. })));
    }
    let s = wait_for(&e, "b and c admitted", |s| s.prefix_cache_lookups == 3);
    assert_eq!(s.prefix_cache_hit_blocks, 2 * shared_blocks as u64, "{s:?}");

    drop(b);
    let s = wait_for(&e, "b cancelled", |s| s.cancelled == 1);
    assert_eq!(s.running, 1, "{s:?}");
    assert!(
        s.kv_used_blocks() > shared_blocks,
        "c keeps the shared blocks: {s:?}"
    );
    assert_blocks_add_up(&s);
    // c goes on, and the shared blocks still serve a new request.
    assert!(matches!(c.next_blocking(), Some(Event::Token { .. })));
    let d = run(&e, greedy(base.clone(), 2));
    assert_eq!(d.usage.cached_tokens, servable(base.len(), base.len()));
    assert_same_up_to_near_tie(&d, &warm);

    drop(c);
    let s = wait_for(&e, "c cancelled", |s| s.cancelled == 2 && s.running == 0);
    assert_eq!(s.kv_used_blocks(), 0, "every reference released: {s:?}");
    assert!(s.kv_cached_blocks >= shared_blocks, "{s:?}");
    assert_blocks_add_up(&s);
}
