//! The one event merger: the engine events of a request's generations (`n`
//! choices of one or several prompts) merged into one ordered stream of
//! [`AnswerEvent`]s, with the request's usage and its [`Charge`].
//!
//! Every endpoint reads its answer from here: a stream turns each event
//! into its own chunks (chat chunks, legacy completion events, the
//! gateway's chunks for the local backend), and a whole answer is
//! [`Answer::collect`]ed from the same events. So every choice gets exactly
//! one finishing event, the usage counts every choice, and the charge is
//! settled the same way for all of them:
//!
//! - progress is recorded as tokens arrive ([`Charge::record`]);
//! - every choice finished: settled `ok` with the first finish reason;
//! - a generation failed: settled `error` for the tokens generated, and the
//!   other choices are dropped (cancelled in the engine);
//! - the answer dropped before its end (the client left, a timeout): the
//!   generations are cancelled and the charge's drop settles it
//!   `cancelled` for the tokens recorded.

use std::collections::VecDeque;
use std::pin::Pin;
use std::time::Duration;

use api::{ApiError, FinishReason, Usage};
use engine::Event;
use futures_util::stream::{self, SelectAll, Stream, StreamExt};

use super::{saturate, TokenOut, Tracked};
use crate::metering::{billed, Charge, Outcome, Settlement};

/// One event of a request's answer, every choice merged.
#[derive(Debug, Clone)]
pub enum AnswerEvent {
    /// New text of choice `index`, and the tokens that made it (those whose
    /// text the engine held back until now included).
    Text {
        /// The choice.
        index: u32,
        /// The new text.
        text: String,
        /// The tokens behind it.
        tokens: Vec<TokenOut>,
    },
    /// The last event of choice `index`: the text still held back, its
    /// tokens, and why it ended.
    Finished {
        /// The choice.
        index: u32,
        /// The remaining text (often empty).
        text: String,
        /// The tokens behind it.
        tokens: Vec<TokenOut>,
        /// Why the choice ended.
        reason: FinishReason,
        /// The stop string that ended it, if one did (the engine says
        /// which; Anthropic's `stop_sequence`).
        stop: Option<String>,
    },
    /// Every choice finished; the request's usage. The last event.
    Done(Usage),
    /// A generation failed (the others were cancelled). The last event.
    Failed(ApiError),
}

/// A whole answer, gathered from the events.
#[derive(Debug, Clone)]
pub struct Whole {
    /// Every choice, in order.
    pub choices: Vec<WholeChoice>,
    /// The request's usage.
    pub usage: Usage,
}

/// One finished choice.
#[derive(Debug, Clone, Default)]
pub struct WholeChoice {
    /// Its text.
    pub text: String,
    /// Its tokens.
    pub tokens: Vec<TokenOut>,
    /// Why it ended.
    pub finish_reason: Option<FinishReason>,
    /// The stop string that ended it, if one did.
    pub stop: Option<String>,
}

type EventStream = Pin<Box<dyn Stream<Item = (u32, Event)> + Send>>;

/// The events of one choice, owning its generation.
fn events_of(index: u32, generation: Tracked) -> EventStream {
    Box::pin(stream::unfold(
        generation,
        move |mut generation| async move {
            let event = generation.next().await?;
            Some(((index, event), generation))
        },
    ))
}

struct ChoiceState {
    /// Tokens whose text is still held back by the engine.
    tokens: Vec<TokenOut>,
    /// Tokens generated so far (the engine's count once done).
    generated: u32,
    done: bool,
}

/// A running request's answer: its generations (owned: dropping the answer
/// cancels them) merged, and its charge.
pub struct Answer {
    events: SelectAll<EventStream>,
    choices: Vec<ChoiceState>,
    remaining: usize,
    prompt_tokens: u32,
    /// Generations per prompt (`n`): the first of each reports the
    /// prompt's cached tokens.
    choices_per_prompt: u32,
    cached_tokens: u32,
    queued: VecDeque<AnswerEvent>,
    over: bool,
    /// The reservation, while unsettled.
    charge: Option<Charge>,
    /// The ledger write of the settled charge, for [`Answer::collect`].
    settlement: Option<Settlement>,
    /// The first finish reason, for the ledger.
    first_reason: Option<FinishReason>,
}

impl Answer {
    /// Merges `generations` (in choice order, `choices_per_prompt` per
    /// prompt) of a request with `prompt_tokens` prompt tokens in all,
    /// settling `charge`, if metered, as the module says.
    pub fn new(
        generations: Vec<Tracked>,
        prompt_tokens: u32,
        choices_per_prompt: u32,
        charge: Option<Charge>,
    ) -> Self {
        let count = generations.len();
        let events = stream::select_all(
            generations
                .into_iter()
                .enumerate()
                .map(|(index, generation)| events_of(index as u32, generation)),
        );
        let mut answer = Answer {
            events,
            choices: (0..count)
                .map(|_| ChoiceState {
                    tokens: Vec::new(),
                    generated: 0,
                    done: false,
                })
                .collect(),
            remaining: count,
            prompt_tokens,
            choices_per_prompt,
            cached_tokens: 0,
            queued: VecDeque::new(),
            over: false,
            charge,
            settlement: None,
            first_reason: None,
        };
        if count == 0 {
            answer.end();
        }
        answer
    }

    /// The prompt's tokens (every prompt's, together).
    pub fn prompt_tokens(&self) -> u32 {
        self.prompt_tokens
    }

    /// How many choices the answer has.
    pub fn choices(&self) -> usize {
        self.choices.len()
    }

    /// The next event, or `None` after the last one.
    pub async fn next(&mut self) -> Option<AnswerEvent> {
        loop {
            if let Some(event) = self.queued.pop_front() {
                return Some(event);
            }
            if self.over {
                return None;
            }
            match self.events.next().await {
                Some((index, event)) => self.handle(index, event),
                None => self.fail("a generation ended without a result".into()),
            }
        }
    }

    /// Gathers the whole answer; the charge's ledger row is written before
    /// this returns.
    pub async fn collect(mut self) -> Result<Whole, ApiError> {
        let mut choices = vec![WholeChoice::default(); self.choices.len()];
        let mut usage = None;
        while let Some(event) = self.next().await {
            match event {
                AnswerEvent::Text {
                    index,
                    text,
                    tokens,
                } => {
                    let choice = &mut choices[index as usize];
                    choice.text.push_str(&text);
                    choice.tokens.extend(tokens);
                }
                AnswerEvent::Finished {
                    index,
                    text,
                    tokens,
                    reason,
                    stop,
                } => {
                    let choice = &mut choices[index as usize];
                    choice.text.push_str(&text);
                    choice.tokens.extend(tokens);
                    choice.finish_reason = Some(reason);
                    choice.stop = stop;
                }
                AnswerEvent::Done(done) => usage = Some(done),
                AnswerEvent::Failed(err) => {
                    self.written().await;
                    return Err(err);
                }
            }
        }
        self.written().await;
        let usage = usage.unwrap_or_else(|| Usage::new(self.prompt_tokens, 0, 0));
        Ok(Whole { choices, usage })
    }

    /// [`Answer::collect`] within `limit`: past it, a 504, the generations
    /// cancelled and the charge settled `error` for what they produced.
    pub async fn collect_within(mut self, limit: Duration) -> Result<Whole, ApiError> {
        let gathered = tokio::time::timeout(limit, async {
            let mut events = Vec::new();
            while let Some(event) = self.next().await {
                events.push(event);
            }
            events
        })
        .await;
        match gathered {
            Ok(events) => {
                self.queued.extend(events);
                self.collect().await
            }
            Err(_) => {
                self.events = SelectAll::new();
                self.over = true;
                self.settle(Outcome::Failed);
                self.written().await;
                Err(ApiError::Timeout {
                    after_secs: limit.as_secs(),
                })
            }
        }
    }

    /// Waits for the settled charge's ledger write, if any.
    async fn written(&mut self) {
        if let Some(settlement) = self.settlement.take() {
            settlement.written().await;
        }
    }

    fn handle(&mut self, index: u32, event: Event) {
        let Some(choice) = self.choices.get_mut(index as usize) else {
            return;
        };
        if choice.done {
            return;
        }
        match event {
            Event::Token { id, text, logprobs } => {
                choice.generated = choice.generated.saturating_add(1);
                choice.tokens.push(TokenOut { id, logprobs });
                if !text.is_empty() {
                    let tokens = std::mem::take(&mut choice.tokens);
                    self.queued.push_back(AnswerEvent::Text {
                        index,
                        text,
                        tokens,
                    });
                }
            }
            Event::Done {
                text,
                reason,
                usage,
                stop,
            } => {
                choice.done = true;
                choice.generated = saturate(usage.completion_tokens);
                let tokens = std::mem::take(&mut choice.tokens);
                if (index as usize).is_multiple_of(self.choices_per_prompt.max(1) as usize) {
                    self.cached_tokens = self
                        .cached_tokens
                        .saturating_add(saturate(usage.cached_tokens));
                }
                let reason = super::finish_reason(reason);
                self.first_reason.get_or_insert(reason);
                self.queued.push_back(AnswerEvent::Finished {
                    index,
                    text,
                    tokens,
                    reason,
                    stop,
                });
                self.remaining -= 1;
                if self.remaining == 0 {
                    self.end();
                    return;
                }
            }
            Event::Failed { message } => {
                self.fail(message);
                return;
            }
        }
        let usage = self.usage();
        if let Some(charge) = self.charge.as_mut() {
            charge.record(billed(&usage));
        }
    }

    /// The usage so far: every choice's tokens together.
    fn usage(&self) -> Usage {
        let generated = self
            .choices
            .iter()
            .fold(0u32, |sum, choice| sum.saturating_add(choice.generated));
        Usage::new(self.prompt_tokens, generated, self.cached_tokens)
    }

    /// Every choice is done: the usage event, and the charge settled `ok`.
    fn end(&mut self) {
        self.events = SelectAll::new();
        self.over = true;
        self.queued.push_back(AnswerEvent::Done(self.usage()));
        self.settle(Outcome::Finished(self.first_reason));
    }

    /// A failure: the failure event, the other choices' generations dropped
    /// (cancelled), and the charge settled `error`.
    fn fail(&mut self, detail: String) {
        tracing::error!(%detail, "generation failed");
        self.events = SelectAll::new();
        self.over = true;
        self.queued
            .push_back(AnswerEvent::Failed(ApiError::Internal { detail }));
        self.settle(Outcome::Failed);
    }

    fn settle(&mut self, outcome: Outcome) {
        if let Some(charge) = self.charge.take() {
            let usage = billed(&self.usage());
            self.settlement = Some(charge.settle(outcome, usage));
        }
    }
}

impl Drop for Answer {
    fn drop(&mut self) {
        if !self.over {
            tracing::info!(
                unfinished = self.remaining,
                "answer dropped before its end (client left or timed out); cancelling its generations"
            );
        }
    }
}
