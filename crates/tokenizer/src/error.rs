//! The crate's one error type, covering both loading a tokenizer from GGUF
//! metadata and compiling or rendering a chat template.

/// What sort of failure a [`TokenizerError`] is, in the vocabulary the server
/// and CLI share (see docs/ARCHITECTURE.md); only they map kinds to statuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request cannot be served as asked (e.g. chat on a model with no
    /// template, or messages the template rejects).
    InvalidRequest,
    /// The model file itself is unusable or unsupported.
    Internal,
}

/// Everything that can go wrong in this crate.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TokenizerError {
    /// A required tokenizer key is absent from the GGUF metadata.
    #[error("GGUF metadata has no `{key}`; the file has no usable tokenizer")]
    MissingMetadata { key: &'static str },

    /// A tokenizer key is present but malformed.
    #[error("GGUF metadata `{key}` is invalid: {reason}")]
    InvalidMetadata { key: &'static str, reason: String },

    /// `tokenizer.ggml.model` names a tokenizer this crate does not implement.
    #[error("unsupported tokenizer model `{0}` (supported: `gpt2` byte-level BPE, `llama` SentencePiece)")]
    UnsupportedModel(String),

    /// `tokenizer.ggml.pre` names a BPE pre-tokenizer this crate does not implement.
    #[error("unsupported BPE pre-tokenizer `{0}`")]
    UnsupportedPreTokenizer(String),

    /// Chat was asked of a model whose GGUF carries no `tokenizer.chat_template`.
    #[error("model has no chat template (tokenizer.chat_template is missing from its GGUF)")]
    NoChatTemplate,

    /// The chat template does not compile.
    #[error("invalid chat template: {0}")]
    TemplateSyntax(String),

    /// The template called `raise_exception(message)`.
    #[error("chat template rejected the conversation: {0}")]
    TemplateRaised(String),

    /// Rendering failed for another reason (undefined method, type error, ...).
    #[error("chat template failed to render: {0}")]
    TemplateRender(String),
}

/// The error type of [`crate::ChatTemplate`]; the same enum as every other
/// error of this crate.
pub type TemplateError = TokenizerError;

impl TokenizerError {
    /// The kind of failure, for mapping to an HTTP status or exit code.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::NoChatTemplate | Self::TemplateRaised(_) | Self::TemplateRender(_) => {
                ErrorKind::InvalidRequest
            }
            Self::MissingMetadata { .. }
            | Self::InvalidMetadata { .. }
            | Self::UnsupportedModel(_)
            | Self::UnsupportedPreTokenizer(_)
            | Self::TemplateSyntax(_) => ErrorKind::Internal,
        }
    }
}
