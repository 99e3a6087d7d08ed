//! Projects of an organisation, for the admin API's
//! `/v1/organization/projects`: creating, renaming and archiving one, each
//! audited (`project.created`, `project.updated`, `project.archived`).
//!
//! Archiving is for good (OpenAI's projects are archived, never deleted):
//! the project's keys stop authenticating at once (a 401 saying the project
//! is archived), it takes no new or rotated keys, and it cannot be renamed;
//! its ledger rows, invoices and audit history stay. The organisation's
//! default project (the oldest called `default`), which the web app's
//! people and keyless requests bill, can be neither archived nor renamed.

use api::ApiError;
use serde_json::{json, Value};
use store::{NewAuditEntry, Project, Store, DEFAULT_PROJECT};

use crate::manage::seconds;
use crate::Result;

/// The longest project name.
pub const MAX_NAME_CHARS: usize = 256;

/// A project as the audit log records it.
pub fn project_audit_json(project: &Project) -> Value {
    json!({
        "id": project.id,
        "name": project.name,
        "created_at": seconds(project.created_at),
        "archived_at": project.archived_at.map(seconds),
    })
}

async fn audit(
    store: &Store,
    actor: &str,
    action: &str,
    before: Option<&Project>,
    after: &Project,
) -> Result<()> {
    store
        .append_audit(&NewAuditEntry {
            org_id: after.org_id.clone(),
            actor: actor.to_owned(),
            action: action.to_owned(),
            target: after.id.clone(),
            before: before.map(project_audit_json),
            after: Some(project_audit_json(after)),
        })
        .await?;
    Ok(())
}

/// Whether `project` is its organisation's default project (the oldest
/// called [`DEFAULT_PROJECT`]).
async fn is_default(store: &Store, project: &Project) -> Result<bool> {
    let default = store
        .find_project_by_name(&project.org_id, DEFAULT_PROJECT)
        .await?;
    Ok(default.is_some_and(|d| d.id == project.id))
}

/// A project name: trimmed, not empty, at most [`MAX_NAME_CHARS`]; else a
/// 400 naming `name`.
fn checked_name(name: &str) -> Result<&str> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME_CHARS {
        return Err(ApiError::invalid(
            "name",
            api::InvalidCode::InvalidValue,
            format!("`name` must have 1 to {MAX_NAME_CHARS} characters."),
        )
        .into());
    }
    Ok(name)
}

/// Creates project `name` in `org_id`, acting as `actor`.
pub async fn create(store: &Store, org_id: &str, actor: &str, name: &str) -> Result<Project> {
    let project = store.create_project(org_id, checked_name(name)?).await?;
    audit(store, actor, "project.created", None, &project).await?;
    Ok(project)
}

/// Renames project `project_id` of `org_id` to `name`, acting as `actor`.
/// An archived project is a 400.
pub async fn rename(
    store: &Store,
    org_id: &str,
    actor: &str,
    project_id: &str,
    name: &str,
) -> Result<Project> {
    let name = checked_name(name)?;
    let before = store.get_project(org_id, project_id).await?;
    if is_default(store, &before).await? {
        return Err(ApiError::invalid_body(
            "The organization's default project cannot be renamed: the server finds it by \
             its name.",
        )
        .into());
    }
    let after = store.rename_project(org_id, project_id, name).await?;
    audit(store, actor, "project.updated", Some(&before), &after).await?;
    Ok(after)
}

/// Archives project `project_id` of `org_id`, acting as `actor`; archiving
/// an archived project answers it as it is, and records nothing. The
/// default project is a 400.
pub async fn archive(
    store: &Store,
    org_id: &str,
    actor: &str,
    project_id: &str,
) -> Result<Project> {
    let before = store.get_project(org_id, project_id).await?;
    if before.archived_at.is_some() {
        return Ok(before);
    }
    if is_default(store, &before).await? {
        return Err(ApiError::invalid_body(
            "The organization's default project cannot be archived: the web app and \
             keyless requests bill it.",
        )
        .into());
    }
    let after = store.archive_project(org_id, project_id).await?;
    audit(store, actor, "project.archived", Some(&before), &after).await?;
    Ok(after)
}
