//! `GET /v1/organization/usage/{completions,embeddings,moderations}` and
//! `GET /v1/organization/costs`:
//! the query string parsed into the store's usage and costs questions, each
//! bad parameter a 400 naming it, and the answer in OpenAI's page shape
//! (times in unix seconds; costs as exact JSON numbers).

use api::{ApiError, InvalidCode};
use axum::extract::State;
use axum::http::{header, Uri};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde_json::Value;
use store::{BucketWidth, CostGroupBy, CostsQuery, GroupBy, UsageFilter, UsageQuery};

use super::{admin, Params};
use crate::auth::Caller;
use crate::error::ServerError;
use crate::state::AppState;
use service::manage::{self, UsageKind};

/// The largest unix-seconds time that converts to milliseconds.
const MAX_SECONDS: i64 = i64::MAX / 1000;

/// `start_time` and `end_time` (default: now) in unix ms.
fn time_range(params: &Params) -> Result<(i64, i64), ApiError> {
    let start = params
        .int("start_time", 0, MAX_SECONDS)?
        .ok_or_else(|| {
            ApiError::invalid(
                "start_time",
                InvalidCode::MissingRequiredParameter,
                "`start_time` (unix seconds) is required.",
            )
        })?
        .saturating_mul(1000);
    let end = match params.int("end_time", 0, MAX_SECONDS)? {
        Some(end) => end.saturating_mul(1000),
        None => store::now_ms(),
    };
    if end <= start {
        return Err(ApiError::invalid(
            "end_time",
            InvalidCode::InvalidValue,
            "`end_time` must be after `start_time`.",
        ));
    }
    Ok((start, end))
}

fn limit(params: &Params, max: u32) -> Result<Option<u32>, ApiError> {
    Ok(params
        .int("limit", 1, i64::from(max))?
        .and_then(|n| u32::try_from(n).ok()))
}

/// The usage question a query string asks.
fn usage_query(params: &Params) -> Result<UsageQuery, ApiError> {
    let (start, end) = time_range(params)?;
    let bucket_width: BucketWidth =
        params
            .get("bucket_width")
            .unwrap_or("1d")
            .parse()
            .map_err(|_| {
                ApiError::invalid(
                    "bucket_width",
                    InvalidCode::InvalidValue,
                    "`bucket_width` must be one of 1m, 1h, 1d.",
                )
            })?;
    let group_by = params
        .all("group_by")
        .iter()
        .map(|g| {
            g.parse::<GroupBy>().map_err(|_| {
                ApiError::invalid(
                    "group_by",
                    InvalidCode::InvalidValue,
                    format!("Cannot group by {g:?}: use project_id, user_id, api_key_id or model."),
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let (_, max) = bucket_width.default_and_max_limit();
    Ok(UsageQuery {
        start,
        end,
        bucket_width,
        group_by,
        filter: UsageFilter {
            project_ids: params.all("project_ids"),
            api_key_ids: params.all("api_key_ids"),
            models: params.all("models"),
            user_ids: params.all("user_ids"),
            ..UsageFilter::default()
        },
        limit: limit(params, max)?,
        page: params.get("page").map(str::to_owned),
    })
}

/// The costs question a query string asks.
fn costs_query(params: &Params) -> Result<CostsQuery, ApiError> {
    let (start, end) = time_range(params)?;
    if params.get("bucket_width").is_some_and(|w| w != "1d") {
        return Err(ApiError::invalid(
            "bucket_width",
            InvalidCode::InvalidValue,
            "`bucket_width` of costs must be 1d.",
        ));
    }
    let group_by = params
        .all("group_by")
        .iter()
        .map(|g| {
            g.parse::<CostGroupBy>().map_err(|_| {
                ApiError::invalid(
                    "group_by",
                    InvalidCode::InvalidValue,
                    format!("Cannot group costs by {g:?}: use project_id or line_item."),
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(CostsQuery {
        start,
        end,
        group_by,
        project_ids: params.all("project_ids"),
        limit: limit(params, store::COSTS_LIMITS.1)?,
        page: params.get("page").map(str::to_owned),
    })
}

/// `GET /v1/organization/usage/completions`: every endpoint but
/// embeddings and moderations.
pub async fn usage_completions(
    state: State<AppState>,
    caller: Option<Extension<Caller>>,
    uri: Uri,
) -> Result<Json<Value>, ServerError> {
    usage_of(state, caller, uri, UsageKind::Completions).await
}

/// `GET /v1/organization/usage/embeddings`
pub async fn usage_embeddings(
    state: State<AppState>,
    caller: Option<Extension<Caller>>,
    uri: Uri,
) -> Result<Json<Value>, ServerError> {
    usage_of(state, caller, uri, UsageKind::Embeddings).await
}

/// `GET /v1/organization/usage/moderations`
pub async fn usage_moderations(
    state: State<AppState>,
    caller: Option<Extension<Caller>>,
    uri: Uri,
) -> Result<Json<Value>, ServerError> {
    usage_of(state, caller, uri, UsageKind::Moderations).await
}

async fn usage_of(
    State(state): State<AppState>,
    caller: Option<Extension<Caller>>,
    uri: Uri,
    kind: UsageKind,
) -> Result<Json<Value>, ServerError> {
    let admin = admin(&state, caller)?;
    let mut query = usage_query(&Params::from_uri(&uri)?)?;
    let (embeddings, moderations) = (UsageKind::EMBEDDINGS, UsageKind::MODERATIONS);
    match kind {
        UsageKind::Completions => {
            query.filter.not_endpoints = vec![embeddings.to_owned(), moderations.to_owned()];
        }
        UsageKind::Embeddings => query.filter.endpoints = vec![embeddings.to_owned()],
        UsageKind::Moderations => query.filter.endpoints = vec![moderations.to_owned()],
    }
    let page = admin
        .store
        .usage(&admin.tenant.org_id, &query)
        .await
        .map_err(service::Error::from)?;
    Ok(Json(manage::usage_page_json_of(&page, kind)))
}

/// `GET /v1/organization/costs`
pub async fn costs(
    State(state): State<AppState>,
    caller: Option<Extension<Caller>>,
    uri: Uri,
) -> Result<Response, ServerError> {
    let admin = admin(&state, caller)?;
    let query = costs_query(&Params::from_uri(&uri)?)?;
    let page = admin
        .store
        .costs(&admin.tenant.org_id, &query)
        .await
        .map_err(service::Error::from)?;
    let body = manage::costs_page_json(&page).to_json_string();
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}
