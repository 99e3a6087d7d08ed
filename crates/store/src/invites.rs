//! Invites into an organisation: a one-time link, since the server sends
//! no mail. Creating one makes a random token, answered once and stored
//! only as its SHA-256; the person who opens the link signs up with the
//! invited email and joins with the invited role. Accepting marks the
//! invite, creates the account and the membership in one transaction, so
//! a link makes one member however often it is used. Someone who already
//! has an account (a member elsewhere, or removed from this organisation
//! earlier) accepts while signed in instead ([`Store::accept_invite_as`]).

use sqlx::any::AnyRow;
use sqlx::Row;

use crate::error::conflict_on_unique;
use crate::keys::{generate_secret, hash_secret};
use crate::tenancy::{hash_password, insert_user, new_user, user_from_row};
use crate::{new_id, now_ms, Result, Role, Store, StoreError, User};

/// An invite as stored (never its token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invite {
    /// `invite_…`
    pub id: String,
    /// The organisation it joins.
    pub org_id: String,
    /// Lower-cased; the sign-up must use it.
    pub email: String,
    /// The role the person gets.
    pub role: Role,
    /// Unix milliseconds.
    pub invited_at: i64,
    /// Unix milliseconds after which the link is refused.
    pub expires_at: i64,
    /// When it was accepted, unix milliseconds.
    pub accepted_at: Option<i64>,
}

impl Invite {
    /// `accepted`, `expired` or `pending` at `now` (unix milliseconds).
    pub fn status(&self, now: i64) -> &'static str {
        if self.accepted_at.is_some() {
            "accepted"
        } else if now >= self.expires_at {
            "expired"
        } else {
            "pending"
        }
    }
}

/// An invite's token, answered once when it is created. `Debug` hides it.
#[derive(Clone, PartialEq, Eq)]
pub struct InviteToken(String);

impl InviteToken {
    /// The token, for the link.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for InviteToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("InviteToken(…)")
    }
}

const INVITE_COLUMNS: &str = "id, org_id, email, role, invited_at, expires_at, accepted_at";

fn invite_from_row(row: &AnyRow) -> Result<Invite> {
    let role: String = row.try_get("role")?;
    Ok(Invite {
        id: row.try_get("id")?,
        org_id: row.try_get("org_id")?,
        email: row.try_get("email")?,
        role: role
            .parse()
            .map_err(|_| StoreError::Corrupt(format!("role {role:?}")))?,
        invited_at: row.try_get("invited_at")?,
        expires_at: row.try_get("expires_at")?,
        accepted_at: row.try_get("accepted_at")?,
    })
}

impl Store {
    /// Invites `email` into `org_id` as `role` for `ttl_ms`; returns the
    /// invite and its token (the only time it is available). Someone who
    /// is already a member, or who has a pending invite, is a
    /// [`StoreError::Conflict`].
    pub async fn create_invite(
        &self,
        org_id: &str,
        email: &str,
        role: Role,
        ttl_ms: i64,
    ) -> Result<(Invite, InviteToken)> {
        let email = new_user(email, "")?.email;
        if ttl_ms <= 0 {
            return Err(StoreError::InvalidRequest("an invite must last".into()));
        }
        let now = now_ms();
        let mut tx = self.pool().begin().await?;
        let member: Option<String> = sqlx::query_scalar(
            "SELECT u.id FROM users u JOIN memberships m ON m.user_id = u.id \
             WHERE m.org_id = $1 AND u.email = $2",
        )
        .bind(org_id)
        .bind(&email)
        .fetch_optional(&mut *tx)
        .await?;
        if member.is_some() {
            return Err(StoreError::Conflict(
                "this email is already a member of the organization".into(),
            ));
        }
        let pending: Option<String> = sqlx::query_scalar(
            "SELECT id FROM invites WHERE org_id = $1 AND email = $2 \
             AND accepted_at IS NULL AND expires_at > $3",
        )
        .bind(org_id)
        .bind(&email)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(id) = pending {
            return Err(StoreError::Conflict(format!(
                "this email already has a pending invite ({id})"
            )));
        }
        let token = format!("inv-{}", &generate_secret()[3..]);
        let invite = Invite {
            id: new_id("invite"),
            org_id: org_id.to_owned(),
            email,
            role,
            invited_at: now,
            expires_at: now.saturating_add(ttl_ms),
            accepted_at: None,
        };
        sqlx::query(
            "INSERT INTO invites (id, org_id, email, role, token_hash, invited_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&invite.id)
        .bind(&invite.org_id)
        .bind(&invite.email)
        .bind(invite.role.as_str())
        .bind(hash_secret(&token))
        .bind(invite.invited_at)
        .bind(invite.expires_at)
        .execute(&mut *tx)
        .await
        .map_err(|e| match &e {
            sqlx::Error::Database(db) if db.is_foreign_key_violation() => {
                StoreError::NotFound("organization")
            }
            _ => conflict_on_unique(e, "invite id or token collision"),
        })?;
        tx.commit().await?;
        Ok((invite, InviteToken(token)))
    }

    /// The organisation's invites, oldest first.
    pub async fn list_invites(&self, org_id: &str) -> Result<Vec<Invite>> {
        let sql = format!(
            "SELECT {INVITE_COLUMNS} FROM invites WHERE org_id = $1 ORDER BY invited_at, id"
        );
        let rows = sqlx::query(&sql)
            .bind(org_id)
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(invite_from_row).collect()
    }

    /// One invite of the organisation; another organisation's is NotFound.
    pub async fn get_invite(&self, org_id: &str, invite_id: &str) -> Result<Invite> {
        let sql = format!("SELECT {INVITE_COLUMNS} FROM invites WHERE org_id = $1 AND id = $2");
        let row = sqlx::query(&sql)
            .bind(org_id)
            .bind(invite_id)
            .fetch_optional(self.pool())
            .await?
            .ok_or(StoreError::NotFound("invite"))?;
        invite_from_row(&row)
    }

    /// Deletes an invite that was not accepted (its link stops working);
    /// returns it as it was. An accepted invite is an
    /// [`StoreError::InvalidRequest`]: it is history.
    pub async fn delete_invite(&self, org_id: &str, invite_id: &str) -> Result<Invite> {
        let invite = self.get_invite(org_id, invite_id).await?;
        let done = sqlx::query(
            "DELETE FROM invites WHERE org_id = $1 AND id = $2 AND accepted_at IS NULL",
        )
        .bind(org_id)
        .bind(invite_id)
        .execute(self.pool())
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::InvalidRequest(
                "an accepted invite cannot be deleted".into(),
            ));
        }
        Ok(invite)
    }

    /// The pending invite whose link carries `token`; an unknown, used or
    /// expired token is [`StoreError::NotFound`].
    pub async fn find_invite(&self, token: &str) -> Result<Invite> {
        let sql = format!(
            "SELECT {INVITE_COLUMNS} FROM invites WHERE token_hash = $1 \
             AND accepted_at IS NULL AND expires_at > $2"
        );
        let row = sqlx::query(&sql)
            .bind(hash_secret(token))
            .bind(now_ms())
            .fetch_optional(self.pool())
            .await?
            .ok_or(StoreError::NotFound("invite"))?;
        invite_from_row(&row)
    }

    /// Accepts the invite whose link carries `token`: creates the account
    /// (`email` must be the invited one, else InvalidRequest) and its
    /// membership with the invited role, and marks the invite accepted —
    /// all in one transaction, so the link works once. An unknown, used or
    /// expired token is [`StoreError::NotFound`]; a registered email is a
    /// [`StoreError::Conflict`].
    pub async fn accept_invite(
        &self,
        token: &str,
        email: &str,
        name: &str,
        password: &str,
    ) -> Result<(Invite, User)> {
        let user = new_user(email, name)?;
        let invite = self.find_invite(token).await?;
        if invite.email != user.email {
            return Err(StoreError::InvalidRequest(
                "this invite is for another email".into(),
            ));
        }
        let hash = hash_password(password.to_owned()).await?;
        let now = now_ms();
        let mut tx = self.pool().begin().await?;
        // Claim the invite first: on SQLite this takes the write lock, and
        // of two acceptances at once only one finds it still pending.
        let claimed = sqlx::query(
            "UPDATE invites SET accepted_at = $2 \
             WHERE id = $1 AND accepted_at IS NULL AND expires_at > $2",
        )
        .bind(&invite.id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        if claimed.rows_affected() == 0 {
            return Err(StoreError::NotFound("invite"));
        }
        insert_user(&mut *tx, &user, &hash).await?;
        sqlx::query("UPDATE invites SET accepted_by = $2 WHERE id = $1")
            .bind(&invite.id)
            .bind(&user.id)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO memberships (org_id, user_id, role, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(&invite.org_id)
        .bind(&user.id)
        .bind(invite.role.as_str())
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok((
            Invite {
                accepted_at: Some(now),
                ..invite
            },
            user,
        ))
    }

    /// Accepts the invite whose link carries `token` for the existing
    /// account `user_id` (signed in): its email must be the invited one
    /// (else InvalidRequest). The membership with the invited role and the
    /// acceptance commit together, and a pending sign-up of the person in
    /// that organisation is settled by it. An unknown, used or expired
    /// token is [`StoreError::NotFound`]; a person already a member is a
    /// [`StoreError::Conflict`] (the invite stays pending).
    pub async fn accept_invite_as(&self, token: &str, user_id: &str) -> Result<(Invite, User)> {
        let invite = self.find_invite(token).await?;
        let row = sqlx::query("SELECT id, email, name, created_at FROM users WHERE id = $1")
            .bind(user_id)
            .fetch_optional(self.pool())
            .await?
            .ok_or(StoreError::NotFound("user"))?;
        let user = user_from_row(&row)?;
        if invite.email != user.email {
            return Err(StoreError::InvalidRequest(
                "this invite is for another email".into(),
            ));
        }
        let now = now_ms();
        let mut tx = self.pool().begin().await?;
        // Claim the invite first, as in `accept_invite`.
        let claimed = sqlx::query(
            "UPDATE invites SET accepted_at = $2, accepted_by = $3 \
             WHERE id = $1 AND accepted_at IS NULL AND expires_at > $2",
        )
        .bind(&invite.id)
        .bind(now)
        .bind(&user.id)
        .execute(&mut *tx)
        .await?;
        if claimed.rows_affected() == 0 {
            return Err(StoreError::NotFound("invite"));
        }
        sqlx::query(
            "INSERT INTO memberships (org_id, user_id, role, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(&invite.org_id)
        .bind(&user.id)
        .bind(invite.role.as_str())
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(|e| conflict_on_unique(e, "already a member of the organization"))?;
        sqlx::query("DELETE FROM signup_requests WHERE org_id = $1 AND user_id = $2")
            .bind(&invite.org_id)
            .bind(&user.id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok((
            Invite {
                accepted_at: Some(now),
                ..invite
            },
            user,
        ))
    }
}
