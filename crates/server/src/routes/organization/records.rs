//! The audit log (`GET /v1/organization/audit_logs`, JSON list or
//! `?format=csv`; `GET …/audit_logs/export`, all of it as CSV) and monthly
//! invoices (`GET /v1/organization/invoices/{YYYY-MM}`, JSON or
//! `?format=csv`), both of the caller's organisation only.

use api::{ApiError, InvalidCode};
use axum::extract::{Path, State};
use axum::http::{header, Uri};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};

use super::{admin, Admin, Params, LIST_LIMITS};
use crate::auth::Caller;
use crate::error::ServerError;
use crate::state::AppState;
use service::manage;

/// `json` (the default) or `csv`.
fn wants_csv(params: &Params) -> Result<bool, ApiError> {
    match params.get("format") {
        None | Some("json") => Ok(false),
        Some("csv") => Ok(true),
        Some(other) => Err(ApiError::invalid(
            "format",
            InvalidCode::InvalidValue,
            format!("`format` must be json or csv, not {other:?}."),
        )),
    }
}

fn csv_response(body: String, filename: &str) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{filename}\""),
            ),
        ],
        body,
    )
        .into_response()
}

/// The `after` cursor: an audit id (`audit_12`) or its number.
fn audit_cursor(params: &Params) -> Result<Option<i64>, ApiError> {
    let Some(after) = params.get("after") else {
        return Ok(None);
    };
    after
        .strip_prefix("audit_")
        .unwrap_or(after)
        .parse()
        .map(Some)
        .map_err(|_| {
            ApiError::invalid(
                "after",
                InvalidCode::InvalidValue,
                format!("`after` must be an audit log id, not {after:?}."),
            )
        })
}

async fn export(admin: &Admin, after: Option<i64>) -> Result<Response, ApiError> {
    let mut entries = manage::all_audit(&admin.store, &admin.tenant.org_id)
        .await
        .map_err(service::Error::from)?;
    if let Some(after) = after {
        entries.retain(|e| e.id > after);
    }
    Ok(csv_response(manage::audit_csv(&entries), "audit_logs.csv"))
}

/// `GET /v1/organization/audit_logs`: oldest first, `limit` (1–100,
/// default 20) after the `after` id; `format=csv` exports every entry.
pub async fn list_audit_logs(
    State(state): State<AppState>,
    caller: Option<Extension<Caller>>,
    uri: Uri,
) -> Result<Response, ServerError> {
    let admin = admin(&state, caller)?;
    let params = Params::from_uri(&uri)?;
    let after = audit_cursor(&params)?;
    if wants_csv(&params)? {
        return Ok(export(&admin, after).await?);
    }
    let limit = params
        .int("limit", 1, LIST_LIMITS.1)?
        .unwrap_or(LIST_LIMITS.0);
    let limit = u32::try_from(limit).unwrap_or(1);
    let mut entries = admin
        .store
        .list_audit(&admin.tenant.org_id, after, limit.saturating_add(1))
        .await
        .map_err(service::Error::from)?;
    let has_more = entries.len() > limit as usize;
    entries.truncate(limit as usize);
    let body = manage::audit_list_json(&entries, has_more);
    Ok(Json(body).into_response())
}

/// `GET /v1/organization/audit_logs/export`: every entry as CSV.
pub async fn export_audit_logs(
    State(state): State<AppState>,
    caller: Option<Extension<Caller>>,
    uri: Uri,
) -> Result<Response, ServerError> {
    let admin = admin(&state, caller)?;
    let after = audit_cursor(&Params::from_uri(&uri)?)?;
    Ok(export(&admin, after).await?)
}

/// `GET /v1/organization/invoices/{YYYY-MM}` (ours): the month's invoice
/// of the caller's organisation; amounts are exact decimal strings.
pub async fn retrieve_invoice(
    State(state): State<AppState>,
    caller: Option<Extension<Caller>>,
    Path(month): Path<String>,
    uri: Uri,
) -> Result<Response, ServerError> {
    let admin = admin(&state, caller)?;
    let params = Params::from_uri(&uri)?;
    let csv = wants_csv(&params)?;
    let month: billing::Month = month.parse().map_err(|_| {
        ApiError::invalid(
            "month",
            InvalidCode::InvalidValue,
            format!("The month must be written YYYY-MM, not {month:?}."),
        )
    })?;
    let invoice = manage::invoice(&admin.store, &admin.tenant.org_id, month).await?;
    if csv {
        return Ok(csv_response(
            invoice.to_csv(),
            &format!("invoice-{month}.csv"),
        ));
    }
    let body = manage::invoice_json(&invoice).map_err(|err| ApiError::Internal {
        detail: format!("invoice JSON: {err}"),
    })?;
    Ok(Json(body).into_response())
}
