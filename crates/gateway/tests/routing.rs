//! Routing over in-process backends supplied by the caller (as the server
//! will supply the local engine): priorities, weights, least outstanding,
//! and the gateway's own timeouts applied to a backend that has none.

mod support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use api::{
    ChatChoice, ChatCompletion, ChatCompletionChunk, ChatCompletionMessage, ChatCompletionRequest,
    ChunkChoice, ChunkDelta, FinishReason, Usage,
};
use futures_util::future::BoxFuture;
use futures_util::StreamExt;
use gateway::{
    Backend, BackendConfig, BackendError, BackendKind, BreakerState, ChatReply, Gateway,
    GatewayReply, RouteOptions, RoutingStrategy,
};
use support::{chat, config, model, short_timeouts};
use tokio::sync::Semaphore;

/// An in-process backend: answers `name`, optionally held at a gate, or
/// with a stream that never produces a token.
struct Fake {
    name: String,
    calls: AtomicU32,
    gate: Option<Arc<Semaphore>>,
    silent_stream: bool,
}

impl Fake {
    fn new(name: &str) -> Arc<Fake> {
        Arc::new(Fake {
            name: name.into(),
            calls: AtomicU32::new(0),
            gate: None,
            silent_stream: false,
        })
    }
}

impl Backend for Fake {
    fn kind(&self) -> &'static str {
        "local"
    }

    fn chat(
        &self,
        request: ChatCompletionRequest,
    ) -> BoxFuture<'static, Result<ChatReply, BackendError>> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let (name, gate, silent) = (self.name.clone(), self.gate.clone(), self.silent_stream);
        Box::pin(async move {
            if let Some(gate) = gate {
                let _permit = gate.acquire().await.expect("open gate");
            }
            if request.is_stream() {
                if silent {
                    return Ok(ChatReply::Stream(futures_util::stream::pending().boxed()));
                }
                let choice = ChunkChoice {
                    index: 0,
                    delta: ChunkDelta::text(name),
                    logprobs: None,
                    finish_reason: Some(FinishReason::Stop),
                };
                let chunk = ChatCompletionChunk::new("id", 1, "engine", vec![choice], false);
                return Ok(ChatReply::Stream(
                    futures_util::stream::iter([Ok(chunk)]).boxed(),
                ));
            }
            let choice = ChatChoice {
                index: 0,
                message: ChatCompletionMessage::assistant(name),
                logprobs: None,
                finish_reason: FinishReason::Stop,
            };
            Ok(ChatReply::Whole(ChatCompletion::new(
                "id",
                1,
                "engine",
                vec![choice],
                Usage::new(1, 1, 0),
            )))
        })
    }
}

fn local(id: &str, weight: u32, priority: u32) -> BackendConfig {
    BackendConfig {
        id: Some(id.into()),
        kind: BackendKind::Local,
        base_url: None,
        model: None,
        api_key: None,
        api_key_env: None,
        weight,
        priority,
        timeouts: short_timeouts(),
        health_path: "models".into(),
        default_max_tokens: 16,
    }
}

fn gateway(backends: Vec<(BackendConfig, Arc<Fake>)>, routing: RoutingStrategy) -> Gateway {
    let mut entry = model("m", backends.iter().map(|(c, _)| c.clone()).collect());
    entry.routing = routing;
    let mut builder = Gateway::builder(config(vec![entry], 60_000));
    for (c, fake) in backends {
        builder = builder.backend(c.id.expect("id"), fake);
    }
    builder.build().expect("valid")
}

async fn served_by(gateway: &Gateway, stream: bool) -> String {
    match gateway
        .chat(chat("m", stream), RouteOptions::default())
        .await
    {
        Ok(GatewayReply::Whole(answer, served)) => {
            assert_eq!(answer.model, "m");
            served.backend
        }
        Ok(GatewayReply::Stream(mut stream, served)) => {
            while let Some(item) = stream.next().await {
                assert_eq!(item.expect("chunk").model, "m");
            }
            served.backend
        }
        Err(err) => panic!("{err}"),
    }
}

#[tokio::test]
async fn a_caller_supplied_backend_serves_local_models() {
    let engine = Fake::new("engine");
    let gateway = gateway(
        vec![(local("engine", 1, 0), engine.clone())],
        RoutingStrategy::Weighted,
    );
    assert_eq!(served_by(&gateway, false).await, "engine");
    assert_eq!(served_by(&gateway, true).await, "engine");
    assert_eq!(engine.calls.load(Ordering::SeqCst), 2);
    let status = &gateway.status()[0];
    assert_eq!(
        (status.kind, status.requests, status.state),
        ("local", 2, BreakerState::Closed)
    );
    assert!(status.latency_ms.is_some());
}

#[tokio::test]
async fn a_worse_priority_serves_only_when_the_better_cannot() {
    let (best, spare) = (Fake::new("best"), Fake::new("spare"));
    let gateway = gateway(
        vec![
            (local("best", 1, 0), best),
            (local("spare", 100, 1), spare.clone()),
        ],
        RoutingStrategy::Weighted,
    );
    for _ in 0..50 {
        assert_eq!(served_by(&gateway, false).await, "best");
    }
    assert_eq!(spare.calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn weights_split_the_traffic() {
    let (heavy, light) = (Fake::new("heavy"), Fake::new("light"));
    let gateway = gateway(
        vec![(local("heavy", 9, 0), heavy), (local("light", 1, 0), light)],
        RoutingStrategy::Weighted,
    );
    let mut counts: HashMap<String, u32> = HashMap::new();
    for _ in 0..400 {
        *counts.entry(served_by(&gateway, false).await).or_default() += 1;
    }
    // 9:1 expects 360:40; these bounds fail with negligible probability.
    assert!(
        counts["heavy"] > 300 && counts.get("light").copied().unwrap_or(0) > 5,
        "{counts:?}"
    );
}

#[tokio::test]
async fn least_outstanding_prefers_the_idle_backend() {
    let gate = Arc::new(Semaphore::new(0));
    let busy = Arc::new(Fake {
        name: "busy".into(),
        calls: AtomicU32::new(0),
        gate: Some(gate.clone()),
        silent_stream: false,
    });
    let idle = Fake::new("idle");
    let gateway = gateway(
        vec![
            (local("busy", 1, 0), busy.clone()),
            (local("idle", 1, 0), idle),
        ],
        RoutingStrategy::LeastOutstanding,
    );
    // Send requests until one is parked at `busy`'s gate.
    let mut parked = Vec::new();
    while busy.calls.load(Ordering::SeqCst) == 0 {
        let gw = gateway.clone();
        parked.push(tokio::spawn(async move { served_by(&gw, false).await }));
        let last = parked.last().expect("just pushed");
        let settled = support::eventually(Duration::from_secs(5), || {
            busy.calls.load(Ordering::SeqCst) > 0 || last.is_finished()
        })
        .await;
        assert!(settled, "a request neither finished nor reached busy");
    }
    for _ in 0..20 {
        assert_eq!(served_by(&gateway, false).await, "idle");
    }
    gate.add_permits(1_000);
    for task in parked {
        task.await.expect("parked request");
    }
}

#[tokio::test]
async fn a_backend_without_a_first_token_is_timed_out_and_failed_over() {
    let mute = Arc::new(Fake {
        name: "mute".into(),
        calls: AtomicU32::new(0),
        gate: None,
        silent_stream: true,
    });
    let spare = Fake::new("spare");
    let gateway = gateway(
        vec![
            (local("mute", 1, 0), mute.clone()),
            (local("spare", 1, 1), spare),
        ],
        RoutingStrategy::Weighted,
    );
    assert_eq!(served_by(&gateway, true).await, "spare");
    assert_eq!(mute.calls.load(Ordering::SeqCst), 1);
    let status = gateway
        .status()
        .into_iter()
        .find(|s| s.id == "mute")
        .expect("mute");
    assert_eq!((status.failures, status.outstanding), (1, 0));
}
