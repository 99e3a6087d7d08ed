//! The billing crate's one error type and the kind each error maps to.

/// What sort of failure a [`BillingError`] is, in the vocabulary the server
/// and CLI share (see docs/ARCHITECTURE.md); only they map kinds to statuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The input (an amount, a price, a usage object) is malformed.
    InvalidRequest,
    /// The caller may not do this (a model outside the user's plan).
    Forbidden,
    /// The named thing (a model's price) does not exist.
    NotFound,
    /// A plan's monthly quota is spent (`insufficient_quota`).
    QuotaExceeded,
    /// An amount left the representable range; a bug or absurd input.
    Internal,
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

    /// The user's plan does not include the model.
    #[error("model `{model}` is not included in the `{plan}` plan; upgrade the plan or pick another model")]
    ModelNotInPlan { model: String, plan: String },

    /// The user's plan quota for this month is spent.
    #[error("the `{plan}` plan's monthly quota is used up; it renews next month")]
    PlanQuotaExhausted { plan: String },

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
            | Self::InvalidMonth { .. } => ErrorKind::InvalidRequest,
            Self::ModelNotInPlan { .. } => ErrorKind::Forbidden,
            Self::UnknownModel { .. } => ErrorKind::NotFound,
            Self::PlanQuotaExhausted { .. } => ErrorKind::QuotaExceeded,
            Self::Overflow { .. } | Self::Render { .. } => ErrorKind::Internal,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_errors_map_to_their_kinds() {
        let e = BillingError::PlanQuotaExhausted {
            plan: "free".into(),
        };
        assert_eq!(e.kind(), ErrorKind::QuotaExceeded);
        assert!(e.to_string().contains("`free`"));
        let e = BillingError::ModelNotInPlan {
            model: "m".into(),
            plan: "free".into(),
        };
        assert_eq!(e.kind(), ErrorKind::Forbidden);
    }
}
