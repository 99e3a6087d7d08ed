//! How the layers combine: each setting read from the file, the
//! environment and the flags, and the higher layer winning in
//! [`super::resolve`]; plus the helpers the sources' own tests share.

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use super::checks::parse_stall_ratio;
use super::resolve::DEFAULT_PREFILL_STALL_RATIO;
use super::{resolve, Layer};

pub(super) fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<OsString> {
    let map: HashMap<String, OsString> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), OsString::from(v)))
        .collect();
    move |key| map.get(key).cloned()
}

pub(super) fn file(text: &str) -> anyhow::Result<Layer> {
    Layer::from_toml(text, Path::new("/etc/parlance/parlance.toml"))
}

#[test]
fn database_url_from_file_env_and_flag() {
    let file = file("database_url = \"sqlite:///f.db\"\ndata_dir = \"/srv\"").unwrap();
    let config = resolve(
        file.clone(),
        Layer::default(),
        Layer::default(),
        Path::new("/d"),
    );
    assert_eq!(config.database_url, "sqlite:///f.db");
    let env = Layer::from_env(env_of(&[("PARLANCE_DATABASE_URL", "sqlite:///e.db")])).unwrap();
    let config = resolve(file.clone(), env.clone(), Layer::default(), Path::new("/d"));
    assert_eq!(config.database_url, "sqlite:///e.db");
    let flags = Layer {
        database_url: Some("sqlite:///g.db".into()),
        ..Layer::default()
    };
    assert_eq!(
        resolve(file, env, flags, Path::new("/d")).database_url,
        "sqlite:///g.db"
    );
    let moved = resolve(
        Layer::from_toml("data_dir = \"/srv\"", Path::new("/x.toml")).unwrap(),
        Layer::default(),
        Layer::default(),
        Path::new("/d"),
    );
    assert_eq!(moved.database_url, "sqlite:///srv/parlance.db?mode=rwc");
}

#[test]
fn file_over_defaults_env_over_file_flags_over_env() {
    let file = file(
        "host = \"0.0.0.0\"\nport = 9000\nmodels = [\"gemma3-270m\"]\nthreads = 4\ndata_dir = \"/srv/parlance\"\n",
    )
    .unwrap();
    let env = Layer::from_env(env_of(&[
        ("PARLANCE_PORT", "9001"),
        ("PARLANCE_THREADS", "2"),
    ]))
    .unwrap();
    let flags = Layer {
        threads: Some(1),
        ..Layer::default()
    };
    let config = resolve(file, env, flags, Path::new("/data"));
    assert_eq!(config.host, "0.0.0.0"); // file
    assert_eq!(config.port, 9001); // env over file
    assert_eq!(config.threads, 1); // flag over env
    assert_eq!(config.models, vec!["gemma3-270m".to_owned()]);
    assert_eq!(config.data_dir, PathBuf::from("/srv/parlance"));
}

#[test]
fn kv_cache_tokens_from_file_env_and_flag() {
    let file = file("kv_cache_tokens = 4096").unwrap();
    let config = resolve(
        file.clone(),
        Layer::default(),
        Layer::default(),
        Path::new("/d"),
    );
    assert_eq!(config.kv_cache_tokens, 4096); // file
    let env = Layer::from_env(env_of(&[("PARLANCE_KV_CACHE_TOKENS", "8192")])).unwrap();
    let config = resolve(file.clone(), env.clone(), Layer::default(), Path::new("/d"));
    assert_eq!(config.kv_cache_tokens, 8192); // env over file
    let flags = Layer {
        kv_cache_tokens: Some(1024),
        ..Layer::default()
    };
    assert_eq!(
        resolve(file, env, flags, Path::new("/d")).kv_cache_tokens,
        1024
    ); // flag over env
}

#[test]
fn prefill_stall_ratio_from_file_env_and_flag() {
    let defaults = resolve(
        Layer::default(),
        Layer::default(),
        Layer::default(),
        Path::new("/d"),
    );
    assert_eq!(defaults.prefill_stall_ratio, DEFAULT_PREFILL_STALL_RATIO);
    let file = file("prefill_stall_ratio = 3").unwrap();
    let config = resolve(
        file.clone(),
        Layer::default(),
        Layer::default(),
        Path::new("/d"),
    );
    assert_eq!(config.prefill_stall_ratio, 3.0); // file over the default
    let env = Layer::from_env(env_of(&[("PARLANCE_PREFILL_STALL_RATIO", " 1.25 ")])).unwrap();
    let config = resolve(file.clone(), env.clone(), Layer::default(), Path::new("/d"));
    assert_eq!(config.prefill_stall_ratio, 1.25); // env over file
    let flags = Layer {
        prefill_stall_ratio: Some(0.0),
        ..Layer::default()
    };
    assert_eq!(
        resolve(file, env, flags, Path::new("/d")).prefill_stall_ratio,
        0.0
    ); // flag over env
}

#[test]
fn a_bad_prefill_stall_ratio_is_named() {
    for bad in ["-1", "fast", "inf", "NaN"] {
        let err = Layer::from_env(env_of(&[("PARLANCE_PREFILL_STALL_RATIO", bad)])).unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains("PARLANCE_PREFILL_STALL_RATIO"), "{msg}");
        assert!(parse_stall_ratio(bad).is_err(), "{bad}");
    }
    let err = file("prefill_stall_ratio = -0.5").unwrap_err();
    assert!(
        format!("{err:#}").contains("prefill_stall_ratio"),
        "{err:#}"
    );
    let err = file("prefill_stall_ratio = \"fast\"").unwrap_err();
    assert!(
        format!("{err:#}").contains("prefill_stall_ratio"),
        "{err:#}"
    );
    assert_eq!(parse_stall_ratio("2").unwrap(), 2.0);
}

#[test]
fn prefix_cache_from_file_env_and_flag() {
    let file = file("prefix_cache = false").unwrap();
    let config = resolve(
        file.clone(),
        Layer::default(),
        Layer::default(),
        Path::new("/d"),
    );
    assert!(!config.prefix_cache); // file over the default
    let env = Layer::from_env(env_of(&[("PARLANCE_PREFIX_CACHE", "1")])).unwrap();
    let config = resolve(file.clone(), env.clone(), Layer::default(), Path::new("/d"));
    assert!(config.prefix_cache); // env over file
    let flags = Layer {
        prefix_cache: Some(false),
        ..Layer::default()
    };
    assert!(!resolve(file, env, flags, Path::new("/d")).prefix_cache); // flag over env
    for (text, want) in [("true", true), ("false", false), ("1", true), ("0", false)] {
        let env = Layer::from_env(env_of(&[("PARLANCE_PREFIX_CACHE", text)])).unwrap();
        assert_eq!(env.prefix_cache, Some(want), "{text}");
    }
}

#[test]
fn rate_limits_default_and_layer() {
    let config = resolve(
        Layer::default(),
        Layer::default(),
        Layer::default(),
        Path::new("/d"),
    );
    assert_eq!((config.rpm, config.tpm), (10_000, 10_000_000));
    assert_eq!((config.project_rpm, config.project_tpm), (0, 0));
    assert_eq!(config.redis_url, None);
    let file = file("rpm = 60\ntpm = 1000\nproject_rpm = 600\nredis_url = \"redis://f\"").unwrap();
    let env = Layer::from_env(env_of(&[
        ("PARLANCE_RPM", "30"),
        ("PARLANCE_PROJECT_TPM", "5000"),
        ("PARLANCE_REDIS_URL", "redis://e:6379"),
    ]))
    .unwrap();
    let flags = Layer {
        rpm: Some(3),
        ..Layer::default()
    };
    let config = resolve(file, env, flags, Path::new("/d"));
    assert_eq!(config.rpm, 3); // flag over env over file
    assert_eq!(config.tpm, 1000); // file
    assert_eq!(config.project_rpm, 600); // file
    assert_eq!(config.project_tpm, 5000); // env
    assert_eq!(config.redis_url.as_deref(), Some("redis://e:6379"));
    let err = Layer::from_env(env_of(&[("PARLANCE_TPM", "lots")])).unwrap_err();
    assert!(format!("{err:#}").contains("PARLANCE_TPM"), "{err:#}");
}

#[test]
fn empty_model_lists_fall_through() {
    let file = file("models = []").unwrap();
    let env = Layer::from_env(env_of(&[("PARLANCE_MODELS", " , ")])).unwrap();
    assert_eq!(env.models, None);
    let config = resolve(file, env, Layer::default(), Path::new("/d"));
    assert_eq!(
        config.models,
        vec![catalog::default_model().name.to_owned()]
    );
}

#[test]
fn gateway_section_is_read_and_validated() {
    let layer = file(
        "[[gateway.models]]\nname = \"chat\"\naliases = [\"gpt-4o\"]\n\
         [[gateway.models.backends]]\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:9/v1\"\n",
    )
    .unwrap();
    let config = resolve(layer, Layer::default(), Layer::default(), Path::new("/d"));
    assert_eq!(config.gateway.models[0].name, "chat");
    assert_eq!(config.gateway.models[0].aliases, ["gpt-4o"]);
    assert_eq!(config.shutdown_grace_secs, 30);
    // Validation names the problem and the file.
    let err = file("[[gateway.models]]\nname = \"chat\"\nbackends = []\n").unwrap_err();
    let text = format!("{err:#}");
    assert!(text.contains("at least one backend"), "{text}");
    assert!(text.contains("/etc/parlance/parlance.toml"), "{text}");
    let err = file("[gateway.retry]\nmax_atempts = 3\n").unwrap_err();
    assert!(format!("{err:#}").contains("max_atempts"), "{err:#}");
    let grace = file("shutdown_grace_secs = 5").unwrap();
    let env = Layer::from_env(env_of(&[("PARLANCE_SHUTDOWN_GRACE_SECS", "7")])).unwrap();
    assert_eq!(
        resolve(grace, env, Layer::default(), Path::new("/d")).shutdown_grace_secs,
        7
    );
}

#[test]
fn default_max_tokens_from_file_env_and_flag() {
    let none = resolve(
        Layer::default(),
        Layer::default(),
        Layer::default(),
        Path::new("/d"),
    );
    assert_eq!(none.default_max_tokens, 0);
    let from_file = file("default_max_tokens = 64").unwrap();
    let env = Layer::from_env(env_of(&[("PARLANCE_DEFAULT_MAX_TOKENS", "128")])).unwrap();
    let flags = Layer {
        default_max_tokens: Some(32),
        ..Layer::default()
    };
    let d = Path::new("/d");
    assert_eq!(
        resolve(from_file.clone(), Layer::default(), Layer::default(), d).default_max_tokens,
        64
    );
    assert_eq!(
        resolve(from_file.clone(), env.clone(), Layer::default(), d).default_max_tokens,
        128
    );
    assert_eq!(resolve(from_file, env, flags, d).default_max_tokens, 32);
    let err = Layer::from_env(env_of(&[("PARLANCE_DEFAULT_MAX_TOKENS", "lots")])).unwrap_err();
    assert!(
        format!("{err:#}").contains("PARLANCE_DEFAULT_MAX_TOKENS"),
        "{err:#}"
    );
}

#[test]
fn instance_lease_from_file_and_env() {
    let default = resolve(
        Layer::default(),
        Layer::default(),
        Layer::default(),
        Path::new("/d"),
    );
    assert_eq!(default.instance_lease, service::instances::DEFAULT_LEASE);
    let lease = file("instance_lease_secs = 5").unwrap();
    let env = Layer::from_env(env_of(&[("PARLANCE_INSTANCE_LEASE_SECS", "9")])).unwrap();
    let settings = resolve(lease.clone(), env, Layer::default(), Path::new("/d"));
    assert_eq!(settings.instance_lease, std::time::Duration::from_secs(9));
    let settings = resolve(lease, Layer::default(), Layer::default(), Path::new("/d"));
    assert_eq!(settings.instance_lease, std::time::Duration::from_secs(5));
    let err = Layer::from_env(env_of(&[("PARLANCE_INSTANCE_LEASE_SECS", "0")])).unwrap_err();
    assert!(
        format!("{err:#}").contains("PARLANCE_INSTANCE_LEASE_SECS"),
        "{err:#}"
    );
}
