//! The local moderation classifier: OpenAI's 13 categories scored from what this machine runs — a
//! pattern layer for explicit phrases ([`patterns`]) and the embedding
//! model's similarity to labelled exemplars per category, against benign
//! look-alikes ("kill the process", "a shot of espresso"), turned into a
//! score in [0, 1]. A parent category scores at least as high as its
//! sub-categories. Measured on `tests/moderation/eval.tsv` (precision and
//! recall per category: docs/MODERATION.md); it is a small, honest
//! baseline, not OpenAI's model.

use std::sync::{Arc, OnceLock};

use api::{ModerationResult, MODERATION_CATEGORIES};
use encoder::{EncoderError, EncoderHandle};

use super::patterns;

/// A score at or above this flags its category.
pub const THRESHOLD: f64 = 0.5;

/// Where the cosine to a category's nearest exemplar starts to count.
const CENTRE: f64 = 0.55;
/// How steeply the score rises with that cosine.
const STEEPNESS: f64 = 14.0;
/// How much being nearer an exemplar than any benign look-alike counts.
const MARGIN_WEIGHT: f64 = 8.0;

/// The parent of each sub-category (index into [`MODERATION_CATEGORIES`]).
const PARENTS: [(usize, usize); 7] = [(1, 0), (3, 2), (5, 4), (7, 6), (8, 6), (10, 9), (12, 11)];

static EXEMPLARS: &str = include_str!("exemplars.txt");

/// The exemplars, embedded once.
pub struct Classifier {
    /// (category index, vector) per exemplar.
    exemplars: Vec<(usize, Vec<f32>)>,
    /// The benign look-alikes' vectors.
    benign: Vec<Vec<f32>>,
}

impl Classifier {
    /// Embeds every exemplar with `handle` (blocking).
    pub fn build(handle: &EncoderHandle) -> std::result::Result<Self, EncoderError> {
        let mut labels = Vec::new();
        let mut seqs = Vec::new();
        for line in EXEMPLARS
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
        {
            let Some((label, text)) = line.split_once('\t') else {
                continue;
            };
            let index = MODERATION_CATEGORIES.iter().position(|c| *c == label);
            labels.push(index);
            seqs.push(handle.tokenizer().encode(text));
        }
        let vectors = handle.embed(seqs)?;
        let mut exemplars = Vec::new();
        let mut benign = Vec::new();
        for (label, v) in labels.into_iter().zip(vectors) {
            match label {
                Some(c) => exemplars.push((c, v)),
                None => benign.push(v),
            }
        }
        Ok(Self { exemplars, benign })
    }

    /// The 13 scores of `text`, whose (normalised) vector is `v`.
    pub fn score(&self, text: &str, v: &[f32]) -> [f64; 13] {
        let benign = self
            .benign
            .iter()
            .map(|b| cosine(v, b))
            .fold(f64::NEG_INFINITY, f64::max);
        let mut nearest = [f64::NEG_INFINITY; 13];
        for (c, e) in &self.exemplars {
            nearest[*c] = nearest[*c].max(cosine(v, e));
        }
        let mut scores = [0.0f64; 13];
        for (c, s) in nearest.iter().enumerate() {
            if s.is_finite() {
                let z = STEEPNESS * (s - CENTRE) + MARGIN_WEIGHT * (s - benign);
                scores[c] = 1.0 / (1.0 + (-z).exp());
            }
        }
        for c in patterns::matches(text) {
            scores[c] = scores[c].max(0.97);
        }
        for (child, parent) in PARENTS {
            scores[parent] = scores[parent].max(scores[child]);
        }
        scores
    }
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    // Both are L2-normalised by the encoder.
    a.iter()
        .zip(b)
        .map(|(x, y)| f64::from(*x) * f64::from(*y))
        .sum()
}

/// The classifier of a service: built on first use from the first embedding
/// model served.
#[derive(Default)]
pub struct Moderator {
    classifier: OnceLock<Arc<Classifier>>,
}

/// Texts tokenized for the classifier, ready to run.
pub struct Prepared {
    classifier: Arc<Classifier>,
    handle: EncoderHandle,
    texts: Vec<String>,
    seqs: Vec<Vec<u32>>,
}

impl Moderator {
    /// Tokenizes `texts` with `handle`'s tokenizer (long texts are
    /// classified by their first `max_tokens`), building the classifier on
    /// first use (blocking).
    pub fn prepare(
        &self,
        handle: &EncoderHandle,
        texts: Vec<String>,
    ) -> Result<Prepared, EncoderError> {
        let classifier = match self.classifier.get() {
            Some(c) => c.clone(),
            None => {
                let built = Arc::new(Classifier::build(handle)?);
                self.classifier.get_or_init(|| built).clone()
            }
        };
        let max = handle.max_tokens();
        let seqs = texts
            .iter()
            .map(|t| {
                let mut ids = handle.tokenizer().encode(t);
                if ids.len() > max {
                    let sep = ids[ids.len() - 1];
                    ids.truncate(max - 1);
                    ids.push(sep);
                }
                ids
            })
            .collect();
        Ok(Prepared {
            classifier,
            handle: handle.clone(),
            texts,
            seqs,
        })
    }
}

impl Prepared {
    /// The tokens the classifier reads ([CLS] and [SEP] included): what a
    /// moderation request is metered for.
    pub fn tokens(&self) -> u64 {
        self.seqs.iter().map(|s| s.len() as u64).sum()
    }

    /// Classifies every text (blocking).
    pub fn run(self) -> Result<Vec<ModerationResult>, EncoderError> {
        let vectors = self.handle.embed(self.seqs)?;
        Ok(self
            .texts
            .iter()
            .zip(&vectors)
            .map(|(t, v)| ModerationResult::from_scores(&self.classifier.score(t, v), THRESHOLD))
            .collect())
    }
}
