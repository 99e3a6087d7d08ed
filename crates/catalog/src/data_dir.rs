//! Where Parlance keeps its state: the data directory and its `models/` folder.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// Environment variable naming the data directory explicitly.
const DATA_DIR_ENV: &str = "PARLANCE_DATA_DIR";

/// The data directory: `override_dir` if given, else `$PARLANCE_DATA_DIR`,
/// else `$XDG_DATA_HOME/parlance`, else `$HOME/.local/share/parlance`
/// (empty variables count as unset). Without any of these, `./parlance-data`.
pub fn data_dir(override_dir: Option<&Path>) -> PathBuf {
    data_dir_from_env(override_dir, |key| std::env::var_os(key))
}

/// [`data_dir`] with the environment supplied by `env` (for tests and
/// callers that carry their own environment).
pub fn data_dir_from_env(
    override_dir: Option<&Path>,
    env: impl Fn(&str) -> Option<OsString>,
) -> PathBuf {
    if let Some(dir) = override_dir {
        return dir.to_path_buf();
    }
    let var = |key: &str| env(key).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(dir) = var(DATA_DIR_ENV) {
        return dir;
    }
    if let Some(xdg) = var("XDG_DATA_HOME") {
        return xdg.join("parlance");
    }
    if let Some(home) = var("HOME") {
        return home.join(".local").join("share").join("parlance");
    }
    PathBuf::from("parlance-data")
}

/// The folder holding pulled models: `<data_dir>/models`.
pub fn models_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("models")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<OsString> {
        let map: HashMap<String, OsString> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), OsString::from(v)))
            .collect();
        move |key| map.get(key).cloned()
    }

    #[test]
    fn precedence_override_env_xdg_home() {
        let all = env_of(&[
            ("PARLANCE_DATA_DIR", "/p"),
            ("XDG_DATA_HOME", "/x"),
            ("HOME", "/h"),
        ]);
        assert_eq!(
            data_dir_from_env(Some(Path::new("/o")), &all),
            PathBuf::from("/o")
        );
        assert_eq!(data_dir_from_env(None, &all), PathBuf::from("/p"));
        let no_parlance = env_of(&[("XDG_DATA_HOME", "/x"), ("HOME", "/h")]);
        assert_eq!(
            data_dir_from_env(None, no_parlance),
            PathBuf::from("/x/parlance")
        );
        let home_only = env_of(&[("HOME", "/h")]);
        assert_eq!(
            data_dir_from_env(None, home_only),
            PathBuf::from("/h/.local/share/parlance")
        );
        assert_eq!(
            data_dir_from_env(None, env_of(&[])),
            PathBuf::from("parlance-data")
        );
    }

    #[test]
    fn empty_variables_are_ignored() {
        let env = env_of(&[
            ("PARLANCE_DATA_DIR", ""),
            ("XDG_DATA_HOME", ""),
            ("HOME", "/h"),
        ]);
        assert_eq!(
            data_dir_from_env(None, env),
            PathBuf::from("/h/.local/share/parlance")
        );
    }

    #[test]
    fn models_live_under_models() {
        assert_eq!(models_dir(Path::new("/d")), PathBuf::from("/d/models"));
    }
}
