//! The engine's one error type, and the kind of each error.

use crate::kv::KvError;

/// What went wrong, in terms the server can map to a status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    InvalidRequest,
    Overloaded,
    Internal,
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Gguf(#[from] gguf::GgufError),
    #[error("model file is not usable: {0}")]
    Model(String),
    #[error(transparent)]
    Tokenizer(#[from] tokenizer::TokenizerError),
    #[error("{0}")]
    NoChatTemplate(String),
    #[error("chat template failed: {0}")]
    Template(String),
    #[error("{0}")]
    InvalidRequest(String),
    #[error(
        "prompt has {prompt} tokens and asks for {requested} more, but the context holds {n_ctx}"
    )]
    ContextLengthExceeded {
        prompt: usize,
        requested: usize,
        n_ctx: usize,
    },
    #[error(transparent)]
    Sampling(#[from] sampling::SamplingError),
    #[error("the engine is at capacity; try again shortly")]
    Overloaded,
    #[error(transparent)]
    Kv(#[from] KvError),
    #[error("the engine has stopped")]
    Stopped,
}

impl EngineError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            EngineError::NoChatTemplate(_)
            | EngineError::Template(_)
            | EngineError::InvalidRequest(_)
            | EngineError::ContextLengthExceeded { .. }
            | EngineError::Sampling(_) => ErrorKind::InvalidRequest,
            EngineError::Overloaded => ErrorKind::Overloaded,
            EngineError::Gguf(_)
            | EngineError::Model(_)
            | EngineError::Tokenizer(_)
            | EngineError::Kv(_)
            | EngineError::Stopped => ErrorKind::Internal,
        }
    }
}
