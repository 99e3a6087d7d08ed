//! Members of an organisation and their roles: the audited changes the web
//! app's admin page makes, with their rules — only owners and admins
//! manage members, only an owner may make or unmake an owner, and the last
//! owner can be neither demoted nor removed. Approving a pending sign-up
//! (see `accounts`) makes the person a member (`member.approved`);
//! rejecting it deletes the request and their account (`member.rejected`).

use api::ApiError;
use serde_json::json;
use store::{NewAuditEntry, Role, Store, User};

use crate::Result;

/// The role of `user_id`, who must be an owner or admin of the
/// organisation to manage it (else 403).
pub async fn managing_role(store: &Store, org_id: &str, user_id: &str) -> Result<Role> {
    match store.get_role(org_id, user_id).await? {
        role @ (Role::Owner | Role::Admin) => Ok(role),
        Role::Member | Role::Reader => Err(ApiError::Forbidden {
            message: "Only owners and admins of the organization may do this.".into(),
        }
        .into()),
    }
}

/// Changes member `user_id`'s role to `to`, acting as `actor` with role
/// `acting`, and records `member.role_changed`; hands back the old role.
pub async fn set_role(
    store: &Store,
    org_id: &str,
    (actor, acting): (&str, Role),
    user_id: &str,
    to: Role,
) -> Result<Role> {
    let from = store.get_role(org_id, user_id).await?;
    may_change(acting, from, Some(to))?;
    if from == Role::Owner && to != Role::Owner {
        keep_an_owner(store, org_id, user_id).await?;
    }
    store.set_role(org_id, user_id, to).await?;
    store
        .append_audit(&NewAuditEntry {
            org_id: org_id.to_owned(),
            actor: actor.to_owned(),
            action: "member.role_changed".into(),
            target: user_id.to_owned(),
            before: Some(json!({"role": from.as_str()})),
            after: Some(json!({"role": to.as_str()})),
        })
        .await?;
    Ok(from)
}

/// Removes member `user_id` from the organisation, acting as `actor` with
/// role `acting`, and records `member.removed`.
pub async fn remove(
    store: &Store,
    org_id: &str,
    (actor, acting): (&str, Role),
    user_id: &str,
) -> Result<()> {
    let from = store.get_role(org_id, user_id).await?;
    may_change(acting, from, None)?;
    if from == Role::Owner {
        keep_an_owner(store, org_id, user_id).await?;
    }
    store.remove_member(org_id, user_id).await?;
    store
        .append_audit(&NewAuditEntry {
            org_id: org_id.to_owned(),
            actor: actor.to_owned(),
            action: "member.removed".into(),
            target: user_id.to_owned(),
            before: Some(json!({"role": from.as_str()})),
            after: None,
        })
        .await?;
    Ok(())
}

/// Approves `user_id`'s pending sign-up, acting as `actor`: they become a
/// member and may sign in; records `member.approved`. No such request is
/// a 404.
pub async fn approve(store: &Store, org_id: &str, actor: &str, user_id: &str) -> Result<User> {
    let user = store.approve_signup(org_id, user_id, Role::Member).await?;
    store
        .append_audit(&NewAuditEntry {
            org_id: org_id.to_owned(),
            actor: actor.to_owned(),
            action: "member.approved".into(),
            target: user_id.to_owned(),
            before: Some(json!({"status": "pending", "email": user.email})),
            after: Some(json!({"role": Role::Member.as_str()})),
        })
        .await?;
    Ok(user)
}

/// Rejects `user_id`'s pending sign-up, acting as `actor`: the request and
/// (when they belong nowhere else) their account are deleted, so the email
/// may sign up again; records `member.rejected`. No such request is a 404.
pub async fn reject(store: &Store, org_id: &str, actor: &str, user_id: &str) -> Result<User> {
    let user = store.reject_signup(org_id, user_id).await?;
    store
        .append_audit(&NewAuditEntry {
            org_id: org_id.to_owned(),
            actor: actor.to_owned(),
            action: "member.rejected".into(),
            target: user_id.to_owned(),
            before: Some(json!({"status": "pending", "email": user.email, "name": user.name})),
            after: None,
        })
        .await?;
    Ok(user)
}

/// Refuses to take away the organisation's last owner.
async fn keep_an_owner(store: &Store, org_id: &str, user_id: &str) -> Result<()> {
    let members = store.list_members(org_id).await?;
    let others = members
        .iter()
        .filter(|(user, role)| *role == Role::Owner && user.id != user_id)
        .count();
    if others == 0 {
        return Err(ApiError::invalid_body(
            "This is the organization's last owner: make someone else an owner first.",
        )
        .into());
    }
    Ok(())
}

/// Whether `acting` may change a member whose role is `from` to `to`
/// (`None`: removal). Only owners touch owners.
fn may_change(acting: Role, from: Role, to: Option<Role>) -> Result<()> {
    let touches_owner = from == Role::Owner || to == Some(Role::Owner);
    if touches_owner && acting != Role::Owner {
        return Err(ApiError::Forbidden {
            message: "Only an owner may make or change an owner.".into(),
        }
        .into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_owners_touch_owners() {
        assert!(may_change(Role::Admin, Role::Member, Some(Role::Admin)).is_ok());
        assert!(may_change(Role::Admin, Role::Owner, Some(Role::Member)).is_err());
        assert!(may_change(Role::Admin, Role::Member, Some(Role::Owner)).is_err());
        assert!(may_change(Role::Admin, Role::Owner, None).is_err());
        assert!(may_change(Role::Owner, Role::Owner, None).is_ok());
    }
}
