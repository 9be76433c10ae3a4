//! Task fine-tuning: the encoder trained on the labeled `--train` texts, through a head.
//!
//! Distillation (`distill.rs`) pulls a pruned encoder back toward the unpruned one on
//! unlabeled text; it cannot tell which of the representation's directions the task needs.
//! Here every kept layer is trained end to end on the cross-entropy of a head on the pooled
//! embedding (what the bundle's head sees), plus `kd` · (1 − cosine) to the unpruned model's
//! pooled output, which keeps the representation near the one the head was fitted on and
//! stops it from bending to the few training texts. The head is fitted once on the starting
//! encoder's embeddings and held fixed: the encoder moves each text away from the boundary,
//! and compile refits the bundle's head on the finished, quantized encoder as always.
//!
//! Every fifth text is held out (as `train::choose_l2` holds out its fifth): the encoder never
//! trains on them, and the weights after the epoch with the lowest held-out log-loss are kept
//! (none if no epoch beats the start).

use anyhow::{Result, ensure};
use bertlite::{Encoding, Pooling, PoolingMode};
use rayon::prelude::*;

use crate::distill::{
    PerText, Schedule, Shape, cosine_grad, grads_through_pooling, inputs_and_pooled, pooled,
    shapes, train_layers,
};
use crate::model::{Bert, Layer};
use crate::train::{TrainOptions, accuracy, choose_l2, log_loss, predict, train};

#[derive(Clone, Copy, Debug)]
pub struct FinetuneOptions {
    pub epochs: usize,
    /// Adam's peak step size (warmed up over the first tenth of the steps, then decayed
    /// linearly to 0).
    pub lr: f32,
    /// Texts per step.
    pub batch: usize,
    /// Weight of 1 − cos(pooled, the unpruned model's pooled) beside the cross-entropy.
    pub kd: f32,
}

impl Default for FinetuneOptions {
    /// Adam at 5e-5, as the end-to-end distillation stage (stable there on the same model);
    /// 2e-5–5e-5 is the range BERT fine-tuning uses, with the same warm-up and linear decay
    /// (Devlin et al. 2019).
    fn default() -> Self {
        FinetuneOptions { epochs: 0, lr: 5e-5, batch: 8, kd: 1.0 }
    }
}

/// What fine-tuning did: the fixed head's held-out log-loss and accuracy before and after,
/// its held-out log-loss after each epoch, the epoch kept (0: none), and how many texts it
/// trained on and held out.
pub struct FinetuneReport {
    pub before: (f64, f64),
    pub after: (f64, f64),
    pub per_epoch: Vec<f32>,
    pub best_epoch: usize,
    pub trained: usize,
    pub held: usize,
}

impl FinetuneReport {
    pub fn describe(&self, opts: &FinetuneOptions) -> String {
        let epochs: Vec<String> = self.per_epoch.iter().map(|l| format!("{l:.4}")).collect();
        let what = format!(
            "encoder fine-tuned on {} of the texts ({} epochs at step size {} warmed up and \
             decayed, distillation weight {}; held-out log-loss after each: {})",
            self.trained,
            opts.epochs,
            opts.lr,
            opts.kd,
            epochs.join(", ")
        );
        match self.best_epoch {
            0 => format!(
                "{what}: held-out log-loss {:.4}, accuracy {:.4} on {}, not improved (kept as was)",
                self.before.0, self.before.1, self.held
            ),
            e => format!(
                "{what}, the weights after epoch {e} kept: held-out log-loss {:.4}->{:.4}, \
                 accuracy {:.4}->{:.4} on {}",
                self.before.0, self.after.0, self.before.1, self.after.1, self.held
            ),
        }
    }
}

/// Fine-tunes `student`'s layers on `texts` with `targets` (one row of 0/1 per text, as
/// `data::label_targets` gives); `teacher` is the unpruned model (or `student` as it was).
pub fn finetune(
    student: &mut Bert,
    teacher: &Bert,
    pooling: &Pooling,
    (texts, targets): (&[Encoding], &[Vec<f32>]),
    multi_label: bool,
    opts: &FinetuneOptions,
) -> Result<FinetuneReport> {
    ensure!(
        pooling.mode == PoolingMode::Mean,
        "--finetune-epochs trains through mean pooling; this model pools with {:?}",
        pooling.mode
    );
    ensure!(
        texts.len() == targets.len(),
        "fine-tuning: {} texts, {} targets",
        texts.len(),
        targets.len()
    );
    ensure!(
        texts.len() >= 10,
        "--finetune-epochs needs at least 10 labeled texts, got {}",
        texts.len()
    );
    ensure!(
        student.word.data == teacher.word.data && student.hidden == teacher.hidden,
        "fine-tuning: the encoder's embeddings differ from the unpruned model's"
    );
    // The embeddings are not trained: their output is every layer stack's input.
    let (xs, goals) = inputs_and_pooled(teacher, texts)?;
    let shapes = shapes(student);
    let task = Task { xs: &xs, goals: &goals, targets, multi_label, normalize: pooling.normalize };
    Ok(train_task(&mut student.layers, &shapes, &task, opts))
}

/// What [`train_task`] trains on: each text's encoder input, the unpruned model's pooled
/// output, its label row; whether the head's features are L2-normalized.
struct Task<'a> {
    xs: &'a [Vec<f32>],
    goals: &'a [Vec<f32>],
    targets: &'a [Vec<f32>],
    multi_label: bool,
    normalize: bool,
}

/// The embedding the head sees: the pooled output, L2-normalized if the bundle normalizes.
fn features(p: &[f32], normalize: bool) -> Vec<f32> {
    if !normalize {
        return p.to_vec();
    }
    let n = p.iter().map(|v| v * v).sum::<f32>().sqrt().max(f32::MIN_POSITIVE);
    p.iter().map(|v| v / n).collect()
}

/// A fixed head `(w [k][d], b [k])` on the features of the pooled output.
struct FixedHead {
    w: Vec<f32>,
    b: Vec<f32>,
    multi_label: bool,
    normalize: bool,
}

impl FixedHead {
    /// The gradient at the pooled output `p` of `scale` × the head's cross-entropy for the
    /// label row `y`.
    fn loss_grad(&self, p: &[f32], y: &[f32], scale: f32) -> Vec<f32> {
        let d = p.len();
        let n = features(p, self.normalize);
        // Softmax or sigmoid: both cross-entropies have gradient (prediction − target) at the
        // logits; back through the head, gn = Wᵀ (q − y).
        let q = predict(&self.w, &self.b, &n, self.multi_label);
        let mut gn = vec![0f32; d];
        for (c, (q, y)) in q.iter().zip(y).enumerate() {
            let e = scale * (q - y);
            gn.iter_mut().zip(&self.w[c * d..(c + 1) * d]).for_each(|(g, w)| *g += e * w);
        }
        if !self.normalize {
            return gn;
        }
        // Back through the L2 normalization: (gn − (gn·n) n) / |p|.
        let norm = p.iter().map(|v| v * v).sum::<f32>().sqrt().max(f32::MIN_POSITIVE);
        let dot: f32 = gn.iter().zip(&n).map(|(g, n)| g * n).sum();
        gn.iter().zip(&n).map(|(g, n)| (g - dot * n) / norm).collect()
    }
}

/// The fine-tuning itself, on the encoder's inputs: fit the head on the starting layers'
/// features of the training four fifths, train the layers, keep the best epoch on the held-out
/// fifth.
fn train_task(
    layers: &mut [Layer],
    shapes: &[Shape],
    task: &Task,
    opts: &FinetuneOptions,
) -> FinetuneReport {
    let held = |i: &usize| i % 5 == 4;
    let split = |v: &[Vec<f32>], keep: bool| -> PerText {
        v.iter().enumerate().filter(|(i, _)| held(i) == keep).map(|(_, x)| x.clone()).collect()
    };
    let (fit_x, fit_goal, fit_t) =
        (split(task.xs, false), split(task.goals, false), split(task.targets, false));
    let (held_x, held_t) = (split(task.xs, true), split(task.targets, true));
    let embed = |layers: &[Layer], xs: &[Vec<f32>]| -> PerText {
        xs.par_iter().map(|x| features(&pooled(layers, shapes, x), task.normalize)).collect()
    };
    let multi = task.multi_label;
    let base = TrainOptions { multi_label: multi, ..Default::default() };
    let start = embed(layers, &fit_x);
    let (l2, _) = choose_l2(&start, &fit_t, &base);
    let (w, b) = train(&start, &fit_t, &TrainOptions { l2, ..base });
    let head = FixedHead { w, b, multi_label: multi, normalize: task.normalize };
    let measure = |layers: &[Layer]| {
        let e = embed(layers, &held_x);
        (
            log_loss(&head.w, &head.b, &e, &held_t, multi),
            accuracy(&head.w, &head.b, &e, &held_t, multi),
        )
    };
    let loss_grad = |p: &[f32], i: usize, scale: f32| -> Vec<f32> {
        let mut g = head.loss_grad(p, &fit_t[i], scale);
        if opts.kd > 0.0 {
            let kd = cosine_grad(p, &fit_goal[i], scale * opts.kd);
            g.iter_mut().zip(kd).for_each(|(g, k)| *g += k);
        }
        g
    };
    // Every held-out measurement (before training, after each epoch), kept for the report
    // rather than measured again.
    let measured = std::cell::RefCell::new(Vec::new());
    let pb = crate::embed::progress(opts.epochs * fit_x.len(), "fine-tuning");
    let trained = train_layers(
        layers,
        fit_x.len(),
        Schedule { epochs: opts.epochs, lr: opts.lr, batch: opts.batch, warmup_decay: true },
        &|layers, i, scale| {
            grads_through_pooling(layers, shapes, &fit_x[i], &|p| loss_grad(p, i, scale))
        },
        &|layers| {
            let m = measure(layers);
            measured.borrow_mut().push(m);
            -(m.0 as f32)
        },
        &|n| pb.inc(n as u64),
    );
    pb.finish_and_clear();
    let measured = measured.into_inner();
    FinetuneReport {
        before: measured[0],
        after: measured[trained.best_epoch],
        per_epoch: trained.scores.iter().skip(1).map(|s| -s).collect(),
        best_epoch: trained.best_epoch,
        trained: fit_x.len(),
        held: held_x.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The head's gradient at the pooled output against central differences of its
    /// cross-entropy, in f64 from f32 features. A step of 1e-2 on values of order 1: the
    /// losses' f32 rounding (~1e-7) over the 2e-2 difference stays below 1e-5, the curvature
    /// term (step² · third derivative) below 1%; hence 1% + 2e-5.
    #[test]
    fn head_gradient_matches_finite_differences() {
        let (d, k) = (6, 3);
        let w: Vec<f32> = (0..k * d).map(|i| ((i * 29 % 13) as f32 / 13.0 - 0.5) * 3.0).collect();
        let b = vec![0.1, -0.2, 0.05];
        let p: Vec<f32> = (0..d).map(|i| ((i * 7 % 5) as f32 / 5.0 - 0.4) * 2.0).collect();
        for (multi, y) in [(false, vec![0.0, 1.0, 0.0]), (true, vec![1.0, 0.0, 1.0])] {
            for normalize in [true, false] {
                let head = FixedHead { w: w.clone(), b: b.clone(), multi_label: multi, normalize };
                let loss = |p: &[f32]| {
                    log_loss(&w, &b, &[features(p, normalize)], std::slice::from_ref(&y), multi)
                };
                let g = head.loss_grad(&p, &y, 1.0);
                let step = 1e-2f32;
                for i in 0..d {
                    let (mut plus, mut minus) = (p.clone(), p.clone());
                    plus[i] += step;
                    minus[i] -= step;
                    let numeric = (loss(&plus) - loss(&minus)) / (2.0 * f64::from(step));
                    let analytic = f64::from(g[i]);
                    assert!(
                        (numeric - analytic).abs() <= 0.01 * numeric.abs() + 2e-5,
                        "multi {multi} normalize {normalize} [{i}]: {analytic} vs {numeric}"
                    );
                }
            }
        }
    }

    /// Fine-tuning a two-layer encoder on labels its features separate badly lowers the head's
    /// log-loss on the held-out fifth, and keeps the best epoch's weights.
    #[test]
    fn finetuning_lowers_held_out_loss() {
        let (mut layers, shapes) = crate::distill::tests::two_layers();
        let h = shapes[0].h;
        let text = |seed: usize| -> Vec<f32> {
            (0..6 * h).map(|i| (((i + seed * 17) * 31 % 37) as f32 / 37.0 - 0.5) * 2.0).collect()
        };
        let xs: Vec<Vec<f32>> = (0..60).map(text).collect();
        // The label: whether the input's first token leans one way, a thing the pooled
        // output blurs.
        let targets: Vec<Vec<f32>> = xs
            .iter()
            .map(|x| {
                let up = x[0] + x[1] - x[2] > 0.0;
                vec![f32::from(u8::from(up)), f32::from(u8::from(!up))]
            })
            .collect();
        let goals: PerText = xs.iter().map(|x| pooled(&layers, &shapes, x)).collect();
        let task =
            Task { xs: &xs, goals: &goals, targets: &targets, multi_label: false, normalize: true };
        let opts = FinetuneOptions { epochs: 20, lr: 3e-2, batch: 8, kd: 0.1 };
        let report = train_task(&mut layers, &shapes, &task, &opts);
        assert!(report.best_epoch > 0, "no epoch improved on {:?}", report.before);
        assert!(
            report.after.0 < 0.9 * report.before.0,
            "held-out log-loss {:?} -> {:?}",
            report.before,
            report.after
        );
        assert_eq!((report.trained, report.held), (48, 12));
    }
}
