//! Parlance's use cases, with no HTTP in them: what the routes and the CLI
//! both call.
//!
//! - The request path ([`Service`]): one model resolution for every
//!   endpoint ([`routing`]), one local-generation path — prepare, submit,
//!   one event merger — for chat, completions and the gateway's local
//!   backend ([`generation`]), and routed chat through the gateway.
//! - Tenancy ([`Tenant`], the installation's default organisation) and
//!   metering: the reservation before a generation and the one ledger row
//!   after it ([`metering`]: [`Meter`], [`Charge`]); rate limits per key
//!   and project ([`limits`]).
//! - Plans and quotas ([`plans`]), budgets ([`budgets`]), keys, prices,
//!   invoices and the audit log ([`manage`]), members, their roles and
//!   approving sign-ups ([`members`]), projects ([`projects`]), invites
//!   ([`invites`]), soft-limit notices ([`notify`]):
//!   audited operations the HTTP admin API, the web app and the CLI share.
//! - Signing up and in ([`accounts`]): the sign-up policy (`approval`,
//!   `open`, `closed`) and sign-in throttling per account and address.
//! - Stored chat completions ([`stored_completions`]): keeping a `store:
//!   true` answer, and listing, reading, updating and deleting them.
//! - The Responses API ([`responses`]): a turn run as the chat request it
//!   means, its answer written as the response object or its typed events
//!   (chat's answers read as blocks: [`chat_blocks`]), stored responses,
//!   chaining, background runs.
//! - Anthropic's Messages API ([`anthropic`]): a request run as the chat
//!   request it means, its answer written as Anthropic's message or events.
//! - The one error table ([`error`]): every conversion from a crate's
//!   error into the API error a client sees.
//!
//! Dependencies point one way: `api`, `engine`, `store`, `billing`,
//! `ratelimit` and `gateway` below; `server` and `cli` above.

pub mod accounts;
pub mod anthropic;
pub mod budgets;
pub mod chat_blocks;
pub mod embeddings;
pub mod error;
pub mod generation;
pub mod guardrails;
pub mod instances;
pub mod invites;
pub mod ledger_writer;
pub mod limits;
pub mod manage;
pub mod members;
pub mod metering;
mod models;
pub mod moderation;
pub mod notify;
pub mod plans;
pub mod projects;
mod requests;
pub mod responses;
pub mod routing;
pub mod stored_completions;
mod tenant;

use std::time::{SystemTime, UNIX_EPOCH};

pub use error::{Error, Result};
pub use limits::{Admission, LimitDefaults, RateLimiting, RequestLimits, TokenCharge};
pub use metering::{settle_interrupted, Charge, Meter, Outcome, LOCAL_BACKEND};
pub use requests::{ChatStart, LocalRequest, RequestContext, Service, REMOTE_DEFAULT_MAX_TOKENS};
pub use routing::{Resolved, Routing, ServedModel};
pub use tenant::{
    ensure_org, ensure_project, ensure_project_in, Tenant, ADMIN_KEY_ID, CHAT_PROJECT, DEFAULT_ORG,
    DEFAULT_PROJECT, LOCAL_KEY_ID,
};

/// Unix time in seconds.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

/// 24 random hex digits, for response and request ids.
pub fn random_hex() -> String {
    format!("{:024x}", rand::random::<u128>() >> 32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_distinct_hex() {
        let (a, b) = (random_hex(), random_hex());
        assert_ne!(a, b);
        assert_eq!(a.len(), 24);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
    }
}
