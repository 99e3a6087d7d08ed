//! The append-only audit log of administrative actions (keys, roles, plans,
//! prices, budgets, backends). The tables refuse UPDATE and DELETE by trigger.

use sqlx::any::AnyRow;
use sqlx::Row;

use crate::{now_ms, Result, Store, StoreError};

/// An action to record.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NewAuditEntry {
    /// The organisation the action touched.
    pub org_id: String,
    /// Who did it: a user id, key id or `system`.
    pub actor: String,
    /// What was done, e.g. `api_key.revoked`.
    pub action: String,
    /// The id of the thing acted on.
    pub target: String,
    /// Its state before, if it existed.
    pub before: Option<serde_json::Value>,
    /// Its state after, if it still exists.
    pub after: Option<serde_json::Value>,
}

/// A recorded action.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEntry {
    /// Increasing with insertion.
    pub id: i64,
    /// What was recorded.
    pub entry: NewAuditEntry,
    /// Unix milliseconds.
    pub created_at: i64,
}

fn json_column(row: &AnyRow, name: &str) -> Result<Option<serde_json::Value>> {
    let text: Option<String> = row.try_get(name)?;
    text.map(|t| serde_json::from_str(&t))
        .transpose()
        .map_err(|e| StoreError::Corrupt(format!("{name}: {e}")))
}

fn entry_from_row(row: &AnyRow) -> Result<AuditEntry> {
    Ok(AuditEntry {
        id: row.try_get("id")?,
        entry: NewAuditEntry {
            org_id: row.try_get("org_id")?,
            actor: row.try_get("actor")?,
            action: row.try_get("action")?,
            target: row.try_get("target")?,
            before: json_column(row, "before_json")?,
            after: json_column(row, "after_json")?,
        },
        created_at: row.try_get("created_at")?,
    })
}

impl Store {
    /// Appends an entry stamped with the current time; returns its id.
    pub async fn append_audit(&self, entry: &NewAuditEntry) -> Result<i64> {
        let before = entry.before.as_ref().map(|v| v.to_string());
        let after = entry.after.as_ref().map(|v| v.to_string());
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO audit_log (org_id, actor, action, target, before_json, after_json, \
             created_at) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
        )
        .bind(&entry.org_id)
        .bind(&entry.actor)
        .bind(&entry.action)
        .bind(&entry.target)
        .bind(before)
        .bind(after)
        .bind(now_ms())
        .fetch_one(self.pool())
        .await?;
        Ok(id)
    }

    /// The organisation's entries with id greater than `after` (a cursor),
    /// oldest first, at most `limit`.
    pub async fn list_audit(
        &self,
        org_id: &str,
        after: Option<i64>,
        limit: u32,
    ) -> Result<Vec<AuditEntry>> {
        let rows = sqlx::query(
            "SELECT id, org_id, actor, action, target, before_json, after_json, created_at \
             FROM audit_log WHERE org_id = $1 AND id > $2 ORDER BY id LIMIT $3",
        )
        .bind(org_id)
        .bind(after.unwrap_or(i64::MIN))
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(entry_from_row).collect()
    }
}
