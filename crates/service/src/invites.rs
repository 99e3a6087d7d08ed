//! Invites into an organisation, for the admin API's
//! `/v1/organization/invites` and the web app's sign-up: creating and
//! deleting one (audited `invite.created` / `invite.deleted`), and
//! accepting one — the web app's sign-up with the link's token — which
//! makes the person a member with the invited role at once, whatever the
//! sign-up policy (`approval` and `closed` included: the invite is the
//! approval), and records `invite.accepted`; or, for someone who already
//! has an account and is signed in, joining with it ([`accept_existing`]).
//!
//! There is no mail: an invite is a one-time link that whoever creates it
//! hands on. Its token is answered once, at creation; the store keeps only
//! its hash, and a link makes one member however often it is opened.

use std::time::Duration;

use api::ApiError;
use serde_json::{json, Value};
use store::{Invite, InviteToken, NewAuditEntry, Role, Store, StoreError, User};

use crate::accounts::{checked_name, NewPerson};
use crate::manage::seconds;
use crate::Result;

/// How long an invite's link works.
pub const INVITE_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// The web app's path that signs up with an invite's token.
pub fn link_path(token: &InviteToken) -> String {
    format!("/#/signup?invite={}", token.expose())
}

/// An invite as the audit log records it (never the token).
pub fn invite_audit_json(invite: &Invite) -> Value {
    json!({
        "id": invite.id,
        "email": invite.email,
        "role": invite.role.as_str(),
        "invited_at": seconds(invite.invited_at),
        "expires_at": seconds(invite.expires_at),
        "accepted_at": invite.accepted_at.map(seconds),
    })
}

async fn audit(
    store: &Store,
    invite: &Invite,
    actor: &str,
    action: &str,
    before: Option<&Invite>,
    after: Option<&Invite>,
) -> Result<()> {
    store
        .append_audit(&NewAuditEntry {
            org_id: invite.org_id.clone(),
            actor: actor.to_owned(),
            action: action.to_owned(),
            target: invite.id.clone(),
            before: before.map(invite_audit_json),
            after: after.map(invite_audit_json),
        })
        .await?;
    Ok(())
}

/// Invites `email` into `org_id` as `role`, acting as `actor`; hands back
/// the invite and its token (answered once). A member's email or one with
/// a pending invite is a 400 naming `email`.
pub async fn create(
    store: &Store,
    org_id: &str,
    actor: &str,
    email: &str,
    role: Role,
) -> Result<(Invite, InviteToken)> {
    let ttl = i64::try_from(INVITE_TTL.as_millis()).unwrap_or(i64::MAX);
    let (invite, token) = store
        .create_invite(org_id, email, role, ttl)
        .await
        .map_err(|err| match err {
            StoreError::Conflict(why) | StoreError::InvalidRequest(why) => {
                invalid(format!("Cannot invite {email:?}: {why}."), "email")
            }
            err => err.into(),
        })?;
    audit(store, &invite, actor, "invite.created", None, Some(&invite)).await?;
    Ok((invite, token))
}

/// Deletes invite `invite_id` of `org_id`, acting as `actor`: its link
/// stops working. An accepted invite is a 400; an unknown one a 404.
pub async fn delete(store: &Store, org_id: &str, actor: &str, invite_id: &str) -> Result<Invite> {
    let invite = store
        .delete_invite(org_id, invite_id)
        .await
        .map_err(|err| match err {
            StoreError::InvalidRequest(why) => {
                ApiError::invalid_body(format!("Invite '{invite_id}' cannot be deleted: {why}."))
                    .into()
            }
            err => crate::Error::from(err),
        })?;
    audit(store, &invite, actor, "invite.deleted", Some(&invite), None).await?;
    Ok(invite)
}

/// Signs `person` up through the invite whose link carries `token`: the
/// account, its membership with the invited role and the invite's
/// acceptance in one transaction, then `invite.accepted` in the audit log.
/// A link that is unknown, used or expired, or an email other than the
/// invited one, is a 400 naming `invite` or `email`.
pub async fn accept(store: &Store, token: &str, person: NewPerson<'_>) -> Result<(Invite, User)> {
    let name = checked_name(&person)?;
    let (invite, user) = store
        .accept_invite(token, person.email, &name, person.password)
        .await
        .map_err(|err| match err {
            StoreError::NotFound(_) => invalid(
                "This invite link is unknown, used or expired: ask for a new one.".into(),
                "invite",
            ),
            StoreError::InvalidRequest(_) => invalid(
                "This invite is for another email: sign up with the invited one.".into(),
                "email",
            ),
            StoreError::Conflict(_) => invalid(
                "This email is already registered: sign in instead.".into(),
                "email",
            ),
            err => err.into(),
        })?;
    record_accepted(store, &invite, &user).await?;
    Ok((invite, user))
}

/// Accepts the invite whose link carries `token` for `user_id`, a person
/// with an account who is signed in: they join the invite's organisation
/// with its role, and `invite.accepted` is recorded. A link that is
/// unknown, used or expired, for another email, or for an organisation the
/// person is already a member of, is a 400 naming `invite` or `email`.
pub async fn accept_existing(store: &Store, token: &str, user_id: &str) -> Result<(Invite, User)> {
    let (invite, user) = store
        .accept_invite_as(token, user_id)
        .await
        .map_err(|err| match err {
            StoreError::NotFound(_) => invalid(
                "This invite link is unknown, used or expired: ask for a new one.".into(),
                "invite",
            ),
            StoreError::InvalidRequest(_) => invalid(
                "This invite is for another email: sign in with the invited one.".into(),
                "email",
            ),
            StoreError::Conflict(_) => invalid(
                "You are already a member of this organization.".into(),
                "invite",
            ),
            err => err.into(),
        })?;
    record_accepted(store, &invite, &user).await?;
    Ok((invite, user))
}

/// `invite.accepted` by the person who joined: before is the invite
/// still open, after the accepted one.
async fn record_accepted(store: &Store, invite: &Invite, user: &User) -> Result<()> {
    let actor = format!("user:{}", user.id);
    let before = Invite {
        accepted_at: None,
        ..invite.clone()
    };
    audit(
        store,
        invite,
        &actor,
        "invite.accepted",
        Some(&before),
        Some(invite),
    )
    .await
}

fn invalid(message: String, param: &str) -> crate::Error {
    ApiError::InvalidRequest {
        message,
        param: Some(param.to_owned()),
        code: None,
    }
    .into()
}
