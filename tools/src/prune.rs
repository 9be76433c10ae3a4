//! Structured pruning: remove whole FFN neurons, attention heads and layers, so the model that
//! remains is smaller and dense (what pays on a CPU; unstructured sparsity does not).
//!
//! Importance comes from running the fp32 model on calibration text, no gradients needed:
//! - FFN neuron j: mean |GELU activation_j| × ‖W_out[:, j]‖ — how much it writes to the residual;
//! - head h: mean ‖context_h‖ × ‖W_o[:, head h]‖_F — the same for a head's output;
//! - layer: mean (1 − cos(input, output)) of its token vectors — how much it changes them.
//!
//! Taylor / head-mask gradient scores are better in the literature but need the training
//! machinery this tool does not carry; activation × weight-norm scores are the gradient-free
//! standard (Wanda-style, applied per structure).

use anyhow::{Context, Result, ensure};
use bertlite::Encoding;
use bertlite::internal::{Tokenizer, TokenizerConfig};
use tract_core::internal::*;

use crate::graph::{self, Precision, TAPS_PER_LAYER};
use crate::model::{Bert, Linear, Matrix};

#[derive(Clone, Debug, Default)]
pub struct PruneOptions {
    /// Fraction of FFN neurons removed in each layer.
    pub ffn: f32,
    /// Fraction of attention heads removed in each layer.
    pub heads: f32,
    /// Whole layers removed (the least important ones).
    pub drop_layers: usize,
}

impl PruneOptions {
    pub fn is_active(&self) -> bool {
        self.ffn > 0.0 || self.heads > 0.0 || self.drop_layers > 0
    }
}

/// Importance scores measured on calibration text.
pub struct Importance {
    pub ffn: Vec<Vec<f32>>,
    pub heads: Vec<Vec<f32>>,
    pub layers: Vec<f32>,
    pub texts: usize,
}

/// Runs the fp32 model with taps on `texts` (truncated to `max_len` tokens) and scores every
/// prunable structure.
pub fn measure(
    bert: &Bert,
    tok: &TokenizerConfig,
    vocab: &str,
    texts: &[&str],
    max_len: usize,
) -> Result<Importance> {
    ensure!(!texts.is_empty(), "pruning needs calibration texts");
    let tokenizer = Tokenizer::new(
        TokenizerConfig { max_len: max_len.min(tok.max_len), ..tok.clone() },
        vocab,
    )?;
    let plan = graph::build_with_outputs(bert, Precision::F32, graph::Outputs::Taps)?
        .into_optimized()?
        .into_runnable()?;
    let n_layers = bert.layers.len();
    let dh = bert.head_dim;
    let mut ffn: Vec<Vec<f64>> =
        bert.layers.iter().map(|l| vec![0.0; l.ffn_in.weight.rows]).collect();
    let mut heads: Vec<Vec<f64>> = bert.layers.iter().map(|l| vec![0.0; l.heads]).collect();
    let mut change = vec![0f64; n_layers];
    let mut tokens = 0usize;
    let pb = crate::embed::progress(texts.len(), "calibrating");
    for text in texts {
        let e: Encoding = tokenizer.encode(text);
        let s = e.len();
        let input = |v: &[u32]| -> Result<TValue> {
            Ok(Tensor::from_shape(&[1, s], &v.iter().map(|&x| i64::from(x)).collect::<Vec<_>>())?
                .into())
        };
        let outputs = plan.run(tvec!(input(&e.ids)?, input(&vec![1; s])?, input(&e.type_ids)?))?;
        let view = |i: usize| {
            outputs[i].to_plain_array_view::<f32>().map(|v| v.iter().copied().collect::<Vec<f32>>())
        };
        let final_hidden = view(0)?;
        for l in 0..n_layers {
            let layer_in = view(1 + l * TAPS_PER_LAYER)?;
            let ctx = view(2 + l * TAPS_PER_LAYER)?;
            let act = view(3 + l * TAPS_PER_LAYER)?;
            let layer_out = if l + 1 < n_layers {
                view(1 + (l + 1) * TAPS_PER_LAYER)?
            } else {
                final_hidden.clone()
            };
            let width = ffn[l].len();
            for row in act.chunks_exact(width) {
                for (acc, a) in ffn[l].iter_mut().zip(row) {
                    *acc += f64::from(a.abs());
                }
            }
            let nh = heads[l].len();
            for tok in ctx.chunks_exact(nh * dh) {
                for (h, head) in tok.chunks_exact(dh).enumerate() {
                    heads[l][h] += f64::from(head.iter().map(|x| x * x).sum::<f32>().sqrt());
                }
            }
            for (a, b) in
                layer_in.chunks_exact(bert.hidden).zip(layer_out.chunks_exact(bert.hidden))
            {
                change[l] += 1.0 - f64::from(bertlite::cosine(a, b));
            }
        }
        tokens += s;
        pb.inc(1);
    }
    pb.finish_and_clear();
    let n = tokens as f64;
    let ffn = ffn
        .iter()
        .zip(&bert.layers)
        .map(|(acc, layer)| {
            let norms = column_norms(&layer.ffn_out.weight);
            acc.iter().zip(norms).map(|(a, w)| (a / n) as f32 * w).collect()
        })
        .collect();
    let heads = heads
        .iter()
        .zip(&bert.layers)
        .map(|(acc, layer)| {
            let norms = column_norms(&layer.attn_out.weight);
            acc.iter()
                .enumerate()
                .map(|(h, a)| {
                    let w = norms[h * dh..(h + 1) * dh].iter().map(|x| x * x).sum::<f32>().sqrt();
                    (a / n) as f32 * w
                })
                .collect()
        })
        .collect();
    let layers = change.iter().map(|c| (c / n) as f32).collect();
    Ok(Importance { ffn, heads, layers, texts: texts.len() })
}

fn column_norms(m: &Matrix) -> Vec<f32> {
    let mut sq = vec![0f32; m.cols];
    for row in m.data.chunks_exact(m.cols) {
        for (s, x) in sq.iter_mut().zip(row) {
            *s += x * x;
        }
    }
    sq.into_iter().map(f32::sqrt).collect()
}

/// Indices of the `keep` highest scores, in their original order.
fn top(scores: &[f32], keep: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    idx.truncate(keep);
    idx.sort_unstable();
    idx
}

fn select_rows(m: &Matrix, rows: &[usize]) -> Matrix {
    let data =
        rows.iter().flat_map(|&r| m.data[r * m.cols..(r + 1) * m.cols].iter().copied()).collect();
    Matrix { data, rows: rows.len(), cols: m.cols }
}

fn select_cols(m: &Matrix, cols: &[usize]) -> Matrix {
    let data =
        m.data.chunks_exact(m.cols).flat_map(|row| cols.iter().map(move |&c| row[c])).collect();
    Matrix { data, rows: m.rows, cols: cols.len() }
}

fn select_out(l: &Linear, rows: &[usize]) -> Linear {
    Linear { weight: select_rows(&l.weight, rows), bias: rows.iter().map(|&r| l.bias[r]).collect() }
}

fn select_in(l: &Linear, cols: &[usize]) -> Linear {
    Linear { weight: select_cols(&l.weight, cols), bias: l.bias.clone() }
}

/// How many of `n` to keep when removing `fraction`; FFN widths stay multiples of 8 (the
/// matmul kernels' tile) and at least one of anything is kept.
fn kept(n: usize, fraction: f32, multiple: usize) -> usize {
    let keep = ((n as f32) * (1.0 - fraction.clamp(0.0, 1.0))).round() as usize;
    let keep = keep.div_ceil(multiple) * multiple;
    keep.clamp(1, n)
}

/// Applies the pruning; returns a description for the bundle metadata.
pub fn prune(bert: &mut Bert, imp: &Importance, opts: &PruneOptions) -> Result<String> {
    ensure!((0.0..1.0).contains(&opts.ffn), "--prune-ffn must be in [0, 1)");
    ensure!((0.0..1.0).contains(&opts.heads), "--prune-heads must be in [0, 1)");
    ensure!(
        opts.drop_layers < bert.layers.len(),
        "--drop-layers must leave at least one of {} layers",
        bert.layers.len()
    );
    let dh = bert.head_dim;
    for (l, layer) in bert.layers.iter_mut().enumerate() {
        let width = layer.ffn_in.weight.rows;
        let keep = top(&imp.ffn[l], kept(width, opts.ffn, 8));
        layer.ffn_in = select_out(&layer.ffn_in, &keep);
        layer.ffn_out = select_in(&layer.ffn_out, &keep);
        let keep_heads = top(&imp.heads[l], kept(layer.heads, opts.heads, 1));
        let dims: Vec<usize> = keep_heads.iter().flat_map(|&h| h * dh..(h + 1) * dh).collect();
        layer.query = select_out(&layer.query, &dims);
        layer.key = select_out(&layer.key, &dims);
        layer.value = select_out(&layer.value, &dims);
        layer.attn_out = select_in(&layer.attn_out, &dims);
        layer.heads = keep_heads.len();
    }
    let keep_layers = top(&imp.layers, bert.layers.len() - opts.drop_layers);
    let dropped: Vec<usize> = (0..bert.layers.len()).filter(|l| !keep_layers.contains(l)).collect();
    let mut i = 0;
    bert.layers.retain(|_| {
        i += 1;
        keep_layers.contains(&(i - 1))
    });
    bert.check().context("pruned model is inconsistent")?;
    Ok(format!(
        "structured: ffn -{:.0}%, heads -{:.0}%, layers dropped {:?}; importance = activation x weight norm on {} calibration texts",
        opts.ffn * 100.0,
        opts.heads * 100.0,
        dropped,
        imp.texts
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selection_and_rounding() {
        let m = Matrix { data: (0..12).map(|x| x as f32).collect(), rows: 3, cols: 4 };
        assert_eq!(select_rows(&m, &[0, 2]).data, vec![0., 1., 2., 3., 8., 9., 10., 11.]);
        assert_eq!(select_cols(&m, &[1, 3]).data, vec![1., 3., 5., 7., 9., 11.]);
        assert_eq!(top(&[0.1, 0.9, 0.5, 0.7], 2), vec![1, 3]);
        assert_eq!(kept(1536, 0.5, 8), 768);
        assert_eq!(kept(12, 0.25, 1), 9);
        assert_eq!(kept(12, 0.99, 1), 1);
        assert_eq!(kept(100, 0.33, 8), 72);
    }
}
