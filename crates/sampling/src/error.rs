//! The crate's one error type: what can be wrong with caller input.

/// An error from this crate. Every variant is the caller's fault
/// (an invalid request), never an internal failure.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SamplingError {
    /// A sampling parameter is out of its allowed range.
    #[error("invalid sampling parameter `{field}`: {reason}")]
    InvalidParam {
        /// The parameter's name as OpenAI spells it (e.g. `top_p`).
        field: &'static str,
        /// What is wrong with the value, for the client to read.
        reason: String,
    },
}

impl SamplingError {
    /// The name of the offending parameter, for the API error's `param`.
    pub fn field(&self) -> &'static str {
        match self {
            SamplingError::InvalidParam { field, .. } => field,
        }
    }
}
