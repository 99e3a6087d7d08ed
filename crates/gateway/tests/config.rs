//! The `[gateway]` configuration: the documented TOML example parses, and
//! each invalid configuration is refused with an error naming the entry.

use gateway::{BackendKind, ConfigError, Gateway, GatewayConfig, RoutingStrategy};

#[derive(serde::Deserialize)]
struct File {
    gateway: GatewayConfig,
}

const EXAMPLE: &str = r#"
[gateway.retry]
max_attempts = 3
backoff_base_ms = 25

[gateway.breaker]
consecutive_failures = 4
open_ms = 5000

[gateway.health]
interval_ms = 2000

[[gateway.models]]
name = "chat-large"
aliases = ["gpt-4o", "large"]
fallbacks = ["chat-small"]
routing = "least_outstanding"

[[gateway.models.backends]]
id = "vllm-a"
kind = "openai"
base_url = "http://10.0.0.5:8000/v1"
model = "meta-llama/Llama-3.1-70B-Instruct"
weight = 3

[[gateway.models.backends]]
id = "anthropic"
kind = "anthropic"
base_url = "https://api.anthropic.com/v1"
model = "claude-sonnet-4-20250514"
api_key_env = "PARLANCE_TEST_NEVER_SET_ANTHROPIC_KEY"
priority = 1
timeouts = { first_token_ms = 10000, idle_ms = 20000 }

[[gateway.models]]
name = "chat-small"

[[gateway.models.backends]]
kind = "local"
"#;

fn example() -> GatewayConfig {
    toml::from_str::<File>(EXAMPLE)
        .expect("the example parses")
        .gateway
}

#[test]
fn documented_example_parses_and_validates() {
    let config = example();
    config.validate().expect("valid");
    assert_eq!(config.retry.max_attempts, 3);
    assert_eq!(config.retry.per_backend, 2, "defaults fill the rest");
    assert_eq!(config.breaker.consecutive_failures, 4);
    let large = config.resolve("gpt-4o").expect("alias");
    assert_eq!(large.name, "chat-large");
    assert_eq!(large.routing, RoutingStrategy::LeastOutstanding);
    assert_eq!(large.backends[0].weight, 3);
    assert_eq!(large.backends[1].kind, BackendKind::Anthropic);
    assert_eq!(large.backends[1].timeouts.first_token_ms, 10_000);
    assert_eq!(large.backends[1].timeouts.connect_ms, 5_000);
    assert_eq!(
        config.resolve("chat-small").expect("model").backends[0].kind,
        BackendKind::Local
    );
}

#[test]
fn unknown_fields_are_refused() {
    let text = EXAMPLE.replace("weight = 3", "wieght = 3");
    let err = toml::from_str::<File>(&text).err().expect("typo refused");
    assert!(err.to_string().contains("wieght"), "{err}");
}

#[test]
fn missing_key_variable_and_missing_local_engine_are_build_errors() {
    let err = Gateway::builder(example()).build().err().expect("refused");
    assert_eq!(
        err,
        ConfigError::MissingKeyEnv {
            var: "PARLANCE_TEST_NEVER_SET_ANTHROPIC_KEY".into()
        }
    );
    let mut config = example();
    config.models[0].backends.truncate(1);
    let err = Gateway::builder(config).build().err().expect("refused");
    assert!(
        matches!(err, ConfigError::Build { ref id, .. } if id == "chat-small#0"),
        "{err}"
    );
}

fn invalid(edit: impl FnOnce(&mut GatewayConfig)) -> String {
    let mut config = example();
    edit(&mut config);
    config.validate().expect_err("invalid").to_string()
}

#[test]
fn each_invalid_configuration_names_its_problem() {
    let cases: Vec<(String, &str)> = vec![
        (
            invalid(|c| c.models[1].name = "large".into()),
            "`large` is used twice",
        ),
        (
            invalid(|c| c.models[1].backends.clear()),
            "at least one backend",
        ),
        (
            invalid(|c| c.models[0].fallbacks = vec!["nope".into()]),
            "fallback `nope`",
        ),
        (
            invalid(|c| c.models[0].fallbacks = vec!["chat-large".into()]),
            "fallback `chat-large`",
        ),
        (
            invalid(|c| c.models[0].backends[0].weight = 0),
            "weight must be at least 1",
        ),
        (
            invalid(|c| c.models[0].backends[0].base_url = None),
            "base_url is required",
        ),
        (
            invalid(|c| c.models[0].backends[0].base_url = Some("ftp://x/v1".into())),
            "must be http or https",
        ),
        (
            invalid(|c| c.models[0].backends[0].base_url = Some("not a url".into())),
            "base_url `not a url`",
        ),
        (
            invalid(|c| c.models[1].backends[0].base_url = Some("http://x".into())),
            "local backend takes no base_url",
        ),
        (
            invalid(|c| c.models[0].backends[1].api_key = Some("k".into())),
            "api_key or api_key_env, not both",
        ),
        (
            invalid(|c| c.models[0].backends[0].timeouts.idle_ms = 0),
            "timeouts.idle_ms",
        ),
        (
            invalid(|c| c.models[0].backends[1].id = Some("vllm-a".into())),
            "`vllm-a` is used twice",
        ),
        (invalid(|c| c.retry.max_attempts = 0), "retry.max_attempts"),
        (
            invalid(|c| c.breaker.error_rate_percent = 101),
            "breaker.error_rate_percent",
        ),
        (
            invalid(|c| c.breaker.min_requests = 1000),
            "breaker.min_requests",
        ),
        (invalid(|c| c.models[0].name = " ".into()), "name is empty"),
    ];
    for (message, expected) in cases {
        assert!(
            message.contains(expected),
            "`{message}` should mention `{expected}`"
        );
    }
}

#[test]
fn an_empty_config_is_valid() {
    let config: GatewayConfig = toml::from_str("").expect("parses");
    config.validate().expect("valid");
    assert!(config.health.enabled);
}
