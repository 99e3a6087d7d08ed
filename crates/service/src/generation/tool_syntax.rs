//! The tool-call syntaxes the engine writes and reads, and which chat
//! templates render tools themselves.
//!
//! A chat template that references `tools` and whose call syntax is one we
//! know ([`Syntax::of_template`]) gets the request's tools through that
//! variable, the conversation's assistant `tool_calls` and `tool` messages
//! in Hugging Face's shape ([`template_messages`], [`template_tools`]), and
//! its output is constrained to and read in its own syntax. Any other model
//! gets the generic scheme in the Hermes syntax ([`Syntax::GENERIC`]).
//!
//! Every syntax is one shape: `begin call (sep call)* end`, a call being
//! `head NAME mid ARGUMENTS tail`, with the arguments a JSON object:
//!
//! | family | a call |
//! |---|---|
//! | Hermes (Qwen 2.5/3, QwQ, Hermes 2 Pro/3, Granite 4, MiMo-VL, Bielik) | `<tool_call>\n{"name": "f", "arguments": {…}}\n</tool_call>`, one per line |
//! | Llama 3.1–3.3 | `{"name": "f", "parameters": {…}}`, one per turn |
//! | Mistral Nemo | `[TOOL_CALLS][{"name": "f", "arguments": {…}}, …]` |
//! | Mistral (Devstral, Ministral 3) | `[TOOL_CALLS]f[ARGS]{…}` per call |
//! | Mistral Small 3.2 | `[TOOL_CALLS]f[CALL_ID]a1b2c3d4e[ARGS]{…}` per call |
//! | Granite 3 | `<|tool_call|>[{"name": "f", "arguments": {…}}, …]` |
//!
//! Mistral's markers and Granite's `<|tool_call|>` ([`MARKERS`]) are single
//! control tokens in those models' own vocabularies. For such a model
//! ([`Syntax::in_vocabulary`]) the grammar names the token by id instead
//! of spelling its text, and the engine shows that token's text (to the
//! call reader, which consumes it as the syntax); in any other vocabulary
//! the marker is plain text.

use std::collections::HashMap;

use api::{ChatMessage, Tool};
use engine::Tokenizer;
use serde_json::{json, Value};

/// Markers of the syntaxes that real models hold as one control token.
pub const MARKERS: [&str; 4] = ["[TOOL_CALLS]", "[ARGS]", "[CALL_ID]", "<|tool_call|>"];

/// A template family whose tool calls the engine can write and read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// The generic scheme (Hermes' syntax, tools in our own system prompt).
    Generic,
    Hermes,
    Llama3,
    MistralList,
    MistralArgs,
    MistralCallId,
    Granite,
}

/// One family's call syntax: `begin call (sep call)* end`, a call being
/// `head NAME mid ARGUMENTS tail`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Syntax {
    pub family: Family,
    /// Before the first call.
    pub begin: &'static str,
    /// Before each call's name.
    pub head: &'static str,
    /// Between the name and the arguments (after the call id, if any).
    pub mid: &'static str,
    /// After the arguments.
    pub tail: &'static str,
    /// Between calls.
    pub sep: &'static str,
    /// After the last call.
    pub end: &'static str,
    /// Calls per turn the format allows (Llama 3's templates take one).
    pub most: Option<usize>,
    /// A `[CALL_ID]` of 9 letters and digits follows the name.
    pub call_id: bool,
    /// The control token of each of [`MARKERS`] in the model's vocabulary,
    /// if it has one ([`Syntax::in_vocabulary`]).
    pub control: [Option<u32>; MARKERS.len()],
}

const JSON_HEAD: &str = "{\"name\": \"";

impl Syntax {
    /// The generic scheme's syntax (Hermes' and Qwen's).
    pub const GENERIC: Syntax = Syntax {
        family: Family::Generic,
        begin: "",
        head: "<tool_call>\n{\"name\": \"",
        mid: "\", \"arguments\": ",
        tail: "}\n</tool_call>",
        sep: "\n",
        end: "",
        most: None,
        call_id: false,
        control: [None; MARKERS.len()],
    };

    const LLAMA3: Syntax = Syntax {
        family: Family::Llama3,
        begin: "",
        head: JSON_HEAD,
        mid: "\", \"parameters\": ",
        tail: "}",
        sep: "",
        end: "",
        most: Some(1),
        call_id: false,
        control: [None; MARKERS.len()],
    };

    const MISTRAL_LIST: Syntax = Syntax {
        family: Family::MistralList,
        begin: "[TOOL_CALLS][",
        head: JSON_HEAD,
        mid: "\", \"arguments\": ",
        tail: "}",
        sep: ", ",
        end: "]",
        most: None,
        call_id: false,
        control: [None; MARKERS.len()],
    };

    const MISTRAL_ARGS: Syntax = Syntax {
        family: Family::MistralArgs,
        begin: "",
        head: "[TOOL_CALLS]",
        mid: "[ARGS]",
        tail: "",
        sep: "",
        end: "",
        most: None,
        call_id: false,
        control: [None; MARKERS.len()],
    };

    const GRANITE: Syntax = Syntax {
        family: Family::Granite,
        begin: "<|tool_call|>[",
        ..Syntax::MISTRAL_LIST
    };

    /// How a template takes tools: rendered by the template in its own
    /// syntax, or (`Err`, with the reason) through the generic scheme.
    pub fn of_template(source: &str) -> Result<Syntax, &'static str> {
        if !mentions(source, "tools") {
            return Err("the template takes no tools");
        }
        let has = |s: &str| source.contains(s);
        if has("<function=") || has("<arg_key>") {
            return Err("XML arguments (<function=…>/<arg_key>), not JSON");
        }
        if has("[TOOL_CALLS][") {
            return Ok(Syntax::MISTRAL_LIST);
        }
        if has("[TOOL_CALLS]") && has("[CALL_ID]") && has("[ARGS]") {
            return Ok(Syntax {
                family: Family::MistralCallId,
                call_id: true,
                ..Syntax::MISTRAL_ARGS
            });
        }
        if has("[TOOL_CALLS]") && has("[ARGS]") {
            return Ok(Syntax::MISTRAL_ARGS);
        }
        if has("<|tool_call|>") {
            return Ok(Syntax::GRANITE);
        }
        let json_call = has("{\"name\": ") || has("{\\\"name\\\": ");
        if has("<|start_header_id|>") && has("\"parameters\": ") && json_call {
            return Ok(Syntax::LLAMA3);
        }
        if has("<tool_call>") && json_call && !has("<tool_calls>") {
            return Ok(Syntax {
                family: Family::Hermes,
                ..Syntax::GENERIC
            });
        }
        Err("its call syntax is not one the engine writes")
    }

    /// This syntax for a model of `tokenizer`: each marker that is exactly
    /// one control token of its vocabulary is written as that token.
    pub fn in_vocabulary(mut self, tokenizer: &Tokenizer) -> Syntax {
        for (slot, marker) in self.control.iter_mut().zip(MARKERS) {
            *slot = tokenizer
                .token_to_id(marker)
                .filter(|&id| tokenizer.is_control(id));
        }
        self
    }

    /// The control tokens the grammar names: their text must reach the
    /// call reader.
    pub fn control_tokens(&self) -> Vec<u32> {
        let used = |m: &str| {
            [
                self.begin, self.head, self.mid, self.tail, self.sep, self.end,
            ]
            .iter()
            .any(|part| part.contains(m))
                || (self.call_id && m == "[CALL_ID]")
        };
        MARKERS
            .iter()
            .zip(self.control)
            .filter_map(|(m, id)| id.filter(|_| used(m)))
            .collect()
    }

    /// A Lark sequence matching `text`: string literals, with each marker
    /// the vocabulary holds as a control token named by id (`<[ID]>`).
    pub fn lark_text(&self, text: &str) -> String {
        let mut parts = Vec::new();
        let mut rest = text;
        'outer: while !rest.is_empty() {
            // The earliest marker that is a control token here.
            let mut found: Option<(usize, &str, u32)> = None;
            for (marker, id) in MARKERS.iter().zip(self.control) {
                if let (Some(id), Some(at)) = (id, rest.find(marker)) {
                    if found.is_none_or(|(best, _, _)| at < best) {
                        found = Some((at, marker, id));
                    }
                }
            }
            let Some((at, marker, id)) = found else {
                parts.push(lark_string(rest));
                break 'outer;
            };
            if at > 0 {
                parts.push(lark_string(&rest[..at]));
            }
            parts.push(format!("<[{id}]>"));
            rest = &rest[at + marker.len()..];
        }
        if parts.is_empty() {
            parts.push(lark_string(""));
        }
        parts.join(" ")
    }

    /// The text that opens the first call.
    pub fn opener(&self) -> String {
        format!("{}{}", self.begin, self.head)
    }

    /// Calls as this syntax writes them (for templates that do not render
    /// an assistant's `tool_calls` themselves, and for the generic scheme).
    pub fn render_calls<'a>(&self, calls: impl Iterator<Item = (&'a str, &'a str)>) -> String {
        let parts: Vec<String> = calls
            .enumerate()
            .map(|(i, (name, arguments))| {
                let arguments = serde_json::from_str::<Value>(arguments)
                    .map(|v| compact(&v))
                    .unwrap_or_else(|_| arguments.to_owned());
                let id = if self.call_id {
                    format!("[CALL_ID]{}", mistral_id(&format!("call{i}")))
                } else {
                    String::new()
                };
                format!(
                    "{}{name}{id}{}{arguments}{}",
                    self.head, self.mid, self.tail
                )
            })
            .collect();
        format!("{}{}{}", self.begin, parts.join(self.sep), self.end)
    }

    /// The Lark rule body of one call of `name` with `arguments` the
    /// `%json` schema text; the `first` call of a turn starts with the
    /// syntax's `begin`, in one literal with the head and the name, so
    /// that the lexer need not choose between a call and text (which may
    /// begin like one) before they differ.
    pub fn lark_call(&self, name: &str, arguments: &str, first: bool) -> String {
        let begin = if first { self.begin } else { "" };
        let head = self.lark_text(&format!("{begin}{}{name}", self.head));
        let id = if self.call_id {
            format!(" {} /[a-zA-Z0-9]{{9}}/ ", self.lark_text("[CALL_ID]"))
        } else {
            " ".to_owned()
        };
        format!(
            "{head}{id}{} %json {arguments} {}",
            self.lark_text(self.mid),
            self.lark_text(self.tail)
        )
    }

    /// The Lark rule body of up to `most` calls (the format's own limit
    /// applies too): the rule `first`, then the rule `call`.
    pub fn lark_calls(&self, most: usize) -> String {
        let most = self.most.map_or(most, |own| own.min(most)).max(1);
        let more = if most > 1 {
            format!(" ({} call){{0,{}}}", self.lark_text(self.sep), most - 1)
        } else {
            String::new()
        };
        format!("first{more} {}", self.lark_text(self.end))
    }

    /// A Lark regex for text that does not begin the way a call does:
    /// one character or more, not starting with the opener (it may start
    /// with any strict prefix of it, `<` included).
    pub fn text_regex(&self) -> String {
        let opener = self.opener();
        let chars: Vec<char> = opener.trim_end_matches(['\n', ' ']).chars().collect();
        // not(c_i …) = [^c_i].* | c_i not(c_i+1 …), and after the first
        // character the text may also end there.
        fn rest(chars: &[char], i: usize) -> String {
            let c = hex(chars[i]);
            let other = format!("[^{c}][\\s\\S]*");
            let inner = if i + 1 < chars.len() {
                format!("{other}|{c}{}", rest(chars, i + 1))
            } else {
                other
            };
            if i == 0 {
                inner
            } else {
                format!("(|{inner})")
            }
        }
        if chars.is_empty() {
            return "/[\\s\\S]+/".to_owned();
        }
        format!("/{}/", rest(&chars, 0))
    }
}

/// `c` as a regex hex escape (safe inside and outside classes).
fn hex(c: char) -> String {
    if c.is_ascii_alphanumeric() {
        c.to_string()
    } else {
        format!("\\x{{{:X}}}", c as u32)
    }
}

/// A Lark string literal.
pub fn lark_string(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_default()
}

/// JSON in the compact layout the grammars write: `{"a": 1, "b": [2]}`.
pub fn compact(v: &Value) -> String {
    match v {
        Value::Object(map) => {
            let items: Vec<String> = map
                .iter()
                .map(|(k, v)| format!("{}: {}", lark_string(k), compact(v)))
                .collect();
            format!("{{{}}}", items.join(", "))
        }
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(compact).collect();
            format!("[{}]", items.join(", "))
        }
        other => other.to_string(),
    }
}

/// Whether `source` uses `name` as a variable (a word of its own).
fn mentions(source: &str, name: &str) -> bool {
    source.match_indices(name).any(|(at, _)| {
        let before = source[..at].chars().next_back();
        let after = source[at + name.len()..].chars().next();
        let word = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
        !word(before) && !word(after)
    })
}

/// A call id as Mistral's templates demand it: 9 letters and digits,
/// the same for the same id.
pub fn mistral_id(id: &str) -> String {
    let mut alnum: Vec<char> = id.chars().filter(char::is_ascii_alphanumeric).collect();
    if alnum.len() >= 9 {
        return alnum.split_off(alnum.len() - 9).into_iter().collect();
    }
    // Short ids: pad with a hash of the whole id so distinct ids stay apart.
    let hash = id.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    let pad = format!("{hash:016x}");
    let mut out: String = alnum.into_iter().collect();
    out.push_str(&pad[..9 - out.len()]);
    out
}

/// The request's tools as the templates take them: OpenAI's function list.
pub fn template_tools(tools: &[Tool]) -> Value {
    Value::Array(
        tools
            .iter()
            .map(|tool| {
                let mut function = json!({"name": tool.function.name});
                if let Some(d) = &tool.function.description {
                    function["description"] = json!(d);
                }
                function["parameters"] = tool
                    .function
                    .parameters
                    .clone()
                    .unwrap_or_else(|| json!({"type": "object", "properties": {}}));
                json!({"type": "function", "function": function})
            })
            .collect(),
    )
}

/// The conversation in Hugging Face's shape for a template of `syntax`
/// (`source` is the template): `developer` as `system`; an assistant's
/// `tool_calls` with their arguments as objects (templates apply `tojson`
/// to them), or written into its content in `syntax` when the template
/// renders no `tool_calls`; `tool` messages with their call's id and
/// function name. Mistral templates get 9-character call ids.
pub fn template_messages(messages: &[ChatMessage], syntax: &Syntax, source: &str) -> Value {
    let renders_calls = source.contains("tool_calls");
    let mistral = matches!(
        syntax.family,
        Family::MistralList | Family::MistralArgs | Family::MistralCallId
    );
    let id_of = |id: &str| {
        if mistral {
            mistral_id(id)
        } else {
            id.to_owned()
        }
    };
    let mut names: HashMap<&str, &str> = HashMap::new();
    let mut out = Vec::with_capacity(messages.len());
    for message in messages {
        let role = match message {
            ChatMessage::Developer { .. } => "system",
            other => other.role(),
        };
        let content = message.content().map(|c| c.text()).unwrap_or_default();
        match message {
            ChatMessage::Assistant {
                tool_calls: Some(calls),
                ..
            } if !calls.is_empty() => {
                for call in calls {
                    names.insert(&call.id, &call.function.name);
                }
                if !renders_calls {
                    let written = syntax.render_calls(
                        calls
                            .iter()
                            .map(|c| (c.function.name.as_str(), c.function.arguments.as_str())),
                    );
                    let content = if content.is_empty() {
                        written
                    } else {
                        format!("{content}\n{written}")
                    };
                    out.push(json!({"role": role, "content": content}));
                    continue;
                }
                let calls: Vec<Value> = calls
                    .iter()
                    .map(|c| {
                        let arguments = serde_json::from_str::<Value>(&c.function.arguments)
                            .unwrap_or_else(|_| json!(c.function.arguments));
                        json!({"id": id_of(&c.id), "type": "function", "function": {
                            "name": c.function.name, "arguments": arguments}})
                    })
                    .collect();
                out.push(json!({"role": role, "content": content, "tool_calls": calls}));
            }
            ChatMessage::Tool { tool_call_id, .. } => {
                let mut m = json!({"role": "tool", "content": content,
                    "tool_call_id": id_of(tool_call_id)});
                if let Some(name) = names.get(tool_call_id.as_str()) {
                    m["name"] = json!(name);
                }
                out.push(m);
            }
            _ => out.push(json!({"role": role, "content": content})),
        }
    }
    Value::Array(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mistral_ids_are_nine_alphanumerics_and_stable() {
        let a = mistral_id("call_0123456789abcdef");
        assert_eq!(a, "789abcdef");
        let short = mistral_id("c1");
        assert_eq!(short.len(), 9);
        assert!(short.starts_with("c1") && short.chars().all(|c| c.is_ascii_alphanumeric()));
        assert_eq!(short, mistral_id("c1"));
        assert_ne!(mistral_id("c_1"), mistral_id("c-1"));
    }

    #[test]
    fn calls_render_in_each_syntax() {
        let calls = [("f", "{\"a\":1}"), ("g", "{}")];
        assert_eq!(
            Syntax::GENERIC.render_calls(calls.into_iter()),
            "<tool_call>\n{\"name\": \"f\", \"arguments\": {\"a\": 1}}\n</tool_call>\n\
             <tool_call>\n{\"name\": \"g\", \"arguments\": {}}\n</tool_call>"
        );
        assert_eq!(
            Syntax::GRANITE.render_calls(calls.into_iter()),
            "<|tool_call|>[{\"name\": \"f\", \"arguments\": {\"a\": 1}}, {\"name\": \"g\", \"arguments\": {}}]"
        );
        assert_eq!(
            Syntax::MISTRAL_ARGS.render_calls(calls.into_iter()),
            "[TOOL_CALLS]f[ARGS]{\"a\": 1}[TOOL_CALLS]g[ARGS]{}"
        );
    }

    #[test]
    fn the_variable_tools_is_told_from_other_words() {
        assert!(mentions("{% if tools %}", "tools"));
        assert!(!mentions("{% if builtin_tools %}{{ xml_tools }}", "tools"));
        assert!(!mentions("{{ tools_in_user_message }}", "tools"));
    }
}
