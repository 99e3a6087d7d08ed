//! Fault tests: a gateway in front of misbehaving upstreams on 127.0.0.1.
//! For each fault: what the caller gets (failover before the first token;
//! after output, an `Interrupted` error with the delivered usage) and what
//! the backend's breaker and stats say.

mod support;

use std::time::Duration;

use api::ChatCompletionChunk;
use futures_util::StreamExt;
use gateway::{
    BackendStatus, BreakerState, FailureKind, Gateway, GatewayError, GatewayReply, GatewayStream,
    RouteOptions,
};
use support::{chat, config, eventually, model, openai, refused_url, Behavior, Mock};

const WAIT: Duration = Duration::from_secs(10);

fn status_of(gateway: &Gateway, id: &str) -> BackendStatus {
    gateway
        .status()
        .into_iter()
        .find(|s| s.id == id)
        .expect("a configured backend")
}

/// A gateway over a faulty primary (priority 0) and a good secondary.
async fn primary_and_good(primary_url: &str) -> (Gateway, Mock) {
    let good = Mock::start("good", Behavior::Ok { words: 4 }).await;
    let config = config(
        vec![model(
            "m",
            vec![
                openai("primary", primary_url, 0),
                openai("good", &good.base_url(), 1),
            ],
        )],
        60_000,
    );
    (Gateway::builder(config).build().expect("valid"), good)
}

async fn whole_text(gateway: &Gateway, stream: bool) -> (String, String) {
    match gateway
        .chat(chat("m", stream), RouteOptions::default())
        .await
    {
        Ok(GatewayReply::Whole(answer, served)) => {
            assert_eq!(answer.model, "m");
            let text = answer.choices[0]
                .message
                .content
                .clone()
                .unwrap_or_default();
            (text, served.backend)
        }
        Ok(GatewayReply::Stream(stream, served)) => {
            let (chunks, end) = drain(stream).await;
            assert!(end.is_none(), "stream failed: {end:?}");
            (text_of(&chunks), served.backend)
        }
        Err(err) => panic!("routing failed: {err}"),
    }
}

async fn drain(mut stream: GatewayStream) -> (Vec<ChatCompletionChunk>, Option<GatewayError>) {
    let mut chunks = Vec::new();
    while let Some(item) = stream.next().await {
        match item {
            Ok(chunk) => chunks.push(chunk),
            Err(err) => return (chunks, Some(err)),
        }
    }
    (chunks, None)
}

fn text_of(chunks: &[ChatCompletionChunk]) -> String {
    chunks
        .iter()
        .flat_map(|c| &c.choices)
        .filter_map(|c| c.delta.content.as_deref())
        .collect()
}

#[tokio::test]
async fn refused_connection_fails_over_and_opens_the_breaker() {
    let (gateway, good) = primary_and_good(&refused_url().await).await;
    for _ in 0..3 {
        let (text, backend) = whole_text(&gateway, false).await;
        assert_eq!(backend, "good");
        assert!(text.starts_with("good"), "{text}");
    }
    let primary = status_of(&gateway, "primary");
    assert_eq!(primary.state, BreakerState::Open);
    assert_eq!(primary.failures, 3);
    // Open: the next request goes straight to the good one.
    let (_, backend) = whole_text(&gateway, true).await;
    assert_eq!(backend, "good");
    assert_eq!(status_of(&gateway, "primary").requests, 3);
    assert_eq!(good.chat_requests(), 4);
}

#[tokio::test]
async fn hang_before_headers_fails_over() {
    let hang = Mock::start("hang", Behavior::HangBeforeHeaders).await;
    let (gateway, _good) = primary_and_good(&hang.base_url()).await;
    let (text, backend) = whole_text(&gateway, true).await;
    assert_eq!(backend, "good");
    assert!(text.starts_with("good"));
    assert_eq!(hang.chat_requests(), 1);
    let primary = status_of(&gateway, "primary");
    assert_eq!((primary.failures, primary.state), (1, BreakerState::Closed));
}

#[tokio::test]
async fn hang_before_headers_alone_is_a_timeout() {
    let hang = Mock::start("hang", Behavior::HangBeforeHeaders).await;
    let gateway = Gateway::builder(config(
        vec![model("m", vec![openai("only", &hang.base_url(), 0)])],
        60_000,
    ))
    .build()
    .expect("valid");
    let err = gateway
        .chat(chat("m", false), RouteOptions::default())
        .await
        .expect_err("nothing answers");
    let GatewayError::Exhausted { attempts, last, .. } = &err else {
        panic!("expected Exhausted, got {err:?}");
    };
    assert_eq!(*attempts, 2, "one retry after backoff");
    assert_eq!(last.kind, FailureKind::HeadersTimeout);
}

#[tokio::test]
async fn stall_mid_stream_ends_with_interrupted_and_delivered_usage() {
    let stall = Mock::start("stall", Behavior::StallMidStream { words: 3 }).await;
    let (gateway, good) = primary_and_good(&stall.base_url()).await;
    let mut request = chat("m", true);
    request.stream_options = Some(api::StreamOptions {
        include_usage: Some(true),
    });
    let Ok(GatewayReply::Stream(stream, served)) =
        gateway.chat(request, RouteOptions::default()).await
    else {
        panic!("expected a stream");
    };
    assert_eq!(served.backend, "primary");
    let (chunks, end) = drain(stream).await;
    assert_eq!(text_of(&chunks), "stall w1 w2");
    assert!(chunks
        .iter()
        .all(|c| c.model == "m" && c.usage.is_none() && c.null_usage));
    let Some(GatewayError::Interrupted { kind, usage, .. }) = end else {
        panic!("expected Interrupted, got {end:?}");
    };
    assert_eq!(kind, FailureKind::IdleTimeout);
    assert_eq!(usage.completion_tokens, 3);
    assert!(usage.prompt_tokens > 0, "prompt tokens estimated");
    // Bytes had reached the caller: no failover.
    assert_eq!(good.chat_requests(), 0);
    assert_eq!(status_of(&gateway, "primary").failures, 1);
}

#[tokio::test]
async fn drop_mid_stream_ends_with_interrupted_and_delivered_usage() {
    let dropper = Mock::start("drop", Behavior::DropMidStream { words: 2 }).await;
    let (gateway, good) = primary_and_good(&dropper.base_url()).await;
    let Ok(GatewayReply::Stream(stream, _)) =
        gateway.chat(chat("m", true), RouteOptions::default()).await
    else {
        panic!("expected a stream");
    };
    let (chunks, end) = drain(stream).await;
    assert_eq!(text_of(&chunks), "drop w1");
    let Some(err @ GatewayError::Interrupted { .. }) = end else {
        panic!("expected Interrupted, got {end:?}");
    };
    let GatewayError::Interrupted { kind, usage, .. } = err else {
        unreachable!()
    };
    assert_eq!(kind, FailureKind::Dropped);
    assert_eq!(usage.completion_tokens, 2);
    assert_eq!(good.chat_requests(), 0);
}

#[tokio::test]
async fn drop_before_the_first_token_fails_over() {
    let dropper = Mock::start("drop", Behavior::DropMidStream { words: 0 }).await;
    let (gateway, _good) = primary_and_good(&dropper.base_url()).await;
    let (text, backend) = whole_text(&gateway, true).await;
    assert_eq!(backend, "good");
    assert_eq!(text, "good w1 w2 w3");
    assert_eq!(status_of(&gateway, "primary").failures, 1);
}

#[tokio::test]
async fn rate_limited_backend_cools_down_and_traffic_moves() {
    let limited = Mock::start(
        "limited",
        Behavior::RateLimited {
            retry_after: Some(30),
        },
    )
    .await;
    let (gateway, good) = primary_and_good(&limited.base_url()).await;
    for _ in 0..3 {
        let (_, backend) = whole_text(&gateway, false).await;
        assert_eq!(backend, "good");
    }
    assert_eq!(limited.chat_requests(), 1, "cooling down: not asked again");
    assert_eq!(good.chat_requests(), 3);
    let primary = status_of(&gateway, "primary");
    assert!(primary.cooling_down);
    assert_eq!(primary.state, BreakerState::Closed, "a 429 is not a fault");
}

#[tokio::test]
async fn every_backend_rate_limited_is_a_rate_limit_error_with_retry_after() {
    let limited = Mock::start(
        "limited",
        Behavior::RateLimited {
            retry_after: Some(7),
        },
    )
    .await;
    let gateway = Gateway::builder(config(
        vec![model("m", vec![openai("only", &limited.base_url(), 0)])],
        60_000,
    ))
    .build()
    .expect("valid");
    let err = gateway
        .chat(chat("m", true), RouteOptions::default())
        .await
        .expect_err("rate limited");
    let GatewayError::RateLimited { retry_after, .. } = &err else {
        panic!("expected RateLimited, got {err:?}");
    };
    let wait = retry_after.expect("retry-after honoured");
    assert!(
        wait > Duration::from_secs(5) && wait <= Duration::from_secs(7),
        "{wait:?}"
    );
}

#[tokio::test]
async fn status_500_is_retried_then_fails_over() {
    let broken = Mock::start("broken", Behavior::Status(500)).await;
    let (gateway, _good) = primary_and_good(&broken.base_url()).await;
    let (_, backend) = whole_text(&gateway, false).await;
    assert_eq!(backend, "good");
    assert_eq!(broken.chat_requests(), 1, "round one moves on at once");

    let alone = Gateway::builder(config(
        vec![model("m", vec![openai("only", &broken.base_url(), 0)])],
        60_000,
    ))
    .build()
    .expect("valid");
    let err = alone
        .chat(chat("m", false), RouteOptions::default())
        .await
        .expect_err("500 twice");
    let GatewayError::Exhausted { attempts, last, .. } = &err else {
        panic!("expected Exhausted, got {err:?}");
    };
    assert_eq!(
        (*attempts, &last.kind),
        (2, &FailureKind::Status { status: 500 })
    );
}

#[tokio::test]
async fn garbage_body_fails_over_whole_and_streamed() {
    let garbage = Mock::start("garbage", Behavior::Garbage).await;
    let (gateway, _good) = primary_and_good(&garbage.base_url()).await;
    for stream in [false, true] {
        let (text, backend) = whole_text(&gateway, stream).await;
        assert_eq!(backend, "good");
        assert!(text.starts_with("good"));
    }
    assert_eq!(status_of(&gateway, "primary").failures, 2);
}

#[tokio::test]
async fn slow_first_token_fails_over() {
    let slow = Mock::start(
        "slow",
        Behavior::SlowFirstToken {
            delay: Duration::from_secs(30),
            words: 2,
        },
    )
    .await;
    let (gateway, _good) = primary_and_good(&slow.base_url()).await;
    let (text, backend) = whole_text(&gateway, true).await;
    assert_eq!(backend, "good");
    assert!(text.starts_with("good"));
    assert_eq!(status_of(&gateway, "primary").failures, 1);
}

#[tokio::test]
async fn first_token_within_the_limit_is_served() {
    let slow = Mock::start(
        "slow",
        Behavior::SlowFirstToken {
            delay: Duration::from_millis(20),
            words: 2,
        },
    )
    .await;
    let (gateway, _good) = primary_and_good(&slow.base_url()).await;
    let (text, backend) = whole_text(&gateway, true).await;
    assert_eq!((text.as_str(), backend.as_str()), ("slow w1", "primary"));
}

#[tokio::test]
async fn rejected_request_is_neither_retried_nor_counted() {
    let picky = Mock::start("picky", Behavior::Status(400)).await;
    let (gateway, good) = primary_and_good(&picky.base_url()).await;
    let err = gateway
        .chat(chat("m", false), RouteOptions::default())
        .await
        .expect_err("rejected");
    let GatewayError::Rejected {
        status,
        message,
        client_error: None,
    } = &err
    else {
        panic!("expected Rejected, got {err:?}");
    };
    assert_eq!((*status, message.as_str()), (400, "mock status 400"));
    assert_eq!(good.chat_requests(), 0);
    assert_eq!(status_of(&gateway, "primary").state, BreakerState::Closed);
}

#[tokio::test]
async fn breaker_opens_then_a_half_open_probe_closes_it() {
    let flaky = Mock::start("flaky", Behavior::Status(503)).await;
    let good = Mock::start("good", Behavior::Ok { words: 2 }).await;
    let gateway = Gateway::builder(config(
        vec![model(
            "m",
            vec![
                openai("flaky", &flaky.base_url(), 0),
                openai("good", &good.base_url(), 1),
            ],
        )],
        100,
    ))
    .build()
    .expect("valid");
    let mut events = gateway.subscribe();
    for _ in 0..3 {
        whole_text(&gateway, false).await;
    }
    assert_eq!(status_of(&gateway, "flaky").state, BreakerState::Open);
    flaky.set(Behavior::Ok { words: 2 });
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (_, backend) = whole_text(&gateway, false).await;
        if backend == "flaky" {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the probe never went out"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(status_of(&gateway, "flaky").state, BreakerState::Closed);
    let mut seen = Vec::new();
    while let Ok(event) = events.try_recv() {
        assert_eq!(
            (event.backend.as_str(), event.model.as_str()),
            ("flaky", "m")
        );
        seen.push(event.to);
    }
    assert_eq!(
        seen,
        vec![
            BreakerState::Open,
            BreakerState::HalfOpen,
            BreakerState::Closed
        ]
    );
}

#[tokio::test]
async fn health_checks_open_and_close_the_breaker() {
    let sick = Mock::start("sick", Behavior::Ok { words: 1 }).await;
    sick.set_healthy(false);
    let mut config = config(
        vec![model("m", vec![openai("sick", &sick.base_url(), 0)])],
        50,
    );
    config.health.enabled = true;
    let gateway = Gateway::builder(config).build().expect("valid");
    for _ in 0..3 {
        gateway.check_health_now().await;
    }
    let status = status_of(&gateway, "sick");
    assert_eq!(
        (status.state, status.healthy),
        (BreakerState::Open, Some(false))
    );
    sick.set_healthy(true);
    let handle = gateway.spawn_health_checks().expect("enabled");
    let gw = gateway.clone();
    let closed = eventually(WAIT, || {
        status_of(&gw, "sick").state == BreakerState::Closed
    })
    .await;
    handle.abort();
    assert!(closed, "a passing probe closes the breaker");
}

#[tokio::test]
async fn fallback_model_serves_and_is_reported() {
    let good = Mock::start("backup", Behavior::Ok { words: 2 }).await;
    let mut primary = model("primary", vec![openai("dead", &refused_url().await, 0)]);
    primary.fallbacks = vec!["backup".into()];
    primary.aliases = vec!["best".into()];
    let backup = model("backup", vec![openai("backup-1", &good.base_url(), 0)]);
    let gateway = Gateway::builder(config(vec![primary, backup], 60_000))
        .build()
        .expect("valid");
    for stream in [false, true] {
        match gateway
            .chat(chat("best", stream), RouteOptions::default())
            .await
        {
            Ok(GatewayReply::Whole(answer, served)) => {
                assert_eq!(
                    (answer.model.as_str(), served.model.as_str()),
                    ("backup", "backup")
                );
            }
            Ok(GatewayReply::Stream(stream, served)) => {
                assert_eq!(served.model, "backup");
                let (chunks, end) = drain(stream).await;
                assert!(end.is_none());
                assert!(chunks.iter().all(|c| c.model == "backup"));
            }
            Err(err) => panic!("{err}"),
        }
    }
    // The upstream got its own name for the model.
    assert!(good
        .recorded()
        .iter()
        .all(|r| r.body["model"] == "upstream-model"));
}

#[tokio::test]
async fn sticky_key_keeps_a_conversation_on_one_backend() {
    let a = Mock::start("a", Behavior::Ok { words: 1 }).await;
    let b = Mock::start("b", Behavior::Ok { words: 1 }).await;
    let gateway = Gateway::builder(config(
        vec![model(
            "m",
            vec![openai("a", &a.base_url(), 0), openai("b", &b.base_url(), 0)],
        )],
        60_000,
    ))
    .build()
    .expect("valid");
    let options = RouteOptions {
        sticky_key: Some("conversation-1".into()),
    };
    let mut first = None;
    for _ in 0..20 {
        let Ok(GatewayReply::Whole(_, served)) =
            gateway.chat(chat("m", false), options.clone()).await
        else {
            panic!("expected an answer");
        };
        let first = first.get_or_insert(served.backend.clone());
        assert_eq!(&served.backend, first);
    }
}

#[tokio::test]
async fn usage_chunk_follows_the_clients_choice() {
    let good = Mock::start("good", Behavior::Ok { words: 3 }).await;
    let gateway = Gateway::builder(config(
        vec![model("m", vec![openai("good", &good.base_url(), 0)])],
        60_000,
    ))
    .build()
    .expect("valid");
    // The upstream is always asked for usage…
    let Ok(GatewayReply::Stream(stream, _)) =
        gateway.chat(chat("m", true), RouteOptions::default()).await
    else {
        panic!("expected a stream");
    };
    let (chunks, end) = drain(stream).await;
    assert!(end.is_none());
    assert!(chunks
        .iter()
        .all(|c| !c.choices.is_empty() && !c.null_usage));
    assert_eq!(
        good.recorded()[0].body["stream_options"]["include_usage"],
        true
    );
    // …and the client gets it only when it asked.
    let mut request = chat("m", true);
    request.stream_options = Some(api::StreamOptions {
        include_usage: Some(true),
    });
    let Ok(GatewayReply::Stream(stream, _)) = gateway.chat(request, RouteOptions::default()).await
    else {
        panic!("expected a stream");
    };
    let (chunks, _) = drain(stream).await;
    let last = chunks.last().expect("chunks");
    assert!(last.choices.is_empty());
    let usage = last.usage.as_ref().expect("usage");
    assert_eq!((usage.prompt_tokens, usage.completion_tokens), (7, 3));
}

#[tokio::test]
async fn unknown_model_is_not_found() {
    let gateway = Gateway::builder(config(
        vec![model("m", vec![openai("x", &refused_url().await, 0)])],
        60_000,
    ))
    .build()
    .expect("valid");
    let err = gateway
        .chat(chat("nope", false), RouteOptions::default())
        .await
        .expect_err("unknown");
    assert!(
        matches!(&err, GatewayError::UnknownModel { model } if model == "nope"),
        "{err:?}"
    );
}

#[tokio::test]
async fn abandoned_probe_does_not_wedge_the_breaker() {
    let flaky = Mock::start("flaky", Behavior::Status(503)).await;
    let good = Mock::start("good", Behavior::Ok { words: 2 }).await;
    let gateway = Gateway::builder(config(
        vec![model(
            "m",
            vec![
                openai("flaky", &flaky.base_url(), 0),
                openai("good", &good.base_url(), 1),
            ],
        )],
        50,
    ))
    .build()
    .expect("valid");
    for _ in 0..3 {
        whole_text(&gateway, false).await;
    }
    assert_eq!(status_of(&gateway, "flaky").state, BreakerState::Open);
    // The next call to reach `flaky` is the half-open probe: let it hang,
    // and have its caller leave while it does.
    flaky.set(Behavior::HangBeforeHeaders);
    let before = flaky.chat_requests();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let gw = gateway.clone();
        let caller =
            tokio::spawn(async move { gw.chat(chat("m", false), RouteOptions::default()).await });
        let settled = eventually(WAIT, || {
            flaky.chat_requests() > before || caller.is_finished()
        })
        .await;
        assert!(settled, "the call neither reached flaky nor finished");
        if flaky.chat_requests() > before {
            caller.abort();
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no probe went out");
    }
    // A released probe lets the next one through, which now succeeds.
    flaky.set(Behavior::Ok { words: 2 });
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (_, backend) = whole_text(&gateway, false).await;
        if backend == "flaky" {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the breaker stayed wedged"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(status_of(&gateway, "flaky").state, BreakerState::Closed);
}
