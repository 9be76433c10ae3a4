//! `--target-flops`: prune to a share of the encoder's FLOPs, cutting each layer by what it
//! can spare instead of the same fractions everywhere.
//!
//! Layers are not equally sensitive: on all-MiniLM-L6-v2, removing the same 24 FFN neurons
//! costs the first layer ten times what it costs the third. So every candidate cut of every
//! layer (FFN neurons, heads, the whole layer) is tried alone, repaired as the final pruning
//! will be, and its loss measured as 1 − cosine of the mean-pooled last hidden state to the
//! unpruned model's, on calibration texts. A dynamic program then picks one cut per layer
//! minimizing the summed losses within the FLOPs budget. Summing assumes the layers' losses
//! add up, which they only roughly do; the choice is judged by the pruned model's measured
//! accuracy (results/compression.md), not by the sum.
//!
//! With labeled training text (`--prune-score task`), the loss is instead how far the cut moves
//! the logits of a classification head fitted to the unpruned model's embeddings of those
//! texts: pooled cosine weighs all hidden directions alike, while a classifier reads a few, so
//! a cut that disturbs only directions the classes do not differ along costs nothing there
//! (the task-aware scoring of Kwon et al. 2022, with a head instead of their fine-tuned model).

use anyhow::{Context, Result, ensure};
use bertlite::Encoding;
use rayon::prelude::*;
use tract_core::internal::*;

use crate::graph::{self, Precision};
use crate::model::Bert;
use crate::prune::{Importance, LayerCut, apply, how, kept};
use crate::train::{TrainOptions, choose_l2, train};

/// The fractions tried: of each layer's FFN neurons and of its heads.
const FFN_CUTS: [f32; 6] = [0.0, 0.25, 0.5, 0.625, 0.75, 0.875];
const HEAD_CUTS: [f32; 4] = [0.0, 0.25, 0.5, 0.75];
/// Texts the candidates are scored on (each candidate runs the whole model on all of them).
pub const SENSITIVITY_TEXTS: usize = 32;
/// The budget's resolution: a layer's FLOPs in units of 1/STEPS of the whole encoder's.
const STEPS: f64 = 2048.0;

/// What a candidate cut's loss is measured as, per scoring text, against the unpruned model.
pub enum Score {
    /// 1 − cosine of the pooled embeddings.
    Cosine,
    /// Mean squared change of the logits of a head (`weight`, `[k][d]`; its bias cancels in the
    /// change) fitted to the unpruned model's pooled embeddings of labeled texts, over its `k`
    /// outputs; `texts` is how many it was fitted on (for the description).
    Logits { weight: Vec<f32>, texts: usize },
}

impl Score {
    /// Fits the head of [`Score::Logits`] to the f32 model's pooled embeddings of `texts`, with
    /// `targets` as `train` takes them (one row per text).
    pub fn task(
        bert: &Bert,
        texts: &[Encoding],
        targets: &[Vec<f32>],
        multi: bool,
    ) -> Result<Score> {
        ensure!(texts.len() == targets.len() && !texts.is_empty(), "no labeled texts to score on");
        let xs = pooled(bert, texts)?;
        let opts = TrainOptions { multi_label: multi, ..Default::default() };
        let (l2, _) = choose_l2(&xs, targets, &opts);
        let (weight, _) = train(&xs, targets, &TrainOptions { l2, ..opts });
        Ok(Score::Logits { weight, texts: texts.len() })
    }

    /// The loss of `got` against `reference` (both pooled, normalized).
    fn loss(&self, reference: &[f32], got: &[f32]) -> f64 {
        match self {
            Score::Cosine => 1.0 - f64::from(bertlite::cosine(reference, got)),
            Score::Logits { weight, .. } => {
                let d = reference.len();
                let classes = weight.len() / d;
                weight
                    .chunks_exact(d)
                    .map(|w| {
                        let dz: f64 = w
                            .iter()
                            .zip(reference.iter().zip(got))
                            .map(|(&w, (&a, &b))| f64::from(w) * f64::from(b - a))
                            .sum();
                        dz * dz
                    })
                    .sum::<f64>()
                    / classes as f64
            }
        }
    }

    fn describe(&self) -> String {
        match self {
            Score::Cosine => "1 - pooled cosine to the unpruned model".into(),
            Score::Logits { texts, .. } => format!(
                "mean squared change of a head's logits, the head fitted to the unpruned model's \
                 embeddings of {texts} labeled texts"
            ),
        }
    }
}

/// What the candidate cuts are scored on and by.
pub struct Scoring<'a> {
    pub texts: &'a [Encoding],
    /// Whether `texts` are apart from those the importance and repair were measured on.
    pub held_out: bool,
    pub score: &'a Score,
}

/// Chooses one cut per layer for `target` (0..1) of the encoder FLOPs at `lengths`, scoring
/// the candidates as `scoring` says, timing them with `costs`; returns it and a description
/// for the bundle metadata.
pub fn plan(
    bert: &Bert,
    imp: &Importance,
    scoring: Scoring,
    lengths: Lengths,
    target: Target,
    costs: &Costs,
    repair: bool,
) -> Result<(Vec<LayerCut>, String)> {
    let Scoring { texts: scoring, held_out, score } = scoring;
    let Target { flops: target_flops, latency: target_latency } = target;
    let target = target_flops.unwrap_or(1.0);
    ensure!(target > 0.0 && target <= 1.0, "--target-flops must be in (0, 1), got {target}");
    if let Some(t) = target_latency {
        ensure!(t > 0.0 && t < 1.0, "--target-latency must be in (0, 1), got {t}");
    }
    ensure!(target < 1.0 || target_latency.is_some(), "give --target-flops or --target-latency");
    ensure!(!scoring.is_empty(), "--target-flops needs texts to score the cuts on");
    let texts = &scoring[..scoring.len().min(SENSITIVITY_TEXTS)];
    let reference = pooled(bert, texts)?;
    let n = bert.layers.len();
    ensure!(lengths.texts > 0, "--target-flops needs texts to count the FLOPs at");
    let loss_of = |l: usize, cut: LayerCut| -> Result<f64> {
        let mut plan = vec![LayerCut::NONE; n];
        plan[l] = cut;
        let mut pruned = bert.clone();
        apply(&mut pruned, imp, &plan, repair)?;
        let got = pooled(&pruned, texts)?;
        Ok(reference.iter().zip(&got).map(|(a, b)| score.loss(a, b)).sum::<f64>()
            / texts.len() as f64)
    };
    // Per layer: the loss of each FFN cut, each head cut, and of dropping it. The candidates
    // are independent (each its own pruned copy and plan), so they run on the threads; each
    // loss lands in its own slot, so the choice is the same whatever the thread count.
    #[derive(Clone, Copy)]
    enum Slot {
        Ffn(usize),
        Heads(usize),
        Drop,
    }
    let mut trials: Vec<(usize, Slot, LayerCut)> = Vec::new();
    for l in 0..n {
        for (i, &ffn) in FFN_CUTS.iter().enumerate().skip(1) {
            trials.push((l, Slot::Ffn(i), LayerCut { ffn, ..LayerCut::NONE }));
        }
        for (j, &heads) in HEAD_CUTS.iter().enumerate().skip(1) {
            trials.push((l, Slot::Heads(j), LayerCut { heads, ..LayerCut::NONE }));
        }
        if n > 1 {
            trials.push((l, Slot::Drop, LayerCut { drop: true, ..LayerCut::NONE }));
        }
    }
    let pb = crate::embed::progress(trials.len(), "sensitivity");
    let losses: Vec<f64> = trials
        .par_iter()
        .map(|&(l, _, cut)| {
            let loss = loss_of(l, cut);
            pb.inc(1);
            loss
        })
        .collect::<Result<_>>()?;
    let mut ffn_loss = vec![vec![0f64; FFN_CUTS.len()]; n];
    let mut head_loss = vec![vec![0f64; HEAD_CUTS.len()]; n];
    // One layer cannot be dropped.
    let mut drop_loss = vec![f64::INFINITY; n];
    for (&(l, slot, _), loss) in trials.iter().zip(losses) {
        match slot {
            Slot::Ffn(i) => ffn_loss[l][i] = loss,
            Slot::Heads(j) => head_loss[l][j] = loss,
            Slot::Drop => drop_loss[l] = loss,
        }
    }
    pb.finish_and_clear();

    // Candidates per layer: (cut, loss, FLOPs, estimated time).
    let candidates: Vec<Vec<(LayerCut, f64, u64, f64)>> = (0..n)
        .map(|l| {
            let drop = LayerCut { drop: true, ..LayerCut::NONE };
            let mut c = vec![(drop, drop_loss[l], 0, 0.0)];
            for (i, &f) in FFN_CUTS.iter().enumerate() {
                for (j, &h) in HEAD_CUTS.iter().enumerate() {
                    let cut = LayerCut { ffn: f, heads: h, drop: false };
                    c.push((
                        cut,
                        ffn_loss[l][i] + head_loss[l][j],
                        layer_flops(bert, l, cut, lengths),
                        layer_time(bert, l, cut, lengths, costs),
                    ));
                }
            }
            c
        })
        .collect();
    let full: u64 = (0..n).map(|l| layer_flops(bert, l, LayerCut::NONE, lengths)).sum();
    let full_time: f64 = (0..n).map(|l| layer_time(bert, l, LayerCut::NONE, lengths, costs)).sum();
    let units = |f: u64| (f as f64 / full as f64 * STEPS).ceil() as usize;
    let budget = (f64::from(target) * STEPS).floor() as usize;
    let unreachable = || anyhow::anyhow!("the pruning budget is below what pruning can reach here");
    // The least loss within the FLOPs, each candidate's loss raised by `price` × its share of
    // the estimated time.
    let solve = |price: f64| {
        let priced: Vec<Vec<(LayerCut, f64, u64)>> = candidates
            .iter()
            .map(|layer| {
                layer.iter().map(|&(c, loss, f, t)| (c, loss + price * t / full_time, f)).collect()
            })
            .collect();
        cheapest(&priced, units, budget).map(|picks| {
            let time: f64 = picks
                .iter()
                .zip(&candidates)
                .map(|(p, layer)| layer.iter().find(|c| c.0 == p.0).map_or(0.0, |c| c.3))
                .sum();
            (picks, time / full_time)
        })
    };
    // With a latency target: the smallest price whose plan fits it (a Lagrange multiplier,
    // found by doubling then bisection); the loss is what the price trades against.
    let (chosen, time_share) = match target_latency {
        None => solve(0.0).ok_or_else(unreachable)?,
        Some(t) => {
            let t = f64::from(t);
            let fits = |price: f64| solve(price).filter(|(_, share)| *share <= t);
            match fits(0.0) {
                Some(plan) => plan,
                None => {
                    let mut hi = 1e-4;
                    while fits(hi).is_none() {
                        hi *= 2.0;
                        ensure!(hi < 1e6, "--target-latency {t} is below what pruning can reach");
                    }
                    let mut lo = 0.0;
                    for _ in 0..40 {
                        let mid = 0.5 * (lo + hi);
                        if fits(mid).is_some() { hi = mid } else { lo = mid }
                    }
                    fits(hi).ok_or_else(unreachable)?
                }
            }
        }
    };
    let chosen: Vec<(LayerCut, f64, u64)> = chosen;
    let plan: Vec<LayerCut> = chosen.iter().map(|&(cut, _, _)| cut).collect();
    let flops: u64 = chosen.iter().map(|&(_, _, f)| f).sum();
    let per_layer: Vec<String> = plan
        .iter()
        .map(|c| match c.drop {
            true => "dropped".to_string(),
            false => format!("ffn -{:.1}% heads -{:.0}%", c.ffn * 100.0, c.heads * 100.0),
        })
        .collect();
    let asked = match (target_flops, target_latency) {
        (Some(f), None) => format!("{:.0}% of the encoder FLOPs asked", f * 100.0),
        (None, Some(t)) => format!("{:.0}% of its estimated latency asked", t * 100.0),
        (f, t) => format!(
            "{:.0}% of the encoder FLOPs and {:.0}% of its estimated latency asked",
            f.unwrap_or(1.0) * 100.0,
            t.unwrap_or(1.0) * 100.0
        ),
    };
    let description = format!(
        "budget: {asked}, {:.1}% of the FLOPs and {:.1}% of the estimated latency reached (at \
         {} texts' own lengths, mean {:.0} tokens); latency model: an attention multiply-add \
         {:.2} int8 ones, {:.0} per token and hidden unit per layer, {}; per layer: {}; cuts \
         chosen by measured loss ({}) on {} texts {}; {}",
        flops as f64 / full as f64 * 100.0,
        time_share * 100.0,
        lengths.texts,
        lengths.tokens as f64 / lengths.texts as f64,
        costs.attention,
        costs.fixed,
        costs.origin,
        per_layer.join(", "),
        score.describe(),
        texts.len(),
        if held_out { "apart from the calibration" } else { "of the calibration" },
        how(imp, repair)
    );
    Ok((plan, description))
}

/// One candidate per layer, minimizing the summed loss with the summed units ≤ `budget`
/// (a knapsack over layers; `None` if even the cheapest choices exceed it). Keeps at least
/// one layer.
fn cheapest(
    candidates: &[Vec<(LayerCut, f64, u64)>],
    units: impl Fn(u64) -> usize,
    budget: usize,
) -> Option<Vec<(LayerCut, f64, u64)>> {
    // best[u] = (loss, choices, any layer kept) with exactly u units used.
    let mut best: Vec<Option<(f64, Vec<usize>, bool)>> = vec![None; budget + 1];
    best[0] = Some((0.0, Vec::new(), false));
    for layer in candidates {
        let mut next: Vec<Option<(f64, Vec<usize>, bool)>> = vec![None; budget + 1];
        for (used, state) in best.iter().enumerate() {
            let Some((loss, picks, kept)) = state else { continue };
            for (i, &(cut, l, f)) in layer.iter().enumerate() {
                let u = used + units(f);
                let total = loss + l;
                if u > budget || !total.is_finite() {
                    continue;
                }
                let better = next[u].as_ref().is_none_or(|(b, _, _)| total < *b);
                if better {
                    let mut p = picks.clone();
                    p.push(i);
                    next[u] = Some((total, p, *kept || !cut.drop));
                }
            }
        }
        best = next;
    }
    let (_, picks, _) = best
        .into_iter()
        .flatten()
        .filter(|(_, _, kept)| *kept)
        .min_by(|a, b| a.0.total_cmp(&b.0))?;
    Some(picks.iter().zip(candidates).map(|(&i, layer)| layer[i]).collect())
}

/// The token counts of the texts the budget is for: a linear's multiply-adds grow with the
/// tokens and the attention's with their square, so what a head costs against an FFN neuron
/// depends on how long the texts are (at BBC's ~250 tokens a head costs twice what it does at
/// 128). `compile` encodes them at the model's own limit, as they will run.
#[derive(Clone, Copy, Debug)]
pub struct Lengths {
    texts: usize,
    tokens: u64,
    squares: u64,
}

impl Lengths {
    pub fn of(texts: &[Encoding]) -> Lengths {
        let len = |e: &Encoding| e.len() as u64;
        Lengths {
            texts: texts.len(),
            tokens: texts.iter().map(len).sum(),
            squares: texts.iter().map(|e| len(e) * len(e)).sum(),
        }
    }
}

/// What `--target-flops` and `--target-latency` ask for (shares of the unpruned encoder's).
#[derive(Clone, Copy, Debug, Default)]
pub struct Target {
    pub flops: Option<f32>,
    pub latency: Option<f32>,
}

/// The latency model: batch-1 time in units of one int8 linear multiply-add. An attention
/// multiply-add costs `attention` of them (f32 products, the softmax's exponentials and the
/// heads' gathers come with it), and every kept layer `fixed` per token and hidden unit for
/// what no cut shrinks (LayerNorms, quantizing the hidden-wide rows). `compile` measures both
/// on the machine it runs on (`latency.rs`); where that measurement cannot be trusted, the
/// [`Costs::fitted`] ones.
#[derive(Clone, Debug)]
pub struct Costs {
    pub attention: f64,
    pub fixed: f64,
    /// Where they come from, for the bundle's metadata.
    pub origin: String,
}

impl Costs {
    /// Fitted on session 21's x86_64 host (AMD, AVX-512 VNNI, 1 thread) to three MiniLM-L6
    /// bundles at BBC's ~251 tokens, the unpruned one and two pruned to 50% of the FLOPs, one
    /// mostly by FFN neurons and one mostly by heads (38.7, 21.8 and 18.7 ms: the same FLOPs,
    /// 1.77× and 2.07× faster). On an AMX host the linears are faster and an attention
    /// multiply-add costs about twice as many of them: why they are measured.
    pub fn fitted() -> Costs {
        Costs {
            attention: 4.85,
            fixed: 715.0,
            origin: "fitted on an x86_64 host with AVX-512 VNNI".into(),
        }
    }

    /// The costs that explain three measured times (ms) of the same texts, each bundle given
    /// as its (linear, attention, fixed) units ([`parts`]): `ms = c_lin · linear + c_att ·
    /// attention + c_fix · fixed` solved for the three (Cramer's rule), returned as c_att /
    /// c_lin and c_fix / c_lin. Measured with the unpruned encoder, one with FFN neurons cut
    /// (linear units move) and one with heads cut (attention units too). `None` if the times do
    /// not fit the model (a cost at or below zero: noise larger than the cuts' differences).
    pub fn solve(parts: [(f64, f64, f64); 3], ms: [f64; 3]) -> Option<(f64, f64)> {
        let det = |m: [[f64; 3]; 3]| {
            m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1])
                - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
                + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0])
        };
        let a = parts.map(|(l, at, f)| [l, at, f]);
        let d = det(a);
        let cost = |col: usize| {
            let mut m = a;
            for (row, &t) in m.iter_mut().zip(&ms) {
                row[col] = t;
            }
            det(m) / d
        };
        let (linear, attention, fixed) = (cost(0), cost(1), cost(2));
        let ok = |x: f64| x.is_finite() && x > 0.0;
        // The fixed part is small and may come out just below zero: none, then.
        (ok(linear) && ok(attention) && fixed.is_finite())
            .then(|| (attention / linear, fixed.max(0.0) / linear))
    }
}

/// Layer `l`'s widths after `cut` (not dropped): hidden, the heads' total, the FFN's.
fn widths(bert: &Bert, l: usize, cut: LayerCut) -> (u64, u64, u64) {
    let layer = &bert.layers[l];
    let inner = kept(layer.heads, cut.heads, 1) * bert.head_dim;
    let ffn = kept(layer.ffn_in.weight.rows, cut.ffn, 8);
    (bert.hidden as u64, inner as u64, ffn as u64)
}

/// Layer `l` after `cut` at `lengths`: its linear multiply-adds, its attention multiply-adds
/// and its fixed units (tokens × hidden); zeros if dropped.
fn layer_parts(bert: &Bert, l: usize, cut: LayerCut, lengths: Lengths) -> (f64, f64, f64) {
    if cut.drop {
        return (0.0, 0.0, 0.0);
    }
    let (h, inner, ffn) = widths(bert, l, cut);
    let linear = ((4 * h * inner + 2 * h * ffn) * lengths.tokens) as f64;
    let attention = (2 * inner * lengths.squares) as f64;
    (linear, attention, (h * lengths.tokens) as f64)
}

/// [`layer_parts`] summed over the layers of `bert` cut by `plan`.
pub fn parts(bert: &Bert, plan: &[LayerCut], lengths: Lengths) -> (f64, f64, f64) {
    plan.iter()
        .enumerate()
        .map(|(l, &cut)| layer_parts(bert, l, cut, lengths))
        .fold((0.0, 0.0, 0.0), |a, b| (a.0 + b.0, a.1 + b.1, a.2 + b.2))
}

/// The estimated time of layer `l` after `cut`, summed over texts of `lengths` (see
/// [`Costs`]).
fn layer_time(bert: &Bert, l: usize, cut: LayerCut, lengths: Lengths, costs: &Costs) -> f64 {
    let (linear, attention, fixed) = layer_parts(bert, l, cut, lengths);
    linear + costs.attention * attention + costs.fixed * fixed
}

/// Multiply-adds of layer `l` after `cut`, summed over texts of `lengths`.
fn layer_flops(bert: &Bert, l: usize, cut: LayerCut, lengths: Lengths) -> u64 {
    if cut.drop {
        return 0;
    }
    let (h, inner, ffn) = widths(bert, l, cut);
    (4 * h * inner + 2 * h * ffn) * lengths.tokens + 2 * inner * lengths.squares
}

/// The mean-pooled, L2-normalized last hidden state of `bert` (f32) on each text.
fn pooled(bert: &Bert, texts: &[Encoding]) -> Result<Vec<Vec<f32>>> {
    let plan = graph::build_with_outputs(bert, Precision::F32, graph::Outputs::Hidden)?
        .into_optimized()?
        .into_runnable()?;
    let hidden = bert.hidden;
    texts
        .par_iter()
        .map(|e| {
            let out = crate::graph::run_text(&plan, e)?;
            let view = out[0].to_plain_array_view::<f32>()?;
            let values = view.as_slice().context("the last hidden state is not contiguous")?;
            let mut mean = vec![0f32; hidden];
            for row in values.chunks_exact(hidden) {
                for (m, x) in mean.iter_mut().zip(row) {
                    *m += x;
                }
            }
            let norm = mean.iter().map(|x| x * x).sum::<f32>().sqrt().max(f32::MIN_POSITIVE);
            Ok(mean.into_iter().map(|x| x / norm).collect())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Times made from known costs give those costs back; times where a cut measured slower
    /// than the unpruned encoder give none.
    #[test]
    fn costs_are_what_explains_the_times() {
        // MiniLM-L6 at 251 tokens: unpruned, FFN -50%, heads -50% (linear, attention, fixed).
        let parts = [(2.67e9, 3.02e8, 5.78e5), (1.78e9, 3.02e8, 5.78e5), (2.22e9, 1.51e8, 5.78e5)];
        let (lin, att, fix) = (5e-9, 4e-8, 3e-6);
        let ms = parts.map(|(l, a, f)| lin * l + att * a + fix * f);
        let (attention, fixed) = Costs::solve(parts, ms).expect("solvable");
        assert!(
            (attention - 8.0).abs() < 1e-6 && (fixed - 600.0).abs() < 1e-3,
            "{attention} {fixed}"
        );
        assert!(Costs::solve(parts, [ms[0], ms[0] * 1.01, ms[2]]).is_none());
    }

    /// The task score sees only what the head reads: a move along a direction no class weight
    /// has costs nothing there (but costs under cosine), a move along a class weight costs its
    /// squared logit change over the classes.
    #[test]
    fn the_task_score_reads_only_the_heads_directions() {
        // Two classes reading dimension 0 with weights 2 and -1; dimension 1 is unread.
        let task = Score::Logits { weight: vec![2.0, 0.0, -1.0, 0.0], texts: 1 };
        let reference = [0.6f32, 0.8];
        let aside = [0.6f32, -0.8];
        assert_eq!(task.loss(&reference, &aside), 0.0);
        assert!(Score::Cosine.loss(&reference, &aside) > 1.0);
        let along = [0.8f32, 0.6];
        // Δ = 0.2 on dimension 0: logits move 0.4 and -0.2, (0.16 + 0.04) / 2.
        assert!((task.loss(&reference, &along) - 0.1).abs() < 1e-6);
    }

    /// Two layers, budget for one full layer's worth: the knapsack must put the cut where it
    /// is cheap (layer 1), and keep at least one layer even when dropping both is cheapest.
    #[test]
    fn the_budget_goes_where_cuts_cost_least() {
        let cut = |ffn: f32| LayerCut { ffn, ..LayerCut::NONE };
        let drop = LayerCut { drop: true, ..LayerCut::NONE };
        let layer =
            |cheap: f64| vec![(drop, 20.0 * cheap, 0), (cut(0.0), 0.0, 100), (cut(0.5), cheap, 50)];
        let candidates = vec![layer(1.0), layer(0.1)];
        let picks = cheapest(&candidates, |f| f as usize, 150).expect("feasible");
        assert_eq!(picks[0].0, cut(0.0));
        assert_eq!(picks[1].0, cut(0.5));
        let picks = cheapest(&candidates, |f| f as usize, 100).expect("feasible");
        assert_eq!((picks[0].0, picks[1].0), (cut(0.5), cut(0.5)));
        // Dropping both costs nothing but leaves no layer; one kept at half width is the answer.
        let free_drops = vec![vec![(drop, 0.0, 0), (cut(0.5), 5.0, 50)]; 2];
        let picks = cheapest(&free_drops, |f| f as usize, 50).expect("feasible");
        assert_eq!(picks.iter().filter(|p| !p.0.drop).count(), 1);
        // Only drops fit in 10 units, and they would leave no layer.
        assert!(cheapest(&candidates, |f| f as usize, 10).is_none());
    }
}
