//! Who a request is billed to: the [`Tenant`], and the installation's
//! built-in one.
//!
//! Every installation has one default organisation and project, named once
//! ([`DEFAULT_ORG`], [`DEFAULT_PROJECT`], owned by the store): `parlance
//! keys create` without `--org`, `PARLANCE_ADMIN_KEY`, keyless requests to
//! an open server and the web app's first sign-up all use it, so what one
//! of them bills the others see.

use api::ApiError;
use store::{Store, StoreError};

pub use store::{DEFAULT_ORG, DEFAULT_PROJECT};

use crate::Result;

/// The project of an organisation that web sessions are billed to.
pub const CHAT_PROJECT: &str = "chat";
/// The key id the ledger shows for keyless requests to an open server.
pub const LOCAL_KEY_ID: &str = "local";
/// The key id the ledger shows for requests made with `PARLANCE_ADMIN_KEY`.
pub const ADMIN_KEY_ID: &str = "admin";

/// Who a request is billed to, and what its key may do.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tenant {
    /// The organisation billed.
    pub org_id: String,
    /// Its project.
    pub project_id: String,
    /// The key id written in the ledger (a real key, or a built-in name
    /// such as [`LOCAL_KEY_ID`] or [`ADMIN_KEY_ID`]).
    pub api_key_id: String,
    /// Whether the key may manage the organisation (an admin key, the
    /// `PARLANCE_ADMIN_KEY`, or the open server's single user).
    pub admin: bool,
    /// The key's own rate limits (`None`s fall back to the project's).
    pub key_limits: store::RateLimits,
    /// Models the key may use; `None` means all.
    pub allowed_models: Option<Vec<String>>,
    /// The signed-in person (web app session), whose plan applies.
    pub user_id: Option<String>,
}

impl Tenant {
    /// Whether the tenant's key may use `model` (every model when the key
    /// has no list).
    pub fn may_use(&self, model: &str) -> bool {
        self.allowed_models
            .as_ref()
            .is_none_or(|models| models.iter().any(|m| m == model))
    }

    /// The tenant of a live web session: the person's organisation, its
    /// [`CHAT_PROJECT`] (created on demand), the key id `session:<user_id>`
    /// in the ledger, their plan (`user_id`), and admin rights for owners
    /// and admins. An unknown, expired or revoked session, or someone no
    /// longer a member, is a 401.
    pub async fn of_session(store: &Store, token: &str) -> Result<Tenant> {
        let session = match store.authenticate_session(token).await {
            Ok(session) => session,
            Err(StoreError::Unauthorized(_)) => {
                return Err(ApiError::Unauthorized {
                    message: "Your session has ended. Please sign in again.".into(),
                }
                .into())
            }
            Err(err) => return Err(err.into()),
        };
        let role = match store.get_role(&session.org_id, &session.user_id).await {
            Ok(role) => role,
            Err(StoreError::NotFound(_)) => {
                return Err(ApiError::Unauthorized {
                    message: "You are no longer a member of this organization.".into(),
                }
                .into())
            }
            Err(err) => return Err(err.into()),
        };
        let project_id = ensure_project_in(store, &session.org_id, CHAT_PROJECT).await?;
        Ok(Tenant {
            org_id: session.org_id,
            project_id,
            api_key_id: format!("session:{}", session.user_id),
            admin: matches!(role, store::Role::Owner | store::Role::Admin),
            key_limits: store::RateLimits::default(),
            allowed_models: None,
            user_id: Some(session.user_id),
        })
    }

    /// A built-in tenant of the default organisation with admin rights,
    /// written in the ledger as `api_key_id` ([`LOCAL_KEY_ID`],
    /// [`ADMIN_KEY_ID`]).
    pub async fn installation(store: &Store, api_key_id: &str) -> Result<Tenant> {
        let (org_id, project_id) = ensure_project(store, DEFAULT_ORG, DEFAULT_PROJECT).await?;
        Ok(Tenant {
            org_id,
            project_id,
            api_key_id: api_key_id.to_owned(),
            admin: true,
            ..Tenant::default()
        })
    }
}

/// The id of the organisation called `name`, created when missing (the
/// oldest one wins when a name is shared; processes starting together
/// create one: [`Store::org_named`]).
pub async fn ensure_org(store: &Store, name: &str) -> Result<String> {
    Ok(store.org_named(name).await?.id)
}

/// The ids of the organisation and project called `org` and `project`,
/// each created when missing.
pub async fn ensure_project(store: &Store, org: &str, project: &str) -> Result<(String, String)> {
    let org_id = ensure_org(store, org).await?;
    let project_id = ensure_project_in(store, &org_id, project).await?;
    Ok((org_id, project_id))
}

/// The id of organisation `org_id`'s project called `name`, created when
/// missing.
pub async fn ensure_project_in(store: &Store, org_id: &str, name: &str) -> Result<String> {
    Ok(store.project_named(org_id, name).await?.id)
}
