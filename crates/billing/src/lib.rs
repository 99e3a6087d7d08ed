//! Parlance's billing core: exact money, prices, costs, plans and their
//! quotas, and invoices. Pure logic: no database, no HTTP, no async, no
//! state of its own.
//!
//! - [`Money`] is an integer count of picodollars; prices given per 1K or 1M
//!   tokens as decimal strings are exact per token or refused ([`money`]).
//! - [`PriceTable`] keeps each model's input / cached-input / output prices
//!   with the instant each took effect; [`PriceTable::price_at`] prices a
//!   request at its start ([`price`]).
//! - [`cost()`] of a [`Usage`] is exact; [`worst_case`] is the most a request
//!   can cost, the amount reserved against budgets before it runs
//!   ([`mod@cost`]).
//! - A [`Plan`] has a monthly price, a [`Quota`] and the models it allows;
//!   [`Plan::admit`] and [`Plan::remaining`] judge a user's [`QuotaUse`] for
//!   the month ([`plan`]). Plan assignments and use are kept in the store.
//! - [`Invoice`] totals an organisation's month per project and model, as
//!   JSON or CSV ([`invoice`]).
//! - [`Timestamp`] and [`Month`] are UTC instants and calendar months
//!   ([`time`]).
//!
//! Budgets are not here. Reservation and settlement against hard limits
//! (monthly or prepaid) and soft limits on an organisation, project or key
//! live in the `store` crate, in SQL: a reservation is admitted by a
//! conditional update inside a database transaction, so several server
//! instances sharing one database share the budgets and can never together
//! overspend them. This crate computes the amounts (the worst case to
//! reserve, the actual cost to settle); the store holds and enforces them.
//!
//! Every fallible operation returns [`BillingError`], whose
//! [`kind`](BillingError::kind) the server maps to a status.

pub mod cost;
pub mod error;
pub mod invoice;
pub mod money;
pub mod plan;
pub mod price;
pub mod time;

pub use cost::{cost, worst_case, Usage};
pub use error::{BillingError, ErrorKind};
pub use invoice::{Invoice, LineItem, UsageRecord, CSV_HEADER};
pub use money::Money;
pub use plan::{AllowedModels, Plan, Quota, QuotaUse, Remaining};
pub use price::{ModelPrices, PriceEntry, PriceTable};
pub use time::{Month, Timestamp};
