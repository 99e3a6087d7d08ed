//! Where a BERT model's tensors come from: a safetensors file (Hugging Face
//! names, with or without a `bert.` prefix). Matrices stay in the mapped
//! file and are handed to the kernels as they are; vectors (biases, norms)
//! are copied out as `f32` once at load.

use std::ops::Range;
use std::path::PathBuf;

use kernels::{GgmlType, QMatrix};

use crate::safetensors::SafeTensors;
use crate::EncoderError;

/// A matrix in the mapped file: `rows` rows of `cols` elements of `ty`.
#[derive(Debug, Clone)]
pub struct MatrixRef {
    pub ty: GgmlType,
    pub rows: usize,
    pub cols: usize,
    range: Range<usize>,
}

/// A model's tensors.
pub struct Weights {
    path: PathBuf,
    file: SafeTensors,
}

impl Weights {
    /// The tensors of a safetensors file.
    pub fn safetensors(path: PathBuf, file: SafeTensors) -> Self {
        Self { path, file }
    }

    /// An error naming the model file.
    pub fn bad(&self, detail: String) -> EncoderError {
        EncoderError::BadModel {
            path: self.path.clone(),
            detail,
        }
    }

    fn entry(&self, name: &str) -> Result<&crate::safetensors::TensorEntry, EncoderError> {
        self.file
            .get(name)
            .ok_or_else(|| self.bad(format!("tensor {name} is missing")))
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
                    range: e.range.clone(),
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
        kernels::dequantize_row(e.ty, self.file.bytes(e), &mut out)
            .map_err(|err| self.bad(format!("tensor {name}: {err}")))?;
        Ok(out)
    }

    /// `m` as the kernels' matrix view.
    pub fn qmatrix(&self, m: &MatrixRef) -> Result<QMatrix<'_>, EncoderError> {
        QMatrix::new(m.ty, self.file.bytes_at(m.range.clone()), m.rows, m.cols)
            .map_err(|err| self.bad(format!("a {}x{} matrix: {err}", m.rows, m.cols)))
    }
}

/// The tensor names of one checkpoint layout.
pub struct Names {
    prefix: &'static str,
}

impl Names {
    /// Hugging Face's BERT names, with the `bert.` prefix when the file has it.
    pub fn for_weights(w: &Weights) -> Self {
        let prefixed = w
            .file
            .get("bert.embeddings.word_embeddings.weight")
            .is_some();
        Self {
            prefix: if prefixed { "bert." } else { "" },
        }
    }

    fn base(&self, logical: &str) -> String {
        let (layer, part) = match logical.split_once('.') {
            Some((i, part)) => (Some(i), part),
            None => (None, logical),
        };
        let p = self.prefix;
        match (layer, part) {
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
