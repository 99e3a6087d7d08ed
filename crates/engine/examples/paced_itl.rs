//! Smooth streams (issue 21): the gaps between tokens of running streams
//! while long prompts arrive, and those prompts' time to first token, with
//! paced prefill (the default, steps bounded at 1.5× a decode step) and
//! without (ratio 0), alternated round by round (a measurement, not a test).
//!
//! `cargo run -p engine --release --example paced_itl [-- <catalog name> [threads] [streams] [prompts] [rounds]]`
//! (defaults: smollm2-135m-instruct, 2 threads, 8 streams, 4 prompts of
//! ~600 tokens, 3 rounds). `PARLANCE_KERNELS` caps the kernel level;
//! `RATIOS=1.5,3,0` sets the pacing ratios compared (default `1.5,0`).

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use engine::{EngineConfig, EngineHandle, Event, GenerateRequest, SamplingParams};

fn request(e: &EngineHandle, prompt: &str, max_tokens: usize) -> GenerateRequest {
    GenerateRequest {
        prompt: e.encode_prompt(prompt),
        params: SamplingParams::greedy(),
        max_tokens: Some(max_tokens),
        ignore_eos: true,
        ..GenerateRequest::default()
    }
}

fn long_prompt(i: usize) -> String {
    let para = "The lighthouse keeper climbed the spiral stairs each evening, counting \
                the steps, trimming the wick and polishing the great lens until the beam \
                swept clean across the dark water. ";
    format!("Story {i}. {}Summarise it:", para.repeat(16))
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    v[((p / 100.0) * (v.len() - 1) as f64).round() as usize]
}

/// One round: streams' gaps (ms) and the long prompts' TTFTs (ms).
fn round(e: &EngineHandle, streams: usize, prompts: usize) -> (Vec<f64>, Vec<f64>) {
    let start = Arc::new(Barrier::new(streams + 1));
    let handles: Vec<_> = (0..streams)
        .map(|i| {
            let g = e
                .submit(request(
                    e,
                    &format!("Count slowly, stream {i}: one, two,"),
                    160,
                ))
                .unwrap();
            let start = start.clone();
            std::thread::spawn(move || {
                let mut g = g;
                let mut gaps: Vec<f64> = Vec::new();
                let mut last: Option<Instant> = None;
                let mut waited = false;
                while let Some(ev) = g.next_blocking() {
                    match ev {
                        Event::Token { .. } => {
                            let now = Instant::now();
                            if let Some(l) = last {
                                gaps.push((now - l).as_secs_f64() * 1e3);
                            }
                            last = Some(now);
                            if !waited {
                                start.wait();
                                waited = true;
                            }
                        }
                        Event::Done { .. } => break,
                        Event::Failed { message } => panic!("{message}"),
                    }
                }
                gaps
            })
        })
        .collect();
    // Every stream is generating: now the long prompts, one every 150 ms.
    start.wait();
    let ttfts: Vec<_> = (0..prompts)
        .map(|i| {
            std::thread::sleep(Duration::from_millis(150));
            let t0 = Instant::now();
            let mut g = e.submit(request(e, &long_prompt(i), 4)).unwrap();
            std::thread::spawn(move || {
                let mut first = None;
                while let Some(ev) = g.next_blocking() {
                    if let Event::Token { .. } = ev {
                        first.get_or_insert(t0.elapsed().as_secs_f64() * 1e3);
                    }
                }
                first.unwrap_or(f64::NAN)
            })
        })
        .collect();
    let ttft = ttfts.into_iter().map(|h| h.join().unwrap()).collect();
    let gaps = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    (gaps, ttft)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let model = args.first().map_or("smollm2-135m-instruct", String::as_str);
    let arg = |i: usize, d: usize| args.get(i).and_then(|s| s.parse().ok()).unwrap_or(d);
    let (threads, streams, prompts, rounds) = (arg(1, 2), arg(2, 8), arg(3, 4), arg(4, 3));
    let path = testkit::model_path(model);
    println!(
        "{model}, {threads} threads, {streams} streams, {prompts} long prompts, {}",
        kernels::Selection::get().describe()
    );
    let ratios: Vec<f64> = std::env::var("RATIOS")
        .ok()
        .map(|v| v.split(',').filter_map(|r| r.trim().parse().ok()).collect())
        .filter(|v: &Vec<f64>| !v.is_empty())
        .unwrap_or_else(|| vec![1.5, 0.0]);
    let mut all: Vec<(f64, Vec<f64>, Vec<f64>)> =
        ratios.into_iter().map(|r| (r, vec![], vec![])).collect();
    for r in 0..rounds {
        for (ratio, gaps, ttfts) in all.iter_mut() {
            let e = EngineHandle::start(
                &path,
                EngineConfig {
                    threads,
                    prefill_stall_ratio: *ratio,
                    ..EngineConfig::default()
                },
            )
            .unwrap();
            let (g, t) = round(&e, streams, prompts);
            println!(
                "round {r} ratio {ratio}: ITL p50 {:.1} p99 {:.1} max {:.1} ms, long-prompt TTFT p50 {:.0} ms, paced steps {}",
                pct(&mut g.clone(), 50.0),
                pct(&mut g.clone(), 99.0),
                pct(&mut g.clone(), 100.0),
                pct(&mut t.clone(), 50.0),
                e.stats().paced_steps
            );
            gaps.extend(g);
            ttfts.extend(t);
        }
    }
    for (ratio, gaps, ttfts) in &mut all {
        println!(
            "all rounds, ratio {ratio}: ITL p50 {:.1} ms p99 {:.1} ms; long-prompt TTFT p50 {:.0} ms p99 {:.0} ms",
            pct(gaps, 50.0),
            pct(gaps, 99.0),
            pct(ttfts, 50.0),
            pct(ttfts, 99.0)
        );
    }
}
