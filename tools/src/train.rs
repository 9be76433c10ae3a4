//! The classification head: logistic regression with L2 on pooled embeddings.
//!
//! Single-label heads are multinomial (softmax + cross-entropy); multi-label heads are one
//! sigmoid per label (binary cross-entropy). Features are standardized during training
//! (well-conditioned gradient descent) and the standardization is folded back into the weights,
//! so the head applies to raw embeddings. Without an explicit L2 strength, it is chosen on a
//! held-out fifth of the training data, then the head is retrained on all of it.

/// L2 strengths tried when none is given.
pub const L2_CANDIDATES: [f32; 9] = [1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0];

#[derive(Clone, Copy)]
pub struct TrainOptions {
    pub l2: f32,
    pub iterations: usize,
    pub learning_rate: f32,
    pub multi_label: bool,
}

impl Default for TrainOptions {
    fn default() -> Self {
        TrainOptions { l2: 1e-3, iterations: 500, learning_rate: 0.5, multi_label: false }
    }
}

/// Targets: `targets[i][c]` is 1 if example i has label c (exactly one per row when
/// single-label). Returns `(weight [k][d], bias [k])` minimizing the mean loss + l2/2·‖W‖² on
/// standardized features.
pub fn train(xs: &[Vec<f32>], targets: &[Vec<f32>], opts: &TrainOptions) -> (Vec<f32>, Vec<f32>) {
    let n = xs.len();
    let d = xs.first().map_or(0, Vec::len);
    let k = targets.first().map_or(0, Vec::len);
    let (mean, std) = moments(xs);
    let z: Vec<Vec<f32>> = xs
        .iter()
        .map(|x| x.iter().zip(&mean).zip(&std).map(|((v, m), s)| (v - m) / s).collect())
        .collect();

    let mut w = vec![0f32; k * d];
    let mut b = vec![0f32; k];
    let mut vw = vec![0f32; k * d];
    let mut vb = vec![0f32; k];
    let momentum = 0.9f32;
    let mut p = vec![0f32; k];
    for _ in 0..opts.iterations {
        let mut gw = vec![0f32; k * d];
        let mut gb = vec![0f32; k];
        for (x, t) in z.iter().zip(targets) {
            for c in 0..k {
                p[c] = b[c] + w[c * d..(c + 1) * d].iter().zip(x).map(|(a, b)| a * b).sum::<f32>();
            }
            activate(&mut p, opts.multi_label);
            // Both losses have gradient (prediction − target) with respect to the logits.
            for c in 0..k {
                let g = (p[c] - t[c]) / n as f32;
                gb[c] += g;
                for (gw, xv) in gw[c * d..(c + 1) * d].iter_mut().zip(x) {
                    *gw += g * xv;
                }
            }
        }
        for i in 0..k * d {
            vw[i] = momentum * vw[i] - opts.learning_rate * (gw[i] + opts.l2 * w[i]);
            w[i] += vw[i];
        }
        for c in 0..k {
            vb[c] = momentum * vb[c] - opts.learning_rate * gb[c];
            b[c] += vb[c];
        }
    }
    // Fold standardization: w·(x-m)/s + b = (w/s)·x + (b - Σ w·m/s).
    for c in 0..k {
        for j in 0..d {
            let wj = w[c * d + j] / std[j];
            b[c] -= wj * mean[j];
            w[c * d + j] = wj;
        }
    }
    (w, b)
}

/// Picks the L2 strength with the lowest held-out log-loss on every fifth example (trained on
/// the rest). Log-loss rather than accuracy: accuracy ties across most strengths on a few
/// hundred examples, and breaking ties toward the strongest penalty measured worse. Returns the
/// strength with its held-out accuracy.
pub fn choose_l2(xs: &[Vec<f32>], targets: &[Vec<f32>], opts: &TrainOptions) -> (f32, f64) {
    let (mut fit_x, mut fit_t, mut val_x, mut val_t) = (vec![], vec![], vec![], vec![]);
    for (i, (x, t)) in xs.iter().zip(targets).enumerate() {
        if i % 5 == 4 {
            val_x.push(x.clone());
            val_t.push(t.clone());
        } else {
            fit_x.push(x.clone());
            fit_t.push(t.clone());
        }
    }
    let mut best = (opts.l2, f64::INFINITY, 0.0);
    for &l2 in &L2_CANDIDATES {
        let (w, b) = train(&fit_x, &fit_t, &TrainOptions { l2, ..*opts });
        let loss = log_loss(&w, &b, &val_x, &val_t, opts.multi_label);
        if loss < best.1 {
            best = (l2, loss, accuracy(&w, &b, &val_x, &val_t, opts.multi_label));
        }
    }
    (best.0, best.2)
}

/// Probabilities of a trained head `(w [k][d], b [k])` for one feature vector.
pub fn predict(w: &[f32], b: &[f32], x: &[f32], multi: bool) -> Vec<f32> {
    let d = x.len();
    let mut p: Vec<f32> = b
        .iter()
        .enumerate()
        .map(|(c, bc)| bc + w[c * d..(c + 1) * d].iter().zip(x).map(|(a, b)| a * b).sum::<f32>())
        .collect();
    activate(&mut p, multi);
    p
}

/// Mean cross-entropy (softmax) or binary cross-entropy summed over labels (sigmoid).
pub fn log_loss(w: &[f32], b: &[f32], xs: &[Vec<f32>], targets: &[Vec<f32>], multi: bool) -> f64 {
    let total: f64 = xs
        .iter()
        .zip(targets)
        .map(|(x, t)| {
            let p = predict(w, b, x, multi);
            p.iter()
                .zip(t)
                .map(|(&p, &t)| {
                    let p = f64::from(p).clamp(1e-12, 1.0 - 1e-12);
                    let t = f64::from(t);
                    if multi { -(t * p.ln() + (1.0 - t) * (1.0 - p).ln()) } else { -t * p.ln() }
                })
                .sum::<f64>()
        })
        .sum();
    total / xs.len().max(1) as f64
}

/// Exact-match accuracy (single-label: top label; multi-label: every label's p > 0.5 right).
pub fn accuracy(w: &[f32], b: &[f32], xs: &[Vec<f32>], targets: &[Vec<f32>], multi: bool) -> f64 {
    let k = b.len();
    let correct = xs
        .iter()
        .zip(targets)
        .filter(|(x, t)| {
            let p = predict(w, b, x, multi);
            if multi {
                p.iter().zip(t.iter()).all(|(p, t)| (*p > 0.5) == (*t > 0.5))
            } else {
                let best = (0..k).max_by(|&a, &b| p[a].total_cmp(&p[b])).unwrap_or(0);
                t[best] > 0.5
            }
        })
        .count();
    correct as f64 / xs.len().max(1) as f64
}

fn activate(z: &mut [f32], multi: bool) {
    if multi {
        z.iter_mut().for_each(|v| *v = 1.0 / (1.0 + (-*v).exp()));
    } else {
        let max = z.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut sum = 0.0;
        for v in z.iter_mut() {
            *v = (*v - max).exp();
            sum += *v;
        }
        z.iter_mut().for_each(|v| *v /= sum);
    }
}

fn moments(xs: &[Vec<f32>]) -> (Vec<f32>, Vec<f32>) {
    let n = xs.len().max(1) as f64;
    let d = xs.first().map_or(0, Vec::len);
    let mut mean = vec![0f64; d];
    let mut var = vec![0f64; d];
    for x in xs {
        for j in 0..d {
            mean[j] += f64::from(x[j]) / n;
        }
    }
    for x in xs {
        for j in 0..d {
            var[j] += (f64::from(x[j]) - mean[j]).powi(2) / n;
        }
    }
    (
        mean.iter().map(|&m| m as f32).collect(),
        var.iter().map(|v| (v.sqrt() as f32).max(1e-6)).collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Three well-separated clusters in 4-D, tiny scale like normalized embeddings.
    fn clusters() -> (Vec<Vec<f32>>, Vec<usize>) {
        let mut xs = vec![];
        let mut ys = vec![];
        for i in 0..90 {
            let c = i % 3;
            let jitter = (i as f32 * 0.37).sin() * 0.002;
            let mut x = vec![0.01 + jitter, -0.02, 0.005, jitter];
            x[c] += 0.03;
            xs.push(x);
            ys.push(c);
        }
        (xs, ys)
    }

    fn one_hot(ys: &[usize], k: usize) -> Vec<Vec<f32>> {
        ys.iter().map(|&y| (0..k).map(|c| if c == y { 1.0 } else { 0.0 }).collect()).collect()
    }

    #[test]
    fn softmax_separates_clusters() {
        let (xs, ys) = clusters();
        let t = one_hot(&ys, 3);
        let opts = TrainOptions::default();
        let (w, b) = train(&xs, &t, &opts);
        assert_eq!(accuracy(&w, &b, &xs, &t, false), 1.0);
        let (l2, acc) = choose_l2(&xs, &t, &opts);
        assert!(L2_CANDIDATES.contains(&l2) && acc == 1.0);
    }

    #[test]
    fn sigmoid_learns_independent_labels() {
        // Label 0 = cluster 0 or 1; label 1 = cluster 1 or 2: rows can have both labels.
        let (xs, ys) = clusters();
        let t: Vec<Vec<f32>> = ys
            .iter()
            .map(|&y| vec![f32::from(u8::from(y <= 1)), f32::from(u8::from(y >= 1))])
            .collect();
        let opts = TrainOptions { multi_label: true, ..Default::default() };
        let (w, b) = train(&xs, &t, &opts);
        assert_eq!(accuracy(&w, &b, &xs, &t, true), 1.0);
    }
}
