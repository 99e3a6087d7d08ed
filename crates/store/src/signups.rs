//! Sign-ups waiting for approval: a person who signed up to an organisation
//! that approves its members has an account (a `users` row, so their email
//! is taken and their password checked) and a request, but no membership —
//! so no session — until an owner or admin approves it. Approving turns the
//! request into a membership and rejecting deletes it (and the account, when
//! it belongs nowhere else), each in one transaction, so a request is
//! approved or rejected once however many people click at the same time.

use sqlx::Row;

use crate::tenancy::{hash_password, insert_user, new_user, user_from_row};
use crate::{now_ms, Result, Role, Store, StoreError, User};

/// A person waiting for approval to join an organisation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignupRequest {
    /// Who asked.
    pub user: User,
    /// When they signed up, unix milliseconds.
    pub requested_at: i64,
}

impl Store {
    /// Creates a user (as [`Store::create_user`] does) together with their
    /// request to join `org_id`, in one transaction: both or neither.
    pub async fn create_pending_user(
        &self,
        org_id: &str,
        email: &str,
        name: &str,
        password: &str,
    ) -> Result<User> {
        let user = new_user(email, name)?;
        let hash = hash_password(password.to_owned()).await?;
        let mut tx = self.pool().begin().await?;
        insert_user(&mut *tx, &user, &hash).await?;
        sqlx::query(
            "INSERT INTO signup_requests (org_id, user_id, created_at) VALUES ($1, $2, $3)",
        )
        .bind(org_id)
        .bind(&user.id)
        .bind(user.created_at)
        .execute(&mut *tx)
        .await
        .map_err(|e| match &e {
            sqlx::Error::Database(db) if db.is_foreign_key_violation() => {
                StoreError::NotFound("organization")
            }
            _ => StoreError::Database(e),
        })?;
        tx.commit().await?;
        Ok(user)
    }

    /// The organisation's pending sign-ups, oldest first.
    pub async fn list_signup_requests(&self, org_id: &str) -> Result<Vec<SignupRequest>> {
        let rows = sqlx::query(
            "SELECT u.id, u.email, u.name, u.created_at, r.created_at AS requested_at \
             FROM signup_requests r JOIN users u ON u.id = r.user_id \
             WHERE r.org_id = $1 ORDER BY r.created_at, u.id",
        )
        .bind(org_id)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|row| {
                Ok(SignupRequest {
                    user: user_from_row(row)?,
                    requested_at: row.try_get("requested_at")?,
                })
            })
            .collect()
    }

    /// Whether `user_id` is waiting for approval to join `org_id`.
    pub async fn signup_pending(&self, org_id: &str, user_id: &str) -> Result<bool> {
        let found: Option<i64> = sqlx::query_scalar(
            "SELECT created_at FROM signup_requests WHERE org_id = $1 AND user_id = $2",
        )
        .bind(org_id)
        .bind(user_id)
        .fetch_optional(self.pool())
        .await?;
        Ok(found.is_some())
    }

    /// Approves a pending sign-up: the request becomes a membership with
    /// `role`, in one transaction. No such request (never made, already
    /// approved or rejected, another organisation's) is
    /// [`StoreError::NotFound`]. Returns the person.
    pub async fn approve_signup(&self, org_id: &str, user_id: &str, role: Role) -> Result<User> {
        let mut tx = self.pool().begin().await?;
        let done = sqlx::query("DELETE FROM signup_requests WHERE org_id = $1 AND user_id = $2")
            .bind(org_id)
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound("sign-up request"));
        }
        sqlx::query(
            "INSERT INTO memberships (org_id, user_id, role, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (org_id, user_id) DO NOTHING",
        )
        .bind(org_id)
        .bind(user_id)
        .bind(role.as_str())
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
        let row = sqlx::query("SELECT id, email, name, created_at FROM users WHERE id = $1")
            .bind(user_id)
            .fetch_one(&mut *tx)
            .await?;
        let user = user_from_row(&row)?;
        tx.commit().await?;
        Ok(user)
    }

    /// Rejects a pending sign-up: the request is deleted and, when the
    /// person belongs to no organisation and waits for no other, so is their
    /// account (their email may sign up again). No such request is
    /// [`StoreError::NotFound`]. Returns the person as they were.
    pub async fn reject_signup(&self, org_id: &str, user_id: &str) -> Result<User> {
        let mut tx = self.pool().begin().await?;
        let done = sqlx::query("DELETE FROM signup_requests WHERE org_id = $1 AND user_id = $2")
            .bind(org_id)
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound("sign-up request"));
        }
        let row = sqlx::query("SELECT id, email, name, created_at FROM users WHERE id = $1")
            .bind(user_id)
            .fetch_one(&mut *tx)
            .await?;
        let user = user_from_row(&row)?;
        sqlx::query(
            "DELETE FROM users WHERE id = $1 \
             AND NOT EXISTS (SELECT 1 FROM memberships WHERE user_id = $1) \
             AND NOT EXISTS (SELECT 1 FROM signup_requests WHERE user_id = $1)",
        )
        .bind(user_id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(user)
    }
}
