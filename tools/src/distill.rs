//! Layer-wise distillation of a pruned encoder from the unpruned one, on unlabeled text.
//!
//! The least-squares repair (`prune.rs`) refits only the two output projections, each alone and
//! linearly. Here every weight of each kept layer (query, key, value, attention output, both
//! LayerNorms, both FFN matrices, biases) is trained by gradient descent so that the layer's
//! output matches the teacher's at the same depth, layer after layer (the block-wise
//! reconstruction of BRECQ, Li et al. 2021, applied to pruning). Each layer is trained on the
//! student's own input — what the layers before it, already trained, give — so a layer learns
//! to correct what the earlier ones still get wrong; a dropped layer's work falls to the kept
//! layer after it, whose target is the teacher's output after the dropped one.
//!
//! Written by hand (forward and backward of one BERT layer on `matrixmultiply`, which tract
//! already builds) rather than on a training framework: the one model shape it trains needs a
//! few hundred lines, where candle or burn would add a framework (and its own matmul crates) to
//! every cold build of the tool.
//! The gradients are checked against finite differences (`tests`).
//!
//! A layer whose loss on held-out texts (texts apart from the training ones) does not go down
//! keeps its weights as they were.

use anyhow::{Result, ensure};
use bertlite::Encoding;
use rayon::prelude::*;
use tract_core::internal::*;

use crate::graph::{self, Precision, TAPS_PER_LAYER};
use crate::model::{Bert, Layer};

#[derive(Clone, Copy, Debug)]
pub struct DistillOptions {
    /// Passes over the training texts, per layer.
    pub epochs: usize,
    /// Adam's step size.
    pub lr: f32,
    /// Texts per step.
    pub batch: usize,
    /// Passes of the end-to-end stage over the file's texts ([`distill_pooled`]); 0: none.
    pub end_to_end: usize,
    /// Adam's step size in the end-to-end stage.
    pub end_to_end_lr: f32,
}

impl Default for DistillOptions {
    /// The step size as measured on the first BBC split of tools/sweep.sh (`--target-flops 0.5`,
    /// 128 calibration texts): at 5e-5 the held-out error fell 5–10% per layer, at 2e-4 6–17%
    /// (and 6–49% with ffn −50% and two layers dropped: the layer after them halved). No layer
    /// was refused at either.
    fn default() -> Self {
        DistillOptions { epochs: 8, lr: 2e-4, batch: 8, end_to_end: 0, end_to_end_lr: 5e-5 }
    }
}

/// What distillation did, per kept layer: held-out loss before and after (mean squared error
/// of the layer's output to the teacher's), and whether the trained weights were kept.
pub struct Report {
    pub layers: Vec<(f32, f32, bool)>,
}

impl Report {
    pub fn describe(&self, texts: usize, opts: &DistillOptions) -> String {
        let per: Vec<String> = self
            .layers
            .iter()
            .map(|(b, a, kept)| match kept {
                true => format!("{b:.4}->{a:.4}"),
                false => format!("{b:.4} (kept as was)"),
            })
            .collect();
        format!(
            "distilled layer by layer from the unpruned model on {texts} texts ({} epochs): held-out MSE {}",
            opts.epochs,
            per.join(", ")
        )
    }
}

/// The teacher's states on each text: the embeddings' output and every layer's output.
struct Teacher {
    embeddings: Vec<Vec<f32>>,
    /// `[layer][text]`
    outputs: Vec<Vec<Vec<f32>>>,
}

fn teacher_states(teacher: &Bert, texts: &[Encoding]) -> Result<Teacher> {
    let plan = graph::build_with_outputs(teacher, Precision::F32, graph::Outputs::Taps)?
        .into_optimized()?
        .into_runnable()?;
    let n = teacher.layers.len();
    let mut embeddings = Vec::with_capacity(texts.len());
    let mut outputs = vec![Vec::with_capacity(texts.len()); n];
    for e in texts {
        let out = graph::run_text(&plan, e)?;
        let view = |i: usize| graph::values(&out, i);
        embeddings.push(view(1)?);
        for (l, layer_out) in outputs.iter_mut().enumerate() {
            layer_out.push(if l + 1 < n { view(1 + (l + 1) * TAPS_PER_LAYER)? } else { view(0)? });
        }
    }
    Ok(Teacher { embeddings, outputs })
}

/// For each of the student's layers, the teacher layer it was cut from. Pruning changes the
/// linears and drops layers but leaves LayerNorms as they were, so a kept layer is the teacher
/// layer with its two LayerNorms, in order.
fn sources(student: &Bert, teacher: &Bert) -> Result<Vec<usize>> {
    let same = |a: &Layer, b: &Layer| {
        a.attn_norm.gamma == b.attn_norm.gamma
            && a.attn_norm.beta == b.attn_norm.beta
            && a.ffn_norm.gamma == b.ffn_norm.gamma
            && a.ffn_norm.beta == b.ffn_norm.beta
    };
    let mut next = 0;
    let mut found = Vec::new();
    for layer in &student.layers {
        let t = (next..teacher.layers.len()).find(|&t| same(layer, &teacher.layers[t]));
        let Some(t) = t else {
            anyhow::bail!("distillation: a pruned layer matches none of the unpruned model's");
        };
        found.push(t);
        next = t + 1;
    }
    Ok(found)
}

/// Trains each of `student`'s layers toward `teacher`'s outputs on `texts`; `held_out` decides
/// whether a layer's new weights are kept.
pub fn distill(
    student: &mut Bert,
    teacher: &Bert,
    texts: &[Encoding],
    held_out: &[Encoding],
    opts: &DistillOptions,
) -> Result<Report> {
    ensure!(!texts.is_empty() && !held_out.is_empty(), "distillation needs texts");
    ensure!(student.hidden == teacher.hidden, "distillation: hidden sizes differ");
    let sources = sources(student, teacher)?;
    let train_t = teacher_states(teacher, texts)?;
    let held_t = teacher_states(teacher, held_out)?;
    let (mut xs, mut hx) = (train_t.embeddings.clone(), held_t.embeddings.clone());
    let (h, dh, eps) = (student.hidden, student.head_dim, student.eps);
    let pb = crate::embed::progress(student.layers.len() * opts.epochs, "distilling");
    let mut report = Report { layers: Vec::new() };
    for (j, &t) in sources.iter().enumerate() {
        let shape = Shape { h, dh, heads: student.layers[j].heads, eps };
        let layer = &mut student.layers[j];
        let (targets, held_targets) = (&train_t.outputs[t], &held_t.outputs[t]);
        let before = mean_loss(layer, &shape, &hx, held_targets);
        let original = layer.clone();
        let mut adam = Adam::new(&params(layer));
        let mut order: Vec<usize> = (0..xs.len()).collect();
        let mut seed = 0x9e37_79b9_7f4a_7c15u64 ^ j as u64;
        for _ in 0..opts.epochs {
            shuffle(&mut order, &mut seed);
            for chunk in order.chunks(opts.batch.max(1)) {
                let values: usize = chunk.iter().map(|&i| xs[i].len()).sum();
                let frozen = &*layer;
                // The texts' gradients on the threads, summed in the texts' order (a rayon
                // reduction's order depends on how the work was split: the bundle would not
                // be the same from run to run).
                let grads: Vec<Grads> = chunk
                    .par_iter()
                    .map(|&i| {
                        let mut grads = Grads::zeros(frozen);
                        let cache = forward(frozen, &shape, &xs[i]);
                        let dy: Vec<f32> = cache
                            .y2
                            .iter()
                            .zip(&targets[i])
                            .map(|(y, t)| 2.0 * (y - t) / values as f32)
                            .collect();
                        backward(frozen, &shape, &cache, &dy, &mut grads);
                        grads
                    })
                    .collect();
                let grads =
                    grads.into_iter().reduce(Grads::add).unwrap_or_else(|| Grads::zeros(frozen));
                adam.step(params_mut(layer), &grads.all(), opts.lr);
            }
            pb.inc(1);
        }
        let after = mean_loss(layer, &shape, &hx, held_targets);
        let kept = after < before;
        if !kept {
            *layer = original;
        }
        report.layers.push((before, after, kept));
        xs = xs.iter().map(|x| forward(layer, &shape, x).y2).collect();
        hx = hx.iter().map(|x| forward(layer, &shape, x).y2).collect();
    }
    pb.finish_and_clear();
    Ok(report)
}

/// What the end-to-end stage did: held-out mean cosine of the pooled output to the teacher's
/// before and after, the epochs run, and whether the trained weights were kept.
pub struct PooledReport {
    pub before: f32,
    pub after: f32,
    pub best_epoch: usize,
    pub texts: usize,
}

impl PooledReport {
    pub fn describe(&self, epochs: usize) -> String {
        match self.best_epoch {
            0 => format!(
                "then end to end on {} texts ({epochs} epochs): held-out pooled cosine {:.4}, not improved (kept as was)",
                self.texts, self.before
            ),
            e => format!(
                "then end to end on {} texts ({epochs} epochs, the weights after epoch {e} kept): held-out pooled cosine {:.4}->{:.4}",
                self.texts, self.before, self.after
            ),
        }
    }
}

/// One vector per text.
pub(crate) type PerText = Vec<Vec<f32>>;

/// The embeddings' output (the encoder's input) and the mean-pooled last-layer output of each
/// text, under `model`.
pub(crate) fn inputs_and_pooled(model: &Bert, texts: &[Encoding]) -> Result<(PerText, PerText)> {
    let plan = graph::build_with_outputs(model, Precision::F32, graph::Outputs::Taps)?
        .into_optimized()?
        .into_runnable()?;
    let h = model.hidden;
    let (mut inputs, mut pooled) = (Vec::new(), Vec::new());
    for e in texts {
        let out = graph::run_text(&plan, e)?;
        pooled.push(mean_rows(&graph::values(&out, 0)?, h));
        inputs.push(graph::values(&out, 1)?);
    }
    Ok((inputs, pooled))
}

fn mean_rows(y: &[f32], h: usize) -> Vec<f32> {
    let rows = (y.len() / h).max(1) as f32;
    let mut m = vec![0f32; h];
    for row in y.chunks_exact(h) {
        m.iter_mut().zip(row).for_each(|(m, v)| *m += v);
    }
    m.iter_mut().for_each(|m| *m /= rows);
    m
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(a, b)| a * b).sum();
    let na: f32 = a.iter().map(|v| v * v).sum::<f32>().sqrt();
    let nb: f32 = b.iter().map(|v| v * v).sum::<f32>().sqrt();
    dot / (na * nb).max(f32::MIN_POSITIVE)
}

/// Trains every kept layer of `student` together, end to end, so that its mean-pooled output
/// on each text points where the unpruned model's does (loss 1 − cosine: what a head on the
/// normalized embedding sees). Layer-wise distillation matches every token's every value at
/// every depth, outliers and all; this spends the student's capacity on the one vector the
/// tasks use. Its target is one vector per text, so it can afford every text of the file, not
/// only the calibration ones. The weights after the epoch with the best held-out cosine are
/// kept; none if no epoch beats the start.
pub fn distill_pooled(
    student: &mut Bert,
    teacher: &Bert,
    texts: &[Encoding],
    held_out: &[Encoding],
    opts: &DistillOptions,
) -> Result<PooledReport> {
    ensure!(!texts.is_empty() && !held_out.is_empty(), "distillation needs texts");
    ensure!(student.hidden == teacher.hidden, "distillation: hidden sizes differ");
    let (xs, targets) = inputs_and_pooled(teacher, texts)?;
    let (hx, held_targets) = inputs_and_pooled(teacher, held_out)?;
    let shapes = shapes(student);
    let pb = crate::embed::progress(opts.end_to_end * texts.len(), "end to end");
    let (before, after, best_epoch) = train_pooled(
        &mut student.layers,
        &shapes,
        (&xs, &targets),
        (&hx, &held_targets),
        opts,
        &|n| pb.inc(n as u64),
    );
    pb.finish_and_clear();
    Ok(PooledReport { before, after, best_epoch, texts: texts.len() })
}

/// Mean cosine of the layers' pooled output on `xs` to `targets`.
fn pooled_cosine(layers: &[Layer], shapes: &[Shape], xs: &[Vec<f32>], targets: &[Vec<f32>]) -> f32 {
    let sum: f32 = xs
        .par_iter()
        .zip(targets)
        .map(|(x, t)| cosine(&pooled(layers, shapes, x), t))
        .collect::<Vec<f32>>()
        .iter()
        .sum();
    sum / xs.len().max(1) as f32
}

/// Each layer's shape in `model`.
pub(crate) fn shapes(model: &Bert) -> Vec<Shape> {
    let (h, dh, eps) = (model.hidden, model.head_dim, model.eps);
    model.layers.iter().map(|l| Shape { h, dh, heads: l.heads, eps }).collect()
}

/// The gradient of `scale` · (1 − cos(p, t)) at `p`.
pub(crate) fn cosine_grad(p: &[f32], t: &[f32], scale: f32) -> Vec<f32> {
    let np = p.iter().map(|v| v * v).sum::<f32>().sqrt().max(f32::MIN_POSITIVE);
    let nt = t.iter().map(|v| v * v).sum::<f32>().sqrt().max(f32::MIN_POSITIVE);
    let cos = p.iter().zip(t).map(|(a, b)| a * b).sum::<f32>() / (np * nt);
    // d(1 − cos)/dp = −(t/|t| − cos · p/|p|) / |p|
    p.iter().zip(t).map(|(p, t)| -scale * (t / nt - cos * p / np) / np).collect()
}

/// The mean-pooled output of `layers` on one text's encoder input `x`.
pub(crate) fn pooled(layers: &[Layer], shapes: &[Shape], x: &[f32]) -> Vec<f32> {
    let y = layers.iter().zip(shapes).fold(x.to_vec(), |x, (l, sh)| forward(l, sh, &x).y2);
    mean_rows(&y, shapes[0].h)
}

/// One text's gradients for every layer of a loss on its mean-pooled output; `loss_grad`
/// maps the pooled output to the loss's gradient there.
pub(crate) fn grads_through_pooling(
    layers: &[Layer],
    shapes: &[Shape],
    x: &[f32],
    loss_grad: &dyn Fn(&[f32]) -> Vec<f32>,
) -> Vec<Grads> {
    let mut caches: Vec<Cache> = Vec::with_capacity(layers.len());
    for (l, sh) in layers.iter().zip(shapes) {
        let c = forward(l, sh, caches.last().map_or(x, |c| &c.y2));
        caches.push(c);
    }
    let h = shapes[0].h;
    let Some(last) = caches.last() else { return Vec::new() };
    // The mean spreads the pooled gradient evenly over the rows.
    let rows = last.s as f32;
    let dp: Vec<f32> = loss_grad(&mean_rows(&last.y2, h)).iter().map(|g| g / rows).collect();
    let mut dy: Vec<f32> = dp.iter().copied().cycle().take(last.y2.len()).collect();
    let mut grads: Vec<Grads> = layers.iter().map(Grads::zeros).collect();
    for ((l, sh), (c, g)) in layers.iter().zip(shapes).zip(caches.iter().zip(&mut grads)).rev() {
        dy = backward(l, sh, c, &dy, g);
    }
    grads
}

/// One text's gradients for every layer of 1 − cos(pooled output, target), scaled by `scale`.
fn pooled_grads(
    layers: &[Layer],
    shapes: &[Shape],
    x: &[f32],
    t: &[f32],
    scale: f32,
) -> Vec<Grads> {
    grads_through_pooling(layers, shapes, x, &|p| cosine_grad(p, t, scale))
}

/// How [`train_layers`] trains: passes, Adam's step size, texts per step, whether the step
/// warms up and decays.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Schedule {
    pub epochs: usize,
    pub lr: f32,
    pub batch: usize,
    /// Warm up and decay the step size: linearly from 0 to `lr` over the first tenth of the
    /// steps, then linearly to 0 at the last (BERT's fine-tuning schedule, Devlin et al. 2019).
    /// Adam's first steps move every weight by about `lr` whatever its gradient; on a trained
    /// encoder that undoes more than the first batches teach. Off: `lr` throughout.
    pub warmup_decay: bool,
}

impl Schedule {
    /// The step size of step `step` (0-based) of `total`.
    fn lr_at(&self, step: usize, total: usize) -> f32 {
        if !self.warmup_decay {
            return self.lr;
        }
        let warmup = (total / 10).max(1);
        let f = if step < warmup {
            (step + 1) as f32 / warmup as f32
        } else {
            (total - step) as f32 / (total - warmup).max(1) as f32
        };
        self.lr * f.clamp(0.0, 1.0)
    }
}

/// Text i's gradients for every layer, its loss scaled by the last argument.
pub(crate) type TextGrads<'a> = dyn Fn(&[Layer], usize, f32) -> Vec<Grads> + Sync + 'a;

/// What [`train_layers`] did: the held-out score before training and after each epoch, and
/// the epoch whose weights were kept (0: none, the starting ones).
pub(crate) struct Trained {
    pub scores: Vec<f32>,
    pub best_epoch: usize,
}

/// Trains every layer together on `texts` texts: `grads(layers, i, scale)` gives text i's
/// gradients (its loss scaled by `scale`), `score(layers)` the held-out score after each
/// epoch (higher is better). Keeps the weights of the best-scoring epoch, or the starting ones
/// if none beats them.
pub(crate) fn train_layers(
    layers: &mut [Layer],
    texts: usize,
    schedule: Schedule,
    grads: &TextGrads,
    score: &dyn Fn(&[Layer]) -> f32,
    progress: &(dyn Fn(usize) + Sync),
) -> Trained {
    let mut scores = vec![score(layers)];
    let (mut best, mut best_epoch, mut best_layers) = (scores[0], 0, layers.to_vec());
    let mut adams: Vec<Adam> = layers.iter().map(|l| Adam::new(&params(l))).collect();
    let mut order: Vec<usize> = (0..texts).collect();
    let mut seed = 0x0005_eed0_fe2e_u64;
    let batch = schedule.batch.max(1);
    let total = schedule.epochs * texts.div_ceil(batch);
    let mut step = 0;
    for epoch in 1..=schedule.epochs {
        shuffle(&mut order, &mut seed);
        for chunk in order.chunks(batch) {
            let frozen = &*layers;
            let scale = 1.0 / chunk.len() as f32;
            // Summed in the texts' order, as in `distill`: the same bundle on every run.
            let per_text: Vec<Vec<Grads>> =
                chunk.par_iter().map(|&i| grads(frozen, i, scale)).collect();
            let mut it = per_text.into_iter();
            let Some(first) = it.next() else { continue };
            let sum =
                it.fold(first, |acc, g| acc.into_iter().zip(g).map(|(a, b)| a.add(b)).collect());
            let lr = schedule.lr_at(step, total);
            step += 1;
            for ((l, adam), g) in layers.iter_mut().zip(&mut adams).zip(&sum) {
                adam.step(params_mut(l), &g.all(), lr);
            }
            progress(chunk.len());
        }
        let now = score(layers);
        scores.push(now);
        if now > best {
            (best, best_epoch, best_layers) = (now, epoch, layers.to_vec());
        }
    }
    layers.clone_from_slice(&best_layers);
    Trained { scores, best_epoch }
}

/// The training loop of [`distill_pooled`]: returns (held-out cosine before, after, the epoch
/// whose weights were kept, 0 for none).
fn train_pooled(
    layers: &mut [Layer],
    shapes: &[Shape],
    (xs, targets): (&[Vec<f32>], &[Vec<f32>]),
    (hx, held_targets): (&[Vec<f32>], &[Vec<f32>]),
    opts: &DistillOptions,
    progress: &(dyn Fn(usize) + Sync),
) -> (f32, f32, usize) {
    let schedule = Schedule {
        epochs: opts.end_to_end,
        lr: opts.end_to_end_lr,
        batch: opts.batch,
        warmup_decay: false,
    };
    let trained = train_layers(
        layers,
        xs.len(),
        schedule,
        &|layers, i, scale| pooled_grads(layers, shapes, &xs[i], &targets[i], scale),
        &|layers| pooled_cosine(layers, shapes, hx, held_targets),
        progress,
    );
    let s = &trained.scores;
    (s[0], s[trained.best_epoch], trained.best_epoch)
}

/// Mean squared error of `layer`'s outputs on `xs` to `targets`, over every value.
fn mean_loss(layer: &Layer, shape: &Shape, xs: &[Vec<f32>], targets: &[Vec<f32>]) -> f32 {
    let (mut sum, mut n) = (0f64, 0usize);
    for (x, t) in xs.iter().zip(targets) {
        let y = forward(layer, shape, x).y2;
        sum += y.iter().zip(t).map(|(y, t)| f64::from((y - t) * (y - t))).sum::<f64>();
        n += y.len();
    }
    (sum / n.max(1) as f64) as f32
}

/// A fixed-seed Fisher–Yates shuffle (splitmix64): the same order on every run.
fn shuffle(v: &mut [usize], seed: &mut u64) {
    for i in (1..v.len()).rev() {
        *seed = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = *seed;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        v.swap(i, (z % (i as u64 + 1)) as usize);
    }
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct Shape {
    pub h: usize,
    pub dh: usize,
    pub heads: usize,
    pub eps: f32,
}

/// What the backward pass needs from the forward pass of one text through one layer.
struct Cache {
    s: usize,
    x: Vec<f32>,
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    /// `[head][s][s]` attention probabilities.
    p: Vec<f32>,
    ctx: Vec<f32>,
    n1: Vec<f32>,
    rstd1: Vec<f32>,
    y1: Vec<f32>,
    u: Vec<f32>,
    g: Vec<f32>,
    n2: Vec<f32>,
    rstd2: Vec<f32>,
    y2: Vec<f32>,
}

/// `c = op(a) · op(b) + beta · c` with `op(a)` m × k and `op(b)` k × n given by their strides
/// (row stride, column stride), `c` row-major m × n.
#[allow(clippy::too_many_arguments)]
fn gemm(
    m: usize,
    k: usize,
    n: usize,
    a: &[f32],
    (rsa, csa): (usize, usize),
    b: &[f32],
    (rsb, csb): (usize, usize),
    beta: f32,
    c: &mut [f32],
) {
    if m == 0 || n == 0 {
        return;
    }
    // Every element the strides reach lies inside its slice.
    let last = |rows: usize, cols: usize, rs: usize, cs: usize| (rows - 1) * rs + (cols - 1) * cs;
    assert!(k == 0 || (last(m, k, rsa, csa) < a.len() && last(k, n, rsb, csb) < b.len()));
    assert!(c.len() >= m * n);
    // SAFETY: the asserts above keep every access inside `a`, `b` and `c`.
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            1.0,
            a.as_ptr(),
            rsa as isize,
            csa as isize,
            b.as_ptr(),
            rsb as isize,
            csb as isize,
            beta,
            c.as_mut_ptr(),
            n as isize,
            1,
        )
    }
}

/// `x [s × in] · Wᵀ + b` for a PyTorch-layout weight `[out × in]`.
fn linear(x: &[f32], s: usize, l: &crate::model::Linear) -> Vec<f32> {
    let (out, inp) = (l.weight.rows, l.weight.cols);
    let mut y = vec![0f32; s * out];
    gemm(s, inp, out, x, (inp, 1), &l.weight.data, (1, inp), 0.0, &mut y);
    for row in y.chunks_exact_mut(out) {
        row.iter_mut().zip(&l.bias).for_each(|(y, b)| *y += b);
    }
    y
}

/// Backward of [`linear`]: accumulates `dW += dyᵀ x`, `db += Σ dy`; returns `dx = dy W`.
fn linear_back(
    x: &[f32],
    dy: &[f32],
    s: usize,
    l: &crate::model::Linear,
    dw: &mut [f32],
    db: &mut [f32],
) -> Vec<f32> {
    let (out, inp) = (l.weight.rows, l.weight.cols);
    gemm(out, s, inp, dy, (1, out), x, (inp, 1), 1.0, dw);
    for row in dy.chunks_exact(out) {
        db.iter_mut().zip(row).for_each(|(d, g)| *d += g);
    }
    let mut dx = vec![0f32; s * inp];
    gemm(s, out, inp, dy, (out, 1), &l.weight.data, (inp, 1), 0.0, &mut dx);
    dx
}

/// LayerNorm rows of `z`: returns (normalized, 1/σ per row, output).
fn layer_norm(
    z: &[f32],
    h: usize,
    n: &crate::model::LayerNorm,
    eps: f32,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let mut normed = vec![0f32; z.len()];
    let mut rstd = Vec::with_capacity(z.len() / h);
    let mut y = vec![0f32; z.len()];
    for ((z, nr), y) in z.chunks_exact(h).zip(normed.chunks_exact_mut(h)).zip(y.chunks_exact_mut(h))
    {
        let mean = z.iter().sum::<f32>() / h as f32;
        let var = z.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / h as f32;
        let r = 1.0 / (var + eps).sqrt();
        rstd.push(r);
        for i in 0..h {
            nr[i] = (z[i] - mean) * r;
            y[i] = nr[i] * n.gamma[i] + n.beta[i];
        }
    }
    (normed, rstd, y)
}

/// Backward of [`layer_norm`]: accumulates dγ, dβ; returns dz.
fn layer_norm_back(
    normed: &[f32],
    rstd: &[f32],
    dy: &[f32],
    h: usize,
    gamma: &[f32],
    dgamma: &mut [f32],
    dbeta: &mut [f32],
) -> Vec<f32> {
    let mut dz = vec![0f32; dy.len()];
    for (((nr, dy), dz), r) in
        normed.chunks_exact(h).zip(dy.chunks_exact(h)).zip(dz.chunks_exact_mut(h)).zip(rstd)
    {
        let mut dn = vec![0f32; h];
        for i in 0..h {
            dgamma[i] += dy[i] * nr[i];
            dbeta[i] += dy[i];
            dn[i] = dy[i] * gamma[i];
        }
        let mean_dn = dn.iter().sum::<f32>() / h as f32;
        let mean_dn_n = dn.iter().zip(nr).map(|(d, n)| d * n).sum::<f32>() / h as f32;
        for i in 0..h {
            dz[i] = r * (dn[i] - mean_dn - nr[i] * mean_dn_n);
        }
    }
    dz
}

/// Exact GELU, x · Φ(x), as the graph's (erf) GELU.
fn gelu(x: f32) -> f32 {
    0.5 * x * (1.0 + libm::erff(x * std::f32::consts::FRAC_1_SQRT_2))
}

/// d/dx of [`gelu`]: Φ(x) + x · φ(x).
fn gelu_grad(x: f32) -> f32 {
    let cdf = 0.5 * (1.0 + libm::erff(x * std::f32::consts::FRAC_1_SQRT_2));
    let pdf = (-0.5 * x * x).exp() * 0.398_942_3;
    cdf + x * pdf
}

/// One text (`x`: s rows of h) through one layer, keeping what [`backward`] needs. Attention
/// is unmasked: a text runs alone, at its own length.
fn forward(layer: &Layer, sh: &Shape, x: &[f32]) -> Cache {
    let (h, dh, heads) = (sh.h, sh.dh, sh.heads);
    let s = x.len() / h;
    let w = heads * dh;
    let alpha = 1.0 / (dh as f32).sqrt();
    let q = linear(x, s, &layer.query);
    let k = linear(x, s, &layer.key);
    let v = linear(x, s, &layer.value);
    let mut p = vec![0f32; heads * s * s];
    let mut ctx = vec![0f32; s * w];
    for hd in 0..heads {
        let o = hd * dh;
        let ph = &mut p[hd * s * s..(hd + 1) * s * s];
        gemm(s, dh, s, &q[o..], (w, 1), &k[o..], (1, w), 0.0, ph);
        for row in ph.chunks_exact_mut(s) {
            let max = row.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v * alpha));
            let mut sum = 0.0;
            for v in row.iter_mut() {
                *v = (*v * alpha - max).exp();
                sum += *v;
            }
            row.iter_mut().for_each(|v| *v /= sum);
        }
        // ctx[:, head] = P · V[:, head], written into the head's columns.
        let mut ch = vec![0f32; s * dh];
        gemm(s, s, dh, ph, (s, 1), &v[o..], (w, 1), 0.0, &mut ch);
        for (dst, src) in ctx.chunks_exact_mut(w).zip(ch.chunks_exact(dh)) {
            dst[o..o + dh].copy_from_slice(src);
        }
    }
    let a = linear(&ctx, s, &layer.attn_out);
    let z1: Vec<f32> = a.iter().zip(x).map(|(a, x)| a + x).collect();
    let (n1, rstd1, y1) = layer_norm(&z1, h, &layer.attn_norm, sh.eps);
    let u = linear(&y1, s, &layer.ffn_in);
    let g: Vec<f32> = u.iter().map(|&u| gelu(u)).collect();
    let o = linear(&g, s, &layer.ffn_out);
    let z2: Vec<f32> = o.iter().zip(&y1).map(|(o, y)| o + y).collect();
    let (n2, rstd2, y2) = layer_norm(&z2, h, &layer.ffn_norm, sh.eps);
    Cache { s, x: x.to_vec(), q, k, v, p, ctx, n1, rstd1, y1, u, g, n2, rstd2, y2 }
}

/// Gradients of one layer's parameters, in [`params`]' order.
pub(crate) struct Grads(Vec<Vec<f32>>);

impl Grads {
    fn zeros(layer: &Layer) -> Grads {
        Grads(params(layer).iter().map(|p| vec![0f32; p.len()]).collect())
    }
    fn add(mut self, other: Grads) -> Grads {
        for (a, b) in self.0.iter_mut().zip(&other.0) {
            a.iter_mut().zip(b).for_each(|(a, b)| *a += b);
        }
        self
    }
    fn all(&self) -> Vec<&[f32]> {
        self.0.iter().map(Vec::as_slice).collect()
    }
}

/// The layer's trained parameters, in a fixed order (the order of [`Grads`]), borrowed with
/// `$($borrow)+` (`&` or `&mut`): one list for [`params`] and [`params_mut`].
macro_rules! layer_params {
    ($l:expr, $($borrow:tt)+) => {{
        let l = $l;
        vec![
            $($borrow)+ l.query.weight.data[..],
            $($borrow)+ l.query.bias[..],
            $($borrow)+ l.key.weight.data[..],
            $($borrow)+ l.key.bias[..],
            $($borrow)+ l.value.weight.data[..],
            $($borrow)+ l.value.bias[..],
            $($borrow)+ l.attn_out.weight.data[..],
            $($borrow)+ l.attn_out.bias[..],
            $($borrow)+ l.attn_norm.gamma[..],
            $($borrow)+ l.attn_norm.beta[..],
            $($borrow)+ l.ffn_in.weight.data[..],
            $($borrow)+ l.ffn_in.bias[..],
            $($borrow)+ l.ffn_out.weight.data[..],
            $($borrow)+ l.ffn_out.bias[..],
            $($borrow)+ l.ffn_norm.gamma[..],
            $($borrow)+ l.ffn_norm.beta[..],
        ]
    }};
}

fn params(l: &Layer) -> Vec<&[f32]> {
    layer_params!(l, &)
}

fn params_mut(l: &mut Layer) -> Vec<&mut [f32]> {
    layer_params!(l, &mut)
}

/// Accumulates into `grads` the gradient of `Σ dy · y2` (`dy`: the loss's gradient at the
/// layer's output) for the text `cache` was run on; returns its gradient at the layer's input.
fn backward(layer: &Layer, sh: &Shape, c: &Cache, dy: &[f32], grads: &mut Grads) -> Vec<f32> {
    let (h, dh, heads, s) = (sh.h, sh.dh, sh.heads, c.s);
    let w = heads * dh;
    let alpha = 1.0 / (dh as f32).sqrt();
    let [gq, gbq, gk, gbk, gv, gbv, go, gbo, gg1, gb1, gi, gbi, gf, gbf, gg2, gb2] =
        &mut grads.0[..]
    else {
        unreachable!("16 parameter tensors per layer")
    };
    let dz2 = layer_norm_back(&c.n2, &c.rstd2, dy, h, &layer.ffn_norm.gamma, gg2, gb2);
    let dg = linear_back(&c.g, &dz2, s, &layer.ffn_out, gf, gbf);
    let du: Vec<f32> = dg.iter().zip(&c.u).map(|(d, &u)| d * gelu_grad(u)).collect();
    let dy1_ffn = linear_back(&c.y1, &du, s, &layer.ffn_in, gi, gbi);
    let dy1: Vec<f32> = dz2.iter().zip(&dy1_ffn).map(|(a, b)| a + b).collect();
    let dz1 = layer_norm_back(&c.n1, &c.rstd1, &dy1, h, &layer.attn_norm.gamma, gg1, gb1);
    let dctx = linear_back(&c.ctx, &dz1, s, &layer.attn_out, go, gbo);
    let (mut dq, mut dk, mut dv) = (vec![0f32; s * w], vec![0f32; s * w], vec![0f32; s * w]);
    let mut dp = vec![0f32; s * s];
    let mut tmp = vec![0f32; s * dh];
    for hd in 0..heads {
        let o = hd * dh;
        let ph = &c.p[hd * s * s..(hd + 1) * s * s];
        // dP = dctx_h · V_hᵀ
        gemm(s, dh, s, &dctx[o..], (w, 1), &c.v[o..], (1, w), 0.0, &mut dp);
        // dV_h = Pᵀ · dctx_h
        gemm(s, s, dh, ph, (1, s), &dctx[o..], (w, 1), 0.0, &mut tmp);
        scatter(&tmp, &mut dv, o, dh, w);
        // dS = α · P ⊙ (dP − Σ_row dP ⊙ P): the softmax's backward, with the scale.
        for (dp, p) in dp.chunks_exact_mut(s).zip(ph.chunks_exact(s)) {
            let dot: f32 = dp.iter().zip(p).map(|(d, p)| d * p).sum();
            dp.iter_mut().zip(p).for_each(|(d, p)| *d = alpha * p * (*d - dot));
        }
        // dQ_h = dS · K_h, dK_h = dSᵀ · Q_h
        gemm(s, s, dh, &dp, (s, 1), &c.k[o..], (w, 1), 0.0, &mut tmp);
        scatter(&tmp, &mut dq, o, dh, w);
        gemm(s, s, dh, &dp, (1, s), &c.q[o..], (w, 1), 0.0, &mut tmp);
        scatter(&tmp, &mut dk, o, dh, w);
    }
    let dxq = linear_back(&c.x, &dq, s, &layer.query, gq, gbq);
    let dxk = linear_back(&c.x, &dk, s, &layer.key, gk, gbk);
    let dxv = linear_back(&c.x, &dv, s, &layer.value, gv, gbv);
    // The residual carries dz1 to the input unchanged.
    dz1.iter().zip(&dxq).zip(&dxk).zip(&dxv).map(|(((a, b), c), d)| a + b + c + d).collect()
}

/// Writes `src` (s rows of dh) into columns `o..o + dh` of `dst` (rows of w).
fn scatter(src: &[f32], dst: &mut [f32], o: usize, dh: usize, w: usize) {
    for (d, s) in dst.chunks_exact_mut(w).zip(src.chunks_exact(dh)) {
        d[o..o + dh].copy_from_slice(s);
    }
}

/// Adam (Kingma & Ba), no weight decay.
struct Adam {
    m: Vec<Vec<f32>>,
    v: Vec<Vec<f32>>,
    t: i32,
}

impl Adam {
    fn new(params: &[&[f32]]) -> Adam {
        let zeros = || params.iter().map(|p| vec![0f32; p.len()]).collect();
        Adam { m: zeros(), v: zeros(), t: 0 }
    }

    fn step(&mut self, params: Vec<&mut [f32]>, grads: &[&[f32]], lr: f32) {
        const B1: f32 = 0.9;
        const B2: f32 = 0.999;
        self.t += 1;
        let (c1, c2) = (1.0 - B1.powi(self.t), 1.0 - B2.powi(self.t));
        for (((p, g), m), v) in params.into_iter().zip(grads).zip(&mut self.m).zip(&mut self.v) {
            for i in 0..p.len() {
                m[i] = B1 * m[i] + (1.0 - B1) * g[i];
                v[i] = B2 * v[i] + (1.0 - B2) * g[i] * g[i];
                p[i] -= lr * (m[i] / c1) / ((v[i] / c2).sqrt() + 1e-8);
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::model::{LayerNorm, Linear, Matrix};

    fn lin(out: usize, inp: usize, seed: usize) -> Linear {
        let v = |i: usize| (((i * 7919 + seed * 104_729) % 1000) as f32 / 1000.0 - 0.5) * 0.6;
        Linear {
            weight: Matrix { data: (0..out * inp).map(v).collect(), rows: out, cols: inp },
            bias: (0..out).map(|i| v(i + 31) * 0.2).collect(),
        }
    }

    fn norm(h: usize, seed: usize) -> LayerNorm {
        LayerNorm {
            gamma: (0..h).map(|i| 1.0 + ((i + seed) % 5) as f32 * 0.1).collect(),
            beta: (0..h).map(|i| ((i * 3 + seed) % 7) as f32 * 0.02 - 0.06).collect(),
        }
    }

    fn tiny() -> (Layer, Shape) {
        let (h, dh, heads, f) = (8, 3, 2, 12);
        let w = heads * dh;
        let layer = Layer {
            query: lin(w, h, 1),
            key: lin(w, h, 2),
            value: lin(w, h, 3),
            attn_out: lin(h, w, 4),
            attn_norm: norm(h, 5),
            ffn_in: lin(f, h, 6),
            ffn_out: lin(h, f, 7),
            ffn_norm: norm(h, 8),
            heads,
        };
        (layer, Shape { h, dh, heads, eps: 1e-12 })
    }

    /// Warm-up then linear decay: 0 → lr over the first tenth of the steps, peak at the
    /// tenth, down to lr/(total − warm-up steps) at the last (never 0 nor negative); off, lr
    /// throughout.
    #[test]
    fn warm_up_then_linear_decay() {
        let on = Schedule { epochs: 1, lr: 1.0, batch: 1, warmup_decay: true };
        let total = 100;
        let lrs: Vec<f32> = (0..total).map(|s| on.lr_at(s, total)).collect();
        assert_eq!(lrs[0], 0.1);
        assert_eq!(lrs[9], 1.0);
        assert!((lrs[10] - 1.0).abs() < 1e-6, "{}", lrs[10]);
        assert!((lrs[99] - 1.0 / 90.0).abs() < 1e-6, "{}", lrs[99]);
        assert!(lrs[..10].windows(2).all(|w| w[0] < w[1]));
        assert!(lrs[10..].windows(2).all(|w| w[0] > w[1]));
        let off = Schedule { warmup_decay: false, ..on };
        assert!((0..total).all(|s| off.lr_at(s, total) == 1.0));
        // One step in all: the whole step size, not a zero one.
        assert_eq!(on.lr_at(0, 1), 1.0);
    }

    /// Every parameter's gradient against a central difference of the loss Σ r ⊙ y2 (r fixed
    /// and varied), in f64 around f32 steps: the forward is f32, so a step of 1e-2 keeps the
    /// rounding of the difference (~1e-5 relative) well below the 2% tolerance, and the
    /// curvature term (step² · third derivative) is of the same small order.
    #[test]
    fn gradients_match_finite_differences() {
        let (layer, sh) = tiny();
        let s = 5;
        let x: Vec<f32> =
            (0..s * sh.h).map(|i| ((i * 37 % 23) as f32 / 23.0 - 0.5) * 2.0).collect();
        let r: Vec<f32> = (0..s * sh.h).map(|i| (i * 53 % 17) as f32 / 17.0 - 0.5).collect();
        let loss = |l: &Layer| -> f64 {
            let y = forward(l, &sh, &x).y2;
            y.iter().zip(&r).map(|(y, r)| f64::from(y * r)).sum()
        };
        let mut grads = Grads::zeros(&layer);
        backward(&layer, &sh, &forward(&layer, &sh, &x), &r, &mut grads);
        let step = 1e-2f32;
        let mut checked = 0;
        for (pi, g) in grads.0.iter().enumerate() {
            for i in (0..g.len()).step_by(3) {
                let mut plus = layer.clone();
                params_mut(&mut plus)[pi][i] += step;
                let mut minus = layer.clone();
                params_mut(&mut minus)[pi][i] -= step;
                let numeric = (loss(&plus) - loss(&minus)) / (2.0 * f64::from(step));
                let analytic = f64::from(g[i]);
                let scale = numeric.abs().max(analytic.abs()).max(1e-2);
                assert!(
                    (numeric - analytic).abs() <= 0.02 * scale,
                    "parameter {pi}[{i}]: analytic {analytic}, numeric {numeric}"
                );
                checked += 1;
            }
        }
        assert!(checked > 100);
    }

    pub(crate) fn two_layers() -> (Vec<Layer>, Vec<Shape>) {
        let (a, sh) = tiny();
        let mut b = a.clone();
        b.query.weight.data.iter_mut().for_each(|w| *w *= -0.7);
        b.ffn_in.weight.data.reverse();
        b.heads = 1;
        b.query = lin(sh.dh, sh.h, 11);
        b.key = lin(sh.dh, sh.h, 12);
        b.value = lin(sh.dh, sh.h, 13);
        b.attn_out = lin(sh.h, sh.dh, 14);
        (vec![a, b], vec![sh, Shape { heads: 1, ..sh }])
    }

    /// The end-to-end gradient of 1 − cos(pooled output, target) through two layers (the
    /// second with one head) against central differences, as above: this checks `backward`'s
    /// gradient at the input, which the one-layer test does not reach.
    #[test]
    fn pooled_gradients_match_finite_differences() {
        let (layers, shapes) = two_layers();
        let h = shapes[0].h;
        let x: Vec<f32> = (0..5 * h).map(|i| ((i * 41 % 19) as f32 / 19.0 - 0.5) * 2.0).collect();
        let t: Vec<f32> = (0..h).map(|i| (i * 5 % 7) as f32 / 7.0 - 0.4).collect();
        let loss = |ls: &[Layer]| -> f64 {
            let y = ls.iter().zip(&shapes).fold(x.clone(), |x, (l, sh)| forward(l, sh, &x).y2);
            1.0 - f64::from(cosine(&mean_rows(&y, h), &t))
        };
        let grads = pooled_grads(&layers, &shapes, &x, &t, 1.0);
        let step = 1e-2f32;
        let mut checked = 0;
        for (li, lg) in grads.iter().enumerate() {
            for (pi, g) in lg.0.iter().enumerate() {
                for i in (0..g.len()).step_by(5) {
                    let mut plus = layers.clone();
                    params_mut(&mut plus[li])[pi][i] += step;
                    let mut minus = layers.clone();
                    params_mut(&mut minus[li])[pi][i] -= step;
                    let numeric = (loss(&plus) - loss(&minus)) / (2.0 * f64::from(step));
                    let analytic = f64::from(g[i]);
                    let scale = numeric.abs().max(analytic.abs()).max(1e-3);
                    assert!(
                        (numeric - analytic).abs() <= 0.02 * scale + 2e-5,
                        "layer {li} parameter {pi}[{i}]: analytic {analytic}, numeric {numeric}"
                    );
                    checked += 1;
                }
            }
        }
        assert!(checked > 100);
    }

    /// End-to-end training of a damaged two-layer student toward the teacher's pooled outputs
    /// raises the cosine on texts it did not see, and keeps the best epoch.
    #[test]
    fn end_to_end_raises_held_out_cosine() {
        let (teacher, shapes) = two_layers();
        let mut student = teacher.clone();
        student[0].ffn_out.weight.data.iter_mut().for_each(|w| *w *= 0.2);
        student[1].attn_norm.beta.iter_mut().for_each(|b| *b -= 0.5);
        let h = shapes[0].h;
        let text = |seed: usize| -> Vec<f32> {
            (0..6 * h).map(|i| (((i + seed * 17) * 31 % 37) as f32 / 37.0 - 0.5) * 2.0).collect()
        };
        let (train, held): (Vec<_>, Vec<_>) =
            ((0..32).map(text).collect(), (32..40).map(text).collect());
        let pooled = |xs: &[Vec<f32>]| -> Vec<Vec<f32>> {
            xs.iter()
                .map(|x| {
                    let y = teacher
                        .iter()
                        .zip(&shapes)
                        .fold(x.clone(), |x, (l, sh)| forward(l, sh, &x).y2);
                    mean_rows(&y, h)
                })
                .collect()
        };
        let (tt, ht) = (pooled(&train), pooled(&held));
        let opts = DistillOptions { end_to_end: 30, end_to_end_lr: 1e-2, ..Default::default() };
        let (before, after, best) =
            train_pooled(&mut student, &shapes, (&train, &tt), (&held, &ht), &opts, &|_| {});
        assert!(best > 0, "no epoch improved on {before}");
        assert!(1.0 - after < 0.5 * (1.0 - before), "held-out cosine {before} -> {after}");
        assert_eq!(pooled_cosine(&student, &shapes, &held, &ht), after, "the best epoch is kept");
    }

    /// Training one layer toward another layer's outputs lowers the loss on texts it did not
    /// see: the whole loop (forward, backward, Adam) moves the right way.
    #[test]
    fn training_lowers_held_out_loss() {
        let (teacher, sh) = tiny();
        let mut student = teacher.clone();
        // A "pruned" student: the FFN output weights shrunk, its LayerNorm shifted.
        student.ffn_out.weight.data.iter_mut().for_each(|w| *w *= 0.3);
        student.attn_norm.beta.iter_mut().for_each(|b| *b += 0.2);
        let text = |seed: usize| -> Vec<f32> {
            (0..6 * sh.h).map(|i| (((i + seed * 13) * 37 % 29) as f32 / 29.0 - 0.5) * 2.0).collect()
        };
        let (train, held): (Vec<_>, Vec<_>) =
            ((0..24).map(text).collect(), (24..32).map(text).collect());
        let target = |xs: &[Vec<f32>]| -> Vec<Vec<f32>> {
            xs.iter().map(|x| forward(&teacher, &sh, x).y2).collect()
        };
        let (tt, ht) = (target(&train), target(&held));
        let before = mean_loss(&student, &sh, &held, &ht);
        let mut adam = Adam::new(&params(&student));
        for _ in 0..60 {
            let mut grads = Grads::zeros(&student);
            let tokens: usize = train.iter().map(Vec::len).sum();
            for (x, t) in train.iter().zip(&tt) {
                let c = forward(&student, &sh, x);
                let dy: Vec<f32> =
                    c.y2.iter().zip(t).map(|(y, t)| 2.0 * (y - t) / tokens as f32).collect();
                backward(&student, &sh, &c, &dy, &mut grads);
            }
            adam.step(params_mut(&mut student), &grads.all(), 1e-2);
        }
        let after = mean_loss(&student, &sh, &held, &ht);
        assert!(after < 0.5 * before, "held-out loss {before} -> {after}");
    }
}
