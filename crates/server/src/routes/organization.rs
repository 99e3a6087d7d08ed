//! The organisation admin API under `/v1/organization/*`, in OpenAI's
//! administration and usage shapes: usage and costs ([`usage`]), projects,
//! project API keys and admin API keys ([`keys`]), the audit log and monthly
//! invoices ([`records`]), budgets ([`budgets`]), projects ([`projects`]:
//! create, modify, archive), users and invites ([`people`]). The operations the CLI
//! shares live in [`manage`] and [`budgets`].
//!
//! Every route needs an admin key of the organisation (`tenant.admin`): a
//! project key gets 403 with type `permission_error` (the crate's one
//! `Forbidden` kind). Every lookup is scoped by the caller's organisation,
//! so another organisation's project, key or invoice is a 404, never a 403
//! and never its data. A bad query parameter is a 400 naming it in `param`.

pub mod budgets;
mod guardrails;
mod keys;
mod people;
mod projects;
mod records;
mod usage;

use api::{ApiError, InvalidCode};
use axum::http::Uri;
use axum::routing::{get, post, MethodRouter};
use axum::Extension;
use serde_json::{json, Value};
use store::Store;

use crate::auth::{Auth, Caller};
use crate::state::AppState;
use service::Tenant;

/// The admin API's routes, relative to `/v1`.
pub fn routes() -> Vec<(&'static str, MethodRouter<AppState>)> {
    vec![
        (
            "/organization/usage/completions",
            get(usage::usage_completions),
        ),
        (
            "/organization/usage/embeddings",
            get(usage::usage_embeddings),
        ),
        (
            "/organization/usage/moderations",
            get(usage::usage_moderations),
        ),
        ("/organization/costs", get(usage::costs)),
        (
            "/organization/projects",
            get(projects::list_projects).post(projects::create_project),
        ),
        (
            "/organization/projects/{project_id}",
            get(projects::retrieve_project).post(projects::modify_project),
        ),
        (
            "/organization/projects/{project_id}/archive",
            post(projects::archive_project),
        ),
        (
            "/organization/projects/{project_id}/guardrails",
            get(guardrails::retrieve_guardrails).post(guardrails::modify_guardrails),
        ),
        ("/organization/users", get(people::list_users)),
        (
            "/organization/users/{user_id}",
            get(people::retrieve_user)
                .post(people::modify_user)
                .delete(people::delete_user),
        ),
        (
            "/organization/invites",
            get(people::list_invites).post(people::create_invite),
        ),
        (
            "/organization/invites/{invite_id}",
            get(people::retrieve_invite).delete(people::delete_invite),
        ),
        (
            "/organization/projects/{project_id}/api_keys",
            get(keys::list_project_keys).post(keys::create_project_key),
        ),
        (
            "/organization/projects/{project_id}/api_keys/{key_id}",
            get(keys::retrieve_project_key).delete(keys::delete_project_key),
        ),
        (
            "/organization/projects/{project_id}/api_keys/{key_id}/rotate",
            post(keys::rotate_project_key),
        ),
        (
            "/organization/admin_api_keys",
            get(keys::list_admin_keys).post(keys::create_admin_key),
        ),
        (
            "/organization/admin_api_keys/{key_id}",
            get(keys::retrieve_admin_key).delete(keys::delete_admin_key),
        ),
        (
            "/organization/admin_api_keys/{key_id}/rotate",
            post(keys::rotate_admin_key),
        ),
        ("/organization/audit_logs", get(records::list_audit_logs)),
        (
            "/organization/audit_logs/export",
            get(records::export_audit_logs),
        ),
        (
            "/organization/invoices/{month}",
            get(records::retrieve_invoice),
        ),
        (
            "/organization/budgets",
            get(budgets::list_budgets).post(budgets::set_budget),
        ),
        ("/organization/budgets/top_up", post(budgets::top_up_budget)),
        (
            "/organization/budgets/{scope}/{scope_id}",
            axum::routing::delete(budgets::delete_budget),
        ),
    ]
}

/// An admin caller: its store and who it is.
struct Admin {
    store: Store,
    tenant: Tenant,
}

/// The caller, if it may use the admin API: 403 for a project key.
fn admin(state: &AppState, caller: Option<Extension<Caller>>) -> Result<Admin, ApiError> {
    let store = match state.auth() {
        Auth::Open { store, .. } | Auth::Keys { store, .. } => store.clone(),
        Auth::Off => {
            return Err(ApiError::NotFound {
                message: "The organization API needs a database; this server has none.".into(),
            })
        }
    };
    match caller {
        Some(Extension(Caller::Tenant(tenant))) if tenant.admin => Ok(Admin { store, tenant }),
        _ => Err(ApiError::Forbidden {
            message: "You have insufficient permissions for this operation: the organization API \
                      needs an admin API key."
                .into(),
        }),
    }
}

/// The query string as name/value pairs, in order; `name[]` reads as `name`.
struct Params(Vec<(String, String)>);

impl Params {
    fn from_uri(uri: &Uri) -> Result<Params, ApiError> {
        let axum::extract::Query(pairs) =
            axum::extract::Query::<Vec<(String, String)>>::try_from_uri(uri).map_err(|err| {
                ApiError::invalid_body(format!("The query string is malformed: {err}"))
            })?;
        let pairs = pairs
            .into_iter()
            .map(|(k, v)| match k.strip_suffix("[]") {
                Some(base) => (base.to_owned(), v),
                None => (k, v),
            })
            .collect();
        Ok(Params(pairs))
    }

    /// The last value of `name`.
    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `name`, repeated or comma-separated; empty ones dropped.
    fn all(&self, name: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .flat_map(|(_, v)| v.split(','))
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
            .collect()
    }

    /// `name` as an integer in `min..=max`, if given.
    fn int(&self, name: &str, min: i64, max: i64) -> Result<Option<i64>, ApiError> {
        let Some(text) = self.get(name) else {
            return Ok(None);
        };
        let value: i64 = text.trim().parse().map_err(|_| {
            ApiError::invalid(
                name,
                InvalidCode::InvalidType,
                format!("`{name}` must be an integer, not {text:?}."),
            )
        })?;
        if value < min {
            return Err(ApiError::invalid(
                name,
                InvalidCode::IntegerBelowMinValue,
                format!("`{name}` must be at least {min}."),
            ));
        }
        if value > max {
            return Err(ApiError::invalid(
                name,
                InvalidCode::IntegerAboveMaxValue,
                format!("`{name}` must be at most {max}."),
            ));
        }
        Ok(Some(value))
    }
}

/// The default and largest `limit` of the list routes.
const LIST_LIMITS: (i64, i64) = (20, 100);

/// One page of an OpenAI list (`{object:"list", data, first_id, last_id,
/// has_more}`) from `items` (id, object) in order, after the `after` id.
fn list_page(params: &Params, items: Vec<(String, Value)>) -> Result<Value, ApiError> {
    let limit = params
        .int("limit", 1, LIST_LIMITS.1)?
        .unwrap_or(LIST_LIMITS.0);
    let skip = match params.get("after") {
        None => 0,
        Some(after) => {
            items
                .iter()
                .position(|(id, _)| id == after)
                .ok_or_else(|| {
                    ApiError::invalid(
                        "after",
                        InvalidCode::InvalidValue,
                        format!("No object with id {after:?} to list after."),
                    )
                })?
                + 1
        }
    };
    let rest = items.len().saturating_sub(skip);
    let take = usize::try_from(limit).unwrap_or(usize::MAX).min(rest);
    let page: Vec<(String, Value)> = items.into_iter().skip(skip).take(take).collect();
    Ok(json!({
        "object": "list",
        "first_id": page.first().map(|(id, _)| id.clone()),
        "last_id": page.last().map(|(id, _)| id.clone()),
        "has_more": rest > take,
        "data": page.into_iter().map(|(_, v)| v).collect::<Vec<_>>(),
    }))
}
