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
//!
//! Repair (on by default): what a removed neuron or head wrote is not simply lost. Its
//! activation correlates with the kept ones, so each pruned projection (FFN output, attention
//! output) is refitted by least squares on the calibration activations: the kept columns and
//! the bias are chosen to reproduce, as closely as the kept inputs allow, what the full
//! projection wrote (the layer-wise reconstruction of Kwon et al. 2022, "A Fast Post-Training
//! Pruning Framework for Transformers"; with the bias free, the removed units' mean
//! contribution is compensated too). The statistics are the full model's (second moments of
//! the GELU activations and of the attention context), gathered in the same calibration pass.
//!
//! With `--prune-select repair` the structures are chosen for the repair instead of by their
//! norms: greedy removal, each step taking the neuron or head whose loss the refit of the rest
//! restores best ([`removal_ranks`]). It minimizes the refitted projection's error on the
//! calibration tokens by construction. On BBC it did not pick better structures than the norms
//! for the pooled embedding or the accuracy (results/compression-select.md), so the norms stay
//! the default.

use anyhow::{Context, Result, ensure};
use bertlite::Encoding;
use bertlite::internal::{Tokenizer, TokenizerConfig};
use tract_core::internal::*;

use crate::graph::{self, Precision, TAPS_PER_LAYER};
use crate::model::{Bert, Linear, Matrix};

#[derive(Clone, Debug)]
pub struct PruneOptions {
    /// Fraction of FFN neurons removed in each layer.
    pub ffn: f32,
    /// Fraction of attention heads removed in each layer.
    pub heads: f32,
    /// Whole layers removed (the least important ones).
    pub drop_layers: usize,
    /// Refit the pruned projections by least squares (see the module doc).
    pub repair: bool,
    /// Instead of the fractions above: this fraction of the encoder's FLOPs, split over the
    /// layers by measured sensitivity (`budget.rs`).
    pub target_flops: Option<f32>,
    /// And/or this fraction of its estimated batch-1 latency (`budget.rs`'s cost model).
    pub target_latency: Option<f32>,
    /// What the budget scores candidate cuts by (`budget.rs`).
    pub score: PruneScore,
    /// How each layer's neurons and heads are chosen once its cut is known.
    pub select: PruneSelect,
    /// After the cuts (and the repair), train what remains layer by layer toward the
    /// unpruned model's outputs (`distill.rs`).
    pub distill: Option<crate::distill::DistillOptions>,
}

impl Default for PruneOptions {
    fn default() -> Self {
        PruneOptions {
            ffn: 0.0,
            heads: 0.0,
            drop_layers: 0,
            repair: true,
            target_flops: None,
            target_latency: None,
            score: PruneScore::Cosine,
            select: PruneSelect::Norms,
            distill: None,
        }
    }
}

impl PruneOptions {
    pub fn is_active(&self) -> bool {
        self.ffn > 0.0
            || self.heads > 0.0
            || self.drop_layers > 0
            || self.target_flops.is_some()
            || self.target_latency.is_some()
    }
}

/// How `--target-flops` / `--target-latency` measure what a cut costs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum PruneScore {
    /// How far the pooled embedding moves (1 − cosine to the unpruned model's).
    Cosine,
    /// How far the logits of a head fitted to the labeled calibration texts move.
    Task,
}

/// How a layer's FFN neurons and heads are chosen for a cut of a given size.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum PruneSelect {
    /// The largest activation × weight norms (see the module doc).
    Norms,
    /// The ones the least-squares repair can least restore without: greedy removal, each
    /// step taking what adds least to the refitted projection's error ([`removal_ranks`]).
    /// Without repair, the norms.
    Repair,
}

/// What one layer loses: fractions of its FFN neurons and of its heads, or all of it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LayerCut {
    pub ffn: f32,
    pub heads: f32,
    pub drop: bool,
}

impl LayerCut {
    pub const NONE: LayerCut = LayerCut { ffn: 0.0, heads: 0.0, drop: false };
}

/// Calibration texts as token ids, truncated to `max_len` (at most the tokenizer's own).
pub fn encode_calibration(
    tok: &TokenizerConfig,
    vocab: &str,
    texts: &[&str],
    max_len: usize,
) -> Result<Vec<Encoding>> {
    ensure!(!texts.is_empty(), "pruning needs calibration texts");
    let tokenizer = Tokenizer::new(
        TokenizerConfig { max_len: max_len.min(tok.max_len), ..tok.clone() },
        vocab,
    )?;
    Ok(texts.iter().map(|t| tokenizer.encode(t)).collect())
}

/// Importance scores measured on calibration text.
pub struct Importance {
    pub ffn: Vec<Vec<f32>>,
    pub heads: Vec<Vec<f32>>,
    pub layers: Vec<f32>,
    pub texts: usize,
    /// Per layer, Σ over calibration tokens of x xᵀ for x = [GELU activations; 1] and for
    /// x = [attention context; 1]: what the least-squares repair needs.
    pub ffn_gram: Vec<Gram>,
    pub ctx_gram: Vec<Gram>,
    /// Whether `ffn` and `heads` are [`removal_ranks`] rather than norms.
    pub by_repair: bool,
}

/// A symmetric matrix of sums of products, `n × n`, full storage.
pub struct Gram {
    pub n: usize,
    pub sums: Vec<f64>,
}

impl Gram {
    fn new(n: usize) -> Gram {
        Gram { n, sums: vec![0.0; n * n] }
    }

    /// The ridge added to the diagonal of the gram of inputs `idx` before a solve: 1e-6 of
    /// their mean square, so the solve stays well-posed when inputs are nearly collinear.
    fn ridge(&self, idx: &[usize]) -> f64 {
        let mean = idx.iter().map(|&i| self.sums[i * self.n + i]).sum::<f64>() / idx.len() as f64;
        1e-6 * mean.max(1e-12)
    }

    /// Adds `x xᵀ` for every row `x` of `rows` (`[tokens][n - 1]`), with a constant 1 appended.
    fn add_rows(&mut self, rows: &[f32], tokens: usize) {
        let n = self.n;
        let w = n - 1;
        // Columns, so each entry is one contiguous dot product over the tokens.
        let mut cols = vec![0f32; n * tokens];
        for (t, row) in rows.chunks_exact(w).take(tokens).enumerate() {
            for (j, &x) in row.iter().enumerate() {
                cols[j * tokens + t] = x;
            }
            cols[w * tokens + t] = 1.0;
        }
        for i in 0..n {
            let a = &cols[i * tokens..(i + 1) * tokens];
            for j in i..n {
                let b = &cols[j * tokens..(j + 1) * tokens];
                let d = f64::from(dot(a, b));
                self.sums[i * n + j] += d;
                if i != j {
                    self.sums[j * n + i] += d;
                }
            }
        }
    }
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca.remainder().iter().zip(cb.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in ca.zip(cb) {
        for k in 0..8 {
            acc[k] += x[k] * y[k];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// Runs the fp32 model with taps on the calibration texts and scores every prunable structure.
pub fn measure(bert: &Bert, calibration: &[Encoding]) -> Result<Importance> {
    ensure!(!calibration.is_empty(), "pruning needs calibration texts");
    let plan = graph::build_with_outputs(bert, Precision::F32, graph::Outputs::Taps)?
        .into_optimized()?
        .into_runnable()?;
    let n_layers = bert.layers.len();
    let dh = bert.head_dim;
    let mut ffn: Vec<Vec<f64>> =
        bert.layers.iter().map(|l| vec![0.0; l.ffn_in.weight.rows]).collect();
    let mut heads: Vec<Vec<f64>> = bert.layers.iter().map(|l| vec![0.0; l.heads]).collect();
    let mut change = vec![0f64; n_layers];
    let mut ffn_gram: Vec<Gram> =
        bert.layers.iter().map(|l| Gram::new(l.ffn_in.weight.rows + 1)).collect();
    let mut ctx_gram: Vec<Gram> = bert.layers.iter().map(|l| Gram::new(l.heads * dh + 1)).collect();
    let mut tokens = 0usize;
    let pb = crate::embed::progress(calibration.len(), "calibrating");
    for e in calibration {
        let s = e.len();
        let outputs = crate::graph::run_text(&plan, e)?;
        let view = |i: usize| crate::graph::values(&outputs, i);
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
            ffn_gram[l].add_rows(&act, s);
            ctx_gram[l].add_rows(&ctx, s);
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
    Ok(Importance {
        ffn,
        heads,
        layers,
        texts: calibration.len(),
        ffn_gram,
        ctx_gram,
        by_repair: false,
    })
}

/// Replaces the norms of `imp` by [`removal_ranks`] of each layer's FFN neurons (through the
/// FFN output projection) and heads (through the attention output), the layers and the two
/// kinds on the threads.
pub fn rank_by_repair(bert: &Bert, imp: &mut Importance) -> Result<()> {
    use rayon::prelude::*;
    let dh = bert.head_dim;
    let jobs: Vec<(usize, bool)> =
        (0..bert.layers.len()).flat_map(|l| [(l, true), (l, false)]).collect();
    let ranks: Vec<Vec<f32>> = jobs
        .par_iter()
        .map(|&(l, ffn)| {
            let layer = &bert.layers[l];
            match ffn {
                true => removal_ranks(&layer.ffn_out, &imp.ffn_gram[l], 1),
                false => removal_ranks(&layer.attn_out, &imp.ctx_gram[l], dh),
            }
        })
        .collect::<Result<_>>()?;
    for (&(l, ffn), r) in jobs.iter().zip(ranks) {
        match ffn {
            true => imp.ffn[l] = r,
            false => imp.heads[l] = r,
        }
    }
    imp.by_repair = true;
    Ok(())
}

/// Greedy least-squares pruning of the inputs of `l` (`[out][in]`, bias) in groups of `width`
/// (1 for FFN neurons, the head width for heads): step after step, the group whose removal adds
/// least to Σ‖W' x_kept + b' − (W x + b)‖² over the calibration tokens, with `W'` and `b'`
/// refitted after every removal, as [`refit`] does (the structured Optimal Brain Surgeon of
/// Kwon et al. 2022's mask search, on `gram` = Σ [x; 1][x; 1]ᵀ). Returns each group's rank:
/// the step it was removed at, the group never removed last; [`top`] of the ranks keeps what
/// this order keeps, for every size of cut.
///
/// With `H⁻¹` the inverse of the kept inputs' gram and `Ŵ` the refitted weights, removing the
/// group `B` adds `tr(Ŵ_B (H⁻¹_BB)⁻¹ Ŵ_Bᵀ)` to the error, and the refit that follows is
/// `Ŵ −= Ŵ_B (H⁻¹_BB)⁻¹ H⁻¹_B·`, `H⁻¹ −= H⁻¹_·B (H⁻¹_BB)⁻¹ H⁻¹_B·` (which zeroes `B`'s rows
/// and columns: what is left is the inverse of the remaining inputs' gram).
pub fn removal_ranks(l: &Linear, gram: &Gram, width: usize) -> Result<Vec<f32>> {
    let n_in = l.weight.cols;
    ensure!(gram.n == n_in + 1, "calibration statistics do not fit the layer");
    ensure!(width > 0 && n_in.is_multiple_of(width), "{n_in} inputs in groups of {width}");
    let (n, groups) = (gram.n, n_in / width);
    let ridge = gram.ridge(&(0..n).collect::<Vec<_>>());
    let mut h = gram.sums.clone();
    for i in 0..n {
        h[i * n + i] += ridge;
    }
    let mut hinv = inverse(&h, n).context("the inputs' gram is not positive definite")?;
    // Ŵ = [W b], `[out][n]`.
    let mut w: Vec<f64> = l
        .weight
        .data
        .chunks_exact(n_in)
        .zip(&l.bias)
        .flat_map(|(row, &b)| row.iter().map(|&x| f64::from(x)).chain([f64::from(b)]))
        .collect();
    let mut rank = vec![groups as f32; groups];
    let mut alive = vec![true; groups];
    // Reused buffers: a block of H⁻¹ (factored), a row of Ŵ's block, M = (H⁻¹_BB)⁻¹ H⁻¹_B·.
    let mut block = vec![0f64; width * width];
    let mut best_block = vec![0f64; width * width];
    let (mut wb, mut x) = (vec![0f64; width], vec![0f64; width]);
    let mut m = vec![0f64; width * n];
    for step in 0..groups - 1 {
        // Single inputs: the added error is Σ_o Ŵ[o][i]² / H⁻¹[i][i], the column sums taken
        // row by row.
        let mut col_sq = vec![0f64; if width == 1 { n } else { 0 }];
        if width == 1 {
            for row in w.chunks_exact(n) {
                col_sq.iter_mut().zip(row).for_each(|(s, &v)| *s += v * v);
            }
        }
        let mut best: Option<(f64, usize)> = None;
        for g in (0..groups).filter(|&g| alive[g]) {
            let b0 = g * width;
            for i in 0..width {
                block[i * width..(i + 1) * width]
                    .copy_from_slice(&hinv[(b0 + i) * n + b0..(b0 + i) * n + b0 + width]);
            }
            if cholesky(&mut block, width).is_err() {
                continue;
            }
            let cost = match width {
                1 => col_sq[b0] / (block[0] * block[0]),
                _ => {
                    let mut cost = 0.0;
                    for row in w.chunks_exact(n) {
                        wb.copy_from_slice(&row[b0..b0 + width]);
                        x.copy_from_slice(&wb);
                        cholesky_solve(&block, width, &mut x);
                        cost += wb.iter().zip(&x).map(|(a, b)| a * b).sum::<f64>();
                    }
                    cost
                }
            };
            if best.is_none_or(|(c, _)| cost < c) {
                best = Some((cost, g));
                best_block.copy_from_slice(&block);
            }
        }
        let (_, g) = best.context("no group can be removed (the gram is degenerate)")?;
        let b0 = g * width;
        for j in 0..n {
            for (i, c) in x.iter_mut().enumerate() {
                *c = hinv[(b0 + i) * n + j];
            }
            cholesky_solve(&best_block, width, &mut x);
            for (i, &c) in x.iter().enumerate() {
                m[i * n + j] = c;
            }
        }
        // Ŵ −= Ŵ_B M and H⁻¹ −= H⁻¹_·B M: the same update of every row by its block.
        for row in w.chunks_exact_mut(n).chain(hinv.chunks_exact_mut(n)) {
            wb.copy_from_slice(&row[b0..b0 + width]);
            for (i, &a) in wb.iter().enumerate().filter(|(_, a)| **a != 0.0) {
                row.iter_mut().zip(&m[i * n..(i + 1) * n]).for_each(|(r, &mm)| *r -= a * mm);
            }
        }
        alive[g] = false;
        rank[g] = step as f32;
    }
    Ok(rank)
}

/// The inverse of a symmetric positive definite `n × n` matrix (row-major), through its
/// Cholesky factor: `A⁻¹ = L⁻ᵀ L⁻¹`.
fn inverse(a: &[f64], n: usize) -> Result<Vec<f64>> {
    let mut l = a.to_vec();
    cholesky(&mut l, n)?;
    // U = Lᵀ, so that both sums below run along rows.
    let mut u = vec![0f64; n * n];
    for i in 0..n {
        for j in 0..=i {
            u[j * n + i] = l[i * n + j];
        }
    }
    // X = L⁻¹, lower triangular, row by row from X L = I:
    // X[i][j] = −Σ_{k=j+1..=i} X[i][k] L[k][j] / L[j][j] for j < i, X[i][i] = 1 / L[i][i].
    let mut li = vec![0f64; n * n];
    for i in 0..n {
        li[i * n + i] = 1.0 / u[i * n + i];
        for j in (0..i).rev() {
            let s: f64 = li[i * n + j + 1..=i * n + i]
                .iter()
                .zip(&u[j * n + j + 1..=j * n + i])
                .map(|(a, b)| a * b)
                .sum();
            li[i * n + j] = -s / u[j * n + j];
        }
    }
    // A⁻¹[i][j] = Σ_k (L⁻¹)[k][i] (L⁻¹)[k][j], k ≥ max(i, j); by rows of L⁻¹.
    let mut inv = vec![0f64; n * n];
    for k in 0..n {
        let row = &li[k * n..k * n + k + 1];
        for (i, &a) in row.iter().enumerate() {
            if a == 0.0 {
                continue;
            }
            let dst = &mut inv[i * n..i * n + k + 1];
            dst.iter_mut().zip(row).for_each(|(d, &b)| *d += a * b);
        }
    }
    Ok(inv)
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
pub fn kept(n: usize, fraction: f32, multiple: usize) -> usize {
    let keep = ((n as f32) * (1.0 - fraction.clamp(0.0, 1.0))).round() as usize;
    let keep = keep.div_ceil(multiple) * multiple;
    keep.clamp(1, n)
}

/// The uniform cut of `opts`: the same fractions in every layer, and the `drop_layers` layers
/// that change their input least removed.
fn uniform_plan(bert: &Bert, imp: &Importance, opts: &PruneOptions) -> Result<Vec<LayerCut>> {
    ensure!((0.0..1.0).contains(&opts.ffn), "--prune-ffn must be in [0, 1)");
    ensure!((0.0..1.0).contains(&opts.heads), "--prune-heads must be in [0, 1)");
    ensure!(
        opts.drop_layers < bert.layers.len(),
        "--drop-layers must leave at least one of {} layers",
        bert.layers.len()
    );
    let keep_layers = top(&imp.layers, bert.layers.len() - opts.drop_layers);
    Ok((0..bert.layers.len())
        .map(|l| LayerCut { ffn: opts.ffn, heads: opts.heads, drop: !keep_layers.contains(&l) })
        .collect())
}

/// Applies `plan` (one cut per layer), each layer's structures chosen by importance and, with
/// `repair`, its pruned projections refitted.
pub fn apply(bert: &mut Bert, imp: &Importance, plan: &[LayerCut], repair: bool) -> Result<()> {
    ensure!(plan.len() == bert.layers.len(), "a pruning plan must cut every layer");
    ensure!(plan.iter().any(|c| !c.drop), "pruning must leave at least one layer");
    let dh = bert.head_dim;
    for (l, (layer, cut)) in bert.layers.iter_mut().zip(plan).enumerate() {
        if cut.drop {
            continue;
        }
        let width = layer.ffn_in.weight.rows;
        let keep = top(&imp.ffn[l], kept(width, cut.ffn, 8));
        layer.ffn_in = select_out(&layer.ffn_in, &keep);
        layer.ffn_out = match repair && keep.len() < width {
            true => refit(&layer.ffn_out, &keep, &imp.ffn_gram[l])?,
            false => select_in(&layer.ffn_out, &keep),
        };
        let keep_heads = top(&imp.heads[l], kept(layer.heads, cut.heads, 1));
        let dims: Vec<usize> = keep_heads.iter().flat_map(|&h| h * dh..(h + 1) * dh).collect();
        layer.query = select_out(&layer.query, &dims);
        layer.key = select_out(&layer.key, &dims);
        layer.value = select_out(&layer.value, &dims);
        layer.attn_out = match repair && keep_heads.len() < layer.heads {
            true => refit(&layer.attn_out, &dims, &imp.ctx_gram[l])?,
            false => select_in(&layer.attn_out, &dims),
        };
        layer.heads = keep_heads.len();
    }
    let mut cuts = plan.iter();
    bert.layers.retain(|_| cuts.next().is_some_and(|c| !c.drop));
    bert.check().context("pruned model is inconsistent")
}

/// Applies the uniform pruning of `opts`; returns a description for the bundle metadata.
pub fn prune(bert: &mut Bert, imp: &Importance, opts: &PruneOptions) -> Result<String> {
    let plan = uniform_plan(bert, imp, opts)?;
    apply(bert, imp, &plan, opts.repair)?;
    let dropped: Vec<usize> = (0..plan.len()).filter(|&l| plan[l].drop).collect();
    Ok(format!(
        "structured: ffn -{:.0}%, heads -{:.0}%, layers dropped {:?}; {}",
        opts.ffn * 100.0,
        opts.heads * 100.0,
        dropped,
        how(imp, opts.repair)
    ))
}

/// How the structures were chosen and repaired, for the metadata.
pub fn how(imp: &Importance, repair: bool) -> String {
    let chosen = match imp.by_repair {
        true => "neurons and heads chosen by greedy least-squares removal",
        false => "importance = activation x weight norm",
    };
    format!(
        "{chosen} on {} calibration texts{}",
        imp.texts,
        if repair { "; projections refitted by least squares" } else { "" }
    )
}

/// The projection `l` (`[out][in]`, bias) restricted to the inputs `keep`, refitted: weights
/// over `keep` and a bias minimizing Σ‖W' x_keep + b' − (W x + b)‖² over the calibration
/// tokens, from `gram` = Σ [x; 1][x; 1]ᵀ. A small ridge keeps the solve well-posed when kept
/// inputs are nearly collinear.
fn refit(l: &Linear, keep: &[usize], gram: &Gram) -> Result<Linear> {
    let n_in = l.weight.cols;
    ensure!(gram.n == n_in + 1, "calibration statistics do not fit the layer");
    let idx: Vec<usize> = keep.iter().copied().chain([n_in]).collect();
    let m = idx.len();
    let g = |i: usize, j: usize| gram.sums[i * gram.n + j];
    let ridge = gram.ridge(&idx);
    let mut a: Vec<f64> = Vec::with_capacity(m * m);
    for &i in &idx {
        a.extend(idx.iter().map(|&j| g(i, j) + if i == j { ridge } else { 0.0 }));
    }
    // Right-hand sides, one per output: Σ [x_keep; 1] (W x + b) = G[idx, :] · [w_row; b].
    let out = l.weight.rows;
    let mut rhs = vec![0f64; m * out];
    for (o, row) in l.weight.data.chunks_exact(n_in).enumerate() {
        for (r, &i) in idx.iter().enumerate() {
            let gi = &gram.sums[i * gram.n..(i + 1) * gram.n];
            let s: f64 = row.iter().zip(gi).map(|(&w, &x)| f64::from(w) * x).sum::<f64>()
                + f64::from(l.bias[o]) * gi[n_in];
            rhs[o * m + r] = s;
        }
    }
    cholesky(&mut a, m).context("the refit's normal equations are not positive definite")?;
    let mut weight = Vec::with_capacity(out * keep.len());
    let mut bias = Vec::with_capacity(out);
    for o in 0..out {
        let x = &mut rhs[o * m..(o + 1) * m];
        cholesky_solve(&a, m, x);
        weight.extend(x[..m - 1].iter().map(|&v| v as f32));
        bias.push(x[m - 1] as f32);
    }
    ensure!(weight.iter().chain(&bias).all(|v| v.is_finite()), "the refit is not finite");
    Ok(Linear { weight: Matrix { data: weight, rows: out, cols: keep.len() }, bias })
}

/// In-place Cholesky factorization `A = L Lᵀ` of a symmetric positive definite `n × n` matrix
/// (row-major; L is left in the lower triangle).
fn cholesky(a: &mut [f64], n: usize) -> Result<()> {
    for j in 0..n {
        let d = a[j * n + j] - (0..j).map(|k| a[j * n + k] * a[j * n + k]).sum::<f64>();
        ensure!(d > 0.0, "pivot {j} is {d}");
        let d = d.sqrt();
        a[j * n + j] = d;
        for i in j + 1..n {
            let s = a[i * n + j] - (0..j).map(|k| a[i * n + k] * a[j * n + k]).sum::<f64>();
            a[i * n + j] = s / d;
        }
    }
    Ok(())
}

/// Solves `L Lᵀ x = b` in place, with `l` from [`cholesky`].
fn cholesky_solve(l: &[f64], n: usize, b: &mut [f64]) {
    for i in 0..n {
        let s = b[i] - (0..i).map(|k| l[i * n + k] * b[k]).sum::<f64>();
        b[i] = s / l[i * n + i];
    }
    for i in (0..n).rev() {
        let s = b[i] - (i + 1..n).map(|k| l[k * n + i] * b[k]).sum::<f64>();
        b[i] = s / l[i * n + i];
    }
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

    /// Three inputs, the third = 2 × the first + 1 on every sample: dropping it loses nothing
    /// once the refit moves its weight onto the first input and the bias; plain selection
    /// loses its whole contribution.
    #[test]
    fn refit_recovers_what_a_removed_input_wrote() {
        let samples: Vec<[f32; 3]> = (0..50)
            .map(|i| {
                let (a, b) = ((i as f32 * 0.37).sin(), (i as f32 * 0.91).cos());
                [a, b, 2.0 * a + 1.0]
            })
            .collect();
        let mut gram = Gram::new(4);
        let rows: Vec<f32> = samples.iter().flatten().copied().collect();
        gram.add_rows(&rows, samples.len());
        let l = Linear {
            weight: Matrix { data: vec![1.0, -1.0, 0.5, 0.2, 0.3, -2.0], rows: 2, cols: 3 },
            bias: vec![0.1, -0.2],
        };
        let full = |x: &[f32; 3], o: usize| {
            (0..3).map(|k| l.weight.data[o * 3 + k] * x[k]).sum::<f32>() + l.bias[o]
        };
        let err = |p: &Linear| {
            samples
                .iter()
                .map(|x| {
                    (0..2)
                        .map(|o| {
                            let y = p.weight.data[o * 2] * x[0] + p.weight.data[o * 2 + 1] * x[1];
                            (y + p.bias[o] - full(x, o)).powi(2)
                        })
                        .sum::<f32>()
                })
                .sum::<f32>()
        };
        let plain = select_in(&l, &[0, 1]);
        let repaired = refit(&l, &[0, 1], &gram).expect("refit");
        assert!(err(&plain) > 10.0, "plain selection error {}", err(&plain));
        assert!(err(&repaired) < 1e-6, "refit error {}", err(&repaired));
        // The weight of the removed input moved onto the first one: 1 + 2·0.5 and 0.2 + 2·(−2).
        assert!(
            (repaired.weight.data[0] - 2.0).abs() < 1e-3
                && (repaired.weight.data[2] + 3.8).abs() < 1e-3
        );
    }

    /// Squared error over `samples` of `l` restricted to `keep` and refitted, against `l`.
    fn refit_error(l: &Linear, keep: &[usize], gram: &Gram, samples: &[Vec<f32>]) -> f64 {
        let r = refit(l, keep, gram).expect("refit");
        let mut err = 0f64;
        for x in samples {
            for o in 0..l.weight.rows {
                let row = &l.weight.data[o * l.weight.cols..(o + 1) * l.weight.cols];
                let full: f64 = row.iter().zip(x).map(|(&w, &v)| f64::from(w * v)).sum::<f64>()
                    + f64::from(l.bias[o]);
                let got: f64 = keep
                    .iter()
                    .enumerate()
                    .map(|(j, &k)| f64::from(r.weight.data[o * keep.len() + j] * x[k]))
                    .sum::<f64>()
                    + f64::from(r.bias[o]);
                err += (got - full).powi(2);
            }
        }
        err
    }

    /// The greedy order against brute force: at every step, the group removed is one whose
    /// removal (the rest refitted by `refit`, an independent solve of the normal equations)
    /// leaves the least error over the samples, to 1e-6 relative (f64 sums of f32 products);
    /// singly and in groups of two. And of two inputs that are affine functions of each other,
    /// one goes first, though one has the largest weights of all (what the norms keep).
    #[test]
    fn greedy_removal_takes_what_the_refit_misses_least() {
        let mut seed = 7u64;
        let mut uniform = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        };
        let n_in = 6;
        let samples: Vec<Vec<f32>> = (0..80)
            .map(|_| {
                let mut x: Vec<f32> = (0..n_in).map(|_| uniform()).collect();
                x[1] = 0.7 * x[0] + 0.3 * x[1];
                x[4] = 2.0 * x[3] - 0.5;
                x
            })
            .collect();
        let mut gram = Gram::new(n_in + 1);
        gram.add_rows(&samples.concat(), samples.len());
        let mut weight: Vec<f32> = (0..3 * n_in).map(|_| uniform()).collect();
        for o in 0..3 {
            weight[o * n_in + 4] = 3.0;
        }
        let l = Linear { weight: Matrix { data: weight, rows: 3, cols: n_in }, bias: vec![0.1; 3] };
        for width in [1, 2] {
            let ranks = removal_ranks(&l, &gram, width).expect("ranks");
            let groups = n_in / width;
            let mut order: Vec<usize> = (0..groups).collect();
            order.sort_by(|&a, &b| ranks[a].total_cmp(&ranks[b]));
            let mut alive: Vec<usize> = (0..groups).collect();
            for &g in &order[..groups - 1] {
                let error_without = |g: usize| {
                    let keep: Vec<usize> = alive
                        .iter()
                        .filter(|&&a| a != g)
                        .flat_map(|&a| a * width..(a + 1) * width)
                        .collect();
                    refit_error(&l, &keep, &gram, &samples)
                };
                let least = alive.iter().map(|&a| error_without(a)).fold(f64::INFINITY, f64::min);
                let got = error_without(g);
                assert!(
                    got <= least * (1.0 + 1e-6) + 1e-9,
                    "width {width}: removed {g} ({got}), least {least}, ranks {ranks:?}"
                );
                alive.retain(|&a| a != g);
            }
            if width == 1 {
                // 3 and 4 each restore the other exactly: one of them first, either way.
                assert!(matches!(order[0], 3 | 4), "an affine pair goes first: {ranks:?}");
            }
        }
    }
}
