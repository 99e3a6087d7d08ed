//! Function tools and structured output on the local engine, reusable by
//! every API that takes them (chat completions; the Responses and
//! Anthropic APIs convert to the chat types first):
//!
//! - [`OutputPlan`]: from `tools`, `tool_choice`, `parallel_tool_calls` and
//!   `response_format`, the grammar the output must follow (compiled for
//!   the model; a bad schema is a 400 naming where it is wrong) and
//!   whether the output is to be read for tool calls;
//! - [`render_messages`]: the conversation as the chat template takes it
//!   in the generic scheme every model gets — the tool list in the system
//!   prompt, earlier calls as `<tool_call>` blocks, tool results as
//!   `<tool_response>` blocks in a user turn (templates that know no tool
//!   role still render them);
//! - [`CallReader`]: reads the output as it streams, into text and tool
//!   calls in OpenAI's delta order (index, id and name first, then
//!   argument fragments); the whole answer reads the same way.
//!
//! The call syntax is `<tool_call>\n{"name": …, "arguments": {…}}\n</tool_call>`
//! (Hermes' and Qwen's), one block per call, separated by a newline.

use api::{
    ApiError, ChatCompletionRequest, ChatMessage, FunctionCall, InvalidCode, ResponseFormat, Tool,
    ToolCall, ToolChoice, ToolChoiceMode, ToolType,
};
use engine::EngineHandle;
use grammar::{Compiler, GrammarError, GrammarSpec};
use serde_json::{json, Value};

use crate::Result;

const OPEN: &str = "<tool_call>\n";
/// Most calls in one turn with `parallel_tool_calls` (small models would
/// otherwise repeat a call until `max_tokens`).
pub const MAX_PARALLEL_CALLS: usize = 4;
const CLOSE: &str = "\n</tool_call>";

/// What the output must be, and how to read it.
#[derive(Clone, Default)]
pub struct OutputPlan {
    /// The compiled grammar, if the output is constrained.
    pub grammar: Option<grammar::Grammar>,
    /// Whether the output may hold tool calls (tools given, choice not `none`).
    pub tools: bool,
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

/// The output plan of a chat request on `engine`: compiles its grammar
/// (off the executor: a schema may take milliseconds).
pub async fn plan(engine: &EngineHandle, request: &ChatCompletionRequest) -> Result<OutputPlan> {
    let mode = tool_mode(request.tools.as_deref(), request.tool_choice.as_ref());
    let spec = grammar_spec(
        request.tools.as_deref().unwrap_or_default(),
        &mode,
        request.parallel_tool_calls.unwrap_or(true),
        request.response_format.as_ref(),
    )?;
    let Some(spec) = spec else {
        return Ok(OutputPlan {
            grammar: None,
            tools: mode != ToolMode::Off,
        });
    };
    let tokenizer = engine.tokenizer().clone();
    let n_vocab = engine.info().config.n_vocab.max(tokenizer.vocab_size());
    let base = spec.1;
    let grammar = tokio::task::spawn_blocking(move || {
        let compiler = Compiler::for_tokenizer(&tokenizer, n_vocab)?;
        compiler.compile(&spec.0)
    })
    .await
    .map_err(|_| ApiError::invalid_body("The grammar could not be compiled."))?
    .map_err(|err| grammar_error(err, &base))?;
    Ok(OutputPlan {
        grammar: Some(grammar),
        tools: mode != ToolMode::Off,
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

/// The grammar of the output and the param its faults are reported
/// against; `None` when the output is free text.
pub fn grammar_spec(
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
        rules.push(format!(
            "call_{i}: {} %json {} {}",
            lark_string(OPEN),
            call_schema(&tool.function.name, parameters),
            lark_string(CLOSE)
        ));
        names.push(format!("call_{i}"));
    }
    let call = format!("call: {}", names.join(" | "));
    // Parallel calls: up to MAX_PARALLEL_CALLS, one per line.
    let most = if parallel { MAX_PARALLEL_CALLS } else { 1 };
    let calls = format!(
        "calls: {}",
        (1..=most)
            .map(|n| vec!["call"; n].join(" \"\\n\" "))
            .collect::<Vec<_>>()
            .join(" | ")
    );
    let start = match (mode, &answer) {
        (ToolMode::Auto, None) => {
            "start: calls | text\ntext: TEXT\nTEXT: /[^<][\\s\\S]*/".to_owned()
        }
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

/// The compact layout the reader relies on: `{"name": "f", "arguments": {…}}`.
fn with_layout(mut schema: Value) -> Value {
    if let Value::Object(object) = &mut schema {
        object.insert(
            "x-guidance".into(),
            json!({"whitespace_flexible": false, "item_separator": ", ", "key_separator": ": "}),
        );
    }
    schema
}

/// One call's schema: the name fixed, the arguments the function's
/// parameters (their `$defs` lifted to the root, where `#/$defs/…` points).
fn call_schema(name: &str, mut parameters: Value) -> String {
    let mut root = json!({
        "type": "object",
        "properties": {"name": {"const": name}},
        "required": ["name", "arguments"],
        "additionalProperties": false
    });
    if let Value::Object(params) = &mut parameters {
        for key in ["$defs", "definitions"] {
            if let Some(defs) = params.remove(key) {
                root[key] = defs;
            }
        }
    }
    root["properties"]["arguments"] = parameters;
    serde_json::to_string(&with_layout(root)).unwrap_or_default()
}

/// A Lark string literal.
fn lark_string(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_default()
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
            for call in calls {
                if !content.is_empty() {
                    content.push('\n');
                }
                content.push_str(&render_call(&call.function));
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

/// An earlier call as the model writes it.
fn render_call(call: &FunctionCall) -> String {
    let arguments = serde_json::from_str::<Value>(&call.arguments)
        .map(|v| serde_json::to_string(&v).unwrap_or_default())
        .unwrap_or_else(|_| call.arguments.clone());
    format!(
        "{OPEN}{{\"name\": {}, \"arguments\": {arguments}}}{CLOSE}",
        lark_string(&call.name)
    )
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

/// A piece of the output, in stream order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    /// Answer text.
    Text(String),
    /// A call begins: its index among the choice's calls, id and name.
    CallStart {
        index: u32,
        id: String,
        name: String,
    },
    /// More of call `index`'s JSON arguments.
    Arguments { index: u32, text: String },
}

enum State {
    /// Nothing read that tells text from a call.
    Start,
    Text,
    /// Inside a call block (after its opening tag).
    Call {
        started: bool,
        /// Bytes of the arguments already sent.
        sent: usize,
    },
    /// After a call: another call or the end.
    Between,
}

/// Reads one choice's output into [`Piece`]s as it streams.
pub struct CallReader {
    state: State,
    buf: String,
    calls: u32,
}

impl Default for CallReader {
    fn default() -> Self {
        CallReader {
            state: State::Start,
            buf: String::new(),
            calls: 0,
        }
    }
}

/// The name and where the arguments start, once the call's head is whole.
fn call_head(block: &str) -> Option<(String, usize)> {
    let rest = block.strip_prefix("{\"name\": \"")?;
    let end = rest.find('"')?;
    let name = &rest[..end];
    let after = &rest[end..];
    let marker = "\", \"arguments\": ";
    if after.len() < marker.len() {
        return None;
    }
    after
        .starts_with(marker)
        .then(|| (name.to_owned(), "{\"name\": \"".len() + end + marker.len()))
}

impl CallReader {
    /// How many calls were read.
    pub fn calls(&self) -> u32 {
        self.calls
    }

    /// Reads more output.
    pub fn push(&mut self, text: &str) -> Vec<Piece> {
        self.buf.push_str(text);
        self.drain(false)
    }

    /// The output is over: everything still held.
    pub fn finish(&mut self) -> Vec<Piece> {
        self.drain(true)
    }

    fn drain(&mut self, end: bool) -> Vec<Piece> {
        let mut out = Vec::new();
        loop {
            match &mut self.state {
                State::Start => {
                    let tag = OPEN.trim_end();
                    if self.buf.starts_with(tag) {
                        self.state = State::Call {
                            started: false,
                            sent: 0,
                        };
                        self.buf.drain(..tag.len());
                        continue;
                    }
                    if tag.starts_with(self.buf.as_str()) && !end {
                        return out;
                    }
                    self.state = State::Text;
                }
                State::Text => {
                    if !self.buf.is_empty() {
                        out.push(Piece::Text(std::mem::take(&mut self.buf)));
                    }
                    return out;
                }
                State::Call { started, sent } => {
                    // The block: "\n{...}\n</tool_call>"; the head may still be arriving.
                    let block = self.buf.strip_prefix('\n').unwrap_or(&self.buf);
                    let skip = self.buf.len() - block.len();
                    let Some((name, args_at)) = call_head(block) else {
                        if end {
                            self.buf.clear();
                        }
                        return out;
                    };
                    let index = self.calls;
                    if !*started {
                        *started = true;
                        out.push(Piece::CallStart {
                            index,
                            id: format!("call_{}", crate::random_hex()),
                            name,
                        });
                    }
                    let args = &block[args_at..];
                    if let Some(close) = args.find(CLOSE) {
                        // The arguments end before the wrapper's closing brace.
                        let whole = args[..close].strip_suffix('}').unwrap_or(&args[..close]);
                        if whole.len() > *sent {
                            out.push(Piece::Arguments {
                                index,
                                text: whole[*sent..].to_owned(),
                            });
                        }
                        let consumed = skip + args_at + close + CLOSE.len();
                        self.buf.drain(..consumed);
                        self.calls += 1;
                        self.state = State::Between;
                        continue;
                    }
                    // Hold back what may be the wrapper's brace and the closing
                    // tag; at the end, drop as much of them as arrived.
                    let hold = if end {
                        match (0..=CLOSE.len())
                            .rev()
                            .find(|&k| args.ends_with(&format!("}}{}", &CLOSE[..k])))
                        {
                            // A lone brace: the wrapper's only if the rest is whole JSON.
                            Some(0) => usize::from(
                                serde_json::from_str::<Value>(&args[..args.len() - 1]).is_ok(),
                            ),
                            Some(k) => k + 1,
                            None => 0,
                        }
                    } else {
                        CLOSE.len() + 1
                    };
                    let mut upto = args.len().saturating_sub(hold);
                    while !args.is_char_boundary(upto) {
                        upto -= 1;
                    }
                    if upto > *sent {
                        out.push(Piece::Arguments {
                            index,
                            text: args[*sent..upto].to_owned(),
                        });
                        *sent = upto;
                    }
                    if end {
                        self.buf.clear();
                    }
                    return out;
                }
                State::Between => {
                    let next = format!("\n{}", OPEN.trim_end());
                    if self.buf.starts_with(&next) {
                        self.buf.drain(..next.len());
                        self.state = State::Call {
                            started: false,
                            sent: 0,
                        };
                        continue;
                    }
                    if next.starts_with(self.buf.as_str()) && !end {
                        return out;
                    }
                    // Anything else after the calls is not part of the answer.
                    self.buf.clear();
                    return out;
                }
            }
        }
    }
}

/// A whole output read at once: its text (`None` when empty) and calls.
pub fn read_whole(text: &str) -> (Option<String>, Vec<ToolCall>) {
    let mut reader = CallReader::default();
    let mut pieces = reader.push(text);
    pieces.extend(reader.finish());
    let mut content = String::new();
    let mut calls: Vec<ToolCall> = Vec::new();
    for piece in pieces {
        match piece {
            Piece::Text(text) => content.push_str(&text),
            Piece::CallStart { id, name, .. } => calls.push(ToolCall {
                id,
                kind: ToolType::Function,
                function: FunctionCall {
                    name,
                    arguments: String::new(),
                },
            }),
            Piece::Arguments { index, text } => {
                if let Some(call) = calls.get_mut(index as usize) {
                    call.function.arguments.push_str(&text);
                }
            }
        }
    }
    (
        (!content.is_empty() || calls.is_empty()).then_some(content),
        calls,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const OUT: &str = "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\", \"days\": [1, 2]}}\n</tool_call>\n<tool_call>\n{\"name\": \"f\", \"arguments\": {}}\n</tool_call>";

    #[test]
    fn calls_read_the_same_in_any_split() {
        let (text, whole) = read_whole(OUT);
        assert_eq!(text, None);
        assert_eq!(whole.len(), 2);
        assert_eq!(whole[0].function.name, "get_weather");
        assert_eq!(
            whole[0].function.arguments,
            "{\"city\": \"Paris\", \"days\": [1, 2]}"
        );
        assert_eq!(whole[1].function.arguments, "{}");
        for size in 1..8 {
            let mut reader = CallReader::default();
            let mut pieces = Vec::new();
            let chars: Vec<char> = OUT.chars().collect();
            for chunk in chars.chunks(size) {
                pieces.extend(reader.push(&chunk.iter().collect::<String>()));
            }
            pieces.extend(reader.finish());
            let mut args = [String::new(), String::new()];
            let mut starts = 0;
            for p in &pieces {
                match p {
                    Piece::CallStart { index, name, .. } => {
                        assert_eq!(*index, starts);
                        assert_eq!(name, if starts == 0 { "get_weather" } else { "f" });
                        starts += 1;
                    }
                    Piece::Arguments { index, text } => args[*index as usize].push_str(text),
                    Piece::Text(t) => panic!("text {t:?}"),
                }
            }
            assert_eq!(starts, 2);
            assert_eq!(args[0], whole[0].function.arguments, "split {size}");
            assert_eq!(args[1], "{}");
            // Arguments arrive in several fragments for small splits.
            let fragments = pieces
                .iter()
                .filter(|p| matches!(p, Piece::Arguments { index: 0, .. }))
                .count();
            assert!(size > 4 || fragments > 1, "{size}: {fragments}");
        }
    }

    #[test]
    fn a_cut_call_keeps_only_its_arguments() {
        let cut = "<tool_call>\n{\"name\": \"f\", \"arguments\": {\"a\": 1}}\n</to";
        assert_eq!(read_whole(cut).1[0].function.arguments, "{\"a\": 1}");
        let cut = "<tool_call>\n{\"name\": \"f\", \"arguments\": {\"a\": {\"b\": 1}";
        assert_eq!(
            read_whole(cut).1[0].function.arguments,
            "{\"a\": {\"b\": 1}"
        );
        let cut = "<tool_call>\n{\"name\": \"f\", \"arguments\": {\"a\": 1}}";
        assert_eq!(read_whole(cut).1[0].function.arguments, "{\"a\": 1}");
    }

    #[test]
    fn text_answers_stay_text() {
        assert_eq!(read_whole("Hello <b>"), (Some("Hello <b>".into()), vec![]));
        assert_eq!(read_whole("<b>hi"), (Some("<b>hi".into()), vec![]));
        assert_eq!(read_whole(""), (Some(String::new()), vec![]));
    }
}
