//! The chat template read from SmolLM2's GGUF renders exactly as Hugging
//! Face's Jinja2 renders it. The expected strings were produced with Python
//! jinja2 3.1 (`Environment(trim_blocks=True, lstrip_blocks=True)`) from the
//! same template.

mod common;

use tokenizer::{ChatMessage, ChatTemplate, TemplateError};

fn conversation() -> Vec<ChatMessage> {
    vec![
        ChatMessage::new("system", "You are terse."),
        ChatMessage::new("user", "Hi there"),
        ChatMessage::new("assistant", "Hello!"),
    ]
}

#[test]
fn smollm2_template_renders_like_jinja2() {
    let Some((_, tok)) = common::load(common::SMOLLM2) else {
        return;
    };
    let t = tok.load_chat_template().expect("template compiles");
    assert_eq!(
        t.render(&conversation(), false).expect("renders"),
        "<|im_start|>system\nYou are terse.<|im_end|>\n<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\nHello!<|im_end|>\n"
    );
    assert_eq!(
        t.render(&conversation(), true).expect("renders"),
        "<|im_start|>system\nYou are terse.<|im_end|>\n<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\nHello!<|im_end|>\n<|im_start|>assistant\n"
    );
    // Without a system message the template inserts its default one.
    assert_eq!(
        t.render(&[ChatMessage::new("user", "What is 2+2?")], true)
            .expect("renders"),
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n"
    );
}

#[test]
fn rendered_prompt_tokenizes_with_control_tokens() {
    let Some((_, tok)) = common::load(common::SMOLLM2) else {
        return;
    };
    let t = tok.load_chat_template().expect("template compiles");
    let prompt = t.render(&conversation(), true).expect("renders");
    let ids = tok.encode(&prompt, true, true);
    let starts = ids.iter().filter(|&&id| id == 1).count();
    let ends = ids.iter().filter(|&&id| id == 2).count();
    assert_eq!((starts, ends), (4, 3), "{ids:?}");
}

#[test]
fn raise_exception_in_a_template_is_an_error() {
    let src = "{% if messages[0]['role'] != 'user' %}{{ raise_exception('Conversation must start with user') }}{% endif %}ok";
    let t = ChatTemplate::new(src, "<s>", "</s>").expect("compiles");
    let err = t.render(&conversation(), true).expect_err("raises");
    assert_eq!(
        err,
        TemplateError::TemplateRaised("Conversation must start with user".into())
    );
    assert_eq!(
        t.render(&[ChatMessage::new("user", "x")], true)
            .expect("renders"),
        "ok"
    );
}
