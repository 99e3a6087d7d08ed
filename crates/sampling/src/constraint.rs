//! Constrained decoding's side of sampling: a [`TokenConstraint`] says which
//! tokens a sequence may sample next (a grammar matcher implements it in the
//! `grammar` crate), and [`apply_mask`] bans the others before the sampler
//! sees the logits.

use std::fmt;
use std::sync::Arc;

/// One sequence's constraint: the set of tokens allowed at each step.
/// The engine asks for the mask before each sample (in parallel with the
/// forward pass), then reports the token it sampled.
pub trait TokenConstraint: Send {
    /// Writes the allowed next tokens into `mask`: one bit per token id,
    /// 32 ids per word, least significant bit first. End-of-generation
    /// tokens are allowed exactly where the constraint accepts the output
    /// as complete. An error ends the sequence.
    fn compute_mask(&mut self, mask: &mut Vec<u32>) -> Result<(), String>;
    /// Records the sampled token (one the last mask allowed).
    fn commit(&mut self, token: u32) -> Result<(), String>;
    /// Whether the output is complete and nothing may follow: generation
    /// stops here as if an end-of-generation token had been sampled.
    fn is_finished(&self) -> bool;
    /// Whether control token `token`'s text goes into the output (a
    /// tool-call marker the grammar names by id, such as Mistral's
    /// `[TOOL_CALLS]`, which the call reader must see); other control
    /// tokens' text never does.
    fn shows(&self, _token: u32) -> bool {
        false
    }
}

/// Makes a fresh [`TokenConstraint`] per generation (one per choice), from
/// one compiled grammar.
pub trait ConstraintFactory: Send + Sync {
    /// A matcher at the start of the output.
    fn start(&self) -> Box<dyn TokenConstraint>;
}

/// A shareable [`ConstraintFactory`], the engine request's constraint.
#[derive(Clone)]
pub struct Constraint(pub Arc<dyn ConstraintFactory>);

impl fmt::Debug for Constraint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Constraint(..)")
    }
}

/// Sets every logit whose bit is clear in `mask` to `-inf`. Ids past the
/// mask's end are banned too.
pub fn apply_mask(logits: &mut [f32], mask: &[u32]) {
    for (w, chunk) in logits.chunks_mut(32).enumerate() {
        let bits = mask.get(w).copied().unwrap_or(0);
        if bits == u32::MAX {
            continue;
        }
        for (b, l) in chunk.iter_mut().enumerate() {
            if bits & (1 << b) == 0 {
                *l = f32::NEG_INFINITY;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_set_bits_survive() {
        let mut logits = vec![1.0f32; 70];
        let mut mask = vec![0u32; 2];
        mask[0] = 1 << 3;
        mask[1] = u32::MAX;
        apply_mask(&mut logits, &mask);
        for (i, l) in logits.iter().enumerate() {
            let kept = i == 3 || (32..64).contains(&i);
            assert_eq!(l.is_finite(), kept, "{i}");
        }
    }
}
