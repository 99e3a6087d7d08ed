//! The model's vocabulary as llguidance sees it: a token trie of each
//! token's bytes (GPT-2's byte mapping undone for BPE; `▁` as a space and
//! `<0xNN>` as that byte for SentencePiece — `Tokenizer::token_bytes` does
//! both), control tokens behind toktrie's special marker so that no text
//! ever matches them (a grammar names one by id, `<[ID]>`), and every
//! end-of-generation token as an EOS. Text is tokenized for llguidance
//! to exactly its bytes (no SentencePiece space prefix).

use std::sync::Arc;

use tokenizer::Tokenizer;
use toktrie::{TokEnv, TokRxInfo, TokTrie, TokenId, TokenizerEnv};

/// A [`TokenizerEnv`] over one of our tokenizers.
pub struct Vocab {
    trie: TokTrie,
    tokenizer: Arc<Tokenizer>,
}

impl Vocab {
    /// The trie of `tokenizer`'s vocabulary; `n_vocab` is the model's
    /// logits width (at least the tokenizer's size).
    pub fn env(tokenizer: Arc<Tokenizer>, n_vocab: usize) -> TokEnv {
        let size = n_vocab.max(tokenizer.vocab_size());
        let words: Vec<Vec<u8>> = (0..size as u32)
            .map(|id| {
                if id as usize >= tokenizer.vocab_size() {
                    // Padding rows of the output matrix: never allowed.
                    Vec::new()
                } else if tokenizer.is_control(id) || tokenizer.is_eog(id) {
                    let mut w = vec![TokTrie::SPECIAL_TOKEN_MARKER];
                    w.extend_from_slice(tokenizer.id_to_token(id).unwrap_or("").as_bytes());
                    w
                } else {
                    tokenizer.token_bytes(id).to_vec()
                }
            })
            .collect();
        let eog: Vec<TokenId> = tokenizer.eog_ids().collect();
        let eos = tokenizer
            .eos_id()
            .or_else(|| eog.first().copied())
            .unwrap_or(0);
        let mut info = TokRxInfo::new(size as u32, eos);
        info.tok_bos = tokenizer.bos_id();
        let mut trie = TokTrie::from(&info, &words);
        let mut eos_all = vec![eos];
        eos_all.extend(eog.iter().copied().filter(|&id| id != eos));
        trie = trie.with_eos_tokens(&eos_all);
        Arc::new(Vocab { trie, tokenizer })
    }
}

impl TokenizerEnv for Vocab {
    fn tok_trie(&self) -> &TokTrie {
        &self.trie
    }

    fn tokenize_bytes(&self, s: &[u8]) -> Vec<TokenId> {
        if let Ok(text) = std::str::from_utf8(s) {
            let ids = self.tokenizer.encode(text, false, false);
            // SentencePiece with a space prefix (Llama 2, Mistral) encodes
            // "ab" as "▁ab": llguidance needs exactly `s`'s bytes.
            let spelt = ids
                .iter()
                .flat_map(|&id| self.tokenizer.token_bytes(id).iter().copied());
            if spelt.eq(s.iter().copied()) {
                return ids;
            }
        }
        self.trie.greedy_tokenize(s)
    }
}
