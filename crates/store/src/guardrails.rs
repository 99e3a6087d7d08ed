//! A project's guardrails: whether its requests' input and output are
//! moderated (two columns of `projects`). The rules they drive live in
//! `service::guardrails`.

use sqlx::Row;

use crate::{Result, Store, StoreError};

/// Which moderation a project requires.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Guardrails {
    /// Moderate every request's input; a flagged one is refused.
    pub input: bool,
    /// Moderate every answer; a flagged one ends with `content_filter`.
    pub output: bool,
}

impl Store {
    /// The guardrails of the organisation's project (another
    /// organisation's project is NotFound).
    pub async fn project_guardrails(&self, org_id: &str, project_id: &str) -> Result<Guardrails> {
        let row = sqlx::query(
            "SELECT moderate_input, moderate_output FROM projects WHERE org_id = $1 AND id = $2",
        )
        .bind(org_id)
        .bind(project_id)
        .fetch_optional(self.pool())
        .await?
        .ok_or(StoreError::NotFound("project"))?;
        Ok(Guardrails {
            input: row.try_get::<i64, _>("moderate_input")? != 0,
            output: row.try_get::<i64, _>("moderate_output")? != 0,
        })
    }

    /// Sets the guardrails of the organisation's project.
    pub async fn set_project_guardrails(
        &self,
        org_id: &str,
        project_id: &str,
        guardrails: Guardrails,
    ) -> Result<()> {
        let done = sqlx::query(
            "UPDATE projects SET moderate_input = $3, moderate_output = $4 \
             WHERE org_id = $1 AND id = $2",
        )
        .bind(org_id)
        .bind(project_id)
        .bind(i64::from(guardrails.input))
        .bind(i64::from(guardrails.output))
        .execute(self.pool())
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound("project"));
        }
        Ok(())
    }
}
