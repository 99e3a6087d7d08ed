//! Stored responses of the Responses API (`POST /v1/responses` with
//! `store: true`), scoped to one organisation AND one project: every read,
//! update and delete takes both, and another tenant's id is
//! [`StoreError::NotFound`], never shown.
//!
//! The store holds what the service hands it as JSON text (the response
//! object, this turn's input items, the conversation it continued) and
//! knows nothing of their shape. A background response is created
//! `queued`, updated as it runs ([`Store::update_response`], only while
//! pending: the first end written wins) and may be
//! asked to stop ([`Store::request_response_cancel`]), which its runner
//! reads back ([`Store::response_should_stop`]). It names the
//! instance running it as its `owner`; when that instance's lease expires
//! with the response still pending, the lease sweep finds it
//! ([`Store::orphaned_responses`]) and ends it `failed`
//! ([`Store::fail_orphaned_response`]) so a polling client gets an answer.

use sqlx::any::AnyRow;
use sqlx::Row;

use crate::{now_ms, Result, Store, StoreError};

/// One stored response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredResponse {
    /// `resp_…`.
    pub id: String,
    /// The organisation it belongs to.
    pub org_id: String,
    /// The project it belongs to.
    pub project_id: String,
    /// The response it continued, if any.
    pub previous_response_id: Option<String>,
    /// `queued`, `in_progress`, `completed`, `incomplete`, `failed`,
    /// `cancelled`.
    pub status: String,
    /// The response object (JSON).
    pub response: String,
    /// This turn's input items (a JSON array).
    pub input_items: String,
    /// The whole conversation this turn was generated from (a JSON array).
    pub context: String,
    /// Created (unix ms).
    pub created_at: i64,
    /// Last written (unix ms).
    pub updated_at: i64,
    /// The instance running it in the background, if any.
    pub owner: Option<String>,
}

/// A response to store.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewStoredResponse {
    /// `resp_…`, chosen by the caller (it is already in the response object).
    pub id: String,
    /// The response it continued, if any.
    pub previous_response_id: Option<String>,
    /// Its status.
    pub status: String,
    /// The response object (JSON).
    pub response: String,
    /// This turn's input items (a JSON array).
    pub input_items: String,
    /// The conversation the turn was generated from (a JSON array).
    pub context: String,
    /// The instance running it in the background (see
    /// [`Store::orphaned_responses`]); `None` for one written whole.
    pub owner: Option<String>,
}

const COLUMNS: &str = "id, org_id, project_id, previous_response_id, status, response, \
     input_items, context, created_at, updated_at, owner";

fn from_row(row: &AnyRow) -> Result<StoredResponse> {
    Ok(StoredResponse {
        id: row.try_get("id")?,
        org_id: row.try_get("org_id")?,
        project_id: row.try_get("project_id")?,
        previous_response_id: row.try_get("previous_response_id")?,
        status: row.try_get("status")?,
        response: row.try_get("response")?,
        input_items: row.try_get("input_items")?,
        context: row.try_get("context")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        owner: row.try_get("owner")?,
    })
}

impl Store {
    /// Stores `new` for the organisation's project.
    pub async fn create_response(
        &self,
        org_id: &str,
        project_id: &str,
        new: &NewStoredResponse,
    ) -> Result<StoredResponse> {
        let now = now_ms();
        sqlx::query(
            "INSERT INTO responses (id, org_id, project_id, previous_response_id, status, \
             response, input_items, context, cancel_requested, created_at, updated_at, owner) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 0, $9, $10, $11)",
        )
        .bind(&new.id)
        .bind(org_id)
        .bind(project_id)
        .bind(&new.previous_response_id)
        .bind(&new.status)
        .bind(&new.response)
        .bind(&new.input_items)
        .bind(&new.context)
        .bind(now)
        .bind(now)
        .bind(&new.owner)
        .execute(self.pool())
        .await?;
        Ok(StoredResponse {
            id: new.id.clone(),
            org_id: org_id.to_owned(),
            project_id: project_id.to_owned(),
            previous_response_id: new.previous_response_id.clone(),
            status: new.status.clone(),
            response: new.response.clone(),
            input_items: new.input_items.clone(),
            context: new.context.clone(),
            created_at: now,
            updated_at: now,
            owner: new.owner.clone(),
        })
    }

    /// One of the project's stored responses.
    pub async fn get_response(
        &self,
        org_id: &str,
        project_id: &str,
        id: &str,
    ) -> Result<StoredResponse> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM responses WHERE id = $1 AND org_id = $2 AND project_id = $3"
        ))
        .bind(id)
        .bind(org_id)
        .bind(project_id)
        .fetch_optional(self.pool())
        .await?;
        match row {
            Some(row) => from_row(&row),
            None => Err(StoreError::NotFound("response")),
        }
    }

    /// Rewrites a stored response's status and object (a background
    /// response as it runs and ends); `context` too when given. Only a
    /// response still pending (`queued` or `in_progress`) moves: the first
    /// end written wins, so a runner whose instance stalled past its lease
    /// cannot overwrite the `failed` the lease sweep gave it
    /// ([`Store::fail_orphaned_response`]). `Ok(false)` when the response
    /// had already ended; [`StoreError::NotFound`] when this tenant has no
    /// such response.
    pub async fn update_response(
        &self,
        org_id: &str,
        project_id: &str,
        id: &str,
        status: &str,
        response: &str,
        context: Option<&str>,
    ) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE responses SET status = $1, response = $2, \
             context = COALESCE($3, context), updated_at = $4 \
             WHERE id = $5 AND org_id = $6 AND project_id = $7 \
             AND status IN ('queued', 'in_progress')",
        )
        .bind(status)
        .bind(response)
        .bind(context)
        .bind(now_ms())
        .bind(id)
        .bind(org_id)
        .bind(project_id)
        .execute(self.pool())
        .await?;
        if done.rows_affected() > 0 {
            return Ok(true);
        }
        // Nothing moved: ended already, or not this tenant's.
        self.get_response(org_id, project_id, id).await?;
        Ok(false)
    }

    /// Asks a stored response's runner to stop; the stored row as it is now.
    pub async fn request_response_cancel(
        &self,
        org_id: &str,
        project_id: &str,
        id: &str,
    ) -> Result<StoredResponse> {
        let done = sqlx::query(
            "UPDATE responses SET cancel_requested = 1, updated_at = $1 \
             WHERE id = $2 AND org_id = $3 AND project_id = $4",
        )
        .bind(now_ms())
        .bind(id)
        .bind(org_id)
        .bind(project_id)
        .execute(self.pool())
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound("response"));
        }
        self.get_response(org_id, project_id, id).await
    }

    /// Whether a background response's runner should stop: a stop was
    /// asked for, the response was deleted, or it ended already (the lease
    /// sweep failed it while its instance stalled).
    pub async fn response_should_stop(
        &self,
        org_id: &str,
        project_id: &str,
        id: &str,
    ) -> Result<bool> {
        let row = sqlx::query(
            "SELECT cancel_requested, status FROM responses \
             WHERE id = $1 AND org_id = $2 AND project_id = $3",
        )
        .bind(id)
        .bind(org_id)
        .bind(project_id)
        .fetch_optional(self.pool())
        .await?;
        match row {
            Some(row) => {
                let status: String = row.try_get("status")?;
                Ok(row.try_get::<i64, _>("cancel_requested")? != 0
                    || !matches!(status.as_str(), "queued" | "in_progress"))
            }
            None => Ok(true),
        }
    }

    /// Deletes a stored response (the ones continuing it keep their own
    /// copy of the conversation).
    pub async fn delete_response(&self, org_id: &str, project_id: &str, id: &str) -> Result<()> {
        let done =
            sqlx::query("DELETE FROM responses WHERE id = $1 AND org_id = $2 AND project_id = $3")
                .bind(id)
                .bind(org_id)
                .bind(project_id)
                .execute(self.pool())
                .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound("response"));
        }
        Ok(())
    }

    /// The background responses still `queued` or `in_progress` whose
    /// owning instance holds no lease at `now` (expired, or the instance is
    /// gone), oldest first: their runner died with it. A system operation
    /// of the lease sweep, not a tenant read.
    pub async fn orphaned_responses(&self, now: i64) -> Result<Vec<StoredResponse>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM responses r WHERE r.owner IS NOT NULL \
             AND r.status IN ('queued', 'in_progress') \
             AND NOT EXISTS (SELECT 1 FROM instances i WHERE i.id = r.owner \
             AND i.lease_until > $1) \
             ORDER BY created_at, id"
        ))
        .bind(now)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(from_row).collect()
    }

    /// Ends an orphaned response (see [`Store::orphaned_responses`])
    /// `failed` with `response` as its object, only while it is still
    /// pending and owned by `owner`; `false` when it had moved on.
    pub async fn fail_orphaned_response(
        &self,
        org_id: &str,
        id: &str,
        owner: &str,
        response: &str,
    ) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE responses SET status = 'failed', response = $1, updated_at = $2 \
             WHERE id = $3 AND org_id = $4 AND owner = $5 \
             AND status IN ('queued', 'in_progress')",
        )
        .bind(response)
        .bind(now_ms())
        .bind(id)
        .bind(org_id)
        .bind(owner)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() > 0)
    }
}
