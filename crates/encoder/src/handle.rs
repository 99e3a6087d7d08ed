//! The encoder thread: it owns the model and its thread pool and runs one
//! batch at a time from a bounded queue. [`EncoderHandle`] is cheap to
//! clone; tokenizing happens on the caller's thread with the shared
//! tokenizer, and a full queue is refused at once ([`EncoderError::Overloaded`]).

use std::path::Path;
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::sync::Arc;

use kernels::ThreadPool;

use crate::{Encoder, EncoderError, WordPiece};

/// How the encoder thread is set up.
#[derive(Debug, Clone)]
pub struct HandleConfig {
    /// Threads of the encoder's pool (the caller included).
    pub threads: usize,
    /// Batches that may wait for the encoder before new ones are refused.
    pub queue: usize,
}

impl Default for HandleConfig {
    fn default() -> Self {
        Self {
            threads: kernels::default_threads(),
            queue: 64,
        }
    }
}

type Reply = mpsc::Sender<Result<Vec<Vec<f32>>, EncoderError>>;

struct Info {
    tokenizer: WordPiece,
    max_tokens: usize,
    dimensions: usize,
    vocab: usize,
}

/// A running encoder.
#[derive(Clone)]
pub struct EncoderHandle {
    tx: SyncSender<(Vec<Vec<u32>>, Reply)>,
    info: Arc<Info>,
}

impl std::fmt::Debug for EncoderHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EncoderHandle")
            .field("max_tokens", &self.info.max_tokens)
            .field("dimensions", &self.info.dimensions)
            .finish()
    }
}

impl EncoderHandle {
    /// Load the model at `dir` (a folder or a GGUF file) and start its thread.
    pub fn start(dir: &Path, config: HandleConfig) -> Result<Self, EncoderError> {
        let encoder = Encoder::load(dir)?;
        let info = Arc::new(Info {
            tokenizer: encoder.tokenizer().clone(),
            max_tokens: encoder.max_tokens(),
            dimensions: encoder.dimensions(),
            vocab: encoder.vocab_size(),
        });
        let (tx, rx) = mpsc::sync_channel::<(Vec<Vec<u32>>, Reply)>(config.queue.max(1));
        let threads = config.threads.max(1);
        std::thread::Builder::new()
            .name("parlance-encoder".into())
            .spawn(move || {
                let pool = ThreadPool::new(threads);
                while let Ok((seqs, reply)) = rx.recv() {
                    // A caller that left drops its receiver: nothing to do.
                    let _ = reply.send(encoder.embed(&seqs, &pool));
                }
            })
            .map_err(|e| EncoderError::io(dir, e))?;
        Ok(Self { tx, info })
    }

    /// The tokenizer (thread-safe; use it off the async executor).
    pub fn tokenizer(&self) -> &WordPiece {
        &self.info.tokenizer
    }

    /// The longest input, in tokens including `[CLS]` and `[SEP]`.
    pub fn max_tokens(&self) -> usize {
        self.info.max_tokens
    }

    /// The length of every vector.
    pub fn dimensions(&self) -> usize {
        self.info.dimensions
    }

    /// Check inputs without running them (lengths and ids).
    pub fn check(&self, seqs: &[Vec<u32>]) -> Result<(), EncoderError> {
        crate::check(seqs, self.info.max_tokens, self.info.vocab)
    }

    /// Embed `seqs` as one batch; blocks until the encoder answers, so call
    /// it from a blocking context.
    pub fn embed(&self, seqs: Vec<Vec<u32>>) -> Result<Vec<Vec<f32>>, EncoderError> {
        self.check(&seqs)?;
        let (reply, answer) = mpsc::channel();
        match self.tx.try_send((seqs, reply)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => return Err(EncoderError::Overloaded),
            Err(TrySendError::Disconnected(_)) => return Err(EncoderError::Stopped),
        }
        answer.recv().map_err(|_| EncoderError::Stopped)?
    }
}
