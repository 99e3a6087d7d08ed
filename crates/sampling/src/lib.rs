//! Token sampling and the text-side plumbing of generation.
//!
//! This crate owns everything that happens between "the model produced a
//! row of logits" and "these characters go to the client", and nothing
//! that needs the model itself:
//!
//! - [`SamplingParams`] and their validation ([`SamplingError`]);
//! - the [`Sampler`]: logit bias → repetition/presence/frequency penalties
//!   → greedy, or top-k → top-p → min-p → temperature → seeded draw, in the
//!   order of llama.cpp's default chain; each filter is a separate function
//!   over a [`Candidates`] list (see [`filters`]);
//! - OpenAI-style [`logprobs`] of the raw model distribution;
//! - the streaming [`StopMatcher`], which holds back only text that could
//!   still become a stop string;
//! - the [`TokenConstraint`] a grammar implements and [`apply_mask`],
//!   which bans the tokens it disallows (constrained decoding);
//! - the incremental [`Utf8Decoder`], which never splits a character and
//!   replaces invalid bytes exactly as `String::from_utf8_lossy` would.
//!
//! It is pure logic: no I/O, no threads, no allocation per sampled token
//! once the buffers have grown to the vocabulary size.

mod constraint;
mod error;
pub mod filters;
mod logprobs;
mod math;
mod params;
mod penalties;
mod rng;
mod sampler;
mod select;
mod stop;
mod utf8;

pub use constraint::{apply_mask, Constraint, ConstraintFactory, TokenConstraint};
pub use error::SamplingError;
pub use filters::{Candidate, Candidates};
pub use logprobs::{logprobs, TokenLogprobs};
pub use params::SamplingParams;
pub use penalties::{apply_logit_bias, apply_penalties, PenaltyCounts, BAN_BIAS};
pub use rng::Rng;
pub use sampler::Sampler;
pub use stop::{StopMatcher, StopOutcome};
pub use utf8::Utf8Decoder;
