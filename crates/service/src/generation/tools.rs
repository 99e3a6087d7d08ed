//! Function tools and structured output on the local engine, reusable by
//! every API that takes them (chat completions; the Responses and
//! Anthropic APIs convert to the chat types first):
//!
//! - [`OutputPlan`]: from `tools`, `tool_choice`, `parallel_tool_calls` and
//!   `response_format`, the grammar the output must follow (compiled for
//!   the model; a bad schema is a 400 naming where it is wrong), whether
//!   the output is to be read for tool calls, and in which syntax;
//! - [`render`]: the conversation as the chat template takes it — through
//!   the template's own `tools` variable and tool messages when it renders
//!   tools in a syntax we know ([`tool_syntax`](super::tool_syntax)), or
//!   in the generic scheme every other model gets ([`render_messages`]:
//!   the tool list in the system prompt, earlier calls as `<tool_call>`
//!   blocks, tool results as `<tool_response>` blocks in a user turn, so
//!   templates that know no tool role still render them);
//! - [`CallReader`] (in [`tool_reader`](super::tool_reader)): reads the
//!   output into text and tool calls in OpenAI's delta order.

use api::{
    ApiError, ChatCompletionRequest, ChatMessage, InvalidCode, ResponseFormat, Tool, ToolChoice,
    ToolChoiceMode,
};
use engine::EngineHandle;
use grammar::{Compiler, GrammarError, GrammarSpec};
use serde_json::{json, Value};

pub use super::tool_reader::{read_whole, read_whole_in, CallReader, Piece};
use super::tool_syntax::{template_messages, template_tools};
pub use super::tool_syntax::{Family, Syntax};

use crate::Result;

/// Most calls in one turn with `parallel_tool_calls`. OpenAI sets no
/// number, but a small model left free repeats a call until `max_tokens`:
/// with 8 allowed, SmolLM2 ran every required-call test of
/// tests/e2e/test_structured_tools.py into `max_tokens: 300`.
pub const MAX_PARALLEL_CALLS: usize = 4;

/// What the output must be, and how to read it.
#[derive(Clone, Default)]
pub struct OutputPlan {
    /// The compiled grammar, if the output is constrained.
    pub grammar: Option<grammar::Grammar>,
    /// When the output may hold tool calls (tools given, choice not
    /// `none`): the syntax to read them in.
    pub tools: Option<Syntax>,
}

impl OutputPlan {
    /// The engine constraint, if any.
    pub fn constraint(&self) -> Option<engine::Constraint> {
        self.grammar.as_ref().map(grammar::Grammar::constraint)
    }
}

/// How the request wants tools used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolMode {
    /// No tools, or `tool_choice: none`.
    Off,
    /// The model chooses between calls and a text answer.
    Auto,
    /// At least one call, of any tool.
    Required,
    /// A call of this function.
    Named(String),
}

/// The tool mode of `tools` and `tool_choice` (validated already).
pub fn tool_mode(tools: Option<&[Tool]>, choice: Option<&ToolChoice>) -> ToolMode {
    if tools.is_none_or(<[Tool]>::is_empty) {
        return ToolMode::Off;
    }
    match choice {
        None | Some(ToolChoice::Mode(ToolChoiceMode::Auto)) => ToolMode::Auto,
        Some(ToolChoice::Mode(ToolChoiceMode::None)) => ToolMode::Off,
        Some(ToolChoice::Mode(ToolChoiceMode::Required)) => ToolMode::Required,
        Some(ToolChoice::Named(named)) => ToolMode::Named(named.function.name.clone()),
    }
}

/// The call syntax of a model whose chat template is `source`: its own
/// when the template renders tools in a syntax we know, else the generic
/// scheme's.
pub fn syntax_of(source: Option<&str>) -> Syntax {
    source
        .and_then(|s| Syntax::of_template(s).ok())
        .unwrap_or(Syntax::GENERIC)
}

/// The output plan of a chat request on `engine`: compiles its grammar
/// (off the executor: a schema may take milliseconds).
pub async fn plan(engine: &EngineHandle, request: &ChatCompletionRequest) -> Result<OutputPlan> {
    let mode = tool_mode(request.tools.as_deref(), request.tool_choice.as_ref());
    // Markers that are control tokens of this model are written as those tokens.
    let syntax = syntax_of(engine.chat_template_source()).in_vocabulary(engine.tokenizer());
    let spec = grammar_spec_in(
        &syntax,
        request.tools.as_deref().unwrap_or_default(),
        &mode,
        request.parallel_tool_calls.unwrap_or(true),
        request.response_format.as_ref(),
    )?;
    let tools = (mode != ToolMode::Off).then(|| syntax.clone());
    let Some(spec) = spec else {
        return Ok(OutputPlan {
            grammar: None,
            tools,
        });
    };
    let tokenizer = engine.tokenizer().clone();
    let n_vocab = engine.info().config.n_vocab.max(tokenizer.vocab_size());
    let base = spec.1;
    // Only a grammar with calls names marker tokens; their text must reach the reader.
    let shown = if mode == ToolMode::Off {
        Vec::new()
    } else {
        syntax.control_tokens()
    };
    let grammar = tokio::task::spawn_blocking(move || {
        let compiler = Compiler::for_tokenizer(&tokenizer, n_vocab)?;
        compiler.compile(&spec.0).map(|g| g.showing(shown))
    })
    .await
    .map_err(|_| ApiError::invalid_body("The grammar could not be compiled."))?
    .map_err(|err| grammar_error(err, &base))?;
    Ok(OutputPlan {
        grammar: Some(grammar),
        tools,
    })
}

/// A compile error as a 400 naming `base` (and the place inside it).
fn grammar_error(err: GrammarError, base: &str) -> crate::Error {
    match err {
        GrammarError::Schema(fault) => {
            let param = if fault.path.is_empty() {
                base.to_owned()
            } else {
                format!("{base}.{}", fault.path)
            };
            ApiError::invalid(
                param.clone(),
                InvalidCode::InvalidValue,
                format!("Invalid schema for '{param}': {}", fault.message),
            )
            .into()
        }
        GrammarError::Compile(message) => ApiError::invalid(
            base,
            InvalidCode::InvalidValue,
            format!("Invalid schema for '{base}': {message}"),
        )
        .into(),
    }
}

/// [`grammar_spec_in`] the generic scheme's syntax.
pub fn grammar_spec(
    tools: &[Tool],
    mode: &ToolMode,
    parallel: bool,
    format: Option<&ResponseFormat>,
) -> Result<Option<(GrammarSpec, String)>> {
    grammar_spec_in(&Syntax::GENERIC, tools, mode, parallel, format)
}

/// The grammar of the output, calls written in `syntax`, and the param
/// its faults are reported against; `None` when the output is free text.
pub fn grammar_spec_in(
    syntax: &Syntax,
    tools: &[Tool],
    mode: &ToolMode,
    parallel: bool,
    format: Option<&ResponseFormat>,
) -> Result<Option<(GrammarSpec, String)>> {
    let answer = match format {
        None | Some(ResponseFormat::Text) => None,
        Some(ResponseFormat::JsonObject) => Some(GrammarSpec::JsonObject),
        Some(ResponseFormat::JsonSchema { json_schema }) => Some(GrammarSpec::JsonSchema {
            schema: json_schema
                .schema
                .clone()
                .unwrap_or_else(|| json!({"type": "object"})),
            strict: json_schema.strict.unwrap_or(false),
        }),
    };
    const FORMAT_PARAM: &str = "response_format.json_schema.schema";
    if *mode == ToolMode::Off {
        if let Some(GrammarSpec::JsonSchema { schema, strict }) = &answer {
            // Check here too, so that the fault names its place.
            grammar::schema::check(schema, *strict)
                .map_err(|fault| grammar_error(GrammarError::Schema(fault), FORMAT_PARAM))?;
        }
        return Ok(answer.map(|spec| (spec, FORMAT_PARAM.to_owned())));
    }
    let mut rules = Vec::new();
    let mut names = Vec::new();
    for (i, tool) in tools.iter().enumerate() {
        if let ToolMode::Named(name) = mode {
            if &tool.function.name != name {
                continue;
            }
        }
        let parameters = tool
            .function
            .parameters
            .clone()
            .unwrap_or_else(|| json!({"type": "object", "properties": {}}));
        let strict = tool.function.strict.unwrap_or(false);
        grammar::schema::check(&parameters, strict).map_err(|fault| {
            grammar_error(
                GrammarError::Schema(fault),
                &format!("tools[{i}].function.parameters"),
            )
        })?;
        let arguments = serde_json::to_string(&with_layout(parameters)).unwrap_or_default();
        let name = &tool.function.name;
        rules.push(format!(
            "call_{i}: {}",
            syntax.lark_call(name, &arguments, false)
        ));
        if !syntax.begin.is_empty() {
            // The first call carries the list's opening (see `Syntax::lark_call`).
            rules.push(format!(
                "first_{i}: {}",
                syntax.lark_call(name, &arguments, true)
            ));
        }
        names.push(i);
    }
    let alternatives = |rule: &str| {
        let names: Vec<String> = names.iter().map(|i| format!("{rule}_{i}")).collect();
        format!("{rule}: {}", names.join(" | "))
    };
    let call = if syntax.begin.is_empty() {
        format!("first: call\n{}", alternatives("call"))
    } else {
        format!("{}\n{}", alternatives("first"), alternatives("call"))
    };
    let most = if parallel { MAX_PARALLEL_CALLS } else { 1 };
    let calls = format!("calls: {}", syntax.lark_calls(most));
    let start = match (mode, &answer) {
        (ToolMode::Auto, None) => format!(
            "start: calls | text\ntext: TEXT\nTEXT: {}",
            syntax.text_regex()
        ),
        (ToolMode::Auto, Some(spec)) => format!(
            "start: calls | answer\nanswer: %json {}",
            answer_schema(spec)
        ),
        _ => "start: calls".to_owned(),
    };
    let lark = format!("{start}\n{calls}\n{call}\n{}\n", rules.join("\n"));
    Ok(Some((GrammarSpec::Lark(lark), "tools".to_owned())))
}

/// The JSON Schema of an answer for `%json` inside a Lark grammar.
fn answer_schema(spec: &GrammarSpec) -> String {
    let schema = match spec {
        GrammarSpec::JsonSchema { schema, .. } => schema.clone(),
        _ => json!({"type": "object"}),
    };
    serde_json::to_string(&with_layout(schema)).unwrap_or_default()
}

/// The compact layout the reader relies on: `{"a": 1, "b": [2]}`.
fn with_layout(mut schema: Value) -> Value {
    if let Value::Object(object) = &mut schema {
        object.insert(
            "x-guidance".into(),
            json!({"whitespace_flexible": false, "item_separator": ", ", "key_separator": ": "}),
        );
    }
    schema
}

/// The conversation as the chat template takes it.
#[derive(Debug, Clone, PartialEq)]
pub enum Rendering {
    /// Plain role/content messages (tools, if any, in the generic scheme).
    Plain(Vec<engine::ChatMessage>),
    /// Hugging Face's message shape and the template's `tools` variable.
    Template {
        messages: Value,
        tools: Option<Value>,
    },
}

/// How `messages` (offering `tools` under `mode`) go into the template
/// `source`: through its own tools and tool messages when it renders
/// tools in a syntax we know and the conversation involves tools;
/// otherwise plain, in the generic scheme ([`render_messages`]).
pub fn render(
    source: Option<&str>,
    messages: &[ChatMessage],
    tools: &[Tool],
    mode: &ToolMode,
) -> Rendering {
    let tool_turns = messages.iter().any(|m| {
        matches!(m, ChatMessage::Tool { .. })
            || matches!(m, ChatMessage::Assistant { tool_calls: Some(c), .. } if !c.is_empty())
    });
    if *mode != ToolMode::Off || tool_turns {
        if let Some((source, syntax)) =
            source.and_then(|s| Syntax::of_template(s).ok().map(|syntax| (s, syntax)))
        {
            return Rendering::Template {
                messages: template_messages(messages, &syntax, source),
                tools: (*mode != ToolMode::Off).then(|| template_tools(tools)),
            };
        }
    }
    Rendering::Plain(render_messages(messages, tools, mode))
}

/// The conversation as the template takes it, in the generic tool scheme
/// when `tools` are offered (`mode` other than `Off`) or the conversation
/// holds tool turns.
pub fn render_messages(
    messages: &[ChatMessage],
    tools: &[Tool],
    mode: &ToolMode,
) -> Vec<engine::ChatMessage> {
    let mut out: Vec<engine::ChatMessage> = Vec::with_capacity(messages.len() + 1);
    let mut tool_results = String::new();
    let flush = |out: &mut Vec<engine::ChatMessage>, results: &mut String| {
        if !results.is_empty() {
            out.push(engine::ChatMessage::new("user", std::mem::take(results)));
        }
    };
    for message in messages {
        if let ChatMessage::Tool { content, .. } = message {
            if !tool_results.is_empty() {
                tool_results.push('\n');
            }
            tool_results.push_str(&format!(
                "<tool_response>\n{}\n</tool_response>",
                content.text()
            ));
            continue;
        }
        flush(&mut out, &mut tool_results);
        let role = match message {
            ChatMessage::Developer { .. } => "system",
            other => other.role(),
        };
        let mut content = message.content().map(|c| c.text()).unwrap_or_default();
        if let ChatMessage::Assistant {
            tool_calls: Some(calls),
            ..
        } = message
        {
            if !calls.is_empty() {
                if !content.is_empty() {
                    content.push('\n');
                }
                content.push_str(
                    &Syntax::GENERIC.render_calls(
                        calls
                            .iter()
                            .map(|c| (c.function.name.as_str(), c.function.arguments.as_str())),
                    ),
                );
            }
        }
        out.push(engine::ChatMessage::new(role, content));
    }
    flush(&mut out, &mut tool_results);
    if *mode != ToolMode::Off {
        let block = tools_prompt(tools, mode);
        match out.first_mut() {
            Some(first) if first.role == "system" => {
                first.content = format!("{}\n\n{block}", first.content);
            }
            _ => out.insert(0, engine::ChatMessage::new("system", block)),
        }
    }
    out
}

/// The system prompt's tool section.
fn tools_prompt(tools: &[Tool], mode: &ToolMode) -> String {
    let mut list = String::new();
    for tool in tools {
        let entry = json!({"type": "function", "function": {
            "name": tool.function.name,
            "description": tool.function.description,
            "parameters": tool.function.parameters,
        }});
        list.push_str(&serde_json::to_string(&entry).unwrap_or_default());
        list.push('\n');
    }
    let rule = match mode {
        ToolMode::Required => "You must call at least one function.".to_owned(),
        ToolMode::Named(name) => format!("You must call the function `{name}`."),
        _ => "Call a function when it helps to answer; otherwise answer in plain text.".to_owned(),
    };
    format!(
        "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n\
         You are provided with function signatures within <tools></tools> XML tags:\n\
         <tools>\n{list}</tools>\n\n\
         For each function call, return a json object with function name and arguments \
         within <tool_call></tool_call> XML tags:\n\
         <tool_call>\n{{\"name\": <function-name>, \"arguments\": <args-json-object>}}\n</tool_call>\n\n{rule}"
    )
}
