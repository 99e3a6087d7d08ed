//! One suite of behaviour tests run against both backends: in-process always,
//! Redis when `PARLANCE_TEST_REDIS_URL` names a server (each run uses its own
//! random key prefix and deletes its keys afterwards).
//!
//! Waits are tens of milliseconds and assertions are about counts and
//! ordering, never about how long something took.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ratelimit::{Cost, Decision, ErrorKind, Limits, MemoryLimiter, RateLimiter, RedisLimiter};

const REDIS_ENV: &str = "PARLANCE_TEST_REDIS_URL";

fn cost(requests: u64, tokens: u64) -> Cost {
    Cost { requests, tokens }
}

/// A prefix no other run shares.
fn unique_prefix() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("parlance-test:{}:{nanos}:", std::process::id())
}

/// `count` independent connections (like `count` Parlance instances) sharing
/// one fresh prefix, or `None` (after saying so) when no Redis is configured.
async fn redis_instances(count: usize) -> Option<Vec<RedisLimiter>> {
    let Ok(url) = std::env::var(REDIS_ENV) else {
        println!("skipping Redis: set {REDIS_ENV}");
        return None;
    };
    let prefix = unique_prefix();
    let mut instances = Vec::new();
    for _ in 0..count {
        let limiter = RedisLimiter::connect(&url, &prefix)
            .await
            .unwrap_or_else(|e| panic!("{REDIS_ENV}={url} is set but unusable: {e}"));
        instances.push(limiter);
    }
    Some(instances)
}

async fn remaining_decreases_by_one_per_request(limiter: &impl RateLimiter) {
    let limits = Limits::new(5, 1_000);
    for expected in (0..5).rev() {
        let decision = limiter
            .acquire("key:a", &limits, cost(1, 10))
            .await
            .unwrap();
        assert!(decision.is_allowed(), "{decision:?}");
        let snapshot = decision.snapshot();
        assert_eq!(snapshot.remaining_requests, expected);
        assert_eq!((snapshot.limit_requests, snapshot.limit_tokens), (5, 1_000));
        assert!(snapshot.reset_requests > Duration::ZERO);
    }
    match limiter
        .acquire("key:a", &limits, cost(1, 10))
        .await
        .unwrap()
    {
        Decision::Limited {
            retry_after,
            snapshot,
        } => {
            assert!(retry_after > Duration::ZERO);
            assert_eq!(snapshot.remaining_requests, 0);
        }
        other => panic!("expected limited, got {other:?}"),
    }
    // Another subject is untouched.
    let other = limiter
        .acquire("key:b", &limits, cost(1, 10))
        .await
        .unwrap();
    assert_eq!(other.snapshot().remaining_requests, 4);
}

async fn allowed_again_after_retry_after(limiter: &impl RateLimiter) {
    // 6000 RPM and 6000 TPM: each refills one unit per 10 ms.
    let limits = Limits::new(6_000, 6_000);
    for exhaust in [cost(6_000, 0), cost(1, 6_000)] {
        let subject = format!("key:{}-{}", exhaust.requests, exhaust.tokens);
        assert!(limiter
            .acquire(&subject, &limits, exhaust)
            .await
            .unwrap()
            .is_allowed());
        let retry_after = match limiter
            .acquire(&subject, &limits, cost(1, 1))
            .await
            .unwrap()
        {
            Decision::Limited { retry_after, .. } => retry_after,
            other => panic!("expected limited, got {other:?}"),
        };
        assert!(retry_after > Duration::ZERO && retry_after < Duration::from_secs(1));
        tokio::time::sleep(retry_after).await;
        let again = limiter
            .acquire(&subject, &limits, cost(1, 1))
            .await
            .unwrap();
        assert!(
            again.is_allowed(),
            "{exhaust:?}: still limited after retry_after: {again:?}"
        );
    }
}

async fn tpm_limits_large_requests(limiter: &impl RateLimiter) {
    let limits = Limits::new(100, 1_000);
    let first = limiter
        .acquire("project:p", &limits, cost(1, 600))
        .await
        .unwrap();
    assert_eq!(first.snapshot().remaining_tokens, 400);
    let second = limiter
        .acquire("project:p", &limits, cost(1, 600))
        .await
        .unwrap();
    assert!(!second.is_allowed(), "{second:?}");
    // Refused requests consume nothing: the requests bucket shows one use.
    assert_eq!(second.snapshot().remaining_requests, 99);
    let small = limiter
        .acquire("project:p", &limits, cost(1, 400))
        .await
        .unwrap();
    assert!(small.is_allowed(), "{small:?}");
    let err = limiter
        .acquire("project:p", &limits, cost(1, 1_001))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::RateLimited);
}

async fn adjust_refunds_and_charges_tokens(limiter: &impl RateLimiter) {
    let limits = Limits::new(100, 1_000);
    let taken = limiter
        .acquire("key:adj", &limits, cost(1, 800))
        .await
        .unwrap();
    assert_eq!(taken.snapshot().remaining_tokens, 200);
    assert!(!limiter
        .acquire("key:adj", &limits, cost(1, 700))
        .await
        .unwrap()
        .is_allowed());
    // Only 100 of the 800 estimated were used: refund 700.
    let refunded = limiter.adjust("key:adj", &limits, -700).await.unwrap();
    assert!(refunded.remaining_tokens >= 900, "{refunded:?}");
    assert!(limiter
        .acquire("key:adj", &limits, cost(1, 700))
        .await
        .unwrap()
        .is_allowed());
    // A request used far more than estimated: the charge leaves it in debt.
    let charged = limiter.adjust("key:adj", &limits, 5_000).await.unwrap();
    assert_eq!(charged.remaining_tokens, 0);
    assert!(charged.reset_tokens > Duration::from_secs(60));
    assert!(!limiter
        .acquire("key:adj", &limits, cost(1, 1))
        .await
        .unwrap()
        .is_allowed());
    let err = limiter
        .adjust("key:adj", &limits, i64::MAX)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidRequest);
}

/// 200 acquires at once, spread over `instances`, against 50 RPM.
async fn concurrent_acquires_admit_exactly_the_limit<L>(instances: Vec<Arc<L>>)
where
    L: RateLimiter + 'static,
{
    let limits = Limits::new(50, 1_000_000);
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let limiter = Arc::clone(&instances[i % instances.len()]);
            tokio::spawn(async move { limiter.acquire("key:busy", &limits, cost(1, 100)).await })
        })
        .collect();
    let mut allowed = 0;
    let mut limited = 0;
    for task in tasks {
        match task.await.unwrap().unwrap() {
            Decision::Allowed(_) => allowed += 1,
            Decision::Limited { retry_after, .. } => {
                assert!(retry_after > Duration::ZERO);
                limited += 1;
            }
        }
    }
    assert_eq!((allowed, limited), (50, 150));
}

macro_rules! on_both_backends {
    ($($test:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test]
                async fn $test() {
                    super::$test(&ratelimit::MemoryLimiter::new()).await;
                }
            )*
        }
        mod redis {
            $(
                #[tokio::test]
                async fn $test() {
                    let Some(mut instances) = super::redis_instances(1).await else {
                        return;
                    };
                    let Some(limiter) = instances.pop() else { return };
                    super::$test(&limiter).await;
                    assert!(limiter.clear().await.unwrap() > 0);
                }
            )*
        }
    };
}

on_both_backends!(
    remaining_decreases_by_one_per_request,
    allowed_again_after_retry_after,
    tpm_limits_large_requests,
    adjust_refunds_and_charges_tokens,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_concurrent_acquires_admit_exactly_the_limit() {
    concurrent_acquires_admit_exactly_the_limit(vec![Arc::new(MemoryLimiter::new())]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_concurrent_acquires_from_several_instances_admit_exactly_the_limit() {
    let Some(instances) = redis_instances(4).await else {
        return;
    };
    let cleaner = instances[0].clone();
    concurrent_acquires_admit_exactly_the_limit(instances.into_iter().map(Arc::new).collect())
        .await;
    assert_eq!(cleaner.clear().await.unwrap(), 1);
}

#[tokio::test]
async fn redis_clock_is_the_servers_not_ours() {
    // Two instances agree on one bucket because the script reads Redis's TIME.
    let Some(instances) = redis_instances(2).await else {
        return;
    };
    let limits = Limits::new(2, 100);
    assert!(instances[0]
        .acquire("key:clock", &limits, cost(1, 1))
        .await
        .unwrap()
        .is_allowed());
    assert!(instances[1]
        .acquire("key:clock", &limits, cost(1, 1))
        .await
        .unwrap()
        .is_allowed());
    assert!(!instances[0]
        .acquire("key:clock", &limits, cost(1, 1))
        .await
        .unwrap()
        .is_allowed());
    instances[0].clear().await.unwrap();
}

#[tokio::test]
async fn limiter_from_url_picks_the_backend() {
    let memory = ratelimit::Limiter::from_url(None).await.unwrap();
    assert!(matches!(memory, ratelimit::Limiter::Memory(_)));
    remaining_decreases_by_one_per_request(&memory).await;
    let Ok(url) = std::env::var(REDIS_ENV) else {
        println!("skipping Redis: set {REDIS_ENV}");
        return;
    };
    let redis = ratelimit::Limiter::from_url(Some(&url)).await.unwrap();
    assert!(matches!(redis, ratelimit::Limiter::Redis(_)));
    // Production prefix: touch one unique subject only, then delete its key.
    let subject = unique_prefix();
    let limits = Limits::new(3, 10);
    let decision = redis.acquire(&subject, &limits, cost(1, 1)).await.unwrap();
    assert_eq!(decision.snapshot().remaining_requests, 2);
    let refunded = redis.adjust(&subject, &limits, -1).await.unwrap();
    assert_eq!(refunded.remaining_tokens, 10);
    let client = redis_client(&url);
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let removed: u64 = ::redis::cmd("DEL")
        .arg(format!("{}{subject}", ratelimit::redis::DEFAULT_PREFIX))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(removed, 1);
}

fn redis_client(url: &str) -> ::redis::Client {
    ::redis::Client::open(url).unwrap()
}
