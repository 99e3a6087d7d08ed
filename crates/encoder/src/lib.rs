//! Sentence embeddings from our own engine: a BERT encoder (`bert`) loaded
//! from a sentence-transformers folder (safetensors weights, `config.json`,
//! `tokenizer.json`, the pooling and normalisation modules) or from a GGUF
//! file of llama.cpp's `bert` architecture (bge, all-MiniLM conversions:
//! F32, F16, BF16, Q8_0 and the kernels' other block formats), its WordPiece
//! tokenizer (`wordpiece`), mean or CLS pooling and L2 normalisation, and
//! the encoder thread that owns the model and its thread pool
//! ([`EncoderHandle`]).
//!
//! Matrices run through the chat engine's kernels and [`kernels::ThreadPool`];
//! this crate knows nothing of HTTP, accounts or money.

mod bert;
mod gelu;
mod handle;
mod safetensors;
mod weights;
mod wordpiece;

use std::path::{Path, PathBuf};

pub use bert::BertConfig;
pub use handle::{EncoderHandle, HandleConfig};
pub use wordpiece::WordPiece;

use bert::Bert;
use kernels::ThreadPool;

/// Everything that can go wrong loading or running an encoder.
#[derive(Debug, thiserror::Error)]
pub enum EncoderError {
    #[error("reading {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a usable embedding model: {detail}")]
    BadModel { path: PathBuf, detail: String },
    /// An input is longer than the model's context.
    #[error("input {index} has {tokens} tokens, more than the model's {max} (including [CLS] and [SEP])")]
    TooLong {
        index: usize,
        tokens: usize,
        max: usize,
    },
    /// A token id is outside the vocabulary.
    #[error("input {index} holds token id {id}, outside the model's vocabulary of {vocab}")]
    BadToken { index: usize, id: u64, vocab: usize },
    /// The encoder's queue is full.
    #[error("the embedding model is busy; try again")]
    Overloaded,
    /// The encoder thread has stopped.
    #[error("the embedding model has stopped")]
    Stopped,
}

impl EncoderError {
    fn io(path: &Path, source: std::io::Error) -> Self {
        Self::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    /// Whether the caller's input (not the model or the machine) is at fault.
    pub fn is_invalid_input(&self) -> bool {
        matches!(self, Self::TooLong { .. } | Self::BadToken { .. })
    }
}

/// How token vectors become one sentence vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pooling {
    /// The average of every token's last hidden state.
    Mean,
    /// The `[CLS]` token's last hidden state.
    Cls,
}

/// A loaded sentence encoder: tokenizer, model, pooling.
pub struct Encoder {
    bert: Bert,
    tokenizer: WordPiece,
    pooling: Pooling,
    normalize: bool,
    max_tokens: usize,
}

impl std::fmt::Debug for Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encoder")
            .field("bert", &self.bert)
            .field("pooling", &self.pooling)
            .field("normalize", &self.normalize)
            .field("max_tokens", &self.max_tokens)
            .finish()
    }
}

#[derive(serde::Deserialize)]
struct PoolingConfig {
    #[serde(default)]
    pooling_mode_cls_token: bool,
    #[serde(default)]
    pooling_mode_mean_tokens: bool,
}

#[derive(serde::Deserialize)]
struct SentenceConfig {
    max_seq_length: usize,
}

#[derive(serde::Deserialize)]
struct Module {
    #[serde(rename = "type")]
    kind: String,
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, EncoderError> {
    let text = std::fs::read_to_string(path).map_err(|e| EncoderError::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| EncoderError::BadModel {
        path: path.to_path_buf(),
        detail: e.to_string(),
    })
}

impl Encoder {
    /// Load a model: a GGUF file ([`Encoder::load_gguf`]) or a
    /// sentence-transformers folder ([`Encoder::load_folder`]).
    pub fn load(path: &Path) -> Result<Self, EncoderError> {
        if path.is_file() {
            Self::load_gguf(path)
        } else {
            Self::load_folder(path)
        }
    }

    /// Load a GGUF file of the `bert` or `nomic-bert` architecture: the
    /// shape from its `<arch>.*` keys, the WordPiece vocabulary from its
    /// tokenizer keys, the pooling from `<arch>.pooling_type` (mean when
    /// absent), vectors always L2-normalised (as llama.cpp's embedding
    /// output is), and the context from `<arch>.context_length`.
    /// `nomic-bert` adds rotary positions (`nomic-bert.rope.freq_base`,
    /// 10000 when absent) and a SwiGLU feed-forward.
    pub fn load_gguf(path: &Path) -> Result<Self, EncoderError> {
        let bad = |detail: String| EncoderError::BadModel {
            path: path.to_path_buf(),
            detail,
        };
        let file = gguf::GgufFile::open(path).map_err(|e| bad(e.to_string()))?;
        let arch = match file.architecture() {
            Some(a @ ("bert" | "nomic-bert")) => a.to_owned(),
            Some(other) => {
                return Err(bad(format!(
                    "architecture {other} is not supported (bert and nomic-bert are)"
                )))
            }
            None => return Err(bad("general.architecture is missing".into())),
        };
        let nomic = arch == "nomic-bert";
        let key = |k: &str| format!("{arch}.{k}");
        let int = |k: &str| {
            file.get_u32(&key(k))
                .map(|v| v as usize)
                .ok_or_else(|| bad(format!("{} is missing", key(k))))
        };
        let eps_key = key("attention.layer_norm_epsilon");
        let cfg = BertConfig {
            hidden_size: int("embedding_length")?,
            num_attention_heads: int("attention.head_count")?,
            num_hidden_layers: int("block_count")?,
            intermediate_size: int("feed_forward_length")?,
            max_position_embeddings: int("context_length")?,
            layer_norm_eps: f64::from(
                file.get_f32(&eps_key)
                    .ok_or_else(|| bad(format!("{eps_key} is missing")))?,
            ),
            hidden_act: if nomic { "swiglu" } else { "gelu" }.into(),
            position_embedding_type: if nomic { "rotary" } else { "absolute" }.into(),
            vocab_size: 0,
            rope_freq_base: file.get_f32(&key("rope.freq_base")).unwrap_or(10_000.0),
        };
        if file.get_bool(&key("attention.causal")) == Some(true) {
            return Err(bad("causal attention is not a BERT encoder".into()));
        }
        // llama.cpp's enum llama_pooling_type.
        let pooling = match file.get_u32(&key("pooling_type")) {
            None | Some(1) => Pooling::Mean,
            Some(2) => Pooling::Cls,
            Some(other) => {
                return Err(bad(format!(
                    "{arch}.pooling_type {other} is not supported (1, mean, or 2, CLS)"
                )))
            }
        };
        let tokenizer = WordPiece::from_gguf(&file).map_err(bad)?;
        let bert = Bert::new(cfg, weights::Weights::gguf(path.to_path_buf(), file))?;
        Self::assemble(path, bert, tokenizer, pooling, true, None)
    }

    /// Load a sentence-transformers folder: `model.safetensors`,
    /// `config.json`, `tokenizer.json`, and (when present)
    /// `sentence_bert_config.json` (the context), `1_Pooling/config.json`
    /// (mean by default) and `modules.json` (normalised when it lists
    /// `Normalize`, or when it is absent).
    pub fn load_folder(dir: &Path) -> Result<Self, EncoderError> {
        let cfg: BertConfig = read_json(&dir.join("config.json"))?;
        let tok_path = dir.join("tokenizer.json");
        let tok_text =
            std::fs::read_to_string(&tok_path).map_err(|e| EncoderError::io(&tok_path, e))?;
        let tokenizer =
            WordPiece::from_json(&tok_text).map_err(|detail| EncoderError::BadModel {
                path: tok_path.clone(),
                detail,
            })?;
        let weights_path = dir.join("model.safetensors");
        let file = safetensors::SafeTensors::open(&weights_path)?;
        let bert = Bert::new(cfg, weights::Weights::safetensors(weights_path, file))?;

        let pooling_path = dir.join("1_Pooling/config.json");
        let pooling = if pooling_path.is_file() {
            let p: PoolingConfig = read_json(&pooling_path)?;
            match (p.pooling_mode_mean_tokens, p.pooling_mode_cls_token) {
                (true, false) => Pooling::Mean,
                (false, true) => Pooling::Cls,
                _ => {
                    return Err(EncoderError::BadModel {
                        path: pooling_path,
                        detail: "only mean or CLS pooling (one of them) is supported".into(),
                    })
                }
            }
        } else {
            Pooling::Mean
        };
        let modules_path = dir.join("modules.json");
        let normalize = if modules_path.is_file() {
            let modules: Vec<Module> = read_json(&modules_path)?;
            modules.iter().any(|m| m.kind.ends_with(".Normalize"))
        } else {
            true
        };
        let sentence_path = dir.join("sentence_bert_config.json");
        let max_seq = if sentence_path.is_file() {
            Some(read_json::<SentenceConfig>(&sentence_path)?.max_seq_length)
        } else {
            None
        };
        Self::assemble(&tok_path, bert, tokenizer, pooling, normalize, max_seq)
    }

    /// The checks and the context common to both sources (`max_seq`: a
    /// shorter context than the model's positions, when configured).
    fn assemble(
        path: &Path,
        bert: Bert,
        tokenizer: WordPiece,
        pooling: Pooling,
        normalize: bool,
        max_seq: Option<usize>,
    ) -> Result<Self, EncoderError> {
        let max_tokens = max_seq
            .unwrap_or(bert.config().max_position_embeddings)
            .min(bert.max_positions());
        if tokenizer.vocab_size() > bert.vocab_rows() {
            return Err(EncoderError::BadModel {
                path: path.to_path_buf(),
                detail: "the tokenizer has more ids than the model has embeddings".into(),
            });
        }
        Ok(Self {
            bert,
            tokenizer,
            pooling,
            normalize,
            max_tokens,
        })
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &WordPiece {
        &self.tokenizer
    }

    /// The longest input, in tokens including `[CLS]` and `[SEP]`.
    pub fn max_tokens(&self) -> usize {
        self.max_tokens
    }

    /// The length of every vector.
    pub fn dimensions(&self) -> usize {
        self.bert.config().hidden_size
    }

    /// How many token ids the model has (ids must be below it).
    pub fn vocab_size(&self) -> usize {
        self.bert.vocab_rows()
    }

    /// Check that every sequence fits the context and the vocabulary.
    pub fn check(&self, seqs: &[Vec<u32>]) -> Result<(), EncoderError> {
        check(seqs, self.max_tokens, self.vocab_size())
    }

    /// One vector per sequence (each `[CLS] … [SEP]`, as
    /// [`WordPiece::encode`] makes them), all run as one packed batch.
    pub fn embed(
        &self,
        seqs: &[Vec<u32>],
        pool: &ThreadPool,
    ) -> Result<Vec<Vec<f32>>, EncoderError> {
        self.check(seqs)?;
        let h = self.dimensions();
        let refs: Vec<&[u32]> = seqs.iter().map(Vec::as_slice).collect();
        let hidden = self.bert.forward(&refs, pool)?;
        let mut out = Vec::with_capacity(seqs.len());
        let mut first = 0;
        for seq in seqs {
            let rows = &hidden[first * h..(first + seq.len()) * h];
            first += seq.len();
            let mut v = match self.pooling {
                Pooling::Cls => rows[..h].to_vec(),
                Pooling::Mean => {
                    let mut sum = vec![0.0f32; h];
                    for row in rows.chunks_exact(h) {
                        for (s, x) in sum.iter_mut().zip(row) {
                            *s += x;
                        }
                    }
                    let n = seq.len().max(1) as f32;
                    sum.iter_mut().for_each(|s| *s /= n);
                    sum
                }
            };
            if self.normalize {
                let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
                v.iter_mut().for_each(|x| *x /= norm);
            }
            out.push(v);
        }
        Ok(out)
    }
}

fn check(seqs: &[Vec<u32>], max_tokens: usize, vocab: usize) -> Result<(), EncoderError> {
    for (index, seq) in seqs.iter().enumerate() {
        if seq.len() > max_tokens {
            return Err(EncoderError::TooLong {
                index,
                tokens: seq.len(),
                max: max_tokens,
            });
        }
        if let Some(&id) = seq.iter().find(|&&id| id as usize >= vocab) {
            return Err(EncoderError::BadToken {
                index,
                id: id.into(),
                vocab,
            });
        }
    }
    Ok(())
}
