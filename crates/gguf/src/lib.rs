//! The GGUF file reader: metadata key/values and tensor descriptors, with every
//! offset and size checked against the file so a malformed or truncated file is
//! a clear error, never a panic or an out-of-bounds read.
//!
//! Format: <https://github.com/ggml-org/ggml/blob/master/docs/gguf.md>. Versions 2
//! and 3 are read (64-bit counts); the tensor data is memory-mapped, not copied.

mod reader;
mod types;
mod value;

pub use reader::{GgufError, GgufFile, TensorInfo};
pub use types::{GgmlType, QK_K};
pub use value::Value;
