//! Reasoning split out of an answer: models whose chat template thinks
//! write their reasoning first, in a block (`<think>…</think>`, or Gemma 4's
//! `<|channel>thought…<channel|>`); it is returned apart from `content`
//! (`reasoning_content`, or `reasoning` when the server names it so), whole
//! and streamed alike.
//!
//! [`Thinking::of`] decides from the template and the rendered prompt
//! whether a request's answer is read for reasoning, with which [`Tags`],
//! and whether it starts inside the block (templates such as DeepSeek-R1's
//! end the prompt with `<think>`). [`Splitter`] reads the output in
//! whatever pieces it arrives (a tag may be split across tokens): only a
//! block at the very start of the answer is reasoning, whitespace around
//! the tags is dropped, and an answer that ends inside the block is all
//! reasoning.

/// The pair of tags around a reasoning block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tags {
    /// The text opening the block.
    pub open: &'static str,
    /// The text closing it.
    pub close: &'static str,
}

/// `<think>…</think>`: Qwen3, QwQ, DeepSeek-R1, SmolLM3, Granite and most
/// thinking templates.
pub const THINK: Tags = Tags {
    open: "<think>",
    close: "</think>",
};

/// Gemma 4's thought channel: `<|channel>thought` … `<channel|>` (both
/// markers are user-defined tokens of its vocabulary, so they arrive as text).
pub const CHANNEL: Tags = Tags {
    open: "<|channel>thought",
    close: "<channel|>",
};

/// How a request's answer is read for reasoning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thinking {
    /// The prompt already opened the block: the output starts as reasoning.
    pub inside: bool,
    /// The tags the template writes around the block.
    pub tags: Tags,
}

impl Thinking {
    /// Whether the answer of a model with chat template `template`, to a
    /// prompt rendered as `prompt`, is read for reasoning: only when the
    /// template knows the tags. Either `<think>` tag counts: DeepSeek-R1's
    /// first templates (as in the distills' published GGUFs) only strip
    /// `</think>` from past answers and leave the model to open the block.
    /// Gemma 4's templates name both channel markers.
    pub fn of(template: Option<&str>, prompt: &str) -> Option<Thinking> {
        let template = template?;
        let tags = if template.contains(THINK.open) || template.contains(THINK.close) {
            THINK
        } else if template.contains("<|channel>") && template.contains(CHANNEL.close) {
            CHANNEL
        } else {
            return None;
        };
        let inside = match (prompt.rfind(tags.open), prompt.rfind(tags.close)) {
            (Some(open), Some(close)) => open > close,
            (Some(_), None) => true,
            _ => false,
        };
        Some(Thinking { inside, tags })
    }
}

/// The `enable_thinking` a template is rendered with for a request's
/// `reasoning_effort`: `none` turns thinking off, any other effort on, and
/// none given leaves the template's own default.
pub fn enable_thinking(effort: Option<&str>) -> Option<bool> {
    effort.map(|effort| effort != "none")
}

/// The field the reasoning is written under in chat answers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ReasoningField {
    /// `reasoning_content`, as llama-server writes it and most clients read it.
    #[default]
    ReasoningContent,
    /// `reasoning`, as vLLM writes it.
    Reasoning,
}

impl ReasoningField {
    /// The field named `name` (`reasoning_content` or `reasoning`).
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "reasoning_content" => Some(ReasoningField::ReasoningContent),
            "reasoning" => Some(ReasoningField::Reasoning),
            _ => None,
        }
    }

    /// The field's name.
    pub fn name(self) -> &'static str {
        match self {
            ReasoningField::ReasoningContent => "reasoning_content",
            ReasoningField::Reasoning => "reasoning",
        }
    }
}

/// A piece of an answer, once read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    /// Reasoning text.
    Reasoning(String),
    /// Answer text.
    Content(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Nothing but whitespace seen: a block may still open.
    Start,
    /// Inside the block.
    Inside,
    /// After the block (or with none): everything is content.
    Content,
}

/// Reads one choice's output, piece by piece, into reasoning and content.
#[derive(Debug, Clone)]
pub struct Splitter {
    state: State,
    /// Text held back: a possible tag's start, or whitespace that may end
    /// the reasoning.
    held: String,
    /// Whether leading whitespace is still dropped (just after a tag).
    trim: bool,
    /// The block's tags.
    tags: Tags,
}

impl Splitter {
    /// A reader for an answer read as `thinking` says.
    pub fn new(thinking: Thinking) -> Self {
        Splitter {
            state: if thinking.inside {
                State::Inside
            } else {
                State::Start
            },
            held: String::new(),
            trim: true,
            tags: thinking.tags,
        }
    }

    /// The parts `text` completes, in order.
    pub fn push(&mut self, text: &str) -> Vec<Part> {
        let mut parts = Vec::new();
        self.held.push_str(text);
        loop {
            match self.state {
                State::Start => {
                    let rest = self.held.trim_start();
                    if let Some(after) = rest.strip_prefix(self.tags.open) {
                        self.held = after.to_string();
                        self.state = State::Inside;
                        self.trim = true;
                        continue;
                    }
                    if self.tags.open.starts_with(rest) {
                        return parts;
                    }
                    self.state = State::Content;
                    self.trim = false;
                }
                State::Inside => {
                    if self.trim {
                        self.held = self.held.trim_start().to_string();
                        if self.held.is_empty() {
                            return parts;
                        }
                        self.trim = false;
                    }
                    if let Some(at) = self.held.find(self.tags.close) {
                        let reasoning = self.held[..at].trim_end().to_string();
                        self.held = self.held[at + self.tags.close.len()..].to_string();
                        add(&mut parts, Part::Reasoning(reasoning));
                        self.state = State::Content;
                        self.trim = true;
                        continue;
                    }
                    let keep = held_back(&self.held, self.tags.close);
                    let ready = self.held[..keep].to_string();
                    self.held.drain(..keep);
                    add(&mut parts, Part::Reasoning(ready));
                    return parts;
                }
                State::Content => {
                    let text = std::mem::take(&mut self.held);
                    let text = if self.trim {
                        let trimmed = text.trim_start();
                        if trimmed.is_empty() {
                            return parts;
                        }
                        self.trim = false;
                        trimmed.to_string()
                    } else {
                        text
                    };
                    add(&mut parts, Part::Content(text));
                    return parts;
                }
            }
        }
    }

    /// The parts still held back at the answer's end.
    pub fn finish(&mut self) -> Vec<Part> {
        let held = std::mem::take(&mut self.held);
        let mut parts = Vec::new();
        match self.state {
            State::Start | State::Content => add(&mut parts, Part::Content(held)),
            State::Inside => add(&mut parts, Part::Reasoning(held.trim_end().to_string())),
        }
        parts
    }

    /// A whole answer's reasoning (if it had a block) and content.
    pub fn split(thinking: Thinking, text: &str) -> (Option<String>, String) {
        let mut splitter = Splitter::new(thinking);
        let mut parts = splitter.push(text);
        parts.extend(splitter.finish());
        let mut reasoning: Option<String> = None;
        let mut content = String::new();
        for part in parts {
            match part {
                Part::Reasoning(text) => reasoning.get_or_insert_with(String::new).push_str(&text),
                Part::Content(text) => content.push_str(&text),
            }
        }
        if reasoning.is_none() && splitter_saw_block(thinking, text) {
            reasoning = Some(String::new());
        }
        (reasoning, content)
    }
}

/// Whether a whole answer had a (possibly empty) block.
fn splitter_saw_block(thinking: Thinking, text: &str) -> bool {
    thinking.inside || text.trim_start().starts_with(thinking.tags.open)
}

/// Where the reasoning `text` stops being sure: before a trailing run of
/// whitespace and a possible start of `close`.
fn held_back(text: &str, close: &str) -> usize {
    let mut end = text.len();
    for len in (1..close.len()).rev() {
        if text.len() >= len
            && text.is_char_boundary(text.len() - len)
            && close.starts_with(&text[text.len() - len..])
        {
            end = text.len() - len;
            break;
        }
    }
    text[..end].trim_end().len()
}

/// Adds `part` to `parts`, joined with the last one of its kind; empty
/// parts are dropped.
fn add(parts: &mut Vec<Part>, part: Part) {
    match (parts.last_mut(), part) {
        (_, Part::Reasoning(text) | Part::Content(text)) if text.is_empty() => {}
        (Some(Part::Reasoning(last)), Part::Reasoning(text)) => last.push_str(&text),
        (Some(Part::Content(last)), Part::Content(text)) => last.push_str(&text),
        (_, part) => parts.push(part),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OUTSIDE: Thinking = Thinking {
        inside: false,
        tags: THINK,
    };
    const INSIDE: Thinking = Thinking {
        inside: true,
        tags: THINK,
    };

    /// `pieces` streamed, joined per kind.
    fn streamed(thinking: Thinking, pieces: &[&str]) -> (String, String) {
        let mut splitter = Splitter::new(thinking);
        let mut parts = Vec::new();
        for piece in pieces {
            parts.extend(splitter.push(piece));
        }
        parts.extend(splitter.finish());
        let (mut reasoning, mut content) = (String::new(), String::new());
        let mut seen_content = false;
        for part in parts {
            match part {
                Part::Reasoning(text) => {
                    assert!(!seen_content, "reasoning after content");
                    reasoning.push_str(&text)
                }
                Part::Content(text) => {
                    seen_content = true;
                    content.push_str(&text)
                }
            }
        }
        (reasoning, content)
    }

    #[test]
    fn a_block_at_the_start_is_reasoning() {
        let text = "<think>\nLet me add.\n2+2 is 4.\n</think>\n\nThe answer is 4.";
        let (reasoning, content) = Splitter::split(OUTSIDE, text);
        assert_eq!(reasoning.as_deref(), Some("Let me add.\n2+2 is 4."));
        assert_eq!(content, "The answer is 4.");
    }

    #[test]
    fn tags_split_across_every_piece_boundary() {
        let text = "  <think>\nLet me add.\n2+2 is 4.\n</think>\n\nThe answer is 4.";
        for cut in 0..=text.len() {
            let (a, b) = text.split_at(cut);
            assert_eq!(
                streamed(OUTSIDE, &[a, b]),
                ("Let me add.\n2+2 is 4.".into(), "The answer is 4.".into()),
                "cut at {cut}"
            );
        }
        let chars: Vec<String> = text.chars().map(String::from).collect();
        let pieces: Vec<&str> = chars.iter().map(String::as_str).collect();
        assert_eq!(
            streamed(OUTSIDE, &pieces),
            ("Let me add.\n2+2 is 4.".into(), "The answer is 4.".into())
        );
    }

    #[test]
    fn a_prompt_that_opened_the_block_starts_inside() {
        let pieces = ["Hmm, ", "think", "ing.</th", "ink>", "\n\nDone."];
        assert_eq!(
            streamed(INSIDE, &pieces),
            ("Hmm, thinking.".into(), "Done.".into())
        );
        let (reasoning, content) = Splitter::split(INSIDE, "Hmm.</think>Done.");
        assert_eq!(
            (reasoning.as_deref(), content.as_str()),
            (Some("Hmm."), "Done.")
        );
    }

    #[test]
    fn an_answer_ending_inside_the_block_is_all_reasoning() {
        assert_eq!(
            streamed(INSIDE, &["still ", "thinking </thi"]),
            ("still thinking </thi".into(), String::new())
        );
        let (reasoning, content) = Splitter::split(OUTSIDE, "<think>cut off");
        assert_eq!(
            (reasoning.as_deref(), content.as_str()),
            (Some("cut off"), "")
        );
    }

    #[test]
    fn text_without_a_leading_block_is_content() {
        assert_eq!(
            streamed(OUTSIDE, &["Hello ", "<think>not reasoning</think>"]),
            (String::new(), "Hello <think>not reasoning</think>".into())
        );
        assert_eq!(
            streamed(OUTSIDE, &["<thin", "g>"]),
            (String::new(), "<thing>".into())
        );
        let (reasoning, content) = Splitter::split(OUTSIDE, "Just an answer.");
        assert_eq!((reasoning, content.as_str()), (None, "Just an answer."));
        assert_eq!(streamed(OUTSIDE, &["<th"]), (String::new(), "<th".into()));
    }

    #[test]
    fn an_empty_block_is_empty_reasoning() {
        let (reasoning, content) = Splitter::split(OUTSIDE, "<think>\n\n</think>\n\nHi.");
        assert_eq!((reasoning.as_deref(), content.as_str()), (Some(""), "Hi."));
    }

    #[test]
    fn whether_a_request_thinks() {
        let template = "{% if enable_thinking %}<think>{% endif %}";
        assert_eq!(Thinking::of(None, "x<think>\n"), None);
        assert_eq!(Thinking::of(Some("plain"), "x<think>\n"), None);
        assert_eq!(Thinking::of(Some(template), "assistant\n"), Some(OUTSIDE));
        assert_eq!(Thinking::of(Some(template), "<think>\n"), Some(INSIDE));
        assert_eq!(
            Thinking::of(Some(template), "<think>\n\n</think>\n\n"),
            Some(OUTSIDE)
        );
        // DeepSeek-R1-Distill-Qwen-7B's GGUF template names only the close
        // tag; the model writes `<think>` itself at the start of its answer.
        let r1_first = "{% if '</think>' in content %}{% set content = \
                        content.split('</think>')[-1] %}{% endif %}";
        assert_eq!(
            Thinking::of(Some(r1_first), "<｜User｜>Hi<｜Assistant｜>"),
            Some(OUTSIDE)
        );
        assert_eq!(enable_thinking(Some("none")), Some(false));
        assert_eq!(enable_thinking(Some("high")), Some(true));
        assert_eq!(enable_thinking(None), None);
    }

    #[test]
    fn gemma_4_thinks_in_its_thought_channel() {
        // The end of google-gemma-4-31B-it.jinja's generation prompt: with
        // thinking off it closes an empty channel itself.
        let template = "{{- '<|turn>model\\n' -}}{%- if not enable_thinking | default(false) -%}\
                        {{- '<|channel>thought\\n<channel|>' -}}{%- endif -%}";
        let on = Thinking::of(Some(template), "<|turn>user\nHi<turn|>\n<|turn>model\n").unwrap();
        assert_eq!(on.tags, CHANNEL);
        assert!(!on.inside);
        let off = Thinking::of(
            Some(template),
            "<|turn>user\nHi<turn|>\n<|turn>model\n<|channel>thought\n<channel|>",
        )
        .unwrap();
        assert!(!off.inside);
        let text = "<|channel>thought\nThe user greets me.\n<channel|>Hello!";
        let (reasoning, content) = Splitter::split(on, text);
        assert_eq!(
            (reasoning.as_deref(), content.as_str()),
            (Some("The user greets me."), "Hello!")
        );
        for cut in 0..=text.len() {
            let (a, b) = text.split_at(cut);
            assert_eq!(
                streamed(on, &[a, b]),
                ("The user greets me.".into(), "Hello!".into()),
                "cut at {cut}"
            );
        }
        // `<think>` means nothing to Gemma 4: it stays content.
        let (reasoning, content) = Splitter::split(on, "<think>x</think>y");
        assert_eq!((reasoning, content.as_str()), (None, "<think>x</think>y"));
    }
}
