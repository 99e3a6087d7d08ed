//! One file per model family, each a `Forward` implementation (the
//! llama-shaped ones build [`llama::Llama`] with their [`llama`] variant;
//! [`rope`] reads their rotary embeddings from the file).

pub mod gemma3;
pub mod gemma4;
pub mod granite;
pub mod llama;
pub mod mistral3;
pub mod phi3;
pub mod qwen2;
pub mod qwen3;
pub mod qwen35;
pub(crate) mod rope;
pub mod smollm3;

use crate::layers::Linear;
use crate::EngineError;
use gguf::GgufFile;

/// The token embeddings (`token_embd.weight`, `n_vocab` rows of `d`) and
/// the output head: `output.weight` when the file has one, else the
/// embeddings again (a tied head).
pub(crate) fn embedding_and_output(
    f: &GgufFile,
    d: usize,
    n_vocab: usize,
) -> Result<(Linear, Linear), EngineError> {
    let embd = Linear::load(f, "token_embd.weight", d, n_vocab)?;
    let output = match f.tensor("output.weight") {
        Some(_) => Linear::load(f, "output.weight", d, n_vocab)?,
        None => embd.clone(),
    };
    Ok((embd, output))
}
