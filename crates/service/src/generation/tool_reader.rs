//! Reading tool calls out of a model's output, in any [`Syntax`]: as it
//! streams, into text and calls in OpenAI's delta order (a call's index,
//! id and name first, then fragments of its arguments as they arrive,
//! which concatenate into the arguments JSON); a whole answer reads the
//! same way ([`read_whole`]).
//!
//! The arguments end where their JSON object closes (strings and escapes
//! tracked), so a syntax need not close calls with a tag of its own
//! (`[TOOL_CALLS]f[ARGS]{…}`) and keys the model adds after the arguments
//! (Mistral Nemo's `"id"`) are skipped.

use api::{FunctionCall, ToolCall, ToolType};

use super::tool_syntax::Syntax;

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

/// Where the JSON of the arguments stands.
#[derive(Default)]
struct Scan {
    depth: u32,
    in_string: bool,
    escaped: bool,
    opened: bool,
}

impl Scan {
    /// Reads `text`; the byte length up to and including the character
    /// that closes the JSON value, once it closes.
    fn feed(&mut self, text: &str) -> Option<usize> {
        for (at, c) in text.char_indices() {
            if self.in_string {
                match (self.escaped, c) {
                    (true, _) => self.escaped = false,
                    (false, '\\') => self.escaped = true,
                    (false, '"') => self.in_string = false,
                    _ => {}
                }
                continue;
            }
            match c {
                '"' => self.in_string = true,
                '{' | '[' => {
                    self.depth += 1;
                    self.opened = true;
                }
                '}' | ']' => {
                    self.depth = self.depth.saturating_sub(1);
                    if self.opened && self.depth == 0 {
                        return Some(at + c.len_utf8());
                    }
                }
                _ => {}
            }
        }
        None
    }
}

enum State {
    /// Nothing read that tells text from a call.
    Start,
    Text,
    /// After a call's head: its name (and id) until the arguments begin.
    Name,
    /// Inside call `index`'s arguments.
    Arguments(Scan),
    /// After a call's arguments: up to and through its tail.
    Tail,
    /// After a call: another call, or the end.
    Between,
    /// After the calls: nothing more is read.
    Done,
}

/// Reads one choice's output into [`Piece`]s as it streams.
pub struct CallReader {
    syntax: Syntax,
    state: State,
    buf: String,
    calls: u32,
}

impl Default for CallReader {
    /// A reader of the generic scheme's syntax.
    fn default() -> Self {
        CallReader::new(Syntax::GENERIC)
    }
}

impl CallReader {
    /// A reader of `syntax`.
    pub fn new(syntax: Syntax) -> Self {
        CallReader {
            syntax,
            state: State::Start,
            buf: String::new(),
            calls: 0,
        }
    }

    /// How many calls were read (begun).
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

    /// Whether the held text could still become `expected`: a strict prefix.
    fn waits_for(&self, expected: &str, end: bool) -> bool {
        !end && expected.starts_with(self.buf.as_str())
    }

    fn drain(&mut self, end: bool) -> Vec<Piece> {
        let mut out = Vec::new();
        loop {
            match &mut self.state {
                State::Start => {
                    let opener = self.syntax.opener();
                    if self.buf.starts_with(&opener) {
                        self.buf.drain(..opener.len());
                        self.state = State::Name;
                        continue;
                    }
                    if self.waits_for(&opener, end) {
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
                State::Name => {
                    let Some(at) = self.buf.find(self.syntax.mid) else {
                        if end {
                            self.buf.clear();
                        }
                        return out;
                    };
                    // Names are letters, digits, `_` and `-`: a quote or a
                    // bracket ends one (Mistral's `[CALL_ID]` follows it).
                    let name_end = self.buf[..at].find(['"', '[']).unwrap_or(at);
                    out.push(Piece::CallStart {
                        index: self.calls,
                        id: format!("call_{}", crate::random_hex()),
                        name: self.buf[..name_end].to_owned(),
                    });
                    self.calls += 1;
                    self.buf.drain(..at + self.syntax.mid.len());
                    self.state = State::Arguments(Scan::default());
                }
                State::Arguments(scan) => {
                    let index = self.calls - 1;
                    let closed_at = scan.feed(&self.buf);
                    let upto = closed_at.unwrap_or(self.buf.len());
                    if upto > 0 {
                        let text: String = self.buf.drain(..upto).collect();
                        out.push(Piece::Arguments { index, text });
                    }
                    if closed_at.is_none() {
                        return out;
                    }
                    self.state = State::Tail;
                }
                State::Tail => {
                    let tail = self.syntax.tail;
                    if let Some(at) = self.buf.find(tail) {
                        self.buf.drain(..at + tail.len());
                        self.state = State::Between;
                        continue;
                    }
                    if end {
                        self.buf.clear();
                    }
                    return out;
                }
                State::Between => {
                    let next = format!("{}{}", self.syntax.sep, self.syntax.head);
                    if self.buf.starts_with(&next) {
                        self.buf.drain(..next.len());
                        self.state = State::Name;
                        continue;
                    }
                    if self.waits_for(&next, end) {
                        return out;
                    }
                    self.state = State::Done;
                }
                State::Done => {
                    // Anything after the calls (a list's `]`) is not part of the answer.
                    self.buf.clear();
                    return out;
                }
            }
        }
    }
}

/// A whole output read at once in `syntax`: its text (`None` when there
/// are calls and no text) and calls.
pub fn read_whole_in(syntax: &Syntax, text: &str) -> (Option<String>, Vec<ToolCall>) {
    let mut reader = CallReader::new(syntax.clone());
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

/// [`read_whole_in`] the generic scheme's syntax.
pub fn read_whole(text: &str) -> (Option<String>, Vec<ToolCall>) {
    read_whole_in(&Syntax::GENERIC, text)
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
