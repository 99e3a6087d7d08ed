//! Web app sessions: a person signed in to one organisation. The cookie
//! carries a random token; only its SHA-256 hash is stored, and a session
//! is refused once expired or revoked (signing out revokes it).

use sqlx::any::AnyRow;
use sqlx::Row;

use crate::keys::{generate_secret, hash_secret};
use crate::{now_ms, Result, Store, StoreError};

/// A session as stored (never the token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The person signed in.
    pub user_id: String,
    /// The organisation they act in.
    pub org_id: String,
    /// Unix milliseconds.
    pub created_at: i64,
    /// Unix milliseconds after which it is refused.
    pub expires_at: i64,
}

/// A session's token, returned once at sign-in. `Debug` hides it.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionToken(String);

impl SessionToken {
    /// The token, for the cookie.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for SessionToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionToken(…)")
    }
}

fn session_from_row(row: &AnyRow) -> Result<Session> {
    Ok(Session {
        user_id: row.try_get("user_id")?,
        org_id: row.try_get("org_id")?,
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
    })
}

impl Store {
    /// Opens a session for a member of the organisation lasting `ttl_ms`;
    /// someone who is not a member is [`StoreError::NotFound`].
    pub async fn create_session(
        &self,
        org_id: &str,
        user_id: &str,
        ttl_ms: i64,
    ) -> Result<(Session, SessionToken)> {
        if ttl_ms <= 0 {
            return Err(StoreError::InvalidRequest("a session must last".into()));
        }
        self.get_role(org_id, user_id).await?;
        let token = generate_secret().replacen("sk-", "sess-", 1);
        let now = now_ms();
        let session = Session {
            user_id: user_id.to_owned(),
            org_id: org_id.to_owned(),
            created_at: now,
            expires_at: now.saturating_add(ttl_ms),
        };
        sqlx::query(
            "INSERT INTO sessions (token_hash, user_id, org_id, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(hash_secret(&token))
        .bind(&session.user_id)
        .bind(&session.org_id)
        .bind(session.created_at)
        .bind(session.expires_at)
        .execute(self.pool())
        .await?;
        Ok((session, SessionToken(token)))
    }

    /// The live session of a token: unknown, expired and revoked tokens are
    /// [`StoreError::Unauthorized`].
    pub async fn authenticate_session(&self, token: &str) -> Result<Session> {
        let row = sqlx::query(
            "SELECT user_id, org_id, created_at, expires_at, revoked_at FROM sessions \
             WHERE token_hash = $1",
        )
        .bind(hash_secret(token))
        .fetch_optional(self.pool())
        .await?
        .ok_or(StoreError::Unauthorized("unknown session"))?;
        let revoked: Option<i64> = row.try_get("revoked_at")?;
        let session = session_from_row(&row)?;
        if revoked.is_some() || now_ms() >= session.expires_at {
            return Err(StoreError::Unauthorized("session ended"));
        }
        Ok(session)
    }

    /// Ends the session of a token (signing out); returns whether it was live.
    pub async fn revoke_session(&self, token: &str) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE sessions SET revoked_at = $2 WHERE token_hash = $1 AND revoked_at IS NULL",
        )
        .bind(hash_secret(token))
        .bind(now_ms())
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() > 0)
    }
}
