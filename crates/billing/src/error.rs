//! The billing crate's one error type and the kind each error maps to.

use crate::budget::Scope;
use crate::money::Money;

/// What sort of failure a [`BillingError`] is, in the vocabulary the server
/// and CLI share (see STYLE.md); only they map kinds to statuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The input (an amount, a price, a usage object) is malformed.
    InvalidRequest,
    /// The caller may not do this (a model outside the user's plan).
    Forbidden,
    /// The named thing (model price, reservation, plan) does not exist.
    NotFound,
    /// A budget, balance or plan quota is spent (`insufficient_quota`).
    QuotaExceeded,
    /// An amount left the representable range; a bug or absurd input.
    Internal,
}

/// A hard limit of one scope would be exceeded by a reservation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InsufficientQuota {
    /// The first scope (in the order given) that could not admit the amount.
    pub scope: Scope,
    /// The amount that was asked for.
    pub requested: Money,
    /// What the scope could still admit (never negative).
    pub available: Money,
}

/// Everything that can go wrong in billing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BillingError {
    /// A decimal amount could not be parsed.
    #[error("invalid amount `{input}`: {reason}; write a plain decimal such as `0.01` or `$20`")]
    InvalidAmount { input: String, reason: &'static str },

    /// A price is not an exact number of money units per token.
    #[error(
        "price `{price}` per {per_tokens} tokens is not exact in picodollars per token; \
         use at most {max_decimals} decimal places"
    )]
    InexactPrice {
        price: String,
        per_tokens: u64,
        max_decimals: u32,
    },

    /// A checked money operation overflowed.
    #[error("money overflow in {op}; the amount is beyond any real bill")]
    Overflow { op: &'static str },

    /// A usage object claims more cached tokens than prompt tokens.
    #[error("usage has {cached} cached tokens but only {prompt} prompt tokens")]
    CachedExceedsPrompt { cached: u64, prompt: u64 },

    /// No price is configured for the model and the table has no default.
    #[error("no price configured for model `{model}` at that time; add one to the price table")]
    UnknownModel { model: String },

    /// A hard limit would be exceeded.
    #[error(
        "insufficient quota: {} needs {} but only {} is available",
        .0.scope, .0.requested, .0.available
    )]
    InsufficientQuota(InsufficientQuota),

    /// The reservation id was never issued (or was forgotten).
    #[error("unknown reservation {id}")]
    UnknownReservation { id: u64 },

    /// A negative amount where only non-negative ones make sense.
    #[error("{what} must not be negative (got {amount})")]
    NegativeAmount { what: &'static str, amount: Money },

    /// The user's plan does not include the model.
    #[error("model `{model}` is not included in the `{plan}` plan; upgrade the plan or pick another model")]
    ModelNotInPlan { model: String, plan: String },

    /// The user's plan quota for this month is spent.
    #[error(
        "the `{plan}` plan's monthly quota is used up for user `{user}`; it renews next month"
    )]
    PlanQuotaExhausted { user: String, plan: String },

    /// A plan name that is not defined.
    #[error("unknown plan `{plan}`")]
    UnknownPlan { plan: String },

    /// An invoice could not be rendered.
    #[error("could not render the invoice as {format}: {detail}")]
    Render {
        format: &'static str,
        detail: String,
    },

    /// A month string that is not `YYYY-MM`.
    #[error("invalid month `{input}`; write it as YYYY-MM")]
    InvalidMonth { input: String },
}

impl BillingError {
    /// The kind of failure, for mapping to an HTTP status or exit code.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::InvalidAmount { .. }
            | Self::InexactPrice { .. }
            | Self::CachedExceedsPrompt { .. }
            | Self::NegativeAmount { .. }
            | Self::InvalidMonth { .. } => ErrorKind::InvalidRequest,
            Self::ModelNotInPlan { .. } => ErrorKind::Forbidden,
            Self::UnknownModel { .. }
            | Self::UnknownReservation { .. }
            | Self::UnknownPlan { .. } => ErrorKind::NotFound,
            Self::InsufficientQuota(_) | Self::PlanQuotaExhausted { .. } => {
                ErrorKind::QuotaExceeded
            }
            Self::Overflow { .. } | Self::Render { .. } => ErrorKind::Internal,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quota_errors_are_quota_exceeded() {
        let e = BillingError::InsufficientQuota(InsufficientQuota {
            scope: Scope::Org("acme".into()),
            requested: Money::from_units(5),
            available: Money::ZERO,
        });
        assert_eq!(e.kind(), ErrorKind::QuotaExceeded);
        assert!(e.to_string().contains("org:acme"));
        let e = BillingError::ModelNotInPlan {
            model: "m".into(),
            plan: "free".into(),
        };
        assert_eq!(e.kind(), ErrorKind::Forbidden);
    }
}
