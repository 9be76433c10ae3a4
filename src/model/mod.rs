//! The public API: a loaded bundle that turns texts into labels, scores and embeddings.
//! text → tokens → tensors → encoder → pooling → head → answer.

use std::path::Path;

use crate::bundle::{Bundle, Metadata};
use crate::encoder::{Batch, Encoder, EncoderOptions};
use crate::error::{Error, Result};
use crate::tokenizer::{Encoding, Tokenizer};
use head::Head;
use pooling::pool;

pub(crate) mod head;
pub(crate) mod pooling;

/// A loaded bundle. `Send + Sync`: share one across threads behind an `Arc`.
pub struct Model {
    metadata: Metadata,
    tokenizer: Tokenizer,
    encoder: Encoder,
    head: Option<Head>,
}

/// Labels with probabilities, best first.
#[derive(Clone, Debug, PartialEq)]
pub struct Classification {
    /// `(label, probability)` for every label, sorted by probability, highest first.
    pub scores: Vec<(String, f32)>,
}

impl Classification {
    /// The best label and its probability.
    pub fn top(&self) -> (&str, f32) {
        // ok: a head always has at least one label (checked at load).
        self.scores.first().map(|(l, s)| (l.as_str(), *s)).unwrap_or(("", 0.0))
    }
}

impl Model {
    /// Loads and verifies a bundle, building the plan for this CPU with default options.
    pub fn load(path: impl AsRef<Path>) -> Result<Model> {
        Model::load_with(path, EncoderOptions::default())
    }

    pub fn load_with(path: impl AsRef<Path>, options: EncoderOptions) -> Result<Model> {
        Model::from_bundle(Bundle::read(path.as_ref())?, options)
    }

    pub fn from_bundle(bundle: Bundle, options: EncoderOptions) -> Result<Model> {
        let Bundle { metadata, vocab, graph, head } = bundle;
        let tokenizer = Tokenizer::new(metadata.tokenizer.clone(), &vocab)?;
        if tokenizer.vocab_size() != metadata.encoder.vocab_size {
            return Err(Error::bundle(format!(
                "vocabulary has {} tokens but the encoder expects {}",
                tokenizer.vocab_size(),
                metadata.encoder.vocab_size
            )));
        }
        let hidden = metadata.encoder.hidden;
        let head = match &metadata.head {
            Some(info) => Some(Head::from_parts(info.clone(), hidden, &head)?),
            None => None,
        };
        let encoder = Encoder::load(&graph, &metadata.encoder, options)?;
        Ok(Model { metadata, tokenizer, encoder, head })
    }

    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    #[doc(hidden)]
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// The precision the encoder runs at, and why it was chosen.
    pub fn precision(&self) -> &crate::encoder::precision::Decision {
        self.encoder.precision()
    }

    /// What the graph rewrites found at load: the fused ops and int8 linears running on
    /// bertlite's own kernels.
    pub fn rewrites(&self) -> &crate::rewrite::Rewrites {
        self.encoder.rewrites()
    }

    #[doc(hidden)]
    pub fn encoder(&self) -> &Encoder {
        &self.encoder
    }

    #[doc(hidden)]
    pub fn head(&self) -> Option<&Head> {
        self.head.as_ref()
    }

    /// Tokenizes one text; an empty (or whitespace/control-only) text is an error.
    pub fn encode(&self, text: &str) -> Result<Encoding> {
        check_nonempty(self.tokenizer.encode(text))
    }

    /// Tokenizes a sentence pair (`[CLS] a [SEP] b [SEP]`).
    pub fn encode_pair(&self, a: &str, b: &str) -> Result<Encoding> {
        check_nonempty(self.tokenizer.encode_pair(a, b))
    }

    /// Pooled embeddings of already tokenized texts, run as one padded batch.
    pub fn embed_encodings(&self, encodings: &[&Encoding]) -> Result<Vec<Vec<f32>>> {
        if encodings.is_empty() {
            return Ok(vec![]);
        }
        let batch = Batch::new(encodings, self.tokenizer.pad_id());
        let states = self.encoder.run(&batch)?;
        let hidden = self.encoder.hidden();
        Ok(encodings
            .iter()
            .zip(states.chunks_exact(batch.seq * hidden))
            .map(|(e, rows)| pool(&self.metadata.pooling, rows, hidden, e.len()))
            .collect())
    }

    /// The pooled (and, if the model says so, normalized) embedding of a text.
    pub fn embed(&self, text: &str) -> Result<Vec<f32>> {
        let e = self.encode(text)?;
        Ok(self.embed_encodings(&[&e])?.remove(0))
    }

    /// Embeddings of many texts, padded per batch.
    pub fn embed_batch(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        let encodings = texts.iter().map(|t| self.encode(t)).collect::<Result<Vec<_>>>()?;
        self.embed_encodings(&encodings.iter().collect::<Vec<_>>())
    }

    /// Classifies a text with the bundle's head.
    ///
    /// # Errors
    /// `Input` if the text is empty or the bundle has no classification head.
    pub fn classify(&self, text: &str) -> Result<Classification> {
        let pooled = self.embed(text)?;
        self.classify_embedding(&pooled)
    }

    /// Applies the head to a pooled embedding.
    pub fn classify_embedding(&self, pooled: &[f32]) -> Result<Classification> {
        let head = self.head.as_ref().ok_or_else(|| {
            Error::input("this bundle has no classification head (compile it with --train FILE)")
        })?;
        let probs = head.probabilities(pooled);
        let mut scores: Vec<(String, f32)> = head.info.labels.iter().cloned().zip(probs).collect();
        scores.sort_by(|a, b| b.1.total_cmp(&a.1));
        Ok(Classification { scores })
    }
}

fn check_nonempty(e: Encoding) -> Result<Encoding> {
    // [CLS] + [SEP] only: nothing was left after normalization.
    if e.len() <= 2 {
        return Err(Error::input(
            "text is empty (nothing left after removing whitespace and control characters)",
        ));
    }
    Ok(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_is_send_sync() {
        fn check<T: Send + Sync>() {}
        check::<Model>();
    }
}
