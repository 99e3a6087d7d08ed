//! Finding an organisation or project by name, creating it when missing,
//! once even when several processes start at the same moment (the default
//! organisation and project of a fresh installation; `keys create --org`).
//!
//! Names are not unique in the schema, so "look, then insert" could make
//! two. Here the look-up and the insert run in one transaction that first
//! takes the table's write lock: SQLite's by writing before reading,
//! PostgreSQL's by `LOCK TABLE … IN SHARE ROW EXCLUSIVE MODE` (which
//! conflicts with itself, and not with readers). The second process waits,
//! then finds the first one's row.

use sqlx::{Executor, Row};

use crate::tenancy::{Organization, Project};
use crate::{new_id, now_ms, Backend, ErrorKind, Result, Store, StoreError};

/// How often a busy database is tried again before the error is returned.
const TRIES: u32 = 6;

impl Store {
    /// The oldest organisation called `name`, created when there is none.
    pub async fn org_named(&self, name: &str) -> Result<Organization> {
        if let Some(found) = self.find_org_by_name(name).await? {
            return Ok(found);
        }
        self.retry_busy(|| self.org_named_locked(name)).await
    }

    /// The oldest project of `org_id` called `name`, created when there is
    /// none. An unknown organisation is [`StoreError::NotFound`].
    pub async fn project_named(&self, org_id: &str, name: &str) -> Result<Project> {
        if let Some(found) = self.find_project_by_name(org_id, name).await? {
            return Ok(found);
        }
        self.retry_busy(|| self.project_named_locked(org_id, name))
            .await
    }

    async fn retry_busy<T, F, Fut>(&self, mut attempt: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        let mut tries = 0;
        loop {
            match attempt().await {
                Err(e) if e.kind() == ErrorKind::Unavailable && tries + 1 < TRIES => {
                    tries += 1;
                    let wait = std::time::Duration::from_millis(20 * u64::from(tries));
                    tokio::time::sleep(wait).await;
                }
                done => return done,
            }
        }
    }

    async fn org_named_locked(&self, name: &str) -> Result<Organization> {
        let mut tx = self.pool().begin().await?;
        self.lock_table(&mut tx, "organizations").await?;
        let found = sqlx::query(
            "SELECT id, created_at FROM organizations WHERE name = $1 \
             ORDER BY created_at, id LIMIT 1",
        )
        .bind(name)
        .fetch_optional(&mut *tx)
        .await?;
        let org = match found {
            Some(row) => Organization {
                id: row.try_get("id")?,
                name: name.to_owned(),
                created_at: row.try_get("created_at")?,
            },
            None => {
                let org = Organization {
                    id: new_id("org"),
                    name: name.to_owned(),
                    created_at: now_ms(),
                };
                sqlx::query("INSERT INTO organizations (id, name, created_at) VALUES ($1, $2, $3)")
                    .bind(&org.id)
                    .bind(&org.name)
                    .bind(org.created_at)
                    .execute(&mut *tx)
                    .await?;
                org
            }
        };
        tx.commit().await?;
        Ok(org)
    }

    async fn project_named_locked(&self, org_id: &str, name: &str) -> Result<Project> {
        let mut tx = self.pool().begin().await?;
        self.lock_table(&mut tx, "projects").await?;
        let found: Option<String> = sqlx::query_scalar(
            "SELECT id FROM projects WHERE org_id = $1 AND name = $2 \
             ORDER BY created_at, id LIMIT 1",
        )
        .bind(org_id)
        .bind(name)
        .fetch_optional(&mut *tx)
        .await?;
        if found.is_none() {
            sqlx::query(
                "INSERT INTO projects (id, org_id, name, created_at) VALUES ($1, $2, $3, $4)",
            )
            .bind(new_id("proj"))
            .bind(org_id)
            .bind(name)
            .bind(now_ms())
            .execute(&mut *tx)
            .await
            .map_err(|e| match &e {
                sqlx::Error::Database(db) if db.is_foreign_key_violation() => {
                    StoreError::NotFound("organization")
                }
                _ => StoreError::Database(e),
            })?;
        }
        tx.commit().await?;
        self.find_project_by_name(org_id, name)
            .await?
            .ok_or(StoreError::NotFound("project"))
    }

    /// Takes `table`'s write lock inside `tx` before anything is read.
    async fn lock_table(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        table: &str,
    ) -> Result<()> {
        let sql = match self.backend() {
            // A write that matches no row still takes SQLite's write lock.
            Backend::Sqlite => format!("UPDATE {table} SET name = name WHERE 0 = 1"),
            Backend::Postgres => format!("LOCK TABLE {table} IN SHARE ROW EXCLUSIVE MODE"),
        };
        (&mut **tx).execute(sql.as_str()).await?;
        Ok(())
    }
}
