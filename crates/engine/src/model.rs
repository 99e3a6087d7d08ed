//! A loaded model: its hyper-parameters, and the forward pass of its family
//! over a batch of (sequence, position) rows and a KV cache it does not own.

use std::path::Path;
use std::sync::Arc;

use gguf::GgufFile;
use kernels::{RowOrder, ThreadPool};

use crate::error::EngineError;
use crate::kv::KvCache;
use crate::layers::BatchRow;
use crate::models;

/// Hyper-parameters every family shares, read from the GGUF metadata.
#[derive(Debug, Clone)]
pub struct ModelConfig {
    pub arch: String,
    pub n_layers: usize,
    pub n_embd: usize,
    pub n_ff: usize,
    pub n_head: usize,
    pub n_kv_head: usize,
    pub head_dim: usize,
    /// Context length the model was trained for.
    pub n_ctx_train: usize,
    /// Positions one sequence may hold in the engine that loaded the model:
    /// the training context unless the loader asked for less
    /// ([`Model::load_for_context`]). LongRoPE picks its factors by it.
    pub n_ctx: usize,
    pub n_vocab: usize,
    pub rms_eps: f32,
    /// The sliding window of the model's local attention layers, if it has
    /// them (`<arch>.attention.sliding_window`).
    pub sliding_window: Option<usize>,
}

impl ModelConfig {
    /// The summation order llama.cpp would give the prompt row at `pos` of
    /// a `prompt_len`-token prompt ([`RowOrder::prompt_row`]; the reference
    /// server splits a sliding-window model's prompt to checkpoint its cache).
    pub fn prompt_row_order(&self, pos: usize, prompt_len: usize) -> RowOrder {
        RowOrder::prompt_row(pos, prompt_len, self.sliding_window.is_some())
    }

    /// Width of one position's keys (or values) across all KV heads.
    pub fn kv_dim(&self) -> usize {
        self.n_kv_head * self.head_dim
    }

    /// Reads the shared keys under the `<arch>.` prefix.
    pub fn from_gguf(f: &GgufFile) -> Result<Self, EngineError> {
        let arch = f
            .architecture()
            .ok_or_else(|| EngineError::Model("general.architecture is missing".into()))?
            .to_string();
        // A per-layer array (Gemma 4's KV heads and feed-forward widths)
        // reads as its largest entry; the family reads the array itself.
        let get = |key: &str| -> Result<usize, EngineError> {
            let name = format!("{arch}.{key}");
            f.get_u32(&name)
                .or_else(|| {
                    let arr = f.get(&name)?.as_array()?;
                    arr.iter()
                        .filter_map(|v| v.as_u64())
                        .max()
                        .map(|v| v as u32)
                })
                .map(|v| v as usize)
                .ok_or_else(|| EngineError::Model(format!("{arch}.{key} is missing")))
        };
        let n_embd = get("embedding_length")?;
        let n_head = get("attention.head_count")?;
        if n_head == 0 {
            return Err(EngineError::Model("attention.head_count is 0".into()));
        }
        let n_kv_head = get("attention.head_count_kv").unwrap_or(n_head);
        let head_dim = get("attention.key_length").unwrap_or(n_embd / n_head);
        let n_vocab = f
            .get_str_array("tokenizer.ggml.tokens")
            .map(|t| t.len())
            .ok_or_else(|| EngineError::Model("tokenizer.ggml.tokens is missing".into()))?;
        let cfg = ModelConfig {
            n_layers: get("block_count")?,
            n_embd,
            n_ff: get("feed_forward_length")?,
            n_head,
            n_kv_head,
            head_dim,
            n_ctx_train: get("context_length")?,
            n_ctx: 0,
            n_vocab,
            sliding_window: get("attention.sliding_window").ok().filter(|&w| w > 0),
            rms_eps: f
                .get_f32(&format!("{arch}.attention.layer_norm_rms_epsilon"))
                .unwrap_or(1e-5),
            arch,
        };
        let cfg = ModelConfig {
            n_ctx: cfg.n_ctx_train,
            ..cfg
        };
        if cfg.n_kv_head == 0
            || !cfg.n_head.is_multiple_of(cfg.n_kv_head)
            || !cfg.head_dim.is_multiple_of(2)
        {
            return Err(EngineError::Model(format!(
                "unsupported head layout: {} heads, {} KV heads, head size {}",
                cfg.n_head, cfg.n_kv_head, cfg.head_dim
            )));
        }
        Ok(cfg)
    }
}

/// The architectures (`general.architecture`) the engine runs.
pub const SUPPORTED_ARCHS: &str =
    "llama, gemma3, gemma4, qwen2, qwen3, qwen35, phi3, granite, smollm3, mistral3";

/// The forward pass of one model family.
pub trait Forward: Send + Sync {
    fn config(&self) -> &ModelConfig;

    /// The KV cache this model needs: how many layers keep keys and values
    /// and the width of one position's keys (the widest layer's). Every
    /// layer and `kv_dim` unless the family says otherwise (Gemma 4's
    /// layers that share an earlier layer's cache keep none).
    fn kv_layout(&self) -> (usize, usize) {
        (self.config().n_layers, self.config().kv_dim())
    }

    /// Floats of recurrent state each sequence carries beside its keys and
    /// values (linear-attention layers; [`KvCache::recurrent_state`]); 0,
    /// the default, for a model without such layers.
    fn recurrent_state_len(&self) -> usize {
        0
    }

    /// Runs `rows` through the model, writing their keys and values into `kv`
    /// (which must have room for every row's position), and leaves in
    /// `logits` (resized to fit; a buffer reused from step to step is not
    /// cleared first) the logits of the rows with `want_logits`, in order,
    /// `n_vocab` each.
    fn forward(
        &self,
        rows: &[BatchRow],
        kv: &mut KvCache,
        pool: &ThreadPool,
        logits: &mut Vec<f32>,
    ) -> Result<(), EngineError>;
}

/// A model file loaded for inference.
pub struct Model {
    file: Arc<GgufFile>,
    family: Box<dyn Forward>,
}

impl Model {
    /// Opens `path` and builds the forward pass its architecture names, for
    /// the model's training context.
    pub fn load(path: &Path) -> Result<Self, EngineError> {
        Self::load_for_context(path, 0)
    }

    /// [`Model::load`] for sequences of at most `n_ctx` positions (`0`, or
    /// more than the training context: the training context), which becomes
    /// [`ModelConfig::n_ctx`].
    pub fn load_for_context(path: &Path, n_ctx: usize) -> Result<Self, EngineError> {
        let file = Arc::new(GgufFile::open(path)?);
        Self::from_file_for_context(file, n_ctx)
    }

    pub fn from_file(file: Arc<GgufFile>) -> Result<Self, EngineError> {
        Self::from_file_for_context(file, 0)
    }

    /// [`Model::from_file`] for sequences of at most `n_ctx` positions (see
    /// [`Model::load_for_context`]).
    pub fn from_file_for_context(file: Arc<GgufFile>, n_ctx: usize) -> Result<Self, EngineError> {
        let mut cfg = ModelConfig::from_gguf(&file)?;
        if n_ctx != 0 {
            cfg.n_ctx = n_ctx.min(cfg.n_ctx_train);
        }
        let family: Box<dyn Forward> = match cfg.arch.as_str() {
            "llama" => Box::new(models::llama::Llama::load(file.clone(), cfg)?),
            "gemma3" => Box::new(models::gemma3::Gemma3::load(file.clone(), cfg)?),
            "gemma4" => Box::new(models::gemma4::Gemma4::load(file.clone(), cfg)?),
            "gemma4-assistant" => {
                return Err(EngineError::Model(
                    "architecture 'gemma4-assistant' (a Gemma 4 draft model for speculative \
                     decoding) is not supported; load the gemma4 model it drafts for"
                        .into(),
                ))
            }
            "qwen2" => Box::new(models::qwen2::load(file.clone(), cfg)?),
            "qwen3" => Box::new(models::qwen3::load(file.clone(), cfg)?),
            "qwen35" => Box::new(models::qwen35::Qwen35::load(file.clone(), cfg)?),
            "qwen35moe" => {
                return Err(EngineError::Model(
                    "architecture 'qwen35moe' (Qwen 3.5 with mixture-of-experts feed-forward) \
                     is not supported; the dense 'qwen35' models are"
                        .into(),
                ))
            }
            "phi3" => Box::new(models::phi3::load(file.clone(), cfg)?),
            "granite" => Box::new(models::granite::load(file.clone(), cfg)?),
            "smollm3" => Box::new(models::smollm3::load(file.clone(), cfg)?),
            "mistral3" => Box::new(models::mistral3::load(file.clone(), cfg)?),
            other => {
                return Err(EngineError::Model(format!(
                    "architecture '{other}' is not supported (supported: {SUPPORTED_ARCHS})"
                )))
            }
        };
        Ok(Model { file, family })
    }

    pub fn file(&self) -> &Arc<GgufFile> {
        &self.file
    }

    pub fn config(&self) -> &ModelConfig {
        self.family.config()
    }

    /// A KV cache sized for `capacity_tokens` positions of this model.
    pub fn new_kv_cache(&self, capacity_tokens: usize) -> KvCache {
        let (n_layers, kv_dim) = self.family.kv_layout();
        KvCache::new(
            n_layers,
            kv_dim,
            crate::kv::DEFAULT_BLOCK_SIZE,
            capacity_tokens,
        )
        .with_recurrent_state(self.family.recurrent_state_len())
    }

    /// Runs `rows` through the model and returns the logits of the rows with
    /// `want_logits`, in order, `n_vocab` each (see [`Forward::forward`]).
    pub fn forward(
        &self,
        rows: &[BatchRow],
        kv: &mut KvCache,
        pool: &ThreadPool,
    ) -> Result<Vec<f32>, EngineError> {
        let mut logits = Vec::new();
        self.forward_into(rows, kv, pool, &mut logits)?;
        Ok(logits)
    }

    /// [`Model::forward`] into a buffer the caller keeps from step to step,
    /// so a step neither allocates nor clears its (often many megabytes of)
    /// logits.
    pub fn forward_into(
        &self,
        rows: &[BatchRow],
        kv: &mut KvCache,
        pool: &ThreadPool,
        logits: &mut Vec<f32>,
    ) -> Result<(), EngineError> {
        for r in rows {
            if r.token as usize >= self.config().n_vocab {
                return Err(EngineError::InvalidRequest(format!(
                    "token id {} is outside the vocabulary (size {})",
                    r.token,
                    self.config().n_vocab
                )));
            }
        }
        self.family.forward(rows, kv, pool, logits)
    }
}
