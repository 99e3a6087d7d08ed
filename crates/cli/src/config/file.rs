//! The file layer: where `parlance.toml` is looked for ([`locate`]),
//! reading and parsing it into a [`Layer`] (relative paths taken from the
//! file's directory, the `[gateway]` section and the stall ratio checked),
//! and TOML errors rewritten to name the key they are about.

use std::path::{Path, PathBuf};

use anyhow::Context;

use super::checks::check_stall_ratio;
use super::Layer;

/// Name of the config file looked for in the data directory when no
/// `--config` is given.
pub const FILE_NAME: &str = "parlance.toml";

/// The keys a config file may hold, for error messages.
const KEYS: &str = "host, port, models, threads, kv_cache_tokens, prefix_cache, \
                    prefill_stall_ratio, data_dir, \
                    database_url, rpm, tpm, project_rpm, project_tpm, redis_url, \
                    shutdown_grace_secs, instance_lease_secs, default_max_tokens, gateway, \
                    embedding_models, embedding_aliases, chat_template, reasoning_field";

impl Layer {
    /// Parses the text of a config file. `path` names the file in errors and
    /// anchors relative paths: a relative `data_dir`, and a relative model
    /// path (one with a `/` or ending in `.gguf`) that is not a catalog name,
    /// are taken from the file's directory.
    pub fn from_toml(text: &str, path: &Path) -> anyhow::Result<Layer> {
        let mut layer: Layer = toml::from_str(text)
            .map_err(|e| anyhow::anyhow!("{}", describe_toml_error(&e, text)))
            .with_context(|| format!("in config file {}", path.display()))?;
        if let Some(ratio) = layer.prefill_stall_ratio {
            check_stall_ratio(ratio)
                .context("bad value for key `prefill_stall_ratio`")
                .with_context(|| format!("in config file {}", path.display()))?;
        }
        if let Some(gateway) = &layer.gateway {
            gateway
                .validate()
                .with_context(|| format!("in config file {}", path.display()))?;
        }
        let base = path.parent().unwrap_or(Path::new(""));
        if let Some(dir) = layer.data_dir.take() {
            layer.data_dir = Some(base.join(dir));
        }
        if let Some(models) = layer.models.as_mut() {
            for model in models.iter_mut() {
                let as_path = Path::new(model.as_str());
                let path_like = model.contains(std::path::MAIN_SEPARATOR)
                    || model.contains('/')
                    || model.ends_with(".gguf");
                if catalog::lookup(model).is_none() && path_like && as_path.is_relative() {
                    *model = base.join(as_path).to_string_lossy().into_owned();
                }
            }
        }
        Ok(layer)
    }

    /// Reads and parses the config file at `path`.
    pub fn from_file(path: &Path) -> anyhow::Result<Layer> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading config file {}", path.display()))?;
        Layer::from_toml(&text, path)
    }
}

/// Which file to read: `explicit` (`--config`) if given, which must exist;
/// else `parlance.toml` in `data_dir` if it is there; else none.
pub fn locate(explicit: Option<&Path>, data_dir: &Path) -> Option<PathBuf> {
    if let Some(path) = explicit {
        return Some(path.to_path_buf());
    }
    let candidate = data_dir.join(FILE_NAME);
    candidate.is_file().then_some(candidate)
}

/// The TOML error, with the key it is about named up front: `unknown key
/// `prot`: ...` or `bad value for key `port`: ...`.
fn describe_toml_error(err: &toml::de::Error, text: &str) -> String {
    let span = err.span();
    if err.message().starts_with("unknown field") {
        // The span covers the key itself.
        let key = span
            .and_then(|s| text.get(s))
            .map(|k| k.trim_matches(['"', '\'']));
        return match key {
            Some(key) => format!("unknown key `{key}`: {err}"),
            None => format!("unknown key (the keys are {KEYS}): {err}"),
        };
    }
    match span.and_then(|s| key_before(text, s.start)) {
        Some(key) => format!("bad value for key `{key}`: {err}"),
        None => err.to_string(),
    }
}

/// The key of the `key = value` line whose value starts at byte `at`.
fn key_before(text: &str, at: usize) -> Option<String> {
    let head = text.get(..at)?;
    let line = &head[head.rfind('\n').map_or(0, |i| i + 1)..];
    let (key, _) = line.split_once('=')?;
    let key = key.trim().trim_matches('"').trim_matches('\'');
    (!key.is_empty()).then(|| key.to_owned())
}

#[cfg(test)]
mod tests {
    use super::super::tests::file;
    use super::*;

    #[test]
    fn unknown_key_is_an_error_naming_it_and_the_file() {
        let err = file("port = 1\nprot = 2\n").unwrap_err();
        let text = format!("{err:#}");
        assert!(text.contains("unknown key `prot`"), "{text}");
        assert!(text.contains("/etc/parlance/parlance.toml"), "{text}");
    }

    #[test]
    fn bad_value_names_the_key_and_the_file() {
        for (toml, key) in [
            ("port = \"eighty\"", "port"),
            ("host = \"h\"\nthreads = -3\n", "threads"),
            ("port = 70000", "port"),
            ("models = \"one\"", "models"),
            ("kv_cache_tokens = -1", "kv_cache_tokens"),
            ("prefix_cache = \"maybe\"", "prefix_cache"),
        ] {
            let text = format!("{:#}", file(toml).unwrap_err());
            assert!(text.contains(&format!("`{key}`")), "{toml}: {text}");
            assert!(text.contains("/etc/parlance/parlance.toml"), "{text}");
        }
    }

    #[test]
    fn relative_paths_in_the_file_are_taken_from_its_directory() {
        let layer =
            file("data_dir = \"data\"\nmodels = [\"m/x.gguf\", \"gemma3-270m\", \"/abs.gguf\"]")
                .unwrap();
        assert_eq!(layer.data_dir, Some(PathBuf::from("/etc/parlance/data")));
        assert_eq!(
            layer.models,
            Some(vec![
                "/etc/parlance/m/x.gguf".to_owned(),
                "gemma3-270m".to_owned(),
                "/abs.gguf".to_owned()
            ])
        );
    }

    #[test]
    fn locate_prefers_the_explicit_file_then_the_data_dir() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(locate(None, dir.path()), None);
        std::fs::write(dir.path().join(FILE_NAME), "").unwrap();
        assert_eq!(locate(None, dir.path()), Some(dir.path().join(FILE_NAME)));
        let other = Path::new("/elsewhere.toml");
        assert_eq!(locate(Some(other), dir.path()), Some(other.to_path_buf()));
    }

    #[test]
    fn a_missing_explicit_file_is_an_error() {
        let err = Layer::from_file(Path::new("/no/such/parlance.toml")).unwrap_err();
        assert!(format!("{err:#}").contains("/no/such/parlance.toml"));
    }
}
