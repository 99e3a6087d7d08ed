//! Plans for people (the chat app's users): which plan a user is on, what
//! it allows, and what is left of its monthly quota, from the store.
//!
//! Plan definitions live in the store (`parlance plan define`), over the
//! built-in Free and Plus ([`billing::Plan::free`], [`billing::Plan::plus`]);
//! a member without an assignment is on [`DEFAULT_PLAN`]. Use is counted
//! from the ledger (the user's requests and tokens this UTC month), so a
//! plan change takes effect on the next request.

use api::ApiError;
use billing::{Month, Plan, QuotaUse, Remaining, Timestamp};
use store::Store;

/// The plan of members without an assignment.
pub const DEFAULT_PLAN: &str = "free";

/// Every plan: the built-in ones, replaced or joined by the store's.
pub async fn plans(store: &Store) -> Result<Vec<Plan>, ApiError> {
    let mut plans = vec![Plan::free(), Plan::plus()];
    for stored in store.list_plans().await.map_err(internal)? {
        let plan: Plan = serde_json::from_str(&stored.definition)
            .map_err(|err| internal(format!("plan {}: {err}", stored.id)))?;
        match plans.iter_mut().find(|p| p.id == plan.id) {
            Some(slot) => *slot = plan,
            None => plans.push(plan),
        }
    }
    Ok(plans)
}

/// The plan `user_id` is on in the organisation.
pub async fn plan_of(store: &Store, org_id: &str, user_id: &str) -> Result<Plan, ApiError> {
    let id = store
        .plan_of(org_id, user_id)
        .await
        .map_err(internal)?
        .unwrap_or_else(|| DEFAULT_PLAN.to_owned());
    plans(store)
        .await?
        .into_iter()
        .find(|plan| plan.id == id)
        .ok_or_else(|| internal(format!("the plan {id} is not defined")))
}

/// What the user has used and has left this month.
pub async fn remaining(
    store: &Store,
    org_id: &str,
    user_id: &str,
    at: Timestamp,
) -> Result<(Plan, Remaining), ApiError> {
    let plan = plan_of(store, org_id, user_id).await?;
    let month = Month::containing(at);
    let used = month_use(store, org_id, user_id, month).await?;
    let remaining = plan.remaining(used, month);
    Ok((plan, remaining))
}

/// Admits a request for `model` by the user: the plan must allow the model
/// (else 403) and have quota left (else 429 `insufficient_quota`).
pub async fn admit(
    store: &Store,
    org_id: &str,
    user_id: &str,
    model: &str,
    at: Timestamp,
) -> Result<Remaining, ApiError> {
    let plan = plan_of(store, org_id, user_id).await?;
    let month = Month::containing(at);
    let used = month_use(store, org_id, user_id, month).await?;
    plan.admit(model, used, month).map_err(|err| match err {
        billing::BillingError::ModelNotInPlan { model, plan } => ApiError::Forbidden {
            message: format!("Your plan ({plan}) does not include the model `{model}`."),
        },
        billing::BillingError::PlanQuotaExhausted { plan, .. } => ApiError::QuotaExceeded {
            message: format!(
                "You have used this month's quota of your plan ({plan}). \
                 It renews at the start of next month, or change your plan."
            ),
        },
        other => internal(other),
    })
}

async fn month_use(
    store: &Store,
    org_id: &str,
    user_id: &str,
    month: Month,
) -> Result<QuotaUse, ApiError> {
    let (start, end) = (
        month.start().unix_millis(),
        month.next().start().unix_millis(),
    );
    let (requests, tokens) = store
        .user_use(org_id, user_id, start, end)
        .await
        .map_err(internal)?;
    Ok(QuotaUse {
        tokens: u64::try_from(tokens).unwrap_or(0),
        messages: u64::try_from(requests).unwrap_or(0),
    })
}

fn internal(err: impl std::fmt::Display) -> ApiError {
    ApiError::Internal {
        detail: format!("plans: {err}"),
    }
}
