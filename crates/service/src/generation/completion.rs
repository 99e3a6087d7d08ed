//! A legacy completion request on the local engine: its prompts (text or
//! token ids) tokenized off the executor, its sampling settings, and its
//! answer as `text_completion` objects ([`CompletionChunks`]), streamed or
//! whole.
//!
//! `echo: true` puts each prompt's text before its choices' text (whole:
//! prepended; streamed: one first object per choice carrying the prompt).
//! The engine does not score prompt tokens, so `echo` with `logprobs` is a
//! 400 naming `echo` rather than logprobs that leave the prompt out.
//! `suffix` (fill-in-the-middle) is a 400 naming `suffix`: no model served
//! here has a fill-in-the-middle template.

use std::collections::BTreeMap;
use std::sync::Arc;

use api::{
    ApiError, Completion, CompletionChoice, CompletionLogprobs, CompletionRequest, FinishReason,
    InvalidCode, PromptInput,
};
use engine::{EngineHandle, Tokenizer};

use super::{finite, saturate, token_text, AnswerEvent, AnswerFormat, Settings, TokenOut, Whole};
use crate::Result;

/// The request field a completion's engine errors are about.
pub const PARAM: &str = "prompt";

/// The token ids of every prompt of `request` (ids as given, text
/// tokenized on the blocking pool).
pub async fn prompts(engine: &EngineHandle, request: &CompletionRequest) -> Result<Vec<Vec<u32>>> {
    let inputs: Vec<Result<Vec<u32>, String>> = request
        .prompt
        .inputs()
        .into_iter()
        .map(|input| match input {
            PromptInput::Tokens(tokens) => Ok(tokens.to_vec()),
            PromptInput::Text(text) => Err(text.to_owned()),
        })
        .collect();
    let engine = engine.clone();
    Ok(tokio::task::spawn_blocking(move || {
        inputs
            .into_iter()
            .map(|input| input.unwrap_or_else(|text| engine.encode_prompt(&text)))
            .collect()
    })
    .await?)
}

/// Refuses what `request` asks for that `model` cannot do, naming the
/// parameter: `suffix` (fill-in-the-middle) and `echo` with `logprobs`.
pub fn check_supported(request: &CompletionRequest, model: &str) -> Result<()> {
    if request
        .suffix
        .as_deref()
        .is_some_and(|suffix| !suffix.is_empty())
    {
        return Err(ApiError::invalid(
            "suffix",
            InvalidCode::InvalidValue,
            format!(
                "The model `{model}` does not support fill-in-the-middle, so `suffix` cannot \
                 be used; put all the text in `prompt`."
            ),
        )
        .into());
    }
    if request.echo == Some(true) && request.logprobs.is_some() {
        return Err(ApiError::invalid(
            "echo",
            InvalidCode::InvalidValue,
            "`echo` cannot be combined with `logprobs` here: the prompt tokens are not scored. \
             Drop one of them.",
        )
        .into());
    }
    Ok(())
}

/// The text of every prompt of `request` when it asks for `echo` (token
/// prompts decoded), else `None`.
pub fn echoed(tokenizer: &Tokenizer, request: &CompletionRequest) -> Option<Vec<String>> {
    (request.echo == Some(true)).then(|| {
        request
            .prompt
            .inputs()
            .into_iter()
            .map(|input| match input {
                PromptInput::Text(text) => text.to_owned(),
                PromptInput::Tokens(tokens) => tokenizer.decode(tokens, false),
            })
            .collect()
    })
}

/// How the choices of `request` are sampled.
pub fn settings(request: &CompletionRequest) -> Result<Settings> {
    Ok(Settings {
        temperature: request.temperature,
        top_p: request.top_p,
        presence_penalty: request.presence_penalty,
        frequency_penalty: request.frequency_penalty,
        logit_bias: super::logit_bias(request.logit_bias.as_ref())?,
        seed: request.seed,
        max_tokens: Some(request.max_output_tokens()),
        stop: request
            .stop_sequences()
            .into_iter()
            .map(str::to_owned)
            .collect(),
        logprobs: request
            .logprobs
            .map(|k| k.clamp(0, api::MAX_COMPLETION_LOGPROBS) as usize),
        constraint: None,
    })
}

/// Legacy completion objects: one `text_completion` per delta,
/// `finish_reason` on the last of each choice, then the usage object when
/// asked for.
pub struct CompletionChunks {
    id: String,
    created: u64,
    model: String,
    include_usage: bool,
    logprobs: bool,
    tokenizer: Arc<Tokenizer>,
    /// Per choice, the characters of text already returned.
    offsets: Vec<u32>,
    /// With `echo`: each prompt's text, and the choices per prompt.
    echo: Option<(Vec<String>, u32)>,
}

impl CompletionChunks {
    /// A fresh `cmpl-…` answer of `model`.
    pub fn new(
        model: String,
        include_usage: bool,
        logprobs: bool,
        tokenizer: Arc<Tokenizer>,
    ) -> Self {
        CompletionChunks {
            id: format!("cmpl-{}", crate::random_hex()),
            created: crate::unix_now(),
            model,
            include_usage,
            logprobs,
            tokenizer,
            offsets: Vec::new(),
            echo: None,
        }
    }

    /// Puts each prompt's text (`prompts`, from [`echoed`]) before the text
    /// of its `n` choices.
    pub fn echoing(mut self, prompts: Option<Vec<String>>, n: u32) -> Self {
        self.echo = prompts.map(|prompts| (prompts, n.max(1)));
        self
    }

    /// The echoed prompt of choice `index`, if echoing.
    fn prompt_of(&self, index: u32) -> Option<&str> {
        let (prompts, n) = self.echo.as_ref()?;
        prompts.get((index / n) as usize).map(String::as_str)
    }

    fn object(&self, choices: Vec<CompletionChoice>) -> Completion {
        Completion::new(self.id.clone(), self.created, self.model.clone(), choices)
    }

    /// The whole answer gathered in `whole`.
    pub fn completion(mut self, whole: Whole) -> Completion {
        let choices = whole
            .choices
            .into_iter()
            .enumerate()
            .map(|(index, choice)| {
                let index = index as u32;
                let text = match self.prompt_of(index) {
                    Some(prompt) => format!("{prompt}{}", choice.text),
                    None => choice.text,
                };
                CompletionChoice {
                    index,
                    logprobs: self.logprobs_of(index, &choice.tokens),
                    text,
                    finish_reason: choice.finish_reason,
                }
            })
            .collect();
        let mut answer = self.object(choices);
        answer.usage = Some(whole.usage);
        answer
    }

    /// The legacy parallel-array logprobs of `tokens`, continuing choice
    /// `index`'s character offsets.
    fn logprobs_of(&mut self, index: u32, tokens: &[TokenOut]) -> Option<CompletionLogprobs> {
        if !self.logprobs {
            return None;
        }
        let index = index as usize;
        if self.offsets.len() <= index {
            self.offsets.resize(index + 1, 0);
        }
        let mut out = CompletionLogprobs::default();
        for token in tokens {
            let Some(logprobs) = &token.logprobs else {
                continue;
            };
            let text = token_text(&self.tokenizer, token.id);
            out.text_offset.push(self.offsets[index]);
            self.offsets[index] =
                self.offsets[index].saturating_add(saturate(text.chars().count()));
            out.tokens.push(text);
            out.token_logprobs
                .push(Some(finite(logprobs.chosen_logprob)));
            let top: BTreeMap<String, f32> = logprobs
                .top
                .iter()
                .map(|&(id, logprob)| (token_text(&self.tokenizer, id), finite(logprob)))
                .collect();
            out.top_logprobs.push(Some(top));
        }
        Some(out)
    }

    fn choice(
        &mut self,
        index: u32,
        text: String,
        tokens: &[TokenOut],
        reason: Option<FinishReason>,
    ) -> Completion {
        let logprobs = self.logprobs_of(index, tokens);
        self.object(vec![CompletionChoice {
            text,
            index,
            logprobs,
            finish_reason: reason,
        }])
    }
}

impl AnswerFormat for CompletionChunks {
    type Chunk = Completion;

    fn opening(&mut self, choices: usize) -> Vec<Completion> {
        (0..choices as u32)
            .filter_map(|index| {
                let prompt = self.prompt_of(index)?.to_owned();
                Some(self.choice(index, prompt, &[], None))
            })
            .collect()
    }

    fn event(&mut self, event: AnswerEvent) -> Vec<Completion> {
        match event {
            AnswerEvent::Text {
                index,
                text,
                tokens,
            } => vec![self.choice(index, text, &tokens, None)],
            AnswerEvent::Finished {
                index,
                text,
                tokens,
                reason,
                ..
            } => vec![self.choice(index, text, &tokens, Some(reason))],
            AnswerEvent::Done(usage) if self.include_usage => {
                let mut last = self.object(Vec::new());
                last.usage = Some(usage);
                vec![last]
            }
            AnswerEvent::Done(_) | AnswerEvent::Failed(_) => Vec::new(),
        }
    }
}
