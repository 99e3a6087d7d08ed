//! Test support shared by the workspace's test suites: locating (and on a
//! fresh machine, pulling) the real model files the tests run against.

use std::path::PathBuf;
use std::sync::Mutex;

/// The default model's catalog name.
pub const SMOLLM2: &str = "smollm2-135m-instruct";
/// The second supported model's catalog name.
pub const GEMMA3: &str = "gemma3-270m";
/// The embedding model's catalog name (a folder: safetensors and tokenizer).
pub const MINILM: &str = "all-minilm-l6-v2";

static PULL_LOCK: Mutex<()> = Mutex::new(());

/// The GGUF file (or, for a folder model, the folder) of catalog model `name`.
///
/// Looks in `$PARLANCE_TEST_MODELS_DIR` first (files named `<name>.gguf`),
/// then in the data directory (`$PARLANCE_DATA_DIR` or the XDG default),
/// pulling the model there if it is missing — so `cargo test` works on a
/// fresh machine. Panics with the reason when the model cannot be had:
/// a test that needs a model must not pass without it.
pub fn model_path(name: &str) -> PathBuf {
    if let Some(dir) = std::env::var_os("PARLANCE_TEST_MODELS_DIR") {
        let p = PathBuf::from(dir).join(format!("{name}.gguf"));
        if p.is_file() {
            return p;
        }
    }
    let _guard = PULL_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let data_dir = catalog::data_dir(None);
    match catalog::ensure(name, &data_dir, &mut |_| {}) {
        Ok(m) => m.path,
        Err(e) => panic!("test model {name} is not available: {e}"),
    }
}
