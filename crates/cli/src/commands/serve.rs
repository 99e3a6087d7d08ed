//! `parlance serve`: open the store (settling what a crash left open),
//! decide how requests are authenticated, load the models once and serve
//! the OpenAI-compatible API over HTTP until ctrl-c or SIGTERM (then
//! finishing the requests in flight, up to the shutdown grace). Chat models
//! are routed by the `[gateway]` section (remote backends, aliases,
//! fallbacks); every loaded model without an entry there is served as is.
//! On SIGHUP the file is read again and its `[gateway]` section replaces the
//! running one (streams in flight finish on the old one; an invalid file is
//! refused, with the error printed, and the old configuration kept); each
//! reload is recorded in the audit log.
//!
//! With any API key in the store, or `PARLANCE_ADMIN_KEY` set, every route
//! but `/health` asks for a key. With none, `serve` runs open on a loopback
//! address (saying so loudly) and refuses to start on any other. Either way
//! every generation is metered in the usage ledger; keyless requests are
//! billed to the installation's default organisation and project (the one
//! `parlance keys create` uses without `--org`), as key id `local`.
//!
//! The web app's front door is set from the environment: `PARLANCE_SIGNUP`
//! (`approval`, the default, `open` or `closed`) and
//! `PARLANCE_TRUSTED_PROXIES` (whose `X-Forwarded-For` names the client for
//! per-address sign-in throttling); a value that means nothing stops
//! `serve` with an error naming it.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use engine::{EngineConfig, EngineHandle};
use server::{AdminKey, Auth};
use service::generation::reasoning::ReasoningField;
use service::instances::Lease;
use service::{Tenant, ADMIN_KEY_ID, LOCAL_KEY_ID};
use store::Store;

use crate::config::{self, Layer, ServeConfig};

/// The environment variable holding the admin key.
pub const ADMIN_KEY_ENV: &str = "PARLANCE_ADMIN_KEY";
/// The environment variable naming the budget soft-limit webhook.
pub const BUDGET_WEBHOOK_ENV: &str = "PARLANCE_BUDGET_WEBHOOK";

/// The flags of `parlance serve`. Each is optional: one not given falls
/// through to the `PARLANCE_*` environment, then the config file, then the
/// built-in default (see [`crate::config`]).
#[derive(clap::Args, Default, Clone)]
pub struct Args {
    /// Address to listen on [env: PARLANCE_HOST] (default: 127.0.0.1).
    #[arg(long)]
    pub host: Option<String>,
    /// Port to listen on; 0 picks a free one and the real port is printed
    /// [env: PARLANCE_PORT] (default: 8080).
    #[arg(long)]
    pub port: Option<u16>,
    /// Catalog name or GGUF path of a model to serve; repeat for several
    /// [env: PARLANCE_MODELS, comma-separated] (default: the catalog's
    /// default model, pulled if missing).
    #[arg(long = "model")]
    pub models: Vec<String>,
    /// Worker threads per model for the forward pass; 0 is one per physical core
    /// [env: PARLANCE_THREADS] (default: 0).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Positions each model's KV cache holds across all sequences; 0 is
    /// twice the context length [env: PARLANCE_KV_CACHE_TOKENS] (default: 0).
    #[arg(long, value_name = "N")]
    pub kv_cache_tokens: Option<usize>,
    /// Keep computed KV blocks after a request ends and reuse them for later
    /// requests sharing a prefix [env: PARLANCE_PREFIX_CACHE] (default:
    /// true).
    #[arg(long)]
    pub prefix_cache: Option<bool>,
    /// While streams generate, a step that also reads new prompts lasts at
    /// most this many times a step of the streams alone (lower: smoother
    /// streams; higher: sooner first tokens; 0: no bound)
    /// [env: PARLANCE_PREFILL_STALL_RATIO] (default: 1.5).
    #[arg(long, value_name = "RATIO", value_parser = config::parse_stall_ratio)]
    pub prefill_stall_ratio: Option<f64>,
    /// TOML config file (default: parlance.toml in the data directory, if
    /// it exists). Flags and PARLANCE_* variables override it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The database of keys and usage: sqlite://PATH?mode=rwc or
    /// postgres://… [env: PARLANCE_DATABASE_URL] (default: parlance.db in
    /// the data directory).
    #[arg(long)]
    pub database_url: Option<String>,
    /// Requests per minute of each API key without its own limit; 0: no
    /// limit [env: PARLANCE_RPM] (default: 10000).
    #[arg(long)]
    pub rpm: Option<u64>,
    /// Tokens (prompt + max output) per minute of each API key without its
    /// own limit; 0: no limit [env: PARLANCE_TPM] (default: 10000000).
    #[arg(long)]
    pub tpm: Option<u64>,
    /// Requests per minute of each project without its own limit; 0: no
    /// limit [env: PARLANCE_PROJECT_RPM] (default: 0).
    #[arg(long)]
    pub project_rpm: Option<u64>,
    /// Tokens per minute of each project without its own limit; 0: no
    /// limit [env: PARLANCE_PROJECT_TPM] (default: 0).
    #[arg(long)]
    pub project_tpm: Option<u64>,
    /// The most tokens a choice generates when its request sets no
    /// max_tokens; 0: until the context is full [env:
    /// PARLANCE_DEFAULT_MAX_TOKENS] (default: 0).
    #[arg(long, value_name = "N")]
    pub default_max_tokens: Option<u32>,
    /// Redis that several instances share their rate limits through,
    /// redis://host:port/db [env: PARLANCE_REDIS_URL] (default: none, limits
    /// kept in this process).
    #[arg(long)]
    pub redis_url: Option<String>,
    /// Catalog name or folder of an embedding model to serve on
    /// /v1/embeddings (e.g. all-minilm-l6-v2, pulled if missing); repeat
    /// for several (default: none).
    #[arg(long = "embedding-model")]
    pub embedding_models: Vec<String>,
    /// A Jinja chat template file every local model renders chats with
    /// instead of its GGUF's (e.g. a thinking template) (default: the
    /// GGUF's).
    #[arg(long, value_name = "FILE")]
    pub chat_template: Option<PathBuf>,
    /// The field a thinking model's reasoning is written under in chat
    /// answers: reasoning_content (llama-server's) or reasoning (vLLM's)
    /// (default: reasoning_content).
    #[arg(long, value_name = "FIELD")]
    pub reasoning_field: Option<String>,
}

/// Every layer applied: the file (`--config`, else `parlance.toml` in
/// `default_data_dir`), the environment, then the flags. `data_dir_flag` is
/// the global `--data-dir` (or `PARLANCE_DATA_DIR`), which beats the file.
pub fn settings(
    args: &Args,
    data_dir_flag: Option<&Path>,
    default_data_dir: &Path,
) -> anyhow::Result<ServeConfig> {
    let file = match config::locate(args.config.as_deref(), default_data_dir) {
        Some(path) => {
            let layer = Layer::from_file(&path)?;
            eprintln!("config from {}", path.display());
            layer
        }
        None => Layer::default(),
    };
    let env = Layer::from_env(|key| std::env::var_os(key))?;
    let flags = Layer {
        host: args.host.clone(),
        port: args.port,
        models: (!args.models.is_empty()).then(|| args.models.clone()),
        threads: args.threads,
        kv_cache_tokens: args.kv_cache_tokens,
        prefix_cache: args.prefix_cache,
        prefill_stall_ratio: args.prefill_stall_ratio,
        data_dir: data_dir_flag.map(Path::to_path_buf),
        database_url: args.database_url.clone(),
        rpm: args.rpm,
        tpm: args.tpm,
        project_rpm: args.project_rpm,
        project_tpm: args.project_tpm,
        redis_url: args.redis_url.clone(),
        shutdown_grace_secs: None,
        instance_lease_secs: None,
        default_max_tokens: args.default_max_tokens,
        gateway: None,
        embedding_models: (!args.embedding_models.is_empty())
            .then(|| args.embedding_models.clone()),
        embedding_aliases: None,
        chat_template: args.chat_template.clone(),
        reasoning_field: args.reasoning_field.clone(),
    };
    Ok(config::resolve(file, env, flags, default_data_dir))
}

/// Resolves the settings, opens the store, loads every model once, then
/// serves until ctrl-c or SIGTERM, when requests in flight get
/// `shutdown_grace_secs` to finish and the ledger is flushed before exit.
pub fn run(
    args: Args,
    data_dir_flag: Option<&Path>,
    default_data_dir: &Path,
) -> anyhow::Result<()> {
    let settings = settings(&args, data_dir_flag, default_data_dir)?;
    let data_dir = settings.data_dir.as_path();
    eprintln!("{}", crate::model_arg::kernel_level()?);
    if let Some(limit) = crate::open_files::raise() {
        eprintln!("open files: up to {limit}");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let admin = std::env::var(ADMIN_KEY_ENV).ok().and_then(AdminKey::new);
    let reasoning_field = ReasoningField::parse(&settings.reasoning_field).with_context(|| {
        format!(
            "reasoning_field = {:?}: expected reasoning_content or reasoning",
            settings.reasoning_field
        )
    })?;
    let chat_template = match &settings.chat_template {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .with_context(|| format!("reading the chat template {}", path.display()))?,
        ),
        None => None,
    };
    let (auth, store, local_org, lease) = runtime.block_on(prepare(&settings, admin))?;
    let mut models: Vec<(String, EngineHandle)> = Vec::new();
    for name in &settings.models {
        let resolved = catalog::ensure(name, data_dir, &mut crate::model_arg::print_progress)?;
        if models.iter().any(|(served, _)| *served == resolved.name) {
            continue;
        }
        let config = EngineConfig {
            threads: settings.threads,
            kv_cache_tokens: settings.kv_cache_tokens,
            prefix_cache: settings.prefix_cache,
            prefill_stall_ratio: settings.prefill_stall_ratio,
            ..EngineConfig::default()
        };
        let mut engine = EngineHandle::start(&resolved.path, config)
            .with_context(|| format!("loading {}", resolved.path.display()))?;
        if let (Some(source), Some(path)) = (&chat_template, &settings.chat_template) {
            engine = engine
                .with_chat_template(source)
                .with_context(|| format!("the chat template {}", path.display()))?;
        }
        eprintln!("loaded {} from {}", resolved.name, resolved.path.display());
        models.push((resolved.name, engine));
    }
    let embedders = crate::embedding_models::load(&settings, data_dir)?;
    runtime.block_on(async move {
        let limiter = rate_limiter(&settings).await?;
        let (host, port) = (settings.host.as_str(), settings.port);
        let listener = tokio::net::TcpListener::bind((host, port))
            .await
            .with_context(|| format!("binding {host}:{port}"))?;
        let addr = listener.local_addr().context("reading the bound address")?;
        eprintln!("listening on http://{addr}");
        let state = server::AppState::new(models)
            .with_gateway(&settings.gateway)
            .context("the [gateway] configuration")?
            .with_shutdown_grace(std::time::Duration::from_secs(settings.shutdown_grace_secs))
            .with_auth(auth)
            .with_lease(lease)
            .with_default_max_tokens(settings.default_max_tokens)
            .with_reasoning_field(reasoning_field)
            .with_embedders(embedders)
            .with_rate_limits(limiter, limit_defaults(&settings))
            .with_budget_webhook(
                std::env::var(BUDGET_WEBHOOK_ENV)
                    .ok()
                    .filter(|u| !u.is_empty()),
            )
            .with_front_door_env()
            .map_err(anyhow::Error::msg)?;
        #[cfg(unix)]
        tokio::spawn(reload_on_sighup(
            state.clone(),
            Reload {
                args,
                data_dir_flag: data_dir_flag.map(Path::to_path_buf),
                default_data_dir: default_data_dir.to_path_buf(),
                store,
                org_id: local_org,
                current: settings.gateway.clone(),
            },
        ));
        #[cfg(not(unix))]
        let _ = (store, local_org);
        server::serve(listener, state).await?;
        Ok(())
    })
}

/// The rate-limit buckets: in Redis when `redis_url` is set (refusing to
/// start when it cannot be reached), else in this process.
async fn rate_limiter(settings: &ServeConfig) -> anyhow::Result<server::Limiter> {
    let url = settings.redis_url.as_deref();
    let limiter = server::Limiter::from_url(url)
        .await
        .context("connecting to Redis for rate limits (--redis-url, PARLANCE_REDIS_URL)")?;
    if url.is_some() {
        eprintln!("rate limits shared through Redis");
    }
    Ok(limiter)
}

/// The per-key and per-project limits of keys and projects that set none
/// (0: no limit).
fn limit_defaults(settings: &ServeConfig) -> service::LimitDefaults {
    service::LimitDefaults {
        key: store::RateLimits {
            rpm: Some(settings.rpm),
            tpm: Some(settings.tpm),
        },
        project: store::RateLimits {
            rpm: Some(settings.project_rpm),
            tpm: Some(settings.project_tpm),
        },
    }
}

/// Opens the store at `url` (creating `data_dir` for a default SQLite file)
/// and applies its migrations.
pub async fn open_store(url: &str, data_dir: &Path) -> anyhow::Result<Store> {
    if url.starts_with("sqlite:") {
        std::fs::create_dir_all(data_dir)
            .with_context(|| format!("creating {}", data_dir.display()))?;
    }
    Store::connect(url)
        .await
        .context("opening the database (--database-url, PARLANCE_DATABASE_URL)")
}

/// What a SIGHUP reload needs.
struct Reload {
    args: Args,
    data_dir_flag: Option<PathBuf>,
    default_data_dir: PathBuf,
    /// Where reloads are audited, under the default organisation.
    store: Store,
    org_id: String,
    /// The `[gateway]` section in force.
    current: server::gateway::GatewayConfig,
}

/// Reloads the `[gateway]` section on every SIGHUP.
#[cfg(unix)]
async fn reload_on_sighup(state: server::AppState, mut reload: Reload) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hangups = match signal(SignalKind::hangup()) {
        Ok(hangups) => hangups,
        Err(err) => {
            tracing::error!(error = %err, "cannot listen for SIGHUP; reload disabled");
            return;
        }
    };
    while hangups.recv().await.is_some() {
        let loaded = settings(
            &reload.args,
            reload.data_dir_flag.as_deref(),
            &reload.default_data_dir,
        )
        .and_then(|loaded| {
            state
                .reload_gateway(&loaded.gateway)
                .context("the [gateway] configuration")?;
            Ok(loaded.gateway)
        });
        match loaded {
            Ok(new) => {
                eprintln!(
                    "configuration reloaded: {} gateway model(s)",
                    new.models.len()
                );
                tracing::info!("gateway configuration reloaded");
                let (before, after) = (redacted(&reload.current), redacted(&new));
                let audited = service::manage::record_gateway_reload(
                    &reload.store,
                    &reload.org_id,
                    &before,
                    &after,
                );
                if let Err(err) = audited.await {
                    tracing::error!(error = %err, "cannot audit the reload");
                }
                reload.current = new;
            }
            Err(err) => {
                eprintln!("configuration reload refused; the old one stays: {err:#}");
                tracing::error!(error = %format!("{err:#}"), "configuration reload refused");
            }
        }
    }
}

/// A gateway configuration as the audit log keeps it: API keys masked.
fn redacted(config: &server::gateway::GatewayConfig) -> serde_json::Value {
    let mut value = serde_json::to_value(config).unwrap_or(serde_json::Value::Null);
    if let Some(models) = value["models"].as_array_mut() {
        for model in models {
            if let Some(backends) = model["backends"].as_array_mut() {
                for backend in backends {
                    if !backend["api_key"].is_null() {
                        backend["api_key"] = serde_json::Value::String("***".into());
                    }
                }
            }
        }
    }
    value
}

/// Opens the store, takes this instance's lease, settles what crashed
/// instances left open (those whose lease ran out), and decides how
/// requests are authenticated; also hands back the store, the default
/// organisation's id and the lease.
async fn prepare(
    settings: &ServeConfig,
    admin: Option<AdminKey>,
) -> anyhow::Result<(Auth, Store, String, Lease)> {
    let store = open_store(&settings.database_url, &settings.data_dir).await?;
    let lease = Lease::acquire(&store, settings.instance_lease)
        .await
        .context("registering this instance's lease")?;
    recover(&lease).await?;
    // Revoked keys count: revoking every key must not open the server.
    let any_key = store.count_keys().await? > 0;
    // The admin key and the open server's single user manage the
    // installation's default organisation.
    let keyless = Tenant::installation(&store, LOCAL_KEY_ID).await?;
    let org_id = keyless.org_id.clone();
    if any_key || admin.is_some() {
        let admin_tenant = Tenant {
            api_key_id: ADMIN_KEY_ID.to_owned(),
            ..keyless
        };
        let admin = admin.map(|key| (key, admin_tenant));
        let auth = Auth::Keys {
            store: store.clone(),
            admin,
        };
        return Ok((auth, store, org_id, lease));
    }
    if !is_loopback(&settings.host) {
        bail!(
            "refusing to serve on {} without API keys: anyone who can reach it could use it. \
             Create a key with `parlance keys create` or set {ADMIN_KEY_ENV}, \
             or serve on 127.0.0.1",
            settings.host
        );
    }
    eprintln!(
        "WARNING: no API key is configured: serving OPEN, without authentication, on {} \
         (loopback only). Create one with `parlance keys create` to require keys.",
        settings.host
    );
    tracing::warn!("serving open: no API key configured");
    let auth = Auth::Open {
        store: store.clone(),
        tenant: keyless,
    };
    Ok((auth, store, org_id, lease))
}

/// Settles every reservation a crashed instance left open — those whose
/// owner's lease ran out, never a live instance's — as `interrupted`, for
/// what it had produced at its last progress record. A crashed instance
/// whose lease still holds is swept later, by whichever instance runs.
async fn recover(lease: &Lease) -> anyhow::Result<()> {
    let settled = lease
        .sweep()
        .await
        .context("settling interrupted requests")?;
    if settled > 0 {
        eprintln!(
            "recovered {settled} interrupted request(s): settled as `interrupted` for the tokens \
             they had produced at their last checkpoint"
        );
        tracing::warn!(count = settled, "settled interrupted requests");
    }
    Ok(())
}

/// Whether `host` names only this machine.
fn is_loopback(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.eq_ignore_ascii_case("localhost")
        || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts() {
        for host in ["127.0.0.1", "localhost", "::1", "[::1]", "127.0.0.2"] {
            assert!(is_loopback(host), "{host}");
        }
        for host in ["0.0.0.0", "::", "192.168.1.2", "example.org"] {
            assert!(!is_loopback(host), "{host}");
        }
    }
}
