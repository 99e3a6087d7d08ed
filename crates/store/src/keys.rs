//! API keys: created with a secret shown once, stored as a SHA-256 hash,
//! listed masked (`sk-…abcd`), revoked, rotated, and resolved from a secret.
//!
//! The lookup is an indexed equality on the hash of the presented secret, so
//! no stored secret is ever compared byte by byte with attacker input: timing
//! can at most reveal something about a hash, which does not help forge a key
//! (the secrets carry ~285 random bits).

use rand::Rng;
use sha2::{Digest, Sha256};
use sqlx::any::AnyRow;
use sqlx::Row;

use crate::error::conflict_on_unique;
use crate::{new_id, now_ms, Result, Store, StoreError};

/// URL-safe alphabet of the secret's random part.
const SECRET_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
/// Random characters after `sk-`.
const SECRET_LEN: usize = 48;
/// `last_used_at` is refreshed at most this often, to spare a write per request.
const LAST_USED_GRANULARITY_MS: i64 = 60_000;

/// What a key may do.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum KeyKind {
    /// Calls the API (models, completions) for its project.
    #[default]
    Project,
    /// Also manages its organisation: keys, usage, costs, budgets, audit log.
    Admin,
}

impl KeyKind {
    /// The stored name: `project` or `admin`.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyKind::Project => "project",
            KeyKind::Admin => "admin",
        }
    }

    fn parse(text: &str) -> Result<KeyKind> {
        match text {
            "project" => Ok(KeyKind::Project),
            "admin" => Ok(KeyKind::Admin),
            other => Err(StoreError::Corrupt(format!("key kind {other:?}"))),
        }
    }
}

/// Per-minute rate limits; `None` falls back to the next scope's (the
/// project's, then the server's).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RateLimits {
    /// Requests per minute.
    pub rpm: Option<u64>,
    /// Tokens (prompt + most that may be generated) per minute.
    pub tpm: Option<u64>,
}

/// A key as stored and listed: never the secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey {
    /// `key_…`
    pub id: String,
    /// The owning organisation.
    pub org_id: String,
    /// The project the key is scoped to.
    pub project_id: String,
    /// Display name.
    pub name: String,
    /// The masked secret, `sk-…abcd`.
    pub redacted: String,
    /// Models the key may use; `None` means all.
    pub allowed_models: Option<Vec<String>>,
    /// Unix milliseconds.
    pub created_at: i64,
    /// Unix milliseconds, refreshed at most once a minute.
    pub last_used_at: Option<i64>,
    /// After this time (unix ms) the key is refused.
    pub expires_at: Option<i64>,
    /// When the key was revoked (unix ms).
    pub revoked_at: Option<i64>,
    /// Project key or admin key.
    pub kind: KeyKind,
    /// The key's own rate limits.
    pub limits: RateLimits,
}

impl ApiKey {
    /// Whether the key may authenticate a request at `now` (unix ms).
    pub fn is_active(&self, now: i64) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|t| now < t)
    }

    /// Whether the key may use `model`.
    pub fn allows_model(&self, model: &str) -> bool {
        self.allowed_models
            .as_ref()
            .is_none_or(|models| models.iter().any(|m| m == model))
    }
}

/// What a new key is made of.
#[derive(Debug, Clone, Default)]
pub struct NewApiKey {
    /// The project it is scoped to; must belong to the organisation.
    pub project_id: String,
    /// Display name.
    pub name: String,
    /// Unix milliseconds after which it is refused.
    pub expires_at: Option<i64>,
    /// Models it may use; `None` means all.
    pub allowed_models: Option<Vec<String>>,
    /// Project key or admin key.
    pub kind: KeyKind,
    /// The key's own rate limits.
    pub limits: RateLimits,
}

/// A limit as stored: `u64` values beyond `i64` are clamped.
pub(crate) fn limit_to_db(limit: Option<u64>) -> Option<i64> {
    limit.map(|n| i64::try_from(n).unwrap_or(i64::MAX))
}

/// A stored limit; a negative one (never written) reads as none.
pub(crate) fn limit_from_db(limit: Option<i64>) -> Option<u64> {
    limit.and_then(|n| u64::try_from(n).ok())
}

/// A key's secret, returned once at creation or rotation. `Debug` hides it.
#[derive(Clone, PartialEq, Eq)]
pub struct KeySecret(String);

impl KeySecret {
    /// The secret itself, `sk-` followed by 48 URL-safe characters.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for KeySecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeySecret(…)")
    }
}

/// Why [`Store::authenticate_key`] refuses a key of an archived project
/// (an [`StoreError::Unauthorized`]), so the server can say so plainly.
pub const PROJECT_ARCHIVED: &str = "the key's project is archived";

/// Why creating or rotating a key of an archived project is refused.
const ARCHIVED_TAKES_NO_KEYS: &str = "the project is archived: it takes no new keys";

pub(crate) fn generate_secret() -> String {
    let mut rng = rand::rngs::OsRng;
    let tail: String = (0..SECRET_LEN)
        .map(|_| char::from(SECRET_ALPHABET[rng.gen_range(0..SECRET_ALPHABET.len())]))
        .collect();
    format!("sk-{tail}")
}

/// Lower-case hex SHA-256 of the secret: what is stored and looked up.
pub(crate) fn hash_secret(secret: &str) -> String {
    let digest = Sha256::digest(secret.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// `sk-…` and the secret's last four characters.
fn redact(secret: &str) -> String {
    let tail: String = secret
        .chars()
        .rev()
        .take(4)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    format!("sk-…{tail}")
}

const KEY_COLUMNS: &str = "id, org_id, project_id, name, redacted, allowed_models, created_at, \
                           last_used_at, expires_at, revoked_at, kind, rpm_limit, tpm_limit";

fn key_from_row(row: &AnyRow) -> Result<ApiKey> {
    let allowed: Option<String> = row.try_get("allowed_models")?;
    let allowed_models = allowed
        .map(|json| serde_json::from_str::<Vec<String>>(&json))
        .transpose()
        .map_err(|e| StoreError::Corrupt(format!("allowed_models: {e}")))?;
    Ok(ApiKey {
        id: row.try_get("id")?,
        org_id: row.try_get("org_id")?,
        project_id: row.try_get("project_id")?,
        name: row.try_get("name")?,
        redacted: row.try_get("redacted")?,
        allowed_models,
        created_at: row.try_get("created_at")?,
        last_used_at: row.try_get("last_used_at")?,
        expires_at: row.try_get("expires_at")?,
        revoked_at: row.try_get("revoked_at")?,
        kind: KeyKind::parse(&row.try_get::<String, _>("kind")?)?,
        limits: RateLimits {
            rpm: limit_from_db(row.try_get("rpm_limit")?),
            tpm: limit_from_db(row.try_get("tpm_limit")?),
        },
    })
}

/// Inserts a key row with a fresh secret, on any executor (pool or transaction).
async fn insert_key<'e, E>(
    executor: E,
    org_id: &str,
    new: &NewApiKey,
) -> Result<(ApiKey, KeySecret)>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let secret = generate_secret();
    let key = ApiKey {
        id: new_id("key"),
        org_id: org_id.to_owned(),
        project_id: new.project_id.clone(),
        name: new.name.clone(),
        redacted: redact(&secret),
        allowed_models: new.allowed_models.clone(),
        created_at: now_ms(),
        last_used_at: None,
        expires_at: new.expires_at,
        revoked_at: None,
        kind: new.kind,
        limits: new.limits,
    };
    let allowed = key
        .allowed_models
        .as_ref()
        .map(serde_json::to_string)
        .transpose()
        .map_err(|e| StoreError::InvalidRequest(format!("allowed_models: {e}")))?;
    sqlx::query(
        "INSERT INTO api_keys (id, org_id, project_id, name, redacted, secret_hash, \
         allowed_models, created_at, expires_at, kind, rpm_limit, tpm_limit) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
    )
    .bind(&key.id)
    .bind(&key.org_id)
    .bind(&key.project_id)
    .bind(&key.name)
    .bind(&key.redacted)
    .bind(hash_secret(&secret))
    .bind(allowed)
    .bind(key.created_at)
    .bind(key.expires_at)
    .bind(key.kind.as_str())
    .bind(limit_to_db(key.limits.rpm))
    .bind(limit_to_db(key.limits.tpm))
    .execute(executor)
    .await
    .map_err(|e| conflict_on_unique(e, "key id or secret collision"))?;
    Ok((key, KeySecret(secret)))
}

impl Store {
    /// Creates a key in a project of the organisation and returns it with its
    /// secret — the only time the secret is available.
    pub async fn create_key(&self, org_id: &str, new: &NewApiKey) -> Result<(ApiKey, KeySecret)> {
        // The project must be the organisation's own: NotFound otherwise.
        let project = self.get_project(org_id, &new.project_id).await?;
        if project.archived_at.is_some() {
            return Err(StoreError::InvalidRequest(ARCHIVED_TAKES_NO_KEYS.into()));
        }
        insert_key(self.pool(), org_id, new).await
    }

    /// One key of the organisation; another organisation's key is NotFound.
    pub async fn get_key(&self, org_id: &str, key_id: &str) -> Result<ApiKey> {
        let sql = format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE org_id = $1 AND id = $2");
        let row = sqlx::query(&sql)
            .bind(org_id)
            .bind(key_id)
            .fetch_optional(self.pool())
            .await?
            .ok_or(StoreError::NotFound("api key"))?;
        key_from_row(&row)
    }

    /// Any organisation's key by id ([`StoreError::NotFound`] when there is
    /// none). A system look-up (an administrator naming a key on the command
    /// line), not a tenant read: requests on behalf of an organisation use
    /// [`Store::get_key`].
    pub async fn find_key(&self, key_id: &str) -> Result<ApiKey> {
        let sql = format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE id = $1");
        let row = sqlx::query(&sql)
            .bind(key_id)
            .fetch_optional(self.pool())
            .await?
            .ok_or(StoreError::NotFound("api key"))?;
        key_from_row(&row)
    }

    /// How many keys exist across organisations, revoked and expired ones
    /// included (revoking every key must not look like a fresh install). A
    /// system operation, not a tenant read.
    pub async fn count_keys(&self) -> Result<u64> {
        let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM api_keys")
            .fetch_one(self.pool())
            .await?;
        u64::try_from(count).map_err(|_| StoreError::Corrupt(format!("key count {count}")))
    }

    /// The organisation's keys (revoked ones included), optionally of one
    /// project, oldest first; masked.
    pub async fn list_keys(&self, org_id: &str, project_id: Option<&str>) -> Result<Vec<ApiKey>> {
        let sql = format!(
            "SELECT {KEY_COLUMNS} FROM api_keys WHERE org_id = $1 \
             AND ($2 IS NULL OR project_id = $2) ORDER BY created_at, id"
        );
        let rows = sqlx::query(&sql)
            .bind(org_id)
            .bind(project_id.map(str::to_owned))
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(key_from_row).collect()
    }

    /// Revokes the key now; revoking a revoked key keeps its first time.
    pub async fn revoke_key(&self, org_id: &str, key_id: &str) -> Result<ApiKey> {
        sqlx::query(
            "UPDATE api_keys SET revoked_at = $3 \
             WHERE org_id = $1 AND id = $2 AND revoked_at IS NULL",
        )
        .bind(org_id)
        .bind(key_id)
        .bind(now_ms())
        .execute(self.pool())
        .await?;
        self.get_key(org_id, key_id).await
    }

    /// Sets the key's own rate limits; returns the key as it now is.
    pub async fn set_key_limits(
        &self,
        org_id: &str,
        key_id: &str,
        limits: RateLimits,
    ) -> Result<ApiKey> {
        let done = sqlx::query(
            "UPDATE api_keys SET rpm_limit = $3, tpm_limit = $4 WHERE org_id = $1 AND id = $2",
        )
        .bind(org_id)
        .bind(key_id)
        .bind(limit_to_db(limits.rpm))
        .bind(limit_to_db(limits.tpm))
        .execute(self.pool())
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound("api key"));
        }
        self.get_key(org_id, key_id).await
    }

    /// Revokes the key and creates its successor (same project, name, expiry,
    /// allowed models, kind and limits) in one transaction; returns the new key and secret.
    /// A revoked key cannot be rotated ([`StoreError::NotFound`]).
    pub async fn rotate_key(&self, org_id: &str, key_id: &str) -> Result<(ApiKey, KeySecret)> {
        let mut tx = self.pool().begin().await?;
        // Write first: on SQLite this takes the write lock at once, so two
        // rotations queue on the busy timeout instead of failing.
        let revoked = sqlx::query(
            "UPDATE api_keys SET revoked_at = $3 \
             WHERE org_id = $1 AND id = $2 AND revoked_at IS NULL",
        )
        .bind(org_id)
        .bind(key_id)
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
        if revoked.rows_affected() == 0 {
            return Err(StoreError::NotFound("active api key"));
        }
        let sql = format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE org_id = $1 AND id = $2");
        let old = key_from_row(
            &sqlx::query(&sql)
                .bind(org_id)
                .bind(key_id)
                .fetch_one(&mut *tx)
                .await?,
        )?;
        let archived: Option<i64> =
            sqlx::query_scalar("SELECT archived_at FROM projects WHERE org_id = $1 AND id = $2")
                .bind(org_id)
                .bind(&old.project_id)
                .fetch_optional(&mut *tx)
                .await?
                .flatten();
        if archived.is_some() {
            return Err(StoreError::InvalidRequest(ARCHIVED_TAKES_NO_KEYS.into()));
        }
        let new = NewApiKey {
            project_id: old.project_id,
            name: old.name,
            expires_at: old.expires_at,
            allowed_models: old.allowed_models,
            kind: old.kind,
            limits: old.limits,
        };
        let created = insert_key(&mut *tx, org_id, &new).await?;
        tx.commit().await?;
        Ok(created)
    }

    /// Resolves a presented secret to its key, refusing unknown, revoked and
    /// expired keys with [`StoreError::Unauthorized`]; refreshes `last_used_at`.
    pub async fn authenticate_key(&self, secret: &str) -> Result<ApiKey> {
        let columns = KEY_COLUMNS
            .split(", ")
            .map(|c| format!("k.{c}"))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "SELECT {columns}, p.archived_at AS project_archived_at FROM api_keys k \
             LEFT JOIN projects p ON p.org_id = k.org_id AND p.id = k.project_id \
             WHERE k.secret_hash = $1"
        );
        let row = sqlx::query(&sql)
            .bind(hash_secret(secret))
            .fetch_optional(self.pool())
            .await?
            .ok_or(StoreError::Unauthorized("unknown api key"))?;
        let mut key = key_from_row(&row)?;
        let now = now_ms();
        if key.revoked_at.is_some() {
            return Err(StoreError::Unauthorized("api key revoked"));
        }
        if row
            .try_get::<Option<i64>, _>("project_archived_at")?
            .is_some()
        {
            return Err(StoreError::Unauthorized(PROJECT_ARCHIVED));
        }
        if !key.is_active(now) {
            return Err(StoreError::Unauthorized("api key expired"));
        }
        if key
            .last_used_at
            .is_none_or(|t| now - t >= LAST_USED_GRANULARITY_MS)
        {
            sqlx::query("UPDATE api_keys SET last_used_at = $2 WHERE id = $1")
                .bind(&key.id)
                .bind(now)
                .execute(self.pool())
                .await?;
            key.last_used_at = Some(now);
        }
        Ok(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_long_url_safe_and_distinct() {
        let a = generate_secret();
        let b = generate_secret();
        assert_ne!(a, b);
        assert!(a.starts_with("sk-"));
        assert_eq!(a.len(), 3 + SECRET_LEN);
        assert!(a[3..]
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
    }

    #[test]
    fn redaction_keeps_only_the_last_four() {
        assert_eq!(redact("sk-abcdefgh1234"), "sk-…1234");
    }

    #[test]
    fn hash_is_sha256_hex() {
        assert_eq!(
            hash_secret("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
