//! The Redis backend: limits shared by every Parlance instance using the
//! same Redis.
//!
//! Each acquire or adjust is **one Lua script**, which Redis runs atomically,
//! so concurrent instances can never admit more than the limit between them.
//! The script reads the time with `redis.call('TIME')`, so instances whose
//! own clocks disagree still agree on every bucket. It performs exactly the
//! integer steps of [`State`](crate::bucket::State) (see [`crate::bucket`]
//! for why every value stays exact in Lua's doubles) and stores a subject as
//! one hash `{prefix}{subject}` with fields `r`, `t` (scaled levels) and `ms`
//! (last update), expiring once both buckets would be full again — a missing
//! key means full buckets.

use redis::aio::ConnectionManager;
use redis::{AsyncCommands, Script};

use crate::bucket::{self, Cost, Decision, Limits, Snapshot, State};
use crate::error::RateLimitError;
use crate::RateLimiter;

/// The key prefix used when none is given.
pub const DEFAULT_PREFIX: &str = "parlance:ratelimit:";

/// KEYS[1] = subject hash; ARGV = rpm, tpm, op ("acquire"|"adjust"), then
/// requests and tokens (acquire) or the token delta (adjust). Replies
/// `{allowed 0|1, wait_ms, request_level, token_level, now_ms}`.
const SCRIPT: &str = r#"
local SCALE = 60000
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local rpm, tpm = tonumber(ARGV[1]), tonumber(ARGV[2])
local full_r, full_t = rpm * SCALE, tpm * SCALE
local saved = redis.call('HMGET', KEYS[1], 'r', 't', 'ms')
local r, t, ms = tonumber(saved[1]), tonumber(saved[2]), tonumber(saved[3])
if r == nil or t == nil or ms == nil then r, t, ms = full_r, full_t, now end
local elapsed = math.min(math.max(now - ms, 0), 2 * SCALE)
r = math.min(r + elapsed * rpm, full_r)
t = math.min(t + elapsed * tpm, full_t)
if now > ms then ms = now end
local function wait(level, need, rate)
  if level >= need then return 0 end
  return math.floor((need - level + rate - 1) / rate)
end
local allowed, w = 1, 0
if ARGV[3] == 'acquire' then
  local need_r, need_t = tonumber(ARGV[4]) * SCALE, tonumber(ARGV[5]) * SCALE
  w = math.max(wait(r, need_r, rpm), wait(t, need_t, tpm))
  if w > 0 then
    allowed = 0
  else
    r, t = r - need_r, t - need_t
  end
else
  t = math.min(math.max(t - tonumber(ARGV[4]) * SCALE, -full_t), full_t)
end
redis.call('HSET', KEYS[1], 'r', string.format('%.0f', r), 't', string.format('%.0f', t),
  'ms', string.format('%.0f', ms))
local ttl = math.max(wait(r, full_r, rpm), wait(t, full_t, tpm)) + 1000
redis.call('PEXPIRE', KEYS[1], string.format('%.0f', ttl))
return {allowed, w, r, t, ms}
"#;

/// Rate limits kept in Redis, shared between instances.
#[derive(Clone)]
pub struct RedisLimiter {
    conn: ConnectionManager,
    prefix: String,
    script: Script,
}

impl std::fmt::Debug for RedisLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisLimiter")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl RedisLimiter {
    /// Connects to `url` (`redis://host:port/db`); keys start with `prefix`.
    /// The connection reconnects by itself after Redis restarts.
    pub async fn connect(url: &str, prefix: &str) -> Result<Self, RateLimitError> {
        let client = redis::Client::open(url)?;
        let conn = ConnectionManager::new(client).await?;
        Ok(Self {
            conn,
            prefix: prefix.to_owned(),
            script: Script::new(SCRIPT),
        })
    }

    /// The Redis key holding a subject's buckets.
    pub fn key(&self, subject: &str) -> String {
        format!("{}{subject}", self.prefix)
    }

    /// Deletes every key under this limiter's prefix (tests, resets);
    /// returns how many were removed.
    pub async fn clear(&self) -> Result<u64, RateLimitError> {
        let pattern = format!("{}*", escape_glob(&self.prefix));
        let mut conn = self.conn.clone();
        let keys: Vec<String> = {
            let mut iter = conn.scan_match::<_, String>(&pattern).await?;
            let mut keys = Vec::new();
            while let Some(key) = iter.next_item().await {
                keys.push(key);
            }
            keys
        };
        let mut removed = 0;
        for chunk in keys.chunks(500) {
            removed += conn.del::<_, u64>(chunk).await?;
        }
        Ok(removed)
    }

    async fn run(
        &self,
        subject: &str,
        limits: &Limits,
        args: &[String],
    ) -> Result<(bool, i64, State), RateLimitError> {
        let mut invocation = self.script.key(self.key(subject));
        invocation
            .arg(limits.requests_per_minute)
            .arg(limits.tokens_per_minute);
        for arg in args {
            invocation.arg(arg);
        }
        let mut conn = self.conn.clone();
        let reply: Vec<i64> = invocation.invoke_async(&mut conn).await?;
        match reply[..] {
            [allowed, wait, requests, tokens, updated_ms] => Ok((
                allowed == 1,
                wait,
                State {
                    requests,
                    tokens,
                    updated_ms,
                },
            )),
            _ => Err(RateLimitError::BadReply(format!("{reply:?}"))),
        }
    }
}

impl RateLimiter for RedisLimiter {
    async fn acquire(
        &self,
        subject: &str,
        limits: &Limits,
        cost: Cost,
    ) -> Result<Decision, RateLimitError> {
        limits.validate()?;
        bucket::check_cost(limits, cost)?;
        let args = [
            "acquire".to_owned(),
            cost.requests.to_string(),
            cost.tokens.to_string(),
        ];
        let (allowed, wait, state) = self.run(subject, limits, &args).await?;
        let snapshot = state.snapshot(limits);
        if allowed {
            Ok(Decision::Allowed(snapshot))
        } else if wait > 0 {
            Ok(Decision::Limited {
                retry_after: bucket::millis(wait),
                snapshot,
            })
        } else {
            Err(RateLimitError::BadReply(format!(
                "refused with no wait ({wait} ms)"
            )))
        }
    }

    async fn adjust(
        &self,
        subject: &str,
        limits: &Limits,
        token_delta: i64,
    ) -> Result<Snapshot, RateLimitError> {
        limits.validate()?;
        bucket::check_delta(token_delta)?;
        let args = ["adjust".to_owned(), token_delta.to_string()];
        let (_, _, state) = self.run(subject, limits, &args).await?;
        Ok(state.snapshot(limits))
    }
}

/// Escapes Redis glob metacharacters so a prefix matches only itself.
fn escape_glob(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_metacharacters_are_escaped() {
        assert_eq!(escape_glob("a*b?[c]\\"), "a\\*b\\?\\[c\\]\\\\");
        assert_eq!(escape_glob(DEFAULT_PREFIX), DEFAULT_PREFIX);
    }
}
