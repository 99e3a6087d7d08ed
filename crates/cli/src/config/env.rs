//! The environment layer: the `PARLANCE_*` variables, their names, and
//! how each is parsed into a [`Layer`] (an empty variable counts as unset;
//! a bad value is an error naming the variable).

use std::ffi::OsString;

use anyhow::{bail, Context};

use super::checks::parse_stall_ratio;
use super::Layer;

/// Environment variable for [`Layer::host`].
pub const HOST_ENV: &str = "PARLANCE_HOST";
/// Environment variable for [`Layer::port`].
pub const PORT_ENV: &str = "PARLANCE_PORT";
/// Environment variable for [`Layer::models`] (comma-separated).
pub const MODELS_ENV: &str = "PARLANCE_MODELS";
/// Environment variable for [`Layer::threads`].
pub const THREADS_ENV: &str = "PARLANCE_THREADS";
/// Environment variable for [`Layer::kv_cache_tokens`].
pub const KV_CACHE_TOKENS_ENV: &str = "PARLANCE_KV_CACHE_TOKENS";
/// Environment variable for [`Layer::prefix_cache`].
pub const PREFIX_CACHE_ENV: &str = "PARLANCE_PREFIX_CACHE";
/// Environment variable for [`Layer::prefill_stall_ratio`].
pub const PREFILL_STALL_RATIO_ENV: &str = "PARLANCE_PREFILL_STALL_RATIO";
/// Environment variable for [`Layer::database_url`].
pub const DATABASE_URL_ENV: &str = "PARLANCE_DATABASE_URL";
/// Environment variable for [`Layer::rpm`].
pub const RPM_ENV: &str = "PARLANCE_RPM";
/// Environment variable for [`Layer::tpm`].
pub const TPM_ENV: &str = "PARLANCE_TPM";
/// Environment variable for [`Layer::project_rpm`].
pub const PROJECT_RPM_ENV: &str = "PARLANCE_PROJECT_RPM";
/// Environment variable for [`Layer::project_tpm`].
pub const PROJECT_TPM_ENV: &str = "PARLANCE_PROJECT_TPM";
/// Environment variable for [`Layer::redis_url`].
pub const REDIS_URL_ENV: &str = "PARLANCE_REDIS_URL";
/// Environment variable for [`Layer::shutdown_grace_secs`].
pub const SHUTDOWN_GRACE_ENV: &str = "PARLANCE_SHUTDOWN_GRACE_SECS";
/// Environment variable for [`Layer::default_max_tokens`].
pub const DEFAULT_MAX_TOKENS_ENV: &str = "PARLANCE_DEFAULT_MAX_TOKENS";
/// Environment variable for [`Layer::instance_lease_secs`].
pub const INSTANCE_LEASE_ENV: &str = "PARLANCE_INSTANCE_LEASE_SECS";

impl Layer {
    /// The `PARLANCE_*` variables, read through `env` (empty means unset).
    /// `PARLANCE_DATA_DIR` is not read here: the global `--data-dir` flag
    /// already takes it.
    pub fn from_env(env: impl Fn(&str) -> Option<OsString>) -> anyhow::Result<Layer> {
        let var = |key: &str| -> anyhow::Result<Option<String>> {
            match env(key) {
                None => Ok(None),
                Some(value) if value.is_empty() => Ok(None),
                Some(value) => match value.into_string() {
                    Ok(text) => Ok(Some(text)),
                    Err(_) => bail!("environment variable {key} is not valid UTF-8"),
                },
            }
        };
        let port = match var(PORT_ENV)? {
            None => None,
            Some(text) => Some(text.trim().parse::<u16>().with_context(|| {
                format!("environment variable {PORT_ENV}={text:?}: expected a port number 0-65535")
            })?),
        };
        let threads = match var(THREADS_ENV)? {
            None => None,
            Some(text) => Some(text.trim().parse::<usize>().with_context(|| {
                format!(
                    "environment variable {THREADS_ENV}={text:?}: expected a whole number (0: one per physical core)"
                )
            })?),
        };
        let kv_cache_tokens = match var(KV_CACHE_TOKENS_ENV)? {
            None => None,
            Some(text) => Some(text.trim().parse::<usize>().with_context(|| {
                format!(
                    "environment variable {KV_CACHE_TOKENS_ENV}={text:?}: expected a whole number of positions (0: twice the context length)"
                )
            })?),
        };
        let prefix_cache = match var(PREFIX_CACHE_ENV)? {
            None => None,
            Some(text) => match text.trim().to_ascii_lowercase().as_str() {
                "true" | "1" => Some(true),
                "false" | "0" => Some(false),
                _ => bail!(
                    "environment variable {PREFIX_CACHE_ENV}={text:?}: expected true, false, 1 or 0"
                ),
            },
        };
        let prefill_stall_ratio = match var(PREFILL_STALL_RATIO_ENV)? {
            None => None,
            Some(text) => Some(parse_stall_ratio(&text).with_context(|| {
                format!("environment variable {PREFILL_STALL_RATIO_ENV}={text:?}")
            })?),
        };
        let models = var(MODELS_ENV)?.and_then(|text| {
            let list: Vec<String> = text
                .split(',')
                .map(str::trim)
                .filter(|m| !m.is_empty())
                .map(str::to_owned)
                .collect();
            (!list.is_empty()).then_some(list)
        });
        let limit = |key: &str| -> anyhow::Result<Option<u64>> {
            match var(key)? {
                None => Ok(None),
                Some(text) => Ok(Some(text.trim().parse::<u64>().with_context(|| {
                    format!(
                        "environment variable {key}={text:?}: expected a whole number per minute (0: no limit)"
                    )
                })?)),
            }
        };
        let shutdown_grace_secs = match var(SHUTDOWN_GRACE_ENV)? {
            None => None,
            Some(text) => Some(text.trim().parse::<u64>().with_context(|| {
                format!(
                    "environment variable {SHUTDOWN_GRACE_ENV}={text:?}: expected whole seconds"
                )
            })?),
        };
        let instance_lease_secs = match var(INSTANCE_LEASE_ENV)? {
            None => None,
            Some(text) => Some(
                text.trim()
                    .parse::<u64>()
                    .ok()
                    .filter(|&secs| secs > 0)
                    .with_context(|| {
                        format!(
                            "environment variable {INSTANCE_LEASE_ENV}={text:?}: expected whole \
                             seconds, at least 1"
                        )
                    })?,
            ),
        };
        let default_max_tokens = match var(DEFAULT_MAX_TOKENS_ENV)? {
            None => None,
            Some(text) => Some(text.trim().parse::<u32>().with_context(|| {
                format!(
                    "environment variable {DEFAULT_MAX_TOKENS_ENV}={text:?}: expected a whole \
                     number of tokens (0: until the context is full)"
                )
            })?),
        };
        Ok(Layer {
            host: var(HOST_ENV)?,
            port,
            models,
            threads,
            kv_cache_tokens,
            prefix_cache,
            prefill_stall_ratio,
            data_dir: None,
            database_url: var(DATABASE_URL_ENV)?,
            rpm: limit(RPM_ENV)?,
            tpm: limit(TPM_ENV)?,
            project_rpm: limit(PROJECT_RPM_ENV)?,
            project_tpm: limit(PROJECT_TPM_ENV)?,
            redis_url: var(REDIS_URL_ENV)?,
            shutdown_grace_secs,
            instance_lease_secs,
            default_max_tokens,
            gateway: None,
            embedding_models: None,
            embedding_aliases: None,
            chat_template: None,
            reasoning_field: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::env_of;
    use super::*;

    #[test]
    fn env_models_are_comma_separated_and_empty_vars_are_unset() {
        let env = Layer::from_env(env_of(&[
            ("PARLANCE_MODELS", "a.gguf, gemma3-270m"),
            ("PARLANCE_HOST", ""),
        ]))
        .unwrap();
        assert_eq!(
            env.models,
            Some(vec!["a.gguf".to_owned(), "gemma3-270m".to_owned()])
        );
        assert_eq!(env.host, None);
    }

    #[test]
    fn bad_env_values_name_the_variable() {
        let err = Layer::from_env(env_of(&[("PARLANCE_PORT", "eighty")])).unwrap_err();
        assert!(format!("{err:#}").contains("PARLANCE_PORT"), "{err:#}");
        let err = Layer::from_env(env_of(&[("PARLANCE_THREADS", "-1")])).unwrap_err();
        assert!(format!("{err:#}").contains("PARLANCE_THREADS"), "{err:#}");
        let err = Layer::from_env(env_of(&[("PARLANCE_KV_CACHE_TOKENS", "lots")])).unwrap_err();
        assert!(
            format!("{err:#}").contains("PARLANCE_KV_CACHE_TOKENS"),
            "{err:#}"
        );
        let err = Layer::from_env(env_of(&[("PARLANCE_PREFIX_CACHE", "yes")])).unwrap_err();
        assert!(
            format!("{err:#}").contains("PARLANCE_PREFIX_CACHE"),
            "{err:#}"
        );
    }
}
