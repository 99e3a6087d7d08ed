//! Failover under load: 1,000 requests, 50 at a time, over two upstreams,
//! one killed halfway (listener and open connections closed) and brought
//! back later. At least 99.9% must succeed; the killed one's breaker must
//! open, and close again once it is back (through the health checks).

mod support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use gateway::{BreakerState, Gateway, GatewayReply, RouteOptions};
use support::{chat, config, eventually, model, openai, Behavior, Mock};

const REQUESTS: u64 = 1_000;
const CONCURRENCY: usize = 50;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_under_load_with_one_upstream_killed_halfway() {
    let a = Arc::new(Mock::start("a", Behavior::Ok { words: 3 }).await);
    let b = Mock::start("b", Behavior::Ok { words: 3 }).await;
    let mut config = config(
        vec![model(
            "m",
            vec![openai("a", &a.base_url(), 0), openai("b", &b.base_url(), 0)],
        )],
        200,
    );
    config.health.enabled = true;
    let gateway = Gateway::builder(config).build().expect("valid");
    let mut events = gateway.subscribe();
    let health = gateway.spawn_health_checks().expect("enabled");

    let done = Arc::new(AtomicU64::new(0));
    let killer = {
        let (a, done) = (a.clone(), done.clone());
        tokio::spawn(async move {
            let halfway = eventually(Duration::from_secs(120), || {
                done.load(Ordering::SeqCst) >= REQUESTS / 2
            })
            .await;
            a.kill();
            halfway
        })
    };

    let outcomes: Vec<bool> = futures_util::stream::iter(0..REQUESTS)
        .map(|i| {
            let (gateway, done) = (gateway.clone(), done.clone());
            async move {
                let ok = match gateway
                    .chat(chat("m", i % 2 == 0), RouteOptions::default())
                    .await
                {
                    Ok(GatewayReply::Whole(answer, _)) => answer.choices.len() == 1,
                    Ok(GatewayReply::Stream(mut stream, _)) => {
                        let mut ok = true;
                        while let Some(item) = stream.next().await {
                            ok &= item.is_ok();
                        }
                        ok
                    }
                    Err(_) => false,
                };
                done.fetch_add(1, Ordering::SeqCst);
                ok
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    assert!(killer.await.expect("killer task"), "halfway was reached");
    let succeeded = outcomes.iter().filter(|ok| **ok).count() as u64;
    eprintln!(
        "{succeeded} of {REQUESTS} succeeded; b served {}",
        b.chat_requests()
    );
    assert!(
        succeeded * 1000 >= REQUESTS * 999,
        "{succeeded} of {REQUESTS} succeeded"
    );
    assert!(b.chat_requests() > REQUESTS / 2, "b took over");

    let status = |id: &str| {
        gateway
            .status()
            .into_iter()
            .find(|s| s.id == id)
            .expect("configured")
    };
    a.restart().await;
    let closed = eventually(Duration::from_secs(20), || {
        status("a").state == BreakerState::Closed
    })
    .await;
    health.abort();
    assert!(closed, "a's breaker closes once it is back");

    let mut opened = false;
    let mut closed_again = false;
    while let Ok(event) = events.try_recv() {
        if event.backend == "a" {
            opened |= event.to == BreakerState::Open;
            closed_again |= opened && event.to == BreakerState::Closed;
        }
    }
    assert!(opened, "a's breaker opened");
    assert!(closed_again, "and closed after a came back");
    assert_eq!(status("b").state, BreakerState::Closed);
}
