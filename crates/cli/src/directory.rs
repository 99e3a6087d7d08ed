//! Look-ups across organisations that the store does not offer yet: an
//! organisation by name, every organisation, the organisation of a key id,
//! and whether any key exists. The CLI needs them to find its way in from
//! nothing (names on the command line, a server deciding whether to ask for
//! keys).
//!
//! A stopgap: these read the store's tables directly, on a one-connection
//! pool of their own, and belong in `store` as methods (`find_org_by_name`,
//! `list_orgs`, `find_key`, `count_keys`); they never write.

use anyhow::Context;
use sqlx::any::AnyPoolOptions;
use sqlx::{AnyPool, Row};

/// A read-only view across organisations.
pub struct Directory {
    pool: AnyPool,
}

impl Directory {
    /// Opens `url`, which [`store::Store::connect`] has already opened (so
    /// the drivers are installed and the schema is there).
    pub async fn open(url: &str) -> anyhow::Result<Directory> {
        let pool = AnyPoolOptions::new()
            .max_connections(1)
            .connect(url)
            .await
            .context("opening the database for look-ups")?;
        Ok(Directory { pool })
    }

    /// The id of the oldest organisation called `name`.
    pub async fn find_org(&self, name: &str) -> anyhow::Result<Option<String>> {
        let row = sqlx::query(
            "SELECT id FROM organizations WHERE name = $1 ORDER BY created_at, id LIMIT 1",
        )
        .bind(name)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|row| row.try_get("id")).transpose()?)
    }

    /// Every organisation as (id, name), oldest first.
    pub async fn orgs(&self) -> anyhow::Result<Vec<(String, String)>> {
        let rows = sqlx::query("SELECT id, name FROM organizations ORDER BY created_at, id")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| Ok((row.try_get("id")?, row.try_get("name")?)))
            .collect()
    }

    /// The organisation of the key `key_id`, if there is such a key.
    pub async fn key_org(&self, key_id: &str) -> anyhow::Result<Option<String>> {
        let row = sqlx::query("SELECT org_id FROM api_keys WHERE id = $1")
            .bind(key_id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|row| row.try_get("org_id")).transpose()?)
    }

    /// Whether any API key was ever created (revoked ones count: revoking
    /// every key must not open the server).
    pub async fn any_key(&self) -> anyhow::Result<bool> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM api_keys")
            .fetch_one(&self.pool)
            .await?;
        let count: i64 = row.try_get("n")?;
        Ok(count > 0)
    }

    /// Closes the pool.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// The ids of the organisation and project called `org` and `project`,
/// each created when missing.
pub async fn ensure_project(
    store: &store::Store,
    directory: &Directory,
    org: &str,
    project: &str,
) -> anyhow::Result<(String, String)> {
    let org_id = match directory.find_org(org).await? {
        Some(id) => id,
        None => store.create_org(org).await?.id,
    };
    let projects = store.list_projects(&org_id).await?;
    let project_id = match projects.into_iter().find(|p| p.name == project) {
        Some(found) => found.id,
        None => store.create_project(&org_id, project).await?.id,
    };
    Ok((org_id, project_id))
}
