//! The settings `serve` runs with ([`ServeConfig`]): the built-in
//! defaults, and [`resolve`], which stacks the file, environment and flag
//! layers and fills what none of them says with those defaults.

use std::path::{Path, PathBuf};

use super::Layer;

/// Default address to listen on.
pub const DEFAULT_HOST: &str = "127.0.0.1";

/// Default port to listen on.
pub const DEFAULT_PORT: u16 = 8080;

/// Default seconds in-flight requests get after SIGTERM or ctrl-c.
pub const DEFAULT_SHUTDOWN_GRACE_SECS: u64 = 30;
/// Name of the SQLite file in the data directory when no database URL is set.
pub const DATABASE_FILE: &str = "parlance.db";

/// The engine's prefill pacing ratio when no layer sets one.
pub const DEFAULT_PREFILL_STALL_RATIO: f64 = 1.5;

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

/// The SQLite database in `data_dir`, created if missing.
pub fn default_database_url(data_dir: &Path) -> String {
    format!(
        "sqlite://{}?mode=rwc",
        data_dir.join(DATABASE_FILE).display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
