//! Tools through real chat templates: the 71 templates of llama.cpp
//! b11434's source (`models/templates/*.jinja`), fetched by
//! `scripts/reference/template_fixtures.sh` into
//! `~/.cache/parlance-reference/llama.cpp/models/templates` (or
//! `$PARLANCE_TEMPLATES_DIR`). Without them the tests say so and pass,
//! unless `PARLANCE_REQUIRE_VOCAB` is set (CI sets it).
//!
//! - every template is classified: rendered with its own tools in a
//!   family's syntax, or listed here with the reason it gets the generic
//!   scheme (none is left out silently);
//! - every template of a supported family renders a conversation with
//!   tools, an assistant's tool call and the tool's result, each visible
//!   in the prompt (templates minijinja cannot render are listed with the
//!   reason, and the test checks that they still fail);
//! - each family's own call syntax is read into OpenAI tool calls, whole
//!   and streamed a character at a time, and its grammar (compiled over
//!   SmolLM2's real vocabulary) spells those calls, with text under
//!   `auto` allowed to start with `<`.

use std::path::PathBuf;
use std::sync::Arc;

use api::{ChatMessage, FunctionCall, Tool, ToolCall, ToolType};
use engine::{ChatTemplate, TokenConstraint, Tokenizer};
use grammar::{Compiler, GrammarSpec};
use serde_json::{json, Value};
use service::generation::tools::{
    self, read_whole_in, CallReader, Family, Piece, Rendering, Syntax, ToolMode,
};

/// Why a template that takes no tools gets the generic scheme.
const NO_TOOLS: &str = "the template takes no tools";

/// Templates that reference `tools` but get the generic scheme, and why.
const GENERIC: &[(&str, &str)] = &[
    (
        "Apertus-8B-Instruct.jinja",
        "calls as a JSON list after <|tools_prefix|>",
    ),
    (
        "Apriel-1.6-15b-Thinker-fixed.jinja",
        "its own <tool_calls> list",
    ),
    (
        "ByteDance-Seed-OSS.jinja",
        "XML <seed:tool_call> with <function=…>",
    ),
    ("Cohere2MoE.jinja", "<|START_ACTION|> list"),
    (
        "CohereForAI-c4ai-command-r-plus-tool_use.jinja",
        "Command-R's Action: ```json``` list",
    ),
    (
        "CohereForAI-c4ai-command-r7b-12-2024-tool_use.jinja",
        "<|START_ACTION|> list",
    ),
    ("GLM-4.6.jinja", "XML <arg_key>/<arg_value> arguments"),
    ("GLM-4.7-Flash.jinja", "XML <arg_key>/<arg_value> arguments"),
    (
        "GigaChat3-10B-A1.8B.jinja",
        "function call blocks of its own",
    ),
    (
        "GigaChat3.1-10B-A1.8B.jinja",
        "function call blocks of its own",
    ),
    ("Kimi-K2-Instruct.jinja", "<|tool_call_begin|> sections"),
    ("Kimi-K2-Thinking.jinja", "<|tool_call_begin|> sections"),
    ("Kimi-K3.jinja", "<|tool_call_begin|> sections"),
    ("LFM2-8B-A1B.jinja", "Pythonic calls in <|tool_call_start|>"),
    (
        "LFM2.5-8B-A1B.jinja",
        "Pythonic calls in <|tool_call_start|>",
    ),
    (
        "LFM2.5-Instruct.jinja",
        "Pythonic calls in <|tool_call_start|>",
    ),
    ("MiniMax-M1.jinja", "<tool_calls> list"),
    ("MiniMax-M2.jinja", "XML <invoke>/<parameter>"),
    ("MiniMax-M3.jinja", "XML <invoke>/<parameter>"),
    (
        "NVIDIA-Nemotron-3-Nano-30B-A3B-BF16.jinja",
        "XML <function=…> arguments",
    ),
    ("NVIDIA-Nemotron-Nano-v2.jinja", "<TOOLCALL> list"),
    ("Qwen3-Coder.jinja", "XML <function=…> arguments"),
    ("Qwen3.5-4B.jinja", "XML <function=…> arguments"),
    ("Spark2.5.jinja", "XML <arg_key>/<arg_value> arguments"),
    ("StepFun3.5-Flash.jinja", "XML <function=…> arguments"),
    ("deepseek-ai-DeepSeek-V3.2.jinja", "DSML invoke blocks"),
    (
        "deepseek-ai-DeepSeek-V4-Flash-0731.jinja",
        "DSML invoke blocks",
    ),
    ("deepseek-ai-DeepSeek-V4.jinja", "DSML invoke blocks"),
    (
        "google-gemma-4-31B-it-interleaved.jinja",
        "Gemma 4's call:name{…} syntax (not JSON)",
    ),
    (
        "google-gemma-4-31B-it.jinja",
        "Gemma 4's call:name{…} syntax (not JSON)",
    ),
    (
        "inclusionai-ling-3.0-flash.jinja",
        "XML <arg_key>/<arg_value> arguments",
    ),
    (
        "llama-cpp-deepseek-r1.jinja",
        "DeepSeek R1's <｜tool▁call▁begin｜> blocks",
    ),
    (
        "llm-jp-llm-jp-4.1-8b-thinking.jinja",
        "gpt-oss style channels",
    ),
    (
        "meetkai-functionary-medium-v3.1.jinja",
        "<function=name>{…}</function>",
    ),
    (
        "meetkai-functionary-medium-v3.2.jinja",
        ">>>name\\n{…} recipients",
    ),
    ("moonshotai-Kimi-K2.jinja", "<|tool_call_begin|> sections"),
    ("muse-glimmer.jinja", "a call syntax of its own"),
    (
        "openai-gpt-oss-120b.jinja",
        "harmony channels (to=functions.name <|constrain|>json)",
    ),
    ("openbmb-MiniCPM5-1B.jinja", "a call syntax of its own"),
    (
        "poolside-Laguna-S-2.1.jinja",
        "XML <arg_key>/<arg_value> arguments",
    ),
    (
        "poolside-Laguna-XS-2.1.jinja",
        "XML <arg_key>/<arg_value> arguments",
    ),
    (
        "poolside-Laguna-XS.2.jinja",
        "XML <arg_key>/<arg_value> arguments",
    ),
    ("tencent-Hy3.jinja", "a call syntax of its own"),
    ("unsloth-Apriel-1.5.jinja", "its own <tool_calls> list"),
    (
        "upstage-Solar-Open-100B.jinja",
        "<|tool_calls|> section of its own",
    ),
];

/// Templates of a supported family that minijinja cannot render, and why.
const UNRENDERABLE: &[(&str, &str)] = &[];

/// The family each supported template is classified as.
const FAMILIES: &[(&str, Family)] = &[
    ("Bielik-11B-v3.0-Instruct.jinja", Family::Hermes),
    ("MiMo-VL.jinja", Family::Hermes),
    (
        "Mistral-Small-3.2-24B-Instruct-2506.jinja",
        Family::MistralCallId,
    ),
    (
        "NousResearch-Hermes-2-Pro-Llama-3-8B-tool_use.jinja",
        Family::Hermes,
    ),
    (
        "NousResearch-Hermes-3-Llama-3.1-8B-tool_use.jinja",
        Family::Hermes,
    ),
    ("Qwen-QwQ-32B.jinja", Family::Hermes),
    ("Qwen-Qwen2.5-7B-Instruct.jinja", Family::Hermes),
    ("Qwen-Qwen3-0.6B.jinja", Family::Hermes),
    ("ibm-granite-granite-3.3-2B-Instruct.jinja", Family::Granite),
    ("ibm-granite-granite-4.0.jinja", Family::Hermes),
    ("ibm-granite-granite-4.1.jinja", Family::Hermes),
    ("Reka-Edge.jinja", Family::Hermes),
    ("meta-llama-Llama-3.1-8B-Instruct.jinja", Family::Llama3),
    ("meta-llama-Llama-3.2-3B-Instruct.jinja", Family::Llama3),
    ("meta-llama-Llama-3.3-70B-Instruct.jinja", Family::Llama3),
    (
        "mistralai-Ministral-3-14B-Reasoning-2512.jinja",
        Family::MistralArgs,
    ),
    (
        "mistralai-Mistral-Nemo-Instruct-2407.jinja",
        Family::MistralList,
    ),
    (
        "unsloth-mistral-Devstral-Small-2507.jinja",
        Family::MistralArgs,
    ),
];

/// The templates folder, or `None` (said) when the fixtures are absent.
fn templates() -> Option<Vec<(String, String)>> {
    let dir = match std::env::var_os("PARLANCE_TEMPLATES_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(std::env::var_os("HOME")?)
            .join(".cache/parlance-reference/llama.cpp/models/templates"),
    };
    let Ok(entries) = std::fs::read_dir(&dir) else {
        assert!(
            std::env::var_os("PARLANCE_REQUIRE_VOCAB").is_none(),
            "no templates in {}: run scripts/reference/template_fixtures.sh",
            dir.display()
        );
        println!(
            "skipping: no templates in {} (scripts/reference/template_fixtures.sh fetches them)",
            dir.display()
        );
        return None;
    };
    let mut out: Vec<(String, String)> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "jinja"))
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read_to_string(&p).unwrap())
        })
        .collect();
    out.sort();
    assert_eq!(
        out.len(),
        71,
        "llama.cpp b11434 ships 71 templates (and a README)"
    );
    Some(out)
}

fn tool(name: &str, description: &str) -> Tool {
    serde_json::from_value(json!({"type": "function", "function": {
        "name": name, "description": description,
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                       "required": ["city"], "additionalProperties": false},
        "strict": true}}))
    .unwrap()
}

fn weather_tools() -> Vec<Tool> {
    vec![
        tool("get_weather", "Current weather in a city"),
        tool("get_time", "Local time in a city"),
    ]
}

/// A conversation with a tool call and its result, ready for the next turn.
fn conversation() -> Vec<ChatMessage> {
    let text = |role: &str, content: &str| -> ChatMessage {
        serde_json::from_value(json!({"role": role, "content": content})).unwrap()
    };
    vec![
        text("system", "You are a helpful assistant."),
        text("user", "What is the weather in Paris?"),
        ChatMessage::Assistant {
            content: None,
            name: None,
            refusal: None,
            tool_calls: Some(vec![ToolCall {
                id: "call_0123456789abcdef".into(),
                kind: ToolType::Function,
                function: FunctionCall {
                    name: "get_weather".into(),
                    arguments: "{\"city\": \"Paris\"}".into(),
                },
            }]),
        },
        serde_json::from_value(
            json!({"role": "tool", "tool_call_id": "call_0123456789abcdef",
            "content": "{\"temperature\": 21, \"sky\": \"sunny-sentinel\"}"}),
        )
        .unwrap(),
    ]
}

fn render(source: &str) -> Result<String, String> {
    let template = ChatTemplate::new(source, "<s>", "</s>").map_err(|e| e.to_string())?;
    match tools::render(
        Some(source),
        &conversation(),
        &weather_tools(),
        &ToolMode::Auto,
    ) {
        Rendering::Template { messages, tools } => template
            .render_with(&messages, tools.as_ref(), true, None)
            .map_err(|e| e.to_string()),
        Rendering::Plain(_) => Err("rendered in the generic scheme".into()),
    }
}

#[test]
fn every_template_is_classified_and_none_silently() {
    let Some(templates) = templates() else { return };
    let mut wrong = Vec::new();
    for (name, source) in &templates {
        let expected = FAMILIES.iter().find(|(n, _)| n == name).map(|(_, f)| *f);
        let listed = GENERIC.iter().any(|(n, _)| n == name);
        match Syntax::of_template(source) {
            Ok(syntax) if Some(syntax.family) != expected || listed => {
                wrong.push(format!("{name}: read as {:?}", syntax.family));
            }
            Ok(_) => {}
            // A template that takes tools must be listed with its reason.
            Err(reason) if expected.is_some() || listed != (reason != NO_TOOLS) => {
                wrong.push(format!("{name}: {reason}"));
            }
            Err(_) => {}
        }
    }
    assert!(wrong.is_empty(), "misclassified:\n{}", wrong.join("\n"));
    let named = FAMILIES
        .iter()
        .map(|(n, _)| *n)
        .chain(GENERIC.iter().map(|(n, _)| *n));
    for name in named.chain(UNRENDERABLE.iter().map(|(n, _)| *n)) {
        assert!(
            templates.iter().any(|(n, _)| n == name),
            "{name} is not in the sdist"
        );
    }
}

#[test]
fn supported_templates_render_tools_calls_and_results() {
    let Some(templates) = templates() else { return };
    for (name, family) in FAMILIES {
        let source = &templates.iter().find(|(n, _)| n == name).unwrap().1;
        let rendered = render(source);
        if let Some((_, why)) = UNRENDERABLE.iter().find(|(n, _)| n == name) {
            assert!(
                rendered.is_err(),
                "{name} renders now; remove it from UNRENDERABLE ({why})"
            );
            continue;
        }
        let prompt = rendered.unwrap_or_else(|e| panic!("{name}: {e}"));
        // The tool list, the earlier call and its result are all there.
        assert!(
            prompt.contains("Local time in a city"),
            "{name}: no tools in\n{prompt}"
        );
        assert!(
            prompt.contains("get_weather"),
            "{name}: no call in\n{prompt}"
        );
        assert!(
            prompt.contains("Paris\""),
            "{name}: no arguments in\n{prompt}"
        );
        assert!(
            prompt.contains("sunny-sentinel"),
            "{name}: no result in\n{prompt}"
        );
        // The call is written in the family's own syntax.
        let marker = match family {
            Family::Hermes => "<tool_call>",
            Family::Llama3 => "\"parameters\": {\"city\": \"Paris\"}",
            Family::MistralList | Family::MistralArgs | Family::MistralCallId => "[TOOL_CALLS]",
            Family::Granite => "<|tool_call|>",
            Family::Generic => unreachable!(),
        };
        assert!(prompt.contains(marker), "{name}: no {marker} in\n{prompt}");
    }
}

/// Each family's sample output with two calls (one for Llama 3), as its
/// models write them, and the same as the grammar spells it.
fn samples(family: Family) -> (&'static str, &'static str) {
    match family {
        Family::Hermes | Family::Generic => (
            "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>\n<tool_call>\n{\"name\": \"get_time\", \"arguments\": {\"city\": \"Oslo\"}}\n</tool_call>",
            "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>\n<tool_call>\n{\"name\": \"get_time\", \"arguments\": {\"city\": \"Oslo\"}}\n</tool_call>",
        ),
        Family::Llama3 => (
            "{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\"}}",
            "{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\"}}",
        ),
        Family::MistralList => (
            "[TOOL_CALLS][{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}, \"id\": \"a1b2c3d4e\"}, {\"name\": \"get_time\", \"arguments\": {\"city\": \"Oslo\"}, \"id\": \"f5g6h7i8j\"}]",
            "[TOOL_CALLS][{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}, {\"name\": \"get_time\", \"arguments\": {\"city\": \"Oslo\"}}]",
        ),
        Family::MistralArgs => (
            "[TOOL_CALLS]get_weather[ARGS]{\"city\": \"Paris\"}[TOOL_CALLS]get_time[ARGS]{\"city\": \"Oslo\"}",
            "[TOOL_CALLS]get_weather[ARGS]{\"city\": \"Paris\"}[TOOL_CALLS]get_time[ARGS]{\"city\": \"Oslo\"}",
        ),
        Family::MistralCallId => (
            "[TOOL_CALLS]get_weather[CALL_ID]a1b2c3d4e[ARGS]{\"city\": \"Paris\"}[TOOL_CALLS]get_time[CALL_ID]f5g6h7i8j[ARGS]{\"city\": \"Oslo\"}",
            "[TOOL_CALLS]get_weather[CALL_ID]a1b2c3d4e[ARGS]{\"city\": \"Paris\"}[TOOL_CALLS]get_time[CALL_ID]f5g6h7i8j[ARGS]{\"city\": \"Oslo\"}",
        ),
        Family::Granite => (
            "<|tool_call|>[{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}, {\"name\": \"get_time\", \"arguments\": {\"city\": \"Oslo\"}}]",
            "<|tool_call|>[{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}, {\"name\": \"get_time\", \"arguments\": {\"city\": \"Oslo\"}}]",
        ),
    }
}

/// The supported syntaxes, one template of each family.
fn syntaxes() -> Option<Vec<Syntax>> {
    let templates = templates()?;
    let mut out = vec![Syntax::GENERIC];
    for (name, family) in FAMILIES {
        if out.iter().any(|s| s.family == *family) {
            continue;
        }
        let source = &templates.iter().find(|(n, _)| n == name).unwrap().1;
        out.push(Syntax::of_template(source).unwrap());
    }
    assert_eq!(out.len(), 7, "{out:?}");
    Some(out)
}

fn expected_calls(family: Family) -> Vec<(String, Value)> {
    let mut calls = vec![("get_weather".to_owned(), json!({"city": "Paris"}))];
    if family != Family::Llama3 {
        calls.push(("get_time".to_owned(), json!({"city": "Oslo"})));
    }
    calls
}

#[test]
fn each_family_reads_its_own_calls_whole_and_streamed() {
    let Some(syntaxes) = syntaxes() else { return };
    for syntax in syntaxes {
        let (written, _) = samples(syntax.family);
        let (text, calls) = read_whole_in(&syntax, written);
        assert_eq!(text, None, "{:?}", syntax.family);
        let read: Vec<(String, Value)> = calls
            .iter()
            .map(|c| {
                assert!(c.id.starts_with("call_"));
                (
                    c.function.name.clone(),
                    serde_json::from_str(&c.function.arguments).unwrap(),
                )
            })
            .collect();
        assert_eq!(read, expected_calls(syntax.family), "{:?}", syntax.family);
        // A character at a time: the same calls, index/id/name first.
        let mut reader = CallReader::new(syntax.clone());
        let mut pieces = Vec::new();
        for c in written.chars() {
            pieces.extend(reader.push(&c.to_string()));
        }
        pieces.extend(reader.finish());
        let mut streamed: Vec<(String, String)> = Vec::new();
        for piece in pieces {
            match piece {
                Piece::CallStart { index, name, .. } => {
                    assert_eq!(index as usize, streamed.len());
                    streamed.push((name, String::new()));
                }
                Piece::Arguments { index, text } => streamed[index as usize].1.push_str(&text),
                Piece::Text(t) => panic!("{:?}: text {t:?}", syntax.family),
            }
        }
        let streamed: Vec<(String, Value)> = streamed
            .into_iter()
            .map(|(n, a)| (n, serde_json::from_str(&a).unwrap()))
            .collect();
        assert_eq!(
            streamed,
            expected_calls(syntax.family),
            "{:?}",
            syntax.family
        );
        // Text that merely starts like a call stays text.
        assert_eq!(read_whole_in(&syntax, "<b>hi").0.as_deref(), Some("<b>hi"));
    }
}

fn smollm2() -> Arc<Tokenizer> {
    let file = gguf::GgufFile::open(testkit::model_path(testkit::SMOLLM2)).expect("model file");
    Arc::new(Tokenizer::from_gguf(&file).expect("tokenizer"))
}

fn allowed(mask: &[u32], id: u32) -> bool {
    mask.get(id as usize / 32)
        .is_some_and(|w| w & (1 << (id % 32)) != 0)
}

/// Steers `spec`'s matcher towards `target` (the longest allowed token
/// spelling its next bytes each step): the text it could spell, and
/// whether end-of-generation was allowed there.
fn steer(tok: &Arc<Tokenizer>, spec: &GrammarSpec, target: &str) -> (String, bool) {
    let compiler = Compiler::for_tokenizer(tok, tok.vocab_size()).unwrap();
    let grammar = compiler.compile(spec).unwrap();
    let mut m = grammar.matcher();
    let mut mask = Vec::new();
    let mut out = Vec::<u8>::new();
    loop {
        m.compute_mask(&mut mask).unwrap();
        let rest = &target.as_bytes()[out.len()..];
        let best = (0..tok.vocab_size() as u32)
            .filter(|&id| allowed(&mask, id) && !tok.is_eog(id) && !tok.is_control(id))
            .filter(|&id| {
                let b = tok.token_bytes(id);
                !b.is_empty() && rest.starts_with(b)
            })
            .max_by_key(|&id| tok.token_bytes(id).len());
        let Some(id) = best else {
            let eos = tok.eog_ids().any(|id| allowed(&mask, id));
            return (String::from_utf8_lossy(&out).into_owned(), eos);
        };
        out.extend_from_slice(tok.token_bytes(id));
        m.commit(id).unwrap();
    }
}

#[test]
fn each_family_grammar_spells_its_calls_and_text_may_start_with_a_bracket() {
    // The generic scheme's syntax needs no fixture.
    let syntaxes = syntaxes().unwrap_or_else(|| vec![Syntax::GENERIC]);
    let tok = smollm2();
    let tools = weather_tools();
    for syntax in syntaxes {
        let (_, spelled) = samples(syntax.family);
        let (spec, _) = tools::grammar_spec_in(&syntax, &tools, &ToolMode::Required, true, None)
            .unwrap()
            .unwrap();
        assert_eq!(
            steer(&tok, &spec, spelled),
            (spelled.to_owned(), true),
            "{:?}",
            syntax.family
        );
        // Arguments outside the schema cannot be spelled.
        let bad = spelled.replacen("\"city\"", "\"town\"", 1);
        assert_ne!(steer(&tok, &spec, &bad).0, bad, "{:?}", syntax.family);
        // A named choice allows that function only.
        let named = ToolMode::Named("get_time".into());
        let (spec, _) = tools::grammar_spec_in(&syntax, &tools, &named, false, None)
            .unwrap()
            .unwrap();
        let (spelled_named, eos) = steer(&tok, &spec, spelled);
        assert!(
            !eos && spelled_named.len() < spelled.len(),
            "{:?}",
            syntax.family
        );
        // Under `auto`, text may start with `<` (but not with the call's opener).
        let (spec, _) = tools::grammar_spec_in(&syntax, &tools, &ToolMode::Auto, true, None)
            .unwrap()
            .unwrap();
        for text in ["<b>bold</b> answer", "Plain answer.", "[1, 2]"] {
            assert_eq!(
                steer(&tok, &spec, text),
                (text.to_owned(), true),
                "{:?}",
                syntax.family
            );
        }
        assert_eq!(
            steer(&tok, &spec, spelled),
            (spelled.to_owned(), true),
            "{:?}",
            syntax.family
        );
        let opener = syntax.opener();
        let fake = format!("{opener}oops");
        assert_ne!(steer(&tok, &spec, &fake).0, fake, "{:?}", syntax.family);
    }
}
