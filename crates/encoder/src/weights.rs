//! Where a BERT model's tensors come from: a safetensors file (Hugging Face
//! names, with or without a `bert.` prefix) or a GGUF file (llama.cpp's
//! `bert` names: `token_embd`, `blk.N.attn_q`, …). Matrices stay in the
//! mapped file and are handed to the kernels as they are (or packed by the
//! model); vectors (biases, norms) are copied out as `f32` once at load.

use std::ops::Range;
use std::path::PathBuf;

use gguf::GgufFile;
use kernels::{GgmlType, QMatrix};

use crate::safetensors::SafeTensors;
use crate::EncoderError;

/// A matrix in the mapped file: `rows` rows of `cols` elements of `ty`.
#[derive(Debug, Clone)]
pub struct MatrixRef {
    pub ty: GgmlType,
    pub rows: usize,
    pub cols: usize,
    at: Place,
}

/// Where a matrix's bytes are: a byte range of a safetensors file, or a
/// GGUF tensor (by its index).
#[derive(Debug, Clone)]
enum Place {
    Range(Range<usize>),
    Tensor(usize),
}

/// A tensor's type, shape (outermost dimension first, as safetensors and
/// PyTorch write it) and place.
struct Entry {
    ty: GgmlType,
    shape: Vec<usize>,
    at: Place,
}

enum File {
    Safetensors(SafeTensors),
    Gguf(GgufFile),
}

/// A model's tensors.
pub struct Weights {
    path: PathBuf,
    file: File,
}

impl Weights {
    /// The tensors of a safetensors file.
    pub fn safetensors(path: PathBuf, file: SafeTensors) -> Self {
        Self {
            path,
            file: File::Safetensors(file),
        }
    }

    /// The tensors of a GGUF file.
    pub fn gguf(path: PathBuf, file: GgufFile) -> Self {
        Self {
            path,
            file: File::Gguf(file),
        }
    }

    /// Whether a tensor called `name` exists.
    pub fn has(&self, name: &str) -> bool {
        self.entry(name).is_ok()
    }

    fn bytes(&self, at: &Place) -> &[u8] {
        match (&self.file, at) {
            (File::Safetensors(f), Place::Range(r)) => f.bytes_at(r.clone()),
            (File::Gguf(f), Place::Tensor(i)) => f.tensor_data(&f.tensors()[*i]),
            // Places are made by `entry` from the same file.
            _ => &[],
        }
    }

    /// An error naming the model file.
    pub fn bad(&self, detail: String) -> EncoderError {
        EncoderError::BadModel {
            path: self.path.clone(),
            detail,
        }
    }

    fn entry(&self, name: &str) -> Result<Entry, EncoderError> {
        let missing = || self.bad(format!("tensor {name} is missing"));
        match &self.file {
            File::Safetensors(f) => {
                let e = f.get(name).ok_or_else(missing)?;
                Ok(Entry {
                    ty: e.ty,
                    shape: e.shape.clone(),
                    at: Place::Range(e.range.clone()),
                })
            }
            File::Gguf(f) => {
                let i = f
                    .tensors()
                    .iter()
                    .position(|t| t.name == name)
                    .ok_or_else(missing)?;
                let t = &f.tensors()[i];
                // GGUF lists the innermost dimension first.
                let shape = t
                    .dims
                    .iter()
                    .rev()
                    .map(|&d| usize::try_from(d).unwrap_or(usize::MAX))
                    .collect();
                Ok(Entry {
                    ty: t.ty,
                    shape,
                    at: Place::Tensor(i),
                })
            }
        }
    }

    /// The `[rows, cols]` matrix called `name`.
    pub fn matrix(&self, name: &str, rows: usize, cols: usize) -> Result<MatrixRef, EncoderError> {
        let m = self.matrix_any_rows(name, cols)?;
        if m.rows != rows {
            return Err(self.bad(format!("tensor {name} has {} rows, not {rows}", m.rows)));
        }
        Ok(m)
    }

    /// The matrix called `name`, whatever its row count, with `cols` columns.
    pub fn matrix_any_rows(&self, name: &str, cols: usize) -> Result<MatrixRef, EncoderError> {
        let e = self.entry(name)?;
        match e.shape.as_slice() {
            &[rows, c] if c == cols => {
                let m = MatrixRef {
                    ty: e.ty,
                    rows,
                    cols,
                    at: e.at.clone(),
                };
                self.qmatrix(&m)?;
                Ok(m)
            }
            shape => Err(self.bad(format!(
                "tensor {name} has shape {shape:?}, not [_, {cols}]"
            ))),
        }
    }

    /// The `len`-element vector called `name`, as `f32`.
    pub fn vector(&self, name: &str, len: usize) -> Result<Vec<f32>, EncoderError> {
        let e = self.entry(name)?;
        if e.shape.as_slice() != [len] {
            return Err(self.bad(format!(
                "tensor {name} has shape {:?}, not [{len}]",
                e.shape
            )));
        }
        let mut out = vec![0.0; len];
        kernels::dequantize_row(e.ty, self.bytes(&e.at), &mut out)
            .map_err(|err| self.bad(format!("tensor {name}: {err}")))?;
        Ok(out)
    }

    /// `m` as the kernels' matrix view.
    pub fn qmatrix(&self, m: &MatrixRef) -> Result<QMatrix<'_>, EncoderError> {
        QMatrix::new(m.ty, self.bytes(&m.at), m.rows, m.cols)
            .map_err(|err| self.bad(format!("a {}x{} matrix: {err}", m.rows, m.cols)))
    }
}

/// The tensor names of one checkpoint layout.
pub enum Names {
    /// Hugging Face's, after `prefix` (`bert.` or nothing).
    HuggingFace { prefix: &'static str },
    /// llama.cpp's GGUF names for the `bert` and `nomic-bert`
    /// architectures.
    Gguf,
}

impl Names {
    /// The layout of `w`'s file.
    pub fn for_weights(w: &Weights) -> Self {
        match &w.file {
            File::Gguf(_) => Names::Gguf,
            File::Safetensors(f) => Names::HuggingFace {
                prefix: if f.get("bert.embeddings.word_embeddings.weight").is_some() {
                    "bert."
                } else {
                    ""
                },
            },
        }
    }

    fn base(&self, logical: &str) -> String {
        let (layer, part) = match logical.split_once('.') {
            Some((i, part)) => (Some(i), part),
            None => (None, logical),
        };
        match self {
            Names::HuggingFace { prefix: p } => match (layer, part) {
                (None, "word") => format!("{p}embeddings.word_embeddings"),
                (None, "position") => format!("{p}embeddings.position_embeddings"),
                (None, "token_type") => format!("{p}embeddings.token_type_embeddings"),
                (None, "embeddings") => format!("{p}embeddings.LayerNorm"),
                (Some(i), part) => {
                    let tail = match part {
                        "q" => "attention.self.query",
                        "k" => "attention.self.key",
                        "v" => "attention.self.value",
                        "attn_out" => "attention.output.dense",
                        "attn_norm" => "attention.output.LayerNorm",
                        "up" => "intermediate.dense",
                        "down" => "output.dense",
                        _ => "output.LayerNorm",
                    };
                    format!("{p}encoder.layer.{i}.{tail}")
                }
                (None, other) => other.to_owned(),
            },
            Names::Gguf => match (layer, part) {
                (None, "word") => "token_embd".to_owned(),
                (None, "position") => "position_embd".to_owned(),
                (None, "token_type") => "token_types".to_owned(),
                (None, "embeddings") => "token_embd_norm".to_owned(),
                (Some(i), part) => {
                    let tail = match part {
                        "q" => "attn_q",
                        "k" => "attn_k",
                        "qkv" => "attn_qkv",
                        "gate" => "ffn_gate",
                        "v" => "attn_v",
                        "attn_out" => "attn_output",
                        "attn_norm" => "attn_output_norm",
                        "up" => "ffn_up",
                        "down" => "ffn_down",
                        _ => "layer_output_norm",
                    };
                    format!("blk.{i}.{tail}")
                }
                (None, other) => other.to_owned(),
            },
        }
    }

    pub fn weight(&self, logical: &str) -> String {
        format!("{}.weight", self.base(logical))
    }

    pub fn bias(&self, logical: &str) -> String {
        format!("{}.bias", self.base(logical))
    }

    pub fn norm_weight(&self, logical: &str) -> String {
        self.weight(logical)
    }

    pub fn norm_bias(&self, logical: &str) -> String {
        self.bias(logical)
    }
}
