//! Parlance's billing core: exact money, prices, costs, budgets, quotas and
//! invoices. Pure logic: no database, no HTTP, no async.
//!
//! - [`Money`] is an integer count of picodollars; prices given per 1K or 1M
//!   tokens as decimal strings are exact per token or refused ([`money`]).
//! - [`PriceTable`] keeps each model's input / cached-input / output prices
//!   with the instant each took effect; [`PriceTable::price_at`] prices a
//!   request at its start ([`price`]).
//! - [`cost()`] of a [`Usage`] is exact; [`worst_case`] is what to reserve
//!   ([`mod@cost`]).
//! - The [`Ledger`] trait is the reserve → settle protocol over scopes (org,
//!   project, key) with hard and soft limits; [`BudgetState`] holds the rules
//!   and [`BudgetBook`] is its thread-safe in-memory form ([`budget`]).
//! - [`PlanBook`] assigns people to [`Plan`]s and counts monthly quotas
//!   ([`plan`]).
//! - [`Invoice`] totals an organisation's month per project and model, as
//!   JSON or CSV ([`invoice`]).
//!
//! Every fallible operation returns [`BillingError`], whose
//! [`kind`](BillingError::kind) the server maps to a status.

pub mod budget;
pub mod cost;
pub mod error;
pub mod invoice;
pub mod money;
pub mod plan;
pub mod price;
pub mod time;

pub use budget::{
    Account, BudgetBook, BudgetEvent, BudgetState, Closure, HardLimit, Ledger, Limits, Reservation,
    ReservationId, Scope, SettleResult, Settlement,
};
pub use cost::{cost, worst_case, Usage};
pub use error::{BillingError, ErrorKind, InsufficientQuota};
pub use invoice::{Invoice, LineItem, UsageRecord, CSV_HEADER};
pub use money::Money;
pub use plan::{AllowedModels, Plan, PlanBook, Quota, QuotaUse, Remaining};
pub use price::{ModelPrices, PriceEntry, PriceTable};
pub use time::{Month, Timestamp};
