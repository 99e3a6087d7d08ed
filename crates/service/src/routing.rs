//! The models served and the one model resolution every endpoint uses.
//!
//! [`Routing`] holds the gateway (every chat model, local ones included,
//! with its backends, aliases and fallbacks) and, per gateway model, the
//! local engine that can answer it directly. Every locally loaded model
//! without a `[gateway]` entry of its own gets one gateway model with a
//! single `local` backend ([`Routing::build`]), so `/v1/models`, `/status`
//! and routing see one list of models.
//!
//! [`Routing::resolve`] is the one resolution: an alias becomes its gateway
//! model; a key limited to some models may use a model when either the name
//! it asked for or the gateway model is on its list, and any other model
//! reads exactly like one that does not exist (404 `model_not_found`), so a
//! key learns nothing about the models it may not use. Chat, completions,
//! tokenizing and the model list all go through it.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;

use api::{ApiError, InvalidCode};
use engine::EngineHandle;
use gateway::{BackendKind, ConfigError, Gateway, GatewayConfig, ModelConfig};

use crate::generation::engine_backend::EngineBackend;
use crate::generation::AnswerDefaults;
use crate::Tenant;

/// One locally loaded model.
#[derive(Clone)]
pub struct ServedModel {
    /// The name it is loaded as (catalog name or file stem).
    pub name: String,
    /// The running engine.
    pub engine: EngineHandle,
    /// Unix seconds when the model was registered.
    pub created: u64,
}

/// A gateway model's local engine, if it has one.
#[derive(Clone)]
struct LocalRoute {
    /// The engine of the model's first `local` backend.
    engine: ServedModel,
    /// Whether that backend is the model's only one, with no fallback: the
    /// request then takes the direct engine path (logprobs, `n`, exact
    /// prompt counts, the prefix cache's cached tokens).
    direct: bool,
}

/// The gateway and the local engines behind it.
pub struct Routing {
    /// Routes every chat model (local ones included) to its backends.
    pub gateway: Gateway,
    /// Gateway model → its local engine.
    local: HashMap<String, LocalRoute>,
    /// Every gateway model with its aliases, in configuration order (the
    /// implied local models last).
    pub catalog: Vec<(String, Vec<String>)>,
    /// The `[gateway]` configuration this routing was built from (without
    /// the implied local models), for changing it at run time.
    pub source: GatewayConfig,
}

/// A model name resolved for one caller.
#[derive(Clone)]
pub struct Resolved {
    /// The gateway model that answers (an alias resolved), the name the
    /// answer and the ledger carry.
    pub model: String,
    /// Its local engine, if it has one.
    local: Option<LocalRoute>,
}

impl Resolved {
    /// The engine to answer on directly: `Some` when the model is served by
    /// exactly one local backend and no fallback; `None` routes through
    /// the gateway.
    pub fn direct(&self) -> Option<&ServedModel> {
        self.local
            .as_ref()
            .filter(|local| local.direct)
            .map(|local| &local.engine)
    }

    /// The local engine of an endpoint that only the engine serves
    /// (completions, tokenizing): a 400 naming `model` when the model is
    /// served by remote backends only.
    pub fn engine(&self) -> Result<&ServedModel, ApiError> {
        self.local
            .as_ref()
            .map(|local| &local.engine)
            .ok_or_else(|| {
                ApiError::invalid(
                    "model",
                    InvalidCode::InvalidValue,
                    format!(
                        "The model `{}` is served by remote backends, which answer only \
                     /v1/chat/completions.",
                        self.model
                    ),
                )
            })
    }
}

impl Routing {
    /// The gateway for `config` plus one single-`local`-backend model per
    /// engine in `engines` (in `order`) that the config does not name (as a
    /// model or an alias). Every `local` backend must name a loaded engine
    /// (its `model`, else the gateway model's name).
    pub fn build(
        config: &GatewayConfig,
        engines: &BTreeMap<String, ServedModel>,
        order: &[String],
        live: &Arc<AtomicUsize>,
        answer_defaults: &Arc<AnswerDefaults>,
    ) -> Result<Routing, ConfigError> {
        let source = config.clone();
        let mut config = config.clone();
        for name in order {
            if config.resolve(name).is_none() {
                let backend = serde_json::from_value(serde_json::json!({
                    "id": format!("{name}#local"),
                    "kind": "local",
                }))
                .map_err(|err| ConfigError::Build {
                    id: name.clone(),
                    problem: err.to_string(),
                })?;
                config.models.push(ModelConfig {
                    name: name.clone(),
                    aliases: Vec::new(),
                    fallbacks: Vec::new(),
                    routing: gateway::RoutingStrategy::default(),
                    backends: vec![backend],
                });
            }
        }
        config.validate()?;
        let mut builder = Gateway::builder(config.clone());
        let mut local = HashMap::new();
        for model in &config.models {
            for (index, entry) in model.backends.iter().enumerate() {
                if entry.kind != BackendKind::Local {
                    continue;
                }
                let id = gateway::config::backend_id(&model.name, index, entry);
                let engine_name = entry.upstream_model(&model.name);
                let Some(served) = engines.get(engine_name) else {
                    return Err(ConfigError::Build {
                        id,
                        problem: format!("no local model `{engine_name}` is loaded"),
                    });
                };
                local
                    .entry(model.name.clone())
                    .or_insert_with(|| LocalRoute {
                        engine: served.clone(),
                        direct: model.backends.len() == 1 && model.fallbacks.is_empty(),
                    });
                let backend = EngineBackend::new(
                    served.engine.clone(),
                    live.clone(),
                    answer_defaults.clone(),
                );
                builder = builder.backend(id, Arc::new(backend));
            }
        }
        let catalog = config
            .models
            .iter()
            .map(|m| (m.name.clone(), m.aliases.clone()))
            .collect();
        Ok(Routing {
            gateway: builder.build()?,
            local,
            catalog,
            source,
        })
    }

    /// Only the local models, each as itself (no `[gateway]` section).
    pub fn local_only(
        engines: &BTreeMap<String, ServedModel>,
        order: &[String],
        live: &Arc<AtomicUsize>,
        answer_defaults: &Arc<AnswerDefaults>,
    ) -> Routing {
        let config = GatewayConfig::default();
        Routing::build(&config, engines, order, live, answer_defaults).unwrap_or_else(|err| {
            // Only the implied entries are there: one per distinct name.
            tracing::error!(error = %err, "cannot route the local models");
            Routing {
                gateway: Gateway::builder(GatewayConfig::default())
                    .build()
                    .expect("an empty gateway configuration is valid"),
                local: HashMap::new(),
                catalog: Vec::new(),
                source: GatewayConfig::default(),
            }
        })
    }

    /// `asked` (a model or an alias) as `tenant` may use it, or the same
    /// 404 `model_not_found` as an unknown model.
    pub fn resolve(&self, tenant: Option<&Tenant>, asked: &str) -> Result<Resolved, ApiError> {
        let not_found = || ApiError::ModelNotFound {
            model: asked.to_owned(),
        };
        let model = self.gateway.resolve(asked).ok_or_else(not_found)?;
        if !may_use(tenant, asked) && !may_use(tenant, model) {
            return Err(not_found());
        }
        Ok(Resolved {
            model: model.to_owned(),
            local: self.local.get(model).cloned(),
        })
    }

    /// Whether gateway model `model` takes the direct engine path.
    pub fn is_direct(&self, model: &str) -> bool {
        self.local.get(model).is_some_and(|local| local.direct)
    }

    /// Every model and alias `tenant` may use, each with the gateway model
    /// it resolves to.
    pub fn visible(&self, tenant: Option<&Tenant>) -> Vec<(String, String)> {
        let mut visible = Vec::new();
        for (name, aliases) in &self.catalog {
            for id in std::iter::once(name).chain(aliases) {
                if may_use(tenant, id) || may_use(tenant, name) {
                    visible.push((id.clone(), name.clone()));
                }
            }
        }
        visible
    }
}

/// Whether `tenant` may use `model` (everyone may when unmetered).
fn may_use(tenant: Option<&Tenant>, model: &str) -> bool {
    tenant.is_none_or(|tenant| tenant.may_use(model))
}
