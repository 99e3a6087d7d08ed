//! Token ids must equal llama.cpp's: every entry of fixtures/tokenizer/*.json
//! (made by scripts/reference/tokenizer_fixtures.sh with llama-tokenize b11434)
//! is encoded with the same model and compared exactly.

mod common;

use serde_json::Value;

fn check_fixture(model_file: &str, fixture: &str) {
    let Some((_, tok)) = common::load(model_file) else {
        return;
    };
    let path = common::fixtures_dir().join(fixture);
    let text = std::fs::read_to_string(&path).expect("fixture file is readable");
    let entries: Vec<Value> = serde_json::from_str(&text).expect("fixture is JSON");
    assert!(entries.len() >= 80, "fixture has {} entries", entries.len());
    let mut failures = Vec::new();
    for e in &entries {
        let text = e["text"].as_str().expect("text");
        let parse_special = e["parse_special"].as_bool().expect("parse_special");
        let want: Vec<u32> = e["ids"]
            .as_array()
            .expect("ids")
            .iter()
            .map(|v| v.as_u64().expect("id") as u32)
            .collect();
        let got = tok.encode(text, true, parse_special);
        if got != want {
            let short = |v: &[u32]| format!("{:?}", &v[..v.len().min(40)]);
            failures.push(format!(
                "text {:?} parse_special={parse_special}\n  want {}\n  got  {}",
                text.chars().take(80).collect::<String>(),
                short(&want),
                short(&got)
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} fixture entries differ from llama.cpp:\n{}",
        failures.len(),
        entries.len(),
        failures
            .iter()
            .take(8)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn smollm2_ids_equal_llama_cpp() {
    check_fixture(common::SMOLLM2, "smollm2-135m-instruct.json");
}

#[test]
fn gemma3_ids_equal_llama_cpp() {
    check_fixture(common::GEMMA3, "gemma3-270m.json");
}
