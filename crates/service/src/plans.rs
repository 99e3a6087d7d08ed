//! Plans for people (the chat app's users): which plan a user is on, what
//! it allows, what is left of its monthly quota, and the audited changes
//! to plans ([`define`], [`assign`]) that the CLI and the web app's admin
//! page share.
//!
//! Plan definitions live in the store (`parlance plan define`), over the
//! built-in Free and Plus ([`billing::Plan::free`], [`billing::Plan::plus`]);
//! a member without an assignment is on [`DEFAULT_PLAN`]. Use is counted
//! from the ledger (the user's requests and tokens this UTC month), so a
//! plan change takes effect on the next request.

use api::ApiError;
use billing::{Month, Plan, QuotaUse, Remaining, Timestamp};
use serde_json::json;
use store::{NewAuditEntry, Store};

use crate::manage::INSTALLATION;
use crate::{Error, Result};

/// The plan of members without an assignment.
pub const DEFAULT_PLAN: &str = "free";

/// Every plan: the built-in ones, replaced or joined by the store's.
pub async fn plans(store: &Store) -> Result<Vec<Plan>> {
    let mut plans = vec![Plan::free(), Plan::plus()];
    for stored in store.list_plans().await? {
        let plan: Plan = serde_json::from_str(&stored.definition).map_err(|err| {
            Error::from(store::StoreError::Corrupt(format!(
                "plan {}: {err}",
                stored.id
            )))
        })?;
        match plans.iter_mut().find(|p| p.id == plan.id) {
            Some(slot) => *slot = plan,
            None => plans.push(plan),
        }
    }
    Ok(plans)
}

/// The plan `user_id` is on in the organisation.
pub async fn plan_of(store: &Store, org_id: &str, user_id: &str) -> Result<Plan> {
    let id = store
        .plan_of(org_id, user_id)
        .await?
        .unwrap_or_else(|| DEFAULT_PLAN.to_owned());
    plans(store)
        .await?
        .into_iter()
        .find(|plan| plan.id == id)
        .ok_or_else(|| {
            Error::from(ApiError::Internal {
                detail: format!("the plan {id} is not defined"),
            })
        })
}

/// What the user has used and has left this month.
pub async fn remaining(
    store: &Store,
    org_id: &str,
    user_id: &str,
    at: Timestamp,
) -> Result<(Plan, Remaining)> {
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
) -> Result<Remaining> {
    let plan = plan_of(store, org_id, user_id).await?;
    let month = Month::containing(at);
    let used = month_use(store, org_id, user_id, month).await?;
    Ok(plan.admit(model, used, month)?)
}

/// Defines (or redefines) `plan` for the whole installation and records
/// `plan.defined` by `actor`, with the definition before and after.
pub async fn define(store: &Store, plan: &Plan, actor: &str) -> Result<()> {
    if plan.monthly_price < billing::Money::ZERO {
        return Err(ApiError::invalid_body("A plan's price must not be negative.").into());
    }
    let before = plans(store).await?.into_iter().find(|p| p.id == plan.id);
    store.put_plan(&plan.id, &to_json(plan)?).await?;
    store
        .append_audit(&NewAuditEntry {
            org_id: INSTALLATION.to_owned(),
            actor: actor.to_owned(),
            action: "plan.defined".to_owned(),
            target: plan.id.clone(),
            before: before
                .as_ref()
                .map(serde_json::to_value)
                .transpose()
                .ok()
                .flatten(),
            after: serde_json::to_value(plan).ok(),
        })
        .await?;
    Ok(())
}

/// Puts member `user_id` of the organisation on plan `plan_id` and records
/// `plan.assigned` by `actor`; hands back the plan. An unknown plan is a
/// 400, someone who is not a member a 404.
pub async fn assign(
    store: &Store,
    org_id: &str,
    user_id: &str,
    plan_id: &str,
    actor: &str,
) -> Result<Plan> {
    let known = plans(store).await?;
    let Some(chosen) = known.into_iter().find(|plan| plan.id == plan_id) else {
        return Err(ApiError::invalid_body(format!(
            "There is no plan {plan_id:?}; the plans are listed by `parlance plan list`."
        ))
        .into());
    };
    store.get_role(org_id, user_id).await?;
    if store.list_plans().await?.iter().all(|p| p.id != chosen.id) {
        // A built-in plan gets its row, which assignments refer to.
        store.put_plan(&chosen.id, &to_json(&chosen)?).await?;
    }
    let before = store.assign_plan(org_id, user_id, &chosen.id).await?;
    store
        .append_audit(&NewAuditEntry {
            org_id: org_id.to_owned(),
            actor: actor.to_owned(),
            action: "plan.assigned".to_owned(),
            target: user_id.to_owned(),
            before: before.map(|plan| json!({ "plan": plan })),
            after: Some(json!({ "plan": chosen.id })),
        })
        .await?;
    Ok(chosen)
}

fn to_json(plan: &Plan) -> Result<String> {
    serde_json::to_string(plan).map_err(|err| {
        Error::from(ApiError::Internal {
            detail: format!("plan {}: {err}", plan.id),
        })
    })
}

async fn month_use(store: &Store, org_id: &str, user_id: &str, month: Month) -> Result<QuotaUse> {
    let (start, end) = (
        month.start().unix_millis(),
        month.next().start().unix_millis(),
    );
    let (requests, tokens) = store.user_use(org_id, user_id, start, end).await?;
    Ok(QuotaUse {
        tokens: u64::try_from(tokens).unwrap_or(0),
        messages: u64::try_from(requests).unwrap_or(0),
    })
}
