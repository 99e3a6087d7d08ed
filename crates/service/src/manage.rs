//! The organisation management operations shared by the HTTP admin API and
//! the `parlance` CLI, so that neither duplicates the other: audited key
//! creation, revocation and rotation; the monthly invoice built from the
//! ledger; and the JSON forms of usage pages, cost pages, keys and audit
//! entries.
//!
//! Every function takes the organisation id
//! and reads only that organisation's rows (the store enforces it).
//!
//! Money leaves this module exactly: a cost amount is written as a JSON
//! number whose text is the exact decimal string of its integer
//! picodollars (a `serde_json` raw value, never an `f64`).

pub use billing::{Invoice, Money, Month, Timestamp};
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{json, Value};
use store::{
    ApiKey, AuditEntry, CostsPage, KeySecret, NewApiKey, NewAuditEntry, Store, StoreError,
    UsagePage,
};

/// The actor written in the audit log for actions taken from the CLI.
pub const CLI_ACTOR: &str = "cli";

/// Ledger rows read per query while building an invoice.
const INVOICE_BATCH: u32 = 1000;

/// Unix seconds of a unix-millisecond instant (rounded down).
pub fn seconds(millis: i64) -> i64 {
    millis.div_euclid(1000)
}

/// A key's state as the audit log records it: everything but the secret.
pub fn key_audit_json(key: &ApiKey) -> Value {
    json!({
        "id": key.id,
        "name": key.name,
        "project_id": key.project_id,
        "kind": key.kind.as_str(),
        "redacted_value": key.redacted,
        "allowed_models": key.allowed_models,
        "created_at": seconds(key.created_at),
        "expires_at": key.expires_at.map(seconds),
        "revoked_at": key.revoked_at.map(seconds),
        "rpm_limit": key.limits.rpm,
        "tpm_limit": key.limits.tpm,
    })
}

/// What an audited change names: the organisation, who did it, what, and to
/// which thing.
pub struct Change<'a> {
    /// The organisation touched ([`INSTALLATION`] for installation-wide).
    pub org_id: &'a str,
    /// A key id, `user:<id>`, or `cli`.
    pub actor: &'a str,
    /// E.g. `api_key.revoked`.
    pub action: &'a str,
    /// The id of the thing changed.
    pub target: &'a str,
}

/// Appends `change` to the audit log with the thing's state before and
/// after, as `json` renders it (never a secret).
pub async fn record_change<T>(
    store: &Store,
    change: Change<'_>,
    before: Option<&T>,
    after: Option<&T>,
    json: fn(&T) -> Value,
) -> Result<(), StoreError> {
    store
        .append_audit(&NewAuditEntry {
            org_id: change.org_id.to_owned(),
            actor: change.actor.to_owned(),
            action: change.action.to_owned(),
            target: change.target.to_owned(),
            before: before.map(json),
            after: after.map(json),
        })
        .await
        .map(drop)
}

async fn audit(
    store: &Store,
    org_id: &str,
    actor: &str,
    action: &str,
    target: &str,
    before: Option<&ApiKey>,
    after: Option<&ApiKey>,
) -> Result<(), StoreError> {
    let change = Change {
        org_id,
        actor,
        action,
        target,
    };
    record_change(store, change, before, after, key_audit_json).await
}

/// Creates a key and records `api_key.created` by `actor`.
pub async fn create_key(
    store: &Store,
    org_id: &str,
    new: &NewApiKey,
    actor: &str,
) -> Result<(ApiKey, KeySecret), StoreError> {
    let (key, secret) = store.create_key(org_id, new).await?;
    audit(
        store,
        org_id,
        actor,
        "api_key.created",
        &key.id,
        None,
        Some(&key),
    )
    .await?;
    Ok((key, secret))
}

/// Revokes a key and records `api_key.revoked` by `actor` (before and
/// after); revoking a revoked key records nothing and changes nothing.
pub async fn revoke_key(
    store: &Store,
    org_id: &str,
    key_id: &str,
    actor: &str,
) -> Result<ApiKey, StoreError> {
    let before = store.get_key(org_id, key_id).await?;
    let after = store.revoke_key(org_id, key_id).await?;
    if before.revoked_at.is_none() {
        audit(
            store,
            org_id,
            actor,
            "api_key.revoked",
            key_id,
            Some(&before),
            Some(&after),
        )
        .await?;
    }
    Ok(after)
}

/// The organisation installation-wide changes (prices, plan definitions)
/// are audited under.
pub const INSTALLATION: &str = "*";

/// A price as the audit log records it.
pub fn price_audit_json(price: &store::StoredPrice) -> Value {
    let usd = |units: i64| Money::from_i64_units(units).to_decimal_string();
    json!({
        "model": price.model,
        "effective_at_ms": price.effective_at,
        "input_per_token_usd": usd(price.input),
        "cached_input_per_token_usd": usd(price.cached_input),
        "output_per_token_usd": usd(price.output),
    })
}

/// The exact per-token price, in billing units, of `price` USD per
/// `per_tokens` tokens; `None` when it is not exact, negative or too large.
pub fn per_token_units(price: &str, per_tokens: u64) -> Option<i64> {
    let units = Money::per_token(price.trim(), per_tokens)
        .ok()?
        .to_i64_units()
        .ok()?;
    (units >= 0).then_some(units)
}

/// Records a price and `price.set` by `actor` (under [`INSTALLATION`],
/// before = the price in force at its effective time); returns that
/// previous price.
pub async fn set_price(
    store: &Store,
    price: &store::StoredPrice,
    actor: &str,
) -> Result<Option<store::StoredPrice>, StoreError> {
    let before = store.price_at(&price.model, price.effective_at).await?;
    store.set_price(price).await?;
    let change = Change {
        org_id: INSTALLATION,
        actor,
        action: "price.set",
        target: &price.model,
    };
    record_change(
        store,
        change,
        before.as_ref(),
        Some(price),
        price_audit_json,
    )
    .await?;
    Ok(before)
}

/// Records `gateway.reloaded` by `system` in the organisation `org_id`:
/// the `[gateway]` configuration before and after, as the caller renders
/// it (secrets redacted).
pub async fn record_gateway_reload(
    store: &Store,
    org_id: &str,
    before: &Value,
    after: &Value,
) -> Result<(), StoreError> {
    let change = Change {
        org_id,
        actor: "system",
        action: "gateway.reloaded",
        target: "gateway",
    };
    record_change(store, change, Some(before), Some(after), Value::clone).await
}

/// Sets a key's own rate limits and records `api_key.limits_changed`.
pub async fn set_key_limits(
    store: &Store,
    org_id: &str,
    key_id: &str,
    limits: store::RateLimits,
    actor: &str,
) -> Result<ApiKey, StoreError> {
    let before = store.get_key(org_id, key_id).await?;
    let after = store.set_key_limits(org_id, key_id, limits).await?;
    let action = "api_key.limits_changed";
    audit(
        store,
        org_id,
        actor,
        action,
        key_id,
        Some(&before),
        Some(&after),
    )
    .await?;
    Ok(after)
}

/// Sets a project's rate limits (over all its keys together) and records
/// `project.limits_changed`.
pub async fn set_project_limits(
    store: &Store,
    org_id: &str,
    project_id: &str,
    limits: store::RateLimits,
    actor: &str,
) -> Result<store::Project, StoreError> {
    let before = store.get_project(org_id, project_id).await?;
    let after = store.set_project_limits(org_id, project_id, limits).await?;
    fn state(p: &store::Project) -> Value {
        let limits = (p.limits.rpm, p.limits.tpm);
        json!({"id": p.id, "name": p.name, "rpm_limit": limits.0, "tpm_limit": limits.1})
    }
    let change = Change {
        org_id,
        actor,
        action: "project.limits_changed",
        target: project_id,
    };
    record_change(store, change, Some(&before), Some(&after), state).await?;
    Ok(after)
}

/// Rotates a key (revokes it and creates its successor) and records
/// `api_key.rotated` by `actor`: before is the old key, after the new one.
pub async fn rotate_key(
    store: &Store,
    org_id: &str,
    key_id: &str,
    actor: &str,
) -> Result<(ApiKey, KeySecret), StoreError> {
    let (key, secret) = store.rotate_key(org_id, key_id).await?;
    let old = store.get_key(org_id, key_id).await?;
    audit(
        store,
        org_id,
        actor,
        "api_key.rotated",
        key_id,
        Some(&old),
        Some(&key),
    )
    .await?;
    Ok((key, secret))
}

/// The organisation's invoice for `month`, from every ledger row that
/// started in it; the costs are the ledger's, summed exactly, so the
/// invoice agrees with the costs API to the picodollar.
pub async fn invoice(store: &Store, org_id: &str, month: Month) -> crate::Result<Invoice> {
    let (start, end) = (month.start().unix_millis(), month.end().unix_millis());
    let mut records = Vec::new();
    let mut after = None;
    loop {
        let rows = store
            .list_usage(org_id, start, end, after, INVOICE_BATCH)
            .await?;
        let Some(last) = rows.last() else { break };
        after = Some(last.id);
        let full = rows.len() == INVOICE_BATCH as usize;
        for row in rows {
            let u = row.usage;
            let count = |n: i64| {
                u64::try_from(n).map_err(|_| billing::BillingError::Overflow {
                    op: "negative token count in the ledger",
                })
            };
            records.push(billing::UsageRecord {
                org: u.org_id,
                project: u.project_id.unwrap_or_default(),
                model: u.model,
                usage: billing::Usage {
                    prompt_tokens: count(u.prompt_tokens)?,
                    cached_tokens: count(u.cached_tokens)?,
                    completion_tokens: count(u.completion_tokens)?,
                },
                cost: Money::from_i64_units(u.cost),
                started_at: Timestamp::from_unix_millis(u.created_at),
            });
        }
        if !full {
            break;
        }
    }
    Ok(Invoice::build(org_id, month, &records)?)
}

/// The invoice as the API answers it: [`Invoice`]'s JSON (amounts as exact
/// decimal strings) with `"object": "organization.invoice"`.
pub fn invoice_json(invoice: &Invoice) -> Result<Value, serde_json::Error> {
    let mut body = serde_json::to_value(invoice)?;
    body["object"] = Value::String("organization.invoice".into());
    Ok(body)
}

/// An integer amount of the billing unit as its exact decimal string.
pub fn decimal(units: i64) -> String {
    Money::from_i64_units(units).to_decimal_string()
}

/// An integer amount of the billing unit as an exact JSON number (its
/// decimal string as a raw value, never through `f64`).
pub fn exact_amount(units: i64) -> Box<RawValue> {
    let text = Money::from_i64_units(units).to_decimal_string();
    // A decimal string `-?\d+\.\d+` is always a valid JSON number.
    RawValue::from_string(text)
        .unwrap_or_else(|_| RawValue::from_string("0".to_owned()).expect("`0` is a JSON number"))
}

/// The OpenAI JSON of a usage page (`GET /v1/organization/usage/completions`).
pub fn usage_page_json(page: &UsagePage) -> Value {
    usage_page_json_of(page, UsageKind::Completions)
}

/// Which of OpenAI's usage pages a result belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UsageKind {
    /// `/v1/organization/usage/completions`.
    Completions,
    /// `/v1/organization/usage/embeddings`.
    Embeddings,
    /// `/v1/organization/usage/moderations`.
    Moderations,
}

impl UsageKind {
    /// The ledger endpoints this page counts (completions: every other one).
    pub const EMBEDDINGS: &'static str = "/v1/embeddings";
    /// The moderation endpoint.
    pub const MODERATIONS: &'static str = "/v1/moderations";
}

/// The OpenAI JSON of a usage page of `kind`: embeddings and moderations
/// results carry input tokens and requests only, as OpenAI's do.
pub fn usage_page_json_of(page: &UsagePage, kind: UsageKind) -> Value {
    if kind == UsageKind::Completions {
        return completions_page_json(page);
    }
    let object = match kind {
        UsageKind::Embeddings => "organization.usage.embeddings.result",
        _ => "organization.usage.moderations.result",
    };
    let data: Vec<Value> = page
        .buckets
        .iter()
        .map(|b| {
            let results: Vec<Value> = b
                .results
                .iter()
                .map(|r| {
                    json!({
                        "object": object,
                        "input_tokens": r.input_tokens,
                        "num_model_requests": r.num_model_requests,
                        "project_id": r.project_id,
                        "user_id": r.user_id,
                        "api_key_id": r.api_key_id,
                        "model": r.model,
                        "endpoint": r.endpoint,
                    })
                })
                .collect();
            json!({
                "object": "bucket",
                "start_time": seconds(b.start_time),
                "end_time": seconds(b.end_time),
                "results": results,
            })
        })
        .collect();
    json!({
        "object": "page",
        "data": data,
        "has_more": page.next_page.is_some(),
        "next_page": page.next_page,
    })
}

fn completions_page_json(page: &UsagePage) -> Value {
    let data: Vec<Value> = page
        .buckets
        .iter()
        .map(|b| {
            let results: Vec<Value> = b
                .results
                .iter()
                .map(|r| {
                    json!({
                        "object": "organization.usage.completions.result",
                        "input_tokens": r.input_tokens,
                        "output_tokens": r.output_tokens,
                        "input_cached_tokens": r.input_cached_tokens,
                        "input_audio_tokens": 0,
                        "output_audio_tokens": 0,
                        "num_model_requests": r.num_model_requests,
                        "project_id": r.project_id,
                        "user_id": r.user_id,
                        "api_key_id": r.api_key_id,
                        "model": r.model,
                        "endpoint": r.endpoint,
                        "batch": null,
                    })
                })
                .collect();
            json!({
                "object": "bucket",
                "start_time": seconds(b.start_time),
                "end_time": seconds(b.end_time),
                "results": results,
            })
        })
        .collect();
    json!({
        "object": "page",
        "data": data,
        "has_more": page.next_page.is_some(),
        "next_page": page.next_page,
    })
}

/// The OpenAI JSON of a costs page (`GET /v1/organization/costs`). Typed,
/// not a [`Value`]: each amount is a raw JSON number (see [`exact_amount`]),
/// which a `Value` would turn into an `f64`. Serialise it with `serde_json`
/// directly ([`CostsPageJson::to_json_string`]).
#[derive(Debug, Serialize)]
pub struct CostsPageJson {
    object: &'static str,
    data: Vec<CostBucketJson>,
    has_more: bool,
    next_page: Option<String>,
}

#[derive(Debug, Serialize)]
struct CostBucketJson {
    object: &'static str,
    start_time: i64,
    end_time: i64,
    results: Vec<CostResultJson>,
}

#[derive(Debug, Serialize)]
struct CostResultJson {
    object: &'static str,
    amount: AmountJson,
    line_item: Option<String>,
    project_id: Option<String>,
}

#[derive(Debug, Serialize)]
struct AmountJson {
    value: Box<RawValue>,
    currency: &'static str,
}

impl CostsPageJson {
    /// The page as a JSON string, amounts exact.
    pub fn to_json_string(&self) -> String {
        // Serialising plain structs, strings and valid raw numbers cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// The OpenAI JSON of a costs page.
pub fn costs_page_json(page: &CostsPage) -> CostsPageJson {
    let data = page
        .buckets
        .iter()
        .map(|b| CostBucketJson {
            object: "bucket",
            start_time: seconds(b.start_time),
            end_time: seconds(b.end_time),
            results: b
                .results
                .iter()
                .map(|r| CostResultJson {
                    object: "organization.costs.result",
                    amount: AmountJson {
                        value: exact_amount(r.amount),
                        currency: "usd",
                    },
                    line_item: r.line_item.clone(),
                    project_id: r.project_id.clone(),
                })
                .collect(),
        })
        .collect();
    CostsPageJson {
        object: "page",
        data,
        has_more: page.next_page.is_some(),
        next_page: page.next_page.clone(),
    }
}

/// The public id of an audit entry.
pub fn audit_id(entry: &AuditEntry) -> String {
    format!("audit_{}", entry.id)
}

/// An audit entry as `GET /v1/organization/audit_logs` lists it.
pub fn audit_entry_json(entry: &AuditEntry) -> Value {
    let e = &entry.entry;
    let actor_type = actor_type(&e.actor);
    json!({
        "id": audit_id(entry),
        "object": "organization.audit_log",
        "type": e.action,
        "effective_at": seconds(entry.created_at),
        "actor": {"type": actor_type, "id": e.actor},
        "target": {"id": e.target},
        "before": e.before,
        "after": e.after,
    })
}

/// What kind of actor an audit row's `actor` names: the CLI, the server
/// itself, a signed-in person (`user:…` from the web app, `session:…` for a
/// session acting through the API, or a bare `user_…` id), an unsigned
/// address (`address:…`, e.g. a throttled sign-in), else the acting key's id
/// (a stored key, or a built-in one such as the admin key's).
fn actor_type(actor: &str) -> &'static str {
    match actor {
        CLI_ACTOR => "cli",
        "system" => "system",
        a if a.starts_with("user:") || a.starts_with("session:") || a.starts_with("user_") => {
            "user"
        }
        a if a.starts_with("address:") => "address",
        _ => "api_key",
    }
}

/// A page of audit entries as OpenAI's list object.
pub fn audit_list_json(entries: &[AuditEntry], has_more: bool) -> Value {
    json!({
        "object": "list",
        "first_id": entries.first().map(audit_id),
        "last_id": entries.last().map(audit_id),
        "has_more": has_more,
        "data": entries.iter().map(audit_entry_json).collect::<Vec<_>>(),
    })
}

/// The CSV header of the audit log export.
pub const AUDIT_CSV_HEADER: &str = "id,type,effective_at,actor,target,before,after";

/// The audit entries as CSV ([`AUDIT_CSV_HEADER`], RFC 4180 quoting).
pub fn audit_csv(entries: &[AuditEntry]) -> String {
    let mut out = String::from(AUDIT_CSV_HEADER);
    out.push_str("\r\n");
    for entry in entries {
        let e = &entry.entry;
        let json_field = |v: &Option<Value>| v.as_ref().map_or(String::new(), Value::to_string);
        let fields = [
            audit_id(entry),
            e.action.clone(),
            seconds(entry.created_at).to_string(),
            e.actor.clone(),
            e.target.clone(),
            json_field(&e.before),
            json_field(&e.after),
        ];
        let row: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
        out.push_str(&row.join(","));
        out.push_str("\r\n");
    }
    out
}

/// Every audit entry of the organisation, oldest first.
pub async fn all_audit(store: &Store, org_id: &str) -> Result<Vec<AuditEntry>, StoreError> {
    let mut all = Vec::new();
    let mut after = None;
    loop {
        let batch = store.list_audit(org_id, after, 1000).await?;
        let Some(last) = batch.last() else { break };
        after = Some(last.id);
        let full = batch.len() == 1000;
        all.extend(batch);
        if !full {
            break;
        }
    }
    Ok(all)
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\r', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_amount_keeps_every_picodollar() {
        assert_eq!(exact_amount(1).get(), "0.000000000001");
        assert_eq!(exact_amount(130_000_000).get(), "0.000130");
        assert_eq!(exact_amount(-1_500_000_000_000).get(), "-1.500000");
        let amount = AmountJson {
            value: exact_amount(123_456_789_012_345),
            currency: "usd",
        };
        assert_eq!(
            serde_json::to_string(&amount).unwrap(),
            r#"{"value":123.456789012345,"currency":"usd"}"#
        );
    }

    #[test]
    fn every_recorded_actor_kind_is_named() {
        assert_eq!(actor_type(CLI_ACTOR), "cli");
        assert_eq!(actor_type("system"), "system");
        assert_eq!(actor_type("user:u_1"), "user");
        assert_eq!(actor_type("session:u_1"), "user");
        assert_eq!(actor_type("user_abc"), "user");
        assert_eq!(actor_type("address:127.0.0.1"), "address");
        assert_eq!(actor_type("key_abc"), "api_key");
    }

    #[test]
    fn csv_quotes_json_fields() {
        assert_eq!(csv_field(r#"{"a":1,"b":2}"#), r#""{""a"":1,""b"":2}""#);
        assert_eq!(csv_field("plain"), "plain");
    }
}
