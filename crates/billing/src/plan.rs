//! Plans for people using the chat app, and their monthly quotas.
//!
//! A [`Plan`] has a monthly price, a monthly [`Quota`] (tokens or messages)
//! and the models it allows. [`Plan::admit`] decides whether a request may
//! run given what the user has used this month ([`QuotaUse`]), and
//! [`Plan::remaining`] says what is left. Who is on which plan and how much
//! they have used are not kept here: the server reads both from the store
//! (the use is counted from the usage ledger per calendar month), so a plan
//! change takes effect at once and every instance sees the same counts.
//!
//! Concurrent requests of one user can overshoot a token quota by at most
//! their own size, which is acceptable for a plan: money is guarded by the
//! store's budget reservations, not by this check.

use serde::{Deserialize, Serialize};

use crate::error::BillingError;
use crate::money::Money;
use crate::time::Month;

/// A monthly allowance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "unit", content = "limit", rename_all = "snake_case")]
pub enum Quota {
    /// No limit.
    Unlimited,
    /// At most this many tokens (prompt + completion) per month.
    Tokens(u64),
    /// At most this many messages (requests) per month.
    Messages(u64),
}

/// Which models a plan may use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AllowedModels {
    /// Every model.
    All,
    /// Only these.
    Only(Vec<String>),
}

impl AllowedModels {
    /// Whether `model` is allowed.
    pub fn allows(&self, model: &str) -> bool {
        match self {
            AllowedModels::All => true,
            AllowedModels::Only(models) => models.iter().any(|m| m == model),
        }
    }
}

/// A plan definition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// Stable identifier (`"free"`, `"plus"`).
    pub id: String,
    /// Display name.
    pub name: String,
    /// Price per month.
    pub monthly_price: Money,
    /// Monthly allowance.
    pub quota: Quota,
    /// Models it may use.
    pub models: AllowedModels,
}

impl Plan {
    /// The reference free plan: $0, 100 000 tokens a month, every model.
    pub fn free() -> Plan {
        Plan {
            id: "free".into(),
            name: "Free".into(),
            monthly_price: Money::ZERO,
            quota: Quota::Tokens(100_000),
            models: AllowedModels::All,
        }
    }

    /// The reference paid plan: $20 a month, 10 million tokens, every model.
    pub fn plus() -> Plan {
        Plan {
            id: "plus".into(),
            name: "Plus".into(),
            monthly_price: Money::from_dollars(20),
            quota: Quota::Tokens(10_000_000),
            models: AllowedModels::All,
        }
    }
}

impl Plan {
    /// What a user who has used `used` in `month` has left on this plan.
    pub fn remaining(&self, used: QuotaUse, month: Month) -> Remaining {
        let remaining = match self.quota {
            Quota::Unlimited => None,
            Quota::Tokens(limit) => Some(limit.saturating_sub(used.tokens)),
            Quota::Messages(limit) => Some(limit.saturating_sub(used.messages)),
        };
        Remaining {
            plan: self.id.clone(),
            month,
            quota: self.quota,
            used,
            remaining,
        }
    }

    /// Admits a request for `model` by a user who has used `used` in
    /// `month` if the plan allows the model and has quota left; returns
    /// what remains before the request.
    pub fn admit(
        &self,
        model: &str,
        used: QuotaUse,
        month: Month,
    ) -> Result<Remaining, BillingError> {
        if !self.models.allows(model) {
            return Err(BillingError::ModelNotInPlan {
                model: model.to_string(),
                plan: self.id.clone(),
            });
        }
        let remaining = self.remaining(used, month);
        if remaining.remaining == Some(0) {
            return Err(BillingError::PlanQuotaExhausted {
                plan: remaining.plan,
            });
        }
        Ok(remaining)
    }
}

/// One user's use in one month.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuotaUse {
    /// Tokens used.
    pub tokens: u64,
    /// Messages sent.
    pub messages: u64,
}

/// What a user has left this month, as shown in the app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Remaining {
    /// The user's current plan.
    pub plan: String,
    /// The month counted.
    pub month: Month,
    /// The plan's quota.
    pub quota: Quota,
    /// Use so far this month.
    pub used: QuotaUse,
    /// Units (tokens or messages) left; `None` when unlimited.
    pub remaining: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::Timestamp;

    const T: Timestamp = Timestamp(1_800_000_000_000);

    fn month() -> Month {
        Month::containing(T)
    }

    fn tokens(tokens: u64) -> QuotaUse {
        QuotaUse {
            tokens,
            messages: 1,
        }
    }

    #[test]
    fn free_quota_runs_out_and_a_new_month_starts_from_zero() {
        let free = Plan::free();
        let fresh = free.admit("any", QuotaUse::default(), month()).unwrap();
        assert_eq!(fresh.remaining, Some(100_000));
        assert_eq!(fresh.plan, "free");
        assert_eq!(
            free.admit("any", tokens(99_000), month())
                .unwrap()
                .remaining,
            Some(1_000)
        );
        // Use past the quota (a request overshooting it) saturates at zero.
        for used in [100_000, 104_000] {
            let err = free.admit("any", tokens(used), month()).unwrap_err();
            assert_eq!(
                err,
                BillingError::PlanQuotaExhausted {
                    plan: "free".into()
                }
            );
            assert_eq!(err.kind(), crate::ErrorKind::QuotaExceeded);
            assert_eq!(free.remaining(tokens(used), month()).remaining, Some(0));
        }
        // The caller counts use per month; next month's count starts at zero.
        let next = month().next();
        let r = free.admit("any", QuotaUse::default(), next).unwrap();
        assert_eq!((r.month, r.remaining), (next, Some(100_000)));
    }

    #[test]
    fn a_plan_change_applies_to_the_month_so_far() {
        // Use belongs to the user and month, not to the plan: the same use
        // exhausts Free and leaves Plus's quota minus it.
        let used = tokens(100_000);
        assert!(Plan::free().admit("m", used, month()).is_err());
        let r = Plan::plus().admit("m", used, month()).unwrap();
        assert_eq!((r.plan.as_str(), r.remaining), ("plus", Some(9_900_000)));
        assert_eq!(r.used, used);
        assert_eq!(Plan::plus().monthly_price.to_string(), "$20.000000");
    }

    #[test]
    fn message_quotas_and_allowed_models() {
        let lite = Plan {
            id: "lite".into(),
            name: "Lite".into(),
            monthly_price: Money::from_dollars(5),
            quota: Quota::Messages(2),
            models: AllowedModels::Only(vec!["small".into()]),
        };
        let err = lite
            .admit("large", QuotaUse::default(), month())
            .unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::Forbidden);
        // A message quota counts messages, whatever their size.
        let one = QuotaUse {
            tokens: 5_000_000,
            messages: 1,
        };
        assert_eq!(
            lite.admit("small", one, month()).unwrap().remaining,
            Some(1)
        );
        let two = QuotaUse {
            tokens: 5_000_001,
            messages: 2,
        };
        assert_eq!(
            lite.admit("small", two, month()).unwrap_err().kind(),
            crate::ErrorKind::QuotaExceeded
        );
        // A model outside the plan is refused before the quota is looked at.
        assert_eq!(
            lite.admit("large", two, month()).unwrap_err().kind(),
            crate::ErrorKind::Forbidden
        );
        let unlimited = Plan {
            quota: Quota::Unlimited,
            ..Plan::free()
        };
        let huge = QuotaUse {
            tokens: u64::MAX,
            messages: u64::MAX,
        };
        assert_eq!(
            unlimited.admit("large", huge, month()).unwrap().remaining,
            None
        );
    }

    #[test]
    fn plans_round_trip_through_json() {
        // The store keeps plan definitions as this JSON.
        let lite = Plan {
            id: "lite".into(),
            name: "Lite".into(),
            monthly_price: Money::from_dollars(5),
            quota: Quota::Messages(2),
            models: AllowedModels::Only(vec!["small".into()]),
        };
        for plan in [Plan::free(), Plan::plus(), lite] {
            let json = serde_json::to_string(&plan).unwrap();
            assert_eq!(serde_json::from_str::<Plan>(&json).unwrap(), plan);
        }
    }
}
