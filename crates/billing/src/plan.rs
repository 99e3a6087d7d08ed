//! Plans for people using the chat app, and their monthly quotas.
//!
//! A [`Plan`] has a monthly price, a monthly [`Quota`] (tokens or messages)
//! and the models it allows. [`PlanBook`] assigns users to plans and counts
//! each user's use per calendar month. The counter belongs to the user and
//! month, not to the plan, so a plan change takes effect at once: the new
//! plan's quota minus what was already used this month is what remains.
//!
//! The flow is [`PlanBook::check`] before a request (model allowed, quota
//! left) and [`PlanBook::record`] after it with the tokens actually used;
//! concurrent requests of one user can overshoot a token quota by at most
//! their own size, which is acceptable for a plan (money is guarded by the
//! budget reservations of [`crate::budget`], not by this counter).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, PoisonError};

use serde::{Deserialize, Serialize};

use crate::error::BillingError;
use crate::money::Money;
use crate::time::{Month, Timestamp};

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
                user: String::new(),
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

#[derive(Debug, Default)]
struct PlanState {
    plans: BTreeMap<String, Plan>,
    users: HashMap<String, String>,
    usage: HashMap<(String, Month), QuotaUse>,
    default_plan: String,
}

impl PlanState {
    fn plan_of(&self, user: &str) -> Result<&Plan, BillingError> {
        let id = self.users.get(user).unwrap_or(&self.default_plan);
        self.plans
            .get(id)
            .ok_or_else(|| BillingError::UnknownPlan { plan: id.clone() })
    }

    fn remaining(&self, user: &str, month: Month) -> Result<Remaining, BillingError> {
        let plan = self.plan_of(user)?;
        let used = self
            .usage
            .get(&(user.to_string(), month))
            .copied()
            .unwrap_or_default();
        Ok(plan.remaining(used, month))
    }
}

/// Plans, user assignments and per-month counters; thread-safe.
#[derive(Debug)]
pub struct PlanBook {
    state: Mutex<PlanState>,
}

impl PlanBook {
    /// A book with these plans; users without an assignment get `default_plan`.
    pub fn new(plans: Vec<Plan>, default_plan: &str) -> Result<PlanBook, BillingError> {
        let plans: BTreeMap<String, Plan> = plans.into_iter().map(|p| (p.id.clone(), p)).collect();
        if !plans.contains_key(default_plan) {
            return Err(BillingError::UnknownPlan {
                plan: default_plan.to_string(),
            });
        }
        Ok(PlanBook {
            state: Mutex::new(PlanState {
                plans,
                default_plan: default_plan.to_string(),
                ..PlanState::default()
            }),
        })
    }

    /// Free and Plus, with Free as the default.
    pub fn reference() -> PlanBook {
        let mut plans = BTreeMap::new();
        for plan in [Plan::free(), Plan::plus()] {
            plans.insert(plan.id.clone(), plan);
        }
        PlanBook {
            state: Mutex::new(PlanState {
                plans,
                default_plan: "free".into(),
                ..PlanState::default()
            }),
        }
    }

    /// Every mutation checks before it writes, so a poisoned lock is safe to recover.
    fn with_state<R>(&self, f: impl FnOnce(&mut PlanState) -> R) -> R {
        let mut guard = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        f(&mut guard)
    }

    /// Adds or replaces a plan definition; users on it see the change at once.
    pub fn define(&self, plan: Plan) {
        self.with_state(|s| {
            s.plans.insert(plan.id.clone(), plan);
        });
    }

    /// All plans, by id.
    pub fn plans(&self) -> Vec<Plan> {
        self.with_state(|s| s.plans.values().cloned().collect())
    }

    /// Moves `user` to `plan`, effective immediately.
    pub fn assign(&self, user: &str, plan: &str) -> Result<(), BillingError> {
        self.with_state(|s| {
            if !s.plans.contains_key(plan) {
                return Err(BillingError::UnknownPlan {
                    plan: plan.to_string(),
                });
            }
            s.users.insert(user.to_string(), plan.to_string());
            Ok(())
        })
    }

    /// The user's current plan.
    pub fn plan_of(&self, user: &str) -> Result<Plan, BillingError> {
        self.with_state(|s| s.plan_of(user).cloned())
    }

    /// What `user` has left in the month of `at`.
    pub fn remaining(&self, user: &str, at: Timestamp) -> Result<Remaining, BillingError> {
        self.with_state(|s| s.remaining(user, Month::containing(at)))
    }

    /// Admits a request for `model` at `at` if the plan allows the model and
    /// has quota left; returns what remains before the request.
    pub fn check(&self, user: &str, model: &str, at: Timestamp) -> Result<Remaining, BillingError> {
        self.with_state(|s| {
            let month = Month::containing(at);
            let used = s
                .usage
                .get(&(user.to_string(), month))
                .copied()
                .unwrap_or_default();
            s.plan_of(user)?
                .admit(model, used, month)
                .map_err(|err| match err {
                    BillingError::PlanQuotaExhausted { plan, .. } => {
                        BillingError::PlanQuotaExhausted {
                            user: user.to_string(),
                            plan,
                        }
                    }
                    other => other,
                })
        })
    }

    /// Counts one message of `tokens` tokens for a request that started at `at`.
    pub fn record(
        &self,
        user: &str,
        tokens: u64,
        at: Timestamp,
    ) -> Result<Remaining, BillingError> {
        self.with_state(|s| {
            let month = Month::containing(at);
            let used = s.usage.entry((user.to_string(), month)).or_default();
            used.tokens = used.tokens.saturating_add(tokens);
            used.messages = used.messages.saturating_add(1);
            s.remaining(user, month)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Timestamp = Timestamp(1_800_000_000_000);

    #[test]
    fn free_quota_runs_out_and_renews_next_month() {
        let book = PlanBook::reference();
        assert_eq!(book.plan_of("ann").unwrap().id, "free");
        assert_eq!(book.remaining("ann", T).unwrap().remaining, Some(100_000));
        book.check("ann", "any", T).unwrap();
        let r = book.record("ann", 99_000, T).unwrap();
        assert_eq!(r.remaining, Some(1_000));
        book.record("ann", 5_000, T).unwrap();
        let err = book.check("ann", "any", T).unwrap_err();
        assert!(matches!(err, BillingError::PlanQuotaExhausted { .. }));
        let next = Month::containing(T).next().start();
        assert_eq!(
            book.check("ann", "any", next).unwrap().remaining,
            Some(100_000)
        );
    }

    #[test]
    fn plan_change_takes_effect_at_once() {
        let book = PlanBook::reference();
        book.record("bob", 100_000, T).unwrap();
        assert!(book.check("bob", "m", T).is_err());
        book.assign("bob", "plus").unwrap();
        let r = book.check("bob", "m", T).unwrap();
        assert_eq!(r.plan, "plus");
        assert_eq!(r.remaining, Some(9_900_000));
        assert_eq!(
            book.plan_of("bob").unwrap().monthly_price.to_string(),
            "$20.000000"
        );
        book.assign("bob", "free").unwrap();
        assert!(book.check("bob", "m", T).is_err());
        assert!(matches!(
            book.assign("bob", "gold"),
            Err(BillingError::UnknownPlan { .. })
        ));
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
        let book = PlanBook::new(vec![lite], "lite").unwrap();
        let err = book.check("cy", "large", T).unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::Forbidden);
        book.check("cy", "small", T).unwrap();
        book.record("cy", 5_000_000, T).unwrap();
        assert_eq!(book.record("cy", 1, T).unwrap().remaining, Some(0));
        assert_eq!(
            book.check("cy", "small", T).unwrap_err().kind(),
            crate::ErrorKind::QuotaExceeded
        );
        assert!(PlanBook::new(vec![], "none").is_err());
        book.define(Plan {
            quota: Quota::Unlimited,
            ..Plan::free()
        });
        book.assign("cy", "free").unwrap();
        assert_eq!(book.check("cy", "large", T).unwrap().remaining, None);
        assert_eq!(book.plans().len(), 2);
    }
}
