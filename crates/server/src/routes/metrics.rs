//! `GET /metrics`: Prometheus text exposition of what the engines and the
//! server are doing — queue depth, running sequences, KV blocks (free, used,
//! cached), prefix-cache lookups and hits, evictions, generations finished
//! and cancelled, preemptions, and the time-to-first-token and inter-token
//! latency histograms — one series per served model — and this instance's
//! lease renewals and its sweeps of interrupted requests. Public like
//! `/health`: it carries counts, never tenants' data.

use std::fmt::Write;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use engine::{EngineStats, Histogram, BUCKET_BOUNDS_SECONDS};

use std::sync::atomic::Ordering;

use service::instances::LeaseStats;

use crate::state::AppState;

/// A metric read off one engine's stats: name, help, value.
type Metric = (&'static str, &'static str, fn(&EngineStats) -> u64);

/// The exposition format's content type.
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A label value with `\`, `"` and newlines escaped.
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// One metric family: its help, type and a sample per model.
fn family(out: &mut String, name: &str, kind: &str, help: &str, samples: &[(String, u64)]) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    for (labels, value) in samples {
        let _ = writeln!(out, "{name}{{{labels}}} {value}");
    }
}

fn histogram(out: &mut String, name: &str, help: &str, series: &[(String, Histogram)]) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} histogram");
    for (labels, h) in series {
        for (bound, count) in BUCKET_BOUNDS_SECONDS.iter().zip(h.cumulative) {
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{bound}\"}} {count}");
        }
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {}", h.count);
        let sum = format!(
            "{}.{:06}",
            h.sum_micros / 1_000_000,
            h.sum_micros % 1_000_000
        );
        let _ = writeln!(out, "{name}_sum{{{labels}}} {sum}");
        let _ = writeln!(out, "{name}_count{{{labels}}} {}", h.count);
    }
}

/// The exposition text for `models` (label value, stats) and the server's
/// live generations.
pub fn render(models: &[(String, EngineStats)], live_generations: usize) -> String {
    let mut out = String::new();
    let per = |f: fn(&EngineStats) -> u64| -> Vec<(String, u64)> {
        models
            .iter()
            .map(|(model, s)| (format!("model=\"{}\"", label(model)), f(s)))
            .collect()
    };
    let gauges: [Metric; 3] = [
        (
            "parlance_engine_waiting_sequences",
            "Requests queued for admission (the queue depth).",
            |s| s.waiting as u64,
        ),
        (
            "parlance_engine_running_sequences",
            "Sequences in the running batch.",
            |s| s.running as u64,
        ),
        (
            "parlance_engine_kv_blocks_total",
            "KV cache blocks in the pool.",
            |s| s.kv_total_blocks as u64,
        ),
    ];
    for (name, help, f) in gauges {
        family(&mut out, name, "gauge", help, &per(f));
    }
    let _ = writeln!(
        out,
        "# HELP parlance_engine_kv_blocks KV cache blocks by state (free, used by running \
         sequences, cached for prefix reuse)."
    );
    let _ = writeln!(out, "# TYPE parlance_engine_kv_blocks gauge");
    for (model, s) in models {
        let model = label(model);
        for (state, n) in [
            ("free", s.kv_free_blocks),
            ("used", s.kv_used_blocks()),
            ("cached", s.kv_cached_blocks),
        ] {
            let _ = writeln!(
                out,
                "parlance_engine_kv_blocks{{model=\"{model}\",state=\"{state}\"}} {n}"
            );
        }
    }
    let counters: [Metric; 7] = [
        (
            "parlance_engine_generations_finished_total",
            "Generations that ended (done or failed).",
            |s| s.finished,
        ),
        (
            "parlance_engine_generations_cancelled_total",
            "Generations dropped because their client left.",
            |s| s.cancelled,
        ),
        (
            "parlance_engine_preemptions_total",
            "Sequences that gave up their KV blocks to be recomputed.",
            |s| s.preempted,
        ),
        (
            "parlance_engine_prefix_cache_lookups_total",
            "Admissions that looked up the prefix cache.",
            |s| s.prefix_cache_lookups,
        ),
        (
            "parlance_engine_prefix_cache_hit_blocks_total",
            "KV blocks taken from the prefix cache instead of computed.",
            |s| s.prefix_cache_hit_blocks,
        ),
        (
            "parlance_engine_prefix_cache_hit_tokens_total",
            "Positions served from the prefix cache.",
            |s| s.prefix_cache_hit_tokens,
        ),
        (
            "parlance_engine_kv_evictions_total",
            "Cached KV blocks evicted to make room.",
            |s| s.kv_evictions,
        ),
    ];
    for (name, help, f) in counters {
        family(&mut out, name, "counter", help, &per(f));
    }
    let series = |f: &dyn Fn(&EngineStats) -> Histogram| -> Vec<(String, Histogram)> {
        models
            .iter()
            .map(|(model, s)| (format!("model=\"{}\"", label(model)), f(s)))
            .collect()
    };
    histogram(
        &mut out,
        "parlance_engine_time_to_first_token_seconds",
        "Time from submission to the first token (queueing and prefill included).",
        &series(&|s| s.time_to_first_token),
    );
    histogram(
        &mut out,
        "parlance_engine_inter_token_latency_seconds",
        "Time between consecutive tokens of one generation.",
        &series(&|s| s.inter_token_latency),
    );
    let _ = writeln!(
        out,
        "# HELP parlance_http_live_generations Generations the server holds now (streams and requests in flight)."
    );
    let _ = writeln!(out, "# TYPE parlance_http_live_generations gauge");
    let _ = writeln!(out, "parlance_http_live_generations {live_generations}");
    out
}

/// `GET /metrics`
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let models: Vec<(String, EngineStats)> = state
        .models()
        .map(|m| (m.name.clone(), m.engine.stats()))
        .collect();
    let mut text = render(&models, state.live_generations());
    if let Some(lease) = state.lease() {
        lease_families(&mut text, lease.id(), lease.stats());
    }
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], text)
}

/// This instance's lease and its sweep of interrupted requests.
fn lease_families(out: &mut String, instance: &str, stats: &LeaseStats) {
    let labels = format!("instance=\"{}\"", label(instance));
    let counter = |counter: &std::sync::atomic::AtomicU64| {
        vec![(labels.clone(), counter.load(Ordering::Relaxed))]
    };
    family(
        out,
        "parlance_instance_lease_renewals_total",
        "counter",
        "Heartbeats that renewed this instance's lease.",
        &counter(&stats.renewals),
    );
    family(
        out,
        "parlance_instance_lease_renewal_failures_total",
        "counter",
        "Heartbeats that could not renew this instance's lease.",
        &counter(&stats.renewal_failures),
    );
    family(
        out,
        "parlance_recovery_sweeps_total",
        "counter",
        "Sweeps for reservations whose instance's lease expired.",
        &counter(&stats.sweeps),
    );
    family(
        out,
        "parlance_recovered_requests_total",
        "counter",
        "Requests of expired instances settled as interrupted by this instance.",
        &counter(&stats.recovered),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_family_with_escaped_labels() {
        let mut stats = EngineStats {
            waiting: 3,
            kv_total_blocks: 10,
            kv_free_blocks: 6,
            kv_cached_blocks: 1,
            prefix_cache_hit_tokens: 48,
            ..EngineStats::default()
        };
        stats.time_to_first_token.cumulative[5] = 2;
        stats.time_to_first_token.count = 2;
        stats.time_to_first_token.sum_micros = 1_500_000;
        let text = render(&[("m\"x".to_owned(), stats)], 4);
        assert!(text.contains("parlance_engine_waiting_sequences{model=\"m\\\"x\"} 3"));
        assert!(text.contains("parlance_engine_kv_blocks{model=\"m\\\"x\",state=\"used\"} 3"));
        assert!(text.contains("parlance_engine_prefix_cache_hit_tokens_total{model=\"m\\\"x\"} 48"));
        assert!(text.contains(
            "parlance_engine_time_to_first_token_seconds_bucket{model=\"m\\\"x\",le=\"0.25\"} 2"
        ));
        assert!(text.contains(
            "parlance_engine_time_to_first_token_seconds_sum{model=\"m\\\"x\"} 1.500000"
        ));
        assert!(text.contains(
            "parlance_engine_time_to_first_token_seconds_bucket{model=\"m\\\"x\",le=\"+Inf\"} 2"
        ));
        assert!(text.contains("parlance_http_live_generations 4"));
        // Every sample line is `name{labels} value` or `name value`.
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let value = line.rsplit(' ').next().unwrap();
            assert!(value.parse::<f64>().is_ok(), "{line}");
        }
    }
}
