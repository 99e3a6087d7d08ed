//! `parlance serve`: load the models once and serve the OpenAI-compatible
//! API over HTTP until ctrl-c.

use std::path::{Path, PathBuf};

use anyhow::Context;
use engine::{EngineConfig, EngineHandle};

use crate::config::{self, Layer, ServeConfig};

/// The flags of `parlance serve`. Each is optional: one not given falls
/// through to the `PARLANCE_*` environment, then the config file, then the
/// built-in default (see [`crate::config`]).
#[derive(clap::Args)]
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
    /// Worker threads per model for the forward pass; 0 is one per core
    /// [env: PARLANCE_THREADS] (default: 0).
    #[arg(long)]
    pub threads: Option<usize>,
    /// TOML config file (default: parlance.toml in the data directory, if
    /// it exists). Flags and PARLANCE_* variables override it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
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
        data_dir: data_dir_flag.map(Path::to_path_buf),
    };
    Ok(config::resolve(file, env, flags, default_data_dir))
}

/// Resolves the settings, loads every model once, then serves until ctrl-c.
pub fn run(
    args: Args,
    data_dir_flag: Option<&Path>,
    default_data_dir: &Path,
) -> anyhow::Result<()> {
    let settings = settings(&args, data_dir_flag, default_data_dir)?;
    let data_dir = settings.data_dir.as_path();
    let mut models: Vec<(String, EngineHandle)> = Vec::new();
    for name in &settings.models {
        let resolved = catalog::ensure(name, data_dir, &mut crate::model_arg::print_progress)?;
        if models.iter().any(|(served, _)| *served == resolved.name) {
            continue;
        }
        let config = EngineConfig {
            threads: settings.threads,
            ..EngineConfig::default()
        };
        let engine = EngineHandle::start(&resolved.path, config)
            .with_context(|| format!("loading {}", resolved.path.display()))?;
        eprintln!("loaded {} from {}", resolved.name, resolved.path.display());
        models.push((resolved.name, engine));
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let (host, port) = (settings.host.as_str(), settings.port);
        let listener = tokio::net::TcpListener::bind((host, port))
            .await
            .with_context(|| format!("binding {host}:{port}"))?;
        let addr = listener.local_addr().context("reading the bound address")?;
        eprintln!("listening on http://{addr}");
        server::serve(listener, server::AppState::new(models)).await?;
        Ok(())
    })
}
