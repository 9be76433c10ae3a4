//! The public API: a loaded bundle that turns texts into labels, scores and embeddings.
//! text → tokens → tensors → encoder → pooling → head → answer.

use std::path::Path;

use crate::bundle::{Bundle, Metadata, Task};
use crate::encoder::{Batch, Encoder, EncoderOptions};
use crate::error::{Error, Result};
use crate::tokenizer::{Encoding, Tokenizer};
use answers::{TaggedToken, best_span, char_slice, group_entities, top_k};
use head::{Head, softmax};
use pooling::pool;
use tasks::TaskHeads;

pub use answers::{Answer, Entity, MaskPrediction};

pub(crate) mod answers;
pub(crate) mod head;
pub(crate) mod pooling;
pub(crate) mod tasks;

/// Question answering: windows over a long context and the longest answer considered
/// (Hugging Face's pipeline defaults: 384-token windows sharing 128 tokens, answers of at most
/// 15 tokens).
#[derive(Clone, Copy, Debug)]
pub struct AnswerOptions {
    /// Tokens per window, at most the bundle's max length.
    pub max_len: usize,
    /// Tokens consecutive windows share.
    pub stride: usize,
    pub max_answer_len: usize,
}

impl Default for AnswerOptions {
    fn default() -> Self {
        AnswerOptions { max_len: 384, stride: 128, max_answer_len: 15 }
    }
}

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
    tasks: TaskHeads,
    format_version: u32,
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
        let Bundle { metadata, vocab, graph, head, tasks, version } = bundle;
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
        let tasks = TaskHeads::from_parts(&metadata, &tasks, || encoder.word_table())?;
        Ok(Model { metadata, tokenizer, encoder, head, tasks, format_version: version })
    }

    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    /// The bundle format version the file was written in.
    pub fn format_version(&self) -> u32 {
        self.format_version
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

    /// Every layer's output for one encoding, first to last, each `[tokens][hidden]`: TF Hub's
    /// `encoder_outputs` (the last equals [`Model::token_vectors`]). Needs a bundle compiled
    /// with `--encoder-outputs`; other bundles' graphs return the last layer only, so runs
    /// that do not ask for layers never pay for them.
    pub fn encoder_outputs(&self, encoding: &Encoding) -> Result<Vec<Vec<Vec<f32>>>> {
        let batch = Batch::new(&[encoding], self.tokenizer.pad_id());
        let h = self.encoder.hidden();
        Ok(self
            .encoder
            .run_layers(&batch)?
            .iter()
            .map(|l| l.chunks_exact(h).take(encoding.len()).map(<[f32]>::to_vec).collect())
            .collect())
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

/// The tasks: fill-mask, next sentence, pooled output, entities, answers, multiple choice.
impl Model {
    /// The heads this bundle carries, for messages and `info`: "classifier (5 labels)",
    /// "fill-mask", ...
    pub fn head_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .head
            .iter()
            .map(|h| format!("classifier ({} labels)", h.info.labels.len()))
            .collect();
        names.extend(self.metadata.tasks.iter().map(|t| t.task.name().to_owned()));
        names
    }

    /// Whether the bundle carries the head `task` needs.
    pub fn has_head(&self, task: Task) -> bool {
        self.metadata.tasks.iter().any(|t| t.task == task)
    }

    fn missing(&self, task: Task) -> Error {
        let has = self.head_names();
        let has = if has.is_empty() { "none".to_owned() } else { has.join(", ") };
        Error::input(format!(
            "this bundle has no {} head (its heads: {has}); compile it from a checkpoint that has one",
            task.name()
        ))
    }

    /// The last hidden state of one encoding, `[tokens][hidden]` row-major.
    fn hidden_states(&self, encoding: &Encoding) -> Result<Vec<f32>> {
        let h = self.encoder.hidden();
        Ok(self.each_hidden_state(&[encoding], |(e, rows)| rows[..e.len() * h].to_vec())?.remove(0))
    }

    /// The `k` most likely tokens for each `[MASK]` in `text`, in text order.
    ///
    /// # Errors
    /// `Input` if the text has no mask token or the bundle no fill-mask head.
    pub fn fill_mask(&self, text: &str, k: usize) -> Result<Vec<Vec<MaskPrediction>>> {
        let head = self.tasks.fill_mask.as_ref().ok_or_else(|| self.missing(Task::FillMask))?;
        let mask = self.tokenizer.mask_id().ok_or_else(|| {
            Error::bundle("the vocabulary has no mask token, so fill-mask cannot run")
        })?;
        let encoding = self.encode(text)?;
        let positions: Vec<usize> =
            (0..encoding.len()).filter(|&i| encoding.ids[i] == mask).collect();
        if positions.is_empty() {
            return Err(Error::input(format!(
                "the text has no {} token to fill (within the first {} tokens)",
                self.tokenizer.config().mask_token,
                self.tokenizer.config().max_len
            )));
        }
        let states = self.hidden_states(&encoding)?;
        let h = self.encoder.hidden();
        let mut out = Vec::with_capacity(positions.len());
        for &p in &positions {
            let probs = head.probabilities(&states[p * h..(p + 1) * h])?;
            let mut ids: Vec<u32> = encoding.ids.to_vec();
            let predictions = top_k(&probs, k)
                .into_iter()
                .map(|id| {
                    let token = id as u32;
                    ids[p] = token;
                    MaskPrediction {
                        token,
                        token_str: self.tokenizer.token(token).unwrap_or("").to_owned(),
                        score: probs[id],
                        sequence: self.tokenizer.decode(&ids),
                    }
                })
                .collect();
            out.push(predictions);
        }
        Ok(out)
    }

    /// Next-sentence prediction: probabilities that `b` follows `a` (`IsNext`) or not.
    pub fn next_sentence(&self, a: &str, b: &str) -> Result<Classification> {
        let nsp =
            self.tasks.next_sentence.as_ref().ok_or_else(|| self.missing(Task::NextSentence))?;
        let encoding = self.encode_pair(a, b)?;
        let pooled = self.pooled(&encoding)?;
        let probs = softmax(&nsp.forward(&pooled));
        let labels = self
            .metadata
            .tasks
            .iter()
            .find(|t| t.task == Task::NextSentence)
            .map(|t| t.labels.clone())
            .unwrap_or_default();
        let mut scores: Vec<(String, f32)> = labels.into_iter().zip(probs).collect();
        scores.sort_by(|a, b| b.1.total_cmp(&a.1));
        Ok(Classification { scores })
    }

    fn pooled(&self, encoding: &Encoding) -> Result<Vec<f32>> {
        let states = self.hidden_states(encoding)?;
        self.tasks.pool(&states[..self.encoder.hidden()]).ok_or_else(|| self.missing(Task::Pooler))
    }

    /// TF Hub's `pooled_output`: tanh(dense(\[CLS\])) with the checkpoint's pooler.
    pub fn pooled_output(&self, text: &str) -> Result<Vec<f32>> {
        if self.tasks.pooler.is_none() {
            return Err(self.missing(Task::Pooler));
        }
        self.pooled(&self.encode(text)?)
    }

    /// Named entities: each token's best tag, consecutive tags of one entity grouped (a `B-`
    /// tag starts a new one), `O` dropped. Texts longer than the bundle's max length are
    /// truncated.
    pub fn entities(&self, text: &str) -> Result<Vec<Entity>> {
        let (dense, labels) = self
            .tasks
            .token_classification
            .as_ref()
            .ok_or_else(|| self.missing(Task::TokenClassification))?;
        let encoding = self.encode(text)?;
        let states = self.hidden_states(&encoding)?;
        let h = self.encoder.hidden();
        let n = encoding.len();
        let mut tagged = Vec::with_capacity(n);
        // [CLS] and [SEP] are the template's, not the text's.
        for i in 1..n - 1 {
            let probs = softmax(&dense.forward(&states[i * h..(i + 1) * h]));
            let best = top_k(&probs, 1)[0];
            tagged.push(TaggedToken {
                tag: labels[best].as_str(),
                score: probs[best],
                token: self.tokenizer.token(encoding.ids[i]).unwrap_or(""),
                span: encoding.offsets.get(i).copied().unwrap_or((0, 0)),
            });
        }
        let join = |words: &[&str]| {
            let prefix = format!(" {}", self.tokenizer.config().continuing_subword_prefix);
            words.join(" ").replace(&prefix, "")
        };
        Ok(group_entities(&tagged, join))
    }

    /// The answer to `question` in `context` with Hugging Face's pipeline defaults.
    pub fn answer(&self, question: &str, context: &str) -> Result<Answer> {
        self.answer_with(question, context, AnswerOptions::default())
    }

    /// The best answer span over every window of the context.
    ///
    /// # Errors
    /// `Input` if the question or context is empty, or the question leaves no room for the
    /// context in a window.
    pub fn answer_with(
        &self,
        question: &str,
        context: &str,
        options: AnswerOptions,
    ) -> Result<Answer> {
        let qa = self
            .tasks
            .question_answering
            .as_ref()
            .ok_or_else(|| self.missing(Task::QuestionAnswering))?;
        if self.encode(question).is_err() {
            return Err(Error::input("the question is empty"));
        }
        if self.encode(context).is_err() {
            return Err(Error::input("the context is empty"));
        }
        let windows =
            self.tokenizer.encode_windows(question, context, options.max_len, options.stride)?;
        let h = self.encoder.hidden();
        let mut best: Option<(f32, usize, usize, usize)> = None;
        for (w, encoding) in windows.iter().enumerate() {
            let states = self.hidden_states(encoding)?;
            let (mut start, mut end) = (Vec::new(), Vec::new());
            for row in states.chunks_exact(h) {
                let logits = qa.forward(row);
                start.push(logits[0]);
                end.push(logits[1]);
            }
            if let Some((score, s, e)) = best_span(encoding, &start, &end, options.max_answer_len)
                && best.is_none_or(|b| score > b.0)
            {
                best = Some((score, w, s, e));
            }
        }
        let (score, w, s, e) =
            best.ok_or_else(|| Error::input("the context has no tokens to answer from"))?;
        let (start, end) = (windows[w].offsets[s].0 as usize, windows[w].offsets[e].1 as usize);
        Ok(Answer { answer: char_slice(context, start, end), score, start, end })
    }

    /// Multiple choice: the probability of each choice completing `context`, in choice order.
    pub fn choose(&self, context: &str, choices: &[&str]) -> Result<Vec<f32>> {
        let mc = self
            .tasks
            .multiple_choice
            .as_ref()
            .ok_or_else(|| self.missing(Task::MultipleChoice))?;
        if choices.len() < 2 {
            return Err(Error::input(format!(
                "multiple choice needs at least two choices, got {}",
                choices.len()
            )));
        }
        let encodings =
            choices.iter().map(|c| self.encode_pair(context, c)).collect::<Result<Vec<_>>>()?;
        let h = self.encoder.hidden();
        let cls = self.each_hidden_state(&encodings.iter().collect::<Vec<_>>(), |(_, rows)| {
            rows[..h].to_vec()
        })?;
        let mut logits = Vec::with_capacity(cls.len());
        for c in &cls {
            let pooled = self.tasks.pool(c).ok_or_else(|| self.missing(Task::Pooler))?;
            logits.push(mc.forward(&pooled)[0]);
        }
        Ok(softmax(&logits))
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
