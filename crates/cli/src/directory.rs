//! Finding organisations and projects by the names given on the command
//! line, creating them when missing.

/// The ids of the organisation and project called `org` and `project`,
/// each created when missing (the oldest one wins when a name is shared).
pub async fn ensure_project(
    store: &store::Store,
    org: &str,
    project: &str,
) -> anyhow::Result<(String, String)> {
    let org_id = match store.find_org_by_name(org).await? {
        Some(found) => found.id,
        None => store.create_org(org).await?.id,
    };
    let project_id = match store.find_project_by_name(&org_id, project).await? {
        Some(found) => found.id,
        None => store.create_project(&org_id, project).await?.id,
    };
    Ok((org_id, project_id))
}
