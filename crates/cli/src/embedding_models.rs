//! Loading `serve`'s embedding models: each catalog name is pulled if
//! missing (a folder path is taken as it is) and started on its own encoder
//! thread; aliases are checked against the models loaded.

use std::path::Path;

use anyhow::Context;
use encoder::{EncoderHandle, HandleConfig};
use service::embeddings::Embedders;

use crate::config::ServeConfig;

/// The embedding models of `settings`, started.
pub fn load(settings: &ServeConfig, data_dir: &Path) -> anyhow::Result<Embedders> {
    let mut embedders = Embedders::default();
    let threads = if settings.threads == 0 {
        kernels::default_threads()
    } else {
        settings.threads
    };
    let mut names = Vec::new();
    for asked in &settings.embedding_models {
        let folder = Path::new(asked);
        let (name, path) = if folder.is_dir() {
            let name = folder
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| asked.clone());
            (name, folder.to_path_buf())
        } else {
            let resolved = catalog::ensure(asked, data_dir, &mut crate::model_arg::print_progress)?;
            (resolved.name, resolved.path)
        };
        let handle = EncoderHandle::start(
            &path,
            HandleConfig {
                threads,
                ..HandleConfig::default()
            },
        )
        .with_context(|| format!("loading the embedding model {}", path.display()))?;
        eprintln!(
            "loaded embedding model {name} from {} ({} dimensions, {} tokens)",
            path.display(),
            handle.dimensions(),
            handle.max_tokens()
        );
        embedders.add(name.clone(), handle);
        names.push(name);
    }
    for (alias, model) in &settings.embedding_aliases {
        anyhow::ensure!(
            names.contains(model),
            "embedding_aliases: {alias:?} names {model:?}, which is not among the embedding \
             models served ({})",
            names.join(", ")
        );
        embedders.alias(alias.clone(), model.clone());
    }
    Ok(embedders)
}
