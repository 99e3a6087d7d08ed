//! Model access of a key: a key with `allowed_models` may use only those
//! models. Any other is answered exactly like a model that does not exist
//! (404 `model_not_found`), so a key learns nothing about the models it may
//! not use, and `/v1/models` lists only the models the key may use.

use api::ApiError;
use axum::Extension;

use crate::auth::Caller;
use crate::state::{AppState, ServedModel};

/// Whether the caller may use `model` (every model when it is unmetered or
/// its key has no list).
pub fn may_use(caller: Option<&Extension<Caller>>, model: &str) -> bool {
    match caller {
        Some(Extension(Caller::Tenant(tenant))) => tenant
            .allowed_models
            .as_ref()
            .is_none_or(|models| models.iter().any(|m| m == model)),
        _ => true,
    }
}

/// The served model `name` if the caller may use it; otherwise the same
/// 404 `model_not_found` as an unknown model.
pub fn resolve_model<'a>(
    state: &'a AppState,
    caller: Option<&Extension<Caller>>,
    name: &str,
) -> Result<&'a ServedModel, ApiError> {
    if !may_use(caller, name) {
        return Err(ApiError::ModelNotFound {
            model: name.to_owned(),
        });
    }
    state.model(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metering::Tenant;

    fn tenant(models: Option<Vec<&str>>) -> Option<Extension<Caller>> {
        Some(Extension(Caller::Tenant(Tenant {
            allowed_models: models.map(|m| m.into_iter().map(str::to_owned).collect()),
            ..Tenant::default()
        })))
    }

    #[test]
    fn only_listed_models_are_usable() {
        assert!(may_use(tenant(None).as_ref(), "any"));
        assert!(may_use(tenant(Some(vec!["a", "b"])).as_ref(), "b"));
        assert!(!may_use(tenant(Some(vec!["a"])).as_ref(), "b"));
        assert!(!may_use(tenant(Some(vec![])).as_ref(), "a"));
        assert!(may_use(Some(&Extension(Caller::Unmetered)), "a"));
        assert!(may_use(None, "a"));
    }

    #[test]
    fn a_forbidden_model_reads_as_unknown() {
        let state = AppState::new([]);
        let Err(err) = resolve_model(&state, tenant(Some(vec!["a"])).as_ref(), "b") else {
            panic!("a forbidden model resolved");
        };
        assert_eq!(err, ApiError::ModelNotFound { model: "b".into() });
    }
}
