//! The task heads beside the classifier (bundle `TASK` section): pooler, fill-mask,
//! next-sentence, token classification, question answering, multiple choice. Each is a few
//! small dense layers on one or a few token vectors, in plain Rust; the one large product, the
//! fill-mask decoder, reads the encoder's own word table and runs only at `[MASK]` positions.

use crate::bundle::{Metadata, Task, TaskInfo};
use crate::encoder::WordTable;
use crate::error::{Error, Result};
use crate::model::head::{Dense, softmax};

/// The masked-LM prediction head: dense → GELU → LayerNorm → tied decoder + bias.
pub struct MaskedLm {
    transform: Dense,
    gamma: Vec<f32>,
    beta: Vec<f32>,
    eps: f32,
    bias: Vec<f32>,
    table: WordTable,
}

impl MaskedLm {
    /// Probabilities over the vocabulary for one token's last hidden state.
    pub fn probabilities(&self, h: &[f32]) -> Result<Vec<f32>> {
        let mut x: Vec<f32> = self.transform.forward(h).into_iter().map(gelu).collect();
        layer_norm(&mut x, &self.gamma, &self.beta, self.eps);
        let mut logits = vec![0f32; self.bias.len()];
        self.table.scores(&x, &mut logits)?;
        logits.iter_mut().zip(&self.bias).for_each(|(l, b)| *l += b);
        Ok(softmax(&logits))
    }
}

/// The task heads a bundle carries.
#[derive(Default)]
pub struct TaskHeads {
    pub pooler: Option<Dense>,
    pub fill_mask: Option<MaskedLm>,
    pub next_sentence: Option<Dense>,
    pub token_classification: Option<(Dense, Vec<String>)>,
    pub question_answering: Option<Dense>,
    pub multiple_choice: Option<Dense>,
}

impl TaskHeads {
    /// Splits the `TASK` floats as the metadata lays them out. `table` gives the encoder's word
    /// table, asked for only when there is a fill-mask head.
    pub fn from_parts(
        metadata: &Metadata,
        weights: &[f32],
        table: impl FnOnce() -> Result<WordTable>,
    ) -> Result<TaskHeads> {
        let (h, v) = (metadata.encoder.hidden, metadata.encoder.vocab_size);
        let mut heads = TaskHeads::default();
        let mut rest = weights;
        let mut table = Some(table);
        for info in &metadata.tasks {
            let n = info.task.floats(h, v, info.labels.len()).filter(|&n| n <= rest.len());
            let n = n.ok_or_else(|| {
                Error::bundle(format!(
                    "TASK section holds {} floats, too few for the {} head",
                    rest.len(),
                    info.task.name()
                ))
            })?;
            let (w, tail) = rest.split_at(n);
            rest = tail;
            if let Some(i) = w.iter().position(|x| !x.is_finite()) {
                return Err(Error::bundle(format!(
                    "the {} head holds a non-finite value (NaN or infinity) at float {i}",
                    info.task.name()
                )));
            }
            heads.add(info, w, h, &mut table)?;
        }
        if !rest.is_empty() {
            return Err(Error::bundle(format!(
                "TASK section holds {} floats more than its heads need",
                rest.len()
            )));
        }
        Ok(heads)
    }

    fn add(
        &mut self,
        info: &TaskInfo,
        w: &[f32],
        h: usize,
        table: &mut Option<impl FnOnce() -> Result<WordTable>>,
    ) -> Result<()> {
        let dense = |w: &[f32], out: usize| Dense {
            weight: w[..out * h].to_vec(),
            bias: w[out * h..out * (h + 1)].to_vec(),
            inputs: h,
        };
        match info.task {
            Task::Pooler => self.pooler = Some(dense(w, h)),
            Task::FillMask => {
                let (t, rest) = w.split_at(h * (h + 1));
                let table = table.take().ok_or_else(|| Error::bundle("two fill-mask heads"))?()?;
                self.fill_mask = Some(MaskedLm {
                    transform: dense(t, h),
                    gamma: rest[..h].to_vec(),
                    beta: rest[h..2 * h].to_vec(),
                    eps: info.layer_norm_eps,
                    bias: rest[2 * h..].to_vec(),
                    table,
                });
            }
            Task::NextSentence => self.next_sentence = Some(dense(w, 2)),
            Task::TokenClassification => {
                self.token_classification = Some((dense(w, info.labels.len()), info.labels.clone()))
            }
            Task::QuestionAnswering => self.question_answering = Some(dense(w, 2)),
            Task::MultipleChoice => self.multiple_choice = Some(dense(w, 1)),
        }
        Ok(())
    }

    /// `tanh(W·h[CLS] + b)`, TF Hub's `pooled_output`.
    pub fn pool(&self, cls: &[f32]) -> Option<Vec<f32>> {
        self.pooler.as_ref().map(|p| p.forward(cls).into_iter().map(f32::tanh).collect())
    }
}

/// `x ← γ (x − mean) / √(var + eps) + β`.
fn layer_norm(x: &mut [f32], gamma: &[f32], beta: &[f32], eps: f32) {
    let n = x.len() as f32;
    let mean = x.iter().sum::<f32>() / n;
    let var = x.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / n;
    let r = 1.0 / (var + eps).sqrt();
    for ((v, g), b) in x.iter_mut().zip(gamma).zip(beta) {
        *v = (*v - mean) * r * g + b;
    }
}

/// Exact GELU, `x Φ(x)`, as BERT's `hidden_act = "gelu"`.
fn gelu(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x / std::f32::consts::SQRT_2))
}

/// erf from the complementary error function's Chebyshev fit (Numerical Recipes `erfcc`),
/// fractional error below 1.2e-7 everywhere: below f32's own rounding at the scale that matters.
fn erf(x: f32) -> f32 {
    let z = f64::from(x.abs());
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let erfc = t * poly.exp();
    let r = (1.0 - erfc) as f32;
    if x < 0.0 { -r } else { r }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erf_matches_known_values() {
        // erf values from Abramowitz & Stegun table 7.1.
        for (x, e) in [(0.0, 0.0), (0.5, 0.520_499_9), (1.0, 0.842_700_8), (2.0, 0.995_322_3)] {
            assert!((erf(x) - e).abs() < 2e-7, "erf({x}) = {} not {e}", erf(x));
            assert!((erf(-x) + e).abs() < 2e-7);
        }
        assert!((gelu(1.0) - 0.841_344_7).abs() < 1e-6);
    }

    /// `TASK` floats are split exactly as the metadata says, and checked.
    #[test]
    fn task_section_is_checked() {
        use std::sync::Arc;
        use tract_nnef::internal::Tensor;
        let mut meta = crate::bundle::tests::sample().metadata; // hidden 4, vocabulary 3
        meta.tasks = vec![TaskInfo {
            task: Task::FillMask,
            labels: vec![],
            layer_norm_eps: 1e-12,
            origin: "test".into(),
        }];
        let table = || {
            let t = Tensor::from_shape(&[3, 4], &[0.5f32; 12]).expect("tensor");
            Ok(WordTable::Float(Arc::new(t)))
        };
        let err = |w: &[f32]| TaskHeads::from_parts(&meta, w, table).err().map(|e| e.to_string());
        assert_eq!(
            err(&[0.0; 10]).as_deref(),
            Some("TASK section holds 10 floats, too few for the fill-mask head")
        );
        let mut w = [0.0f32; 31];
        w[3] = f32::NAN;
        assert_eq!(
            err(&w).as_deref(),
            Some("the fill-mask head holds a non-finite value (NaN or infinity) at float 3")
        );
        assert!(err(&[0.0; 32]).is_some_and(|e| e.contains("1 floats more")));
        w[3] = 0.0;
        let heads = TaskHeads::from_parts(&meta, &w, table).expect("31 floats fit");
        let p = heads.fill_mask.expect("fill-mask head").probabilities(&[1.0; 4]).expect("runs");
        // All-zero transform and LayerNorm: every word scores the same.
        assert!(p.iter().all(|&x| (x - 1.0 / 3.0).abs() < 1e-6), "{p:?}");
    }

    #[test]
    fn layer_norm_centres_and_scales() {
        let mut x = [1.0, 2.0, 3.0, 4.0];
        layer_norm(&mut x, &[1.0; 4], &[0.5; 4], 0.0);
        assert!((x.iter().sum::<f32>() - 2.0).abs() < 1e-5);
        assert!((x[3] - 0.5 - 1.341_640_8).abs() < 1e-5);
    }
}
