//! The typed configuration of `parlance serve` and how its layers combine:
//! built-in defaults < the TOML file < `PARLANCE_*` environment variables <
//! command-line flags.
//!
//! Each layer is a [`Layer`] whose fields are `None` where that layer says
//! nothing; [`resolve`] stacks them and fills what is left with the defaults.
//! The file is `--config FILE`, else `parlance.toml` in the data directory
//! when it exists; with neither, the defaults and the other layers apply
//! alone.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use serde::Deserialize;

/// Name of the config file looked for in the data directory when no
/// `--config` is given.
pub const FILE_NAME: &str = "parlance.toml";

/// Default address to listen on.
pub const DEFAULT_HOST: &str = "127.0.0.1";

/// Default port to listen on.
pub const DEFAULT_PORT: u16 = 8080;

/// Environment variable for [`Layer::host`].
pub const HOST_ENV: &str = "PARLANCE_HOST";
/// Environment variable for [`Layer::port`].
pub const PORT_ENV: &str = "PARLANCE_PORT";
/// Environment variable for [`Layer::models`] (comma-separated).
pub const MODELS_ENV: &str = "PARLANCE_MODELS";
/// Environment variable for [`Layer::threads`].
pub const THREADS_ENV: &str = "PARLANCE_THREADS";
/// Environment variable for [`Layer::kv_cache_tokens`].
pub const KV_CACHE_TOKENS_ENV: &str = "PARLANCE_KV_CACHE_TOKENS";
/// Environment variable for [`Layer::prefix_cache`].
pub const PREFIX_CACHE_ENV: &str = "PARLANCE_PREFIX_CACHE";
/// Environment variable for [`Layer::prefill_stall_ratio`].
pub const PREFILL_STALL_RATIO_ENV: &str = "PARLANCE_PREFILL_STALL_RATIO";
/// Environment variable for [`Layer::database_url`].
pub const DATABASE_URL_ENV: &str = "PARLANCE_DATABASE_URL";
/// Environment variable for [`Layer::rpm`].
pub const RPM_ENV: &str = "PARLANCE_RPM";
/// Environment variable for [`Layer::tpm`].
pub const TPM_ENV: &str = "PARLANCE_TPM";
/// Environment variable for [`Layer::project_rpm`].
pub const PROJECT_RPM_ENV: &str = "PARLANCE_PROJECT_RPM";
/// Environment variable for [`Layer::project_tpm`].
pub const PROJECT_TPM_ENV: &str = "PARLANCE_PROJECT_TPM";
/// Environment variable for [`Layer::redis_url`].
pub const REDIS_URL_ENV: &str = "PARLANCE_REDIS_URL";
/// Environment variable for [`Layer::shutdown_grace_secs`].
pub const SHUTDOWN_GRACE_ENV: &str = "PARLANCE_SHUTDOWN_GRACE_SECS";
/// Default seconds in-flight requests get after SIGTERM or ctrl-c.
pub const DEFAULT_SHUTDOWN_GRACE_SECS: u64 = 30;
/// Environment variable for [`Layer::default_max_tokens`].
pub const DEFAULT_MAX_TOKENS_ENV: &str = "PARLANCE_DEFAULT_MAX_TOKENS";
/// Environment variable for [`Layer::instance_lease_secs`].
pub const INSTANCE_LEASE_ENV: &str = "PARLANCE_INSTANCE_LEASE_SECS";
/// Name of the SQLite file in the data directory when no database URL is set.
pub const DATABASE_FILE: &str = "parlance.db";

/// The keys a config file may hold, for error messages.
const KEYS: &str = "host, port, models, threads, kv_cache_tokens, prefix_cache, \
                    prefill_stall_ratio, data_dir, \
                    database_url, rpm, tpm, project_rpm, project_tpm, redis_url, \
                    shutdown_grace_secs, instance_lease_secs, default_max_tokens, gateway, \
                    embedding_models, embedding_aliases, chat_template, reasoning_field";

/// One layer of `serve` settings (the file, the environment or the flags).
/// Every field is optional: `None` means "this layer does not say", and the
/// next layer down decides. This is also the schema of `parlance.toml`;
/// a key not listed here is an error.
#[derive(Debug, Default, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Layer {
    /// Address to listen on, e.g. `"0.0.0.0"` for every interface
    /// (default `127.0.0.1`; env `PARLANCE_HOST`; flag `--host`).
    pub host: Option<String>,
    /// Port to listen on; `0` picks a free one and the real port is printed
    /// (default `8080`; env `PARLANCE_PORT`; flag `--port`).
    pub port: Option<u16>,
    /// Models to serve, each a catalog name or a path to a GGUF file; every
    /// one is loaded once and listed by `/v1/models` (default: the catalog's
    /// default model, pulled if missing; env `PARLANCE_MODELS`,
    /// comma-separated; flag `--model`, repeated).
    pub models: Option<Vec<String>>,
    /// Worker threads per model for the forward pass; `0` means one per physical core
    /// (default `0`; env `PARLANCE_THREADS`; flag `--threads`).
    pub threads: Option<usize>,
    /// Positions each model's KV cache holds across all sequences; `0`
    /// means the engine's default, twice the context length (default `0`;
    /// env `PARLANCE_KV_CACHE_TOKENS`; flag `--kv-cache-tokens`).
    pub kv_cache_tokens: Option<usize>,
    /// Keep computed KV blocks after a request ends and reuse them for later
    /// requests that share a prefix (default `true`; env
    /// `PARLANCE_PREFIX_CACHE`, `true`/`false`/`1`/`0`; flag
    /// `--prefix-cache <true|false>`).
    pub prefix_cache: Option<bool>,
    /// While sequences generate, a step that also reads new prompts may
    /// last at most this many times a step of the generating rows alone;
    /// the rest of a long prompt waits for the next steps (chunked prefill
    /// between the streams' tokens). Lower keeps streams smoother, higher
    /// gives new prompts their first token sooner; `0` (or anything up to
    /// `1`) turns the bound off (default `1.5`; env
    /// `PARLANCE_PREFILL_STALL_RATIO`; flag `--prefill-stall-ratio`).
    pub prefill_stall_ratio: Option<f64>,
    /// Where models and data live (default: `$XDG_DATA_HOME/parlance`, else
    /// `~/.local/share/parlance`; env `PARLANCE_DATA_DIR`; flag
    /// `--data-dir`).
    pub data_dir: Option<PathBuf>,
    /// The database of keys and the usage ledger: `sqlite://PATH?mode=rwc`
    /// or `postgres://…` (default: `sqlite://<data_dir>/parlance.db?mode=rwc`;
    /// env `PARLANCE_DATABASE_URL`; flag `--database-url`).
    pub database_url: Option<String>,
    /// Requests per minute of each API key that sets no limit of its own;
    /// `0` means no limit (default `10000`; env `PARLANCE_RPM`; flag
    /// `--rpm`).
    pub rpm: Option<u64>,
    /// Tokens (prompt + most that may be generated) per minute of each API
    /// key that sets no limit of its own; `0` means no limit (default
    /// `10000000`; env `PARLANCE_TPM`; flag `--tpm`).
    pub tpm: Option<u64>,
    /// Requests per minute of each project (all its keys together) that
    /// sets no limit of its own; `0` means no limit (default `0`; env
    /// `PARLANCE_PROJECT_RPM`; flag `--project-rpm`).
    pub project_rpm: Option<u64>,
    /// Tokens per minute of each project that sets no limit of its own;
    /// `0` means no limit (default `0`; env `PARLANCE_PROJECT_TPM`; flag
    /// `--project-tpm`).
    pub project_tpm: Option<u64>,
    /// Redis shared by several instances for their rate limits,
    /// `redis://host:port/db` (default: none, limits kept in this process;
    /// env `PARLANCE_REDIS_URL`; flag `--redis-url`).
    pub redis_url: Option<String>,
    /// Seconds that requests and streams in flight may run on after SIGTERM
    /// or ctrl-c before they are dropped (default `30`; env
    /// `PARLANCE_SHUTDOWN_GRACE_SECS`).
    pub shutdown_grace_secs: Option<u64>,
    /// Seconds this instance's lease holds without a heartbeat: after a
    /// crash, its reservations are settled `interrupted` by another
    /// instance (or its own restart) only once it ran out (default `30`;
    /// env `PARLANCE_INSTANCE_LEASE_SECS`).
    pub instance_lease_secs: Option<u64>,
    /// The most tokens a chat choice of a local model generates when its
    /// request sets no `max_tokens` (default `0`: until the context is
    /// full, as OpenAI does; legacy completions keep their default of 16;
    /// env
    /// `PARLANCE_DEFAULT_MAX_TOKENS`; flag `--default-max-tokens`).
    pub default_max_tokens: Option<u32>,
    /// The `[gateway]` section: models, aliases, fallbacks and their
    /// backends (local engine, OpenAI-compatible, Anthropic), retry,
    /// breaker and health-check policy; see `docs/GATEWAY.md`. File only;
    /// validated when the file is read.
    pub gateway: Option<server::gateway::GatewayConfig>,
    /// Embedding models to serve on `POST /v1/embeddings`, each a catalog
    /// name (e.g. `all-minilm-l6-v2`, pulled if missing) or a model folder
    /// (default: none; flag `--embedding-model`, repeated).
    pub embedding_models: Option<Vec<String>>,
    /// Other names the embedding models answer to, alias → model, e.g.
    /// `{ "text-embedding-3-small" = "all-minilm-l6-v2" }` (default: none;
    /// file only).
    pub embedding_aliases: Option<std::collections::BTreeMap<String, String>>,
    /// A Jinja chat template file every local model renders chats with
    /// instead of its GGUF's `tokenizer.chat_template` (e.g. a thinking
    /// template; default: the GGUF's; flag `--chat-template`).
    pub chat_template: Option<PathBuf>,
    /// The field a thinking model's reasoning is written under in chat
    /// answers: `reasoning_content` (llama-server's, the default) or
    /// `reasoning` (vLLM's) (flag `--reasoning-field`).
    pub reasoning_field: Option<String>,
}

impl Layer {
    /// This layer stacked over `lower`: each field set here wins, the rest
    /// come from `lower`.
    pub fn over(self, lower: Layer) -> Layer {
        Layer {
            host: self.host.or(lower.host),
            port: self.port.or(lower.port),
            models: self.models.or(lower.models),
            threads: self.threads.or(lower.threads),
            kv_cache_tokens: self.kv_cache_tokens.or(lower.kv_cache_tokens),
            prefix_cache: self.prefix_cache.or(lower.prefix_cache),
            prefill_stall_ratio: self.prefill_stall_ratio.or(lower.prefill_stall_ratio),
            data_dir: self.data_dir.or(lower.data_dir),
            database_url: self.database_url.or(lower.database_url),
            rpm: self.rpm.or(lower.rpm),
            tpm: self.tpm.or(lower.tpm),
            project_rpm: self.project_rpm.or(lower.project_rpm),
            project_tpm: self.project_tpm.or(lower.project_tpm),
            redis_url: self.redis_url.or(lower.redis_url),
            shutdown_grace_secs: self.shutdown_grace_secs.or(lower.shutdown_grace_secs),
            instance_lease_secs: self.instance_lease_secs.or(lower.instance_lease_secs),
            default_max_tokens: self.default_max_tokens.or(lower.default_max_tokens),
            gateway: self.gateway.or(lower.gateway),
            embedding_models: self.embedding_models.or(lower.embedding_models),
            embedding_aliases: self.embedding_aliases.or(lower.embedding_aliases),
            chat_template: self.chat_template.or(lower.chat_template),
            reasoning_field: self.reasoning_field.or(lower.reasoning_field),
        }
    }

    /// Parses the text of a config file. `path` names the file in errors and
    /// anchors relative paths: a relative `data_dir`, and a relative model
    /// path (one with a `/` or ending in `.gguf`) that is not a catalog name,
    /// are taken from the file's directory.
    pub fn from_toml(text: &str, path: &Path) -> anyhow::Result<Layer> {
        let mut layer: Layer = toml::from_str(text)
            .map_err(|e| anyhow::anyhow!("{}", describe_toml_error(&e, text)))
            .with_context(|| format!("in config file {}", path.display()))?;
        if let Some(ratio) = layer.prefill_stall_ratio {
            check_stall_ratio(ratio)
                .context("bad value for key `prefill_stall_ratio`")
                .with_context(|| format!("in config file {}", path.display()))?;
        }
        if let Some(gateway) = &layer.gateway {
            gateway
                .validate()
                .with_context(|| format!("in config file {}", path.display()))?;
        }
        let base = path.parent().unwrap_or(Path::new(""));
        if let Some(dir) = layer.data_dir.take() {
            layer.data_dir = Some(base.join(dir));
        }
        if let Some(models) = layer.models.as_mut() {
            for model in models.iter_mut() {
                let as_path = Path::new(model.as_str());
                let path_like = model.contains(std::path::MAIN_SEPARATOR)
                    || model.contains('/')
                    || model.ends_with(".gguf");
                if catalog::lookup(model).is_none() && path_like && as_path.is_relative() {
                    *model = base.join(as_path).to_string_lossy().into_owned();
                }
            }
        }
        Ok(layer)
    }

    /// Reads and parses the config file at `path`.
    pub fn from_file(path: &Path) -> anyhow::Result<Layer> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading config file {}", path.display()))?;
        Layer::from_toml(&text, path)
    }

    /// The `PARLANCE_*` variables, read through `env` (empty means unset).
    /// `PARLANCE_DATA_DIR` is not read here: the global `--data-dir` flag
    /// already takes it.
    pub fn from_env(env: impl Fn(&str) -> Option<OsString>) -> anyhow::Result<Layer> {
        let var = |key: &str| -> anyhow::Result<Option<String>> {
            match env(key) {
                None => Ok(None),
                Some(value) if value.is_empty() => Ok(None),
                Some(value) => match value.into_string() {
                    Ok(text) => Ok(Some(text)),
                    Err(_) => bail!("environment variable {key} is not valid UTF-8"),
                },
            }
        };
        let port = match var(PORT_ENV)? {
            None => None,
            Some(text) => Some(text.trim().parse::<u16>().with_context(|| {
                format!("environment variable {PORT_ENV}={text:?}: expected a port number 0-65535")
            })?),
        };
        let threads = match var(THREADS_ENV)? {
            None => None,
            Some(text) => Some(text.trim().parse::<usize>().with_context(|| {
                format!(
                    "environment variable {THREADS_ENV}={text:?}: expected a whole number (0: one per physical core)"
                )
            })?),
        };
        let kv_cache_tokens = match var(KV_CACHE_TOKENS_ENV)? {
            None => None,
            Some(text) => Some(text.trim().parse::<usize>().with_context(|| {
                format!(
                    "environment variable {KV_CACHE_TOKENS_ENV}={text:?}: expected a whole number of positions (0: twice the context length)"
                )
            })?),
        };
        let prefix_cache = match var(PREFIX_CACHE_ENV)? {
            None => None,
            Some(text) => match text.trim().to_ascii_lowercase().as_str() {
                "true" | "1" => Some(true),
                "false" | "0" => Some(false),
                _ => bail!(
                    "environment variable {PREFIX_CACHE_ENV}={text:?}: expected true, false, 1 or 0"
                ),
            },
        };
        let prefill_stall_ratio = match var(PREFILL_STALL_RATIO_ENV)? {
            None => None,
            Some(text) => Some(parse_stall_ratio(&text).with_context(|| {
                format!("environment variable {PREFILL_STALL_RATIO_ENV}={text:?}")
            })?),
        };
        let models = var(MODELS_ENV)?.and_then(|text| {
            let list: Vec<String> = text
                .split(',')
                .map(str::trim)
                .filter(|m| !m.is_empty())
                .map(str::to_owned)
                .collect();
            (!list.is_empty()).then_some(list)
        });
        let limit = |key: &str| -> anyhow::Result<Option<u64>> {
            match var(key)? {
                None => Ok(None),
                Some(text) => Ok(Some(text.trim().parse::<u64>().with_context(|| {
                    format!(
                        "environment variable {key}={text:?}: expected a whole number per minute (0: no limit)"
                    )
                })?)),
            }
        };
        let shutdown_grace_secs = match var(SHUTDOWN_GRACE_ENV)? {
            None => None,
            Some(text) => Some(text.trim().parse::<u64>().with_context(|| {
                format!(
                    "environment variable {SHUTDOWN_GRACE_ENV}={text:?}: expected whole seconds"
                )
            })?),
        };
        let instance_lease_secs = match var(INSTANCE_LEASE_ENV)? {
            None => None,
            Some(text) => Some(
                text.trim()
                    .parse::<u64>()
                    .ok()
                    .filter(|&secs| secs > 0)
                    .with_context(|| {
                        format!(
                            "environment variable {INSTANCE_LEASE_ENV}={text:?}: expected whole \
                             seconds, at least 1"
                        )
                    })?,
            ),
        };
        let default_max_tokens = match var(DEFAULT_MAX_TOKENS_ENV)? {
            None => None,
            Some(text) => Some(text.trim().parse::<u32>().with_context(|| {
                format!(
                    "environment variable {DEFAULT_MAX_TOKENS_ENV}={text:?}: expected a whole \
                     number of tokens (0: until the context is full)"
                )
            })?),
        };
        Ok(Layer {
            host: var(HOST_ENV)?,
            port,
            models,
            threads,
            kv_cache_tokens,
            prefix_cache,
            prefill_stall_ratio,
            data_dir: None,
            database_url: var(DATABASE_URL_ENV)?,
            rpm: limit(RPM_ENV)?,
            tpm: limit(TPM_ENV)?,
            project_rpm: limit(PROJECT_RPM_ENV)?,
            project_tpm: limit(PROJECT_TPM_ENV)?,
            redis_url: var(REDIS_URL_ENV)?,
            shutdown_grace_secs,
            instance_lease_secs,
            default_max_tokens,
            gateway: None,
            embedding_models: None,
            embedding_aliases: None,
            chat_template: None,
            reasoning_field: None,
        })
    }
}

/// The settings `serve` runs with, every layer applied.
#[derive(Debug, Clone, PartialEq)]
pub struct ServeConfig {
    /// Address to listen on.
    pub host: String,
    /// Port to listen on (0: a free one).
    pub port: u16,
    /// Catalog names or GGUF paths, never empty.
    pub models: Vec<String>,
    /// Worker threads per model (0: one per physical core).
    pub threads: usize,
    /// Positions each model's KV cache holds (0: twice the context length).
    pub kv_cache_tokens: usize,
    /// Whether finished requests' KV blocks are kept for prefix reuse.
    pub prefix_cache: bool,
    /// How long a step reading prompts may last beside generating
    /// streams, in decode-only steps (1 or less: unbounded).
    pub prefill_stall_ratio: f64,
    /// Where models and data live.
    pub data_dir: PathBuf,
    /// The database URL (keys, usage ledger).
    pub database_url: String,
    /// Default requests per minute per key (0: no limit).
    pub rpm: u64,
    /// Default tokens per minute per key (0: no limit).
    pub tpm: u64,
    /// Default requests per minute per project (0: no limit).
    pub project_rpm: u64,
    /// Default tokens per minute per project (0: no limit).
    pub project_tpm: u64,
    /// Redis for rate limits shared between instances; `None`: in-process.
    pub redis_url: Option<String>,
    /// Seconds in-flight requests get after SIGTERM or ctrl-c.
    pub shutdown_grace_secs: u64,
    /// How long this instance's lease holds without a heartbeat.
    pub instance_lease: std::time::Duration,
    /// The cap of a choice whose request sets no `max_tokens` (0: none).
    pub default_max_tokens: u32,
    /// The gateway's models and policy (empty: local models only).
    pub gateway: server::gateway::GatewayConfig,
    /// Embedding models (catalog names or folders); may be empty.
    pub embedding_models: Vec<String>,
    /// Embedding model aliases, alias → model.
    pub embedding_aliases: std::collections::BTreeMap<String, String>,
    /// The chat template file replacing every local model's own, if any.
    pub chat_template: Option<PathBuf>,
    /// Where reasoning is written (`reasoning_content` unless set).
    pub reasoning_field: String,
}

/// Stacks the layers, highest last in priority order: `flags` over `env`
/// over `file` over the built-in defaults. `default_data_dir` is the data
/// directory when no layer names one. An empty model list in any layer
/// counts as not set.
pub fn resolve(file: Layer, env: Layer, flags: Layer, default_data_dir: &Path) -> ServeConfig {
    let merged = flags.over(env.over(file));
    let models = merged
        .models
        .filter(|list| !list.is_empty())
        .unwrap_or_else(|| vec![catalog::default_model().name.to_owned()]);
    let data_dir = merged
        .data_dir
        .unwrap_or_else(|| default_data_dir.to_path_buf());
    ServeConfig {
        host: merged.host.unwrap_or_else(|| DEFAULT_HOST.to_owned()),
        port: merged.port.unwrap_or(DEFAULT_PORT),
        models,
        threads: merged.threads.unwrap_or(0),
        kv_cache_tokens: merged.kv_cache_tokens.unwrap_or(0),
        prefix_cache: merged.prefix_cache.unwrap_or(true),
        prefill_stall_ratio: merged
            .prefill_stall_ratio
            .unwrap_or(DEFAULT_PREFILL_STALL_RATIO),
        database_url: merged
            .database_url
            .unwrap_or_else(|| default_database_url(&data_dir)),
        data_dir,
        rpm: merged.rpm.unwrap_or(service::limits::DEFAULT_KEY_RPM),
        tpm: merged.tpm.unwrap_or(service::limits::DEFAULT_KEY_TPM),
        project_rpm: merged.project_rpm.unwrap_or(0),
        project_tpm: merged.project_tpm.unwrap_or(0),
        redis_url: merged.redis_url,
        shutdown_grace_secs: merged
            .shutdown_grace_secs
            .unwrap_or(DEFAULT_SHUTDOWN_GRACE_SECS),
        instance_lease: merged.instance_lease_secs.filter(|&secs| secs > 0).map_or(
            service::instances::DEFAULT_LEASE,
            std::time::Duration::from_secs,
        ),
        default_max_tokens: merged.default_max_tokens.unwrap_or(0),
        gateway: merged.gateway.unwrap_or_default(),
        embedding_models: merged.embedding_models.unwrap_or_default(),
        embedding_aliases: merged.embedding_aliases.unwrap_or_default(),
        chat_template: merged.chat_template,
        reasoning_field: merged
            .reasoning_field
            .unwrap_or_else(|| "reasoning_content".to_owned()),
    }
}

/// The engine's prefill pacing ratio when no layer sets one.
pub const DEFAULT_PREFILL_STALL_RATIO: f64 = 1.5;

/// A prefill stall ratio from text (env or flag): a finite number, at
/// least 0.
pub fn parse_stall_ratio(text: &str) -> anyhow::Result<f64> {
    let ratio: f64 = text.trim().parse().map_err(|_| {
        anyhow::anyhow!("expected a number such as 1.5 (0: no bound), got {text:?}")
    })?;
    check_stall_ratio(ratio)
}

/// `ratio` if it is a finite number of at least 0.
fn check_stall_ratio(ratio: f64) -> anyhow::Result<f64> {
    if !ratio.is_finite() || ratio < 0.0 {
        bail!("the prefill stall ratio must be a finite number of at least 0 (0: no bound), got {ratio}");
    }
    Ok(ratio)
}

/// The SQLite database in `data_dir`, created if missing.
pub fn default_database_url(data_dir: &Path) -> String {
    format!(
        "sqlite://{}?mode=rwc",
        data_dir.join(DATABASE_FILE).display()
    )
}

/// Which file to read: `explicit` (`--config`) if given, which must exist;
/// else `parlance.toml` in `data_dir` if it is there; else none.
pub fn locate(explicit: Option<&Path>, data_dir: &Path) -> Option<PathBuf> {
    if let Some(path) = explicit {
        return Some(path.to_path_buf());
    }
    let candidate = data_dir.join(FILE_NAME);
    candidate.is_file().then_some(candidate)
}

/// The TOML error, with the key it is about named up front: `unknown key
/// `prot`: ...` or `bad value for key `port`: ...`.
fn describe_toml_error(err: &toml::de::Error, text: &str) -> String {
    let span = err.span();
    if err.message().starts_with("unknown field") {
        // The span covers the key itself.
        let key = span
            .and_then(|s| text.get(s))
            .map(|k| k.trim_matches(['"', '\'']));
        return match key {
            Some(key) => format!("unknown key `{key}`: {err}"),
            None => format!("unknown key (the keys are {KEYS}): {err}"),
        };
    }
    match span.and_then(|s| key_before(text, s.start)) {
        Some(key) => format!("bad value for key `{key}`: {err}"),
        None => err.to_string(),
    }
}

/// The key of the `key = value` line whose value starts at byte `at`.
fn key_before(text: &str, at: usize) -> Option<String> {
    let head = text.get(..at)?;
    let line = &head[head.rfind('\n').map_or(0, |i| i + 1)..];
    let (key, _) = line.split_once('=')?;
    let key = key.trim().trim_matches('"').trim_matches('\'');
    (!key.is_empty()).then(|| key.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<OsString> {
        let map: HashMap<String, OsString> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), OsString::from(v)))
            .collect();
        move |key| map.get(key).cloned()
    }

    fn file(text: &str) -> anyhow::Result<Layer> {
        Layer::from_toml(text, Path::new("/etc/parlance/parlance.toml"))
    }

    #[test]
    fn defaults_when_no_layer_says_anything() {
        let config = resolve(
            Layer::default(),
            Layer::default(),
            Layer::default(),
            Path::new("/data"),
        );
        assert_eq!(config.host, "127.0.0.1");
        assert_eq!(config.port, 8080);
        assert_eq!(
            config.models,
            vec![catalog::default_model().name.to_owned()]
        );
        assert_eq!(config.threads, 0);
        assert_eq!(config.kv_cache_tokens, 0);
        assert!(config.prefix_cache);
        assert_eq!(config.data_dir, PathBuf::from("/data"));
        assert_eq!(config.database_url, "sqlite:///data/parlance.db?mode=rwc");
    }

    #[test]
    fn database_url_from_file_env_and_flag() {
        let file = file("database_url = \"sqlite:///f.db\"\ndata_dir = \"/srv\"").unwrap();
        let config = resolve(
            file.clone(),
            Layer::default(),
            Layer::default(),
            Path::new("/d"),
        );
        assert_eq!(config.database_url, "sqlite:///f.db");
        let env = Layer::from_env(env_of(&[("PARLANCE_DATABASE_URL", "sqlite:///e.db")])).unwrap();
        let config = resolve(file.clone(), env.clone(), Layer::default(), Path::new("/d"));
        assert_eq!(config.database_url, "sqlite:///e.db");
        let flags = Layer {
            database_url: Some("sqlite:///g.db".into()),
            ..Layer::default()
        };
        assert_eq!(
            resolve(file, env, flags, Path::new("/d")).database_url,
            "sqlite:///g.db"
        );
        let moved = resolve(
            Layer::from_toml("data_dir = \"/srv\"", Path::new("/x.toml")).unwrap(),
            Layer::default(),
            Layer::default(),
            Path::new("/d"),
        );
        assert_eq!(moved.database_url, "sqlite:///srv/parlance.db?mode=rwc");
    }

    #[test]
    fn file_over_defaults_env_over_file_flags_over_env() {
        let file = file(
            "host = \"0.0.0.0\"\nport = 9000\nmodels = [\"gemma3-270m\"]\nthreads = 4\ndata_dir = \"/srv/parlance\"\n",
        )
        .unwrap();
        let env = Layer::from_env(env_of(&[
            ("PARLANCE_PORT", "9001"),
            ("PARLANCE_THREADS", "2"),
        ]))
        .unwrap();
        let flags = Layer {
            threads: Some(1),
            ..Layer::default()
        };
        let config = resolve(file, env, flags, Path::new("/data"));
        assert_eq!(config.host, "0.0.0.0"); // file
        assert_eq!(config.port, 9001); // env over file
        assert_eq!(config.threads, 1); // flag over env
        assert_eq!(config.models, vec!["gemma3-270m".to_owned()]);
        assert_eq!(config.data_dir, PathBuf::from("/srv/parlance"));
    }

    #[test]
    fn kv_cache_tokens_from_file_env_and_flag() {
        let file = file("kv_cache_tokens = 4096").unwrap();
        let config = resolve(
            file.clone(),
            Layer::default(),
            Layer::default(),
            Path::new("/d"),
        );
        assert_eq!(config.kv_cache_tokens, 4096); // file
        let env = Layer::from_env(env_of(&[("PARLANCE_KV_CACHE_TOKENS", "8192")])).unwrap();
        let config = resolve(file.clone(), env.clone(), Layer::default(), Path::new("/d"));
        assert_eq!(config.kv_cache_tokens, 8192); // env over file
        let flags = Layer {
            kv_cache_tokens: Some(1024),
            ..Layer::default()
        };
        assert_eq!(
            resolve(file, env, flags, Path::new("/d")).kv_cache_tokens,
            1024
        ); // flag over env
    }

    #[test]
    fn prefill_stall_ratio_from_file_env_and_flag() {
        let defaults = resolve(
            Layer::default(),
            Layer::default(),
            Layer::default(),
            Path::new("/d"),
        );
        assert_eq!(defaults.prefill_stall_ratio, DEFAULT_PREFILL_STALL_RATIO);
        let file = file("prefill_stall_ratio = 3").unwrap();
        let config = resolve(
            file.clone(),
            Layer::default(),
            Layer::default(),
            Path::new("/d"),
        );
        assert_eq!(config.prefill_stall_ratio, 3.0); // file over the default
        let env = Layer::from_env(env_of(&[("PARLANCE_PREFILL_STALL_RATIO", " 1.25 ")])).unwrap();
        let config = resolve(file.clone(), env.clone(), Layer::default(), Path::new("/d"));
        assert_eq!(config.prefill_stall_ratio, 1.25); // env over file
        let flags = Layer {
            prefill_stall_ratio: Some(0.0),
            ..Layer::default()
        };
        assert_eq!(
            resolve(file, env, flags, Path::new("/d")).prefill_stall_ratio,
            0.0
        ); // flag over env
    }

    #[test]
    fn a_bad_prefill_stall_ratio_is_named() {
        for bad in ["-1", "fast", "inf", "NaN"] {
            let err =
                Layer::from_env(env_of(&[("PARLANCE_PREFILL_STALL_RATIO", bad)])).unwrap_err();
            let msg = format!("{err:#}");
            assert!(msg.contains("PARLANCE_PREFILL_STALL_RATIO"), "{msg}");
            assert!(parse_stall_ratio(bad).is_err(), "{bad}");
        }
        let err = file("prefill_stall_ratio = -0.5").unwrap_err();
        assert!(
            format!("{err:#}").contains("prefill_stall_ratio"),
            "{err:#}"
        );
        let err = file("prefill_stall_ratio = \"fast\"").unwrap_err();
        assert!(
            format!("{err:#}").contains("prefill_stall_ratio"),
            "{err:#}"
        );
        assert_eq!(parse_stall_ratio("2").unwrap(), 2.0);
    }

    #[test]
    fn prefix_cache_from_file_env_and_flag() {
        let file = file("prefix_cache = false").unwrap();
        let config = resolve(
            file.clone(),
            Layer::default(),
            Layer::default(),
            Path::new("/d"),
        );
        assert!(!config.prefix_cache); // file over the default
        let env = Layer::from_env(env_of(&[("PARLANCE_PREFIX_CACHE", "1")])).unwrap();
        let config = resolve(file.clone(), env.clone(), Layer::default(), Path::new("/d"));
        assert!(config.prefix_cache); // env over file
        let flags = Layer {
            prefix_cache: Some(false),
            ..Layer::default()
        };
        assert!(!resolve(file, env, flags, Path::new("/d")).prefix_cache); // flag over env
        for (text, want) in [("true", true), ("false", false), ("1", true), ("0", false)] {
            let env = Layer::from_env(env_of(&[("PARLANCE_PREFIX_CACHE", text)])).unwrap();
            assert_eq!(env.prefix_cache, Some(want), "{text}");
        }
    }

    #[test]
    fn rate_limits_default_and_layer() {
        let config = resolve(
            Layer::default(),
            Layer::default(),
            Layer::default(),
            Path::new("/d"),
        );
        assert_eq!((config.rpm, config.tpm), (10_000, 10_000_000));
        assert_eq!((config.project_rpm, config.project_tpm), (0, 0));
        assert_eq!(config.redis_url, None);
        let file =
            file("rpm = 60\ntpm = 1000\nproject_rpm = 600\nredis_url = \"redis://f\"").unwrap();
        let env = Layer::from_env(env_of(&[
            ("PARLANCE_RPM", "30"),
            ("PARLANCE_PROJECT_TPM", "5000"),
            ("PARLANCE_REDIS_URL", "redis://e:6379"),
        ]))
        .unwrap();
        let flags = Layer {
            rpm: Some(3),
            ..Layer::default()
        };
        let config = resolve(file, env, flags, Path::new("/d"));
        assert_eq!(config.rpm, 3); // flag over env over file
        assert_eq!(config.tpm, 1000); // file
        assert_eq!(config.project_rpm, 600); // file
        assert_eq!(config.project_tpm, 5000); // env
        assert_eq!(config.redis_url.as_deref(), Some("redis://e:6379"));
        let err = Layer::from_env(env_of(&[("PARLANCE_TPM", "lots")])).unwrap_err();
        assert!(format!("{err:#}").contains("PARLANCE_TPM"), "{err:#}");
    }

    #[test]
    fn empty_model_lists_fall_through() {
        let file = file("models = []").unwrap();
        let env = Layer::from_env(env_of(&[("PARLANCE_MODELS", " , ")])).unwrap();
        assert_eq!(env.models, None);
        let config = resolve(file, env, Layer::default(), Path::new("/d"));
        assert_eq!(
            config.models,
            vec![catalog::default_model().name.to_owned()]
        );
    }

    #[test]
    fn env_models_are_comma_separated_and_empty_vars_are_unset() {
        let env = Layer::from_env(env_of(&[
            ("PARLANCE_MODELS", "a.gguf, gemma3-270m"),
            ("PARLANCE_HOST", ""),
        ]))
        .unwrap();
        assert_eq!(
            env.models,
            Some(vec!["a.gguf".to_owned(), "gemma3-270m".to_owned()])
        );
        assert_eq!(env.host, None);
    }

    #[test]
    fn bad_env_values_name_the_variable() {
        let err = Layer::from_env(env_of(&[("PARLANCE_PORT", "eighty")])).unwrap_err();
        assert!(format!("{err:#}").contains("PARLANCE_PORT"), "{err:#}");
        let err = Layer::from_env(env_of(&[("PARLANCE_THREADS", "-1")])).unwrap_err();
        assert!(format!("{err:#}").contains("PARLANCE_THREADS"), "{err:#}");
        let err = Layer::from_env(env_of(&[("PARLANCE_KV_CACHE_TOKENS", "lots")])).unwrap_err();
        assert!(
            format!("{err:#}").contains("PARLANCE_KV_CACHE_TOKENS"),
            "{err:#}"
        );
        let err = Layer::from_env(env_of(&[("PARLANCE_PREFIX_CACHE", "yes")])).unwrap_err();
        assert!(
            format!("{err:#}").contains("PARLANCE_PREFIX_CACHE"),
            "{err:#}"
        );
    }

    #[test]
    fn unknown_key_is_an_error_naming_it_and_the_file() {
        let err = file("port = 1\nprot = 2\n").unwrap_err();
        let text = format!("{err:#}");
        assert!(text.contains("unknown key `prot`"), "{text}");
        assert!(text.contains("/etc/parlance/parlance.toml"), "{text}");
    }

    #[test]
    fn bad_value_names_the_key_and_the_file() {
        for (toml, key) in [
            ("port = \"eighty\"", "port"),
            ("host = \"h\"\nthreads = -3\n", "threads"),
            ("port = 70000", "port"),
            ("models = \"one\"", "models"),
            ("kv_cache_tokens = -1", "kv_cache_tokens"),
            ("prefix_cache = \"maybe\"", "prefix_cache"),
        ] {
            let text = format!("{:#}", file(toml).unwrap_err());
            assert!(text.contains(&format!("`{key}`")), "{toml}: {text}");
            assert!(text.contains("/etc/parlance/parlance.toml"), "{text}");
        }
    }

    #[test]
    fn relative_paths_in_the_file_are_taken_from_its_directory() {
        let layer =
            file("data_dir = \"data\"\nmodels = [\"m/x.gguf\", \"gemma3-270m\", \"/abs.gguf\"]")
                .unwrap();
        assert_eq!(layer.data_dir, Some(PathBuf::from("/etc/parlance/data")));
        assert_eq!(
            layer.models,
            Some(vec![
                "/etc/parlance/m/x.gguf".to_owned(),
                "gemma3-270m".to_owned(),
                "/abs.gguf".to_owned()
            ])
        );
    }

    #[test]
    fn gateway_section_is_read_and_validated() {
        let layer = file(
            "[[gateway.models]]\nname = \"chat\"\naliases = [\"gpt-4o\"]\n\
             [[gateway.models.backends]]\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:9/v1\"\n",
        )
        .unwrap();
        let config = resolve(layer, Layer::default(), Layer::default(), Path::new("/d"));
        assert_eq!(config.gateway.models[0].name, "chat");
        assert_eq!(config.gateway.models[0].aliases, ["gpt-4o"]);
        assert_eq!(config.shutdown_grace_secs, 30);
        // Validation names the problem and the file.
        let err = file("[[gateway.models]]\nname = \"chat\"\nbackends = []\n").unwrap_err();
        let text = format!("{err:#}");
        assert!(text.contains("at least one backend"), "{text}");
        assert!(text.contains("/etc/parlance/parlance.toml"), "{text}");
        let err = file("[gateway.retry]\nmax_atempts = 3\n").unwrap_err();
        assert!(format!("{err:#}").contains("max_atempts"), "{err:#}");
        let grace = file("shutdown_grace_secs = 5").unwrap();
        let env = Layer::from_env(env_of(&[("PARLANCE_SHUTDOWN_GRACE_SECS", "7")])).unwrap();
        assert_eq!(
            resolve(grace, env, Layer::default(), Path::new("/d")).shutdown_grace_secs,
            7
        );
    }

    #[test]
    fn default_max_tokens_from_file_env_and_flag() {
        let none = resolve(
            Layer::default(),
            Layer::default(),
            Layer::default(),
            Path::new("/d"),
        );
        assert_eq!(none.default_max_tokens, 0);
        let from_file = file("default_max_tokens = 64").unwrap();
        let env = Layer::from_env(env_of(&[("PARLANCE_DEFAULT_MAX_TOKENS", "128")])).unwrap();
        let flags = Layer {
            default_max_tokens: Some(32),
            ..Layer::default()
        };
        let d = Path::new("/d");
        assert_eq!(
            resolve(from_file.clone(), Layer::default(), Layer::default(), d).default_max_tokens,
            64
        );
        assert_eq!(
            resolve(from_file.clone(), env.clone(), Layer::default(), d).default_max_tokens,
            128
        );
        assert_eq!(resolve(from_file, env, flags, d).default_max_tokens, 32);
        let err = Layer::from_env(env_of(&[("PARLANCE_DEFAULT_MAX_TOKENS", "lots")])).unwrap_err();
        assert!(
            format!("{err:#}").contains("PARLANCE_DEFAULT_MAX_TOKENS"),
            "{err:#}"
        );
    }

    #[test]
    fn instance_lease_from_file_and_env() {
        let default = resolve(
            Layer::default(),
            Layer::default(),
            Layer::default(),
            Path::new("/d"),
        );
        assert_eq!(default.instance_lease, service::instances::DEFAULT_LEASE);
        let lease = file("instance_lease_secs = 5").unwrap();
        let env = Layer::from_env(env_of(&[("PARLANCE_INSTANCE_LEASE_SECS", "9")])).unwrap();
        let settings = resolve(lease.clone(), env, Layer::default(), Path::new("/d"));
        assert_eq!(settings.instance_lease, std::time::Duration::from_secs(9));
        let settings = resolve(lease, Layer::default(), Layer::default(), Path::new("/d"));
        assert_eq!(settings.instance_lease, std::time::Duration::from_secs(5));
        let err = Layer::from_env(env_of(&[("PARLANCE_INSTANCE_LEASE_SECS", "0")])).unwrap_err();
        assert!(
            format!("{err:#}").contains("PARLANCE_INSTANCE_LEASE_SECS"),
            "{err:#}"
        );
    }

    #[test]
    fn locate_prefers_the_explicit_file_then_the_data_dir() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(locate(None, dir.path()), None);
        std::fs::write(dir.path().join(FILE_NAME), "").unwrap();
        assert_eq!(locate(None, dir.path()), Some(dir.path().join(FILE_NAME)));
        let other = Path::new("/elsewhere.toml");
        assert_eq!(locate(Some(other), dir.path()), Some(other.to_path_buf()));
    }

    #[test]
    fn a_missing_explicit_file_is_an_error() {
        let err = Layer::from_file(Path::new("/no/such/parlance.toml")).unwrap_err();
        assert!(format!("{err:#}").contains("/no/such/parlance.toml"));
    }
}
