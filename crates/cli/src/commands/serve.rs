//! `parlance serve`: load the models once and serve the OpenAI-compatible
//! API over HTTP until ctrl-c.

use std::path::Path;

use anyhow::Context;
use engine::{EngineConfig, EngineHandle};

#[derive(clap::Args)]
pub struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Port to listen on (0 picks a free one; the real port is printed).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Catalog name or GGUF path of a model to serve; repeat for several
    /// (default: the catalog's default model, pulled if missing).
    #[arg(long = "model")]
    pub models: Vec<String>,
    /// Worker threads per model for the forward pass (0: one per core).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
}

pub fn run(args: Args, data_dir: &Path) -> anyhow::Result<()> {
    let mut names = args.models.clone();
    if names.is_empty() {
        names.push(catalog::default_model().name.to_owned());
    }
    let mut models: Vec<(String, EngineHandle)> = Vec::new();
    for name in &names {
        let resolved = catalog::ensure(name, data_dir, &mut crate::model_arg::print_progress)?;
        if models.iter().any(|(served, _)| *served == resolved.name) {
            continue;
        }
        let config = EngineConfig {
            threads: args.threads,
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
        let listener = tokio::net::TcpListener::bind((args.host.as_str(), args.port))
            .await
            .with_context(|| format!("binding {}:{}", args.host, args.port))?;
        let addr = listener.local_addr().context("reading the bound address")?;
        eprintln!("listening on http://{addr}");
        server::serve(listener, server::AppState::new(models)).await?;
        Ok(())
    })
}
