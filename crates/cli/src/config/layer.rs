//! One layer of `serve` settings: the [`Layer`] type, which is also the
//! schema of `parlance.toml`, and how one layer stacks over another
//! ([`Layer::over`]). Reading a layer from a source is [`super::file`] and
//! [`super::env`]; the command-line flags build one in `commands::serve`.

use std::path::PathBuf;

use serde::Deserialize;

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
}
