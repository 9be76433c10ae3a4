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

/// One text's tokens and the encoder's vector for each ([`Model::tokens`]).
#[derive(Clone, Debug)]
pub struct Tokens {
    /// Ids, type ids and character offsets into the text.
    pub encoding: Encoding,
    /// The token strings (`[CLS]`, `hello`, `##s`, …).
    pub tokens: Vec<String>,
    /// `[tokens][hidden]`: the last hidden state, TF Hub's `sequence_output`.
    pub vectors: Vec<Vec<f32>>,
}

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
        let hidden = self.encoder.hidden();
        let pooled =
            |(e, rows): (&&Encoding, &[f32])| pool(&self.metadata.pooling, rows, hidden, e.len());
        self.each_hidden_state(encodings, pooled)
    }

    /// Runs `encodings` as one padded batch and gives `f` each one's rows of the last hidden
    /// state, `[seq][hidden]` (padding rows included).
    fn each_hidden_state<T>(
        &self,
        encodings: &[&Encoding],
        f: impl FnMut((&&Encoding, &[f32])) -> T,
    ) -> Result<Vec<T>> {
        if encodings.is_empty() {
            return Ok(vec![]);
        }
        let batch = Batch::new(encodings, self.tokenizer.pad_id());
        let states = self.encoder.run(&batch)?;
        let rows = states.chunks_exact(batch.seq * self.encoder.hidden());
        Ok(encodings.iter().zip(rows).map(f).collect())
    }

    /// The encoder's last hidden state for each of `encodings`, one vector per token
    /// (`[CLS]` and `[SEP]` included): TF Hub's `sequence_output`, Hugging Face's
    /// `last_hidden_state`. Run as one padded batch; padding rows are not returned.
    pub fn token_vectors(&self, encodings: &[&Encoding]) -> Result<Vec<Vec<Vec<f32>>>> {
        let hidden = self.encoder.hidden();
        self.each_hidden_state(encodings, |(e, rows)| {
            rows.chunks_exact(hidden).take(e.len()).map(<[f32]>::to_vec).collect()
        })
    }

    /// A text's tokens with their vectors and where each came from in the text.
    pub fn tokens(&self, text: &str) -> Result<Tokens> {
        let encoding = self.encode(text)?;
        let vectors = self.token_vectors(&[&encoding])?.remove(0);
        Ok(self.describe(encoding, vectors))
    }

    /// [`Model::tokens`] for a sentence pair (`[CLS] a [SEP] b [SEP]`).
    pub fn tokens_pair(&self, a: &str, b: &str) -> Result<Tokens> {
        let encoding = self.encode_pair(a, b)?;
        let vectors = self.token_vectors(&[&encoding])?.remove(0);
        Ok(self.describe(encoding, vectors))
    }

    fn describe(&self, encoding: Encoding, vectors: Vec<Vec<f32>>) -> Tokens {
        let tokens =
            encoding.ids.iter().map(|&id| self.tokenizer.token(id).unwrap_or("").to_owned());
        Tokens { tokens: tokens.collect(), vectors, encoding }
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
