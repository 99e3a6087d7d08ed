//! Deleting a model (`DELETE /v1/models/{model}`) on a self-hosted server.
//!
//! OpenAI deletes a fine-tuned model its owner made. Parlance has no
//! fine-tunes: the models it serves are loaded from the data directory or
//! named in `[gateway]`, and the only names made on top of them are the
//! gateway's **aliases**. So:
//!
//! - an alias is removed from the running routing at once (requests already
//!   routed finish on the old routing) and the removal is audited as
//!   `model.alias_deleted`; the answer is OpenAI's `model.deleted` object.
//!   The configuration file is not rewritten: a reload (SIGHUP) or a
//!   restart reads it again, so delete the alias there to make it last;
//! - a served model (loaded, or a `[gateway]` model) is refused with a 400
//!   naming `model`: stop serving it by changing the configuration;
//! - an alias still named as another model's fallback is refused with the
//!   same 400, saying where it is used;
//! - only an admin of the installation's default organisation may delete
//!   (the `PARLANCE_ADMIN_KEY`, the open server's local caller, an admin
//!   key or an owner or admin signed in to it): anyone else who can see the
//!   model gets a 403;
//! - a model the caller cannot see or that does not exist is a 404
//!   `model_not_found`, as everywhere.

use api::{ApiError, InvalidCode, ModelDeleted};
use store::NewAuditEntry;

use crate::{Result, Service, Tenant, DEFAULT_ORG};

impl Service {
    /// Deletes `id` for `tenant` as the module says.
    pub async fn delete_model(&self, tenant: Option<&Tenant>, id: &str) -> Result<ModelDeleted> {
        let routing = self.routing();
        let resolved = routing.resolve(tenant, id)?;
        if let Some(tenant) = tenant {
            if !self.installation_admin(tenant).await? {
                return Err(ApiError::Forbidden {
                    message: "You have insufficient permissions for this operation: deleting a \
                              model needs an admin of the installation's default organization."
                        .into(),
                }
                .into());
            }
        }
        if resolved.model == id {
            return Err(ApiError::invalid(
                "model",
                InvalidCode::InvalidValue,
                format!(
                    "`{id}` is a model this server serves, not an alias, so it cannot be \
                     deleted here; stop serving it by changing the configuration (the models \
                     loaded and the [gateway] section)."
                ),
            )
            .into());
        }
        let mut config = routing.source.clone();
        for model in &mut config.models {
            if model.fallbacks.iter().any(|fallback| fallback == id) {
                return Err(ApiError::invalid(
                    "model",
                    InvalidCode::InvalidValue,
                    format!(
                        "The alias `{id}` is in use: it is a fallback of `{}`; remove it from \
                         there first.",
                        model.name
                    ),
                )
                .into());
            }
            model.aliases.retain(|alias| alias != id);
        }
        self.reload_gateway(&config)
            .map_err(|err| ApiError::Internal {
                detail: format!("cannot route without the alias `{id}`: {err}"),
            })?;
        tracing::info!(alias = %id, model = %resolved.model, "model alias deleted");
        if let (Some(meter), Some(tenant)) = (self.meter(), tenant) {
            meter
                .store()
                .append_audit(&NewAuditEntry {
                    org_id: tenant.org_id.clone(),
                    actor: tenant.api_key_id.clone(),
                    action: "model.alias_deleted".into(),
                    target: id.to_owned(),
                    before: Some(serde_json::json!({ "alias": id, "model": resolved.model })),
                    after: None,
                })
                .await?;
        }
        Ok(ModelDeleted::new(id))
    }

    /// Whether `tenant` is an admin of the installation's default
    /// organisation.
    async fn installation_admin(&self, tenant: &Tenant) -> Result<bool> {
        if !tenant.admin {
            return Ok(false);
        }
        let Some(meter) = self.meter() else {
            return Ok(false);
        };
        let default = meter.store().find_org_by_name(DEFAULT_ORG).await?;
        Ok(default.is_some_and(|org| org.id == tenant.org_id))
    }
}
