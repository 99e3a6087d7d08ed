//! The chat templates of the families the engine runs, as their GGUFs carry
//! them (llama.cpp b11434's copies in `models/templates/`, fetched by
//! `scripts/reference/vocab_fixtures.sh`): each compiles and renders a
//! conversation with our Hugging Face-compatible renderer, with the turn
//! markers and end-of-turn token the family's model expects.
//!
//! Read from `~/.cache/parlance-reference/llama.cpp/models/templates` or
//! `$PARLANCE_TEMPLATES_DIR`; without them the test says so and passes,
//! unless `PARLANCE_REQUIRE_VOCAB=1` (as in CI).

use std::path::PathBuf;

use tokenizer::{ChatMessage, ChatTemplate};

fn templates_dir() -> Option<PathBuf> {
    let dir = match std::env::var_os("PARLANCE_TEMPLATES_DIR") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(std::env::var_os("HOME")?)
            .join(".cache/parlance-reference/llama.cpp/models/templates"),
    };
    if dir.is_dir() {
        return Some(dir);
    }
    assert!(
        std::env::var_os("PARLANCE_REQUIRE_VOCAB").is_none(),
        "no templates in {}: run scripts/reference/vocab_fixtures.sh",
        dir.display()
    );
    println!("skipping: no templates in {}", dir.display());
    None
}

/// Renders `file` with a system prompt and two user turns; the prompt must
/// contain every `want` in order.
fn check(file: &str, bos: &str, eos: &str, want: &[&str]) {
    let Some(dir) = templates_dir() else {
        return;
    };
    let source = std::fs::read_to_string(dir.join(file)).unwrap();
    let t = ChatTemplate::new(&source, bos, eos).unwrap_or_else(|e| panic!("{file}: {e}"));
    let messages = [
        ChatMessage::new("system", "Be brief."),
        ChatMessage::new("user", "Hello"),
        ChatMessage::new("assistant", "Hi there"),
        ChatMessage::new("user", "What is 2+2?"),
    ];
    let out = t
        .render(&messages, true)
        .unwrap_or_else(|e| panic!("{file}: {e}"));
    println!("{file}:\n{out}\n---");
    let mut at = 0;
    for w in want {
        let found = out[at..]
            .find(w)
            .unwrap_or_else(|| panic!("{file}: {w:?} missing after byte {at} in {out:?}"));
        at += found + w.len();
    }
}

#[test]
fn phi_3_5_mini() {
    check(
        "microsoft-Phi-3.5-mini-instruct.jinja",
        "<s>",
        "<|endoftext|>",
        &[
            "<|system|>",
            "Be brief.",
            "<|end|>",
            "<|user|>",
            "Hello",
            "<|end|>",
            "<|assistant|>",
            "Hi there",
            "<|end|>",
            "<|user|>",
            "What is 2+2?",
            "<|end|>",
            "<|assistant|>",
        ],
    );
}

#[test]
fn granite_3_3() {
    check(
        "ibm-granite-granite-3.3-2B-Instruct.jinja",
        "<|end_of_text|>",
        "<|end_of_text|>",
        &[
            "<|start_of_role|>system<|end_of_role|>",
            "Be brief.",
            "<|end_of_text|>",
            "<|start_of_role|>user<|end_of_role|>Hello<|end_of_text|>",
            "<|start_of_role|>assistant<|end_of_role|>Hi there<|end_of_text|>",
            "What is 2+2?",
            "<|start_of_role|>assistant<|end_of_role|>",
        ],
    );
}

#[test]
fn smollm3() {
    check(
        "HuggingFaceTB-SmolLM3-3B.jinja",
        "<|im_start|>",
        "<|im_end|>",
        &[
            "<|im_start|>system",
            "Be brief.",
            "<|im_end|>",
            "<|im_start|>user\nHello<|im_end|>",
            "<|im_start|>assistant\nHi there<|im_end|>",
            "<|im_start|>user\nWhat is 2+2?<|im_end|>",
            "<|im_start|>assistant\n",
        ],
    );
}

#[test]
fn ministral_3() {
    check(
        "mistralai-Ministral-3-14B-Reasoning-2512.jinja",
        "<s>",
        "</s>",
        &[
            "<s>",
            "[SYSTEM_PROMPT]",
            "Be brief.",
            "[/SYSTEM_PROMPT]",
            "[INST]Hello[/INST]",
            "Hi there</s>",
            "[INST]What is 2+2?[/INST]",
        ],
    );
}

#[test]
fn qwen3_5() {
    // Qwen 3.5 thinks: the prompt opens the assistant's turn with `<think>`
    // (its reasoning is split out as for Qwen3); past answers lose theirs.
    check(
        "Qwen3.5-4B.jinja",
        "",
        "<|im_end|>",
        &[
            "<|im_start|>system\nBe brief.<|im_end|>",
            "<|im_start|>user\nHello<|im_end|>",
            "<|im_start|>assistant\n",
            "Hi there<|im_end|>",
            "<|im_start|>user\nWhat is 2+2?<|im_end|>",
            "<|im_start|>assistant\n<think>",
        ],
    );
}

#[test]
fn gemma_4() {
    // Gemma 4's turns are `<|turn>role … <turn|>`, the assistant's role is
    // `model`; with thinking off (the default) the prompt closes an empty
    // `<|channel>thought` block.
    check(
        "google-gemma-4-31B-it.jinja",
        "<bos>",
        "<eos>",
        &[
            "<bos><|turn>system\nBe brief.<turn|>\n",
            "<|turn>user\nHello<turn|>\n",
            "<|turn>model\nHi there<turn|>\n",
            "<|turn>user\nWhat is 2+2?<turn|>\n",
            "<|turn>model\n<|channel>thought\n<channel|>",
        ],
    );
}
