//! Exact cost of a request's token usage, and the worst case to reserve.
//!
//! `prompt_tokens` counts every prompt token, cached or not (as in OpenAI's
//! usage object, where `cached_tokens` is a subset of `prompt_tokens`), so
//! cost = (prompt − cached) × input + cached × cached_input + completion × output.

use serde::{Deserialize, Serialize};

use crate::error::BillingError;
use crate::money::Money;
use crate::price::ModelPrices;

/// Tokens used by one request (or a sum of requests).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// All prompt tokens, including cached ones.
    pub prompt_tokens: u64,
    /// Prompt tokens served from the cache (≤ `prompt_tokens`).
    pub cached_tokens: u64,
    /// Generated tokens.
    pub completion_tokens: u64,
}

impl Usage {
    /// A usage with no cached tokens.
    pub const fn new(prompt_tokens: u64, completion_tokens: u64) -> Usage {
        Usage {
            prompt_tokens,
            cached_tokens: 0,
            completion_tokens,
        }
    }

    /// Field-wise sum, or an overflow error.
    pub fn checked_add(self, other: Usage) -> Result<Usage, BillingError> {
        let add = |a: u64, b: u64| {
            a.checked_add(b)
                .ok_or(BillingError::Overflow { op: "usage add" })
        };
        Ok(Usage {
            prompt_tokens: add(self.prompt_tokens, other.prompt_tokens)?,
            cached_tokens: add(self.cached_tokens, other.cached_tokens)?,
            completion_tokens: add(self.completion_tokens, other.completion_tokens)?,
        })
    }

    /// Prompt plus completion tokens.
    pub fn total_tokens(self) -> u64 {
        self.prompt_tokens.saturating_add(self.completion_tokens)
    }
}

/// The exact cost of `usage` at `prices`.
pub fn cost(usage: Usage, prices: &ModelPrices) -> Result<Money, BillingError> {
    let uncached = usage.prompt_tokens.checked_sub(usage.cached_tokens).ok_or(
        BillingError::CachedExceedsPrompt {
            cached: usage.cached_tokens,
            prompt: usage.prompt_tokens,
        },
    )?;
    prices
        .input
        .checked_mul(uncached)?
        .checked_add(prices.cached_input.checked_mul(usage.cached_tokens)?)?
        .checked_add(prices.output.checked_mul(usage.completion_tokens)?)
}

/// The most a request can cost before it runs: every prompt token at the
/// (uncached) input price plus `max_tokens` at the output price. Reserve this.
pub fn worst_case(
    prompt_tokens: u64,
    max_tokens: u64,
    prices: &ModelPrices,
) -> Result<Money, BillingError> {
    let worst_input = prices.input.max(prices.cached_input);
    worst_input
        .checked_mul(prompt_tokens)?
        .checked_add(prices.output.checked_mul(max_tokens)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn reference_cost_is_exact() {
        let p = ModelPrices::reference();
        // 10 prompt × $0.00001 + 1 completion × $0.00003 = $0.000130
        assert_eq!(
            cost(Usage::new(10, 1), &p).unwrap().to_string(),
            "$0.000130"
        );
        // 1K in + 1K out = $0.04
        assert_eq!(
            cost(Usage::new(1000, 1000), &p).unwrap(),
            Money::parse("0.04").unwrap()
        );
        assert_eq!(
            worst_case(1000, 1000, &p).unwrap(),
            Money::parse("0.04").unwrap()
        );
    }

    #[test]
    fn cached_tokens_use_the_cached_price() {
        let p = ModelPrices::per_1m("2.50", "10")
            .unwrap()
            .with_cached_input(Money::per_token("1.25", 1_000_000).unwrap());
        let u = Usage {
            prompt_tokens: 1_000_000,
            cached_tokens: 400_000,
            completion_tokens: 0,
        };
        // 600K × 2.50/1M + 400K × 1.25/1M = 1.50 + 0.50
        assert_eq!(cost(u, &p).unwrap(), Money::from_dollars(2));
        assert!(worst_case(1_000_000, 0, &p).unwrap() >= cost(u, &p).unwrap());
        let bad = Usage {
            prompt_tokens: 1,
            cached_tokens: 2,
            completion_tokens: 0,
        };
        assert!(matches!(
            cost(bad, &p),
            Err(BillingError::CachedExceedsPrompt { .. })
        ));
    }

    fn usage() -> impl Strategy<Value = Usage> {
        (0u64..1_000_000, 0u64..1_000_000, 0u64..1_000_000).prop_map(|(p, c, o)| Usage {
            prompt_tokens: p.max(c),
            cached_tokens: c.min(p),
            completion_tokens: o,
        })
    }

    fn prices() -> impl Strategy<Value = ModelPrices> {
        (0i128..100_000_000, 0i128..100_000_000, 0i128..100_000_000).prop_map(|(i, c, o)| {
            ModelPrices::new(Money::from_units(i), Money::from_units(o))
                .with_cached_input(Money::from_units(c))
        })
    }

    proptest! {
        #[test]
        fn cost_is_additive(p in prices(), usages in proptest::collection::vec(usage(), 0..50)) {
            let mut total = Usage::default();
            let mut sum = Money::ZERO;
            for u in &usages {
                total = total.checked_add(*u).unwrap();
                sum = sum.checked_add(cost(*u, &p).unwrap()).unwrap();
            }
            prop_assert_eq!(sum, cost(total, &p).unwrap());
        }

        #[test]
        fn worst_case_bounds_every_outcome(p in prices(), u in usage(), extra in 0u64..1000) {
            let max_tokens = u.completion_tokens + extra;
            prop_assert!(worst_case(u.prompt_tokens, max_tokens, &p).unwrap() >= cost(u, &p).unwrap());
        }
    }
}
